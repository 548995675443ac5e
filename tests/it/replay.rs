//! Replays of the bundled scenarios under the simulator, with faults.

use crate::support::{critical_failed, failed, replay, scenario};
use seedcore_chaos::{Fault, FaultKind, FaultPlan};
use seedcore_engine::node::NodeName;
use seedcore_engine::probe::{LedgerEvent, OrganismCause, Signal};
use seedcore_engine::task::{Path, RejectReason, Status};
use seedcore_sim::event::{Body, Harness};
use std::collections::BTreeMap;

/// The steady scenario passes every critical invariant, its replays agree, and the
/// event log is complete: one arrival and one outcome per task, a receipt for each.
#[test]
fn steady_passes() {
    let scenario = scenario("steady.toml");
    let (report, events) = replay(&scenario, scenario.seed, 2);
    assert_eq!(critical_failed(&report), Vec::<&str>::new(), "{:#?}", report.results);
    assert_eq!(report.replays.replays, vec![report.root]);
    let arrivals = events.iter().filter(|e| matches!(e.body, Body::Harness(Harness::Arrival(_)))).count();
    let outcomes = events.iter().filter(|e| matches!(e.body, Body::Engine(Signal::Outcome(_)))).count();
    assert_eq!((arrivals, outcomes), (report.tasks, report.tasks));
    assert!(events.windows(2).all(|w| w[1].seq == w[0].seq + 1 && w[1].t_ms >= w[0].t_ms));
    let check = report.stats.ledger_check.clone().expect("the ledger is checked");
    assert_eq!(check.receipts, report.tasks as u64);
}

/// The real Azure hour: all 19,366 requests replayed, every critical invariant holds.
#[test]
fn azure_hour_passes() {
    let scenario = scenario("azure-conv.toml");
    let (report, _) = replay(&scenario, 7, 1);
    assert_eq!(report.tasks, 19_366);
    assert_eq!(
        critical_failed(&report).into_iter().filter(|id| *id != "determinism").count(),
        0,
        "{:#?}",
        report.results
    );
    assert_eq!(report.stats.lost(), 0);
}

/// The autoscaler scenario scales: the flash crowd starts fast workers up to the maximum,
/// the quiet part of the day drains them again, each stopped worker only once drained, and
/// no task is lost on the way.
#[test]
fn the_autoscale_scenario_starts_and_drains_workers() {
    let scenario = scenario("autoscale.toml");
    let (report, events) = replay(&scenario, scenario.seed, 1);
    assert_eq!(
        critical_failed(&report).into_iter().filter(|id| *id != "determinism").count(),
        0,
        "{:#?}",
        report.results
    );
    assert_eq!(report.stats.lost(), 0);
    let fast = &report.stats.scale.fast;
    assert_eq!(fast.max_replicas, 10, "the crowd takes the fast path to its maximum: {fast:?}");
    assert!(fast.started >= 8 && fast.stopped >= 8, "{fast:?}");
    assert_eq!(fast.min_replicas, Some(2), "never below the minimum");
    // Every worker stopped had been draining, and no task that arrived after a worker's
    // stop ran on it (a drained worker takes no call).
    let mut stopped_at: BTreeMap<String, u64> = BTreeMap::new();
    let mut draining = std::collections::BTreeSet::new();
    for e in &events {
        match &e.body {
            Body::Engine(Signal::Scale(s)) => match s.event.as_str() {
                "draining" => {
                    draining.insert(s.worker.clone().unwrap());
                }
                "stopped" => {
                    let worker = s.worker.clone().unwrap();
                    assert!(draining.remove(&worker), "{worker} stopped without draining");
                    stopped_at.insert(worker, e.t_ms);
                }
                "ready" => {
                    stopped_at.remove(s.worker.as_ref().unwrap());
                }
                _ => {}
            },
            Body::Engine(Signal::Outcome(o)) => {
                if let Some(stop) = o.worker.as_ref().and_then(|w| stopped_at.get(w)) {
                    assert!(o.arrived_ms <= *stop, "task {} arrived after its worker stopped", o.task_id);
                }
            }
            _ => {}
        }
    }
}

