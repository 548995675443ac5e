//! The HTTP gateway (docs/engine.md 2.3, docs/live.md 4.11), live only: JSON over HTTP in front of
//! the engine's nodes, with per-endpoint rate limits, `/metrics`, health probes and capture.
//!
//! The gateway is a client of the engine like any other: every request becomes an RPC to
//! the coordinator or the state node (gRPC, with the gateway's client certificate when the
//! roles use mutual TLS), so it serves one process with every role or a deployment with
//! one role per process alike, and the engine itself is not forked for it.
//!
//! Status codes: 200 for an answer (a task that was rejected by the governor or failed on
//! its backend is an answer, with its outcome); 401 without a valid bearer token and 403
//! for a token without the endpoint's scope, when tokens are configured (`auth`); 400 for
//! a bad request, naming the field;
//! 404 and 405 for an unknown route or method; 429 over a rate limit and 503 when the
//! coordinator is halted, overloaded or draining, both with `Retry-After`; 503 when the
//! engine cannot be reached and 504 when it does not answer in time. Never 500.

pub mod api;
pub mod auth;
pub mod capture;
pub mod limits;
pub mod metrics;

use crate::config::EngineConfig;
use crate::memory::Tier;
use crate::peers::{Peers, Security};
use crate::router::Reason;
use crate::rpc::{
    Addresses, CoordinatorStatus, Decided, Method, PeerAddr, Routed, StateQuery, StateSnapshot, StatusQuery,
    SubmitTask, Submitted, Tier25Answer, Tier25Retrieve, Tier25Store, Validate,
};
use crate::task::{Outcome, RejectReason, Task};
use api::ApiError;
use auth::{Caller, Refusal, Scope, Tokens};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use capture::{Capture, CaptureConfig};
use limits::{Api, Limiters, Limits};
use metrics::Metrics;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long the gateway waits for a status or state answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The gateway's settings.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub limits: Limits,
    pub capture: Option<CaptureConfig>,
    /// The bearer tokens every endpoint but the probes requires; `None`: no authentication
    /// (a gateway on loopback only).
    pub tokens: Option<Tokens>,
    /// `/metrics` needs a `read` token (otherwise it is open, as the probes are).
    pub metrics_need_read: bool,
}

impl GatewayConfig {
    /// No authentication, no capture, the default limits.
    pub fn open(limits: Limits) -> GatewayConfig {
        GatewayConfig { limits, capture: None, tokens: None, metrics_need_read: false }
    }
}

/// The running gateway's state, shared by its handlers.
pub struct Gateway {
    engine: Arc<EngineConfig>,
    addresses: Addresses,
    /// Calls to the coordinator and the state node.
    peers: Peers,
    limiters: Limiters,
    metrics: Metrics,
    capture: Option<Capture>,
    tokens: Option<Tokens>,
    metrics_need_read: bool,
    ready: AtomicBool,
    draining: AtomicBool,
}

/// The time line of live tasks: Unix time in ms, so the budget's day is the UTC day.
#[allow(clippy::disallowed_types, clippy::disallowed_methods, reason = "live only: tasks are stamped in Unix time")]
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = (status, axum::Json(json!({"error": self.error, "field": self.field}))).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

fn unavailable(error: impl Into<String>, retry_after: u64) -> ApiError {
    ApiError { status: 503, error: error.into(), field: None, retry_after: Some(retry_after) }
}

fn ok(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

/// An outcome as JSON.
pub fn outcome_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Completed { path, latency_ms, ttft_ms, cost_micro_usd, tokens_in, tokens_out, cache_hit } => json!({
            "status": "completed", "path": path.as_str(), "latency_ms": latency_ms, "ttft_ms": ttft_ms,
            "tpot_ms": crate::task::tpot_ms(*latency_ms, *ttft_ms, *tokens_out, *cache_hit),
            "cost_micro_usd": cost_micro_usd, "tokens_in": tokens_in, "tokens_out": tokens_out,
            "cache_hit": cache_hit,
        }),
        Outcome::Failed { path, error } => json!({"status": "failed", "path": path.as_str(), "error": error}),
        Outcome::Rejected { reason } => json!({"status": "rejected", "reason": reason.as_str()}),
    }
}

