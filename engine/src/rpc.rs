//! The messages between the engine's nodes (docs/engine.md 2.3), one definition each: the structs
//! below, with `rpc!` giving each request its answer's type, its id on madsim's simulated
//! network and its gRPC method name live (`crate::grpc`, bincode over tonic).

use crate::organism::FEATURES;
use crate::task::{Kind, Outcome, Path, PerPath, Task};
use madsim::net::rpc::Request;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

/// A request between roles: madsim's `Request` (its answer's type and its id on the
/// simulated network) and the gRPC method that carries it live.
pub trait Method: Request {
    /// The gRPC path, `/seedcore.v1.Engine/<name>`.
    const PATH: &'static str;
}

/// Declares a request: `rpc!(Request => Response, id)`. The gRPC method is the request's
/// type name.
macro_rules! rpc {
    ($request:ident => $response:ty, $id:expr) => {
        impl Request for $request {
            type Response = $response;
            const ID: u64 = $id;
        }
        impl Method for $request {
            const PATH: &'static str = concat!("/seedcore.v1.Engine/", stringify!($request));
        }
    };
}

/// Where a role listens: an IP address (the simulator's nodes, or a literal live) or a DNS
/// name with a port, resolved again each time a connection to it is made (live).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerAddr {
    Ip(SocketAddr),
    Name { host: Arc<str>, port: u16 },
}

impl PeerAddr {
    /// `HOST:PORT`, HOST an IPv4 address, `[IPv6]` or a DNS name; the port is not 0.
    pub fn parse(text: &str) -> Result<PeerAddr, String> {
        let text = text.trim();
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return match addr.port() {
                0 => Err(format!("{text:?}: a peer needs a fixed port, not 0")),
                _ => Ok(PeerAddr::Ip(addr)),
            };
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(|| format!("{text:?} is not HOST:PORT"))?;
        let port: u16 = port.parse().map_err(|_| format!("{text:?}: {port:?} is not a port (1 to 65535)"))?;
        if port == 0 {
            return Err(format!("{text:?}: a peer needs a fixed port, not 0"));
        }
        // RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let name = host.strip_suffix('.').unwrap_or(host);
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(format!("{text:?}: {host:?} is neither an IP address nor a DNS name"));
        }
        Ok(PeerAddr::Name { host: name.to_ascii_lowercase().into(), port })
    }

    pub fn port(&self) -> u16 {
        match self {
            PeerAddr::Ip(addr) => addr.port(),
            PeerAddr::Name { port, .. } => *port,
        }
    }

    /// The IP address, when the peer is given by one.
    pub fn ip_socket(&self) -> Option<SocketAddr> {
        match self {
            PeerAddr::Ip(addr) => Some(*addr),
            PeerAddr::Name { .. } => None,
        }
    }

    /// A name that only ever means this machine (`localhost`), or a loopback address.
    pub fn is_loopback(&self) -> bool {
        match self {
            PeerAddr::Ip(addr) => addr.ip().is_loopback(),
            PeerAddr::Name { host, .. } => &**host == "localhost",
        }
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> PeerAddr {
        PeerAddr::Ip(addr)
    }
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerAddr::Ip(addr) => write!(f, "{addr}"),
            PeerAddr::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Where every role listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addresses {
    pub coordinator: PeerAddr,
    pub state: PeerAddr,
    pub fast: Vec<PeerAddr>,
    pub deep: Vec<PeerAddr>,
}

impl Addresses {
    /// The workers of a path.
    pub fn workers(&self, path: Path) -> &[PeerAddr] {
        match path {
            Path::Fast => &self.fast,
            Path::Deep => &self.deep,
        }
    }
}

/// The autoscaler on one path: the target (docs/engine.md 4.10), the rolling demand in replicas'
/// worth of work, and the replicas taking work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PathScale {
    pub target: u32,
    pub demand: f64,
    pub active: u32,
}

/// Client to coordinator: run a task. Idempotent by `task_id`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Submit(pub Task);

rpc!(Submit => Outcome, 0x5eed_c0de_0001);

/// Coordinator to worker: one backend attempt.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Execute {
    pub task_id: u64,
    pub attempt: u32,
    /// What a model backend is told the task is (the task carries no text).
    pub kind: Kind,
    /// Prompt tokens, after the governor's truncation.
    pub tokens_in: u32,
    pub tokens_out: u32,
    pub max_tokens_out: u32,
}

