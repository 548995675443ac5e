//! The HTTP gateway (docs/live.md 4.11), in the live build, on loopback: every endpoint's happy
//! path, a bad request naming its field, the rate limit (429 with `Retry-After`), a
//! halted coordinator (503) and bearer tokens (401, 403 by scope); `/metrics` carries the
//! engine's figures. Each test is bounded
//! in requests and time and stops by itself.

use seedcore_engine::config::{EngineConfig, PathModel};
use seedcore_engine::gateway::limits::{Api, Limits};
use seedcore_engine::gateway::{Gateway, GatewayConfig};
use seedcore_engine::probe::NullProbe;
use seedcore_engine::serve::{start_all_in_one, AllInOne};
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// An engine with quick backends, its ledger in `dir`, signed with `key`.
fn config(dir: &std::path::Path, key: u8) -> EngineConfig {
    let mut config = EngineConfig::default();
    config.ledger.dir = dir.join("ledger").display().to_string();
    config.ledger.key_seed = Some([key; 32]);
    config.ledger.cycle_receipts = 5;
    config.epoch_utc_ms = 0;
    config.backend.fast = PathModel::flat(5.0, 4.0);
    config.backend.deep = PathModel::flat(20.0, 3.0);
    config
}

async fn engine(config: &EngineConfig) -> AllInOne {
    start_all_in_one(Arc::new(config.clone()), LOOPBACK, 0, Arc::new(NullProbe), &None)
        .await
        .expect("the engine starts")
}

/// A gateway in front of `engine`, serving until the test ends; returns its base URL.
async fn gateway(config: &EngineConfig, engine: &AllInOne, limits: Limits) -> String {
    let gateway = Gateway::new(Arc::new(config.clone()), engine.addresses.clone(), GatewayConfig::open(limits), &None)
        .await
        .expect("the gateway starts");
    gateway.set_ready();
    let listener = tokio::net::TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(seedcore_engine::gateway::serve(gateway, listener, std::future::pending()));
    url
}

fn unlimited() -> Limits {
    let mut limits = Limits::default();
    for api in Api::ALL.into_iter().filter(|a| a.default_per_minute().is_some()) {
        limits.set(&format!("{}=off", api.name())).unwrap();
    }
    limits
}

/// One request of each endpoint: the happy one, and a bad one with the field it names
/// (`None` for the endpoints that take no input, or only what a probe sends).
struct Case {
    api: Api,
    post: bool,
    happy: &'static str,
    bad: Option<(&'static str, &'static str)>,
}