fn decision_json(decision: Option<&Decided>) -> Value {
    decision.map_or(Value::Null, |d| {
        json!({"path": d.path.as_str(), "reason": d.reason.as_str(), "surprise": d.surprise, "valve_seq": d.valve_seq})
    })
}

impl Gateway {
    /// A gateway for the engine at `addresses`, calling it as `security` allows (the
    /// gateway's client certificate, with mutual TLS).
    pub async fn new(
        engine: Arc<EngineConfig>,
        addresses: Addresses,
        config: GatewayConfig,
        security: &Security,
    ) -> std::io::Result<Arc<Gateway>> {
        let peers = Peers::client(security);
        let capture = config.capture.map(Capture::start).transpose()?;
        Ok(Arc::new(Gateway {
            engine,
            addresses,
            peers,
            limiters: Limiters::new(&config.limits),
            metrics: Metrics::new(),
            capture,
            tokens: config.tokens,
            metrics_need_read: config.metrics_need_read,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }))
    }

    /// Marks the engine behind the gateway as started: `/readyz` may answer 200.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Stops taking work: task, route and store requests get 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Flushes and closes the capture, if any: (rows written, rows dropped).
    pub fn close_capture(&self) -> Option<(u64, u64)> {
        self.capture.as_ref().map(Capture::close)
    }

    /// One RPC to an engine node: a node that does not answer in time is 504, one that
    /// cannot be reached 503.
    async fn call<R>(&self, dst: &PeerAddr, request: R, timeout: Duration) -> Result<R::Response, ApiError>
    where
        R: Method,
    {
        match self.peers.call(dst, request, timeout).await {
            Ok(response) => Ok(response),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                Err(ApiError::new(504, format!("the engine ({dst}) did not answer within {} ms", timeout.as_millis())))
            }
            Err(e) => {
                tracing::warn!(%dst, error = %e, "an engine node is unreachable");
                Err(unavailable(format!("the engine ({dst}) is unreachable: {e}"), 1))
            }
        }
    }

    fn accepting(&self) -> Result<(), ApiError> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(unavailable("the gateway is shutting down", 5));
        }
        Ok(())
    }

    async fn status(&self) -> Result<CoordinatorStatus, ApiError> {
        self.call(&self.addresses.coordinator, StatusQuery { at_ms: now_unix_ms() }, QUERY_TIMEOUT).await
    }

    async fn state(&self) -> Result<StateSnapshot, ApiError> {
        self.call(&self.addresses.state, StateQuery { now_ms: now_unix_ms() }, QUERY_TIMEOUT).await
    }

    /// The longest a task may take: the worst case of dispatch, twice (a resubmission waits
    /// for the first submission), and a margin.
    fn task_timeout(&self) -> Duration {
        Duration::from_millis(self.engine.dispatch.worst_case_ms().saturating_mul(2).saturating_add(5_000))
    }
}

/// The gateway's routes, with rate limits and request metrics around them.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route(Api::Tasks.path(), post(tasks))
        .route(Api::Route.path(), post(route))
        .route(Api::Status.path(), get(status))
        .route(Api::State.path(), get(state))
        .route(Api::Energy.path(), get(energy))
        .route(Api::Tier25Store.path(), post(tier25_store))
        .route(Api::Tier25Retrieve.path(), get(tier25_retrieve))
        .route(Api::Validate.path(), post(validate))
        .route(Api::Metrics.path(), get(metrics))
        .route(Api::Healthz.path(), get(healthz))
        .route(Api::Readyz.path(), get(readyz))
        .fallback(|| async { ApiError::new(404, "no such endpoint") })
        .method_not_allowed_fallback(|| async { ApiError::new(405, "method not allowed on this endpoint") })
        .layer(axum::middleware::from_fn_with_state(gateway.clone(), guard))
        .with_state(gateway)
}

/// Serves `router(gateway)` on `listener` until `shutdown` resolves, then lets requests in
/// progress finish.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(gateway)).with_graceful_shutdown(shutdown).await
}

