//! Abuse and faults against a deployment (docs/engine.md 2.3, docs/live.md 4.11, 12), live, on
//! loopback: six roles as separate processes, mutual TLS between them, peers named `localhost`, the
//! gateway requiring tokens, while `seedcore load` sends a slice of the Azure hour with a `submit`
//! token. Every engine port and the gateway get bare connects, 64 KiB of random bytes, a TLS
//! handshake without a client certificate, a slow client and 1,000 idle connections; a worker is
//! stopped and continued, a worker and then the coordinator are killed and restarted. Then: every
//! task answered 200 has exactly one ledger receipt and no task has two; nothing but 200 and 503
//! was answered; every port still serves; the restarted coordinator recovered its ledger and the
//! day's spend. Bounded: about 600 requests and a minute.

#![allow(clippy::disallowed_methods, reason = "live only: strangers run on OS threads beside the roles' processes")]

use crate::support::{free_ports, readyz_until, start_role, Proc};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const SCENARIO: &str = crate::support::QUICK_BACKENDS;

const ROLES: [&str; 5] = ["coordinator", "state", "fast-1", "fast-2", "deep-1"];

fn seedcore(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_seedcore")).args(args).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// A token from `seedcore token create`: its last line.
fn token(tokens: &Path, name: &str, scope: &str) -> String {
    let out = seedcore(&["token", "create", "--tokens", tokens.to_str().unwrap(), "--name", name, "--scope", scope]);
    let token = out.lines().last().unwrap().to_string();
    let file = std::fs::read_to_string(tokens).unwrap();
    assert!(token.starts_with("sct_") && !file.contains(&token), "only the digest is stored");
    token
}

/// Bytes that look like nothing (xorshift: the test needs noise, not a seed stream).
fn noise(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A TLS client to an engine port, with or without a client certificate: the HTTP/2
/// preface and an empty SETTINGS frame, then the bytes the port answers (0 or an error:
/// refused).
async fn tls_exchange(port: u16, tls: &Path, identity: Option<&str>) -> std::io::Result<usize> {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(tls.join("ca.pem")).unwrap() {
        roots.add(der.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(role) => {
            let chain =
                CertificateDer::pem_file_iter(tls.join(format!("{role}.pem"))).unwrap().map(Result::unwrap).collect();
            let key = PrivateKeyDer::from_pem_file(tls.join(format!("{role}.key"))).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut stream = connector.connect(ServerName::try_from("seedcore-engine").unwrap(), tcp).await?;
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await?;
    let mut answer = [0u8; 64];
    tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))?
}

/// What a stranger does to a port: connects and leaves, sends 64 KiB of noise, trickles
/// bytes for three seconds, holds 1,000 idle connections for two. A port whose role is
/// being restarted meanwhile (`restarting`) may refuse connections; any other must take
/// every one.
fn abuse(port: u16, restarting: bool) {
    let addr = ("127.0.0.1", port);
    let connect = || match std::net::TcpStream::connect(addr) {
        Ok(stream) => Some(stream),
        Err(e) => {
            assert!(restarting, "port {port} refused a connection: {e}");
            None
        }
    };
    for _ in 0..20 {
        drop(connect());
    }
    if let Some(mut noisy) = connect() {
        // The port may close on the first bad bytes: a failed write is what we expect then.
        let _ = noisy.write_all(&noise(64 * 1024, u64::from(port)));
    }
    let slow = std::thread::spawn(move || {
        let Ok(mut slow) = std::net::TcpStream::connect(addr) else { return };
        for byte in noise(30, 7) {
            if slow.write_all(&[byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let idle: Vec<_> = (0..1_000).filter_map(|_| connect()).collect();
    assert!(restarting || idle.len() == 1_000);
    std::thread::sleep(Duration::from_secs(2));
    drop(idle);
    slow.join().unwrap();
}

/// `openssl s_client` without a client certificate: the port refuses it. Skipped, with a
/// notice, where there is no openssl.
fn openssl_without_certificate(port: u16, tls: &Path) {
    let Ok(mut child) = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-CAfile"])
        .arg(tls.join("ca.pem"))
        .args(["-servername", "seedcore-engine", "-alpn", "h2", "-verify_return_error"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        println!("skipped: no openssl for s_client");
        return;
    };
    // The HTTP/2 preface, and a second for the port's answer: in TLS 1.3 the client's side
    // of the handshake ends before the port has checked its certificate.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "openssl s_client without a certificate was served: {stderr}");
    assert!(stderr.contains("certificate required"), "{stderr}");
}

struct Deployment {
    dir: PathBuf,
    peers: String,
    ports: Vec<u16>,
    /// The engine settings file (`serve --config`): the scenario's backend tables.
    config: String,
    key: String,
    ledger: String,
}

impl Deployment {
    fn start(&self, role: &str) -> Proc {
        let tls = self.dir.join("tls");
        let mut args = vec!["--config", &self.config, "--tls-dir", tls.to_str().unwrap()];
        if role == "coordinator" {
            args.extend(["--data-dir", &self.ledger, "--ledger-key", &self.key]);
        }
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(format!("{role}.log"))).unwrap();
        let proc = start_role(role, &self.peers, &args, Stdio::from(log));
        assert!(proc.first_line.contains("(mutual TLS)"), "{role}: {}", proc.first_line);
        proc
    }

    fn port(&self, role: &str) -> u16 {
        self.ports[ROLES.iter().position(|r| *r == role).unwrap()]
    }
}

async fn get(client: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

/// The deployment's files: certificates, two tokens (submit, read), a ledger key, the
/// engine settings; ports on loopback for every engine role.
fn prepare(path: &Path) -> (Deployment, String, String) {
    seedcore(&["certs", path.join("tls").to_str().unwrap(), "--fast", "2", "--deep", "1"]);
    let tokens = path.join("tokens");
    let submit = token(&tokens, "loader", "submit");
    let read = token(&tokens, "watcher", "read");
    let key = path.join("ledger.key");
    seedcore(&["keygen", key.to_str().unwrap()]);
    let tables = &SCENARIO[SCENARIO.find("[backend.fast]").unwrap()..];
    std::fs::write(path.join("engine.toml"), tables).unwrap();
    let ports = free_ports(ROLES.len());
    let peers: Vec<String> = ROLES.iter().zip(&ports).map(|(r, p)| format!("{r}=localhost:{p}")).collect();
    let deployment = Deployment {
        dir: path.to_path_buf(),
        peers: peers.join(","),
        ports,
        config: path.join("engine.toml").to_str().unwrap().to_string(),
        key: key.to_str().unwrap().to_string(),
        ledger: path.join("ledger").to_str().unwrap().to_string(),
    };
    (deployment, submit, read)
}

impl Deployment {
    /// The gateway, with the deployment's TLS and tokens.
    fn start_gateway(&self) -> Proc {
        let (tls, tokens) = (self.dir.join("tls"), self.dir.join("tokens"));
        let args = [
            "--port",
            "0",
            "--rate-limit",
            "tasks=off",
            "--config",
            &self.config,
            "--tls-dir",
            tls.to_str().unwrap(),
            "--tokens",
            tokens.to_str().unwrap(),
        ];
        let log = std::fs::File::create(self.dir.join("gateway.log")).unwrap();
        start_role("gateway", &self.peers, &args, Stdio::from(log))
    }

    /// Every engine port answers a caller with a certificate of the CA.
    async fn every_port_serves(&self) {
        for role in ROLES {
            let port = self.port(role);
            let answered = tls_exchange(port, &self.dir.join("tls"), Some("gateway")).await;
            assert!(answered.is_ok_and(|n| n > 0), "{role} serves a role");
        }
    }
}

/// Tokens: 401 without, 403 with the wrong scope, 200 with the right one; the ports refuse
/// a stranger without a certificate.
async fn tokens_and_certificates_hold(
    client: &reqwest::Client,
    url: &str,
    deployment: &Deployment,
    submit: &str,
    read: &str,
) {
    let task = serde_json::json!({"kind": "query", "drift": 0.05, "tokens_in": 100, "tokens_out": 10});
    let post = |token: Option<&str>| {
        let mut request = client.post(format!("{url}/v1/tasks")).json(&task);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let unauthenticated = post(None).await.unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);
    assert_eq!(unauthenticated.headers()["www-authenticate"], "Bearer");
    let body: Value = unauthenticated.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("bearer token"), "{body}");
    let forbidden = post(Some(read)).await.unwrap();
    assert_eq!(forbidden.status().as_u16(), 403);
    let body: Value = forbidden.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("submit scope"), "{body}");
    assert_eq!(post(Some(submit)).await.unwrap().status().as_u16(), 200);
    assert_eq!(get(client, &format!("{url}/ocps/status"), Some(submit)).await.0, 403);
    assert_eq!(get(client, &format!("{url}/ocps/status"), None).await.0, 401);
    assert_eq!(get(client, &format!("{url}/healthz"), None).await.0, 200);
    deployment.every_port_serves().await;
    for role in ROLES {
        let refused = tls_exchange(deployment.port(role), &deployment.dir.join("tls"), None).await;
        assert!(!refused.as_ref().is_ok_and(|n| *n > 0), "{role} served a client without a certificate");
    }
}

/// `seedcore load`: a slice of the Azure hour at 40 requests a second with the submit
/// token, one result line per request into `results`.
fn start_load(url: &str, submit: &str, results: &Path) -> std::process::Child {
    let trace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/traces/azure-llm-conv-2023-11-16-1h.csv");
    Command::new(env!("CARGO_BIN_EXE_seedcore"))
        .arg("load")
        .arg(&trace)
        .args(["--url", url, "--rate", "40", "--max-requests", "600", "--max-seconds", "40", "--with-ids"])
        .args(["--timeout", "30", "--results", results.to_str().unwrap()])
        .env("SEEDCORE_TOKEN", submit)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The day's spend the coordinator reports.
async fn spent(client: &reqwest::Client, url: &str, read: &str) -> u64 {
    let (status, body) = get(client, &format!("{url}/ocps/status"), Some(read)).await;
    assert_eq!(status, 200, "{body}");
    body["budget"]["spent_micro_usd"].as_u64().unwrap()
}

/// Stops fast-1 for three seconds (its calls time out and go to fast-2), kills and
/// restarts fast-2, then the coordinator; returns the day's spend before and after the
/// coordinator's restart.
fn stop_kill_restart(
    roles: &mut BTreeMap<&'static str, Proc>,
    deployment: &Deployment,
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    url: &str,
    read: &str,
) -> (u64, u64) {
    roles["fast-1"].signal("STOP");
    std::thread::sleep(Duration::from_secs(3));
    roles["fast-1"].signal("CONT");
    roles.remove("fast-2");
    std::thread::sleep(Duration::from_millis(500));
    roles.insert("fast-2", deployment.start("fast-2"));
    let before = runtime.block_on(spent(client, url, read));
    assert!(before > 0, "tasks were charged before the restart");
    roles.remove("coordinator");
    std::thread::sleep(Duration::from_millis(500));
    roles.insert("coordinator", deployment.start("coordinator"));
    let after = runtime.block_on(async {
        readyz_until(client, url, 200, 30).await;
        spent(client, url, read).await
    });
    assert!(after >= before, "the restarted coordinator recovered the day's spend: {before} -> {after}");
    (before, after)
}

/// Load's results: nothing but 200 and 503 (while the coordinator restarted); returns the
/// ids of the tasks answered 200, and the count of each status.
fn accepted_tasks(results: &Path, summary: &str) -> (Vec<u64>, BTreeMap<String, usize>) {
    let text = std::fs::read_to_string(results).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split(',').collect()).collect();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for row in &rows {
        *statuses.entry(row[1].to_string()).or_default() += 1;
    }
    assert!(statuses.keys().all(|s| ["200", "503"].contains(&s.as_str())), "statuses {statuses:?}\n{summary}");
    let accepted: Vec<u64> = rows.iter().filter(|r| r[1] == "200").map(|r| r[0].parse().unwrap()).collect();
    assert!(accepted.len() >= rows.len() / 2, "most tasks were accepted: {statuses:?}");
    (accepted, statuses)
}

/// Stops the coordinator (SIGTERM: it signs its last cycle) and checks its ledger: it
/// verifies, every accepted task has a receipt, none has two. Returns the receipts.
fn ledger_once_each(
    coordinator: &mut Proc,
    deployment: &Deployment,
    runtime: &tokio::runtime::Runtime,
    accepted: &[u64],
) -> usize {
    coordinator.signal("TERM");
    assert!(coordinator.child.wait().unwrap().success(), "the coordinator exits 0 after SIGTERM");
    let public = seedcore_reports::keys::read_signing_key(Path::new(&deployment.key)).unwrap().verifying_key();
    let mut receipts: BTreeMap<u64, u32> = BTreeMap::new();
    runtime
        .block_on(seedcore_engine::ledger::verify_dir(&deployment.ledger, &public, |r| {
            *receipts.entry(r.task_id).or_default() += 1;
        }))
        .expect("the ledger verifies across the restart");
    let twice: Vec<_> = receipts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "tasks with two receipts: {twice:?}");
    let missing: Vec<_> = accepted.iter().filter(|id| !receipts.contains_key(id)).collect();
    assert!(missing.is_empty(), "accepted tasks without a receipt: {missing:?}");
    receipts.len()
}

#[test]
fn a_deployment_with_mutual_tls_and_tokens_survives_strangers_stops_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let (deployment, submit, read) = prepare(path);
    let mut roles: BTreeMap<&str, Proc> = ROLES.iter().map(|r| (*r, deployment.start(r))).collect();
    let gateway = deployment.start_gateway();
    let url = gateway.url();
    let gateway_port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    runtime.block_on(async {
        readyz_until(&client, &url, 200, 20).await;
        tokens_and_certificates_hold(&client, &url, &deployment, &submit, &read).await;
    });

    let results = path.join("results.csv");
    let load = start_load(&url, &submit, &results);
    // Strangers at every port at once, while the load runs and the roles stop and restart.
    let restarted = [deployment.port("coordinator"), deployment.port("fast-2")];
    let strangers: Vec<_> = deployment
        .ports
        .iter()
        .copied()
        .chain([gateway_port])
        .map(|port| std::thread::spawn(move || abuse(port, restarted.contains(&port))))
        .collect();
    openssl_without_certificate(deployment.port("coordinator"), &path.join("tls"));
    let (before, after) = stop_kill_restart(&mut roles, &deployment, &runtime, &client, &url, &read);
    for stranger in strangers {
        stranger.join().expect("every stranger was served or refused");
    }
    let output = load.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.code().is_some_and(|c| c <= 1), "load: {summary}{}", String::from_utf8_lossy(&output.stderr));

    // Every port still serves: the gateway's /readyz reaches every role over mutual TLS.
    runtime.block_on(async {
        readyz_until(&client, &url, 200, 20).await;
        deployment.every_port_serves().await;
    });
    let (accepted, statuses) = accepted_tasks(&results, &summary);
    let mut coordinator = roles.remove("coordinator").unwrap();
    let receipts = ledger_once_each(&mut coordinator, &deployment, &runtime, &accepted);
    println!("{statuses:?}; {receipts} receipts; spend {before} -> {after} micro-USD across the restart");

    // No role panicked.
    for role in ROLES.iter().chain(&["gateway"]) {
        let log = std::fs::read_to_string(path.join(format!("{role}.log"))).unwrap_or_default();
        assert!(!log.contains("panicked"), "{role}: {log}");
    }
}