fn cases() -> Vec<Case> {
    let task = r#"{"kind":"chat","drift":0.1,"tokens_in":120,"tokens_out":30}"#;
    vec![
        Case {
            api: Api::Tasks,
            post: true,
            happy: task,
            bad: Some((r#"{"kind":"chat","drift":"high","tokens_in":1}"#, "drift")),
        },
        Case {
            api: Api::Route,
            post: true,
            happy: task,
            bad: Some((r#"{"kind":"poem","drift":0.1,"tokens_in":1}"#, "kind")),
        },
        Case { api: Api::Status, post: false, happy: "", bad: Some(("verbose=1", "verbose")) },
        Case { api: Api::State, post: false, happy: "", bad: Some(("x=1", "x")) },
        Case { api: Api::Energy, post: false, happy: "", bad: Some(("norm=2", "norm")) },
        Case {
            api: Api::Tier25Store,
            post: true,
            happy: r#"{"signature":11,"kind":"query","tokens_out":40}"#,
            bad: Some((r#"{"signature":-1,"kind":"query","tokens_out":40}"#, "signature")),
        },
        Case {
            api: Api::Tier25Retrieve,
            post: false,
            happy: "signature=11",
            bad: Some(("signature=eleven", "signature")),
        },
        Case {
            api: Api::Validate,
            post: true,
            happy: r#"{"w_norm":0.001}"#,
            bad: Some((r#"{"edge":{"from":0,"to":99,"weight":1}}"#, "edge.to")),
        },
        Case { api: Api::Metrics, post: false, happy: "", bad: None },
        Case { api: Api::Healthz, post: false, happy: "", bad: None },
        Case { api: Api::Readyz, post: false, happy: "", bad: None },
    ]
}

async fn send(client: &reqwest::Client, url: &str, case: &Case, input: &str) -> reqwest::Response {
    let request = if case.post {
        client.post(format!("{url}{}", case.api.path())).body(input.to_string())
    } else if input.is_empty() {
        client.get(format!("{url}{}", case.api.path()))
    } else {
        client.get(format!("{url}{}?{input}", case.api.path()))
    };
    request.timeout(Duration::from_secs(10)).send().await.expect("the gateway answers")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn every_endpoint_answers_and_names_the_field_of_a_bad_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1);
    runtime().block_on(async {
        let engine = engine(&config).await;
        let url = gateway(&config, &engine, unlimited()).await;
        let client = reqwest::Client::new();
        for case in cases() {
            let response = send(&client, &url, &case, case.happy).await;
            assert_eq!(response.status(), 200, "{} happy path", case.api.path());
            let text = response.text().await.unwrap();
            if case.api == Api::Metrics {
                assert!(text.contains("seedcore_ledger_receipts_total"), "{text}");
                continue;
            }
            let body: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", case.api.path()));
            match case.api {
                Api::Tasks => {
                    assert_eq!(body["outcome"]["status"], "completed", "{body}");
                    assert_eq!(body["decision"]["path"], "fast", "{body}");
                }
                Api::Route => assert!(body["surprise"].as_f64().is_some() && body["inputs"]["drift"] == 0.1, "{body}"),
                Api::Status => assert_eq!(body["ledger"]["receipts"], 1, "the task above is in the ledger: {body}"),
                Api::State => assert!(body["organism"]["l_tot"].as_f64().unwrap() < 0.9, "{body}"),
                Api::Energy => assert!(body["gradient"]["norm"].as_f64().unwrap() > 0.0, "{body}"),
                Api::Tier25Retrieve => assert_eq!(body["hit"], true, "stored just above: {body}"),
                Api::Validate => assert_eq!(body["allowed"], true, "{body}"),
                _ => {}
            }
            if let Some((bad, field)) = case.bad {
                let response = send(&client, &url, &case, bad).await;
                assert_eq!(response.status(), 400, "{} {bad}", case.api.path());
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["field"], field, "{} {bad}: {body}", case.api.path());
                assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
            }
        }
        // Not JSON, the wrong method, an unknown route: 4xx with a JSON body, never 500.
        let tasks = format!("{url}/v1/tasks");
        let response = client.post(&tasks).body("{\"kind\":").send().await.unwrap();
        assert_eq!(response.status(), 400);
        assert!(response.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("not JSON"));
        assert_eq!(client.get(&tasks).send().await.unwrap().status(), 405);
        assert_eq!(client.get(format!("{url}/v2/tasks")).send().await.unwrap().status(), 404);
        // A client's id is its idempotency key: the same id gets the recorded outcome.
        let named = json!({"task_id": 9_000, "kind": "query", "drift": 0.1, "tokens_in": 50});
        let first: Value = client.post(&tasks).json(&named).send().await.unwrap().json().await.unwrap();
        let again: Value = client.post(&tasks).json(&named).send().await.unwrap().json().await.unwrap();
        assert_eq!(first["outcome"], again["outcome"]);
        assert_eq!((first["task_id"].clone(), again["decision"].clone()), (json!(9_000), Value::Null));
    });
}

#[test]
fn over_the_limit_an_endpoint_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 2);
    runtime().block_on(async {
        let engine = engine(&config).await;
        let mut limits = Limits::default();
        for api in Api::ALL.into_iter().filter(|a| a.default_per_minute().is_some()) {
            limits.set(&format!("{}=1", api.name())).unwrap();
        }
        let url = gateway(&config, &engine, limits).await;
        let client = reqwest::Client::new();
        for case in cases() {
            let first = send(&client, &url, &case, case.happy).await;
            assert_eq!(first.status(), 200, "{}", case.api.path());
            let second = send(&client, &url, &case, case.happy).await;
            if case.api.default_per_minute().is_none() {
                assert_eq!(second.status(), 200, "{} is never limited", case.api.path());
                continue;
            }
            assert_eq!(second.status(), 429, "{}", case.api.path());
            let retry: u64 = second.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry), "{}: Retry-After {retry}", case.api.path());
            let body: Value = second.json().await.unwrap();
            assert!(body["error"].as_str().unwrap().contains(case.api.name()), "{body}");
        }
        let metrics = client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains(r#"seedcore_http_requests_total{endpoint="tasks",status="429"} 1"#), "{metrics}");
    });
}

#[test]
fn a_halted_coordinator_answers_503_and_says_so_everywhere_else() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        // A ledger signed with one key...
        let first = config(dir.path(), 3);
        let engine = engine(&first).await;
        let url = gateway(&first, &engine, unlimited()).await;
        let client = reqwest::Client::new();
        let task = json!({"kind": "chat", "drift": 0.1, "tokens_in": 80});
        let answer = client.post(format!("{url}/v1/tasks")).json(&task).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        assert!(engine.coordinator.shutdown(Duration::from_secs(5)).await.signed);
        // ...opened with another: verification fails, and the coordinator halts.
        let second = config(dir.path(), 4);
        let halted = self::engine(&second).await;
        let url = gateway(&second, &halted, unlimited()).await;
        for case in cases() {
            let response = send(&client, &url, &case, case.happy).await;
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            match case.api {
                // Work for the coordinator, and readiness: 503, with the reason.
                Api::Tasks | Api::Route | Api::Readyz => {
                    assert_eq!(status, 503, "{}: {text}", case.api.path());
                    assert!(text.contains("halted"), "{}: {text}", case.api.path());
                }
                // What an operator looks at says it is halted.
                Api::Status => {
                    assert_eq!(status, 200);
                    let body: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(body["halted"], true, "{body}");
                    assert!(body["halt_reason"].as_str().unwrap().contains("signature"), "{body}");
                }
                Api::Metrics => {
                    assert_eq!(status, 200);
                    assert!(text.contains("seedcore_ledger_halted 1"), "{text}");
                }
                // The state node and the process are up: they answer.
                _ => assert_eq!(status, 200, "{}: {text}", case.api.path()),
            }
        }
    });
}

