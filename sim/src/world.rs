//! The simulated world (docs/harness.md 6), built only under `--cfg madsim`: one madsim runtime per
//! run, a node per engine role at fixed addresses, a driver node that plays the client,
//! the fault injector, a bounded drain, and the harness's own check of the ledger.

use crate::event::{
    Arrival, FaultEnd, FaultPlanRecord, FaultRecord, Harness, LedgerCheck, LedgerCycle, RunEnd, RunStart,
};
use crate::observer::{Folding, Observed, Observer, Sinks};
use crate::scenario::Scenario;
use madsim::net::{Endpoint, NetSim};
use madsim::runtime::{Handle, NodeHandle, Runtime};
use madsim::time::{sleep, sleep_until, Instant};
use seedcore_chaos::{inject, Fault, FaultKind, FaultPlan, FaultTarget};
use seedcore_engine::client::Client;
use seedcore_engine::conditions::{BackendWeather, Conditions};
use seedcore_engine::ledger::CycleRecord;
use seedcore_engine::ledger::{read_segment, segment_path, verify_dir};
use seedcore_engine::node::{start_coordinator, start_state, start_worker, NodeContext, NodeName};
use seedcore_engine::peers::Server;
use seedcore_engine::probe::{ppm, Probe};
use seedcore_engine::rpc::Promote;
use seedcore_engine::rpc::{Addresses, PeerAddr};
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

/// Where each role of a topology lives in the simulated network: with the autoscaler on,
/// as many workers per path as it may run (those beyond the topology start stopped).
pub fn addresses(config: &EngineConfig) -> Addresses {
    let (fast, deep) = if config.autoscale.enabled {
        (config.topology.fast.max(config.autoscale.fast_max), config.topology.deep.max(config.autoscale.deep_max))
    } else {
        (config.topology.fast, config.topology.deep)
    };
    Addresses {
        coordinator: addr(0, 0, 1).into(),
        state: addr(0, 0, 2).into(),
        fast: (1..=fast).map(|i| addr(0, 1, i as u8).into()).collect(),
        deep: (1..=deep).map(|i| addr(0, 2, i as u8).into()).collect(),
    }
}

/// A role's simulated address (the world names every role by IP address).
fn ip(peer: &PeerAddr) -> SocketAddr {
    peer.ip_socket().expect("the simulator's roles have IP addresses")
}

/// The autoscaler's hands in the simulator: starting a worker restarts its node (its
/// init runs again), stopping one kills it. It holds no runtime `Handle`: every node's
/// context holds the scaler, and the runtime holds the contexts (in the nodes' init), so a
/// handle here would be a cycle that keeps each run's whole world alive after the run (it
/// did: 0.3 GB more at the second run of a simulated day). It asks for the current handle
/// when it acts, always from inside the run.
struct SimScaler {
    /// Worker node ids by name, set once the nodes are built.
    nodes: std::sync::OnceLock<BTreeMap<NodeName, madsim::task::NodeId>>,
}

impl SimScaler {
    fn node(&self, path: Path, replica: usize) -> Option<madsim::task::NodeId> {
        self.nodes.get()?.get(&NodeName::Worker(path, replica as u32 + 1)).copied()
    }
}

impl seedcore_engine::node::Scaler for SimScaler {
    fn start(&self, path: Path, replica: usize) {
        if let Some(id) = self.node(path, replica) {
            Handle::current().restart(id);
        }
    }

    fn stop(&self, path: Path, replica: usize) {
        if let Some(id) = self.node(path, replica) {
            Handle::current().kill(id);
        }
    }
}

/// The running world, as the fault injector sees it.
struct World {
    handle: Handle,
    nodes: BTreeMap<NodeName, NodeHandle>,
    /// Nodes currently killed.
    down: Mutex<BTreeSet<NodeName>>,
    /// Faults started and not yet ended, by plan index: what `heal` ends at the end of the
    /// run, and what network and backend conditions are recomputed from.
    active: Mutex<BTreeMap<usize, Fault>>,
    /// Links cut by partitions now, as (node, peer) in both directions.
    cut: Mutex<BTreeSet<(NodeName, NodeName)>>,
    observer: Arc<Observer>,
    config: Arc<EngineConfig>,
    network: crate::scenario::Network,
    conditions: Arc<Conditions>,
}

