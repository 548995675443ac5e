//! Every fault kind of docs/harness.md 7, read back from the event log:
//! `scenarios/chaos-every-kind.toml` runs each one alone in its own stretch of steady load, and
//! each test here checks what that fault must (and must not) have done, between its `fault` and
//! `fault_end` events.

use crate::support::{critical_failed, replay, scenario};
use seedcore_engine::probe::{AttemptSignal, LedgerEvent, OrganismCause, OutcomeSignal, Signal};
use seedcore_engine::task::{Path, RejectReason, Status};
use seedcore_sim::event::{Body, Event, Harness};
use seedcore_sim::invariants::Verdict;
use seedcore_sim::run::RunReport;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// One run of the every-kind scenario, shared by the tests of this module.
fn run() -> &'static (RunReport, Vec<Event>) {
    static RUN: OnceLock<(RunReport, Vec<Event>)> = OnceLock::new();
    RUN.get_or_init(|| {
        let scenario = scenario("chaos-every-kind.toml");
        replay(&scenario, scenario.seed, 1)
    })
}

/// The span `[start, end)` of the fault with this id, from its events.
fn span(id: u64) -> (u64, u64) {
    let (_, events) = run();
    let start = events.iter().find_map(|e| match &e.body {
        Body::Harness(Harness::Fault(f)) if f.id == id => Some(e.t_ms),
        _ => None,
    });
    let end = events.iter().find_map(|e| match &e.body {
        Body::Harness(Harness::FaultEnd(f)) if f.id == id => Some(e.t_ms),
        _ => None,
    });
    (start.expect("the fault started"), end.expect("the fault ended"))
}

fn outcomes(from: u64, to: u64) -> impl Iterator<Item = (u64, &'static OutcomeSignal)> {
    run().1.iter().filter_map(move |e| match &e.body {
        Body::Engine(Signal::Outcome(o)) if (from..to).contains(&e.t_ms) => Some((e.t_ms, o)),
        _ => None,
    })
}

fn failed_attempts(from: u64, to: u64) -> impl Iterator<Item = &'static AttemptSignal> {
    run().1.iter().filter_map(move |e| match &e.body {
        Body::Engine(Signal::Attempt(a)) if (from..to).contains(&e.t_ms) => Some(a),
        _ => None,
    })
}

fn served_by(from: u64, to: u64, worker: &str) -> usize {
    outcomes(from, to).filter(|(_, o)| o.worker.as_deref() == Some(worker)).count()
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

#[test]
fn the_engine_survives_every_kind_and_recovers() {
    let (report, events) = run();
    assert_eq!(critical_failed(report), Vec::<&str>::new(), "{:#?}", report.results);
    let recovery = report.results.iter().find(|r| r.id == "recovery_time").unwrap();
    assert_eq!(recovery.verdict, Verdict::Pass, "{recovery:?}");
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Harness(Harness::Fault(f)) => Some(f.fault.as_str()),
            _ => None,
        })
        .collect();
    for kind in seedcore_chaos::FaultName::ALL.iter().filter(|k| **k != seedcore_chaos::NOT_SWARMED) {
        assert!(kinds.contains(&kind.as_str()), "{kind:?} was not injected: {kinds:?}");
    }
    // Every fault has its end, and the plan was written first.
    let starts = events.iter().filter(|e| matches!(e.body, Body::Harness(Harness::Fault(_)))).count();
    let ends = events.iter().filter(|e| matches!(e.body, Body::Harness(Harness::FaultEnd(_)))).count();
    assert_eq!((starts, ends), (15, 15));
    assert!(matches!(&events[1].body, Body::Harness(Harness::FaultPlan(p)) if p.faults.len() == 15 && !p.swarm));
}

#[test]
fn pause_no_outcome_comes_from_the_paused_node() {
    let (start, end) = span(1);
    assert_eq!(served_by(start, end, "fast-1"), 0);
    assert!(served_by(start - 20_000, start, "fast-1") > 20, "fast-1 served before the pause");
    assert!(served_by(end, end + 20_000, "fast-1") > 20, "and after it");
    assert!(failed_attempts(start, end).filter(|a| a.worker == "fast-1").count() > 20);
}

#[test]
fn partition_dispatches_across_the_cut_time_out_and_are_retried_on_a_replica() {
    let (start, end) = span(2);
    let cut: Vec<u64> = failed_attempts(start, end + 1_000)
        .filter(|a| a.worker == "fast-2" && a.error.starts_with("timeout"))
        .map(|a| a.task_id)
        .collect();
    assert!(cut.len() > 50, "{} timeouts across the cut", cut.len());
    let outcomes: BTreeMap<u64, &OutcomeSignal> = outcomes(start, end + 10_000).map(|(_, o)| (o.task_id, o)).collect();
    let retried = cut
        .iter()
        .filter(|id| outcomes[id].status == Status::Completed && outcomes[id].worker.as_deref() == Some("fast-1"));
    assert!(retried.count() * 100 >= cut.len() * 95, "tasks cut off are completed by the other replica");
    assert_eq!(served_by(start + 1_000, end, "fast-2"), 0);
}

