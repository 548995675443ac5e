//! The engine's roles (docs/engine.md 2.3). Each `start_*` takes a bound `Server`, registers its
//! RPC handlers and background tasks, and returns; the node keeps serving for as long as its tasks
//! live (forever live, until killed in the simulator).

pub mod autoscale;
mod coordinator;
mod name;
mod state;
mod worker;

pub use coordinator::{start_coordinator, CoordinatorHandle, Drained};
pub use name::NodeName;
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
    /// What starts and stops workers for the autoscaler (the simulator's world); `None`
    /// live, where the coordinator reports the target and an operator acts on it.
    pub scaler: Option<Arc<dyn Scaler>>,
}

/// Starts and stops worker replicas (docs/engine.md 4.10). Implementations must not block.
pub trait Scaler: Send + Sync + 'static {
    /// Starts replica `replica` (0-based) of `path`; it takes work after the start-up delay.
    fn start(&self, path: crate::task::Path, replica: usize);
    /// Stops a replica that has no call in flight.
    fn stop(&self, path: crate::task::Path, replica: usize);
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
