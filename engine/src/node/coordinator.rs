//! The coordinator: admission, OCPS valve, surprise router, cost governor, token forecast,
//! dispatch with timeouts and bounded retries, and the ledger writer.
//!
//! Guarantees: every task gets exactly one terminal outcome, recorded in the ledger before
//! it is reported; a resubmitted task gets its recorded outcome back, never a second
//! execution or charge; no wait on another node is unbounded; after a restart the spend and
//! counters come back from the ledger, and a ledger that fails verification halts the
//! coordinator (it then rejects everything with `halted`).

use super::autoscale::{Action, Fleet};
use super::{NodeContext, NodeError};
use crate::governor::{AdmitRequest, Alert, Governor, Plan};
use crate::ledger::{LedgerWriter, Receipt};
use crate::memory::{StoreIndex, Tier};
use crate::organism::features;
use crate::peers::Peers;
use crate::peers::Server;
use crate::probe::{
    ppm, AlertSignal, AttemptSignal, DecisionSignal, LedgerSignal, NodeSignal, OutcomeSignal, ScaleSignal, Signal,
};
use crate::router::{Reason, Router, RouterInputs};
use crate::rpc::{
    Complete, CompleteBatch, CoordinatorStatus, Decided, Execute, Executed, Lookup, PathScale, Route, Routed,
    StatusQuery, Submit, SubmitTask, Submitted,
};
use crate::task::{Authority, Outcome, Path, RejectReason, Status, Task};
use crate::tokens::TokenForecast;
use crate::valve::{Valve, ValveStep};
use madsim::time::Instant;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Smoothing of the rolling Mw hit rate (about the last 1,000 lookups).
const HIT_RATE_SMOOTHING: f64 = 1.0 / 1000.0;
/// First pause before retrying a ledger write that failed, and the longest.
const APPEND_BACKOFF_MS: u64 = 100;
const APPEND_BACKOFF_MAX_MS: u64 = 2_000;
/// Poll period of a resubmitted task waiting for its first submission to finish.
const DUPLICATE_POLL_MS: u64 = 100;
/// The most completions in one call to the state node (`send_completions`).
const MAX_BATCH: usize = 256;
/// Poll period of a draining replica's calls in flight.
const DRAIN_POLL_MS: u64 = 100;

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
    in_flight: [u32; 2],
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
    /// Above every task id seen: the next id `SubmitTask` assigns.
    next_task_id: u64,
    /// Completions not yet sent to the state node, in the order they happened.
    outbox: Vec<Complete>,
}

/// Counts since the coordinator started.
#[derive(Default)]
struct Counters {
    decisions: [u64; Reason::ALL.len()],
    rejections: [u64; RejectReason::ALL.len()],
    completed: [u64; 2],
    failed: [u64; 2],
    cache_hits: u64,
    /// Lookups served per tier, in `Tier::ALL` order.
    tier_hits: [u64; 3],
    ledger_receipts: u64,
    ledger_cycles: u64,
}

impl Counters {
    fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Completed { path, cache_hit, .. } => {
                self.completed[path.index()] += 1;
                self.cache_hits += u64::from(*cache_hit);
            }
            Outcome::Failed { path, .. } => self.failed[path.index()] += 1,
            Outcome::Rejected { reason } => {
                let index = RejectReason::ALL.iter().position(|r| r == reason).expect("every reason is listed");
                self.rejections[index] += 1;
            }
        }
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

/// Who processes a submission.
enum Claim {
    /// This submission: the task was neither recorded nor in progress.
    Claimed,
    /// Another submission is processing the task.
    InProgress,
    /// The task has a recorded outcome.
    Recorded(Outcome),
}

/// An admitted task.
struct Admitted {
    plan: Plan,
    reason: Reason,
    day: u64,
    decided: Decided,
}

/// What running a task gave.
struct Ran {
    outcome: Outcome,
    /// The routing decision, when this submission admitted the task.
    decision: Option<Decided>,
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
        let mut ledger = coordinator.ledger.lock().await;
        let Some(writer) = ledger.as_mut() else {
            return Drained { abandoned, receipts: 0, signed: false };
        };
        let signed = match writer.close_cycle().await {
            Ok(cycle) => {
                if let Some(cycle) = cycle {
                    coordinator.lock().counters.ledger_cycles += 1;
                    coordinator.emit_cycle(cycle);
                }
                true
            }
            Err(error) => {
                tracing::error!(%error, "the ledger's last cycle could not be signed");
                false
            }
        };
        Drained { abandoned, receipts: writer.receipts(), signed }
    }
}