#[test]
fn isolate_cuts_every_link_of_the_node() {
    let (start, end) = span(3);
    assert_eq!(served_by(start + 1_000, end, "fast-1"), 0);
    assert!(
        failed_attempts(start, end).filter(|a| a.worker == "fast-1" && a.error.starts_with("timeout")).count() > 20
    );
    assert!(served_by(end + 2_000, end + 20_000, "fast-1") > 20);
}

#[test]
fn packet_loss_drops_messages_and_loses_no_task() {
    let (start, end) = span(4);
    let timeouts = failed_attempts(start, end + 1_000).filter(|a| a.error.starts_with("timeout")).count();
    assert!(timeouts > 10, "{timeouts} timeouts under 20 % loss");
    let before = failed_attempts(start - 15_000, start).count();
    assert!(before < timeouts / 4, "{before} failed attempts before the loss");
    assert_eq!(run().0.stats.lost(), 0);
}

#[test]
fn latency_slows_every_message() {
    let (start, end) = span(5);
    let fast = |from, to| {
        median(
            outcomes(from, to)
                .filter(|(_, o)| o.path == Some(Path::Fast) && !o.cache_hit)
                .map(|(_, o)| o.latency_ms)
                .collect(),
        )
    };
    let (before, during) = (fast(start - 15_000, start), fast(start + 2_000, end));
    assert!(before < 200 && during >= 600, "median fast latency {before} ms before, {during} ms during");
}

#[test]
fn backend_errors_fail_attempts_while_they_last() {
    let (start, end) = span(6);
    let errors = |from, to| failed_attempts(from, to).filter(|a| a.error == "backend error").count();
    assert!(errors(start, end) > 30, "{} backend errors", errors(start, end));
    assert!(errors(end + 2_000, end + 12_000) <= 2, "the error rate is back to its baseline");
}

#[test]
fn backend_slow_slows_the_path() {
    let (start, end) = span(7);
    let arrived: BTreeMap<u64, u64> = run()
        .1
        .iter()
        .filter_map(|e| match &e.body {
            Body::Harness(Harness::Arrival(a)) => Some((a.task_id, e.t_ms)),
            _ => None,
        })
        .collect();
    let deep = |inside: bool| -> Vec<u64> {
        outcomes(0, u64::MAX)
            .filter(|(_, o)| o.path == Some(Path::Deep) && o.status == Status::Completed)
            .filter(|(_, o)| (start..end).contains(&arrived[&o.task_id]) == inside)
            .map(|(_, o)| o.latency_ms)
            .collect()
    };
    let (slow, normal) = (deep(true), deep(false));
    assert!(slow.len() >= 2, "deep tasks in the window: {slow:?}");
    assert!(median(slow.clone()) >= 2 * median(normal.clone()), "{slow:?} against {normal:?}");
}

#[test]
fn token_inflation_is_clamped_and_no_charge_exceeds_the_ceiling() {
    let (start, end) = span(8);
    let clamped = outcomes(start, end + 2_000).filter(|(_, o)| o.overrun_clamped).count();
    assert!(clamped > 0, "overrun_clamped outcomes appear");
    assert_eq!(outcomes(0, start).filter(|(_, o)| o.overrun_clamped).count(), 0, "and not before");
    let ceiling = scenario("chaos-every-kind.toml").engine.governor.ceiling_micro_usd;
    assert!(outcomes(0, u64::MAX).all(|(_, o)| o.cost_micro_usd <= ceiling));
}

#[test]
fn bad_promotion_is_scaled_by_graph_mask_and_l_tot_stays_below_l_max() {
    let (start, _) = span(9);
    let (_, events) = run();
    let mask = events.iter().find_map(|e| match &e.body {
        Body::Engine(Signal::Mask(m)) if e.t_ms >= start => Some((e.t_ms, m)),
        _ => None,
    });
    let (at, mask) = mask.expect("GraphMask acted on the promotion");
    assert!(at < start + 1_000);
    assert!(mask.w_scale_ppm < 100_000, "the update was scaled down to {} ppm", mask.w_scale_ppm);
    let l_max = scenario("chaos-every-kind.toml").engine.organism.l_max;
    let external = events.iter().find_map(|e| match &e.body {
        Body::Engine(Signal::LTot(l)) if l.cause == OrganismCause::ExternalPromotion => Some(l.l_tot_ppm),
        _ => None,
    });
    assert!(external.expect("the promotion was applied") < (l_max * 1e6) as i64);
    assert!(run().0.stats.l_tot_max_ppm.unwrap() < (l_max * 1e6) as i64);
}

