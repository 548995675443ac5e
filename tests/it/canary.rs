//! Every critical invariant has a canary scenario built to violate it; each must fail
//! exactly its own critical invariant. A checker that cannot fail proves nothing.

use crate::support::{critical_failed, replay, scenario};

fn canary(invariant: &str) {
    let file = format!("canary-{}.toml", invariant.replace('_', "-"));
    let scenario = scenario(&file);
    let (report, _) = replay(&scenario, scenario.seed, scenario.harness.replays);
    assert_eq!(critical_failed(&report), vec![invariant], "{file}: {:#?}", report.results);
}

#[test]
fn fast_path_ratio() {
    canary("fast_path_ratio");
}

#[test]
fn lipschitz_bound() {
    canary("lipschitz_bound");
}

#[test]
fn cost_ceiling() {
    canary("cost_ceiling");
}

#[test]
fn daily_budget() {
    canary("daily_budget");
}

#[test]
fn rate_limits() {
    canary("rate_limits");
}

/// Also a regression test. Postmortem: the canary first leaked only the parity of the
/// process-wide run counter; with tests running in parallel, other tests' runs could give
/// both runs of the canary the same parity, and the checker looked broken when the canary
/// was. Each run now shifts arrivals by its own counter value.
#[test]
fn determinism() {
    canary("determinism");
}

#[test]
fn no_lost_tasks() {
    canary("no_lost_tasks");
}

/// Also a regression test. Postmortem: the first version of the world kept the
/// `NodeHandle` of each node from before any restart; spawning the corruption and the
/// final ledger check on it ran them on the killed incarnation, where tasks never run, and
/// the run panicked with a cancelled join. The world now asks madsim for the node's
/// current handle (`World::current`).
#[test]
fn ledger_integrity() {
    canary("ledger_integrity");
}

/// `memory_freshness` is not critical, so its canary fails it alone among all invariants,
/// and every stale answer came from the tier that was allowed to keep it (Mlt).
#[test]
fn memory_freshness() {
    use seedcore_engine::memory::Tier;
    use seedcore_engine::probe::Signal;
    use seedcore_sim::event::Body;
    let scenario = scenario("canary-memory-freshness.toml");
    let (report, events) = replay(&scenario, scenario.seed, scenario.harness.replays);
    assert_eq!(crate::support::failed(&report), vec!["memory_freshness"], "{:#?}", report.results);
    let stale: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Engine(Signal::Outcome(o)) if o.cache_age_ms.is_some_and(|age| age > 3_000) => Some(o.cache_tier),
            _ => None,
        })
        .collect();
    assert!(!stale.is_empty(), "the canary must serve stale entries");
    assert!(stale.iter().all(|t| *t == Some(Tier::Mlt)), "{stale:?}");
}

/// Seed 000's rollback criteria are judged over sustained stretches of simulated time. Each
/// canary breaks its own criterion, and only what that implies (`also`), with every
/// critical invariant passing: a whole-run verdict alone would have let each through.
fn rollback_canary(invariant: &str, also: &[&str]) {
    let file = format!("canary-{}.toml", invariant.replace('_', "-"));
    let scenario = scenario(&file);
    let (report, _) = replay(&scenario, scenario.seed, 1);
    let mut expected: Vec<&str> = also.to_vec();
    expected.push(invariant);
    assert_eq!(crate::support::failed(&report), expected, "{file}: {:#?}", report.results);
    assert!(critical_failed(&report).is_empty(), "{file}: {:#?}", report.results);
}

/// The fast path falls below 85 % for twelve minutes of a two-hour run whose overall
/// ratio still passes `fast_path_ratio`.
#[test]
fn rollback_fast_path() {
    rollback_canary("rollback_fast_path", &[]);
}

/// Entries older than 5 s are served for ten minutes; `memory_freshness` (3 s) fails too.
#[test]
fn rollback_freshness() {
    rollback_canary("rollback_freshness", &["memory_freshness"]);
}

/// Ten minutes of fast-backend errors lose more than 1 % of that window's tasks; the hour's
/// success rate still passes.
#[test]
fn rollback_safety() {
    rollback_canary("rollback_safety", &[]);
}

/// Long prompts on the fast path: prefill takes the first token past its objective in the
/// tail, and nothing else breaks.
#[test]
fn ttft_p99() {
    let scenario = scenario("canary-ttft-p99.toml");
    let (report, _) = replay(&scenario, scenario.seed, 1);
    assert_eq!(crate::support::failed(&report), vec!["ttft_p99"], "{:#?}", report.results);
}

/// The canaries cover every critical invariant of the policy, every rollback criterion and
/// `ttft_p99`.
#[test]
fn every_critical_invariant_has_a_canary() {
    for id in seedcore_sim::invariant_id::InvariantId::ALL {
        if id.critical() || id.is_rollback() || id == seedcore_sim::invariant_id::InvariantId::TtftP99 {
            let path = crate::support::scenario_path(&format!("canary-{}.toml", id.as_str().replace('_', "-")));
            assert!(path.exists(), "no canary for {id}: {}", path.display());
        }
    }
}
