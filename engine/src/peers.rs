//! The call seam between roles (docs/engine.md 2.3): `Server` is where a role's handlers are
//! registered and `Peers` how it calls the others. Each role's handlers are the same
//! functions in both builds; only what carries the bytes differs.
//!
//! - Under the simulator: madsim's simulated endpoint, as always (its RPC costs a third of
//!   what a simulated gRPC call would; ARCHITECTURE.md, "The transport between roles").
//! - Live: gRPC on tonic (`crate::grpc`), with mutual TLS when the role has TLS material
//!   (`crate::tls`) and plaintext on loopback otherwise.

use crate::rpc::{Method, PeerAddr};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// What secures a role's port and its calls: live, its TLS material (`None`: plaintext,
/// loopback only); the simulator has nothing to secure.
#[cfg(not(madsim))]
pub type Security = Option<std::sync::Arc<crate::tls::Tls>>;
/// What secures a role's port and its calls: live, its TLS material (`None`: plaintext,
/// loopback only); the simulator has nothing to secure.
#[cfg(madsim)]
pub type Security = ();

/// A role's port: the handlers it serves.
pub struct Server {
    #[cfg(madsim)]
    endpoint: madsim::net::Endpoint,
    #[cfg(not(madsim))]
    handlers: crate::grpc::Handlers,
    #[cfg(not(madsim))]
    local: SocketAddr,
    #[cfg(not(madsim))]
    security: Security,
}

impl Server {
    /// The port of a simulated node.
    #[cfg(madsim)]
    pub fn new(endpoint: madsim::net::Endpoint) -> Server {
        Server { endpoint }
    }

    /// Binds `addr` and serves what is added to it.
    #[cfg(madsim)]
    pub async fn bind(addr: SocketAddr, _: &Security) -> std::io::Result<Server> {
        Ok(Server::new(madsim::net::Endpoint::bind(addr).await?))
    }

    /// Binds `addr` and serves gRPC on it from now on (mutual TLS with `security`); a
    /// method is answered once its handler is added.
    #[cfg(not(madsim))]
    pub async fn bind(addr: SocketAddr, security: &Security) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let handlers = crate::grpc::Handlers::default();
        crate::grpc::serve(listener, handlers.clone(), security.clone());
        Ok(Server { handlers, local, security: security.clone() })
    }

    /// Where the port listens.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        #[cfg(madsim)]
        {
            self.endpoint.local_addr()
        }
        #[cfg(not(madsim))]
        {
            Ok(self.local)
        }
    }

    /// Answers every `R` with `handler`.
    pub fn add<R, F, Fut>(&self, handler: F)
    where
        R: Method,
        F: Fn(R) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R::Response> + Send + 'static,
    {
        #[cfg(madsim)]
        self.endpoint.add_rpc_handler(handler);
        #[cfg(not(madsim))]
        self.handlers.add(handler);
    }
}

/// The calls of one role to the others.
pub struct Peers {
    #[cfg(madsim)]
    endpoint: madsim::net::Endpoint,
    #[cfg(not(madsim))]
    channels: crate::grpc::Channels,
}

impl Peers {
    /// The calls of the role serving on `server`, secured as its port is.
    pub fn new(server: &Server) -> Peers {
        #[cfg(madsim)]
        {
            Peers { endpoint: server.endpoint.clone() }
        }
        #[cfg(not(madsim))]
        {
            Peers { channels: crate::grpc::Channels::new(server.security.clone()) }
        }
    }

    /// Calls from a simulated endpoint of their own (the simulator's driver and trainer).
    #[cfg(madsim)]
    pub fn from_endpoint(endpoint: madsim::net::Endpoint) -> Peers {
        Peers { endpoint }
    }

    /// Calls from a caller that serves nothing (the gateway, a client): live, with
    /// `security`'s client certificate.
    #[cfg(not(madsim))]
    pub fn client(security: &Security) -> Peers {
        Peers { channels: crate::grpc::Channels::new(security.clone()) }
    }

    /// One call to `dst`, answered within `timeout` (`TimedOut` otherwise); live, a peer
    /// that cannot be reached is `ConnectionRefused`, at once.
    pub async fn call<R: Method>(&self, dst: &PeerAddr, request: R, timeout: Duration) -> std::io::Result<R::Response> {
        #[cfg(madsim)]
        {
            let Some(dst) = dst.ip_socket() else {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the simulator has no DNS names"));
            };
            crate::deadline::within(timeout, self.endpoint.call(dst, request)).await?
        }
        #[cfg(not(madsim))]
        {
            self.channels.call(dst, request, timeout).await
        }
    }
}
