//! The autoscaler's fleet (docs/engine.md 4.10): which worker replicas take work, the rolling
//! demand per path, and the target `clamp(ceil(demand / utilisation), min, max)`.
//!
//! The coordinator owns a `Fleet` and asks it for the replica of each backend call. Every
//! `interval` it samples the demand (the time-averaged calls in flight on the path, divided
//! by one worker's concurrency) and, when it can act (a `Scaler` is given: the simulator),
//! returns what to do: start a stopped replica (it takes work after the start-up delay), or
//! drain the newest active one (it takes no new call; it is stopped once its calls have
//! returned, so no task is lost). Live there is no scaler: the target is reported only.
//!
//! Scaling up follows the target at once; scaling down waits until every target of the
//! window is below the active count, and drains one replica at a time.
//!
//! Guarantees: at least `min` replicas stay active (a drain never takes the count below the
//! target, and the target is at least `min`); a replica is stopped only with no call in
//! flight on it.

use crate::config::AutoscaleConfig;
use crate::task::{Path, PerPath};
use std::collections::VecDeque;

/// What a replica is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replica {
    Active,
    /// Started, taking work after the start-up delay.
    Starting,
    /// Taking no new call; stopped once its calls have returned.
    Draining,
    Stopped,
}

/// What the coordinator must do after a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Start(Path, usize),
    Drain(Path, usize),
}

#[derive(Clone, Debug)]
struct PathFleet {
    replicas: Vec<Replica>,
    /// Calls in flight per replica.
    in_flight: Vec<u32>,
    /// Calls in flight on the path, and their integral over time (call-ms) since the last
    /// sample.
    calls: u32,
    integral: f64,
    last_ms: u64,
    /// Mean calls in flight per sample interval, newest last, over the window.
    samples: VecDeque<f64>,
    demand: f64,
    target: u32,
    /// The targets of the window's samples, newest last: a path scales down only to the
    /// highest of them, so one quiet sample does not stop a replica the next one needs.
    targets: VecDeque<u32>,
    /// Next replica in turn.
    next: usize,
}

impl PathFleet {
    fn advance(&mut self, now_ms: u64) {
        let dt = now_ms.saturating_sub(self.last_ms);
        self.integral += f64::from(self.calls) * dt as f64;
        self.last_ms = self.last_ms.max(now_ms);
    }

    fn count(&self, state: Replica) -> u32 {
        self.replicas.iter().filter(|r| **r == state).count() as u32
    }
}

/// Every replica of both paths.
#[derive(Clone, Debug)]
pub struct Fleet {
    config: AutoscaleConfig,
    /// Whether starts and stops happen (a scaler exists), or the target is only reported.
    acts: bool,
    paths: PerPath<PathFleet>,
    /// Time of the last sample.
    sampled_ms: u64,
}

impl Fleet {
    /// A fleet of `replicas[path]` addresses with the first `initial[path]` active (all of
    /// them when the fleet does not act).
    pub fn new(config: AutoscaleConfig, replicas: PerPath<usize>, initial: PerPath<u32>, acts: bool) -> Fleet {
        let path = |path: Path| {
            let active = if acts { (initial[path] as usize).min(replicas[path]) } else { replicas[path] };
            PathFleet {
                replicas: (0..replicas[path])
                    .map(|r| if r < active { Replica::Active } else { Replica::Stopped })
                    .collect(),
                in_flight: vec![0; replicas[path]],
                calls: 0,
                integral: 0.0,
                last_ms: 0,
                samples: VecDeque::new(),
                demand: 0.0,
                target: active as u32,
                targets: VecDeque::new(),
                next: 0,
            }
        };
        Fleet { acts, paths: PerPath::from_fn(path), sampled_ms: 0, config }
    }

    /// Whether the fleet starts and stops replicas.
    pub fn acts(&self) -> bool {
        self.acts
    }

    /// The replica of a path in a given state.
    pub fn state(&self, path: Path, replica: usize) -> Replica {
        self.paths[path].replicas[replica]
    }

    /// Active replicas of a path.
    pub fn active(&self, path: Path) -> u32 {
        self.paths[path].count(Replica::Active)
    }

    /// The current target and rolling demand (replicas' worth of work) of a path.
    pub fn target(&self, path: Path) -> (u32, f64) {
        let p = &self.paths[path];
        (p.target, p.demand)
    }

    /// The replica for a call: the next active one in turn, or, for a retry, the active one
    /// after the replica that just failed.
    pub fn pick(&mut self, path: Path, after: Option<usize>) -> usize {
        let p = &mut self.paths[path];
        let n = p.replicas.len();
        let start = match after {
            Some(failed) => failed + 1,
            None => p.next,
        };
        let chosen = (0..n)
            .map(|k| (start + k) % n)
            .find(|r| p.replicas[*r] == Replica::Active)
            // Never reached while `min >= 1`; the first replica is the safe fallback.
            .unwrap_or(0);
        if after.is_none() {
            p.next = (chosen + 1) % n;
        }
        chosen
    }