/// What an endpoint needs of a caller when tokens are configured: nothing (the probes,
/// and `/metrics` unless it needs `read`), a scope, or any valid token (an unknown path).
fn access(api: Option<Api>, metrics_need_read: bool) -> Option<Option<Scope>> {
    match api {
        Some(Api::Healthz | Api::Readyz) => None,
        Some(Api::Metrics) => metrics_need_read.then_some(Some(Scope::Read)),
        Some(Api::Tasks | Api::Route) => Some(Some(Scope::Submit)),
        Some(Api::Status | Api::State | Api::Energy | Api::Tier25Retrieve) => Some(Some(Scope::Read)),
        Some(Api::Validate | Api::Tier25Store) => Some(Some(Scope::Operate)),
        None => Some(None),
    }
}

/// 401 or 403, with the JSON error body; the token's name (never the token) is logged.
fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::Unauthenticated(why) => {
            tracing::debug!(why, "request refused: 401");
            let mut response = ApiError::new(401, why).into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        Refusal::Forbidden { name, needs } => {
            tracing::warn!(token = %name, scope = needs.as_str(), "request refused: 403");
            ApiError::new(403, format!("the token {name:?} lacks the {} scope this endpoint needs", needs.as_str()))
                .into_response()
        }
    }
}

/// Authentication, then the rate limit, then the handler; every answer is counted. The
/// caller goes to the handler as an extension.
#[allow(clippy::disallowed_types, clippy::disallowed_methods, reason = "live only: HTTP latency on the wall clock")]
async fn guard(State(gateway): State<Arc<Gateway>>, mut request: axum::extract::Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let api = Api::of_path(request.uri().path());
    // Authentication comes before the limiter: an unauthenticated flood spends no
    // caller's budget.
    if let (Some(tokens), Some(needs)) = (&gateway.tokens, access(api, gateway.metrics_need_read)) {
        let header = request.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
        match tokens.authorize(header, needs) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
            }
            Err(refusal) => {
                let response = refused(refusal);
                gateway.metrics.request(api, response.status().as_u16(), started.elapsed());
                return response;
            }
        }
    }
    let response = match api.map_or(Ok(()), |api| gateway.limiters.check(api)) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let name = api.map_or("this endpoint", Api::name);
            ApiError {
                status: 429,
                error: format!("over the rate limit of {name}; retry after {seconds} s"),
                field: None,
                retry_after: Some(seconds.max(1)),
            }
            .into_response()
        }
    };
    gateway.metrics.request(api, response.status().as_u16(), started.elapsed());
    response
}

async fn tasks(
    State(gateway): State<Arc<Gateway>>,
    caller: Option<axum::Extension<Caller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    gateway.accepting()?;
    let (task, named) = api::task(&body, now_unix_ms())?;
    let request = SubmitTask { task: task.clone(), assign_id: !named };
    let Submitted { task_id, decision, outcome, fresh } =
        gateway.call(&gateway.addresses.coordinator, request, gateway.task_timeout()).await?;
    let task = Task { task_id, ..task };
    if let (true, Some(capture)) = (fresh, &gateway.capture) {
        let reason = decision.map(|d| d.reason.as_str());
        let client = caller.as_ref().map(|c| c.name.as_str());
        capture.record(&task, &capture::decision_fields(&outcome, reason, decision.map(|d| d.valve_seq), client));
    }
    if let Outcome::Completed { path, latency_ms, ttft_ms, tokens_out, cache_hit, .. } = outcome {
        gateway.metrics.task(
            path,
            latency_ms,
            ttft_ms,
            crate::task::tpot_ms(latency_ms, ttft_ms, tokens_out, cache_hit),
        );
    }
    let body = json!({
        "task_id": task_id,
        "at_ms": task.at_ms,
        "decision": decision_json(decision.as_ref()),
        "outcome": outcome_json(&outcome),
    });
    let status = match outcome {
        Outcome::Rejected { reason: RejectReason::Halted } => return Err(halted(Some(body))),
        Outcome::Rejected { reason: RejectReason::Overload } => {
            let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
            return Ok(response);
        }
        _ => StatusCode::OK,
    };
    Ok((status, axum::Json(body)).into_response())
}

/// 503 for a halted coordinator; the body says why, with the task's answer if there is one.
fn halted(task: Option<Value>) -> ApiError {
    let mut error = unavailable("the coordinator is halted: its ledger failed verification", 60);
    if let Some(task) = task {
        error.error = format!("{} (task {})", error.error, task["task_id"]);
    }
    error
}

