//! The fault model of docs/harness.md 7: every fault kind, timed plans, swarm draws, the injector
//! that applies a plan to a world through the `FaultTarget` trait, and delta debugging
//! for the shrinker.
//!
//! Magnitudes are integers (rates and factors in parts per million), so plans compare,
//! sort, hash and serialise exactly: the digest of a plan is the SHA-256 of its canonical
//! JSON, and the same seed draws the same plan on every machine.

mod ddmin;
mod swarm;

pub use ddmin::ddmin;
pub use swarm::{draw, SwarmBounds, Topology, NOT_SWARMED};

use seedcore_engine::node::NodeName;
use seedcore_engine::Path;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// What a fault does. Every variant with `for_ms` lasts that long and is then undone;
/// `crash` and `torn_write` without `down_ms` last until a `restart` of the node, or the
/// end of the run.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FaultKind {
    /// Kill a node (its in-memory state is lost; its files survive).
    Crash { node: NodeName, down_ms: Option<u64> },
    /// Restart a node (kill and start again if it runs; start it if it was killed).
    Restart { node: NodeName },
    /// Stop scheduling a node's tasks; it resumes where it was.
    Pause { node: NodeName, for_ms: u64 },
    /// Cut the links between two nodes, both ways.
    Partition { node: NodeName, peer: NodeName, for_ms: u64 },
    /// Cut every link of a node.
    Isolate { node: NodeName, for_ms: u64 },
    /// Drop this fraction of all messages.
    PacketLoss { rate_ppm: u64, for_ms: u64 },
    /// Every message takes between `min_ms` and `max_ms`.
    Latency { min_ms: u64, max_ms: u64, for_ms: u64 },
    /// The model backend of `path` fails calls with this probability.
    BackendErrors { path: Path, rate_ppm: u64, for_ms: u64 },
    /// The model backend of `path` takes `factor` times as long.
    BackendSlow { path: Path, factor_ppm: u64, for_ms: u64 },
    /// The model backend of `path` returns `factor` times the tokens asked for.
    TokenInflation { path: Path, factor_ppm: u64, for_ms: u64 },
    /// Push a `W` update of certified spectral bound `norm` to the state node.
    BadPromotion { norm_ppm: u64 },
    /// Ledger writes fail.
    LedgerIoError { for_ms: u64 },
    /// Flip one byte inside the first committed receipt of the coordinator's ledger. A
    /// later restart must detect it and halt (the `ledger_integrity` canary).
    LedgerCorrupt { node: NodeName },
    /// Kill the coordinator in the middle of a ledger append: its last segment ends in
    /// half a record. Recovery must skip the torn tail and go on.
    TornWrite { node: NodeName, down_ms: Option<u64> },
}

seedcore_engine::names! {
    /// A fault kind without its fields: what scenarios and events call it, and what a
    /// swarm may switch on.
    FaultName {
        Crash = "crash",
        Restart = "restart",
        Pause = "pause",
        Partition = "partition",
        Isolate = "isolate",
        PacketLoss = "packet_loss",
        Latency = "latency",
        BackendErrors = "backend_errors",
        BackendSlow = "backend_slow",
        TokenInflation = "token_inflation",
        BadPromotion = "bad_promotion",
        LedgerIoError = "ledger_io_error",
        LedgerCorrupt = "ledger_corrupt",
        TornWrite = "torn_write",
    }
}

