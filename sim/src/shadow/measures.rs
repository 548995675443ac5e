//! The measures a shadow run shows side by side and a canary judges (docs/certification.md
//! 8.9): each a figure of one run, folded from its events alone, with the direction in
//! which it is better.
//!
//! Guarantees: a measure's value is a function of the run's `Stats`, so a verifier that
//! folds the bundled event log gets the same value bit for bit; values are written as
//! decimal strings (`text`), never as JSON floats.

pub use super::catalogue::{describe, names, Better};
use crate::invariants::Stats;
use seedcore_engine::memory::Tier;
use seedcore_engine::router::Reason;
use seedcore_engine::task::{Path, RejectReason};

/// One measure of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub name: String,
    pub unit: &'static str,
    pub better: Better,
    /// `None` when the run had nothing to measure (no deep task for `deep_p99_ms`).
    pub value: Option<f64>,
}

impl Value {
    /// The value as written: ratios with six decimals, everything else whole.
    pub fn text(&self) -> String {
        text(self.unit, self.value)
    }
}

/// A value as written, in `unit`; empty when there is none.
pub fn text(unit: &str, value: Option<f64>) -> String {
    match value {
        None => String::new(),
        Some(v) if unit == "ratio" || unit == "L_tot" => format!("{v:.6}"),
        Some(v) => format!("{v:.0}"),
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn quantile(stats: &Stats, path: Path, q: f64) -> Option<f64> {
    let h = &stats.latency_ms[path];
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64)
}

/// Every measure of a run, in the catalogue's order (`catalogue::catalogue`, which names
/// them and gives their units and directions).
pub fn all(stats: &Stats) -> Vec<Value> {
    super::catalogue::catalogue()
        .into_iter()
        .zip(values(stats))
        .map(|((name, unit, better), value)| Value { name, unit, better, value })
        .collect()
}

/// The values of `all`, in the catalogue's order.
fn values(stats: &Stats) -> Vec<Option<f64>> {
    let answered = stats.completed.total() + stats.failed.total();
    let mut values = vec![
        ratio(stats.completed.fast, answered),
        quantile(stats, Path::Fast, 0.50),
        quantile(stats, Path::Fast, 0.99),
        quantile(stats, Path::Deep, 0.50),
        quantile(stats, Path::Deep, 0.99),
        Some(stats.total_cost_micro_usd as f64),
        Some(stats.completed.total() as f64),
        Some(stats.failed.total() as f64),
        ratio(stats.completed.fast, stats.completed.fast + stats.failed.fast),
        ratio(stats.completed.deep, stats.completed.deep + stats.failed.deep),
    ];
    for reason in Reason::ALL.into_iter().filter(|r| *r != Reason::Fast) {
        values.push(Some(stats.decisions.get(&reason).copied().unwrap_or(0) as f64));
    }
    values.push(Some(stats.rejected.values().sum::<u64>() as f64));
    for reason in RejectReason::ALL {
        values.push(Some(stats.rejected.get(&reason).copied().unwrap_or(0) as f64));
    }
    values.push(stats.l_tot_max_ppm.map(|p| p as f64 / 1e6));
    values.push(ratio(stats.cache_hits, stats.completed.fast));
    for tier in Tier::ALL {
        values.push(ratio(stats.tier_hits[tier.index()], stats.completed.fast));
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_measure_has_a_value_a_unique_name_and_reads_back() {
        assert_eq!(values(&Stats::new(1)).len(), super::super::catalogue::catalogue().len());
        let names = names();
        let unique: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for name in &names {
            assert!(describe(name).is_some(), "{name}");
        }
        assert_eq!(describe("spend_micro_usd"), Some(("micro-USD", Better::Lower)));
        assert_eq!(describe("fast_ratio"), Some(("ratio", Better::Higher)));
        assert!(names.contains(&"escalations_surprise".to_string()) && names.contains(&"hit_rate_mw".to_string()));
    }

    #[test]
    fn values_are_written_as_decimals_without_floats_noise() {
        assert_eq!(text("ratio", Some(0.9)), "0.900000");
        assert_eq!(text("ms", Some(181.0)), "181");
        assert_eq!(text("ms", None), "");
    }
}
