//! The coordinator: admission, OCPS valve, surprise router, cost governor, token forecast,
//! dispatch with timeouts and bounded retries, and the ledger writer.
//!
//! Guarantees: every task gets exactly one terminal outcome, recorded in the ledger before
//! it is reported; a resubmitted task gets its recorded outcome back, never a second
//! execution or charge; no wait on another node is unbounded; after a restart the spend and
//! counters come back from the ledger, and a ledger that fails verification, or cannot be
//! written for `record::GIVE_UP_MS`, halts the coordinator (it then rejects everything with
//! `halted`).
//!
//! In parts: `admission.rs` (claim, valve, router, governor: the decision, under the lock),
//! `dispatch.rs` (cache lookup, backend attempts, completions to the state node),
//! `record.rs` (the ledger writer: recovery, receipts, cycles, outcomes), `status.rs`
//! (the status RPC and the autoscaler) and `served.rs` (the oldest cache entry served in
//! the last minute, for the status). This file holds the state they share and starts the
//! node.

mod admission;
mod dispatch;
mod record;
mod served;
mod status;

use super::autoscale::Fleet;
use super::{NodeContext, NodeError};
use crate::config::EngineConfig;
use crate::governor::Governor;
use crate::ledger::LedgerWriter;
use crate::memory::StoreIndex;
use crate::peers::{Peers, Server};
use crate::probe::{NodeEvent, NodeSignal, Role, Signal};
use crate::router::Router;
use crate::rpc::{Complete, Route, StatusQuery, Submit, SubmitTask, Submitted};
use crate::task::{Outcome, Path, PerPath, Task};
use crate::tokens::TokenForecast;
use crate::valve::Valve;
use admission::{Claim, Counters};
use madsim::time::Instant;
use record::Details;
use served::ServedAges;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Poll period of a resubmitted task waiting for its first submission to finish.
const DUPLICATE_POLL_MS: u64 = 100;

/// Mutable state behind one lock; no `await` while it is held.
struct Core {
    valve: Valve,
    router: Router,
    governor: Governor,
    forecast: TokenForecast,
    /// Rolling Mw hit rate (x1 = 1 - this).
    hit_rate: f64,
    /// Last organism state change reported by the state node (x4).
    state_change: f64,
    /// What was sent to Mw: lookups that must miss are skipped.
    stored: StoreIndex,
    /// Tasks in dispatch per path.
    in_flight: PerPath<u32>,
    /// Outcomes waiting for their receipt to be written.
    recording: u32,
    /// The worker replicas taking work, and the autoscaler's demand and targets.
    fleet: Fleet,
    /// The autoscaler waits on `Coordinator::wake_scaler` for the next call.
    scaler_parked: bool,
    /// Terminal outcome of every task seen (recovered from the ledger and new).
    outcomes: BTreeMap<u64, Outcome>,
    /// Tasks between admission and outcome.
    in_progress: BTreeSet<u64>,
    /// Why the coordinator halted, if it did.
    halted: Option<String>,
    /// Shutting down: new tasks are turned away (`overload`), tasks in progress finish.
    draining: bool,
    /// Counters since start, for the status RPC (the gateway's `/ocps/status`, `/metrics`).
    counters: Counters,
    /// The oldest cache entry served per second of `Coordinator::uptime_ms`, for the status.
    served_ages: ServedAges,
    /// Above every task id seen: the next id `SubmitTask` assigns.
    next_task_id: u64,
    /// Completions not yet sent to the state node, in the order they happened.
    outbox: Vec<Complete>,
}

