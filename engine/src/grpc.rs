//! The transport between roles, live (docs/engine.md 2.3): gRPC on tonic over HTTP/2, every request
//! of `rpc.rs` a unary method of one service, `seedcore.v1.Engine`, its message the
//! request's bincode bytes. One definition per message (the `rpc.rs` types), no protoc.
//!
//! An engine port is hostile ground. Connections are accepted by a loop that does nothing
//! else: each one's TLS handshake (or, without TLS, its first byte) is awaited in a task of
//! its own with a deadline, and only then is it handed to tonic. A bare connect, a client
//! without a certificate, random bytes or a client that stalls cost one task and one file
//! descriptor for at most `HANDSHAKE`, and never the loop. Connections beyond
//! `MAX_CONNECTIONS` are closed at once. Messages are bounded (`MAX_MESSAGE_BYTES`) and
//! decoded with a bincode limit; a bad one is `INVALID_ARGUMENT`, never a panic.

use crate::rpc::{Method, PeerAddr};
use crate::tls::Tls;
use bincode::Options;
use bytes::{Buf, BufMut, Bytes};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::server::Connected;
use tonic::{Code, Status};

/// The gRPC service every role serves.
pub const SERVICE: &str = "seedcore.v1.Engine";
/// The largest message either way (a `CompleteBatch` of a second at 20,000 tasks a second
/// is about 2.5 MB).
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// How long a new connection has to finish its TLS handshake (or send its first byte).
pub const HANDSHAKE: Duration = Duration::from_secs(10);
/// Connections held at once by one port; more are closed as they arrive.
pub const MAX_CONNECTIONS: usize = 4_096;
/// HTTP/2 streams at once on one connection (a gateway's calls to the coordinator share one).
const MAX_STREAMS: u32 = 16_384;
/// How long a call waits for a connection to a peer before it fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings find a peer that vanished without closing its connection.
const KEEPALIVE: Duration = Duration::from_secs(20);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

fn options() -> impl Options {
    bincode::DefaultOptions::new().with_limit(MAX_MESSAGE_BYTES as u64).reject_trailing_bytes()
}

/// A message's bytes.
pub fn encode<T: serde::Serialize>(value: &T) -> Result<Bytes, Status> {
    options().serialize(value).map(Bytes::from).map_err(|e| Status::internal(format!("cannot encode: {e}")))
}

/// A message from bytes a peer sent: `INVALID_ARGUMENT` when they are not one.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    options().deserialize(bytes).map_err(|e| Status::invalid_argument(format!("not a valid message: {e}")))
}

/// Messages are bincode already: the codec moves bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

type Handler = Arc<dyn Fn(Bytes) -> BoxFuture<Result<Bytes, Status>> + Send + Sync>;

/// A role's handlers by gRPC path; a port serves them as they are added.
#[derive(Clone, Default)]
pub struct Handlers(Arc<RwLock<BTreeMap<&'static str, Handler>>>);

impl Handlers {
    /// Serves `R` with `handler` (replacing an earlier handler of `R`).
    pub fn add<R, F, Fut>(&self, handler: F)
    where
        R: Method,
        F: Fn(R) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R::Response> + Send + 'static,
    {
        let erased: Handler = Arc::new(move |bytes: Bytes| -> BoxFuture<Result<Bytes, Status>> {
            match decode::<R>(&bytes) {
                Ok(request) => {
                    // The handler runs as a task of its own, to its end, as on madsim's
                    // endpoint: a caller that gives up (its deadline, a reset stream, a
                    // vanished client) must not cancel a task half-run (charged and not
                    // recorded, say). A handler that panics is `INTERNAL`, never a dead port.
                    let answer = tokio::spawn(handler(request));
                    Box::pin(async move {
                        match answer.await {
                            Ok(response) => encode(&response),
                            Err(error) => Err(Status::internal(format!("the handler failed: {error}"))),
                        }
                    })
                }
                Err(status) => Box::pin(std::future::ready(Err(status))),
            }
        });
        self.0.write().unwrap_or_else(|p| p.into_inner()).insert(R::PATH, erased);
    }

    fn get(&self, path: &str) -> Option<Handler> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).get(path).cloned()
    }
}

/// The one service: a request's path picks its handler.
#[derive(Clone)]
struct EngineService(Handlers);

impl tonic::server::NamedService for EngineService {
    const NAME: &'static str = SERVICE;
}

struct Unary(Handler);

impl tonic::server::UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let answer = (self.0)(request.into_inner());
        Box::pin(async move { answer.await.map(tonic::Response::new) })
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for EngineService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let handler = self.0.get(request.uri().path());
        Box::pin(async move {
            let Some(handler) = handler else {
                return Ok(Status::unimplemented("no such method").into_http());
            };
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .apply_max_message_size_config(Some(MAX_MESSAGE_BYTES), Some(MAX_MESSAGE_BYTES));
            Ok(grpc.unary(Unary(handler), request).await)
        })
    }
}