/// Same seed, same root; another seed, another root.
#[test]
fn roots_depend_on_the_seed_only() {
    let mut scenario = scenario("steady.toml");
    scenario.duration_ms = 60_000;
    let (a, _) = replay(&scenario, 3, 2);
    let (b, _) = replay(&scenario, 3, 1);
    let (c, _) = replay(&scenario, 4, 1);
    assert_eq!(a.root, b.root);
    assert_eq!(a.replays.replays, vec![a.root]);
    assert_ne!(a.root, c.root);
}

/// madsim's own determinism check: two runs of the world compared draw by draw.
#[test]
fn madsim_check_determinism() {
    async fn world() -> [u8; 32] {
        let mut scenario = crate::support::scenario("steady.toml");
        scenario.duration_ms = 20_000;
        let tasks = std::sync::Arc::new(scenario.workload.tasks(5, scenario.duration_ms));
        let observer =
            seedcore_sim::world::simulate(scenario, tasks, 5, Default::default()).await.expect("the run completes");
        observer.finish().expect("finishes").root
    }
    let scenario = crate::support::scenario("steady.toml");
    madsim::runtime::Runtime::check_determinism(5, seedcore_sim::world::sim_config(&scenario), world);
}

/// A fast worker is killed mid-run and comes back later: its tasks time out and are
/// retried on the other replica; no task is lost and none is charged twice.
#[test]
fn fast_worker_crash_loses_nothing_and_charges_once() {
    let mut scenario = scenario("steady.toml");
    scenario.duration_ms = 180_000;
    scenario.faults = FaultPlan::new(vec![Fault {
        at_ms: 60_000,
        kind: FaultKind::Crash { node: NodeName::Worker(Path::Fast, 1), down_ms: Some(30_000) },
    }])
    .unwrap();
    let (report, events) = replay(&scenario, 21, 1);
    assert_eq!(critical_failed(&report), Vec::<&str>::new(), "{:#?}", report.results);
    assert_eq!((report.stats.lost(), report.stats.duplicate_outcomes), (0, 0));
    let mut receipts_per_task: BTreeMap<u64, u32> = BTreeMap::new();
    let mut retried = 0;
    for event in &events {
        if let Body::Engine(Signal::Outcome(o)) = &event.body {
            *receipts_per_task.entry(o.task_id).or_default() += u32::from(o.ledger_seq.is_some());
            retried += u32::from(o.attempts > 1);
        }
    }
    assert!(retried > 0, "the crash must have hit tasks in flight");
    assert!(receipts_per_task.values().all(|n| *n == 1));
    assert_eq!(receipts_per_task.len(), report.tasks);
    assert_eq!(report.stats.ledger_check.clone().unwrap().receipts, report.tasks as u64);
}

/// The coordinator restarts under a tight daily budget: it recovers the day's spend from
/// its ledger, keeps rejecting once the budget is spent, and the day never goes over.
#[test]
fn coordinator_restart_keeps_the_daily_spend() {
    let mut scenario = scenario("steady.toml");
    scenario.duration_ms = 240_000;
    scenario.engine.governor.daily_budget_micro_usd = 1_500_000;
    scenario.faults = FaultPlan::new(vec![Fault {
        at_ms: 90_000,
        kind: FaultKind::Crash { node: NodeName::Coordinator, down_ms: Some(5_000) },
    }])
    .unwrap();
    let (report, events) = replay(&scenario, 22, 1);
    assert_eq!(critical_failed(&report), Vec::<&str>::new(), "{:#?}", report.results);
    let crash_ms = events
        .iter()
        .find_map(|e| matches!(&e.body, Body::Harness(Harness::Fault(f)) if f.fault == "crash").then_some(e.t_ms))
        .expect("the crash happened");
    let spent_before: u64 = events
        .iter()
        .filter(|e| e.t_ms <= crash_ms)
        .filter_map(|e| if let Body::Engine(Signal::Outcome(o)) = &e.body { Some(o.cost_micro_usd) } else { None })
        .sum();
    let recovered: Vec<u64> = events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Engine(Signal::Ledger(l)) if l.event == LedgerEvent::Recovered && e.t_ms > crash_ms => {
                l.spent_micro_usd
            }
            _ => None,
        })
        .collect();
    assert!(spent_before > 0);
    assert_eq!(recovered, vec![spent_before], "the restarted coordinator recovers exactly the spend before the crash");
    assert!(
        report.stats.rejected.get(&RejectReason::DailyBudget).copied().unwrap_or(0) > 0,
        "the budget must bind after the restart"
    );
    assert!(report.stats.days.values().all(|d| d.spend_micro_usd <= 1_500_000));
    assert!(!failed(&report).contains(&"daily_budget"));
}