impl FaultName {
    /// Every kind's name, for error messages: `crash, restart, ...`.
    pub fn list() -> String {
        FaultName::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl FaultKind {
    /// The fault's kind without its fields.
    pub fn fault_name(&self) -> FaultName {
        match self {
            FaultKind::Crash { .. } => FaultName::Crash,
            FaultKind::Restart { .. } => FaultName::Restart,
            FaultKind::Pause { .. } => FaultName::Pause,
            FaultKind::Partition { .. } => FaultName::Partition,
            FaultKind::Isolate { .. } => FaultName::Isolate,
            FaultKind::PacketLoss { .. } => FaultName::PacketLoss,
            FaultKind::Latency { .. } => FaultName::Latency,
            FaultKind::BackendErrors { .. } => FaultName::BackendErrors,
            FaultKind::BackendSlow { .. } => FaultName::BackendSlow,
            FaultKind::TokenInflation { .. } => FaultName::TokenInflation,
            FaultKind::BadPromotion { .. } => FaultName::BadPromotion,
            FaultKind::LedgerIoError { .. } => FaultName::LedgerIoError,
            FaultKind::LedgerCorrupt { .. } => FaultName::LedgerCorrupt,
            FaultKind::TornWrite { .. } => FaultName::TornWrite,
        }
    }

    /// The fault's name in scenarios and events.
    pub fn name(&self) -> &'static str {
        self.fault_name().as_str()
    }

    /// What the fault acts on: a node, `a|b` for a partition, `network`, a backend path,
    /// `state` (a promotion) or `ledger`.
    pub fn target(&self) -> String {
        match self {
            FaultKind::Crash { node, .. }
            | FaultKind::Restart { node }
            | FaultKind::Pause { node, .. }
            | FaultKind::Isolate { node, .. }
            | FaultKind::LedgerCorrupt { node }
            | FaultKind::TornWrite { node, .. } => node.to_string(),
            FaultKind::Partition { node, peer, .. } => format!("{node}|{peer}"),
            FaultKind::PacketLoss { .. } | FaultKind::Latency { .. } => "network".into(),
            FaultKind::BackendErrors { path, .. }
            | FaultKind::BackendSlow { path, .. }
            | FaultKind::TokenInflation { path, .. } => path.as_str().into(),
            FaultKind::BadPromotion { .. } => "state".into(),
            FaultKind::LedgerIoError { .. } => "ledger".into(),
        }
    }

    /// The node a fault takes down (crash, torn write, pause, isolate): what the swarm's
    /// `max_down` counts.
    pub fn downs(&self) -> Option<NodeName> {
        match self {
            FaultKind::Crash { node, .. }
            | FaultKind::TornWrite { node, .. }
            | FaultKind::Pause { node, .. }
            | FaultKind::Isolate { node, .. } => Some(*node),
            _ => None,
        }
    }

    /// How long the fault lasts: `Some(0)` for one that acts at once (restart, corrupt,
    /// promotion), `None` for one that lasts until a restart or the end of the run.
    pub fn duration_ms(&self) -> Option<u64> {
        if self.lasts() {
            self.clone().duration_mut().copied()
        } else {
            Some(0)
        }
    }

    /// A mutable handle on the duration, for the shrinker (none for instant faults).
    pub fn duration_mut(&mut self) -> Option<&mut u64> {
        match self {
            FaultKind::Crash { down_ms, .. } | FaultKind::TornWrite { down_ms, .. } => down_ms.as_mut(),
            FaultKind::Restart { .. } | FaultKind::BadPromotion { .. } | FaultKind::LedgerCorrupt { .. } => None,
            FaultKind::Pause { for_ms, .. }
            | FaultKind::Partition { for_ms, .. }
            | FaultKind::Isolate { for_ms, .. }
            | FaultKind::PacketLoss { for_ms, .. }
            | FaultKind::Latency { for_ms, .. }
            | FaultKind::BackendErrors { for_ms, .. }
            | FaultKind::BackendSlow { for_ms, .. }
            | FaultKind::TokenInflation { for_ms, .. }
            | FaultKind::LedgerIoError { for_ms } => Some(for_ms),
        }
    }

    /// The magnitude in parts per million (rate, factor or norm), and the smallest value
    /// that still means a fault (a factor of 1 changes nothing), for the shrinker.
    pub fn magnitude_mut(&mut self) -> Option<(&mut u64, u64)> {
        match self {
            FaultKind::PacketLoss { rate_ppm, .. } | FaultKind::BackendErrors { rate_ppm, .. } => Some((rate_ppm, 0)),
            FaultKind::BackendSlow { factor_ppm, .. } | FaultKind::TokenInflation { factor_ppm, .. } => {
                Some((factor_ppm, 1_000_000))
            }
            FaultKind::BadPromotion { norm_ppm } => Some((norm_ppm, 0)),
            FaultKind::Latency { max_ms, min_ms, .. } => Some((max_ms, *min_ms)),
            _ => None,
        }
    }

    /// The magnitude as people read it (`rate 0.25`, `factor 3`, `1..400 ms`), or empty.
    pub fn magnitude(&self) -> String {
        let decimal = |ppm: u64| {
            let text = format!("{}.{:06}", ppm / 1_000_000, ppm % 1_000_000);
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        };
        match self {
            FaultKind::PacketLoss { rate_ppm, .. } | FaultKind::BackendErrors { rate_ppm, .. } => {
                format!("rate {}", decimal(*rate_ppm))
            }
            FaultKind::BackendSlow { factor_ppm, .. } | FaultKind::TokenInflation { factor_ppm, .. } => {
                format!("factor {}", decimal(*factor_ppm))
            }
            FaultKind::BadPromotion { norm_ppm } => format!("norm {}", decimal(*norm_ppm)),
            FaultKind::Latency { min_ms, max_ms, .. } => format!("{min_ms}..{max_ms} ms"),
            _ => String::new(),
        }
    }
}

/// A fault at a time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Fault {
    /// Scenario time of the fault.
    pub at_ms: u64,
    pub kind: FaultKind,
}