#[test]
fn with_tokens_every_endpoint_but_the_probes_needs_its_scope() {
    use seedcore_engine::gateway::auth::{Scope, Tokens};
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 5);
    let file = dir.path().join("tokens");
    let tokens: Vec<(Scope, String)> = Scope::ALL
        .into_iter()
        .map(|s| (s, seedcore_engine::gateway::auth::create(&file, s.as_str(), &[s]).unwrap()))
        .collect();
    let token_of = |scope: Scope| tokens.iter().find(|(s, _)| *s == scope).map(|(_, t)| t.clone()).unwrap();
    runtime().block_on(async {
        let engine = engine(&config).await;
        let gateway_config = GatewayConfig {
            tokens: Some(Tokens::read(&file).unwrap()),
            metrics_need_read: true,
            ..GatewayConfig::open(unlimited())
        };
        let gateway =
            Gateway::new(Arc::new(config.clone()), engine.addresses.clone(), gateway_config, &None).await.unwrap();
        gateway.set_ready();
        let listener = tokio::net::TcpListener::bind((LOOPBACK, 0)).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(seedcore_engine::gateway::serve(gateway, listener, std::future::pending()));
        let client = reqwest::Client::new();
        for case in cases() {
            let needs = match case.api {
                Api::Healthz | Api::Readyz => None,
                Api::Tasks | Api::Route => Some(Scope::Submit),
                Api::Validate | Api::Tier25Store => Some(Scope::Operate),
                _ => Some(Scope::Read),
            };
            let request = |token: Option<String>| {
                let mut request = if case.post {
                    client.post(format!("{url}{}", case.api.path())).body(case.happy.to_string())
                } else if case.happy.is_empty() {
                    client.get(format!("{url}{}", case.api.path()))
                } else {
                    client.get(format!("{url}{}?{}", case.api.path(), case.happy))
                };
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                request.timeout(Duration::from_secs(10)).send()
            };
            let Some(scope) = needs else {
                assert_eq!(request(None).await.unwrap().status(), 200, "{} is open", case.api.path());
                continue;
            };
            let refused = request(None).await.unwrap();
            assert_eq!(refused.status(), 401, "{}", case.api.path());
            let body: Value = refused.json().await.unwrap();
            assert!(body["error"].is_string(), "{body}");
            let wrong = request(Some("sct_not-a-token".into())).await.unwrap();
            assert_eq!(wrong.status(), 401, "{}", case.api.path());
            for other in Scope::ALL.into_iter().filter(|s| *s != scope) {
                let forbidden = request(Some(token_of(other))).await.unwrap();
                assert_eq!(forbidden.status(), 403, "{} with {}", case.api.path(), other.as_str());
            }
            assert_eq!(request(Some(token_of(scope))).await.unwrap().status(), 200, "{}", case.api.path());
        }
        // An unknown path needs a token too: a stranger cannot map the API.
        assert_eq!(client.get(format!("{url}/admin")).send().await.unwrap().status(), 401);
        let known = client.get(format!("{url}/admin")).bearer_auth(token_of(Scope::Read)).send().await.unwrap();
        assert_eq!(known.status(), 404);
    });
}
