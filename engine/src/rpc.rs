//! The messages between the engine's nodes (SPEC 2.3), carried by `madsim::net` RPC: real
//! TCP live, the simulated network under the simulator.

use crate::organism::FEATURES;
use crate::task::{Kind, Outcome, Path, Task};
use madsim::net::rpc::Request;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Where every role listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addresses {
    pub coordinator: SocketAddr,
    pub state: SocketAddr,
    pub fast: Vec<SocketAddr>,
    pub deep: Vec<SocketAddr>,
}

impl Addresses {
    /// The workers of a path.
    pub fn workers(&self, path: Path) -> &[SocketAddr] {
        match path {
            Path::Fast => &self.fast,
            Path::Deep => &self.deep,
        }
    }
}

/// Client to coordinator: run a task. Idempotent by `task_id`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Submit(pub Task);

impl Request for Submit {
    type Response = Outcome;
    const ID: u64 = 0x5eed_c0de_0001;
}

/// Coordinator to worker: one backend attempt.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Execute {
    pub task_id: u64,
    pub attempt: u32,
    pub tokens_out: u32,
    pub max_tokens_out: u32,
}

/// A worker's answer: output tokens or an error, and the backend's latency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Executed {
    pub result: Result<u32, String>,
    pub latency_ms: u64,
}

impl Request for Execute {
    type Response = Executed;
    const ID: u64 = 0x5eed_c0de_0002;
}

/// Coordinator to state: look a signature up in Mw.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Lookup {
    pub signature: u64,
    pub kind: Kind,
    /// Scenario time of the lookup.
    pub now_ms: u64,
}

/// A cache hit: the served entry's age and output tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    pub age_ms: u64,
    pub tokens_out: u32,
}

impl Request for Lookup {
    type Response = Option<Found>;
    const ID: u64 = 0x5eed_c0de_0003;
}

/// Coordinator to state: a task completed; update the organism and cache the result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Complete {
    pub task_id: u64,
    pub kind: Kind,
    pub signature: u64,
    pub features: [f64; FEATURES],
    pub tokens_out: u32,
    /// Store the result in Mw (false for cache hits).
    pub store: bool,
    pub now_ms: u64,
}

/// What the update did, for the router's x4.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completed {
    pub state_change: f64,
    pub l_tot: f64,
}

impl Request for Complete {
    type Response = Completed;
    const ID: u64 = 0x5eed_c0de_0004;
}

/// Trainer to state: promote these weights now (SPEC 7's `bad_promotion`: a `W` update of
/// certified spectral bound `norm_ppm` / 1e6). GraphMask decides what is kept.
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

impl Request for Promote {
    type Response = Promoted;
    const ID: u64 = 0x5eed_c0de_0005;
}