/// Extra facts recorded with an outcome.
#[derive(Default)]
struct Details {
    attempts: u32,
    cache_age_ms: Option<u64>,
    cache_tier: Option<Tier>,
    overrun_clamped: bool,
    truncated: bool,
    day: u64,
    /// The worker whose attempt succeeded.
    worker: Option<String>,
}

fn outcome_of_receipt(receipt: &Receipt) -> Outcome {
    let first_reason = receipt.reasons.first().cloned().unwrap_or_default();
    match (receipt.outcome, receipt.path) {
        (Status::Completed, Some(path)) => Outcome::Completed {
            path,
            latency_ms: receipt.latency_ms,
            cost_micro_usd: receipt.cost_micro_usd,
            tokens_in: receipt.tokens_in,
            tokens_out: receipt.tokens_out,
            cache_hit: receipt.reasons.iter().any(|r| r == "cache_hit"),
        },
        (Status::Failed, Some(path)) => Outcome::Failed { path, error: first_reason },
        _ => Outcome::Rejected { reason: RejectReason::parse(&first_reason).unwrap_or(RejectReason::Halted) },
    }
}

/// Starts the coordinator on `server`: recovers the ledger, then serves `Submit` (and
/// the gateway's `SubmitTask`, `Route` and `Status`).
pub async fn start_coordinator(server: Server, context: NodeContext) -> Result<CoordinatorHandle, NodeError> {
    let config = context.config.clone();
    let mut core = Core {
        valve: Valve::new(config.valve.clone()),
        router: Router::new(config.router.clone()),
        governor: Governor::new(config.governor.clone()),
        forecast: TokenForecast::new(config.tokens.clone()),
        hit_rate: 0.0,
        state_change: 0.5,
        stored: StoreIndex::new(&config.memory),
        in_flight: [0; 2],
        recording: 0,
        fleet: Fleet::new(
            config.autoscale.clone(),
            [context.addresses.fast.len(), context.addresses.deep.len()],
            [config.topology.fast, config.topology.deep],
            context.scaler.is_some() && config.autoscale.enabled,
        ),
        scaler_parked: false,
        outcomes: BTreeMap::new(),
        in_progress: BTreeSet::new(),
        halted: None,
        draining: false,
        counters: Counters::default(),
        next_task_id: 0,
        outbox: Vec::new(),
    };
    context.emit(Signal::Node(NodeSignal { event: "started".into(), role: "coordinator".into() }));
    // Recovery rebuilds spend, counters and outcomes receipt by receipt; if verification
    // fails part way, the coordinator halts and the partial state only serves rejections.
    let mut last_day = None;
    let opened = LedgerWriter::open(&config.ledger, |receipt| {
        core.governor.recover(receipt.task_id, receipt.day, receipt.kind, receipt.admitted(), receipt.cost_micro_usd);
        core.outcomes.insert(receipt.task_id, outcome_of_receipt(receipt));
        core.next_task_id = core.next_task_id.max(receipt.task_id.saturating_add(1));
        last_day = Some(receipt.day);
    })
    .await;
    let ledger = match opened {
        Ok((mut writer, verified)) => {
            writer.set_conditions(context.conditions.clone());
            writer.set_sync_appends(config.ledger.fsync_every_receipt);
            core.counters.ledger_receipts = verified.receipts;
            core.counters.ledger_cycles = verified.cycles;
            context.emit(Signal::Ledger(LedgerSignal {
                error: None,
                event: "recovered".into(),
                head: Some(hex::encode(verified.head)),
                receipts: verified.receipts,
                spent_micro_usd: last_day.map(|day| core.governor.day_state(day).spent_micro_usd),
            }));
            Some(writer)
        }
        Err(error) => {
            // The seeds' deviation rule: signature verification failure halts the engine.
            let message = error.to_string();
            context.emit(Signal::Ledger(LedgerSignal {
                error: Some(message.clone()),
                event: "halt".into(),
                head: None,
                receipts: 0,
                spent_micro_usd: None,
            }));
            context.emit(Signal::Alert(AlertSignal {
                limit: 0,
                name: "ledger_verification_failed".into(),
                subject: message.clone(),
                value: 1,
            }));
            core.halted = Some(message);
            None
        }
    };
    let peers = Peers::new(&server);
    let coordinator = Arc::new(Coordinator {
        context,
        peers,
        core: Mutex::new(core),
        started: Instant::now(),
        wake_scaler: Arc::new(tokio::sync::Notify::new()),
        wake_sender: tokio::sync::Notify::new(),
        batch_full: tokio::sync::Notify::new(),
        ledger: tokio::sync::Mutex::new(ledger),
    });
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
        let routed = serving.route(&task);
        async move { routed }
    });
    let serving = coordinator.clone();
    server.add(move |StatusQuery { at_ms }| {
        let status = serving.status(at_ms);
        async move { status }
    });
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

