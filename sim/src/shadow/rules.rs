//! The rules of a canary as a scenario's `[canary]` table sets them (docs/certification.md
//! 8.9): the measures judged, the direction in which each is better, its tolerance and its
//! warning level. Read with the scenario; applied by `canary`.

use super::catalogue::{self, Better};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[canary]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanarySpec {
    /// The relative worsening beyond which a measure rolls back (default 0.10).
    pub tolerance: Option<f64>,
    /// The relative worsening beyond which it is a condition (default half the tolerance).
    pub warn: Option<f64>,
    /// The measures judged, by name; without any, `DEFAULT_MEASURES`.
    #[serde(default)]
    pub measure: BTreeMap<String, MeasureSpec>,
}

/// `[canary.measure.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureSpec {
    /// `higher` or `lower`: the direction in which the measure is better.
    pub better: Option<String>,
    pub tolerance: Option<f64>,
    pub warn: Option<f64>,
}

/// Seed 001's tolerance: "performance drop > 10 % vs baseline".
pub const DEFAULT_TOLERANCE: f64 = 0.10;

/// The measures judged when `[canary]` names none: the path split, both paths' tails and
/// success rates, and the money.
pub const DEFAULT_MEASURES: [&str; 6] =
    ["fast_ratio", "fast_p99_ms", "deep_p99_ms", "spend_micro_usd", "fast_success_rate", "deep_success_rate"];

/// One measure's rule.
#[derive(Clone, Debug, PartialEq)]
pub struct MeasureRule {
    pub measure: String,
    pub better: Better,
    /// Relative worsening beyond which the candidate rolls back.
    pub tolerance: f64,
    /// Relative worsening beyond which it is promoted with conditions.
    pub warn: f64,
}

/// The rules of a canary, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryRules {
    pub measures: Vec<MeasureRule>,
}

impl Default for CanaryRules {
    fn default() -> CanaryRules {
        CanaryRules {
            measures: DEFAULT_MEASURES
                .iter()
                .map(|name| MeasureRule {
                    measure: name.to_string(),
                    better: catalogue::describe(name).map_or(Better::Lower, |(_, b)| b),
                    tolerance: DEFAULT_TOLERANCE,
                    warn: DEFAULT_TOLERANCE / 2.0,
                })
                .collect(),
        }
    }
}

/// Seed 000's rollback criteria: each candidate run must hold them (`L_tot` at or above 1.0
/// is `lipschitz_bound`'s failure).
pub const ROLLBACK_CRITERIA: [&str; 4] =
    ["rollback_fast_path", "rollback_freshness", "rollback_safety", "lipschitz_bound"];
