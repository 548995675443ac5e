//! A fast or deep worker: runs backend attempts with bounded concurrency; calls beyond it
//! wait in the worker's queue (and so show up as latency, not as loss).

use super::NodeContext;
use crate::backend::SimulatedBackend;
use crate::conditions::BackendWeather;
use crate::probe::{NodeSignal, Signal};
use crate::rpc::{Execute, Executed};
use crate::task::Path;
use madsim::net::Endpoint;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Draws one backend call. `madsim::rand` is the simulator's seeded stream under
/// `--cfg madsim` and OS entropy live, which is what each build needs.
#[allow(clippy::disallowed_methods)]
fn draw(backend: &SimulatedBackend, request: &Execute, weather: BackendWeather) -> (u64, Result<u32, String>) {
    let mut rng = madsim::rand::thread_rng();
    backend.draw(&mut rng, request.tokens_out, request.max_tokens_out, weather)
}

/// Starts a worker of `path` on `endpoint`.
pub async fn start_worker(endpoint: Endpoint, context: NodeContext, path: Path) {
    let backend = Arc::new(SimulatedBackend::new(&context.config.backend, path));
    let concurrency = match path {
        Path::Fast => context.config.dispatch.fast_concurrency,
        Path::Deep => context.config.dispatch.deep_concurrency,
    };
    let slots = Arc::new(Semaphore::new(concurrency.max(1) as usize));
    let conditions = context.conditions.clone();
    endpoint.add_rpc_handler(move |request: Execute| {
        let backend = backend.clone();
        let slots = slots.clone();
        let conditions = conditions.clone();
        async move {
            let _slot = slots.acquire().await.expect("the semaphore is never closed");
            let (latency_ms, result) = draw(&backend, &request, conditions.backend(path));
            madsim::time::sleep(Duration::from_millis(latency_ms)).await;
            Executed { result, latency_ms }
        }
    });
    context.emit(Signal::Node(NodeSignal { event: "started".into(), role: path.as_str().into() }));
}