impl Core {
    /// A coordinator's state before recovery: `replicas` worker addresses per path, of
    /// which the topology's take work; `scales` when an autoscaler acts on the fleet.
    fn new(config: &EngineConfig, replicas: PerPath<usize>, scales: bool) -> Core {
        Core {
            valve: Valve::new(config.valve.clone()),
            router: Router::new(config.router.clone()),
            governor: Governor::new(config.governor.clone()),
            forecast: TokenForecast::new(config.tokens.clone()),
            hit_rate: 0.0,
            state_change: 0.5,
            stored: StoreIndex::new(&config.memory),
            in_flight: PerPath::default(),
            recording: 0,
            fleet: Fleet::new(
                config.autoscale.clone(),
                replicas,
                [config.topology.fast, config.topology.deep].into(),
                scales,
            ),
            scaler_parked: false,
            outcomes: BTreeMap::new(),
            in_progress: BTreeSet::new(),
            halted: None,
            draining: false,
            counters: Counters::default(),
            served_ages: ServedAges::new(),
            next_task_id: 0,
            outbox: Vec::new(),
        }
    }

    /// Tasks admitted and not yet recorded.
    fn in_flight(&self) -> u32 {
        self.in_flight.total() + self.recording
    }
}

struct Coordinator {
    context: NodeContext,
    /// Calls to the state node and the workers.
    peers: Peers,
    core: Mutex<Core>,
    /// When the coordinator started.
    started: Instant,
    /// Wakes a parked autoscaler.
    wake_scaler: Arc<tokio::sync::Notify>,
    /// Wakes the completion sender: a batch has begun.
    wake_sender: tokio::sync::Notify,
    /// A batch is full: the sender sends it without waiting out the window.
    batch_full: tokio::sync::Notify,
    /// The ledger; `None` once halted.
    ledger: tokio::sync::Mutex<Option<LedgerWriter>>,
}

/// What running a task gave.
struct Ran {
    outcome: Outcome,
    /// The routing decision, when this submission admitted the task.
    decision: Option<crate::rpc::Decided>,
    /// This submission processed the task.
    fresh: bool,
}

/// The coordinator of a running node, for its owner: live, `serve` drains it on SIGTERM.
#[derive(Clone)]
pub struct CoordinatorHandle {
    coordinator: Arc<Coordinator>,
}

/// What a shutdown left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drained {
    /// Tasks still in progress when the drain timed out (0 after a clean drain).
    pub abandoned: usize,
    /// Receipts in the ledger, all of them signed by a cycle when `signed`.
    pub receipts: u64,
    pub signed: bool,
}

impl CoordinatorHandle {
    /// Stops taking new tasks (they are turned away with `overload`), waits up to
    /// `timeout` for the tasks in progress to reach their outcomes, then signs the ledger's
    /// last cycle and syncs it to disk.
    pub async fn shutdown(&self, timeout: Duration) -> Drained {
        let coordinator = &self.coordinator;
        coordinator.lock().draining = true;
        let deadline = Instant::now() + timeout;
        while !coordinator.lock().in_progress.is_empty() && Instant::now() < deadline {
            madsim::time::sleep(Duration::from_millis(10)).await;
        }
        let abandoned = coordinator.lock().in_progress.len();
        // The completions still queued go to the state node before the process ends.
        coordinator.flush_completions().await;
        let (receipts, signed) = coordinator.sign_last_cycle(deadline).await;
        Drained { abandoned, receipts, signed }
    }
}

/// Starts the coordinator on `server`: recovers the ledger, then serves `Submit` (and
/// the gateway's `SubmitTask`, `Route` and `Status`).
pub async fn start_coordinator(server: Server, context: NodeContext) -> Result<CoordinatorHandle, NodeError> {
    let config = context.config.clone();
    let replicas = PerPath { fast: context.addresses.fast.len(), deep: context.addresses.deep.len() };
    let mut core = Core::new(&config, replicas, context.scaler.is_some() && config.autoscale.enabled);
    context.emit(Signal::Node(NodeSignal { event: NodeEvent::Started, role: Role::Coordinator }));
    let ledger = record::recover(&context, &mut core).await;
    let coordinator = Arc::new(Coordinator {
        peers: Peers::new(&server),
        context,
        core: Mutex::new(core),
        started: Instant::now(),
        wake_scaler: Arc::new(tokio::sync::Notify::new()),
        wake_sender: tokio::sync::Notify::new(),
        batch_full: tokio::sync::Notify::new(),
        ledger: tokio::sync::Mutex::new(ledger),
    });
    serve(&server, &coordinator);
    let ticker = coordinator.clone();
    madsim::task::spawn(async move { ticker.close_cycles().await });
    let sender = coordinator.clone();
    madsim::task::spawn(async move { sender.send_completions().await });
    if config.autoscale.enabled {
        let (scaler, wake) = (Arc::downgrade(&coordinator), coordinator.wake_scaler.clone());
        madsim::task::spawn(Coordinator::autoscale(scaler, wake));
    }
    Ok(CoordinatorHandle { coordinator })
}