impl FaultTarget for World {
    async fn start(&self, index: usize, fault: &Fault) {
        self.observer.harness("chaos", Harness::Fault(fault_record(index, fault)));
        self.active.lock().expect("lock").insert(index, fault.clone());
        match &fault.kind {
            FaultKind::Crash { node, .. } => self.kill(*node),
            FaultKind::Restart { node } => {
                // A restart ends the lasting crash of its node, if any.
                let ended: Vec<(usize, Fault)> = self
                    .active
                    .lock()
                    .expect("lock")
                    .iter()
                    .filter(|(i, f)| **i != index && f.end_ms().is_none() && f.kind.downs() == Some(*node))
                    .map(|(i, f)| (*i, f.clone()))
                    .collect();
                for (i, f) in ended {
                    self.close(i, &f);
                }
                // madsim's `restart` of a running node does not release its sockets (its
                // `kill` does): kill first, so the new incarnation can bind its address.
                self.handle.kill(self.nodes[node].id());
                self.handle.restart(self.nodes[node].id());
                self.down.lock().expect("lock").remove(node);
            }
            FaultKind::Pause { node, .. } => self.handle.pause(self.nodes[node].id()),
            FaultKind::Isolate { .. } | FaultKind::Partition { .. } => self.apply_cuts(),
            FaultKind::PacketLoss { .. } | FaultKind::Latency { .. } => self.apply_network(),
            FaultKind::BackendErrors { .. } | FaultKind::BackendSlow { .. } | FaultKind::TokenInflation { .. } => {
                self.apply_backend()
            }
            FaultKind::LedgerIoError { .. } => self.conditions.set_disk_failing(true),
            FaultKind::BadPromotion { norm_ppm } => self.promote(*norm_ppm).await,
            FaultKind::TornWrite { node, .. } => self.torn_write(*node).await,
            FaultKind::LedgerCorrupt { node } => self.corrupt(*node).await,
        }
    }

    async fn end(&self, index: usize, fault: &Fault) {
        if self.active.lock().expect("lock").contains_key(&index) {
            self.close(index, fault);
        }
    }
}

/// The `fault` event of a plan's fault.
fn fault_record(index: usize, fault: &Fault) -> FaultRecord {
    FaultRecord {
        at_ms: fault.at_ms,
        fault: fault.kind.name().into(),
        for_ms: fault.kind.duration_ms(),
        id: index as u64 + 1,
        magnitude: fault.kind.magnitude(),
        node: fault.kind.target(),
    }
}

impl World {
    /// A handle on the current incarnation of a node: a handle taken before a restart
    /// spawns onto the killed incarnation, where tasks never run.
    fn current(&self, node: NodeName) -> NodeHandle {
        self.handle.get_node(self.nodes[&node].id()).expect("nodes are never removed")
    }

    /// Whether a task spawned on the node runs now: a killed node runs nothing, and a
    /// paused one nothing until it resumes (the injector would wait on it). A fault that
    /// needs the node's disk does nothing then; its events still say it was injected.
    fn reachable(&self, node: NodeName) -> bool {
        !self.paused(node) && !self.down.lock().expect("lock").contains(&node)
    }

    /// Whether an active `pause` holds the node.
    fn paused(&self, node: NodeName) -> bool {
        self.active
            .lock()
            .expect("lock")
            .values()
            .any(|f| matches!(&f.kind, FaultKind::Pause { node: n, .. } if *n == node))
    }

    fn kill(&self, node: NodeName) {
        self.handle.kill(self.nodes[&node].id());
        self.down.lock().expect("lock").insert(node);
    }

    /// Ends an active fault: undoes it and writes its `fault_end`.
    fn close(&self, index: usize, fault: &Fault) {
        self.active.lock().expect("lock").remove(&index);
        match &fault.kind {
            FaultKind::Crash { node, .. } | FaultKind::TornWrite { node, .. } => {
                if self.down.lock().expect("lock").remove(node) {
                    self.handle.restart(self.nodes[node].id());
                }
            }
            FaultKind::Pause { node, .. } => {
                if !self.paused(*node) {
                    self.handle.resume(self.nodes[node].id());
                }
            }
            FaultKind::Isolate { .. } | FaultKind::Partition { .. } => self.apply_cuts(),
            FaultKind::PacketLoss { .. } | FaultKind::Latency { .. } => self.apply_network(),
            FaultKind::BackendErrors { .. } | FaultKind::BackendSlow { .. } | FaultKind::TokenInflation { .. } => {
                self.apply_backend()
            }
            FaultKind::LedgerIoError { .. } => {
                let active = self.active.lock().expect("lock");
                let still = active.values().any(|f| matches!(f.kind, FaultKind::LedgerIoError { .. }));
                self.conditions.set_disk_failing(still);
            }
            FaultKind::Restart { .. } | FaultKind::BadPromotion { .. } | FaultKind::LedgerCorrupt { .. } => {}
        }
        self.observer.harness(
            "chaos",
            Harness::FaultEnd(FaultEnd {
                fault: fault.kind.name().into(),
                id: index as u64 + 1,
                node: fault.kind.target(),
            }),
        );
    }