    /// A call to `replica` starts at `now_ms`.
    pub fn call_started(&mut self, path: Path, replica: usize, now_ms: u64) {
        let p = &mut self.paths[path];
        p.advance(now_ms);
        p.calls += 1;
        p.in_flight[replica] += 1;
    }

    /// A call to `replica` returned (or timed out) at `now_ms`.
    pub fn call_ended(&mut self, path: Path, replica: usize, now_ms: u64) {
        let p = &mut self.paths[path];
        p.advance(now_ms);
        p.calls = p.calls.saturating_sub(1);
        p.in_flight[replica] = p.in_flight[replica].saturating_sub(1);
    }

    /// Calls in flight on a replica.
    pub fn in_flight(&self, path: Path, replica: usize) -> u32 {
        self.paths[path].in_flight[replica]
    }

    /// Samples the demand at `now_ms`, recomputes each path's target, and says what to do.
    /// `concurrency` is one worker's concurrent calls per path. Returns the actions and,
    /// per path, whether the target changed.
    pub fn tick(&mut self, now_ms: u64, concurrency: PerPath<u32>) -> (Vec<Action>, PerPath<bool>) {
        let interval = now_ms.saturating_sub(self.sampled_ms).max(1) as f64;
        self.sampled_ms = now_ms;
        let keep = (self.config.window_ms / self.config.interval_ms.max(1)).max(1) as usize;
        let mut actions = Vec::new();
        let mut changed = PerPath::default();
        for path in Path::ALL {
            let p = &mut self.paths[path];
            p.advance(now_ms);
            p.samples.push_back(p.integral / interval);
            p.integral = 0.0;
            while p.samples.len() > keep {
                p.samples.pop_front();
            }
            let mean_calls = p.samples.iter().sum::<f64>() / p.samples.len() as f64;
            p.demand = mean_calls / f64::from(concurrency[path].max(1));
            // Acting, the fleet cannot exceed its addresses; reporting, the target is what an
            // operator should run.
            let cap = if self.acts { p.replicas.len() as u32 } else { u32::MAX };
            let target = self.config.target(path, p.demand).min(cap);
            changed[path] = target != p.target;
            p.target = target;
            p.targets.push_back(target);
            while p.targets.len() > keep {
                p.targets.pop_front();
            }
            if !self.acts {
                continue;
            }
            let keep_up = p.targets.iter().copied().max().unwrap_or(target);
            let up = p.count(Replica::Active) + p.count(Replica::Starting);
            if up < target {
                for r in 0..p.replicas.len() {
                    if p.count(Replica::Active) + p.count(Replica::Starting) >= target {
                        break;
                    }
                    if p.replicas[r] == Replica::Stopped {
                        p.replicas[r] = Replica::Starting;
                        actions.push(Action::Start(path, r));
                    }
                }
            } else if p.count(Replica::Active) > keep_up && p.count(Replica::Draining) == 0 {
                // One replica at a time, the newest first.
                if let Some(r) = (0..p.replicas.len()).rev().find(|r| p.replicas[*r] == Replica::Active) {
                    p.replicas[r] = Replica::Draining;
                    actions.push(Action::Drain(path, r));
                }
            }
        }
        (actions, changed)
    }

    /// Whether nothing can change until a call arrives: no call in flight or in the
    /// window's samples, every path at its target, nothing starting or draining. The
    /// coordinator then parks the autoscaler instead of ticking through idle time.
    pub fn quiet(&self) -> bool {
        self.paths.values().all(|p| {
            p.calls == 0
                && p.samples.iter().all(|s| *s == 0.0)
                && p.count(Replica::Active) == p.target
                && p.count(Replica::Starting) + p.count(Replica::Draining) == 0
        })
    }

    /// The autoscaler wakes from a park at `now_ms`: the idle time is not a sample.
    pub fn resume(&mut self, now_ms: u64) {
        self.sampled_ms = now_ms;
        for p in self.paths.values_mut() {
            p.advance(now_ms);
            p.integral = 0.0;
        }
    }

    /// A started replica finished its start-up delay.
    pub fn ready(&mut self, path: Path, replica: usize) {
        let r = &mut self.paths[path].replicas[replica];
        if *r == Replica::Starting {
            *r = Replica::Active;
        }
    }

