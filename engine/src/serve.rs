//! All roles in one process (docs/engine.md 2.3, `seedcore serve`): binds one port per role on the
//! given host, then starts every role on its port; or one role of a deployment, its peers
//! named by address or DNS name (`--role R --peers ...`).

use crate::conditions::Conditions;
use crate::config::EngineConfig;
use crate::node::{start_coordinator, start_state, start_worker, CoordinatorHandle, NodeContext, NodeError};
use crate::peers::{Security, Server};
use crate::probe::Probe;
use crate::rpc::{Addresses, PeerAddr};
use crate::task::Path;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

async fn bind(addr: SocketAddr, security: &Security) -> Result<Server, NodeError> {
    Server::bind(addr, security).await.map_err(|source| NodeError::Bind { addr, source })
}

fn local(server: &Server) -> PeerAddr {
    server.local_addr().expect("a bound port has an address").into()
}

/// The roles of one process, running.
pub struct AllInOne {
    /// Where each role listens.
    pub addresses: Addresses,
    /// The coordinator, to drain on shutdown.
    pub coordinator: CoordinatorHandle,
}

/// Starts every role on `host`, secured by `security`; `base_port` 0 picks free ports.
pub async fn start_all_in_one(
    config: Arc<EngineConfig>,
    host: IpAddr,
    base_port: u16,
    probe: Arc<dyn Probe>,
    security: &Security,
) -> Result<AllInOne, NodeError> {
    let port = |offset: u32| -> Result<u16, NodeError> {
        let offset = u16::try_from(offset).unwrap_or(u16::MAX);
        match base_port {
            0 => Ok(0),
            base => base.checked_add(offset).ok_or(NodeError::Port { base, offset }),
        }
    };
    let at = |port: u16| SocketAddr::new(host, port);
    let coordinator = bind(at(port(0)?), security).await?;
    let state = bind(at(port(1)?), security).await?;
    let mut fast = Vec::new();
    for i in 0..config.topology.fast {
        fast.push(bind(at(port(10 + i)?), security).await?);
    }
    let mut deep = Vec::new();
    for i in 0..config.topology.deep {
        deep.push(bind(at(port(40 + i)?), security).await?);
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
        scaler: None,
    };
    start_state(state, context("state".into())).await;
    for (i, server) in fast.into_iter().enumerate() {
        start_worker(server, context(format!("fast-{}", i + 1)), Path::Fast).await;
    }
    for (i, server) in deep.into_iter().enumerate() {
        start_worker(server, context(format!("deep-{}", i + 1)), Path::Deep).await;
    }
    let coordinator = start_coordinator(coordinator, context("coordinator".into())).await?;
    Ok(AllInOne { addresses: (*addresses).clone(), coordinator })
}

/// One engine role, for a process of its own (`serve --role`, docs/engine.md 2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Coordinator,
    State,
    /// A worker of a path, numbered from 1 (`fast-2`).
    Worker(Path, usize),
}

impl Role {
    /// `coordinator`, `state`, `fast-N` or `deep-N`.
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "coordinator" => Some(Role::Coordinator),
            "state" => Some(Role::State),
            _ => {
                let (path, digits) = name.split_once('-')?;
                let path = match path {
                    "fast" => Path::Fast,
                    "deep" => Path::Deep,
                    _ => return None,
                };
                // One spelling per worker: `fast-1`, not `fast-01` or `fast-+1`.
                let n = digits.parse::<usize>().ok().filter(|n| *n >= 1 && n.to_string() == digits)?;
                Some(Role::Worker(path, n))
            }
        }
    }

    /// The role's name, as `parse` reads it.
    pub fn name(self) -> String {
        match self {
            Role::Coordinator => "coordinator".into(),
            Role::State => "state".into(),
            Role::Worker(path, n) => format!("{}-{n}", path.as_str()),
        }
    }

    /// Where the role listens.
    pub fn address(self, addresses: &Addresses) -> &PeerAddr {
        match self {
            Role::Coordinator => &addresses.coordinator,
            Role::State => &addresses.state,
            Role::Worker(path, n) => &addresses.workers(path)[n - 1],
        }
    }
}

/// The address a role of a deployment binds for its entry in `--peers`: the entry's IP
/// address as given, loopback for `localhost`, and every interface for another DNS name
/// (the name is how the others reach this host), on the entry's port.
pub fn bind_address(peer: &PeerAddr) -> SocketAddr {
    match peer {
        PeerAddr::Ip(addr) => *addr,
        PeerAddr::Name { port, .. } if peer.is_loopback() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), *port),
        PeerAddr::Name { port, .. } => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), *port),
    }
}

