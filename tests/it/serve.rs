//! `seedcore serve` as a process, on loopback: SIGTERM drains and signs the last cycle;
//! SIGKILL mid-load loses no committed receipt, the torn tail is detected on restart and
//! the spend comes back; a bounded soak through `seedcore load` gives no 5xx and exactly
//! one receipt per accepted task. Every process is killed when its test ends.

use seedcore_engine::ledger::{verify_dir, Receipt};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Quick backends, so a test takes seconds; deep tasks take long enough to be in flight.
const SCENARIO: &str = r#"
name = "live-test"
duration = "1m"
[workload]
source = "generated"
rate_per_s = 1.0
[backend.fast]
ttft_base_ms = 5.0
tpot_ms = 0.0
noise_p99 = 4.0
[backend.deep]
ttft_base_ms = 300.0
tpot_ms = 0.0
noise_p99 = 2.0
[engine.ledger]
cycle_receipts = 50
"#;

/// A running `seedcore serve`, killed on drop.
struct Server {
    child: Child,
    url: String,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    dir: tempfile::TempDir,
    scenario: PathBuf,
    key: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let scenario = dir.path().join("live.toml");
        std::fs::write(&scenario, SCENARIO).unwrap();
        let key = dir.path().join("ledger.key");
        let made = Command::new(env!("CARGO_BIN_EXE_seedcore")).arg("keygen").arg(&key).output().unwrap();
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        Setup { dir, scenario, key }
    }

    fn ledger(&self) -> PathBuf {
        self.dir.path().join("ledger")
    }

    fn serve(&self, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_seedcore"))
            .args(["serve", "--port", "0", "--rate-limit", "tasks=off", "--rate-limit", "status=off"])
            .arg("--scenario")
            .arg(&self.scenario)
            .arg("--data-dir")
            .arg(self.ledger())
            .arg("--ledger-key")
            .arg(&self.key)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("seedcore listening on ").unwrap_or_else(|| panic!("{line:?}")).to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        Server { child, url, stdout }
    }

    fn key(&self) -> ed25519_dalek::VerifyingKey {
        seedcore_reports::keys::read_signing_key(&self.key).unwrap().verifying_key()
    }

    /// Every receipt in the ledger, and what verification says.
    fn receipts(&self, runtime: &tokio::runtime::Runtime) -> (Vec<Receipt>, seedcore_engine::ledger::Verified) {
        let mut receipts = Vec::new();
        let dir = self.ledger().display().to_string();
        let verified =
            runtime.block_on(verify_dir(&dir, &self.key(), |r| receipts.push(r.clone()))).expect("the ledger verifies");
        (receipts, verified)
    }
}

fn signal(server: &Server, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(server.child.id().to_string()).status().unwrap();
    assert!(status.success());
}

/// Waits for the process to exit, at most about `limit`.
fn wait(server: &mut Server, limit: Duration) -> std::process::ExitStatus {
    let step = Duration::from_millis(20);
    for _ in 0..=limit.as_millis() / step.as_millis() {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(step);
    }
    panic!("serve did not exit within {limit:?}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn task(id: u64, deep: bool) -> Value {
    json!({"task_id": id, "kind": "query", "drift": 0.05, "tokens_in": 200, "tokens_out": 40,
           "needs_planning": deep, "signature": 1_000_000 + id})
}

#[test]
fn sigterm_drains_the_tasks_in_flight_and_signs_the_last_cycle() {
    let setup = Setup::new();
    let capture = setup.dir.path().join("capture.csv");
    let mut server = setup.serve(&["--capture", capture.to_str().unwrap()]);
    let runtime = runtime();
    let url = server.url.clone();
    let answers = runtime.block_on(async {
        let client = reqwest::Client::new();
        let requests: Vec<_> = (0..20)
            .map(|id| {
                let request = client.post(format!("{url}/v1/tasks")).json(&task(id, id % 2 == 0));
                tokio::spawn(async move { request.send().await })
            })
            .collect();
        // The deep half takes about 300 ms: SIGTERM arrives while they run.
        tokio::time::sleep(Duration::from_millis(120)).await;
        signal(&server, "TERM");
        let mut answers = Vec::new();
        for request in requests {
            let response = request.await.unwrap().expect("a task in flight is answered");
            answers.push((response.status().as_u16(), response.json::<Value>().await.unwrap()));
        }
        // New work is refused once shutdown has begun.
        let late = client.post(format!("{url}/v1/tasks")).json(&task(99, false)).send().await;
        assert!(late.map_or(true, |r| r.status() == 503), "a task after SIGTERM was taken");
        answers
    });
    for (status, body) in &answers {
        assert_eq!((*status, &body["outcome"]["status"]), (200, &json!("completed")), "{body}");
    }
    assert!(wait(&mut server, Duration::from_secs(30)).success(), "serve exits 0 after SIGTERM");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut server.stdout, &mut rest).unwrap();
    assert!(rest.contains("20 receipts in the ledger, the last cycle signed and synced"), "{rest}");
    let (receipts, verified) = setup.receipts(&runtime);
    assert_eq!((receipts.len(), verified.signed), (20, 20), "every receipt is covered by a signed cycle");
    let rows = std::fs::read_to_string(&capture).unwrap();
    assert_eq!(rows.lines().count(), 21, "a header and a row per task:\n{rows}");
}

