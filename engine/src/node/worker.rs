//! A fast or deep worker: runs backend attempts with bounded concurrency; calls beyond it
//! wait in the worker's queue (and so show up as latency, not as loss).

use super::NodeContext;
use crate::backend::{Call, CallShape, SimulatedBackend};
use crate::conditions::BackendWeather;
use crate::peers::Server;
use crate::probe::{NodeEvent, NodeSignal, Role, Signal};
use crate::rpc::{Execute, Executed};
use crate::task::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Draws one backend call of a worker running `running` calls, this one included.
/// `madsim::rand` is the simulator's seeded stream under `--cfg madsim` and OS entropy
/// live, which is what each build needs.
#[allow(clippy::disallowed_methods)]
fn draw(backend: &SimulatedBackend, request: &Execute, running: u32, weather: BackendWeather) -> Call {
    let mut rng = madsim::rand::thread_rng();
    let shape = CallShape {
        tokens_in: request.tokens_in,
        tokens_out: request.tokens_out,
        max_tokens_out: request.max_tokens_out,
        running,
    };
    backend.draw(&mut rng, shape, weather)
}

/// The worker's concurrent backend calls; more wait in its queue.
fn slots(config: &crate::config::EngineConfig, path: Path) -> Arc<Semaphore> {
    let concurrency = match path {
        Path::Fast => config.dispatch.fast_concurrency,
        Path::Deep => config.dispatch.deep_concurrency,
    };
    Arc::new(Semaphore::new(concurrency.max(1) as usize))
}

/// A call that waited in the worker's queue for as long as the caller's timeout is shed
/// without running: its caller has given up and retried elsewhere, and running it anyway
/// would keep an overloaded worker busy with answers nobody reads (a metastable collapse
/// that outlives the overload).
fn shed(received: madsim::time::Instant, timeout: Duration) -> Option<Executed> {
    let waited = received.elapsed();
    (waited >= timeout).then(|| Executed {
        result: Err(format!("shed after {} ms in the worker's queue", waited.as_millis())),
        latency_ms: 0,
        ttft_ms: 0,
    })
}

/// Starts a worker of `path` on `server`.
pub async fn start_worker(server: Server, context: NodeContext, path: Path) {
    #[cfg(not(madsim))]
    if let Some(openai) = &context.config.openai {
        return start_openai_worker(server, &context, path, openai);
    }
    let backend = Arc::new(SimulatedBackend::new(&context.config.backend, path));
    let slots = slots(context.config.as_ref(), path);
    let concurrency = slots.available_permits();
    let conditions = context.conditions.clone();
    let timeout = Duration::from_millis(context.config.dispatch.timeout_ms(path));
    server.add(move |request: Execute| {
        let backend = backend.clone();
        let slots = slots.clone();
        let conditions = conditions.clone();
        let received = madsim::time::Instant::now();
        async move {
            let _slot = slots.acquire().await.expect("the semaphore is never closed");
            if let Some(shed) = shed(received, timeout) {
                return shed;
            }
            let running = concurrency.saturating_sub(slots.available_permits()) as u32;
            let mut call = draw(&backend, &request, running, conditions.backend(path));
            if conditions.failed_in_trace(request.task_id) {
                call = Call { latency_ms: call.ttft_ms, result: Err("failed in the trace".to_string()), ..call };
            }
            madsim::time::sleep(Duration::from_millis(call.latency_ms)).await;
            Executed { result: call.result, latency_ms: call.latency_ms, ttft_ms: call.ttft_ms }
        }
    });
    answer_pings(&server, &context.name);
    context.emit(Signal::Node(NodeSignal { event: NodeEvent::Started, role: Role::worker(path) }));
}

/// A worker whose backend is an OpenAI-compatible endpoint (live only), with the same
/// bounded concurrency.
#[cfg(not(madsim))]
fn start_openai_worker(server: Server, context: &NodeContext, path: Path, openai: &crate::config::OpenAiConfig) {
    let timeout = Duration::from_millis(context.config.dispatch.timeout_ms(path));
    let backend = match crate::openai::OpenAiBackend::new(openai, path, timeout) {
        Ok(b) => Arc::new(b),
        Err(error) => {
            // The client cannot be built (no TLS backend, say): every attempt says why.
            tracing::error!(%error, "the OpenAI-compatible backend is unusable");
            server.add(move |_: Execute| {
                let error = error.clone();
                async move { Executed { result: Err(error), latency_ms: 0, ttft_ms: 0 } }
            });
            return;
        }
    };
    let slots = slots(context.config.as_ref(), path);
    server.add(move |request: Execute| {
        let backend = backend.clone();
        let slots = slots.clone();
        let received = madsim::time::Instant::now();
        async move {
            let _slot = slots.acquire().await.expect("the semaphore is never closed");
            if let Some(shed) = shed(received, timeout) {
                return shed;
            }
            backend.call(&request).await
        }
    });
    answer_pings(&server, &context.name);
    context.emit(Signal::Node(NodeSignal { event: NodeEvent::Started, role: Role::worker(path) }));
}

/// Live, a worker answers `Ping` (a gateway in another process waits for it); the
/// simulator's workers have no such handler, so a run's schedule is as before.
fn answer_pings(server: &Server, name: &str) {
    #[cfg(not(madsim))]
    {
        let name = name.to_string();
        server.add(move |_: crate::rpc::Ping| {
            let name = name.clone();
            async move { name }
        });
    }
    #[cfg(madsim)]
    let _ = (server, name);
}
