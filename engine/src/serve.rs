//! All roles in one process (SPEC 2.3, `seedcore serve`): binds one endpoint per role on
//! the given host, then starts every role on its endpoint. Live this is loopback TCP; the
//! same function runs inside a single simulated node.

use crate::conditions::Conditions;
use crate::config::EngineConfig;
use crate::node::{start_coordinator, start_state, start_worker, CoordinatorHandle, NodeContext, NodeError};
use crate::probe::Probe;
use crate::rpc::Addresses;
use crate::task::Path;
use madsim::net::Endpoint;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

async fn bind(host: IpAddr, port: u16) -> Result<Endpoint, NodeError> {
    let addr = SocketAddr::new(host, port);
    Endpoint::bind(addr).await.map_err(|source| NodeError::Bind { addr, source })
}

fn local(endpoint: &Endpoint) -> SocketAddr {
    endpoint.local_addr().expect("a bound endpoint has an address")
}

/// The roles of one process, running.
pub struct AllInOne {
    /// Where each role listens.
    pub addresses: Addresses,
    /// The coordinator, to drain on shutdown.
    pub coordinator: CoordinatorHandle,
}

/// Starts every role; `base_port` 0 picks free ports.
pub async fn start_all_in_one(
    config: Arc<EngineConfig>,
    host: IpAddr,
    base_port: u16,
    probe: Arc<dyn Probe>,
) -> Result<AllInOne, NodeError> {
    let port = |offset: u32| -> Result<u16, NodeError> {
        let offset = u16::try_from(offset).unwrap_or(u16::MAX);
        match base_port {
            0 => Ok(0),
            base => base.checked_add(offset).ok_or(NodeError::Port { base, offset }),
        }
    };
    let coordinator = bind(host, port(0)?).await?;
    let state = bind(host, port(1)?).await?;
    let mut fast = Vec::new();
    for i in 0..config.topology.fast {
        fast.push(bind(host, port(10 + i)?).await?);
    }
    let mut deep = Vec::new();
    for i in 0..config.topology.deep {
        deep.push(bind(host, port(40 + i)?).await?);
    }
    let addresses = Arc::new(Addresses {
        coordinator: local(&coordinator),
        state: local(&state),
        fast: fast.iter().map(local).collect(),
        deep: deep.iter().map(local).collect(),
    });
    // Live, nothing degrades the backend or the disk on purpose.
    let conditions = Arc::new(Conditions::default());
    let context = |name: String| NodeContext {
        name,
        config: config.clone(),
        addresses: addresses.clone(),
        probe: probe.clone(),
        conditions: conditions.clone(),
    };
    start_state(state, context("state".into())).await;
    for (i, endpoint) in fast.into_iter().enumerate() {
        start_worker(endpoint, context(format!("fast-{}", i + 1)), Path::Fast).await;
    }
    for (i, endpoint) in deep.into_iter().enumerate() {
        start_worker(endpoint, context(format!("deep-{}", i + 1)), Path::Deep).await;
    }
    let coordinator = start_coordinator(coordinator, context("coordinator".into())).await?;
    Ok(AllInOne { addresses: (*addresses).clone(), coordinator })
}