/// The engine's addresses from `NAME=HOST:PORT` entries: `coordinator`, `state`, and the
/// workers `fast-1..fast-N` and `deep-1..deep-M`, each numbered without a gap (their
/// counts are the topology). Errors name the entry.
pub fn parse_peers(entries: &[String]) -> Result<Addresses, String> {
    let mut named = std::collections::BTreeMap::new();
    for entry in entries {
        let (name, addr) =
            entry.split_once('=').ok_or_else(|| format!("--peers {entry:?}: expected NAME=HOST:PORT"))?;
        let role = Role::parse(name.trim())
            .ok_or_else(|| format!("--peers {entry:?}: {name:?} is not a role (coordinator, state, fast-N, deep-N)"))?;
        let addr = PeerAddr::parse(addr).map_err(|e| format!("--peers {entry:?}: {e}"))?;
        if named.insert(role.name(), (role, addr)).is_some() {
            return Err(format!("--peers: {name} is given twice"));
        }
    }
    let find = |role: Role| named.get(&role.name()).map(|(_, a)| a.clone());
    let workers = |path: Path| -> Result<Vec<PeerAddr>, String> {
        let count = named.values().filter(|(r, _)| matches!(r, Role::Worker(p, _) if *p == path)).count();
        (1..=count)
            .map(|n| {
                find(Role::Worker(path, n)).ok_or_else(|| {
                    format!(
                        "--peers: {} workers are numbered 1 to {count}; {}-{n} is missing",
                        path.as_str(),
                        path.as_str()
                    )
                })
            })
            .collect()
    };
    let addresses = Addresses {
        coordinator: find(Role::Coordinator).ok_or("--peers: coordinator=HOST:PORT is missing")?,
        state: find(Role::State).ok_or("--peers: state=HOST:PORT is missing")?,
        fast: workers(Path::Fast)?,
        deep: workers(Path::Deep)?,
    };
    if addresses.fast.is_empty() || addresses.deep.is_empty() {
        return Err("--peers: at least one fast-N and one deep-N worker are needed".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some((name, addr)) = named.iter().map(|(n, (_, a))| (n, a)).find(|(_, a)| !seen.insert(*a)) {
        return Err(format!("--peers: {name} shares {addr} with another role"));
    }
    Ok(addresses)
}

/// Starts one role on `bind` (its process's only role); the coordinator's handle comes
/// back for the drain.
pub async fn start_role(
    config: Arc<EngineConfig>,
    role: Role,
    addresses: Addresses,
    bind_at: SocketAddr,
    probe: Arc<dyn Probe>,
    security: &Security,
) -> Result<Option<CoordinatorHandle>, NodeError> {
    let server = bind(bind_at, security).await?;
    let context = NodeContext {
        name: role.name(),
        config,
        addresses: Arc::new(addresses),
        probe,
        conditions: Arc::new(Conditions::default()),
        scaler: None,
    };
    match role {
        Role::Coordinator => return start_coordinator(server, context).await.map(Some),
        Role::State => start_state(server, context).await,
        Role::Worker(path, _) => start_worker(server, context, path).await,
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<String> {
        text.split(',').map(String::from).collect()
    }

    #[test]
    fn peers_name_every_role_once_and_set_the_topology() {
        let addresses = parse_peers(&entries(
            "coordinator=127.0.0.1:7500,state=127.0.0.1:7501,fast-2=127.0.0.1:7511,fast-1=127.0.0.1:7510,deep-1=127.0.0.1:7540",
        ))
        .unwrap();
        assert_eq!(addresses.fast.iter().map(|a| a.port()).collect::<Vec<_>>(), [7510, 7511]);
        assert_eq!(addresses.deep.len(), 1);
        assert_eq!(Role::Worker(Path::Fast, 2).address(&addresses).port(), 7511);
        let named = parse_peers(&entries(
            "coordinator=coordinator.seedcore:7000,state=LOCALHOST:7001,fast-1=[::1]:7010,deep-1=deep-1.seedcore.svc.cluster.local.:7040",
        ))
        .unwrap();
        assert_eq!(named.coordinator.to_string(), "coordinator.seedcore:7000");
        assert!(named.state.is_loopback() && !named.coordinator.is_loopback());
        assert_eq!(named.deep[0].to_string(), "deep-1.seedcore.svc.cluster.local:7040");
        assert_eq!(bind_address(&named.coordinator), "0.0.0.0:7000".parse().unwrap());
        assert_eq!(bind_address(&named.state), "127.0.0.1:7001".parse().unwrap());
        assert_eq!(bind_address(&named.fast[0]), "[::1]:7010".parse().unwrap());
        for (bad, says) in [
            ("state=127.0.0.1:1,fast-1=127.0.0.1:2,deep-1=127.0.0.1:3", "coordinator"),
            ("coordinator=127.0.0.1:1,state=127.0.0.1:2,fast-2=127.0.0.1:3,deep-1=127.0.0.1:4", "fast-1 is missing"),
            ("coordinator=127.0.0.1:1,state=127.0.0.1:2,fast-1=127.0.0.1:2,deep-1=127.0.0.1:4", "shares"),
            ("coordinator=127.0.0.1:1,coordinator=127.0.0.1:5,state=127.0.0.1:2", "twice"),
            ("coordinator=127.0.0.1:0,state=127.0.0.1:2,fast-1=127.0.0.1:3,deep-1=127.0.0.1:4", "fixed port"),
            ("boss=127.0.0.1:1", "not a role"),
            ("coordinator=coord_inator:7000", "neither an IP address nor a DNS name"),
            ("coordinator=-bad.example:7000", "neither an IP address nor a DNS name"),
            ("coordinator=host.example:70000", "not a port"),
            ("coordinator=host.example", "not HOST:PORT"),
            ("coordinator=a.example:1,state=A.example:1,fast-1=b:1,deep-1=c:1", "shares"),
            ("fast-01=127.0.0.1:1", "not a role"),
            ("coordinator", "NAME=HOST:PORT"),
        ] {
            let error = parse_peers(&entries(bad)).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
