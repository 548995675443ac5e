//! What the engine reports about itself: typed signals handed to a `Probe`.
//!
//! The engine emits signals and never reads them back; the simulator's observer turns them
//! into event lines, and live they go to the log. Every signal struct declares its fields
//! in JCS (sorted) order and holds only integers, booleans and strings (ratios as parts per
//! million), so that serde's bytes are canonical and reproducible.

use crate::router::Reason;
use crate::task::{Kind, Path, RejectReason, Status};
use serde::{Deserialize, Serialize};

/// Receives the engine's signals. Implementations must not block.
pub trait Probe: Send + Sync + 'static {
    /// Records one signal emitted by `node`.
    fn emit(&self, node: &str, signal: Signal);
}

/// A probe that drops everything.
pub struct NullProbe;

impl Probe for NullProbe {
    fn emit(&self, _node: &str, _signal: Signal) {}
}

/// A probe that writes signals to the `tracing` log (live mode).
pub struct LogProbe;

impl Probe for LogProbe {
    fn emit(&self, node: &str, signal: Signal) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        if let Ok(data) = serde_json::to_string(&signal) {
            tracing::debug!(node, kind = signal.kind(), %data, "signal");
        }
    }
}

/// Converts a ratio to integer parts per million.
pub fn ppm(x: f64) -> i64 {
    if x.is_finite() {
        (x * 1e6).round() as i64
    } else if x > 0.0 {
        i64::MAX
    } else {
        0
    }
}

/// Declares a closed set of signal types with their event `kind` names, and the
/// serialisation of the set: the payload alone (the kind travels beside it).
#[macro_export]
macro_rules! signal_set {
    ($(#[$meta:meta])* $name:ident { $($variant:ident($ty:ty) = $kind:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        pub enum $name { $($variant($ty),)* }

        impl $name {
            /// The event kind of this signal.
            pub fn kind(&self) -> &'static str {
                match self { $($name::$variant(_) => $kind,)* }
            }

            /// Parses a payload of a known kind; `Ok(None)` when the kind is not of this set.
            pub fn parse(kind: &str, data: &str) -> Result<Option<$name>, serde_json::Error> {
                match kind {
                    $($kind => Ok(Some($name::$variant(serde_json::from_str(data)?))),)*
                    _ => Ok(None),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self { $($name::$variant(inner) => inner.serialize(serializer),)* }
            }
        }
    };
}

signal_set! {
    /// Everything the engine emits.
    Signal {
        Node(NodeSignal) = "node",
        Decision(DecisionSignal) = "decision",
        Outcome(OutcomeSignal) = "outcome",
        Alert(AlertSignal) = "alert",
        LTot(LTotSignal) = "l_tot",
        Mask(MaskSignal) = "mask",
        Contraction(ContractionSignal) = "contraction",
        Ledger(LedgerSignal) = "ledger",
        Attempt(AttemptSignal) = "attempt_failed",
        Flashbulb(FlashbulbSignal) = "flashbulb",
        Energy(EnergySignal) = "energy",
        PromotionRefused(PromotionRefusedSignal) = "promotion_refused",
        Scale(ScaleSignal) = "scale",
    }
}

/// Declares a closed set of names a field takes (in events, scenarios, files): an enum
/// serialised to exactly these strings (so logs keep their bytes), with `ALL` in
/// declaration order, `as_str` and `parse`. Used by every crate of the workspace for its
/// named sets (`seedcore_engine::names!`).
#[macro_export]
macro_rules! names {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ::serde::Serialize, ::serde::Deserialize)]
        pub enum $name { $($(#[$vmeta])* #[serde(rename = $text)] $variant,)* }

        impl $name {
            /// Every name, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The name as it is written.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            /// Parses the name as it is written.
            pub fn parse(name: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|n| n.as_str() == name)
            }
        }
    };
}

crate::names! {
    /// What happened to a node.
    NodeEvent {
        Started = "started",
    }
}

crate::names! {
    /// A node's role in `node` events (a worker's is its path).
    Role {
        Coordinator = "coordinator",
        State = "state",
        Fast = "fast",
        Deep = "deep",
    }
}

impl Role {
    /// The role of a worker of `path`.
    pub fn worker(path: Path) -> Role {
        match path {
            Path::Fast => Role::Fast,
            Path::Deep => Role::Deep,
        }
    }
}

crate::names! {
    /// The ledger's life cycle.
    LedgerEvent {
        /// Opened and verified at start.
        Recovered = "recovered",
        /// A cycle signed.
        Cycle = "cycle",
        /// A write failed (retried).
        WriteFailed = "write_failed",
        /// Verification failed, or writes kept failing: the coordinator halted.
        Halt = "halt",
    }
}

crate::names! {
    /// What the autoscaler did.
    ScaleEvent {
        Target = "target",
        Starting = "starting",
        Ready = "ready",
        Draining = "draining",
        Stopped = "stopped",
    }
}

crate::names! {
    /// Why the organism's certified bound or energy was reported.
    OrganismCause {
        Init = "init",
        /// Every `organism::ENERGY_EVERY` updates.
        Sample = "sample",
        Promotion = "promotion",
        /// A pushed checkpoint.
        ExternalPromotion = "external_promotion",
    }
}

pub use crate::memory::FlashbulbCause;

/// A node started (or restarted) and what it recovered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSignal {
    pub event: NodeEvent,
    /// The node's role.
    pub role: Role,
}

