//! The engine's client: submits tasks to a coordinator. The simulator's driver and live
//! tools use the same client, over the same call seam as the roles (`crate::peers`).

use crate::peers::Peers;
use crate::rpc::{PeerAddr, Submit};
use crate::task::{Outcome, Task};
use std::time::Duration;

/// A client of one coordinator.
pub struct Client {
    peers: Peers,
    coordinator: PeerAddr,
}

impl Client {
    /// A client on the simulated `endpoint` talking to `coordinator`.
    #[cfg(madsim)]
    pub fn new(endpoint: madsim::net::Endpoint, coordinator: std::net::SocketAddr) -> Client {
        Client { peers: Peers::from_endpoint(endpoint), coordinator: coordinator.into() }
    }

    /// A client of `coordinator`, secured by `security` (its client certificate, live).
    #[cfg(not(madsim))]
    pub fn connect(coordinator: PeerAddr, security: &crate::peers::Security) -> Client {
        Client { peers: Peers::client(security), coordinator }
    }

    /// Submits a task and waits at most `timeout` for its outcome. Submitting the same task
    /// again returns the recorded outcome.
    pub async fn submit(&self, task: Task, timeout: Duration) -> std::io::Result<Outcome> {
        self.peers.call(&self.coordinator, Submit(task), timeout).await
    }
}
