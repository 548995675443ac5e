//! The simulated world (SPEC 6), built only under `--cfg madsim`: one madsim runtime per
//! run, a node per engine role at fixed addresses, a driver node that plays the client,
//! the fault injector, a bounded drain, and the harness's own check of the ledger.

use crate::event::{Arrival, FaultRecord, Harness, LedgerCheck, LedgerCycle, RunEnd, RunStart};
use crate::observer::{Observed, Observer, Sinks};
use crate::scenario::Scenario;
use madsim::net::Endpoint;
use madsim::runtime::{Handle, NodeHandle, Runtime};
use madsim::time::{sleep, sleep_until, Instant};
use seedcore_chaos::{inject, Fault, FaultKind, FaultTarget};
use seedcore_engine::client::Client;
use seedcore_engine::ledger::CycleRecord;
use seedcore_engine::ledger::{read_segment, segment_path, verify_dir};
use seedcore_engine::node::{start_coordinator, start_state, start_worker, NodeContext};
use seedcore_engine::probe::{ppm, Probe};
use seedcore_engine::rpc::Addresses;
use seedcore_engine::{EngineConfig, Path, Task};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Port every role listens on, each node having its own address.
const PORT: u16 = 7000;
/// Pause between two submissions of an unanswered task by the driver.
const RESUBMIT_PAUSE: Duration = Duration::from_secs(1);

/// Runs started in this process. Read only by the `determinism` canary, which leaks it
/// into arrival times on purpose: global state that survives between runs is exactly the
/// hazard the determinism check exists to catch.
static RUNS_IN_PROCESS: AtomicU64 = AtomicU64::new(0);

fn addr(a: u8, b: u8, c: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, a, b, c)), PORT)
}

/// Where each role of a topology lives in the simulated network.
pub fn addresses(config: &EngineConfig) -> Addresses {
    Addresses {
        coordinator: addr(0, 0, 1),
        state: addr(0, 0, 2),
        fast: (1..=config.topology.fast).map(|i| addr(0, 1, i as u8)).collect(),
        deep: (1..=config.topology.deep).map(|i| addr(0, 2, i as u8)).collect(),
    }
}

/// The running world, as the fault injector sees it.
struct World {
    handle: Handle,
    nodes: BTreeMap<String, NodeHandle>,
    /// Nodes currently killed.
    down: Mutex<BTreeSet<String>>,
    observer: Arc<Observer>,
    config: Arc<EngineConfig>,
}

impl FaultTarget for World {
    async fn apply(&self, fault: &Fault) {
        let node = fault.kind.node().to_string();
        self.observer
            .harness("chaos", Harness::Fault(FaultRecord { fault: fault.kind.name().into(), node: node.clone() }));
        let id = self.nodes[&node].id();
        match &fault.kind {
            FaultKind::Crash { .. } => {
                self.handle.kill(id);
                self.down.lock().expect("lock").insert(node);
            }
            FaultKind::Restart { .. } => {
                self.handle.restart(id);
                self.down.lock().expect("lock").remove(&node);
            }
            FaultKind::TornWrite { .. } => {
                if self.down.lock().expect("lock").contains(&node) {
                    return;
                }
                // Half a record at the end of the segment being written, then the crash.
                let dir = self.config.ledger.dir.clone();
                self.current(&node)
                    .spawn(async move {
                        let mut last = 0;
                        while read_segment(&dir, last + 1).await.expect("the ledger is readable").is_some() {
                            last += 1;
                        }
                        let mut bytes = read_segment(&dir, last).await.expect("readable").expect("it exists");
                        bytes.extend_from_slice(b"{\"receipt\":{\"cost_micro_usd\":1");
                        let path = segment_path(&dir, last);
                        let file = madsim::fs::File::create(&path).await.expect("the segment exists");
                        file.write_all_at(&bytes, 0).await.expect("simulated writes succeed");
                    })
                    .await
                    .expect("the torn write completes");
                self.handle.kill(id);
                self.down.lock().expect("lock").insert(node);
            }
            FaultKind::LedgerCorrupt { .. } => {
                if self.down.lock().expect("lock").contains(&node) {
                    return;
                }
                let path = segment_path(&self.config.ledger.dir, 0);
                self.current(&node)
                    .spawn(async move {
                        let Ok(mut bytes) = madsim::fs::read(&path).await else { return };
                        let first_line = bytes.iter().position(|b| *b == b'\n').unwrap_or(0);
                        if first_line == 0 {
                            return;
                        }
                        bytes[first_line / 2] ^= 0x01;
                        let file = madsim::fs::File::create(&path).await.expect("the segment exists");
                        file.write_all_at(&bytes, 0).await.expect("simulated writes succeed");
                    })
                    .await
                    .expect("the corruption task completes");
            }
        }
    }
}

impl World {
    /// A handle on the current incarnation of a node: a handle taken before a restart
    /// spawns onto the killed incarnation, where tasks never run.
    fn current(&self, node: &str) -> NodeHandle {
        self.handle.get_node(self.nodes[node].id()).expect("nodes are never removed")
    }
}

