//! The surprise router with its escalation budget (docs/engine.md 4.2).
//!
//! Hard escalations (a valve breach, `needs_planning`) always go deep. Soft escalations
//! (surprise alone) go deep only while the deep share of the last `window` decisions stays at
//! or below `1 - fast_target`; otherwise they run fast and are recorded as deferred.

use crate::config::RouterConfig;
use crate::task::Path;
use std::collections::VecDeque;

/// The six router signals, each in [0, 1].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RouterInputs {
    /// x1: `1 - mw_hit_rate`.
    pub cache_miss: f64,
    /// x2: `S / h` from the valve, 1.0 on breach.
    pub valve: f64,
    /// x3: the task's own drift.
    pub drift: f64,
    /// x4: organism state change.
    pub state_change: f64,
    /// x5: uncertainty from authority and planning.
    pub uncertainty: f64,
    /// x6: queue and priority pressure.
    pub pressure: f64,
}

impl RouterInputs {
    /// The inputs in the order of the weights.
    pub fn as_array(&self) -> [f64; 6] {
        [self.cache_miss, self.valve, self.drift, self.state_change, self.uncertainty, self.pressure]
    }
}

/// Why a task took its path (serialised as its `as_str` name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Nothing asked for the deep path.
    Fast,
    /// The valve breached.
    Breach,
    /// The task needs planning.
    Planning,
    /// Surprise at or above `tau_deep`, within the escalation budget.
    Surprise,
    /// Surprise at or above `tau_deep`, but the budget was spent: ran fast.
    Deferred,
}

impl Reason {
    /// Every reason, for summaries.
    pub const ALL: [Reason; 5] = [Reason::Fast, Reason::Breach, Reason::Planning, Reason::Surprise, Reason::Deferred];

    /// The name used in files and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Fast => "fast",
            Reason::Breach => "breach",
            Reason::Planning => "planning",
            Reason::Surprise => "surprise",
            Reason::Deferred => "deferred",
        }
    }

    /// Parses the name used in files and events.
    pub fn parse(name: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether the escalation is a hard one, which no budget can refuse.
    pub fn is_hard(self) -> bool {
        matches!(self, Reason::Breach | Reason::Planning)
    }
}

/// A routing decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    pub path: Path,
    pub reason: Reason,
    pub surprise: f64,
}

/// The router and its sliding window of recent paths.
#[derive(Clone, Debug)]
pub struct Router {
    config: RouterConfig,
    /// Whether each of the last `window` committed decisions went deep, oldest first.
    recent_deep: VecDeque<bool>,
    /// Number of `true` in `recent_deep`.
    deep_in_window: usize,
}

impl Router {
    /// A router with an empty window.
    pub fn new(config: RouterConfig) -> Router {
        assert!(config.window >= 1);
        let window = config.window;
        Router { config, recent_deep: VecDeque::with_capacity(window), deep_in_window: 0 }
    }

    /// `sum(w_i * x_i)` with every input clamped to [0, 1].
    pub fn surprise(&self, inputs: &RouterInputs) -> f64 {
        let xs = inputs.as_array();
        self.config.weights.iter().zip(xs).map(|(w, x)| w * if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }).sum()
    }

    /// Whether one more deep decision keeps the deep share of the window within budget.
    fn budget_allows(&self) -> bool {
        let in_window = self.recent_deep.len().min(self.config.window - 1);
        // The window after this decision holds `in_window` older decisions plus this one;
        // the oldest one drops out if the window is full.
        let dropped = usize::from(self.recent_deep.len() == self.config.window && self.recent_deep[0]);
        let deep_after = self.deep_in_window - dropped + 1;
        let budget = (1.0 - self.config.fast_target) * (in_window + 1) as f64;
        deep_after as f64 <= budget + 1e-9
    }

    /// Decides a path. The decision is not counted in the window until `commit`, because
    /// the governor may still move a soft escalation to the fast path.
    pub fn decide(&self, breached: bool, needs_planning: bool, inputs: &RouterInputs) -> Decision {
        let surprise = self.surprise(inputs);
        let (path, reason) = if breached {
            (Path::Deep, Reason::Breach)
        } else if needs_planning {
            (Path::Deep, Reason::Planning)
        } else if surprise >= self.config.tau_deep {
            if self.budget_allows() {
                (Path::Deep, Reason::Surprise)
            } else {
                (Path::Fast, Reason::Deferred)
            }
        } else {
            (Path::Fast, Reason::Fast)
        };
        if reason == Reason::Surprise {
            assert!(surprise >= self.config.tau_deep);
        }
        Decision { path, reason, surprise }
    }

    /// Counts a decision's final path in the window.
    pub fn commit(&mut self, path: Path) {
        if self.recent_deep.len() == self.config.window {
            let oldest = self.recent_deep.pop_front().expect("window is full");
            self.deep_in_window -= usize::from(oldest);
        }
        let deep = path == Path::Deep;
        self.recent_deep.push_back(deep);
        self.deep_in_window += usize::from(deep);
        assert!(self.deep_in_window <= self.recent_deep.len());
    }

    /// Share of deep decisions in the window.
    pub fn deep_share(&self) -> f64 {
        if self.recent_deep.is_empty() {
            0.0
        } else {
            self.deep_in_window as f64 / self.recent_deep.len() as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn inputs(level: f64) -> RouterInputs {
        RouterInputs {
            cache_miss: level,
            valve: level,
            drift: level,
            state_change: level,
            uncertainty: level,
            pressure: level,
        }
    }

    #[test]
    fn hard_escalations_ignore_the_budget() {
        let mut router = Router::new(RouterConfig { window: 10, ..RouterConfig::default() });
        for _ in 0..10 {
            let decision = router.decide(false, true, &inputs(0.0));
            assert_eq!((decision.path, decision.reason), (Path::Deep, Reason::Planning));
            router.commit(decision.path);
        }
        assert_eq!(router.deep_share(), 1.0);
        let decision = router.decide(false, false, &inputs(1.0));
        assert_eq!((decision.path, decision.reason), (Path::Fast, Reason::Deferred));
    }

    #[test]
    fn surprise_is_the_weighted_sum() {
        let router = Router::new(RouterConfig::default());
        assert!((router.surprise(&inputs(1.0)) - 1.0).abs() < 1e-12);
        assert!((router.surprise(&inputs(0.5)) - 0.5).abs() < 1e-12);
        assert_eq!(router.surprise(&inputs(f64::NAN)), 0.0);
    }

    proptest! {
        #[test]
        fn soft_escalations_keep_the_deep_share_within_budget(levels in proptest::collection::vec(0.0..1.0f64, 1..3000)) {
            let config = RouterConfig { window: 100, ..RouterConfig::default() };
            let mut router = Router::new(config.clone());
            for level in levels {
                let decision = router.decide(false, false, &inputs(level));
                prop_assert!(decision.path == Path::Fast || decision.reason == Reason::Surprise);
                router.commit(decision.path);
                prop_assert!(router.deep_share() <= 1.0 - config.fast_target + 1e-9);
            }
        }
    }
}