    /// A drained replica was stopped.
    pub fn stopped(&mut self, path: Path, replica: usize) {
        let p = &mut self.paths[path];
        debug_assert_eq!(p.in_flight[replica], 0, "a replica is stopped only once drained");
        p.replicas[replica] = Replica::Stopped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AutoscaleConfig {
        AutoscaleConfig {
            fast_min: 2,
            fast_max: 4,
            deep_min: 1,
            deep_max: 2,
            interval_ms: 1_000,
            window_ms: 2_000,
            ..AutoscaleConfig::default()
        }
    }

    #[test]
    fn the_target_follows_the_demand_and_stays_within_bounds() {
        let c = config();
        assert_eq!(c.target(Path::Fast, 0.0), 2);
        assert_eq!(c.target(Path::Fast, 1.7), 3, "ceil(1.7 / 0.8) = 3");
        assert_eq!(c.target(Path::Fast, 100.0), 4);
        assert_eq!(c.target(Path::Deep, f64::INFINITY), 2);
        assert_eq!(c.target(Path::Deep, f64::NAN), 1);
    }

    #[test]
    fn load_starts_replicas_and_idleness_drains_them_one_at_a_time() {
        let mut fleet = Fleet::new(config(), [4, 2].into(), [2, 1].into(), true);
        // 12 calls in flight for a second on fast, 4 concurrent per worker: demand 3.
        for _ in 0..12 {
            let r = fleet.pick(Path::Fast, None);
            fleet.call_started(Path::Fast, r, 0);
        }
        let (actions, changed) = fleet.tick(1_000, [4, 4].into());
        assert_eq!(fleet.target(Path::Fast), (4, 3.0));
        assert_eq!(changed, PerPath { fast: true, deep: false });
        assert_eq!(actions, vec![Action::Start(Path::Fast, 2), Action::Start(Path::Fast, 3)]);
        assert_eq!(fleet.pick(Path::Fast, None), 0, "a starting replica takes no work");
        fleet.ready(Path::Fast, 2);
        fleet.ready(Path::Fast, 3);
        assert_eq!(fleet.active(Path::Fast), 4);
        // One call goes to the new replica 3; every other call returns. After a window of
        // idleness, replicas drain one per tick, the newest first.
        assert_eq!(fleet.pick(Path::Fast, Some(2)), 3);
        fleet.call_started(Path::Fast, 3, 1_000);
        for r in 0..3 {
            while fleet.in_flight(Path::Fast, r) > 0 {
                fleet.call_ended(Path::Fast, r, 1_000);
            }
        }
        let (actions, _) = fleet.tick(3_000, [4, 4].into());
        assert!(actions.is_empty(), "the window still holds the busy sample's target");
        let (actions, _) = fleet.tick(4_000, [4, 4].into());
        assert_eq!(actions, vec![Action::Drain(Path::Fast, 3)]);
        assert_eq!(fleet.state(Path::Fast, 3), Replica::Draining);
        assert!(fleet.in_flight(Path::Fast, 3) > 0, "still busy: not stopped yet");
        assert!((0..20).all(|_| fleet.pick(Path::Fast, None) != 3), "a draining replica takes no new call");
        let (actions, _) = fleet.tick(5_000, [4, 4].into());
        assert!(actions.is_empty(), "one drain at a time");
        while fleet.in_flight(Path::Fast, 3) > 0 {
            fleet.call_ended(Path::Fast, 3, 5_000);
        }
        fleet.stopped(Path::Fast, 3);
        let (actions, _) = fleet.tick(6_000, [4, 4].into());
        assert_eq!(actions, vec![Action::Drain(Path::Fast, 2)]);
        fleet.stopped(Path::Fast, 2);
        let (actions, _) = fleet.tick(7_000, [4, 4].into());
        assert!(actions.is_empty(), "never below min");
        assert_eq!(fleet.active(Path::Fast), 2);
    }

    #[test]
    fn an_idle_fleet_is_quiet_and_a_call_ends_the_quiet() {
        let mut fleet = Fleet::new(config(), [4, 2].into(), [2, 1].into(), true);
        fleet.tick(1_000, [4, 4].into());
        assert!(fleet.quiet());
        fleet.call_started(Path::Deep, 0, 1_500);
        assert!(!fleet.quiet());
        fleet.call_ended(Path::Deep, 0, 1_600);
        fleet.tick(2_000, [4, 4].into());
        assert!(!fleet.quiet(), "the window still holds the busy sample");
        fleet.tick(3_000, [4, 4].into());
        fleet.tick(4_000, [4, 4].into());
        assert!(fleet.quiet());
        fleet.resume(100_000);
        fleet.tick(101_000, [4, 4].into());
        assert_eq!(fleet.target(Path::Deep), (1, 0.0), "the parked time is not averaged in");
    }

    #[test]
    fn a_retry_goes_to_the_next_active_replica_and_a_reporting_fleet_never_acts() {
        let mut fleet = Fleet::new(config(), [4, 2].into(), [2, 1].into(), true);
        assert_eq!(fleet.pick(Path::Fast, Some(1)), 0, "replicas 2 and 3 are stopped");
        let mut report = Fleet::new(config(), [3, 1].into(), [2, 1].into(), false);
        assert_eq!(report.active(Path::Fast), 3, "every address takes work");
        for _ in 0..30 {
            let r = report.pick(Path::Fast, None);
            report.call_started(Path::Fast, r, 0);
        }
        let (actions, changed) = report.tick(1_000, [4, 4].into());
        assert!(actions.is_empty());
        assert!(changed.fast);
        assert_eq!(report.target(Path::Fast).0, 4, "what an operator should run, beyond the 3 there are");
    }
}
