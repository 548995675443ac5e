//! The names, units and directions of the measures (`measures`), known without a run: what
//! a scenario's `[canary.measure.NAME]` table is checked against when it is read.

use seedcore_engine::memory::Tier;
use seedcore_engine::router::Reason;
use seedcore_engine::task::RejectReason;

/// Which way a measure improves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

impl Better {
    pub fn as_str(self) -> &'static str {
        match self {
            Better::Higher => "higher",
            Better::Lower => "lower",
        }
    }

    pub fn parse(text: &str) -> Option<Better> {
        match text {
            "higher" => Some(Better::Higher),
            "lower" => Some(Better::Lower),
            _ => None,
        }
    }
}

/// Every measure as (name, unit, direction), in the order `measures::all` gives them.
pub fn catalogue() -> Vec<(String, &'static str, Better)> {
    let fixed = |name: &str, unit: &'static str, better: Better| (name.to_string(), unit, better);
    let mut all = vec![
        fixed("fast_ratio", "ratio", Better::Higher),
        fixed("fast_p50_ms", "ms", Better::Lower),
        fixed("fast_p99_ms", "ms", Better::Lower),
        fixed("deep_p50_ms", "ms", Better::Lower),
        fixed("deep_p99_ms", "ms", Better::Lower),
        fixed("spend_micro_usd", "micro-USD", Better::Lower),
        fixed("completed", "tasks", Better::Higher),
        fixed("failed", "tasks", Better::Lower),
        fixed("fast_success_rate", "ratio", Better::Higher),
        fixed("deep_success_rate", "ratio", Better::Higher),
    ];
    for reason in Reason::ALL.into_iter().filter(|r| *r != Reason::Fast) {
        all.push((format!("escalations_{}", reason.as_str()), "tasks", Better::Lower));
    }
    all.push(fixed("rejected", "tasks", Better::Lower));
    for reason in RejectReason::ALL {
        all.push((format!("rejected_{}", reason.as_str()), "tasks", Better::Lower));
    }
    all.push(fixed("l_tot_max", "L_tot", Better::Lower));
    all.push(fixed("cache_hit_rate", "ratio", Better::Higher));
    for tier in Tier::ALL {
        all.push((format!("hit_rate_{}", tier.as_str()), "ratio", Better::Higher));
    }
    all
}

/// The names of every measure: what a `[canary.measure.NAME]` table may name.
pub fn names() -> Vec<String> {
    catalogue().into_iter().map(|(name, _, _)| name).collect()
}

/// The measure's unit and direction, by name.
pub fn describe(name: &str) -> Option<(&'static str, Better)> {
    catalogue().into_iter().find(|(n, _, _)| n == name).map(|(_, unit, better)| (unit, better))
}