/// A worker's answer: output tokens or an error, the backend's latency and, within it, the
/// time to the first output token (`ttft_ms <= latency_ms`; equal when the answer came whole).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Executed {
    pub result: Result<u32, String>,
    pub latency_ms: u64,
    pub ttft_ms: u64,
}

rpc!(Execute => Executed, 0x5eed_c0de_0002);

/// Coordinator to state: look a signature up in the memory fabric, after applying the
/// completions not yet sent (so a result stored before the lookup is there to be found).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Lookup {
    pub signature: u64,
    pub kind: Kind,
    /// Scenario time of the lookup.
    pub now_ms: u64,
    /// Completions the coordinator had not sent yet, in the order they happened.
    pub pending: Vec<Complete>,
}

/// A lookup's answer, and what the pending completions did to the organism.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Looked {
    pub found: Option<Found>,
    /// After the last pending completion; `None` when there was none.
    pub completed: Option<Completed>,
}

/// A cache hit: the served entry's age and output tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    pub age_ms: u64,
    pub tier: crate::memory::Tier,
    pub tokens_out: u32,
}

rpc!(Lookup => Looked, 0x5eed_c0de_0003);

/// A task completed: update the organism and cache the result. The coordinator sends
/// completions in batches (`CompleteBatch`), or ahead of a `Lookup`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Complete {
    pub task_id: u64,
    pub kind: Kind,
    pub signature: u64,
    pub features: [f64; FEATURES],
    pub tokens_out: u32,
    /// Store the result in the memory fabric (false for cache hits).
    pub store: bool,
    /// A valve breach escalated the task: keep it in Mfb.
    pub salient: bool,
    pub now_ms: u64,
}

/// What the update did, for the router's x4.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completed {
    pub state_change: f64,
    pub l_tot: f64,
}

/// Coordinator to state: completions in the order they happened, applied in that order
/// (one call per `dispatch.complete_batch_ms` at most).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompleteBatch(pub Vec<Complete>);

// Answered with the organism after the last completion of the batch (`None` for an empty
// one). Not id 0x..0004, the single `Complete` of earlier versions: a peer of another
// version gets no answer, never a misread one.
rpc!(CompleteBatch => Option<Completed>, 0x5eed_c0de_000e);

/// Trainer to state: promote these weights now (docs/harness.md 7's `bad_promotion`: a `W` update
/// of certified spectral bound `norm_ppm` / 1e6). GraphMask decides what is kept.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Promote {
    pub norm_ppm: u64,
}

/// `L_tot` after the promotion, ppm, and whether GraphMask acted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promoted {
    pub l_tot_ppm: i64,
    pub masked: bool,
}

rpc!(Promote => Promoted, 0x5eed_c0de_0005);

/// Gateway to coordinator: run a task and say how it was routed. With `assign_id` the
/// coordinator gives the task a fresh id (above every id it has seen); otherwise the id is
/// the client's idempotency key, as with `Submit`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubmitTask {
    pub task: Task,
    pub assign_id: bool,
}

/// How an admitted task was routed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decided {
    pub path: Path,
    pub reason: crate::router::Reason,
    pub surprise: f64,
    /// Position of the task in the valve's sequence (admission order), for capture.
    pub valve_seq: u64,
}

/// The outcome of a `SubmitTask`, with the decision when this submission made one (a
/// resubmitted task gets its recorded outcome and no decision).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Submitted {
    pub task_id: u64,
    pub decision: Option<Decided>,
    pub outcome: Outcome,
    /// This submission processed the task (false: the outcome was already recorded).
    pub fresh: bool,
}

rpc!(SubmitTask => Submitted, 0x5eed_c0de_0006);

/// Gateway to coordinator: the routing decision the task would get now, with nothing
/// changed (no valve step, no charge, no execution).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Route(pub Task);

/// A dry-run routing decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Routed {
    pub path: Path,
    pub reason: crate::router::Reason,
    pub surprise: f64,
    /// `S` after this task's drift, and whether it would breach.
    pub cusum_s: f64,
    pub breached: bool,
    /// The router's six inputs (docs/engine.md 4.2).
    pub inputs: [f64; 6],
    /// The coordinator is halted: it would reject the task.
    pub halted: bool,
}

rpc!(Route => Routed, 0x5eed_c0de_0007);

/// Anyone to coordinator: counters and state. `at_ms` is the caller's clock on the task
/// time line; it selects the budget day reported.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusQuery {
    pub at_ms: u64,
}