/// Builds the nodes of the engine in the current runtime.
fn build_nodes(handle: &Handle, config: &Arc<EngineConfig>, probe: &Arc<dyn Probe>) -> BTreeMap<String, NodeHandle> {
    let addresses = Arc::new(addresses(config));
    let mut roles: Vec<(String, SocketAddr, Option<Path>)> =
        vec![("coordinator".into(), addresses.coordinator, None), ("state".into(), addresses.state, None)];
    roles.extend(addresses.fast.iter().enumerate().map(|(i, a)| (format!("fast-{}", i + 1), *a, Some(Path::Fast))));
    roles.extend(addresses.deep.iter().enumerate().map(|(i, a)| (format!("deep-{}", i + 1), *a, Some(Path::Deep))));
    let mut nodes = BTreeMap::new();
    for (name, address, path) in roles {
        let context = NodeContext {
            name: name.clone(),
            config: config.clone(),
            addresses: addresses.clone(),
            probe: probe.clone(),
        };
        let key = name.clone();
        let node = handle
            .create_node()
            .name(name.clone())
            .ip(address.ip())
            .init(move || {
                let context = context.clone();
                let role = name.clone();
                async move {
                    let endpoint = Endpoint::bind(address).await.expect("each node has its own address");
                    match (role.as_str(), path) {
                        ("coordinator", _) => {
                            start_coordinator(endpoint, context).await.expect("the coordinator starts")
                        }
                        ("state", _) => start_state(endpoint, context).await,
                        (_, Some(path)) => start_worker(endpoint, context, path).await,
                        _ => unreachable!("every role is known"),
                    }
                    std::future::pending::<()>().await;
                }
            })
            .build();
        nodes.insert(key, node);
    }
    nodes
}

/// Submits a task until it is answered or the drain deadline passes.
async fn submit(client: Arc<Client>, task: Task, attempt_timeout: Duration, deadline: Instant) -> bool {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let timeout = attempt_timeout.min(deadline - now);
        if client.submit(task.clone(), timeout).await.is_ok() {
            return true;
        }
        sleep(RESUBMIT_PAUSE).await;
    }
}

/// Runs one simulation of `tasks` with `seed`, observed into `sinks`, in a runtime of its own.
pub fn run_once(scenario: &Scenario, tasks: Arc<Vec<Task>>, seed: u64, sinks: Sinks) -> std::io::Result<Observed> {
    let runtime = Runtime::with_seed_and_config(seed, sim_config(scenario));
    let result = runtime.block_on(simulate(scenario.clone(), tasks, seed, sinks));
    // Dropping the runtime drops every node's tasks, and with them their handles on the
    // observer.
    drop(runtime);
    result?.finish()
}

/// The madsim configuration of a scenario's network.
pub fn sim_config(scenario: &Scenario) -> madsim::Config {
    let mut config = madsim::Config::default();
    let (low, high) = scenario.network.latency_ms;
    config.net.send_latency = Duration::from_millis(low)..Duration::from_millis(high) + Duration::from_micros(1);
    config.net.packet_loss_rate = scenario.network.loss;
    config
}

/// Runs one simulation inside the current madsim runtime and returns its observer
/// (call `finish` on it for the digest and totals).
pub async fn simulate(
    scenario: Scenario,
    tasks: Arc<Vec<Task>>,
    seed: u64,
    sinks: Sinks,
) -> std::io::Result<Arc<Observer>> {
    let run_index = RUNS_IN_PROCESS.fetch_add(1, Ordering::Relaxed);
    let engine = Arc::new(scenario.engine_config(seed));
    let handle = Handle::current();
    let observer = Arc::new(Observer::new(sinks)?);
    observer.harness("harness", run_start(&scenario, &engine, seed, tasks.len()));
    let probe: Arc<dyn Probe> = observer.clone();
    let nodes = build_nodes(&handle, &engine, &probe);
    let world = Arc::new(World {
        handle: handle.clone(),
        nodes,
        down: Mutex::new(BTreeSet::new()),
        observer: observer.clone(),
        config: engine.clone(),
    });
    let driver = Driver {
        coordinator: addresses(&engine).coordinator,
        attempt_timeout: Duration::from_millis(engine.dispatch.deep_timeout_ms + 5_000),
        until: Duration::from_millis(scenario.duration_ms + scenario.harness.drain_ms),
        jitter_ms: if scenario.harness.inject_nondeterminism { run_index } else { 0 },
    };
    let arrivals = tasks.len() as u64;
    let faults = scenario.faults.clone();
    let driving = world.clone();
    let unanswered = handle
        .create_node()
        .name("driver")
        .ip(DRIVER.ip())
        .build()
        .spawn(async move {
            let injecting = driving.clone();
            madsim::task::spawn(async move { inject(&faults, injecting.as_ref()).await });
            driver.drive(&driving.observer, &tasks).await
        })
        .await
        .expect("the driver completes");
    let (check, cycles) = check_ledger(&world, &engine).await;
    for c in cycles {
        let cycle = LedgerCycle {
            cycle: c.cycle,
            first_seq: c.first_seq,
            head: c.head,
            last_seq: c.last_seq,
            signature: c.signature,
        };
        observer.harness("harness", Harness::LedgerCycle(cycle));
    }
    observer.harness("harness", Harness::LedgerCheck(check));
    let sim_ms = observer.elapsed_ms();
    observer.harness("harness", Harness::RunEnd(RunEnd { arrivals, unanswered, sim_ms }));
    Ok(observer)
}

