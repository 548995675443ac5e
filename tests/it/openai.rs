//! The OpenAI-compatible backend (docs/engine.md 4.8) against a fake server this test starts on
//! loopback, which answers `/v1/chat/completions` as Server-Sent Events the way vLLM streams
//! (or, like a server that ignores `stream`, in one JSON completion): the engine asks for a
//! stream with its usage, its tokens come from `usage` and a completion's time to first
//! token is measured, the key is sent as a bearer token, an upstream 429 with
//! `Retry-After` is waited out, a failing upstream fails the task after the coordinator's
//! retries (not a hang, not a panic), and a slow one times out on the path's timeout.
//!
//! The fake sends each stream in one piece after `FIRST_TOKEN_MS` (the root crate has no
//! stream type to build a body sent over time), so the first token and the end arrive
//! together: the tests check that the first token's time is measured and ordered, and the
//! engine's unit tests (`engine/src/openai.rs`) feed it events split anywhere.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use seedcore_engine::client::Client;
use seedcore_engine::config::{EngineConfig, OpenAiConfig};
use seedcore_engine::probe::NullProbe;
use seedcore_engine::serve::start_all_in_one;
use seedcore_engine::{Authority, Kind, Outcome, Path, Task};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Milliseconds the fake waits before it answers a stream, the first token with it.
const FIRST_TOKEN_MS: u64 = 30;

/// How the fake upstream behaves.
#[derive(Clone, Copy, PartialEq)]
enum Upstream {
    /// Streams every answer with `usage.completion_tokens` = min(max_tokens, 7).
    Healthy,
    /// The first request of each task gets 429 with `Retry-After: 1`, then healthy.
    LimitsFirst,
    /// Always 503.
    Down,
    /// Answers after 3 s (the fast path's timeout is 1 s).
    Slow,
    /// Streams without `usage`.
    NoUsage,
    /// Ignores `stream`: answers one JSON completion, as `Healthy` counts it.
    Whole,
}

#[derive(Clone)]
struct Fake {
    upstream: Upstream,
    requests: Arc<AtomicU64>,
    seen: Arc<Mutex<Vec<serde_json::Value>>>,
    limited: Arc<Mutex<std::collections::BTreeSet<String>>>,
}

async fn completions(State(fake): State<Fake>, headers: HeaderMap, Json(body): Json<serde_json::Value>) -> Response {
    fake.requests.fetch_add(1, Ordering::SeqCst);
    fake.seen.lock().unwrap().push(body.clone());
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer test-key") {
        return (StatusCode::UNAUTHORIZED, Json(serde_json::json!({"error": {"message": "bad key"}}))).into_response();
    }
    let prompt = body["messages"][1]["content"].as_str().unwrap_or_default().to_string();
    match fake.upstream {
        Upstream::Down => {
            return (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"error": {"message": "overloaded"}})))
                .into_response()
        }
        Upstream::LimitsFirst if fake.limited.lock().unwrap().insert(prompt) => {
            let error = Json(serde_json::json!({"error": {"message": "rate limited"}}));
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], error).into_response();
        }
        Upstream::Slow => tokio::time::sleep(Duration::from_secs(3)).await,
        _ => {}
    }
    let tokens = body["max_tokens"].as_u64().unwrap_or(0).min(7);
    let usage = (fake.upstream != Upstream::NoUsage)
        .then(|| serde_json::json!({"prompt_tokens": 21, "completion_tokens": tokens, "total_tokens": 21 + tokens}));
    if fake.upstream == Upstream::Whole || body["stream"] != true {
        return Json(serde_json::json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": usage,
        }))
        .into_response();
    }
    tokio::time::sleep(Duration::from_millis(FIRST_TOKEN_MS)).await;
    events(&body["model"], usage)
}

/// A streamed answer as vLLM sends one: a comment, the role with empty content, the text
/// in two chunks, then (with `usage`) a chunk without choices carrying it, and `[DONE]`;
/// the chunks before the last have `"usage": null`, as `include_usage` asks.
fn events(model: &serde_json::Value, usage: Option<serde_json::Value>) -> Response {
    let chunk = |choices: serde_json::Value| {
        serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model,
            "choices": choices, "usage": null})
    };
    let mut chunks = vec![
        chunk(serde_json::json!([{"index": 0, "delta": {"role": "assistant", "content": ""}}])),
        chunk(serde_json::json!([{"index": 0, "delta": {"content": "o"}}])),
        chunk(serde_json::json!([{"index": 0, "delta": {"content": "k"}, "finish_reason": "stop"}])),
    ];
    if let Some(usage) = usage {
        let mut last = chunk(serde_json::json!([]));
        last["usage"] = usage;
        chunks.push(last);
    }
    let mut text = String::from(": ping\r\n\r\n");
    for chunk in chunks {
        text += &format!("data: {chunk}\n\n");
    }
    text += "data: [DONE]\n\n";
    ([("content-type", "text/event-stream")], text).into_response()
}

/// Whether a completion's time to first token was measured: no earlier than the fake
/// sent it, no later than the task's end.
fn first_token_measured(outcome: &Outcome, streamed: bool) -> bool {
    match outcome {
        Outcome::Completed { latency_ms, ttft_ms, .. } => {
            ttft_ms <= latency_ms && (!streamed || *ttft_ms >= FIRST_TOKEN_MS)
        }
        _ => false,
    }
}

fn task(task_id: u64, deep: bool) -> Task {
    Task {
        task_id,
        at_ms: task_id,
        kind: Kind::Chat,
        domain: "guest".into(),
        drift: 0.05,
        priority: 5,
        authority: Authority::High,
        needs_planning: deep,
        tokens_in: 100,
        tokens_out: 50,
        signature: 1_000 + task_id,
    }
}