    /// Kills every node and lets the executor drop their tasks. Dropping a madsim
    /// `Runtime` does not cancel the tasks still in it (madsim issue #242), and the
    /// engine's tasks hold handles that keep the runtime's state alive: without this, each
    /// run leaked its whole simulated world (about 20 MB a run of the Azure hour, 18 GB
    /// over a 1,000-seed campaign).
    async fn tear_down(&self) {
        for node in self.nodes.values() {
            self.handle.kill(node.id());
        }
        if let Some(driver) = self.handle.get_node("driver") {
            self.handle.kill(driver.id());
        }
        // Killed tasks are dropped when the executor next polls them.
        sleep(Duration::from_millis(1)).await;
    }

    /// Ends every fault still active (lasting crashes, faults cut short by the end of the
    /// run), so the final ledger check reads a running coordinator.
    fn heal(&self) {
        let active: Vec<(usize, Fault)> =
            self.active.lock().expect("lock").iter().map(|(i, f)| (*i, f.clone())).collect();
        for (index, fault) in active {
            self.close(index, &fault);
        }
    }

    /// Clogs exactly the links that the active isolations and partitions cut.
    fn apply_cuts(&self) {
        let net = NetSim::current();
        let active = self.active.lock().expect("lock").values().cloned().collect::<Vec<_>>();
        for (name, node) in &self.nodes {
            let isolated = active.iter().any(|f| matches!(&f.kind, FaultKind::Isolate { node: n, .. } if n == name));
            if isolated {
                net.clog_node(node.id());
            } else {
                net.unclog_node(node.id());
            }
        }
        let wanted: BTreeSet<(NodeName, NodeName)> = active
            .iter()
            .filter_map(|f| match &f.kind {
                FaultKind::Partition { node, peer, .. } => Some([(*node, *peer), (*peer, *node)]),
                _ => None,
            })
            .flatten()
            .collect();
        let mut cut = self.cut.lock().expect("lock");
        for (a, b) in cut.difference(&wanted) {
            net.unclog_link(self.nodes[a].id(), self.nodes[b].id());
        }
        for (a, b) in &wanted {
            net.clog_link(self.nodes[a].id(), self.nodes[b].id());
        }
        *cut = wanted;
    }

    /// The network configuration: the scenario's, worsened by the active faults (the
    /// highest loss, the widest latency).
    fn apply_network(&self) {
        let (mut loss, (mut low, mut high)) = (self.network.loss, self.network.latency_ms);
        for fault in self.active.lock().expect("lock").values() {
            match &fault.kind {
                FaultKind::PacketLoss { rate_ppm, .. } => loss = loss.max(*rate_ppm as f64 / 1e6),
                FaultKind::Latency { min_ms, max_ms, .. } => {
                    low = low.max(*min_ms);
                    high = high.max(*max_ms);
                }
                _ => {}
            }
        }
        NetSim::current().update_config(|net| {
            net.packet_loss_rate = loss.min(1.0);
            net.send_latency =
                Duration::from_millis(low)..Duration::from_millis(high.max(low)) + Duration::from_micros(1);
        });
    }

    /// The backend weather of each path from the active faults (the worst of each).
    fn apply_backend(&self) {
        for path in Path::ALL {
            let mut weather = BackendWeather::default();
            for fault in self.active.lock().expect("lock").values() {
                match &fault.kind {
                    FaultKind::BackendErrors { path: p, rate_ppm, .. } if *p == path => {
                        weather.error_rate = weather.error_rate.max(*rate_ppm as f64 / 1e6)
                    }
                    FaultKind::BackendSlow { path: p, factor_ppm, .. } if *p == path => {
                        weather.slowdown = weather.slowdown.max(*factor_ppm as f64 / 1e6)
                    }
                    FaultKind::TokenInflation { path: p, factor_ppm, .. } if *p == path => {
                        weather.token_inflation = weather.token_inflation.max(*factor_ppm as f64 / 1e6)
                    }
                    _ => {}
                }
            }
            self.conditions.set_backend(path, weather);
        }
    }