impl Coordinator {
    fn emit(&self, signal: Signal) {
        self.context.emit(signal);
    }

    /// Milliseconds since the coordinator's runtime started (the autoscaler's clock).
    fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The autoscaler (SPEC 4.10): every interval, the demand and the target per path; with
    /// a scaler, starts replicas (ready after the start-up delay) and drains surplus ones
    /// (stopped once their calls have returned).
    ///
    /// The loop holds the coordinator only between its waits (a `Weak` across them), so a
    /// parked or sleeping autoscaler never keeps a killed coordinator's state alive.
    async fn autoscale(me: std::sync::Weak<Self>, wake: Arc<tokio::sync::Notify>) {
        let Some(this) = me.upgrade() else { return };
        let config = this.context.config.clone();
        let interval = Duration::from_millis(config.autoscale.interval_ms);
        let concurrency = [config.dispatch.fast_concurrency, config.dispatch.deep_concurrency];
        // The starting target (the topology), so that every run records one per path.
        for path in [Path::Fast, Path::Deep] {
            this.emit_scale(path, "target", None);
        }
        drop(this);
        loop {
            madsim::time::sleep(interval).await;
            let Some(this) = me.upgrade() else { return };
            if this.autoscale_tick(concurrency) {
                drop(this);
                // Nothing can change before a call: wait for one instead of ticking
                // through idle simulated time.
                wake.notified().await;
                let Some(this) = me.upgrade() else { return };
                let now = this.uptime_ms();
                this.lock().fleet.resume(now);
            }
        }
    }

    /// One tick of the autoscaler: the targets, and the starts and drains they ask for.
    /// Returns whether the autoscaler should park until the next call.
    fn autoscale_tick(self: &Arc<Self>, concurrency: [u32; 2]) -> bool {
        let config = &self.context.config;
        let (actions, changed) = self.lock().fleet.tick(self.uptime_ms(), concurrency);
        let parked = {
            let mut core = self.lock();
            core.scaler_parked = actions.is_empty() && core.fleet.quiet();
            core.scaler_parked
        };
        for path in [Path::Fast, Path::Deep] {
            if changed[path.index()] {
                self.emit_scale(path, "target", None);
            }
        }
        for action in actions {
            let me = self.clone();
            match action {
                Action::Start(path, replica) => {
                    if let Some(scaler) = &self.context.scaler {
                        scaler.start(path, replica);
                    }
                    self.emit_scale(path, "starting", Some(replica));
                    let startup = Duration::from_millis(config.autoscale.startup_ms);
                    madsim::task::spawn(async move {
                        madsim::time::sleep(startup).await;
                        me.lock().fleet.ready(path, replica);
                        me.emit_scale(path, "ready", Some(replica));
                    });
                }
                Action::Drain(path, replica) => {
                    self.emit_scale(path, "draining", Some(replica));
                    madsim::task::spawn(async move {
                        while me.lock().fleet.in_flight(path, replica) > 0 {
                            madsim::time::sleep(Duration::from_millis(DRAIN_POLL_MS)).await;
                        }
                        if let Some(scaler) = &me.context.scaler {
                            scaler.stop(path, replica);
                        }
                        me.lock().fleet.stopped(path, replica);
                        me.emit_scale(path, "stopped", Some(replica));
                    });
                }
            }
        }
        parked
    }

