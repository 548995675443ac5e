//! Calls from one role to another (SPEC 2.3). Under the simulator a role calls from its
//! own endpoint, as it always has. Live, madsim's TCP endpoint panics inside the caller
//! when a peer cannot be reached, and keeps the broken connection for every later call to
//! it; so each live call runs in a task of its own on a client endpoint, and a panic
//! there becomes an `io::Error` and a fresh client endpoint. A role whose peer is down,
//! or restarting in another process, then sees failed calls (and retries, as dispatch
//! does), never a dead caller.

use madsim::net::rpc::Request;
use madsim::net::Endpoint;
use std::net::SocketAddr;
use std::time::Duration;

/// The calls of one role to the others.
pub struct Peers {
    #[cfg(madsim)]
    endpoint: Endpoint,
    #[cfg(not(madsim))]
    client: std::sync::Mutex<Endpoint>,
    #[cfg(not(madsim))]
    host: std::net::IpAddr,
}

impl Peers {
    /// The calls of the role listening on `endpoint`.
    #[cfg(madsim)]
    pub async fn new(endpoint: &Endpoint) -> std::io::Result<Peers> {
        Ok(Peers { endpoint: endpoint.clone() })
    }

    /// The calls of the role listening on `endpoint`, from a client endpoint on its host.
    #[cfg(not(madsim))]
    pub async fn new(endpoint: &Endpoint) -> std::io::Result<Peers> {
        Peers::client(endpoint.local_addr()?.ip()).await
    }

    /// Calls from a client endpoint on `host`, for a caller that serves no RPC (the
    /// gateway).
    #[cfg(not(madsim))]
    pub async fn client(host: std::net::IpAddr) -> std::io::Result<Peers> {
        let client = Endpoint::bind(SocketAddr::new(host, 0)).await?;
        Ok(Peers { client: std::sync::Mutex::new(client), host })
    }

    /// The local address this host reaches `peer` from: loopback for a loopback peer,
    /// otherwise the interface the routing table picks (a connected UDP socket sends
    /// nothing), so a gateway on one host calls a coordinator on another from an address
    /// the coordinator can answer.
    #[cfg(not(madsim))]
    pub fn local_ip_toward(peer: SocketAddr) -> std::net::IpAddr {
        if peer.ip().is_loopback() {
            return peer.ip();
        }
        let unspecified: std::net::IpAddr = match peer {
            SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
        };
        std::net::UdpSocket::bind(SocketAddr::new(unspecified, 0))
            .and_then(|socket| socket.connect(peer).and_then(|()| socket.local_addr()))
            .map_or(unspecified, |local| local.ip())
    }

    /// One call to `dst`, answered within `timeout` (`TimedOut` otherwise).
    #[cfg(madsim)]
    pub async fn call<R: Request>(
        &self,
        dst: SocketAddr,
        request: R,
        timeout: Duration,
    ) -> std::io::Result<R::Response> {
        crate::deadline::within(timeout, self.endpoint.call(dst, request)).await?
    }

    /// One call to `dst`, answered within `timeout` (`TimedOut` otherwise); a peer that
    /// cannot be reached is `ConnectionRefused`.
    #[cfg(not(madsim))]
    pub async fn call<R: Request>(
        &self,
        dst: SocketAddr,
        request: R,
        timeout: Duration,
    ) -> std::io::Result<R::Response> {
        let client = self.client.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match tokio::spawn(async move { client.call_timeout(dst, request, timeout).await }).await {
            Ok(answer) => answer,
            Err(_) => {
                // The endpoint's connection to `dst` is broken for good: start afresh.
                match Endpoint::bind(SocketAddr::new(self.host, 0)).await {
                    Ok(fresh) => *self.client.lock().unwrap_or_else(|p| p.into_inner()) = fresh,
                    Err(error) => tracing::error!(%error, "cannot bind a fresh client endpoint"),
                }
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "the connection failed"))
            }
        }
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    #[test]
    fn a_caller_reaches_a_loopback_peer_from_loopback_and_any_other_from_a_local_address() {
        let local = Peers::local_ip_toward("127.0.0.1:7500".parse().unwrap());
        assert_eq!(local, std::net::IpAddr::from([127, 0, 0, 1]));
        // A documentation address (RFC 5737): whatever the routes, an address this host
        // can bind, never the peer's own.
        let local = Peers::local_ip_toward("192.0.2.1:7500".parse().unwrap());
        assert_ne!(local, std::net::IpAddr::from([192, 0, 2, 1]));
        assert!(std::net::UdpSocket::bind(SocketAddr::new(local, 0)).is_ok(), "{local} is local");
    }
}