/// The first event of a run.
fn run_start(scenario: &Scenario, engine: &EngineConfig, seed: u64, tasks: usize) -> Harness {
    let rate_limits = seedcore_engine::Kind::ALL
        .iter()
        .filter_map(|k| engine.governor.rate_limits_per_day[k.index()].map(|l| (k.as_str().to_string(), l)))
        .collect();
    Harness::RunStart(RunStart {
        ceiling_micro_usd: engine.governor.ceiling_micro_usd,
        daily_budget_micro_usd: engine.governor.daily_budget_micro_usd,
        duration_ms: scenario.duration_ms,
        engine_version: env!("CARGO_PKG_VERSION").into(),
        fast_target_ppm: ppm(engine.router.fast_target),
        rate_limits,
        scenario: scenario.name.clone(),
        scenario_sha256: scenario.sha256.clone(),
        seed: seed.to_string(),
        tasks: tasks as u64,
    })
}

/// Address of the driver's endpoint.
const DRIVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 9, 1)), 9000);

/// The client side of the world: submits the workload at its arrival times.
struct Driver {
    coordinator: SocketAddr,
    /// How long one submission waits for its outcome.
    attempt_timeout: Duration,
    /// End of the drain, from the start of the run.
    until: Duration,
    /// Added to every arrival time (nonzero only in the `determinism` canary).
    jitter_ms: u64,
}

impl Driver {
    /// Submits every task at its arrival time; returns how many got no outcome before the
    /// drain ended.
    async fn drive(self, observer: &Observer, tasks: &[Task]) -> u64 {
        let start = Instant::now();
        let endpoint = Endpoint::bind(DRIVER).await.expect("the driver's address is free");
        let client = Arc::new(Client::new(endpoint, self.coordinator));
        let deadline = start + self.until;
        // Answers come back on a channel rather than through join handles, so a finished
        // submission frees its memory at once: a simulated day holds only what is in flight.
        let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
        for task in tasks {
            sleep_until(start + Duration::from_millis(task.at_ms + self.jitter_ms)).await;
            observer.harness("driver", arrival(task));
            let (client, task, answers) = (client.clone(), task.clone(), answers.clone());
            let attempt_timeout = self.attempt_timeout;
            madsim::task::spawn(async move {
                let answer = submit(client, task, attempt_timeout, deadline).await;
                answers.send(answer).expect("the driver waits for every answer");
            });
        }
        drop(answers);
        let mut unanswered = 0;
        while let Some(answer) = answered.recv().await {
            unanswered += u64::from(!answer);
        }
        unanswered
    }
}

fn arrival(task: &Task) -> Harness {
    Harness::Arrival(Arrival {
        authority: task.authority.as_str().into(),
        domain: task.domain.clone(),
        drift_ppm: ppm(task.drift),
        kind: task.kind.as_str().into(),
        needs_planning: task.needs_planning,
        priority: task.priority,
        signature: format!("{:016x}", task.signature),
        task_id: task.task_id,
        tokens_in: task.tokens_in,
        tokens_out: task.tokens_out,
    })
}

/// Lets the ledger sign its last cycle, then verifies it from the coordinator's disk.
async fn check_ledger(world: &World, engine: &EngineConfig) -> (LedgerCheck, Vec<CycleRecord>) {
    let key = ed25519_dalek::SigningKey::from_bytes(&engine.ledger.key_seed).verifying_key();
    let unchecked = LedgerCheck {
        checked: false,
        cycles: 0,
        error: None,
        ok: true,
        public_key: hex::encode(key.as_bytes()),
        receipts: 0,
        torn_bytes: 0,
        unsigned: 0,
    };
    if world.down.lock().expect("lock").contains("coordinator") {
        return (unchecked, Vec::new());
    }
    sleep(Duration::from_millis(engine.ledger.cycle_ms + 1_000)).await;
    let dir = engine.ledger.dir.clone();
    let result = world
        .current("coordinator")
        .spawn(async move { verify_dir(&dir, &key, |_| {}).await })
        .await
        .expect("the ledger check completes");
    match result {
        Ok(v) => (
            LedgerCheck {
                checked: true,
                cycles: v.cycles,
                ok: true,
                receipts: v.receipts,
                torn_bytes: v.torn_bytes,
                unsigned: v.unsigned(),
                ..unchecked
            },
            v.cycle_log,
        ),
        Err(e) => (LedgerCheck { checked: true, error: Some(e.to_string()), ok: false, ..unchecked }, Vec::new()),
    }
}