/// The coordinator dies in the middle of a ledger append, leaving half a record at the
/// end of its segment. On restart it skips the torn tail, keeps every committed receipt
/// and goes on in a new segment: no halt, no lost task.
#[test]
fn torn_ledger_write_is_recovered() {
    let mut scenario = scenario("steady.toml");
    scenario.duration_ms = 180_000;
    scenario.faults = FaultPlan::new(vec![Fault {
        at_ms: 60_000,
        kind: FaultKind::TornWrite { node: NodeName::Coordinator, down_ms: Some(5_000) },
    }])
    .unwrap();
    let (report, events) = replay(&scenario, 23, 1);
    assert_eq!(critical_failed(&report), Vec::<&str>::new(), "{:#?}", report.results);
    assert_eq!(report.stats.ledger_halts, 0);
    let check = report.stats.ledger_check.clone().expect("the ledger is checked");
    assert!(check.ok && check.torn_bytes > 0, "{check:?}");
    assert_eq!(check.receipts, report.tasks as u64);
    let recovered = events
        .iter()
        .filter(|e| matches!(&e.body, Body::Engine(Signal::Ledger(l)) if l.event == LedgerEvent::Recovered))
        .count();
    assert_eq!(recovered, 2, "the first start and the restart");
}

/// Two percent of all messages are lost: requests and replies time out and are retried,
/// submissions are repeated, and still every task gets exactly one outcome and one receipt.
#[test]
fn lossy_network_loses_no_task() {
    let mut scenario = scenario("steady.toml");
    scenario.duration_ms = 180_000;
    scenario.network.loss = 0.02;
    let (report, events) = replay(&scenario, 24, 1);
    assert_eq!(critical_failed(&report), Vec::<&str>::new(), "{:#?}", report.results);
    assert_eq!((report.stats.lost(), report.stats.duplicate_outcomes), (0, 0));
    let retried =
        events.iter().filter(|e| matches!(&e.body, Body::Engine(Signal::Outcome(o)) if o.attempts > 1)).count();
    assert!(retried > 0, "lost messages must have caused retries");
    assert_eq!(report.stats.ledger_check.clone().unwrap().receipts, report.tasks as u64);
}

/// Completions reach the organism in batches (`engine.dispatch.complete_batch`), and
/// without a fault none is lost: at every energy sample, each task completed a batch window
/// and a state timeout earlier has updated the organism, and there are never more updates
/// than completed tasks.
#[test]
fn completions_reach_the_organism_within_a_batch_window() {
    let mut scenario = scenario("steady.toml");
    scenario.duration_ms = 120_000;
    let dispatch = &scenario.engine.dispatch;
    let slack = dispatch.complete_batch_ms + dispatch.state_timeout_ms;
    assert!(dispatch.complete_batch_ms > 0, "the default batches");
    let (report, events) = replay(&scenario, scenario.seed, 1);
    assert_eq!(report.stats.lost(), 0);
    let completed: Vec<u64> = events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Engine(Signal::Outcome(o)) if o.status == Status::Completed => Some(e.t_ms),
            _ => None,
        })
        .collect();
    let samples: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Engine(Signal::Energy(s)) if s.cause == OrganismCause::Sample => Some((e.t_ms, s.updates)),
            _ => None,
        })
        .collect();
    assert!(samples.len() >= 5, "{} energy samples", samples.len());
    for (t, updates) in samples {
        let due = completed.iter().filter(|&&c| c + slack <= t).count() as u64;
        assert!(due <= updates, "at {t} ms: {updates} updates, but {due} tasks completed by {} ms", t - slack);
        assert!(updates <= completed.len() as u64, "at {t} ms: {updates} updates of {} tasks", completed.len());
    }
}

