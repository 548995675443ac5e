//! One role per process (docs/engine.md 2.3): `serve --role R --peers ...` for the gateway, the
//! coordinator, the state node and three workers, on loopback. The gateway is not ready
//! until every role answers; tasks go through; a worker killed with SIGKILL costs no
//! task (dispatch retries on the other replica) and `/readyz` names it until it is back;
//! the coordinator's SIGTERM signs its ledger, which verifies with every receipt.

use crate::support::{free_ports, start_role, Proc};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const SCENARIO: &str = crate::support::QUICK_BACKENDS;

fn start(role: &str, peers: &str, extra: &[&str]) -> Proc {
    start_role(role, peers, extra, Stdio::null())
}

fn task(id: u64, deep: bool) -> Value {
    json!({"task_id": id, "kind": "query", "drift": 0.05, "tokens_in": 200, "tokens_out": 40,
           "needs_planning": deep, "signature": 5_000_000 + id})
}

/// Sends tasks `ids` at once; every one must complete.
async fn all_complete(client: &reqwest::Client, url: &str, ids: std::ops::Range<u64>) -> usize {
    let requests: Vec<_> = ids
        .map(|id| {
            let request = client.post(format!("{url}/v1/tasks")).json(&task(id, id % 5 == 0));
            tokio::spawn(async move { request.send().await })
        })
        .collect();
    let mut deep = 0;
    for request in requests {
        let response = request.await.unwrap().expect("answered");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!((status, &body["outcome"]["status"]), (200, &json!("completed")), "{body}");
        deep += usize::from(body["outcome"]["path"] == "deep");
    }
    deep
}

async fn readyz_until(client: &reqwest::Client, url: &str, want: u16) -> Value {
    crate::support::readyz_until(client, url, want, 10).await
}

#[test]
fn roles_in_separate_processes_serve_tasks_and_survive_a_dead_worker() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("roles.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let key = dir.path().join("given.key");
    assert!(Command::new(env!("CARGO_BIN_EXE_seedcore")).arg("keygen").arg(&key).output().unwrap().status.success());
    let ports = free_ports(5);
    let names = ["coordinator", "state", "fast-1", "fast-2", "deep-1"];
    let peers: Vec<String> = names.iter().zip(&ports).map(|(n, p)| format!("{n}=127.0.0.1:{p}")).collect();
    let peers = peers.join(",");
    let with_scenario = ["--scenario", scenario.to_str().unwrap()];

    let gateway_log = dir.path().join("gateway.log");
    let gateway = start_role(
        "gateway",
        &peers,
        &["--port", "0", "--rate-limit", "tasks=off", "--scenario", scenario.to_str().unwrap()],
        Stdio::from(std::fs::File::create(&gateway_log).unwrap()),
    );
    let url = gateway.url();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    // Nothing behind the gateway yet.
    runtime.block_on(readyz_until(&client, &url, 503));

    let ledger = dir.path().join("ledger");
    let mut roles = vec![
        start("fast-1", &peers, &with_scenario),
        start("fast-2", &peers, &with_scenario),
        start("deep-1", &peers, &with_scenario),
        start("state", &peers, &with_scenario),
    ];
    let mut coordinator_args = with_scenario.to_vec();
    coordinator_args.extend(["--data-dir", ledger.to_str().unwrap(), "--ledger-key", key.to_str().unwrap()]);
    let mut coordinator = start("coordinator", &peers, &coordinator_args);
    assert!(coordinator.first_line.contains(&format!("coordinator listening on 127.0.0.1:{}", ports[0])));

    runtime.block_on(async {
        readyz_until(&client, &url, 200).await;
        let deep = all_complete(&client, &url, 0..20).await;
        assert_eq!(deep, 4, "needs_planning tasks ran on the deep worker's process");

        // SIGKILL fast-1: the coordinator's attempts to it fail, and retry on fast-2.
        drop(roles.remove(0));
        all_complete(&client, &url, 20..40).await;
        let down = readyz_until(&client, &url, 503).await;
        assert!(down["error"].as_str().unwrap().contains("worker fast-1"), "{down}");

        roles.push(start("fast-1", &peers, &with_scenario));
        readyz_until(&client, &url, 200).await;
        all_complete(&client, &url, 40..50).await;
    });

    // The calls to roles that were down failed as errors: no panic reached the log.
    let log = std::fs::read_to_string(&gateway_log).unwrap();
    assert!(log.contains("an engine node is unreachable"), "the gateway saw fast-1 down: {log}");
    assert!(!log.contains("panicked"), "{log}");

    let kill = Command::new("kill").arg("-TERM").arg(coordinator.child.id().to_string()).status().unwrap();
    assert!(kill.success());
    let status = coordinator.child.wait().unwrap();
    assert!(status.success(), "the coordinator exits 0 after SIGTERM");
    let mut rest = String::new();
    std::io::Read::read_to_string(coordinator.child.stdout.as_mut().unwrap(), &mut rest).unwrap();
    assert!(rest.contains("50 receipts in the ledger, the last cycle signed and synced"), "{rest}");
    let public = seedcore_reports::keys::read_signing_key(&key).unwrap().verifying_key();
    let verified = runtime
        .block_on(seedcore_engine::ledger::verify_dir(&ledger.display().to_string(), &public, |_| {}))
        .expect("the coordinator's ledger verifies");
    assert_eq!((verified.receipts, verified.signed), (50, 50));
    assert!(!Path::new(&format!("{}.key", ledger.display())).exists(), "the given key is used, none is made");
}

#[test]
fn roles_need_peers_and_peers_need_roles() {
    let serve = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_seedcore")).arg("serve").args(args).output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let peers = "coordinator=127.0.0.1:1,state=127.0.0.1:2,fast-1=127.0.0.1:3,deep-1=127.0.0.1:4";
    for (args, says) in [
        (vec!["--role", "state"], "needs --peers"),
        (vec!["--peers", peers], "goes with --role"),
        (vec!["--role", "fast-2", "--peers", peers], "names no fast-2"),
        (vec!["--role", "boss", "--peers", peers], "expected all, gateway"),
        (vec!["--role", "state", "--peers", "state=127.0.0.1:2"], "coordinator"),
        (vec!["--role", "fast-1", "--peers", peers, "--capture", "x.csv"], "the gateway's"),
        (vec!["--role", "fast-1", "--peers", peers, "--tokens", "t"], "the gateway's"),
        (
            vec![
                "--role",
                "state",
                "--peers",
                "coordinator=10.0.0.1:1,state=127.0.0.1:2,fast-1=127.0.0.1:3,deep-1=127.0.0.1:4",
            ],
            "need mutual TLS",
        ),
        (
            vec![
                "--role",
                "state",
                "--peers",
                "coordinator=localhost:1,state=state.seedcore:2,fast-1=127.0.0.1:3,deep-1=127.0.0.1:4",
            ],
            "need mutual TLS",
        ),
        (vec!["--role", "gateway", "--peers", peers, "--host", "0.0.0.0"], "give --tokens FILE"),
        (vec!["--host", "0.0.0.0"], "give --tokens FILE"),
        (vec!["--role", "state", "--peers", peers, "--tls-dir", "/nonexistent"], "/nonexistent/ca.pem"),
    ] {
        let (code, stderr) = serve(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