/// An accepted connection, plain or TLS, holding its place under `MAX_CONNECTIONS`.
pub struct Conn {
    io: Io,
    remote: SocketAddr,
    _permit: OwnedSemaphorePermit,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// Who is at the other end of a connection.
#[derive(Clone, Debug)]
pub struct Remote(pub SocketAddr);

impl Connected for Conn {
    type ConnectInfo = Remote;

    fn connect_info(&self) -> Remote {
        Remote(self.remote)
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Makes an accepted TCP connection ready for HTTP/2: its TLS handshake, or without TLS
/// its first byte, within `HANDSHAKE`. `None`: it is closed (the reason is logged at debug).
async fn ready(
    stream: TcpStream,
    remote: SocketAddr,
    tls: Option<&tokio_rustls::TlsAcceptor>,
    permit: OwnedSemaphorePermit,
) -> Option<Conn> {
    let _ = stream.set_nodelay(true);
    let io = match tls {
        Some(acceptor) => match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => Io::Tls(Box::new(stream)),
            Ok(Err(error)) => {
                tracing::debug!(%remote, %error, "TLS handshake refused");
                return None;
            }
            Err(_) => {
                tracing::debug!(%remote, "no TLS handshake within {} s", HANDSHAKE.as_secs());
                return None;
            }
        },
        None => {
            let mut first = [0u8; 1];
            match tokio::time::timeout(HANDSHAKE, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => Io::Plain(stream),
                _ => {
                    tracing::debug!(%remote, "closed, or nothing sent within {} s", HANDSHAKE.as_secs());
                    return None;
                }
            }
        }
    };
    Some(Conn { io, remote, _permit: permit })
}

/// The accept loop: takes every connection, readies each in a task of its own, and hands
/// the ready ones to `ready_tx`. It ends when the server is gone (`ready_tx` closed).
async fn accept(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ready_tx: tokio::sync::mpsc::Sender<io::Result<Conn>>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut refused_logged = false;
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = ready_tx.closed() => return,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if !refused_logged {
                tracing::warn!(%remote, "{MAX_CONNECTIONS} connections open: closing new ones until some end");
                refused_logged = true;
            }
            drop(stream);
            continue;
        };
        refused_logged = false;
        let (tls, ready_tx) = (tls.clone(), ready_tx.clone());
        tokio::spawn(async move {
            if let Some(conn) = ready(stream, remote, tls.as_ref(), permit).await {
                let _ = ready_tx.send(Ok(conn)).await;
            }
        });
    }
}

/// Serves `handlers` on `listener` (with mutual TLS when `tls` is given) until the
/// process ends.
pub fn serve(listener: TcpListener, handlers: Handlers, tls: Option<Arc<Tls>>) {
    let (ready_tx, ready_rx) = tokio::sync::mpsc::channel(256);
    let acceptor = tls.map(|tls| tls.acceptor());
    tokio::spawn(accept(listener, acceptor, ready_tx));
    let incoming = tokio_stream::wrappers::ReceiverStream::new(ready_rx);
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(MAX_STREAMS))
        .http2_keepalive_interval(Some(KEEPALIVE))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(EngineService(handlers));
    tokio::spawn(async move {
        if let Err(error) = server.serve_with_incoming(incoming).await {
            tracing::error!(%error, "the engine port stopped serving");
        }
    });
}

/// Channels to peers, one each, made on first use; each reconnects (resolving a DNS name
/// again) when its connection is lost.
pub struct Channels {
    channels: Mutex<BTreeMap<PeerAddr, tonic::transport::Channel>>,
    tls: Option<Arc<Tls>>,
}

impl Channels {
    pub fn new(tls: Option<Arc<Tls>>) -> Channels {
        Channels { channels: Mutex::default(), tls }
    }

    fn channel(&self, peer: &PeerAddr) -> io::Result<tonic::transport::Channel> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(peer) {
            return Ok(channel.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let host = match peer {
            PeerAddr::Ip(SocketAddr::V6(v6)) => format!("[{}]", v6.ip()),
            PeerAddr::Ip(addr) => addr.ip().to_string(),
            PeerAddr::Name { host, .. } => host.to_string(),
        };
        let invalid = |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidInput, format!("{peer}: {e}"));
        let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{host}:{}", peer.port()))
            .map_err(|e| invalid(&e))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.client()).map_err(|e| invalid(&e))?;
        }
        let channel = endpoint.connect_lazy();
        channels.insert(peer.clone(), channel.clone());
        Ok(channel)
    }

    /// One call to `peer`, answered within `timeout` (`TimedOut` otherwise; the deadline
    /// goes to the peer as `grpc-timeout`). A peer that cannot be reached is
    /// `ConnectionRefused`, at once.
    pub async fn call<R: Method>(&self, peer: &PeerAddr, request: R, timeout: Duration) -> io::Result<R::Response> {
        let channel = self.channel(peer)?;
        let body = encode(&request).map_err(|s| io::Error::other(s.message().to_string()))?;
        let call = async move {
            let mut grpc = tonic::client::Grpc::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
            let mut request = tonic::Request::new(body);
            request.set_timeout(timeout);
            let path = http::uri::PathAndQuery::from_static(R::PATH);
            grpc.unary(request, path, RawCodec).await
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, format!("{peer} did not answer in time"))),
            Ok(Ok(answer)) => decode(&answer.into_inner()).map_err(|s| io::Error::other(s.message().to_string())),
            Ok(Err(status)) => Err(error(peer, &status)),
        }
    }
}