    /// Pushes a `W` update to the state node as a trainer would, over the network.
    async fn promote(&self, norm_ppm: u64) {
        let state = ip(&addresses(&self.config).state);
        let timeout = Duration::from_millis(self.config.dispatch.state_timeout_ms);
        let pushed = self
            .handle
            .get_node("driver")
            .expect("the driver node exists")
            .spawn(async move {
                let endpoint = Endpoint::bind(TRAINER).await.expect("the trainer's address is free");
                seedcore_engine::deadline::within(timeout, endpoint.call(state, Promote { norm_ppm }))
                    .await
                    .is_ok_and(|answer| answer.is_ok())
            })
            .await
            .expect("the promotion task completes");
        if !pushed {
            // The state node was down or cut off: the promotion did not land, and says so.
            self.observer.harness(
                "chaos",
                Harness::FaultEnd(FaultEnd { fault: "bad_promotion_undelivered".into(), id: 0, node: "state".into() }),
            );
        }
    }

    /// Half a record at the end of the coordinator's segment being written, then the crash.
    async fn torn_write(&self, node: NodeName) {
        if !self.reachable(node) {
            return;
        }
        let dir = self.config.ledger.dir.clone();
        self.current(node)
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
        self.kill(node);
    }

    /// Flips a byte inside the first receipt of the coordinator's first segment.
    async fn corrupt(&self, node: NodeName) {
        if !self.reachable(node) {
            return;
        }
        let path = segment_path(&self.config.ledger.dir, 0);
        self.current(node)
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

/// Builds the nodes of the engine in the current runtime: every worker address holds a
/// node, and those beyond the topology wait, stopped, for the autoscaler.
fn build_nodes(
    handle: &Handle,
    config: &Arc<EngineConfig>,
    probe: &Arc<dyn Probe>,
    conditions: &Arc<Conditions>,
) -> BTreeMap<NodeName, NodeHandle> {
    let addresses = Arc::new(addresses(config));
    let scaler = config.autoscale.enabled.then(|| Arc::new(SimScaler { nodes: Default::default() }));
    let (fast, deep) = (addresses.fast.len() as u32, addresses.deep.len() as u32);
    let mut nodes = BTreeMap::new();
    for name in NodeName::all(fast, deep) {
        let address = match name {
            NodeName::Coordinator => ip(&addresses.coordinator),
            NodeName::State => ip(&addresses.state),
            NodeName::Worker(path, replica) => ip(&addresses.workers(path)[replica as usize - 1]),
        };
        let context = NodeContext {
            name: name.to_string(),
            config: config.clone(),
            addresses: addresses.clone(),
            probe: probe.clone(),
            conditions: conditions.clone(),
            scaler: scaler.clone().map(|s| s as Arc<dyn seedcore_engine::node::Scaler>),
        };
        let node = handle
            .create_node()
            .name(name.to_string())
            .ip(address.ip())
            .init(move || {
                let context = context.clone();
                async move {
                    let server = Server::bind(address, &()).await.expect("each node has its own address");
                    match name {
                        NodeName::Coordinator => {
                            start_coordinator(server, context).await.expect("the coordinator starts");
                        }
                        NodeName::State => start_state(server, context).await,
                        NodeName::Worker(path, _) => start_worker(server, context, path).await,
                    }
                    std::future::pending::<()>().await;
                }
            })
            .build();
        nodes.insert(name, node);
    }
    if let Some(scaler) = scaler {
        let topology = [(Path::Fast, config.topology.fast, fast), (Path::Deep, config.topology.deep, deep)];
        for (path, from, to) in topology {
            for replica in from + 1..=to {
                handle.kill(nodes[&NodeName::Worker(path, replica)].id());
            }
        }
        scaler.nodes.set(nodes.iter().map(|(name, node)| (*name, node.id())).collect()).ok();
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

/// Runs one simulation of `tasks` with `seed`, observed into `sinks`, in a runtime of its
/// own, the observer's folds on a thread beside it.
pub fn run_once(scenario: &Scenario, tasks: Arc<Vec<Task>>, seed: u64, sinks: Sinks) -> std::io::Result<Observed> {
    let folding = Folding::start(sinks)?;
    let runtime = Runtime::with_seed_and_config(seed, sim_config(scenario));
    // The observer is made inside the runtime: its clock starts at simulated time zero.
    let result =
        runtime.block_on(async { simulate_observed(scenario.clone(), tasks, seed, Observer::beside(folding)).await });
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
/// (call `finish` on it for the digest and totals). The observer folds on the
/// simulation's thread; `run_once` folds beside it.
pub async fn simulate(
    scenario: Scenario,
    tasks: Arc<Vec<Task>>,
    seed: u64,
    sinks: Sinks,
) -> std::io::Result<Arc<Observer>> {
    simulate_observed(scenario, tasks, seed, Observer::new(sinks)?).await
}

async fn simulate_observed(
    scenario: Scenario,
    tasks: Arc<Vec<Task>>,
    seed: u64,
    observer: Observer,
) -> std::io::Result<Arc<Observer>> {
    let run_index = RUNS_IN_PROCESS.fetch_add(1, Ordering::Relaxed);
    let engine = Arc::new(scenario.engine_config(seed));
    let handle = Handle::current();
    let observer = Arc::new(observer);
    observer.harness("harness", run_start(&scenario, &engine, seed, tasks.len()));
    let probe: Arc<dyn Probe> = observer.clone();
    let conditions = Arc::new(Conditions::default());
    conditions.set_failed_in_trace(scenario.workload.failed_in_trace(&tasks));
    let nodes = build_nodes(&handle, &engine, &probe, &conditions);
    let world = Arc::new(World {
        handle: handle.clone(),
        nodes,
        down: Mutex::new(BTreeSet::new()),
        active: Mutex::new(BTreeMap::new()),
        cut: Mutex::new(BTreeSet::new()),
        observer: observer.clone(),
        config: engine.clone(),
        network: scenario.network.clone(),
        conditions,
    });
    let driver = Driver {
        coordinator: ip(&addresses(&engine).coordinator),
        attempt_timeout: Duration::from_millis(engine.dispatch.deep_timeout_ms + 5_000),
        until: Duration::from_millis(scenario.duration_ms + scenario.harness.drain_ms),
        jitter_ms: if scenario.harness.inject_nondeterminism { run_index } else { 0 },
    };
    let arrivals = tasks.len() as u64;
    let faults = scenario.fault_plan(seed);
    observer.harness("harness", fault_plan_record(&faults, scenario.swarm.is_some()));
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
    // Faults still on at the end of the drain end now: the ledger is checked on a running
    // coordinator, never skipped.
    world.heal();
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
    world.tear_down().await;
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
/// Where a `bad_promotion` is pushed from: the driver's node, as a trainer.
const TRAINER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 9, 1)), 9001);

/// The plan of a run, written before any fault.
fn fault_plan_record(plan: &FaultPlan, swarm: bool) -> Harness {
    Harness::FaultPlan(FaultPlanRecord {
        digest: plan.digest(),
        faults: plan.faults().iter().enumerate().map(|(i, f)| fault_record(i, f)).collect(),
        swarm,
    })
}

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

/// Arrivals between two sweeps of madsim's record of finished tasks.
const FORGET_EVERY: usize = 4_096;

/// madsim keeps a weak reference to every task ever spawned on a node (to wake them all
/// when the node is killed), and a weak reference holds its task's allocation: about 130
/// bytes for every RPC handled, for the whole run, most of a simulated day's memory.
/// Counting the tasks prunes the dead ones. It reads no randomness and schedules
/// nothing, so the run is the same.
fn forget_finished_tasks() {
    let _ = madsim::runtime::Handle::current().metrics().num_tasks();
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
        for (i, task) in tasks.iter().enumerate() {
            if i % FORGET_EVERY == FORGET_EVERY - 1 {
                forget_finished_tasks();
            }
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
        authority: task.authority,
        domain: task.domain.clone(),
        drift_ppm: ppm(task.drift),
        kind: task.kind,
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
    let seed = engine.ledger.key_seed.expect("the simulator derives a ledger key from every run's seed");
    let key = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
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
    debug_assert!(!world.down.lock().expect("lock").contains(&NodeName::Coordinator), "heal restarts every node");
    sleep(Duration::from_millis(engine.ledger.cycle_ms + 1_000)).await;
    let dir = engine.ledger.dir.clone();
    let result = world
        .current(NodeName::Coordinator)
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

#[cfg(test)]
mod forget_tests {
    /// The driver's sweep relies on madsim's task count pruning its references to finished
    /// tasks; a madsim that stopped doing so would bring a day's 0.45 GB back.
    #[test]
    fn counting_tasks_forgets_the_finished_ones() {
        let runtime = madsim::runtime::Runtime::new();
        runtime.block_on(async {
            for _ in 0..10_000 {
                madsim::task::spawn(async {}).await.expect("the task runs");
            }
            let live = madsim::runtime::Handle::current().metrics().num_tasks();
            assert!(live <= 2, "{live} tasks counted after 10,000 finished");
        });
    }
}