async fn route(State(gateway): State<Arc<Gateway>>, body: Bytes) -> Result<Response, ApiError> {
    gateway.accepting()?;
    let (task, _) = api::task(&body, now_unix_ms())?;
    let routed: Routed = gateway.call(&gateway.addresses.coordinator, crate::rpc::Route(task), QUERY_TIMEOUT).await?;
    if routed.halted {
        return Err(halted(None));
    }
    let [cache_miss, valve, drift, state_change, uncertainty, pressure] = routed.inputs;
    Ok(ok(json!({
        "path": routed.path.as_str(),
        "reason": routed.reason.as_str(),
        "surprise": routed.surprise,
        "cusum_s": routed.cusum_s,
        "breached": routed.breached,
        "inputs": {
            "cache_miss": cache_miss, "valve": valve, "drift": drift,
            "state_change": state_change, "uncertainty": uncertainty, "pressure": pressure,
        },
    })))
}

fn by_name<const N: usize>(names: [&'static str; N], counts: [u64; N]) -> Value {
    Value::Object(names.into_iter().zip(counts).map(|(n, c)| (n.to_string(), json!(c))).collect())
}

fn status_json(s: &CoordinatorStatus) -> Value {
    json!({
        "halted": s.halted.is_some(),
        "halt_reason": s.halted,
        "draining": s.draining,
        "valve": {"s": s.cusum_s, "h": s.cusum_h, "tasks": s.valve_tasks, "breaches": s.breaches},
        "fast_path_ratio": s.fast_ratio_window,
        "decisions": by_name(Reason::ALL.map(Reason::as_str), s.decisions),
        "rejections": by_name(RejectReason::ALL.map(RejectReason::as_str), s.rejections),
        "completed": {"fast": s.completed.fast, "deep": s.completed.deep},
        "failed": {"fast": s.failed.fast, "deep": s.failed.deep},
        "cache": {
            "hits": s.cache_hits, "mw_hit_rate": s.mw_hit_rate,
            "hits_by_tier": by_name(Tier::ALL.map(Tier::as_str), s.tier_hits),
            "served_age_max_ms": s.served_age_max_ms,
        },
        "in_flight": s.in_flight,
        "autoscale": {
            "fast": {"target": s.autoscale[0].target, "demand": s.autoscale[0].demand, "replicas": s.autoscale[0].active},
            "deep": {"target": s.autoscale[1].target, "demand": s.autoscale[1].demand, "replicas": s.autoscale[1].active},
        },
        "budget": {
            "day": s.day, "spent_micro_usd": s.spent_today_micro_usd,
            "daily_budget_micro_usd": s.daily_budget_micro_usd,
        },
        "ledger": {"receipts": s.ledger_receipts, "cycles": s.ledger_cycles},
    })
}

/// The read endpoints take no parameters; one given is a mistake worth naming.
fn no_query(query: Option<&str>) -> Result<(), ApiError> {
    match query.and_then(|q| q.split('&').find(|p| !p.is_empty())) {
        Some(pair) => {
            let name = pair.split_once('=').map_or(pair, |(k, _)| k);
            Err(ApiError::field(name, "this endpoint takes no parameters"))
        }
        None => Ok(()),
    }
}

async fn status(State(gateway): State<Arc<Gateway>>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    no_query(query.as_deref())?;
    Ok(ok(status_json(&gateway.status().await?)))
}

fn energy_json(s: &StateSnapshot) -> Value {
    let e = &s.energy;
    json!({
        "total": e.total,
        "terms": {"pair": e.pair, "reg": e.reg, "ent": e.ent, "mem": e.mem},
        "gradient": {"norm": e.gradient_norm, "row_norms": e.gradient_row_norms},
    })
}

async fn state(State(gateway): State<Arc<Gateway>>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    no_query(query.as_deref())?;
    let snapshot = gateway.state().await?;
    let system = gateway.status().await?;
    Ok(ok(json!({
        "organism": {
            "agents": snapshot.agents, "organs": snapshot.organs, "dim": snapshot.dim,
            "updates": snapshot.updates, "agent_updates": snapshot.agent_updates,
            "l_tot": snapshot.l_tot, "l_max": snapshot.l_max, "a_inf": snapshot.a_inf,
            "w2_bound": snapshot.w2_bound, "w2_estimate": snapshot.w2_estimate,
            "energy": energy_json(&snapshot),
        },
        "memory": {
            "mw": {"entries": snapshot.tiers[0].entries, "capacity": snapshot.tiers[0].capacity, "hit_rate": system.mw_hit_rate},
            "tier25": {
                "entries": snapshot.tiers[1].entries, "capacity": snapshot.tiers[1].capacity,
                "max_freshness_ms": snapshot.max_freshness_ms,
            },
            "mlt": {"entries": snapshot.tiers[2].entries, "capacity": snapshot.tiers[2].capacity},
            "mfb": {"events": snapshot.flashbulbs},
        },
        "system": status_json(&system),
    })))
}

async fn energy(State(gateway): State<Arc<Gateway>>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    no_query(query.as_deref())?;
    Ok(ok(energy_json(&gateway.state().await?)))
}

async fn tier25_store(State(gateway): State<Arc<Gateway>>, body: Bytes) -> Result<Response, ApiError> {
    gateway.accepting()?;
    let (signature, kind, tokens_out) = api::tier25_store(&body)?;
    let request = Tier25Store { signature, kind, tokens_out, now_ms: now_unix_ms() };
    let entries = gateway.call(&gateway.addresses.state, request, QUERY_TIMEOUT).await?;
    Ok(ok(json!({"stored": true, "signature": signature, "entries": entries})))
}

async fn tier25_retrieve(State(gateway): State<Arc<Gateway>>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let signature = api::tier25_retrieve(query.as_deref())?;
    let request = Tier25Retrieve { signature, now_ms: now_unix_ms() };
    let answer = gateway.call(&gateway.addresses.state, request, QUERY_TIMEOUT).await?;
    Ok(ok(match answer {
        Tier25Answer::Hit { kind, tokens_out, age_ms } => {
            json!({"hit": true, "signature": signature, "kind": kind.as_str(), "tokens_out": tokens_out, "age_ms": age_ms})
        }
        Tier25Answer::Stale { age_ms } => {
            json!({"hit": false, "stale": true, "signature": signature, "age_ms": age_ms})
        }
        Tier25Answer::Miss => json!({"hit": false, "stale": false, "signature": signature}),
    }))
}

async fn validate(State(gateway): State<Arc<Gateway>>, body: Bytes) -> Result<Response, ApiError> {
    let proposal = api::proposal(&body, gateway.engine.organism.agents)?;
    let verdict = gateway.call(&gateway.addresses.state, Validate(proposal), QUERY_TIMEOUT).await?;
    Ok(ok(json!({
        "allowed": verdict.allowed,
        "l_tot_before": verdict.l_tot_before,
        "l_tot_proposed": verdict.l_tot_proposed,
        "l_tot_after": verdict.l_tot_after,
        "l_max": verdict.l_max,
        "graph_mask": {"edges_masked": verdict.edges_masked, "w_scale": verdict.w_scale},
    })))
}

async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    let (coordinator, state) = tokio::join!(gateway.status(), gateway.state());
    let capture = gateway.capture.as_ref().map(Capture::counts);
    let text = gateway.metrics.render(coordinator.ok().as_ref(), state.ok().as_ref(), capture);
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], text).into_response()
}

async fn healthz() -> Response {
    ok(json!({"status": "ok"}))
}

async fn readyz(State(gateway): State<Arc<Gateway>>) -> Result<Response, ApiError> {
    if !gateway.ready.load(Ordering::SeqCst) {
        return Err(unavailable("the engine is starting", 1));
    }
    gateway.accepting()?;
    let status = gateway.status().await?;
    if let Some(reason) = status.halted {
        return Err(unavailable(format!("the coordinator is halted: {reason}"), 60));
    }
    gateway.state().await?;
    // Every worker answers too (live, each may be a process of its own).
    for path in [crate::task::Path::Fast, crate::task::Path::Deep] {
        for (i, worker) in gateway.addresses.workers(path).iter().enumerate() {
            gateway.call(worker, crate::rpc::Ping, QUERY_TIMEOUT).await.map_err(|e| {
                unavailable(format!("worker {}-{} ({worker}) is not up: {}", path.as_str(), i + 1, e.error), 1)
            })?;
        }
    }
    Ok(ok(json!({"ready": true, "ledger_receipts": status.ledger_receipts})))
}