/// A failed call as an `io::Error` of the kind callers act on.
fn error(peer: &PeerAddr, status: &Status) -> io::Error {
    let kind = match status.code() {
        Code::DeadlineExceeded | Code::Cancelled => io::ErrorKind::TimedOut,
        Code::Unavailable | Code::Unknown => io::ErrorKind::ConnectionRefused,
        Code::Unauthenticated | Code::PermissionDenied => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("{peer}: {} ({:?})", status.message(), status.code()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::Ping;
    use std::io::Write;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    /// A port answering `Ping` after `delay`, counting the answers it finished.
    async fn port(delay: Duration) -> (PeerAddr, Arc<AtomicU32>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handlers = Handlers::default();
        let finished = Arc::new(AtomicU32::new(0));
        let count = finished.clone();
        handlers.add(move |Ping| {
            let count = count.clone();
            async move {
                tokio::time::sleep(delay).await;
                count.fetch_add(1, Ordering::SeqCst);
                "pong".to_string()
            }
        });
        serve(listener, handlers, None);
        (addr.into(), finished)
    }

    #[test]
    fn strangers_do_not_stop_a_port() {
        runtime().block_on(async {
            let (peer, _) = port(Duration::ZERO).await;
            let addr = peer.ip_socket().unwrap();
            let channels = Channels::new(None);
            assert_eq!(channels.call(&peer, Ping, Duration::from_secs(5)).await.unwrap(), "pong");
            // Bare connects, noise, an HTTP/2 preface with garbage after it, idle
            // connections: each is a task of its own, never the accept loop's.
            for _ in 0..50 {
                drop(std::net::TcpStream::connect(addr).unwrap());
            }
            let mut noisy = std::net::TcpStream::connect(addr).unwrap();
            let _ = noisy.write_all(&[0x16; 65_536]);
            let mut preface = std::net::TcpStream::connect(addr).unwrap();
            let _ = preface.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff");
            let idle: Vec<_> = (0..200).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
            assert_eq!(channels.call(&peer, Ping, Duration::from_secs(5)).await.unwrap(), "pong");
            // A fresh caller, after all that.
            let fresh = Channels::new(None);
            assert_eq!(fresh.call(&peer, Ping, Duration::from_secs(5)).await.unwrap(), "pong");
            drop((idle, noisy, preface));
        });
    }

    #[test]
    fn a_caller_that_gives_up_does_not_cancel_the_handler() {
        runtime().block_on(async {
            let (peer, finished) = port(Duration::from_millis(300)).await;
            let channels = Channels::new(None);
            let error = channels.call(&peer, Ping, Duration::from_millis(50)).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
            tokio::time::sleep(Duration::from_millis(600)).await;
            assert_eq!(finished.load(Ordering::SeqCst), 1, "the handler ran to its end");
        });
    }

    #[test]
    fn a_peer_that_is_down_fails_fast_and_is_reached_once_it_is_up() {
        runtime().block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            drop(listener);
            let peer = PeerAddr::parse(&format!("localhost:{}", addr.port())).unwrap();
            let channels = Channels::new(None);
            let error = channels.call(&peer, Ping, Duration::from_secs(5)).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused, "{error}");
            let listener = TcpListener::bind(addr).await.unwrap();
            let handlers = Handlers::default();
            handlers.add(|Ping| async { "back".to_string() });
            serve(listener, handlers, None);
            assert_eq!(channels.call(&peer, Ping, Duration::from_secs(5)).await.unwrap(), "back");
        });
    }

    #[test]
    fn a_message_that_does_not_decode_is_refused_not_obeyed() {
        assert!(decode::<crate::rpc::Promote>(&[0xff; 3]).is_err());
        let big = encode(&vec![7u8; 64]).unwrap();
        assert!(decode::<Vec<u8>>(&big).is_ok());
        // A length prefix claiming more than the limit: an error, not an allocation.
        let mut huge = vec![0xfd];
        huge.extend(u64::MAX.to_le_bytes());
        assert!(decode::<Vec<u8>>(&huge).is_err());
        let mut trailing = big.to_vec();
        trailing.push(0);
        assert!(decode::<Vec<u8>>(&trailing).is_err(), "trailing bytes are refused");
    }
}
