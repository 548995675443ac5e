//! The OCPS valve: a one-sided CUSUM change detector over task drift (docs/engine.md 4.1).
//!
//! Guarantees: `S` stays in `[0, h]` between tasks; a breach happens exactly when the
//! accumulated excess drift goes above `h`, and resets `S` to `reset_fraction * h`.

use crate::config::ValveConfig;

/// What one task did to the valve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ValveStep {
    /// `S` after this task, before any reset (so a breach shows the value that crossed `h`).
    pub s: f64,
    /// Whether this task breached.
    pub breached: bool,
}

/// The valve's state and counters.
#[derive(Clone, Debug)]
pub struct Valve {
    config: ValveConfig,
    /// The CUSUM statistic.
    s: f64,
    /// Tasks seen.
    tasks: u64,
    /// Breaches so far.
    breaches: u64,
}

impl Valve {
    /// A valve at rest.
    pub fn new(config: ValveConfig) -> Valve {
        assert!(config.h > 0.0, "h must be positive");
        assert!((0.0..1.0).contains(&config.reset_fraction), "reset_fraction in [0, 1)");
        Valve { config, s: 0.0, tasks: 0, breaches: 0 }
    }

    /// Feeds one task's drift. A NaN drift counts as 0: a broken signal must not escalate
    /// everything or poison `S`.
    pub fn observe(&mut self, drift: f64) -> ValveStep {
        let x = if drift.is_nan() { 0.0 } else { drift.clamp(0.0, 1.0) };
        self.tasks += 1;
        self.s = (self.s + x - self.config.nu).max(0.0);
        let step = if self.s > self.config.h {
            self.breaches += 1;
            let s = self.s;
            self.s = self.config.reset_fraction * self.config.h;
            ValveStep { s, breached: true }
        } else {
            ValveStep { s: self.s, breached: false }
        };
        assert!(self.s >= 0.0 && self.s <= self.config.h, "S out of [0, h]: {}", self.s);
        step
    }

    /// The CUSUM statistic now.
    pub fn s(&self) -> f64 {
        self.s
    }

    /// The threshold.
    pub fn h(&self) -> f64 {
        self.config.h
    }

    /// Breaches so far.
    pub fn breaches(&self) -> u64 {
        self.breaches
    }

    /// Tasks seen so far.
    pub fn tasks(&self) -> u64 {
        self.tasks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn breach_resets_to_fraction_of_h() {
        let mut valve = Valve::new(ValveConfig::default());
        let mut breached_at = None;
        for i in 0..10 {
            if valve.observe(1.0).breached {
                breached_at = Some(i);
                break;
            }
        }
        // 0.8 excess per task: 0.8, 1.6, 2.4, 3.2 > 2.5 on the fourth task.
        assert_eq!(breached_at, Some(3));
        assert!((valve.s() - 2.0).abs() < 1e-12);
    }

    #[test]
    fn drift_at_or_below_nu_never_accumulates() {
        let mut valve = Valve::new(ValveConfig::default());
        for _ in 0..10_000 {
            assert!(!valve.observe(0.2).breached);
        }
        assert_eq!(valve.s(), 0.0);
    }

    proptest! {
        #[test]
        fn s_stays_in_range_and_breach_means_crossing(drifts in proptest::collection::vec(prop_oneof![any::<f64>(), 0.0..1.0f64], 1..400)) {
            let config = ValveConfig::default();
            let mut valve = Valve::new(config.clone());
            for drift in drifts {
                let before = valve.s();
                let step = valve.observe(drift);
                prop_assert!(valve.s() >= 0.0 && valve.s() <= config.h);
                let x = if drift.is_nan() { 0.0 } else { drift.clamp(0.0, 1.0) };
                let expected = (before + x - config.nu).max(0.0);
                prop_assert!((step.s - expected).abs() < 1e-9);
                prop_assert_eq!(step.breached, expected > config.h);
            }
        }
    }
}
