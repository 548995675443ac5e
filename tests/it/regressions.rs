//! Failures the chaos campaigns found, each kept as its shrunk plan with a postmortem.

use crate::support::{critical_failed, inline_scenario, replay};
use seedcore_engine::probe::Signal;
use seedcore_sim::event::Body;

/// Postmortem: the first swarm campaign of the Azure hour (seeds 1..40) crashed the
/// simulation at seed 2: "each node has its own address: address already in use:
/// 10.0.1.2:7000". The plan's `restart` hit fast-2 while it ran. madsim's
/// `Handle::restart` drops the node's tasks and runs its init again, but only `kill`
/// resets the node in the simulated network, so the old endpoint still held the address
/// when the new incarnation bound it. The world now kills before every restart. The plan
/// shrinks to that one fault; a restart of each kind of node is kept here.
#[test]
fn restarting_a_running_node_rebinds_its_address() {
    let (_dir, scenario) = inline_scenario(
        r#"
name = "restart-running"
duration = "1m"
seed = 2

[topology]
fast = 2
deep = 1

[workload]
source = "generated"
rate_per_s = 10.0

[[chaos.fault]]
at = "10s"
kind = "restart"
node = "fast-2"

[[chaos.fault]]
at = "20s"
kind = "restart"
node = "state"

[[chaos.fault]]
at = "30s"
kind = "restart"
node = "coordinator"

[[chaos.fault]]
at = "40s"
kind = "restart"
node = "deep-1"
"#,
    );
    let (report, events) = replay(&scenario, scenario.seed, 1);
    assert_eq!(critical_failed(&report), Vec::<&str>::new(), "{:#?}", report.results);
    for node in ["fast-2", "state", "coordinator", "deep-1"] {
        let starts =
            events.iter().filter(|e| e.node == node && matches!(e.body, Body::Engine(Signal::Node(_)))).count();
        assert_eq!(starts, 2, "{node} started twice");
    }
    let served_after = events.iter().any(|e| {
        e.t_ms > 11_000 && matches!(&e.body, Body::Engine(Signal::Outcome(o)) if o.worker.as_deref() == Some("fast-2"))
    });
    assert!(served_after, "fast-2 serves again after its restart");
}

/// Postmortem (found in review, before any campaign drew it): a torn write or a corruption
/// reaches the coordinator's disk through a task spawned on the coordinator. On a paused
/// coordinator that task would not run until the pause ended, and the injector, waiting
/// on it, would never reach the pause's end: the run would end with the node still paused
/// and the torn write landing after the final ledger check began. A fault that needs the
/// disk of a paused (or killed) node now does nothing, and says so only through its
/// events.
#[test]
fn a_torn_write_on_a_paused_coordinator_does_not_stall_the_injector() {
    let (_dir, scenario) = inline_scenario(
        r#"
name = "torn-while-paused"
duration = "1m"
seed = 5

[workload]
source = "generated"
rate_per_s = 5.0

[[chaos.fault]]
at = "10s"
kind = "pause"
node = "coordinator"
for = "10s"

[[chaos.fault]]
at = "12s"
kind = "torn_write"
node = "coordinator"
for = "2s"

[[chaos.fault]]
at = "30s"
kind = "crash"
node = "fast-1"
for = "5s"
"#,
    );
    let (report, _) = replay(&scenario, scenario.seed, 1);
    assert_eq!(critical_failed(&report), Vec::<&str>::new(), "{:#?}", report.results);
    // Every fault after the stalled one still ran and ended on time.
    assert_eq!(report.stats.faults, 3);
    assert_eq!(report.stats.last_fault_end_ms, Some(35_000));
    assert!(report.stats.ledger_check.clone().unwrap().checked);
}