impl Fault {
    /// One line for people: `at 60000 ms  crash  fast-1  for 30000 ms`.
    pub fn describe(&self) -> String {
        let lasting = match self.kind.duration_ms() {
            None => "until restart".to_string(),
            Some(0) => "instant".to_string(),
            Some(d) => format!("for {d} ms"),
        };
        format!(
            "at {:>9} ms  {:<16} {:<20} {lasting} {}",
            self.at_ms,
            self.kind.name(),
            self.kind.target(),
            self.kind.magnitude()
        )
        .trim_end()
        .to_string()
    }

    /// When the fault ends: `None` when it lasts until a restart or the end of the run.
    pub fn end_ms(&self) -> Option<u64> {
        self.kind.duration_ms().map(|d| self.at_ms.saturating_add(d))
    }
}

/// A plan that cannot be run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A fault that must last lasts no time (`for = "0ms"`).
    #[error("fault {index}: `for` must be at least 1ms (omit it on a crash that lasts until a restart)")]
    ZeroDuration { index: usize },
    /// `at + for` does not fit in the run's clock.
    #[error("fault {index}: `at` plus `for` overflows")]
    Overflow { index: usize },
}

/// A timed list of faults, in time order (stable for equal times).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultPlan {
    faults: Vec<Fault>,
}

impl FaultPlan {
    /// A plan from faults in any order; fault numbers in errors count from 1 in the
    /// order given.
    pub fn new(faults: Vec<Fault>) -> Result<FaultPlan, PlanError> {
        for (i, fault) in faults.iter().enumerate() {
            let index = i + 1;
            match fault.kind.duration_ms() {
                Some(0) if fault.kind.lasts() => return Err(PlanError::ZeroDuration { index }),
                Some(d) if fault.at_ms.checked_add(d).is_none() => return Err(PlanError::Overflow { index }),
                _ => {}
            }
        }
        let mut faults = faults;
        faults.sort_by_key(|f| f.at_ms);
        Ok(FaultPlan { faults })
    }

    /// The faults in time order.
    pub fn faults(&self) -> &[Fault] {
        &self.faults
    }

    /// Whether the plan has no fault.
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// Hex SHA-256 of the plan's canonical JSON (sorted keys, integers only): names a
    /// plan in campaign results.
    pub fn digest(&self) -> String {
        let canonical = serde_json_canonicalizer::to_vec(&self.faults).expect("a plan serialises");
        hex::encode(Sha256::digest(canonical))
    }

    /// The steps of the plan: each fault's start and, when it has one, its end, in time
    /// order; a fault's end never comes before its start, and at equal times ends come
    /// before starts (a fault that ends at `t` and one that starts at `t` do not overlap).
    pub fn steps(&self) -> Vec<Step> {
        let mut steps = Vec::with_capacity(self.faults.len() * 2);
        for (index, fault) in self.faults.iter().enumerate() {
            steps.push(Step { at_ms: fault.at_ms, index, phase: Phase::Start });
            if let Some(end) = fault.end_ms() {
                steps.push(Step { at_ms: end, index, phase: Phase::End });
            }
        }
        // Instant faults end right after they start, at the same time.
        let instant: Vec<bool> = self.faults.iter().map(|f| f.kind.duration_ms() == Some(0)).collect();
        steps.sort_by_key(|s| {
            let instant = instant[s.index];
            let order = match (s.phase, instant) {
                (Phase::End, false) => 0,
                (Phase::Start, _) => 1,
                (Phase::End, true) => 2,
            };
            (s.at_ms, order, s.index)
        });
        steps
    }
}