/// Starts the fake upstream and the engine with the OpenAI backend pointing at it, submits
/// `tasks`, and returns the outcomes and the fake.
fn run(upstream: Upstream, tasks: Vec<Task>) -> (Vec<Outcome>, Fake) {
    let data = tempfile::tempdir().unwrap();
    let fake = Fake { upstream, requests: Arc::default(), seen: Arc::default(), limited: Arc::default() };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let outcomes = runtime.block_on({
        let fake = fake.clone();
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/v1", listener.local_addr().unwrap());
            let app = Router::new().route("/v1/chat/completions", post(completions)).with_state(fake);
            tokio::spawn(async move { axum::serve(listener, app).await });
            let mut config = EngineConfig::default();
            config.ledger.dir = data.path().join("ledger").display().to_string();
            config.ledger.key_seed = Some([3; 32]);
            config.dispatch.backoff_ms = 10;
            config.openai = Some(OpenAiConfig {
                base_url: url,
                fast_model: "small-model".into(),
                deep_model: "large-model".into(),
                api_key: Some("test-key".into()),
            });
            let host = IpAddr::V4(Ipv4Addr::LOCALHOST);
            let engine = start_all_in_one(Arc::new(config), host, 0, Arc::new(NullProbe), &None).await.unwrap();
            let client = Arc::new(Client::connect(engine.addresses.coordinator.clone(), &None));
            let mut outcomes = Vec::new();
            for task in tasks {
                outcomes.push(client.submit(task, Duration::from_secs(60)).await.expect("every task is answered"));
            }
            outcomes
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    (outcomes, fake)
}

#[test]
fn tokens_come_from_usage_and_each_path_asks_for_its_model() {
    let (outcomes, fake) = run(Upstream::Healthy, vec![task(1, false), task(2, true), task(3, false)]);
    for outcome in &outcomes {
        match outcome {
            Outcome::Completed { tokens_out, cache_hit: false, .. } => assert_eq!(*tokens_out, 7, "{outcome:?}"),
            other => panic!("expected a completion from the upstream, got {other:?}"),
        }
        assert!(first_token_measured(outcome, true), "{outcome:?}");
    }
    assert!(matches!(outcomes[1], Outcome::Completed { path: Path::Deep, .. }), "{:?}", outcomes[1]);
    let seen = fake.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    let models: Vec<&str> = seen.iter().map(|b| b["model"].as_str().unwrap()).collect();
    assert_eq!(models, ["small-model", "large-model", "small-model"]);
    assert_eq!(seen[0]["max_tokens"], 50, "the task's output tokens, within the plan");
    assert_eq!(seen[0]["messages"][0]["role"], "system");
    assert_eq!(seen[0]["stream"], true);
    assert_eq!(seen[0]["stream_options"]["include_usage"], true, "the usage comes in the stream's last chunk");
}

#[test]
fn an_upstream_that_ignores_stream_is_read_whole() {
    let (outcomes, fake) = run(Upstream::Whole, vec![task(1, false), task(2, true)]);
    for outcome in &outcomes {
        assert!(matches!(outcome, Outcome::Completed { tokens_out: 7, .. }), "{outcome:?}");
        assert!(first_token_measured(outcome, false), "{outcome:?}");
    }
    assert!(fake.seen.lock().unwrap().iter().all(|b| b["stream"] == true), "a stream was asked for all the same");
}

#[test]
fn an_upstream_429_is_waited_out_within_the_attempt() {
    // The deep path's 30 s attempt has room for the 1 s Retry-After.
    let (outcomes, fake) = run(Upstream::LimitsFirst, vec![task(1, true), task(2, true)]);
    for outcome in &outcomes {
        assert!(matches!(outcome, Outcome::Completed { tokens_out: 7, .. }), "{outcome:?}");
        assert!(first_token_measured(outcome, true), "{outcome:?}");
    }
    assert_eq!(fake.requests.load(Ordering::SeqCst), 4, "one 429 and one answer per task");
}

#[test]
fn a_failing_slow_or_uncountable_upstream_fails_the_task_after_the_retries() {
    let attempts = 1 + EngineConfig::default().dispatch.retries as u64;
    for (upstream, expect) in
        [(Upstream::Down, "upstream 503"), (Upstream::Slow, "timeout"), (Upstream::NoUsage, "no usage")]
    {
        let (outcomes, fake) = run(upstream, vec![task(1, false)]);
        match &outcomes[0] {
            Outcome::Failed { error, path: Path::Fast } => assert!(error.contains(expect), "{error}"),
            other => panic!("expected a failure naming {expect:?}, got {other:?}"),
        }
        let requests = fake.requests.load(Ordering::SeqCst);
        // Every attempt reached the upstream; a 503 may be tried again within an attempt.
        assert!(requests >= attempts && requests <= attempts * 3, "{requests} requests");
    }
}

#[test]
fn serve_refuses_an_openai_backend_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |extra: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_seedcore"))
            .args(["serve", "--port", "0", "--seconds", "1", "--data-dir"])
            .arg(dir.path().join("ledger"))
            .args(extra)
            .output()
            .unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (code, stderr) = serve(&["--backend", "openai"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--openai-model"), "{stderr}");
    let (code, stderr) =
        serve(&["--backend", "openai", "--openai-model", "m", "--openai-url", "https://example.com/v1"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("http://"), "{stderr}");
    let (code, stderr) = serve(&["--openai-model", "m"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--backend openai"), "{stderr}");
    assert!(!dir.path().join("ledger.key").exists(), "no key is made for a refused start");
}
