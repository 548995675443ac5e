//! The engine's client: submits tasks to a coordinator over RPC. The simulator's driver and
//! live tools use the same client.

use crate::rpc::Submit;
use crate::task::{Outcome, Task};
use madsim::net::Endpoint;
use std::net::SocketAddr;
use std::time::Duration;

/// A client bound to its own endpoint.
pub struct Client {
    endpoint: Endpoint,
    coordinator: SocketAddr,
}

impl Client {
    /// A client on `endpoint` talking to `coordinator`.
    pub fn new(endpoint: Endpoint, coordinator: SocketAddr) -> Client {
        Client { endpoint, coordinator }
    }

    /// Binds a fresh endpoint on `bind` and makes a client of it.
    pub async fn connect(bind: SocketAddr, coordinator: SocketAddr) -> std::io::Result<Client> {
        Ok(Client::new(Endpoint::bind(bind).await?, coordinator))
    }

    /// Submits a task and waits at most `timeout` for its outcome. Submitting the same task
    /// again returns the recorded outcome.
    pub async fn submit(&self, task: Task, timeout: Duration) -> std::io::Result<Outcome> {
        crate::deadline::within(timeout, self.endpoint.call(self.coordinator, Submit(task))).await?
    }
}