/// Registers the coordinator's RPC handlers.
fn serve(server: &Server, coordinator: &Arc<Coordinator>) {
    let serving = coordinator.clone();
    server.add(move |Submit(task)| {
        let coordinator = serving.clone();
        async move { coordinator.run(task).await.outcome }
    });
    let serving = coordinator.clone();
    server.add(move |SubmitTask { mut task, assign_id }| {
        let coordinator = serving.clone();
        async move {
            if assign_id {
                let mut core = coordinator.lock();
                task.task_id = core.next_task_id;
                core.next_task_id = core.next_task_id.saturating_add(1);
            }
            let task_id = task.task_id;
            let Ran { outcome, decision, fresh } = coordinator.run(task).await;
            Submitted { task_id, decision, outcome, fresh }
        }
    });
    let serving = coordinator.clone();
    server.add(move |Route(task)| {
        let routed = serving.lock().route(&serving.context.config, &task);
        async move { routed }
    });
    let serving = coordinator.clone();
    server.add(move |StatusQuery { at_ms }| {
        let status = serving.lock().status(&serving.context.config, at_ms, serving.uptime_ms());
        async move { status }
    });
}

impl Coordinator {
    fn emit(&self, signal: Signal) {
        self.context.emit(signal);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Core> {
        self.core.lock().expect("coordinator lock is never poisoned")
    }

    /// Milliseconds since the coordinator's runtime started (the autoscaler's clock).
    fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Runs one task to its terminal outcome, or returns the outcome already recorded;
    /// with the routing decision when this submission made one.
    async fn run(self: Arc<Self>, task: Task) -> Ran {
        let received = Instant::now();
        let config = &self.context.config;
        if let Some(answer) = self.wait_for_claim(task.task_id).await {
            return answer;
        }
        let day = config.day_of(task.at_ms);
        let admitted = {
            let mut core = self.lock();
            core.admit(config, &task, day).map(|(admitted, decision, alerts)| {
                self.emit(Signal::Decision(decision));
                self.emit_alerts(alerts);
                admitted
            })
        };
        match admitted {
            Err(reason) => {
                let details = Details { day, ..Details::default() };
                let outcome = self.finish(&task, Outcome::Rejected { reason }, details, received).await;
                Ran { outcome, decision: None, fresh: true }
            }
            Ok(admitted) => {
                let decided = admitted.decided;
                let outcome = self.execute(&task, admitted, received).await;
                Ran { outcome, decision: Some(decided), fresh: true }
            }
        }
    }

    /// Claims a task for this submission (`None`), waiting while another submission
    /// processes it; that one is bounded by the worst case of dispatch, and twice that
    /// bounds the wait. Otherwise the answer: the recorded outcome, or "submit again".
    async fn wait_for_claim(&self, task_id: u64) -> Option<Ran> {
        let polls = self.context.config.dispatch.worst_case_ms().saturating_mul(2) / DUPLICATE_POLL_MS + 1;
        for _ in 0..polls {
            match self.lock().claim(task_id) {
                Claim::Recorded(outcome) => return Some(Ran { outcome, decision: None, fresh: false }),
                Claim::Claimed => return None,
                Claim::InProgress => {}
            }
            madsim::time::sleep(Duration::from_millis(DUPLICATE_POLL_MS)).await;
        }
        // Not recorded and not reported: the first submission will record the outcome, and
        // the client may ask again.
        let outcome = Outcome::Failed { path: Path::Fast, error: "task still in progress; submit again".into() };
        Some(Ran { outcome, decision: None, fresh: false })
    }
}