#[test]
fn sigkill_mid_load_loses_no_committed_receipt_and_the_spend_comes_back() {
    let setup = Setup::new();
    let server = setup.serve(&[]);
    let runtime = runtime();
    let url = server.url.clone();
    // 16 clients send tasks until the server dies; the ids answered 200 are committed.
    let committed: BTreeSet<u64> = runtime.block_on(async {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let workers: Vec<_> = (0..16u64)
            .map(|w| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let mut ok = Vec::new();
                    for i in 0..10_000u64 {
                        let id = w * 10_000 + i;
                        match client.post(format!("{url}/v1/tasks")).json(&task(id, false)).send().await {
                            Ok(r) if r.status() == 200 => ok.push(id),
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    ok
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        signal(&server, "KILL");
        let mut committed = BTreeSet::new();
        for worker in workers {
            committed.extend(worker.await.unwrap());
        }
        committed
    });
    drop(server);
    assert!(committed.len() > 50, "the load ran before the kill: {} tasks", committed.len());
    // A crash in the middle of a write: half a receipt at the end of the last segment.
    let last = std::fs::read_dir(setup.ledger()).unwrap().map(|e| e.unwrap().path()).max().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(br#"{"receipt":{"cost_micro_usd":12,"day":"#);
    std::fs::write(&last, bytes).unwrap();

    let mut restarted = setup.serve(&[]);
    let url = restarted.url.clone();
    let (ready, status, again) = runtime.block_on(async {
        let client = reqwest::Client::new();
        let ready = client.get(format!("{url}/readyz")).send().await.unwrap().status().as_u16();
        let status: Value = client.get(format!("{url}/ocps/status")).send().await.unwrap().json().await.unwrap();
        let first = *committed.iter().next().unwrap();
        let again: Value = client
            .post(format!("{url}/v1/tasks"))
            .json(&task(first, false))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (ready, status, again)
    });
    assert_eq!(ready, 200, "a torn tail does not stop the engine");
    let (receipts, verified) = setup.receipts(&runtime);
    assert!(verified.torn_bytes > 0, "the torn tail is detected");
    let in_ledger: BTreeSet<u64> = receipts.iter().map(|r| r.task_id).collect();
    let lost: Vec<_> = committed.difference(&in_ledger).collect();
    if !lost.is_empty() {
        let kept = setup.dir.path().to_path_buf();
        std::mem::forget(setup);
        panic!("{} answered tasks have no receipt: {lost:?}; kept {}", lost.len(), kept.display());
    }
    let mut spend: BTreeMap<u64, u64> = BTreeMap::new();
    for receipt in &receipts {
        *spend.entry(receipt.day).or_default() += receipt.cost_micro_usd;
    }
    let day = status["budget"]["day"].as_u64().unwrap();
    assert_eq!(status["budget"]["spent_micro_usd"].as_u64(), spend.get(&day).copied(), "the spend is recovered");
    assert_eq!(status["ledger"]["receipts"].as_u64(), Some(receipts.len() as u64));
    assert_eq!(again["decision"], Value::Null, "a committed task is not run again after the restart: {again}");
    assert_eq!(again["outcome"]["status"], "completed");
    signal(&restarted, "TERM");
    assert!(wait(&mut restarted, Duration::from_secs(30)).success());
}

#[test]
fn a_bounded_soak_gives_no_5xx_and_one_receipt_per_accepted_task() {
    let setup = Setup::new();
    let mut server = setup.serve(&[]);
    let summary = setup.dir.path().join("summary.json");
    let trace = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/traces/azure-llm-conv-2023-11-16-1h.csv");
    let load = Command::new(env!("CARGO_BIN_EXE_seedcore"))
        .arg("load")
        .arg(&trace)
        .args(["--url", &server.url, "--rate", "400", "--max-requests", "1500", "--max-seconds", "20"])
        .args(["--threshold", "errors<=0%", "--summary-json"])
        .arg(&summary)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&load.stdout);
    assert!(load.status.success(), "{printed}{}", String::from_utf8_lossy(&load.stderr));
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(summary["statuses"], json!({"200": 1500}), "{printed}");
    assert!(printed.contains("p99="), "{printed}");
    signal(&server, "TERM");
    assert!(wait(&mut server, Duration::from_secs(30)).success());
    let (receipts, _) = setup.receipts(&runtime());
    let ids: BTreeSet<u64> = receipts.iter().map(|r| r.task_id).collect();
    assert_eq!((receipts.len(), ids.len()), (1500, 1500), "exactly one receipt per accepted task");
}