/// A routing decision with the router's inputs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionSignal {
    /// CUSUM S after this task (before a breach reset), ppm.
    pub cusum_s_ppm: i64,
    /// A soft escalation moved to the fast path by the governor.
    pub degraded: bool,
    /// Token forecast of docs/engine.md 4.5, in tokens.
    pub forecast_tokens: u64,
    pub max_tokens_out: u32,
    pub path: Path,
    pub reason: Reason,
    /// Rolling fast-path ratio of the router's window after this decision, ppm.
    pub router_fast_ppm: i64,
    pub surprise_ppm: i64,
    pub task_id: u64,
    /// Context tokens cut to fit the ceiling.
    pub truncated_tokens: u32,
    /// Router inputs x1..x6, ppm.
    pub x_ppm: [i64; 6],
}

/// A terminal outcome. It carries every field of the task's receipt, so the receipt, and
/// with it the ledger's hash chain, can be rebuilt from the event log
/// ([`crate::ledger::Receipt::of_outcome`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeSignal {
    /// Arrival time of the task (scenario ms): the receipt's `t_ms`.
    pub arrived_ms: u64,
    /// Backend attempts made.
    pub attempts: u32,
    /// Age of the served cache entry, when `cache_hit`.
    pub cache_age_ms: Option<u64>,
    pub cache_hit: bool,
    /// The memory tier that served a cache hit.
    pub cache_tier: Option<crate::memory::Tier>,
    pub cost_micro_usd: u64,
    /// UTC day the task was admitted in.
    pub day: u64,
    /// Error of a failed task.
    pub error: Option<String>,
    pub kind: Kind,
    pub latency_ms: u64,
    /// Ledger seq of the receipt (none when the ledger is halted).
    pub ledger_seq: Option<u64>,
    pub overrun_clamped: bool,
    pub path: Option<Path>,
    /// Reject reason of a rejected task.
    pub reason: Option<RejectReason>,
    pub status: Status,
    pub task_id: u64,
    pub tokens_in: u32,
    pub tokens_out: u32,
    /// The context was cut to fit the token ceiling.
    pub truncated: bool,
    /// Time to first token of a completed task (docs/engine.md 3.2); none otherwise.
    /// Left out of the line when none, so an event log written before the field existed
    /// still reads back in canonical form (and its certificate still verifies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<u64>,
    /// The worker that produced the generation (none for cache hits, rejections and
    /// failures).
    pub worker: Option<String>,
}

/// A backend attempt that failed (and is retried while attempts remain).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptSignal {
    /// 0 for the first attempt.
    pub attempt: u32,
    /// `backend error`, `timeout after N ms`, or the transport's error.
    pub error: String,
    pub task_id: u64,
    /// The worker tried, e.g. `fast-2`.
    pub worker: String,
}

/// An alert (docs/engine.md 4.4, 4.9).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSignal {
    pub limit: u64,
    pub name: String,
    pub subject: String,
    pub value: u64,
}

/// The certified `L_tot` changed (initialisation or promotion).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LTotSignal {
    pub a_inf_ppm: i64,
    /// `init`, `promotion` or `external_promotion`.
    pub cause: OrganismCause,
    pub l_tot_ppm: i64,
    pub w2_bound_ppm: i64,
    pub w2_estimate_ppm: i64,
}

/// GraphMask acted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskSignal {
    pub edges_masked: u32,
    pub l_tot_ppm: i64,
    pub rows: u32,
    pub w_scale_ppm: i64,
}

/// One sweep of the empirical contraction check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractionSignal {
    /// What the certified bound allows, ppm (rounded up).
    pub bound_ppm: i64,
    pub ok: bool,
    /// Distance ratio over the sweep, ppm (rounded down).
    pub ratio_ppm: i64,
    pub sweep: u64,
}

/// Ledger life cycle: `recovered`, `cycle`, `write_failed` (retried) or `halt`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSignal {
    /// Why the write failed or the ledger halted.
    pub error: Option<String>,
    pub event: LedgerEvent,
    /// Chain head (cycle) or head after recovery.
    pub head: Option<String>,
    /// Receipts in the ledger after this event.
    pub receipts: u64,
    /// Spend of the current day recovered from the ledger.
    pub spent_micro_usd: Option<u64>,
}

/// A high-salience event went into the flashbulb tier Mfb (docs/engine.md 4.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlashbulbSignal {
    pub cause: FlashbulbCause,
    /// Events in Mfb after this one.
    pub held: u64,
    pub task_id: u64,
}

/// The organism's energy (docs/engine.md 4.7), in millionths.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergySignal {
    pub cause: OrganismCause,
    pub ent_ppm: i64,
    /// `||dE/dH||_F`.
    pub gradient_norm_ppm: i64,
    pub mem_ppm: i64,
    pub pair_ppm: i64,
    pub reg_ppm: i64,
    pub total_ppm: i64,
    /// Organism updates so far.
    pub updates: u64,
}

/// A promotion refused because it would raise the energy (`delta_E > 0`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionRefusedSignal {
    /// `promotion` or `external_promotion`.
    pub cause: OrganismCause,
    pub delta_e_ppm: i64,
    pub energy_ppm: i64,
}

/// The autoscaler (docs/engine.md 4.10): a new target, or a worker starting, ready, draining or
/// stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleSignal {
    /// Rolling demand on the path, in replicas' worth of work, ppm.
    pub demand_ppm: i64,
    pub event: ScaleEvent,
    pub path: Path,
    /// Replicas taking work after this event.
    pub replicas: u32,
    pub target: u32,
    /// The worker started or stopped (none for `target`).
    pub worker: Option<String>,
}
