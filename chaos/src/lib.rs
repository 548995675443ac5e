//! The fault model and its injector (SPEC 7). This is the start of the chaos crate: timed
//! fault plans with crash, restart and ledger corruption, and the injector that applies a
//! plan to a world through the `FaultTarget` trait. Swarm mode, campaigns and the shrinker
//! build on these types.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a fault does.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FaultKind {
    /// Kill a node; it stays down until a `restart`, or for `down_ms` if set.
    Crash { node: String, down_ms: Option<u64> },
    /// Restart a killed node (its init runs again; its files survive).
    Restart { node: String },
    /// Flip one byte inside the first committed receipt of a node's ledger. A later
    /// restart must detect it and halt (the `ledger_integrity` canary).
    LedgerCorrupt { node: String },
    /// Kill a node in the middle of a ledger append: its last segment ends in half a
    /// record. Recovery must skip the torn tail and go on. Down for `down_ms` if set.
    TornWrite { node: String, down_ms: Option<u64> },
}

impl FaultKind {
    /// The fault's name in events.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Crash { .. } => "crash",
            FaultKind::Restart { .. } => "restart",
            FaultKind::LedgerCorrupt { .. } => "ledger_corrupt",
            FaultKind::TornWrite { .. } => "torn_write",
        }
    }

    /// The node the fault acts on.
    pub fn node(&self) -> &str {
        match self {
            FaultKind::Crash { node, .. }
            | FaultKind::Restart { node }
            | FaultKind::LedgerCorrupt { node }
            | FaultKind::TornWrite { node, .. } => node,
        }
    }
}

/// A fault at a time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fault {
    /// Scenario time of the fault.
    pub at_ms: u64,
    pub kind: FaultKind,
}

/// A timed list of faults, sorted by time (stable for equal times).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultPlan {
    faults: Vec<Fault>,
}

impl FaultPlan {
    /// A plan from faults in any order. A crash with `down_ms` is expanded into the crash
    /// and its restart.
    pub fn new(faults: Vec<Fault>) -> FaultPlan {
        let mut expanded = Vec::with_capacity(faults.len());
        for fault in faults {
            if let FaultKind::Crash { node, down_ms: Some(down) } | FaultKind::TornWrite { node, down_ms: Some(down) } =
                &fault.kind
            {
                expanded.push(Fault { at_ms: fault.at_ms + down, kind: FaultKind::Restart { node: node.clone() } });
            }
            expanded.push(fault);
        }
        expanded.sort_by_key(|f| f.at_ms);
        FaultPlan { faults: expanded }
    }

    /// The faults in time order.
    pub fn faults(&self) -> &[Fault] {
        &self.faults
    }

    /// Time of the last fault, if any.
    pub fn last_at_ms(&self) -> Option<u64> {
        self.faults.last().map(|f| f.at_ms)
    }
}

/// A world that faults can be applied to.
#[allow(async_fn_in_trait)]
pub trait FaultTarget {
    /// Applies one fault now.
    async fn apply(&self, fault: &Fault);
}

/// Applies a plan: sleeps until each fault's time (from the call), then applies it.
pub async fn inject<T: FaultTarget>(plan: &FaultPlan, target: &T) {
    let start = madsim::time::Instant::now();
    for fault in plan.faults() {
        madsim::time::sleep_until(start + Duration::from_millis(fault.at_ms)).await;
        target.apply(fault).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_with_down_time_expands_to_a_restart() {
        let plan = FaultPlan::new(vec![
            Fault { at_ms: 500, kind: FaultKind::LedgerCorrupt { node: "coordinator".into() } },
            Fault { at_ms: 100, kind: FaultKind::Crash { node: "fast-1".into(), down_ms: Some(1_000) } },
        ]);
        let names: Vec<_> = plan.faults().iter().map(|f| (f.at_ms, f.kind.name())).collect();
        assert_eq!(names, vec![(100, "crash"), (500, "ledger_corrupt"), (1_100, "restart")]);
    }
}