#[test]
fn ledger_io_error_fails_appends_and_loses_no_committed_receipt() {
    let (start, end) = span(10);
    let (report, events) = run();
    let failed_writes = events
        .iter()
        .filter(|e| matches!(&e.body, Body::Engine(Signal::Ledger(l)) if l.event == LedgerEvent::WriteFailed))
        .map(|e| e.t_ms)
        .collect::<Vec<_>>();
    assert!(!failed_writes.is_empty() && failed_writes.iter().all(|t| (start..=end + 2_000).contains(t)));
    // Outcomes wait for their receipt: none is reported while the disk fails.
    assert_eq!(outcomes(start + 1, end).count(), 0);
    let seqs: Vec<u64> =
        outcomes(0, u64::MAX).map(|(_, o)| o.ledger_seq.expect("every outcome is committed")).collect();
    let mut unique = seqs.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seqs.len(), "no receipt twice");
    let check = report.stats.ledger_check.clone().unwrap();
    assert!(check.ok && check.checked);
    assert_eq!(check.receipts, report.tasks as u64);
}

#[test]
fn crash_restart_and_torn_write_come_back() {
    let (start, end) = span(11);
    assert_eq!(served_by(start + 1_000, end, "fast-2"), 0);
    assert!(served_by(end + 1_000, end + 20_000, "fast-2") > 20);
    let (_, events) = run();
    let started = |node: &str, from: u64| {
        events.iter().any(|e| e.node == node && e.t_ms >= from && matches!(&e.body, Body::Engine(Signal::Node(_))))
    };
    assert!(started("state", span(12).0), "the state node restarted");
    assert!(started("coordinator", span(13).1), "the coordinator restarted after the torn write");
    // A crash without `for` ends at the restart of its node.
    assert_eq!(span(14).1, span(15).0);
    assert!(started("deep-1", span(15).0));
}

/// The ledger writer's bound (ARCHITECTURE.md, "The ledger writer gives up after 10
/// minutes"): a disk that refuses every write for longer halts the coordinator, fail-stop,
/// with the `halt` event and the `ledger_write_failed` alert; the outcomes waiting for the
/// ledger go out without a receipt, later tasks are rejected `halted`, and no task is lost.
#[test]
fn a_ledger_that_stays_unwritable_for_ten_minutes_halts_the_coordinator() {
    let text = r#"
name = "ledger-gives-up"
duration = "20m"
seed = 3
[workload]
source = "generated"
rate_per_s = 1.0
[[chaos.fault]]
at = "1m"
kind = "ledger_io_error"
for = "12m"
"#;
    let (_dir, path) = crate::support::write_scenario(text);
    let scenario = seedcore_sim::load(&path).unwrap();
    let (report, events) = replay(&scenario, 3, 1);
    let halts: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(&e.body, Body::Engine(Signal::Ledger(l)) if l.event == LedgerEvent::Halt))
        .collect();
    assert_eq!(halts.len(), 1, "one halt");
    let halt_ms = halts[0].t_ms;
    assert!(
        (60_000 + 590_000..60_000 + 620_000).contains(&halt_ms),
        "after about 10 minutes of failed writes: {halt_ms}"
    );
    let Body::Engine(Signal::Ledger(halt)) = &halts[0].body else { unreachable!() };
    assert!(halt.error.as_deref().is_some_and(|e| e.contains("ledger writes failed for 600 s")), "{halt:?}");
    assert_eq!(report.stats.alerts.get("ledger_write_failed"), Some(&1));
    let after: Vec<&OutcomeSignal> = outcomes_of(&events).filter(|(t, _)| *t >= halt_ms).map(|(_, o)| o).collect();
    let (arrived_later, waiting): (Vec<_>, Vec<_>) = after.into_iter().partition(|o| o.arrived_ms > halt_ms);
    assert!(!arrived_later.is_empty(), "tasks kept arriving");
    assert!(
        arrived_later.iter().all(|o| o.reason == Some(RejectReason::Halted) && o.ledger_seq.is_none()),
        "every task that arrives after the halt is rejected halted"
    );
    assert!(
        !waiting.is_empty() && waiting.iter().all(|o| o.ledger_seq.is_none()),
        "the waiting outcomes have no receipt"
    );
    assert_eq!(report.stats.lost(), 0);
}

fn outcomes_of(events: &[Event]) -> impl Iterator<Item = (u64, &OutcomeSignal)> {
    events.iter().filter_map(|e| match &e.body {
        Body::Engine(Signal::Outcome(o)) => Some((e.t_ms, o)),
        _ => None,
    })
}
