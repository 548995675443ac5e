//! The simulated network as the patched madsim gives it (vendor/madsim/README.md): a
//! datagram arrives its send delay, its link latency and its receive delay after it was
//! sent, as in madsim 0.2.34, but with one timer instead of three; a clogged link or a
//! lost packet loses it; a receiver picks up messages already waiting without a delay of
//! its own.

use madsim::net::rpc::Request;
use madsim::net::{Endpoint, NetSim};
use madsim::runtime::{Handle, Runtime};
use madsim::time::{sleep, Instant};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

const SERVER: &str = "10.9.0.1:9000";
const CLIENT: &str = "10.9.0.2:9000";
/// The link latency of every test here: fixed, to the microsecond.
const LINK: Duration = Duration::from_millis(3);
/// The random delay at each end, which madsim's one-millisecond floor on `sleep` makes
/// exactly 1 ms.
const END_DELAY: Duration = Duration::from_millis(1);

#[derive(Serialize, Deserialize)]
struct Echo(u64);

impl Request for Echo {
    type Response = u64;
    const ID: u64 = 0x7e57_0001;
}

fn runtime(seed: u64, loss: f64) -> Runtime {
    let mut config = madsim::Config::default();
    config.net.send_latency = LINK..LINK + Duration::from_nanos(1);
    config.net.packet_loss_rate = loss;
    Runtime::with_seed_and_config(seed, config)
}

/// Starts an echo server on its own node; returns the node's id.
fn start_server(handle: &Handle) -> madsim::task::NodeId {
    let server: SocketAddr = SERVER.parse().unwrap();
    let node = handle.create_node().name("server").ip(server.ip()).build();
    node.spawn(async move {
        let endpoint = Endpoint::bind(server).await.unwrap();
        endpoint.add_rpc_handler(|Echo(x)| async move { x + 1 });
        std::future::pending::<()>().await;
    });
    node.id()
}

/// Runs `body` on a client node, with the client's endpoint and node id, to its end.
async fn on_client<T, Fut>(
    handle: &Handle,
    body: impl FnOnce(Endpoint, madsim::task::NodeId) -> Fut + Send + 'static,
) -> T
where
    T: Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let client: SocketAddr = CLIENT.parse().unwrap();
    let node = handle.create_node().name("client").ip(client.ip()).build();
    let id = node.id();
    node.spawn(async move { body(Endpoint::bind(client).await.unwrap(), id).await }).await.unwrap()
}

#[test]
fn an_rpc_takes_both_ends_delays_and_both_links_as_in_stock_madsim() {
    for seed in 0..20 {
        let rt = runtime(seed, 0.0);
        let handle = rt.handle().clone();
        let elapsed = rt.block_on(async move {
            start_server(&handle);
            on_client(&handle, |endpoint, _| async move {
                sleep(Duration::from_millis(10)).await;
                let start = Instant::now();
                let answer = endpoint.call(SERVER.parse().unwrap(), Echo(41)).await.unwrap();
                assert_eq!(answer, 42);
                start.elapsed()
            })
            .await
        });
        // Request and answer: each a send delay, the link and a receive delay.
        let expected = 2 * (END_DELAY + LINK + END_DELAY);
        assert!(
            elapsed >= expected && elapsed <= expected + Duration::from_micros(1),
            "seed {seed}: the call took {elapsed:?}, stock madsim takes {expected:?}"
        );
    }
}

#[test]
fn a_datagram_sent_over_a_clogged_link_is_lost_and_one_sent_after_it_heals_arrives() {
    let rt = runtime(1, 0.0);
    let handle = rt.handle().clone();
    rt.block_on(async move {
        let server = start_server(&handle);
        on_client(&handle, move |endpoint, client_id| async move {
            sleep(Duration::from_millis(10)).await;
            let net = NetSim::current();
            net.clog_link(client_id, server);
            let during = endpoint.call_timeout(SERVER.parse().unwrap(), Echo(1), Duration::from_millis(500)).await;
            assert!(during.is_err(), "a call over a clogged link must time out, got {during:?}");
            net.unclog_link(client_id, server);
            let after = endpoint.call_timeout(SERVER.parse().unwrap(), Echo(1), Duration::from_millis(500)).await;
            assert_eq!(after.unwrap(), 2, "the healed link carries the next call");
        })
        .await;
    });
}

#[test]
fn a_lossy_link_loses_about_its_loss_rate_of_calls() {
    let rt = runtime(3, 0.2);
    let handle = rt.handle().clone();
    let answered = rt.block_on(async move {
        start_server(&handle);
        on_client(&handle, |endpoint, _| async move {
            let mut answered = 0u32;
            for i in 0..400 {
                if endpoint.call_timeout(SERVER.parse().unwrap(), Echo(i), Duration::from_millis(50)).await.is_ok() {
                    answered += 1;
                }
            }
            answered
        })
        .await
    });
    // Each call is two datagrams: it is answered with probability 0.8 * 0.8 = 0.64.
    assert!((220..=290).contains(&answered), "{answered} of 400 calls answered at 20 % loss a datagram");
}

#[test]
fn messages_already_waiting_are_received_without_a_delay_each() {
    let rt = runtime(5, 0.0);
    let handle = rt.handle().clone();
    rt.block_on(async move {
        let server: SocketAddr = SERVER.parse().unwrap();
        let receiver = handle.create_node().name("receiver").ip(server.ip()).build();
        let received = receiver.spawn(async move {
            let endpoint = Endpoint::bind(server).await.unwrap();
            // Let all three arrive first.
            sleep(Duration::from_millis(100)).await;
            let start = Instant::now();
            for _ in 0..3 {
                endpoint.recv_from_raw(7).await.unwrap();
            }
            start.elapsed()
        });
        let client: SocketAddr = CLIENT.parse().unwrap();
        let sender = handle.create_node().name("sender").ip(client.ip()).build();
        sender
            .spawn(async move {
                let endpoint = Endpoint::bind(client).await.unwrap();
                sleep(Duration::from_millis(10)).await;
                let start = Instant::now();
                for i in 0..3u64 {
                    endpoint.send_to_raw(server, 7, Box::new(i)).await.unwrap();
                }
                // A send no longer sleeps: its delay is in the delivery.
                assert_eq!(start.elapsed(), Duration::ZERO);
            })
            .await
            .unwrap();
        assert_eq!(received.await.unwrap(), Duration::ZERO, "stock madsim waits 1 ms for each");
    });
}