/// Half a minute of steady traffic under madsim's own test runner, so that its variables
/// apply: `MADSIM_TEST_SEED` picks the seed, `MADSIM_TEST_NUM` sweeps that many seeds, and
/// `MADSIM_TEST_CHECK_DETERMINISM=1` runs each seed twice and compares every random draw,
/// e.g. `MADSIM_TEST_NUM=20 MADSIM_TEST_CHECK_DETERMINISM=1 cargo simtest madsim_runner`.
#[madsim::test]
async fn madsim_runner_steady_half_minute() {
    let mut scenario = scenario("steady.toml");
    scenario.duration_ms = 30_000;
    let seed = madsim::runtime::Handle::current().seed();
    let tasks = std::sync::Arc::new(scenario.workload.tasks(seed, scenario.duration_ms));
    let policy = scenario.policy.clone();
    let sinks = seedcore_sim::observer::Sinks { stats_window: Some(policy.window), ..Default::default() };
    let observer =
        seedcore_sim::world::simulate(scenario, tasks.clone(), seed, sinks).await.expect("the run completes");
    let stats = observer.finish().expect("finishes").stats.expect("totals were folded");
    let results = seedcore_sim::invariants::evaluate(&stats, &policy, None);
    assert_eq!(seedcore_sim::score::critical_failures(&results), Vec::<&str>::new(), "seed {seed}: {results:#?}");
    assert_eq!((stats.arrivals, stats.lost()), (tasks.len() as u64, 0));
}

/// The observer's folds give the same bytes beside the simulation (`run_once`, on a
/// thread of their own) as on its thread (`simulate`): the same root, event log,
/// `tasks.csv` and totals, for a run whose event count is no multiple of the batch.
#[test]
fn the_observer_folds_the_same_beside_the_simulation_as_on_its_thread() {
    use seedcore_sim::observer::Sinks;
    let mut scenario = scenario("steady.toml");
    scenario.duration_ms = 20_000;
    let tasks = std::sync::Arc::new(scenario.workload.tasks(5, scenario.duration_ms));
    let dir = tempfile::tempdir().unwrap();
    let sinks = |name: &str| Sinks {
        events: Some(std::fs::File::create(dir.path().join(format!("{name}.jsonl"))).unwrap()),
        tasks: Some(std::fs::File::create(dir.path().join(format!("{name}.csv"))).unwrap()),
        stats_window: Some(scenario.policy.window),
    };
    let beside = seedcore_sim::world::run_once(&scenario, tasks.clone(), 5, sinks("beside")).unwrap();
    let runtime = madsim::runtime::Runtime::with_seed_and_config(5, seedcore_sim::world::sim_config(&scenario));
    let observer = runtime.block_on(seedcore_sim::world::simulate(scenario.clone(), tasks, 5, sinks("here"))).unwrap();
    drop(runtime);
    let here = observer.finish().unwrap();
    assert_eq!(beside.root, here.root);
    assert_eq!(beside.events, here.events);
    assert_ne!(here.events % 512, 0, "pick a run whose last batch is partial");
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    assert_eq!(read("beside.jsonl"), read("here.jsonl"));
    assert_eq!(read("beside.csv"), read("here.csv"));
    assert_eq!(format!("{:?}", beside.stats), format!("{:?}", here.stats));
    assert!(observer.finish().is_err(), "an observer finishes once");
}

/// An observer dropped unfinished (a run that failed) ends its folding thread: the drop
/// returns, and every event it was given is in the file, the partial last batch too.
#[test]
fn an_observer_dropped_unfinished_ends_its_thread() {
    use seedcore_sim::event::RunEnd;
    use seedcore_sim::observer::{Folding, Observer, Sinks};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let sinks = Sinks { events: Some(std::fs::File::create(&path).unwrap()), ..Default::default() };
    let folding = Folding::start(sinks).unwrap();
    let runtime = madsim::runtime::Runtime::new();
    runtime.block_on(async move {
        let inside = Folding::start(Sinks::default()).err().expect("no OS thread inside a simulation");
        assert!(inside.to_string().contains("outside the simulation"), "{inside}");
        let observer = Observer::beside(folding);
        for _ in 0..1_000 {
            observer.harness("harness", Harness::RunEnd(RunEnd { arrivals: 0, unanswered: 0, sim_ms: 0 }));
        }
        drop(observer);
    });
    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
    assert_eq!(lines, 1_000);
}