impl FaultKind {
    /// Whether this kind has a duration that must not be zero.
    fn lasts(&self) -> bool {
        !matches!(self, FaultKind::Restart { .. } | FaultKind::BadPromotion { .. } | FaultKind::LedgerCorrupt { .. })
    }
}

/// Start or end of a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Start,
    End,
}

/// One step of a plan: fault `index` starts or ends at `at_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub at_ms: u64,
    pub index: usize,
    pub phase: Phase,
}

/// A world that faults can be applied to.
#[allow(async_fn_in_trait)]
pub trait FaultTarget {
    /// Fault `index` of the plan starts now.
    async fn start(&self, index: usize, fault: &Fault);
    /// Fault `index` ends now (undo what `start` did).
    async fn end(&self, index: usize, fault: &Fault);
}

/// Applies a plan: sleeps until each step's time (from the call), then applies it.
pub async fn inject<T: FaultTarget>(plan: &FaultPlan, target: &T) {
    let start = madsim::time::Instant::now();
    for step in plan.steps() {
        madsim::time::sleep_until(start + Duration::from_millis(step.at_ms)).await;
        let fault = &plan.faults()[step.index];
        match step.phase {
            Phase::Start => target.start(step.index, fault).await,
            Phase::End => target.end(step.index, fault).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crash(at_ms: u64, node: &str, down_ms: Option<u64>) -> Fault {
        Fault { at_ms, kind: FaultKind::Crash { node: NodeName::parse(node).unwrap(), down_ms } }
    }

    #[test]
    fn steps_come_in_time_order_with_ends_after_their_starts() {
        let plan = FaultPlan::new(vec![
            Fault { at_ms: 500, kind: FaultKind::LedgerCorrupt { node: NodeName::Coordinator } },
            crash(100, "fast-1", Some(1_000)),
            Fault { at_ms: 1_100, kind: FaultKind::Pause { node: NodeName::Worker(Path::Deep, 1), for_ms: 1 } },
        ])
        .unwrap();
        let steps: Vec<_> =
            plan.steps().iter().map(|s| (s.at_ms, plan.faults()[s.index].kind.name(), s.phase)).collect();
        assert_eq!(
            steps,
            vec![
                (100, "crash", Phase::Start),
                (500, "ledger_corrupt", Phase::Start),
                (500, "ledger_corrupt", Phase::End),
                (1_100, "crash", Phase::End),
                (1_100, "pause", Phase::Start),
                (1_101, "pause", Phase::End),
            ]
        );
    }

    #[test]
    fn a_fault_that_must_last_cannot_last_no_time() {
        assert_eq!(FaultPlan::new(vec![crash(0, "fast-1", Some(0))]), Err(PlanError::ZeroDuration { index: 1 }));
        let overflow = Fault { at_ms: u64::MAX - 1, kind: FaultKind::LedgerIoError { for_ms: 2 } };
        assert_eq!(FaultPlan::new(vec![crash(0, "state", None), overflow]), Err(PlanError::Overflow { index: 2 }));
        // A crash without a down time lasts; that is not a zero duration.
        assert!(FaultPlan::new(vec![crash(0, "fast-1", None)]).is_ok());
    }

    #[test]
    fn the_digest_names_the_plan() {
        let a = FaultPlan::new(vec![crash(100, "fast-1", Some(10))]).unwrap();
        let b = FaultPlan::new(vec![crash(100, "fast-1", Some(11))]).unwrap();
        assert_eq!(a.digest(), a.clone().digest());
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest().len(), 64);
    }

    #[test]
    fn magnitudes_read_as_decimals() {
        let kind = FaultKind::BackendErrors { path: Path::Fast, rate_ppm: 250_000, for_ms: 1 };
        assert_eq!(kind.magnitude(), "rate 0.25");
        let kind = FaultKind::BackendSlow { path: Path::Deep, factor_ppm: 3_000_000, for_ms: 1 };
        assert_eq!(kind.magnitude(), "factor 3");
    }
}