    fn emit_scale(&self, path: Path, event: &str, replica: Option<usize>) {
        let (target, demand, replicas) = {
            let core = self.lock();
            let (target, demand) = core.fleet.target(path);
            (target, demand, core.fleet.active(path))
        };
        self.emit(Signal::Scale(ScaleSignal {
            demand_ppm: ppm(demand),
            event: event.into(),
            path,
            replicas,
            target,
            worker: replica.map(|r| format!("{}-{}", path.as_str(), r + 1)),
        }));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Core> {
        self.core.lock().expect("coordinator lock is never poisoned")
    }

    fn emit_alerts(&self, alerts: Vec<Alert>) {
        for alert in alerts {
            self.emit(Signal::Alert(AlertSignal {
                limit: alert.limit,
                name: alert.name.into(),
                subject: alert.subject,
                value: alert.value,
            }));
        }
    }

    fn emit_cycle(&self, cycle: crate::ledger::CycleRecord) {
        self.emit(Signal::Ledger(LedgerSignal {
            error: None,
            event: "cycle".into(),
            head: Some(cycle.head),
            receipts: cycle.last_seq + 1,
            spent_micro_usd: None,
        }));
    }

    /// The router's inputs for a task after the valve's `step` (SPEC 4.2).
    fn router_inputs(&self, core: &Core, task: &Task, step: ValveStep) -> RouterInputs {
        let config = &self.context.config;
        let fast_capacity = core.fleet.active(Path::Fast).saturating_mul(config.dispatch.fast_concurrency).max(1);
        let waiting = core.in_flight[0].saturating_sub(fast_capacity);
        let queue_wait_ms = f64::from(waiting) / f64::from(fast_capacity) * config.backend.fast.median_ms;
        RouterInputs {
            cache_miss: 1.0 - core.hit_rate,
            valve: if step.breached { 1.0 } else { step.s / core.valve.h() },
            drift: task.drift,
            state_change: core.state_change,
            uncertainty: if task.needs_planning {
                0.5
            } else if task.authority == Authority::Low {
                0.3
            } else {
                0.1
            },
            pressure: (0.5
                * (queue_wait_ms / (0.8 * config.router.fast_slo_ms) + f64::from(task.priority.min(10)) / 10.0))
                .clamp(0.0, 1.0),
        }
    }

    /// The decision a task would get now; nothing changes (`/ocps/route`).
    fn route(&self, task: &Task) -> Routed {
        let core = self.lock();
        let step = core.valve.clone().observe(task.drift);
        let inputs = self.router_inputs(&core, task, step);
        let decision = core.router.decide(step.breached, task.needs_planning, &inputs);
        Routed {
            path: decision.path,
            reason: decision.reason,
            surprise: decision.surprise,
            cusum_s: step.s,
            breached: step.breached,
            inputs: inputs.as_array(),
            halted: core.halted.is_some(),
        }
    }

    /// Counters and state now; `at_ms` picks the budget day.
    fn status(&self, at_ms: u64) -> CoordinatorStatus {
        let config = &self.context.config;
        let core = self.lock();
        let day = config.day_of(at_ms);
        CoordinatorStatus {
            halted: core.halted.clone(),
            draining: core.draining,
            cusum_s: core.valve.s(),
            cusum_h: core.valve.h(),
            valve_tasks: core.valve.tasks(),
            breaches: core.valve.breaches(),
            fast_ratio_window: 1.0 - core.router.deep_share(),
            decisions: core.counters.decisions,
            rejections: core.counters.rejections,
            completed: core.counters.completed,
            failed: core.counters.failed,
            cache_hits: core.counters.cache_hits,
            tier_hits: core.counters.tier_hits,
            autoscale: [Path::Fast, Path::Deep].map(|path| {
                let (target, demand) = core.fleet.target(path);
                PathScale { target, demand, active: core.fleet.active(path) }
            }),
            mw_hit_rate: core.hit_rate,
            in_flight: core.in_flight[0] + core.in_flight[1] + core.recording,
            day,
            spent_today_micro_usd: core.governor.day_state(day).spent_micro_usd,
            daily_budget_micro_usd: config.governor.daily_budget_micro_usd,
            fast_slo_ms: config.router.fast_slo_ms,
            ledger_receipts: core.counters.ledger_receipts,
            ledger_cycles: core.counters.ledger_cycles,
            next_task_id: core.next_task_id,
        }
    }

    /// Signs the ledger head every cycle period while receipts are pending.
    async fn close_cycles(self: Arc<Self>) {
        let period = Duration::from_millis(self.context.config.ledger.cycle_ms);
        loop {
            madsim::time::sleep(period).await;
            let mut ledger = self.ledger.lock().await;
            let Some(writer) = ledger.as_mut() else { return };
            match writer.close_cycle().await {
                Ok(Some(cycle)) => {
                    self.lock().counters.ledger_cycles += 1;
                    self.emit_cycle(cycle);
                }
                Ok(None) => {}
                // A cycle that cannot be written now is signed at a later tick: the
                // receipts it covers are committed, only their signature waits.
                Err(error) => self.emit(Signal::Ledger(LedgerSignal {
                    error: Some(error.to_string()),
                    event: "write_failed".into(),
                    head: None,
                    receipts: writer.receipts(),
                    spent_micro_usd: None,
                })),
            }
        }
    }

    /// Runs one task to its terminal outcome, or returns the outcome already recorded;
    /// with the routing decision when this submission made one.
    async fn run(self: Arc<Self>, task: Task) -> Ran {
        let received = Instant::now();
        let config = &self.context.config;
        // A resubmission waits for the first submission, which is bounded by the worst
        // case of dispatch; twice that is a generous bound on the wait.
        let polls = config.dispatch.worst_case_ms().saturating_mul(2) / DUPLICATE_POLL_MS + 1;
        let mut claimed = false;
        for _ in 0..polls {
            match self.claim(task.task_id) {
                Claim::Recorded(outcome) => return Ran { outcome, decision: None, fresh: false },
                Claim::Claimed => {
                    claimed = true;
                    break;
                }
                Claim::InProgress => madsim::time::sleep(Duration::from_millis(DUPLICATE_POLL_MS)).await,
            }
        }
        if !claimed {
            // Not recorded and not reported: the first submission will record the outcome,
            // and the client may ask again.
            let outcome = Outcome::Failed { path: Path::Fast, error: "task still in progress; submit again".into() };
            return Ran { outcome, decision: None, fresh: false };
        }
        let day = config.day_of(task.at_ms);
        match self.admit(&task, day) {
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

    /// Takes a task for processing, atomically: exactly one submission of a task id gets
    /// `Claimed`; the others see it in progress or recorded.
    fn claim(&self, task_id: u64) -> Claim {
        let mut core = self.lock();
        if let Some(outcome) = core.outcomes.get(&task_id) {
            return Claim::Recorded(outcome.clone());
        }
        if core.in_progress.insert(task_id) {
            core.next_task_id = core.next_task_id.max(task_id.saturating_add(1));
            Claim::Claimed
        } else {
            Claim::InProgress
        }
    }

    /// Valve, router and governor, under the lock. The task has been claimed.
    fn admit(&self, task: &Task, day: u64) -> Result<Admitted, RejectReason> {
        let config = &self.context.config;
        let mut core = self.lock();
        let core = &mut *core;
        assert!(core.in_progress.contains(&task.task_id), "admitted tasks are claimed");
        if core.halted.is_some() {
            return Err(RejectReason::Halted);
        }
        let in_flight = core.in_flight[0] + core.in_flight[1] + core.recording;
        if core.draining || in_flight >= config.dispatch.max_in_flight {
            return Err(RejectReason::Overload);
        }
        core.forecast.observe(task.tokens_in);
        let forecast = core.forecast.forecast(task.tokens_out.min(config.tokens.max_tokens));
        let step = core.valve.observe(task.drift);
        let valve_seq = core.valve.tasks();
        let inputs = self.router_inputs(core, task, step);
        let decision = core.router.decide(step.breached, task.needs_planning, &inputs);
        // Under pressure, the forecast gates admission (SPEC 4.5).
        if f64::from(in_flight) >= 0.8 * f64::from(config.dispatch.max_in_flight)
            && forecast > f64::from(config.tokens.max_tokens)
        {
            return Err(RejectReason::Overload);
        }
        let plan = core.governor.admit(AdmitRequest {
            task_id: task.task_id,
            day,
            kind: task.kind,
            path: decision.path,
            soft: decision.reason == Reason::Surprise,
            tokens_in: task.tokens_in,
            tokens_out: task.tokens_out,
            max_tokens: config.tokens.max_tokens,
        })?;
        let reason = if plan.degraded { Reason::Deferred } else { decision.reason };
        core.router.commit(plan.path);
        core.counters.decisions[Reason::ALL.iter().position(|r| *r == reason).expect("every reason is listed")] += 1;
        core.in_flight[plan.path.index()] += 1;
        self.emit(Signal::Decision(DecisionSignal {
            cusum_s_ppm: ppm(step.s),
            degraded: plan.degraded,
            forecast_tokens: forecast.round() as u64,
            max_tokens_out: plan.max_tokens_out,
            path: plan.path,
            reason,
            router_fast_ppm: ppm(1.0 - core.router.deep_share()),
            surprise_ppm: ppm(decision.surprise),
            task_id: task.task_id,
            truncated_tokens: plan.truncated_tokens,
            x_ppm: inputs.as_array().map(|x| ppm(x.clamp(0.0, 1.0))),
        }));
        let alerts = plan.alerts.clone();
        self.emit_alerts(alerts);
        let decided = Decided { path: plan.path, reason, surprise: decision.surprise, valve_seq };
        Ok(Admitted { plan, reason, day, decided })
    }

    fn scenario_now_ms(task: &Task, received: Instant) -> u64 {
        task.at_ms + received.elapsed().as_millis() as u64
    }

    /// Cache lookup, dispatch with retries, charge, organism update.
    async fn execute(&self, task: &Task, admitted: Admitted, received: Instant) -> Outcome {
        let config = &self.context.config;
        let addresses = &self.context.addresses;
        let Admitted { plan, reason, day, .. } = admitted;
        let path = plan.path;
        let state_timeout = Duration::from_millis(config.dispatch.state_timeout_ms);
        let mut details = Details { day, truncated: plan.truncated_tokens > 0, ..Details::default() };
        let cacheable = config.memory.caches(task.kind);
        let salient = reason == Reason::Breach;
        let task_features =
            features(task.kind, task.drift, task.priority, plan.tokens_in, task.tokens_out, task.signature);
        debug_assert!(reason != Reason::Surprise || path == Path::Deep);

        let ttl_ms = config.memory.served_limit_ms(task.kind);
        if path == Path::Fast && ttl_ms > 0 {
            let now_ms = Self::scenario_now_ms(task, received);
            let may_hit = self.lock().stored.may_hit(task.signature, ttl_ms, now_ms);
            let found = if may_hit {
                let pending = std::mem::take(&mut self.lock().outbox);
                let lookup = Lookup { signature: task.signature, kind: task.kind, now_ms, pending };
                let looked = self.peers.call(&addresses.state, lookup, state_timeout).await.ok();
                if let Some(completed) = looked.and_then(|l| l.completed) {
                    self.lock().state_change = completed.state_change;
                }
                looked.and_then(|l| l.found)
            } else {
                None
            };
            {
                let mut core = self.lock();
                let hit = if found.is_some_and(|f| f.tier == Tier::Mw) { 1.0 } else { 0.0 };
                core.hit_rate += HIT_RATE_SMOOTHING * (hit - core.hit_rate);
                if let Some(found) = found {
                    core.counters.tier_hits[found.tier.index()] += 1;
                }
            }
            if let Some(found) = found {
                let charge =
                    self.lock().governor.settle_fixed(task.task_id, 0).expect("an in-progress task is not yet charged");
                self.update_state(task, &task_features, found.tokens_out, (false, salient), received);
                details.cache_age_ms = Some(found.age_ms);
                details.cache_tier = Some(found.tier);
                let outcome = Outcome::Completed {
                    path,
                    latency_ms: received.elapsed().as_millis() as u64,
                    cost_micro_usd: charge.cost_micro_usd,
                    tokens_in: plan.tokens_in,
                    tokens_out: found.tokens_out,
                    cache_hit: true,
                };
                self.lock().in_flight[path.index()] -= 1;
                return self.finish(task, outcome, details, received).await;
            }
        }

        let workers = addresses.workers(path);
        let timeout = Duration::from_millis(config.dispatch.timeout_ms(path));
        let mut error = String::from("no attempt made");
        let mut generated = None;
        let mut previous: Option<usize> = None;
        for attempt in 0..=config.dispatch.retries {
            if attempt > 0 {
                let backoff = config.dispatch.backoff_ms << (attempt - 1).min(16);
                madsim::time::sleep(Duration::from_millis(backoff)).await;
            }
            // The first attempt takes the next replica in turn; a retry goes to the replica
            // after the one that just failed, so a cut-off or dead worker is not tried
            // twice in a row (with the shared turn, it could be, under concurrency).
            let replica = {
                let mut core = self.lock();
                let replica = core.fleet.pick(path, previous);
                core.fleet.call_started(path, replica, self.uptime_ms());
                if core.scaler_parked {
                    core.scaler_parked = false;
                    self.wake_scaler.notify_one();
                }
                replica
            };
            previous = Some(replica);
            let worker = &workers[replica];
            details.attempts += 1;
            let request = Execute {
                task_id: task.task_id,
                attempt,
                kind: task.kind,
                tokens_out: task.tokens_out,
                max_tokens_out: plan.max_tokens_out,
            };
            let worker_name = || format!("{}-{}", path.as_str(), replica + 1);
            let answer = self.peers.call(worker, request, timeout).await;
            self.lock().fleet.call_ended(path, replica, self.uptime_ms());
            match answer {
                Ok(Executed { result: Ok(tokens_out), .. }) => {
                    generated = Some(tokens_out);
                    details.worker = Some(worker_name());
                    break;
                }
                Ok(Executed { result: Err(e), .. }) => error = e,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    error = format!("timeout after {} ms", timeout.as_millis())
                }
                Err(e) => error = e.to_string(),
            }
            self.emit(Signal::Attempt(AttemptSignal {
                attempt,
                error: error.clone(),
                task_id: task.task_id,
                worker: worker_name(),
            }));
        }
        let outcome = match generated {
            Some(tokens_out) => {
                let charge = self
                    .lock()
                    .governor
                    .settle(task.task_id, path, plan.tokens_in, tokens_out, plan.max_tokens_out)
                    .expect("an in-progress task is not yet charged");
                details.overrun_clamped = charge.overrun_clamped;
                self.emit_alerts(charge.alerts);
                self.update_state(task, &task_features, charge.tokens_out, (cacheable, salient), received);
                Outcome::Completed {
                    path,
                    latency_ms: received.elapsed().as_millis() as u64,
                    cost_micro_usd: charge.cost_micro_usd,
                    tokens_in: plan.tokens_in,
                    tokens_out: charge.tokens_out,
                    cache_hit: false,
                }
            }
            None => {
                self.lock().governor.release(task.task_id);
                Outcome::Failed { path, error }
            }
        };
        self.lock().in_flight[path.index()] -= 1;
        self.finish(task, outcome, details, received).await
    }

    /// Queues a completion for the state node (`send_completions`); the task does not
    /// wait for it. A state node that does not answer in time costs the router its x4
    /// update and the organism those updates, never the task.
    fn update_state(
        &self,
        task: &Task,
        task_features: &[f64; crate::organism::FEATURES],
        tokens_out: u32,
        (store, salient): (bool, bool),
        received: Instant,
    ) {
        let now_ms = Self::scenario_now_ms(task, received);
        let request = Complete {
            task_id: task.task_id,
            kind: task.kind,
            signature: task.signature,
            features: *task_features,
            tokens_out,
            store,
            salient,
            now_ms,
        };
        let queued = {
            let mut core = self.lock();
            if store {
                // Recorded when queued: a store that may have happened counts.
                core.stored.record(task.signature, now_ms);
            }
            core.outbox.push(request);
            core.outbox.len()
        };
        if queued == 1 {
            self.wake_sender.notify_one();
        } else if queued == MAX_BATCH {
            self.batch_full.notify_one();
        }
    }

    /// Sends the queued completions, in the order they happened: one call
    /// `dispatch.complete_batch_ms` after the first completion of a batch, or as soon as
    /// `MAX_BATCH` are queued. A lookup in the meantime takes them with it. The sender has
    /// one batch in flight at a time.
    async fn send_completions(&self) {
        let window = Duration::from_millis(self.context.config.dispatch.complete_batch_ms);
        loop {
            self.wake_sender.notified().await;
            if !window.is_zero() {
                tokio::select! {
                    // Polled in order: no draw from tokio's own randomness.
                    biased;
                    () = madsim::time::sleep(window) => {}
                    () = self.batch_full.notified() => {}
                }
            }
            self.flush_completions().await;
        }
    }

    /// Sends the queued completions now, if there are any.
    async fn flush_completions(&self) {
        let batch = std::mem::take(&mut self.lock().outbox);
        if batch.is_empty() {
            return;
        }
        let timeout = Duration::from_millis(self.context.config.dispatch.state_timeout_ms);
        if let Ok(Some(completed)) = self.peers.call(&self.context.addresses.state, CompleteBatch(batch), timeout).await
        {
            self.lock().state_change = completed.state_change;
        }
    }

    /// Appends a receipt; returns its seq, or `None` when the ledger is halted.
    ///
    /// A write that fails is retried with backoff (100 ms, doubling to 2 s) for as long
    /// as it fails, holding the ledger: an outcome is never reported before its receipt
    /// is committed, so while the disk fails, outcomes wait and the in-flight limit
    /// turns new tasks away (`overloaded`); none is lost and none is recorded twice. Only
    /// a ledger that fails verification halts the coordinator (ARCHITECTURE.md).
    async fn record(&self, entry: Receipt) -> Option<u64> {
        self.lock().recording += 1;
        let seq = self.record_waiting(entry).await;
        self.lock().recording -= 1;
        seq
    }

    async fn record_waiting(&self, entry: Receipt) -> Option<u64> {
        let mut ledger = self.ledger.lock().await;
        let writer = ledger.as_mut()?;
        let mut backoff = Duration::from_millis(APPEND_BACKOFF_MS);
        loop {
            match writer.append(entry.clone()).await {
                Ok((receipt, cycle)) => {
                    {
                        let mut core = self.lock();
                        core.counters.ledger_receipts = receipt.seq + 1;
                        core.counters.ledger_cycles += u64::from(cycle.is_some());
                    }
                    if let Some(cycle) = cycle {
                        self.emit_cycle(cycle);
                    }
                    return Some(receipt.seq);
                }
                Err(error) => {
                    self.emit(Signal::Ledger(LedgerSignal {
                        error: Some(error.to_string()),
                        event: "write_failed".into(),
                        head: None,
                        receipts: writer.receipts(),
                        spent_micro_usd: None,
                    }));
                    madsim::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(APPEND_BACKOFF_MAX_MS));
                }
            }
        }
    }

    /// Commits the outcome to the ledger, remembers it, and reports it. The receipt is
    /// derived from the outcome signal by `Receipt::of_outcome`, the same function a
    /// verifier uses to rebuild the chain from the event log.
    async fn finish(&self, task: &Task, outcome: Outcome, details: Details, received: Instant) -> Outcome {
        let elapsed_ms = || u64::try_from(received.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut signal = OutcomeSignal {
            arrived_ms: task.at_ms,
            attempts: details.attempts,
            cache_age_ms: details.cache_age_ms,
            cache_hit: false,
            cache_tier: details.cache_tier,
            cost_micro_usd: 0,
            day: details.day,
            error: None,
            kind: task.kind,
            latency_ms: 0,
            ledger_seq: None,
            overrun_clamped: false,
            path: None,
            reason: None,
            status: outcome.status(),
            task_id: task.task_id,
            tokens_in: 0,
            tokens_out: 0,
            truncated: false,
            worker: details.worker,
        };
        match &outcome {
            Outcome::Completed { path, latency_ms, cost_micro_usd, tokens_in, tokens_out, cache_hit } => {
                signal.cache_hit = *cache_hit;
                signal.cost_micro_usd = *cost_micro_usd;
                signal.latency_ms = *latency_ms;
                signal.overrun_clamped = details.overrun_clamped;
                signal.path = Some(*path);
                signal.tokens_in = *tokens_in;
                signal.tokens_out = *tokens_out;
                signal.truncated = details.truncated;
            }
            Outcome::Rejected { reason } => {
                signal.latency_ms = elapsed_ms();
                signal.reason = Some(*reason);
            }
            Outcome::Failed { path, error } => {
                signal.error = Some(error.clone());
                signal.latency_ms = elapsed_ms();
                signal.path = Some(*path);
            }
        }
        signal.ledger_seq = self.record(Receipt::of_outcome(&signal)).await;
        {
            let mut core = self.lock();
            core.outcomes.insert(task.task_id, outcome.clone());
            core.in_progress.remove(&task.task_id);
            core.counters.count(&outcome);
        }
        self.emit(Signal::Outcome(signal));
        outcome
    }
}
