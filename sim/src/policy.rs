//! What a certification policy changes against another: the scenario's against the
//! defaults of docs/certification.md 8.1 (recorded in every certificate), or against a
//! frozen policy kept by the governance owner (`certify --frozen-policy`, 8.7).

use crate::invariant_id::InvariantId;
use crate::scenario::{InvariantPolicy, Policy};
use std::collections::BTreeMap;

/// What a change does to the bar a run must clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effect {
    /// A threshold a run passes more easily, or a wider warning band.
    Loosened,
    /// The opposite: harder to pass.
    Tightened,
    /// Another weight: the score is weighed differently (any direction can raise it).
    Reweighted,
    /// Another analysis window for the fast-path ratio.
    Changed,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Loosened => "loosened",
            Effect::Tightened => "tightened",
            Effect::Reweighted => "reweighted",
            Effect::Changed => "changed",
        }
    }

    /// Whether a frozen policy lets it through: only a bar made harder to clear.
    pub fn allowed_under_freeze(self) -> bool {
        self == Effect::Tightened
    }
}

/// One setting of one invariant that differs.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub invariant: InvariantId,
    /// `threshold`, `warn`, `weight`, or `window` (the fast-path ratio's).
    pub setting: &'static str,
    pub from: f64,
    pub to: f64,
    pub effect: Effect,
}

impl Policy {
    /// The defaults of docs/certification.md 8.1 for an engine whose router window is
    /// `window` (the policy's window defaults to it).
    pub fn defaults(window: usize) -> Policy {
        let invariants: BTreeMap<InvariantId, InvariantPolicy> = InvariantId::ALL
            .into_iter()
            .map(|id| {
                let d = id.defaults();
                (id, InvariantPolicy { threshold: d.threshold, warn: d.warn, weight: d.weight })
            })
            .collect();
        Policy { window, invariants }
    }

    /// Every setting of `self` that differs from `base`, in invariant order.
    pub fn changes_from(&self, base: &Policy) -> Vec<Change> {
        let mut changes = Vec::new();
        for (id, now) in &self.invariants {
            let Some(before) = base.invariants.get(id) else { continue };
            let id = *id;
            if now.threshold != before.threshold {
                // Ratios must reach their threshold; every other measure must stay under it.
                let easier =
                    if id.at_least() { now.threshold < before.threshold } else { now.threshold > before.threshold };
                let effect = if easier { Effect::Loosened } else { Effect::Tightened };
                changes.push(Change {
                    invariant: id,
                    setting: "threshold",
                    from: before.threshold,
                    to: now.threshold,
                    effect,
                });
            }
            if now.warn != before.warn {
                let effect = if now.warn > before.warn { Effect::Loosened } else { Effect::Tightened };
                changes.push(Change { invariant: id, setting: "warn", from: before.warn, to: now.warn, effect });
            }
            if now.weight != before.weight {
                let (from, to) = (before.weight, now.weight);
                changes.push(Change { invariant: id, setting: "weight", from, to, effect: Effect::Reweighted });
            }
        }
        if self.window != base.window {
            changes.push(Change {
                invariant: InvariantId::FastPathRatio,
                setting: "window",
                from: base.window as f64,
                to: self.window as f64,
                effect: Effect::Changed,
            });
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(id: InvariantId, f: impl FnOnce(&mut InvariantPolicy)) -> Policy {
        let mut policy = Policy::defaults(256);
        f(policy.invariants.get_mut(&id).expect("every invariant has a policy"));
        policy
    }

    #[test]
    fn the_direction_of_a_change_follows_the_invariant() {
        let defaults = Policy::defaults(256);
        assert!(defaults.changes_from(&defaults).is_empty());
        let lower_ratio = with(InvariantId::FastPathRatio, |p| p.threshold = 0.5).changes_from(&defaults);
        assert_eq!(lower_ratio.len(), 1);
        assert_eq!((lower_ratio[0].setting, lower_ratio[0].effect), ("threshold", Effect::Loosened));
        let higher_ratio = with(InvariantId::Determinism, |p| p.threshold = 1.0).changes_from(&defaults);
        assert_eq!(higher_ratio[0].effect, Effect::Tightened);
        let slower = with(InvariantId::FastLatencyP99, |p| p.threshold = 500.0).changes_from(&defaults);
        assert_eq!(slower[0].effect, Effect::Loosened);
        let faster = with(InvariantId::FastLatencyP99, |p| p.threshold = 100.0).changes_from(&defaults);
        assert_eq!(faster[0].effect, Effect::Tightened);
        let wider = with(InvariantId::RecoveryTime, |p| p.warn = 60_000.0).changes_from(&defaults);
        assert_eq!((wider[0].setting, wider[0].effect), ("warn", Effect::Loosened));
        let weighed = with(InvariantId::FastSuccessRate, |p| p.weight = 0.0).changes_from(&defaults);
        assert_eq!((weighed[0].setting, weighed[0].effect), ("weight", Effect::Reweighted));
        let window = Policy::defaults(512).changes_from(&defaults);
        assert_eq!((window[0].setting, window[0].effect), ("window", Effect::Changed));
        assert!(Effect::Tightened.allowed_under_freeze());
        assert!([Effect::Loosened, Effect::Reweighted, Effect::Changed].iter().all(|e| !e.allowed_under_freeze()));
    }
}
