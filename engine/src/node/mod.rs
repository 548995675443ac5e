//! The engine's roles (SPEC 2.3). Each `start_*` takes a bound endpoint, registers its RPC
//! handlers and background tasks, and returns; the node keeps serving for as long as its
//! tasks live (forever live, until killed in the simulator).

mod coordinator;
mod state;
mod worker;

pub use coordinator::{start_coordinator, CoordinatorHandle, Drained};
pub use state::start_state;
pub use worker::start_worker;

use crate::conditions::Conditions;
use crate::config::EngineConfig;
use crate::ledger::LedgerError;
use crate::probe::Probe;
use crate::rpc::Addresses;
use std::sync::Arc;

/// What every role needs.
#[derive(Clone)]
pub struct NodeContext {
    /// The node's name in events, e.g. `coordinator` or `fast-1`.
    pub name: String,
    pub config: Arc<EngineConfig>,
    pub addresses: Arc<Addresses>,
    pub probe: Arc<dyn Probe>,
    /// The backend's and the disk's condition; only the simulator's faults change it.
    pub conditions: Arc<Conditions>,
}

impl NodeContext {
    fn emit(&self, signal: crate::probe::Signal) {
        self.probe.emit(&self.name, signal);
    }
}

/// A node failed to start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("port {base} + {offset} for a role is beyond 65535; give a lower --port")]
    Port { base: u16, offset: u16 },
}