/// The coordinator's counters since it started, and its state now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CoordinatorStatus {
    pub halted: Option<String>,
    pub draining: bool,
    pub cusum_s: f64,
    pub cusum_h: f64,
    pub valve_tasks: u64,
    pub breaches: u64,
    /// Fast share of the router's window of recent decisions.
    pub fast_ratio_window: f64,
    /// Decisions by reason, in `Reason::ALL` order.
    pub decisions: [u64; 5],
    /// Rejections by reason, in `RejectReason::ALL` order.
    pub rejections: [u64; 5],
    /// Completed and failed tasks per path (fast, deep).
    pub completed: PerPath<u64>,
    pub failed: PerPath<u64>,
    pub cache_hits: u64,
    /// Cache hits served per memory tier (Mw, M2.5, Mlt).
    pub tier_hits: [u64; 3],
    /// Age of the oldest cache entry served in the last 60 s of the coordinator's clock
    /// (0 when none): the freshness rollback criterion's live figure.
    pub served_age_max_ms: u64,
    /// The autoscaler per path (fast, deep).
    pub autoscale: [PathScale; 2],
    /// Rolling Mw hit rate.
    pub mw_hit_rate: f64,
    pub in_flight: u32,
    pub day: u64,
    pub spent_today_micro_usd: u64,
    pub daily_budget_micro_usd: u64,
    pub fast_slo_ms: f64,
    pub ledger_receipts: u64,
    pub ledger_cycles: u64,
    /// The next id the coordinator assigns.
    pub next_task_id: u64,
}

rpc!(StatusQuery => CoordinatorStatus, 0x5eed_c0de_0008);

/// Anyone to state: the organism, energy and memory snapshot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateQuery {
    pub now_ms: u64,
}

/// The state node's snapshot (`/state/unified`, `/energy/gradient`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateSnapshot {
    pub agents: usize,
    pub organs: usize,
    pub dim: usize,
    pub updates: u64,
    /// Updates per agent.
    pub agent_updates: Vec<u64>,
    pub l_tot: f64,
    pub l_max: f64,
    pub a_inf: f64,
    pub w2_bound: f64,
    pub w2_estimate: f64,
    pub energy: crate::organism::Energy,
    /// Entries and capacity of Mw, M2.5 and Mlt.
    pub tiers: [crate::memory::TierFill; 3],
    pub max_freshness_ms: u64,
    /// Events in Mfb.
    pub flashbulbs: usize,
}

rpc!(StateQuery => StateSnapshot, 0x5eed_c0de_0009);

/// A change to check with GraphMask without applying it (`/safety/validate`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Proposal {
    /// A promotion whose `W` step has this certified spectral norm.
    Promotion { w_norm: f64 },
    /// Set the collaboration edge `from -> to` to `weight` (0 removes it).
    Edge { from: usize, to: usize, weight: f64 },
}

/// Gateway to state: validate a proposal.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Validate(pub Proposal);

/// GraphMask's verdict on a proposal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Validated {
    /// Applying it as proposed keeps `L_tot` below `L_max`.
    pub allowed: bool,
    pub l_tot_before: f64,
    /// `L_tot` as proposed, before any mask.
    pub l_tot_proposed: f64,
    /// `L_tot` after GraphMask would act (equal to the proposal when allowed).
    pub l_tot_after: f64,
    pub l_max: f64,
    /// What GraphMask would do: edges masked and the scale of a `W` step.
    pub edges_masked: u32,
    pub w_scale: f64,
}

rpc!(Validate => Validated, 0x5eed_c0de_000a);

/// Gateway to state: store an entry in M2.5.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tier25Store {
    pub signature: u64,
    pub kind: Kind,
    pub tokens_out: u32,
    pub now_ms: u64,
}

rpc!(Tier25Store => usize, 0x5eed_c0de_000b);

/// Gateway to state: look an entry up in M2.5; a stale entry is never served.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tier25Retrieve {
    pub signature: u64,
    pub now_ms: u64,
}

/// An M2.5 answer: a fresh hit, or a miss that says whether a stale entry was refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Tier25Answer {
    Hit { kind: Kind, tokens_out: u32, age_ms: u64 },
    Stale { age_ms: u64 },
    Miss,
}

rpc!(Tier25Retrieve => Tier25Answer, 0x5eed_c0de_000c);

/// Anyone to a worker, live only: is it up? The answer is its role's name. (The
/// coordinator and the state node answer `StatusQuery` and `StateQuery`.)
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ping;

rpc!(Ping => String, 0x5eed_c0de_000d);
