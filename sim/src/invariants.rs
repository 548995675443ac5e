//! Invariant evaluation (docs/certification.md 8.1) as a fold over the event stream:
//! `Stats::observe` takes events one by one (during the run, or read back from `events.jsonl` by a
//! verifier), and `evaluate` turns the totals and the policy into verdicts.
//!
//! Guarantees: every number here comes from the events alone (the limits from `run_start`),
//! plus the replay digests for `determinism`; the engine is never asked.

use crate::chain::ChainRebuild;
use crate::event::{Body, Harness, LedgerCheck, LedgerCycle, RunEnd, RunStart};
use crate::invariant_id::InvariantId;
use crate::money::DayMoney;
use crate::scenario::{InvariantPolicy, Policy};
use hdrhistogram::Histogram;
use seedcore_engine::probe::{LedgerEvent, OutcomeSignal, Signal};
use seedcore_engine::router::Reason;
use seedcore_engine::task::{Path, PerPath, RejectReason, Status};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Totals of a run, folded from its events: the public fields are the results the
/// verdicts and reports read; the fold's working state is kept apart, in `Working`.
#[derive(Clone, Debug)]
pub struct Stats {
    /// The `run_start` record: the limits the money invariants check.
    pub run_start: Option<RunStart>,
    /// The `run_end` record.
    pub run_end: Option<RunEnd>,
    /// Tasks submitted by the driver.
    pub arrivals: u64,
    /// Outcomes for a task that already had one.
    pub duplicate_outcomes: u64,
    /// Outcomes for a task that never arrived.
    pub orphan_outcomes: u64,
    /// Completed tasks per path (fast, deep).
    pub completed: PerPath<u64>,
    /// Failed tasks per path.
    pub failed: PerPath<u64>,
    /// Completions served from Mw.
    pub cache_hits: u64,
    /// Completions whose backend overran and whose charge was clamped.
    pub overruns_clamped: u64,
    /// Rejections per reason.
    pub rejected: BTreeMap<RejectReason, u64>,
    /// Decisions per reason (`fast`, `breach`, `planning`, `surprise`, `deferred`).
    pub decisions: BTreeMap<Reason, u64>,
    /// Latency of completed tasks per path, ms.
    pub latency_ms: PerPath<Histogram<u64>>,
    /// Time to first token of completed tasks per path, ms (cached answers included: they
    /// come whole).
    pub ttft_ms: PerPath<Histogram<u64>>,
    /// Time per output token after the first of completed uncached tasks with two tokens or
    /// more, per path, microseconds.
    pub tpot_us: PerPath<Histogram<u64>>,
    /// Money and admissions per simulated UTC day: the one computation of those figures.
    pub days: BTreeMap<u64, DayMoney>,
    /// Highest charge of a completed task.
    pub max_cost_micro_usd: u64,
    /// Sum of all charges.
    pub total_cost_micro_usd: u64,
    /// Highest certified `L_tot` reported, ppm.
    pub l_tot_max_ppm: Option<i64>,
    /// `l_tot` signals (initialisations and promotions).
    pub l_tot_updates: u64,
    /// GraphMask interventions.
    pub masks: u64,
    /// Edges removed by GraphMask.
    pub edges_masked: u64,
    /// Sweeps of the shadow contraction check.
    pub sweeps: u64,
    /// Sweeps whose distance ratio exceeded the bound.
    pub contraction_failures: u64,
    /// Oldest cache entry served, from any tier.
    pub max_cache_age_ms: u64,
    /// Cache hits per memory tier, in `Tier::ALL` order (Mw, M2.5, Mlt).
    pub tier_hits: [u64; 3],
    /// Oldest entry each tier served.
    pub tier_max_age_ms: [u64; 3],
    /// Events kept in the flashbulb tier Mfb.
    pub flashbulbs: u64,
    /// The organism's energy: first and last sample, lowest and highest total, samples.
    pub energy_first: Option<seedcore_engine::probe::EnergySignal>,
    pub energy_last: Option<seedcore_engine::probe::EnergySignal>,
    pub energy_min_ppm: Option<i64>,
    pub energy_max_ppm: Option<i64>,
    pub energy_samples: u64,
    /// Promotions refused for raising the energy.
    pub promotions_refused: u64,
    /// The autoscaler per path (fast, deep): scale events, highest target, most and
    /// fewest replicas taking work, workers started and stopped.
    pub scale: PerPath<ScaleStats>,
    /// Alerts per name.
    pub alerts: BTreeMap<String, u64>,
    /// Faults injected.
    pub faults: u64,
    /// When the last fault ended (no other fault being on): where recovery is measured from.
    pub last_fault_end_ms: Option<u64>,
    /// Per fault id: the time from its end until the engine had recovered.
    pub fault_recovery: BTreeMap<u64, u64>,
    /// Lowest fast ratio over any full window, ppm.
    pub worst_window_fast_ppm: Option<i64>,
    /// Outcomes per minute of simulated time (by the minute of the outcome event): what
    /// the rollback criteria judge stretches of, and what shadow plots over time.
    pub minutes: BTreeMap<u64, Minute>,
    /// Times the coordinator halted on its ledger.
    pub ledger_halts: u64,
    /// The harness's own check of the ledger at the end.
    pub ledger_check: Option<LedgerCheck>,
    /// Signed cycles the harness listed (`ledger_cycle` events).
    pub ledger_cycles: Vec<LedgerCycle>,
    /// The ledger's hash chain, rebuilt from the outcome events.
    pub chain: ChainRebuild,
    /// Outcomes that reported a committed ledger receipt.
    pub receipts_reported: u64,
    /// Events folded.
    pub events: u64,
    /// Time of the latest event.
    pub last_t_ms: u64,
    /// The fold's working state: what it needs to compute the results, not results.
    work: Working,
}

/// The outcomes of one minute of simulated time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Minute {
    /// Tasks completed on the fast path.
    pub fast: u64,
    /// Tasks completed on either path.
    pub completed: u64,
    /// Tasks that failed.
    pub failed: u64,
    /// Tasks rejected.
    pub rejected: u64,
    /// Charges of the minute's outcomes.
    pub cost_micro_usd: u64,
    /// Oldest cache entry served in the minute; `None` without a cache hit.
    pub max_age_ms: Option<u64>,
}

/// Milliseconds in a minute: the resolution of the rollback criteria's stretches.
pub const MINUTE_MS: u64 = 60_000;

/// The fold's working state: open tasks, rolling windows, faults on and recoveries under
/// way. Only `Stats::observe` reads it; the results are `Stats`'s public fields.
#[derive(Clone, Debug)]
struct Working {
    /// Rolling window (tasks) of the fast-path ratio.
    window: usize,
    /// Tasks that arrived and have no outcome yet.
    open: BTreeSet<u64>,
    /// Every task that has had an outcome.
    answered: BTreeSet<u64>,
    /// Faults started and not yet ended, by id.
    active_faults: BTreeSet<u64>,
    /// The id of the last fault that ended with no other on.
    last_quiet_id: Option<u64>,
    /// Faults ended and not yet recovered from.
    recovering: Vec<Recovering>,
    /// The last `RECOVERY_WINDOW` completed-or-failed tasks: whether each completed fast.
    recovery_recent: VecDeque<bool>,
    recovery_fast: usize,
    /// Completed-or-failed tasks in the rolling window: whether each completed fast.
    recent: VecDeque<bool>,
    recent_fast: usize,
}

/// A fault that ended, while the engine recovers from it.
#[derive(Clone, Debug)]
struct Recovering {
    id: u64,
    end_ms: u64,
    /// Tasks open when it ended: the queue the engine must drain.
    pending: BTreeSet<u64>,
    /// When the last of `pending` got its outcome.
    drained_ms: Option<u64>,
    /// When the fast share of the last `RECOVERY_WINDOW` outcomes was first at its target
    /// after the end (the end itself if it was not below then).
    restored_ms: Option<u64>,
}

/// Outcomes in the window whose fast share must be back at target after the faults end:
/// short enough that the fault's own outcomes leave it within seconds at production rates
/// (100 tasks are 20 s of the Azure hour), unlike the policy's 1,000-task window.
pub const RECOVERY_WINDOW: usize = 100;

/// The public ledger key of a simulated run with `seed`.
pub fn simulation_ledger_key(seed: u64) -> ed25519_dalek::VerifyingKey {
    ed25519_dalek::SigningKey::from_bytes(&seedcore_engine::config::simulation_key_seed(seed)).verifying_key()
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000, 3).expect("valid histogram bounds")
}

impl Stats {
    /// Empty totals with a rolling window of `window` tasks.
    pub fn new(window: usize) -> Stats {
        assert!(window >= 1);
        let work = Working {
            window,
            open: BTreeSet::new(),
            answered: BTreeSet::new(),
            active_faults: BTreeSet::new(),
            last_quiet_id: None,
            recovering: Vec::new(),
            recovery_recent: VecDeque::with_capacity(RECOVERY_WINDOW),
            recovery_fast: 0,
            recent: VecDeque::with_capacity(window),
            recent_fast: 0,
        };
        Stats {
            work,
            run_start: None,
            run_end: None,
            arrivals: 0,
            duplicate_outcomes: 0,
            orphan_outcomes: 0,
            completed: PerPath::default(),
            failed: PerPath::default(),
            cache_hits: 0,
            overruns_clamped: 0,
            rejected: BTreeMap::new(),
            decisions: BTreeMap::new(),
            latency_ms: PerPath { fast: histogram(), deep: histogram() },
            ttft_ms: PerPath { fast: histogram(), deep: histogram() },
            tpot_us: PerPath { fast: histogram(), deep: histogram() },
            days: BTreeMap::new(),
            max_cost_micro_usd: 0,
            total_cost_micro_usd: 0,
            l_tot_max_ppm: None,
            l_tot_updates: 0,
            masks: 0,
            edges_masked: 0,
            sweeps: 0,
            contraction_failures: 0,
            max_cache_age_ms: 0,
            tier_hits: [0; 3],
            tier_max_age_ms: [0; 3],
            flashbulbs: 0,
            energy_first: None,
            energy_last: None,
            energy_min_ppm: None,
            energy_max_ppm: None,
            energy_samples: 0,
            promotions_refused: 0,
            scale: PerPath::default(),
            alerts: BTreeMap::new(),
            faults: 0,
            last_fault_end_ms: None,
            fault_recovery: BTreeMap::new(),
            worst_window_fast_ppm: None,
            minutes: BTreeMap::new(),
            ledger_halts: 0,
            ledger_check: None,
            ledger_cycles: Vec::new(),
            chain: ChainRebuild::default(),
            receipts_reported: 0,
            events: 0,
            last_t_ms: 0,
        }
    }

    /// The run's seed, from `run_start`.
    pub fn seed(&self) -> Option<u64> {
        self.run_start.as_ref().and_then(|r| r.seed.parse().ok())
    }

    /// The hex public ledger key the run's seed gives (empty without a `run_start`).
    pub fn ledger_public_key(&self) -> String {
        self.seed().map_or_else(String::new, |seed| hex::encode(simulation_ledger_key(seed).as_bytes()))
    }

    /// Whether every listed cycle signs the head the outcome events give, under the key of
    /// the run's seed.
    pub fn chain_bound(&self) -> Result<(), String> {
        let seed = self.seed().ok_or("no run_start gives the seed")?;
        self.chain.check(&self.ledger_cycles, &simulation_ledger_key(seed))
    }

    fn fast_target_ppm(&self) -> i64 {
        self.run_start.as_ref().map_or(900_000, |r| r.fast_target_ppm)
    }

    /// Folds one event in.
    pub fn observe(&mut self, t_ms: u64, body: &Body) {
        self.events += 1;
        self.last_t_ms = self.last_t_ms.max(t_ms);
        match body {
            Body::Harness(record) => self.observe_harness(t_ms, record),
            Body::Engine(signal) => self.observe_signal(t_ms, signal),
        }
    }

    /// Folds in a harness record: the run's bounds, arrivals, the fault windows (whose
    /// ends start the recovery measures) and the harness's own ledger verification.
    fn observe_harness(&mut self, t_ms: u64, record: &Harness) {
        match record {
            Harness::RunStart(start) => self.run_start = Some(start.clone()),
            Harness::RunEnd(end) => self.run_end = Some(end.clone()),
            Harness::Arrival(arrival) => {
                self.arrivals += 1;
                if !self.work.answered.contains(&arrival.task_id) {
                    self.work.open.insert(arrival.task_id);
                }
            }
            Harness::Fault(fault) => {
                self.faults += 1;
                self.work.active_faults.insert(fault.id);
                self.last_fault_end_ms = None;
                self.work.last_quiet_id = None;
            }
            Harness::FaultEnd(end) => {
                self.work.active_faults.remove(&end.id);
                let pending = self.work.open.clone();
                self.work.recovering.push(Recovering {
                    id: end.id,
                    end_ms: t_ms,
                    restored_ms: (!self.recovery_below_target()).then_some(t_ms),
                    drained_ms: pending.is_empty().then_some(t_ms),
                    pending,
                });
                self.resolve_recoveries();
                if self.work.active_faults.is_empty() {
                    // Safety held through the faults; liveness is measured from here.
                    self.last_fault_end_ms = Some(t_ms);
                    self.work.last_quiet_id = Some(end.id);
                }
            }
            Harness::FaultPlan(_) => {}
            Harness::LedgerCheck(check) => self.ledger_check = Some(check.clone()),
            Harness::LedgerCycle(cycle) => self.ledger_cycles.push(cycle.clone()),
        }
    }

    /// Folds in an engine signal: outcomes go to `observe_outcome`; the router's decisions,
    /// alerts, the organism's and memory's signals, ledger halts and the autoscaler's
    /// signals are counted here.
    fn observe_signal(&mut self, t_ms: u64, signal: &Signal) {
        match signal {
            Signal::Node(_) | Signal::Attempt(_) => {}
            Signal::Decision(decision) => *self.decisions.entry(decision.reason).or_default() += 1,
            Signal::Outcome(outcome) => self.observe_outcome(t_ms, outcome),
            Signal::Alert(alert) => crate::money::bump(&mut self.alerts, &alert.name),
            Signal::LTot(l) => {
                self.l_tot_updates += 1;
                self.l_tot_max_ppm = Some(self.l_tot_max_ppm.map_or(l.l_tot_ppm, |m| m.max(l.l_tot_ppm)));
            }
            Signal::Mask(mask) => {
                self.masks += 1;
                self.edges_masked += u64::from(mask.edges_masked);
            }
            Signal::Contraction(c) => {
                self.sweeps += 1;
                if !c.ok || c.ratio_ppm > c.bound_ppm {
                    self.contraction_failures += 1;
                }
            }
            Signal::Ledger(ledger) => self.ledger_halts += u64::from(ledger.event == LedgerEvent::Halt),
            Signal::Flashbulb(_) => self.flashbulbs += 1,
            Signal::Energy(e) => {
                self.energy_samples += 1;
                self.energy_min_ppm = Some(self.energy_min_ppm.map_or(e.total_ppm, |m| m.min(e.total_ppm)));
                self.energy_max_ppm = Some(self.energy_max_ppm.map_or(e.total_ppm, |m| m.max(e.total_ppm)));
                if self.energy_first.is_none() {
                    self.energy_first = Some(e.clone());
                }
                self.energy_last = Some(e.clone());
            }
            Signal::PromotionRefused(_) => self.promotions_refused += 1,
            Signal::Scale(scale) => self.scale[scale.path].observe(scale),
        }
    }

    /// Folds in a task's outcome: the recoveries it drains, the answered set (which
    /// catches duplicates and orphans), the rebuilt ledger chain, its status counts, its
    /// day's money and the run's cost totals.
    fn observe_outcome(&mut self, t_ms: u64, outcome: &OutcomeSignal) {
        for r in &mut self.work.recovering {
            if r.pending.remove(&outcome.task_id) && r.pending.is_empty() {
                r.drained_ms = Some(t_ms);
            }
        }
        if !self.work.answered.insert(outcome.task_id) {
            self.duplicate_outcomes += 1;
        } else if !self.work.open.remove(&outcome.task_id) {
            self.orphan_outcomes += 1;
        }
        self.receipts_reported += u64::from(outcome.ledger_seq.is_some());
        self.chain.observe(outcome);
        self.count_status(t_ms, outcome);
        let (ceiling, budget) =
            self.run_start.as_ref().map_or((u64::MAX, u64::MAX), |s| (s.ceiling_micro_usd, s.daily_budget_micro_usd));
        self.days.entry(outcome.day).or_default().observe(outcome, ceiling, budget);
        if !self.work.recovering.is_empty() {
            self.resolve_recoveries();
        }
        self.total_cost_micro_usd += outcome.cost_micro_usd;
        if outcome.status == Status::Completed {
            self.max_cost_micro_usd = self.max_cost_micro_usd.max(outcome.cost_micro_usd);
        }
    }

    /// Counts an outcome under its status: completions (with their latency, cache and
    /// overrun figures) and failures per path, both feeding the rolling windows, and
    /// rejections per reason.
    fn count_status(&mut self, t_ms: u64, outcome: &OutcomeSignal) {
        // A failed task always names its path; a rejected one has none.
        let path = outcome.path.unwrap_or(Path::Fast);
        let minute = self.minutes.entry(t_ms / MINUTE_MS).or_default();
        minute.cost_micro_usd += outcome.cost_micro_usd;
        match outcome.status {
            Status::Completed => {
                minute.completed += 1;
                minute.fast += u64::from(path == Path::Fast);
                if let Some(age) = outcome.cache_age_ms {
                    minute.max_age_ms = Some(minute.max_age_ms.map_or(age, |m| m.max(age)));
                }
            }
            Status::Failed => minute.failed += 1,
            Status::Rejected => minute.rejected += 1,
        }
        match outcome.status {
            Status::Completed => {
                self.completed[path] += 1;
                self.latency_ms[path].saturating_record(outcome.latency_ms.max(1));
                if let Some(ttft) = outcome.ttft_ms {
                    self.ttft_ms[path].saturating_record(ttft.max(1));
                    let tpot =
                        seedcore_engine::task::tpot_ms(outcome.latency_ms, ttft, outcome.tokens_out, outcome.cache_hit);
                    if let Some(tpot) = tpot {
                        self.tpot_us[path].saturating_record(((tpot * 1000.0).round() as u64).max(1));
                    }
                }
                self.cache_hits += u64::from(outcome.cache_hit);
                self.overruns_clamped += u64::from(outcome.overrun_clamped);
                if let Some(age) = outcome.cache_age_ms {
                    self.max_cache_age_ms = self.max_cache_age_ms.max(age);
                    if let Some(tier) = outcome.cache_tier {
                        self.tier_hits[tier.index()] += 1;
                        let oldest = &mut self.tier_max_age_ms[tier.index()];
                        *oldest = (*oldest).max(age);
                    }
                }
                self.push_recent(t_ms, path == Path::Fast);
            }
            Status::Failed => {
                self.failed[path] += 1;
                self.push_recent(t_ms, false);
            }
            // A rejection without a reason breaks the rebuilt ledger chain
            // (`chain.rs`); here it has no reason to be counted under.
            Status::Rejected => {
                if let Some(reason) = outcome.reason {
                    *self.rejected.entry(reason).or_default() += 1;
                }
            }
        }
    }

    fn push_recent(&mut self, t_ms: u64, fast: bool) {
        if self.work.recent.len() == self.work.window {
            let oldest = self.work.recent.pop_front().expect("full window");
            self.work.recent_fast -= usize::from(oldest);
        }
        self.work.recent.push_back(fast);
        self.work.recent_fast += usize::from(fast);
        let ratio_ppm = (self.work.recent_fast as i64 * 1_000_000) / self.work.recent.len() as i64;
        if self.work.recent.len() == self.work.window {
            self.worst_window_fast_ppm = Some(self.worst_window_fast_ppm.map_or(ratio_ppm, |w| w.min(ratio_ppm)));
        }
        if self.work.recovery_recent.len() == RECOVERY_WINDOW {
            let oldest = self.work.recovery_recent.pop_front().expect("full window");
            self.work.recovery_fast -= usize::from(oldest);
        }
        self.work.recovery_recent.push_back(fast);
        self.work.recovery_fast += usize::from(fast);
        if !self.recovery_below_target() {
            for r in self.work.recovering.iter_mut().filter(|r| r.restored_ms.is_none()) {
                r.restored_ms = Some(t_ms);
            }
        }
    }

    /// Moves the faults recovered from into `fault_recovery`.
    fn resolve_recoveries(&mut self) {
        let recovery = &mut self.fault_recovery;
        self.work.recovering.retain(|r| match (r.restored_ms, r.drained_ms) {
            (Some(restored), Some(drained)) => {
                recovery.insert(r.id, restored.max(drained) - r.end_ms);
                false
            }
            _ => true,
        });
    }

    /// Whether the fast share of the last `RECOVERY_WINDOW` outcomes is below target
    /// (false with no outcome yet).
    fn recovery_below_target(&self) -> bool {
        let n = self.work.recovery_recent.len() as i64;
        n > 0 && (self.work.recovery_fast as i64 * 1_000_000) / n < self.fast_target_ppm()
    }

    /// Time from the end of the last fault until the engine had drained the tasks open
    /// then and the fast ratio of the last `RECOVERY_WINDOW` outcomes was back at its
    /// target; `None` when it never got there (a liveness failure), or there was no fault.
    pub fn recovery_ms(&self) -> Option<u64> {
        self.fault_recovery.get(&self.work.last_quiet_id?).copied()
    }

    /// Whether the ratio never came back after the last fault (rather than the queue).
    pub fn not_restored(&self) -> bool {
        let Some(id) = self.work.last_quiet_id else { return false };
        self.work.recovering.iter().any(|r| r.id == id && r.restored_ms.is_none())
    }

    /// Tasks that arrived and never got an outcome.
    pub fn lost(&self) -> u64 {
        self.work.open.len() as u64
    }

    /// Completed fast over completed plus failed; `None` with no such task.
    pub fn fast_ratio(&self) -> Option<f64> {
        let total = self.completed.total() + self.failed.total();
        (total > 0).then(|| self.completed.fast as f64 / total as f64)
    }

    /// Cache hits over fast-path completions.
    pub fn hit_rate(&self) -> Option<f64> {
        (self.completed.fast > 0).then(|| self.cache_hits as f64 / self.completed.fast as f64)
    }
}

/// What the autoscaler did on one path.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScaleStats {
    /// `scale` events of every kind.
    pub events: u64,
    /// Target changes.
    pub targets: u64,
    pub max_target: u32,
    /// Most and fewest replicas taking work after any event.
    pub max_replicas: u32,
    pub min_replicas: Option<u32>,
    /// Workers that became ready after starting, and workers stopped after draining.
    pub started: u64,
    pub stopped: u64,
}

impl ScaleStats {
    fn observe(&mut self, s: &seedcore_engine::probe::ScaleSignal) {
        self.events += 1;
        self.max_target = self.max_target.max(s.target);
        self.max_replicas = self.max_replicas.max(s.replicas);
        self.min_replicas = Some(self.min_replicas.map_or(s.replicas, |m| m.min(s.replicas)));
        match s.event.as_str() {
            "target" => self.targets += 1,
            "ready" => self.started += 1,
            "stopped" => self.stopped += 1,
            _ => {}
        }
    }
}

/// The verdict of one invariant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
    /// Nothing to judge (no deep task, no fault, a single run).
    Skipped,
}

impl Verdict {
    /// The name printed and written.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
            Verdict::Skipped => "skipped",
        }
    }
}

/// One evaluated invariant.
#[derive(Clone, Debug, PartialEq)]
pub struct InvariantResult {
    /// The invariant of docs/certification.md 8.1.
    pub id: InvariantId,
    /// A critical failure forces FAIL.
    pub critical: bool,
    /// Pass, warn, fail or skipped.
    pub verdict: Verdict,
    /// Observed value, with its unit.
    pub observed: String,
    /// The rule, e.g. `>= 0.90`.
    pub threshold: String,
    /// What else a reader needs to judge the value.
    pub detail: String,
    /// The observed value and the limit in machine-readable form.
    pub measure: Measure,
}

/// An invariant's observed value and limit as plain decimal strings in one unit, for
/// machines (certificates): `value rule limit` is what the verdict checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Measure {
    /// The observed value, a decimal string in `unit`; empty when nothing was observed.
    pub value: String,
    /// The comparison the value must satisfy: `>=`, `<=`, `<` or `==`.
    pub rule: &'static str,
    /// The limit, a decimal string in `unit`.
    pub limit: String,
    pub unit: &'static str,
}

/// A share as an exact six-decimal string, from integer counts.
fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        return String::new();
    }
    let ppm = (u128::from(part) * 1_000_000 / u128::from(whole)) as u64;
    format!("{}.{:06}", ppm / 1_000_000, ppm % 1_000_000)
}

/// The measure of invariant `id`: the same totals its verdict is judged on.
fn measure(id: InvariantId, run: &Run<'_>, passed: bool) -> Measure {
    let Run { stats, start, replays, .. } = *run;
    let threshold = run.rule(id).threshold;
    let ratio_limit = format!("{threshold:.6}");
    let ms_limit = format!("{threshold}");
    let m = |value: String, rule: &'static str, limit: String, unit: &'static str| Measure { value, rule, limit, unit };
    match id {
        InvariantId::FastPathRatio => {
            let total = stats.completed.total() + stats.failed.total();
            m(share(stats.completed.fast, total), ">=", ratio_limit, "ratio")
        }
        InvariantId::LipschitzBound => {
            m(stats.l_tot_max_ppm.map_or_else(String::new, ppm_text), "<", ratio_limit, "L_tot")
        }
        InvariantId::CostCeiling => {
            m(stats.max_cost_micro_usd.to_string(), "<=", start.ceiling_micro_usd.to_string(), "micro-USD")
        }
        InvariantId::DailyBudget => m(
            stats.days.values().map(|d| d.spend_micro_usd).max().unwrap_or(0).to_string(),
            "<=",
            start.daily_budget_micro_usd.to_string(),
            "micro-USD per day",
        ),
        InvariantId::RateLimits => {
            let excess = stats
                .days
                .values()
                .flat_map(|d| d.admitted_per_kind.iter())
                .filter_map(|(kind, count)| start.rate_limits.get(kind).map(|limit| *count as i64 - i64::from(*limit)))
                .max();
            let value = excess.map_or_else(String::new, |e| e.to_string());
            m(value, "<=", "0".into(), "tasks over a kind's daily limit (worst kind-day)")
        }
        InvariantId::Determinism => determinism_measure(replays, ratio_limit),
        InvariantId::NoLostTasks => m(
            (stats.lost() + stats.duplicate_outcomes + stats.orphan_outcomes).to_string(),
            "==",
            "0".into(),
            "tasks lost, answered twice or never submitted",
        ),
        InvariantId::LedgerIntegrity => {
            m(u8::from(passed).to_string(), "==", "1".into(), "1 when the chain and every signature verify")
        }
        InvariantId::FastLatencyP99 | InvariantId::DeepLatencyP99 | InvariantId::TtftP99 => {
            let h = p99_histogram(stats, id);
            let value = if h.is_empty() { String::new() } else { h.value_at_quantile(0.99).to_string() };
            m(value, "<=", ms_limit, "ms")
        }
        InvariantId::FastSuccessRate | InvariantId::DeepSuccessRate => {
            let path = if id == InvariantId::DeepSuccessRate { Path::Deep } else { Path::Fast };
            m(share(stats.completed[path], stats.completed[path] + stats.failed[path]), ">=", ratio_limit, "ratio")
        }
        InvariantId::MemoryFreshness => {
            let value = if stats.cache_hits == 0 { String::new() } else { stats.max_cache_age_ms.to_string() };
            m(value, "<=", ms_limit, "ms")
        }
        InvariantId::RecoveryTime => {
            let value = stats.recovery_ms();
            m(value.map_or_else(String::new, |ms| ms.to_string()), "<=", ms_limit, "ms")
        }
        InvariantId::RollbackFastPath | InvariantId::RollbackFreshness | InvariantId::RollbackSafety => {
            rollback_measure(id, stats, threshold)
        }
    }
}

/// The measure of `determinism`. Both halves are judged against the same limit, so the
/// binding one (the lower share) is the measure: it passes exactly when both do.
fn determinism_measure(replays: Option<&Replays>, limit: String) -> Measure {
    let m = |value: String, unit: &'static str| Measure { value, rule: ">=", limit, unit };
    let halves = replays.map_or((None, None), |r| (r.replay_share(), r.live.map(|l| (l.agreed, l.tasks))));
    let live_unit = "share of live decisions the simulator replays alike";
    match halves {
        (Some((same, runs)), Some((agreed, tasks)))
            if u128::from(agreed) * u128::from(runs) < u128::from(same) * u128::from(tasks) =>
        {
            m(share(agreed, tasks), live_unit)
        }
        (Some((same, runs)), _) => m(share(same, runs), "share of replays"),
        (None, Some((agreed, tasks))) => m(share(agreed, tasks), live_unit),
        (None, None) => m(String::new(), "share of replays"),
    }
}

/// The histogram a p99 invariant judges: a path's latency, or the fast path's time to
/// first token.
fn p99_histogram(stats: &Stats, id: InvariantId) -> &Histogram<u64> {
    match id {
        InvariantId::DeepLatencyP99 => &stats.latency_ms[Path::Deep],
        InvariantId::TtftP99 => &stats.ttft_ms[Path::Fast],
        _ => &stats.latency_ms[Path::Fast],
    }
}

/// The measure of a rollback criterion: its longest stretch in breach against the stretch
/// allowed, or its worst window's failed share against the threshold.
fn rollback_measure(id: InvariantId, stats: &Stats, threshold: f64) -> Measure {
    let m = |value: String, limit: String, unit: &'static str| Measure { value, rule: "<=", limit, unit };
    let stretch = match id {
        InvariantId::RollbackFastPath => fast_path_stretch(stats, threshold),
        InvariantId::RollbackFreshness => freshness_stretch(stats, threshold),
        _ => {
            let value = worst_failure_window(stats).map_or_else(String::new, |w| share(w.failed, w.answered));
            return m(value, format!("{threshold:.6}"), "share of tasks failed in the worst 10-minute window");
        }
    };
    let unit = if id == InvariantId::RollbackFastPath {
        "ms in a row with a minute's fast-path ratio below the threshold"
    } else {
        "ms in a row with a minute serving an entry older than the threshold"
    };
    let value = stretch.map_or_else(String::new, |s| s.longest_ms.to_string());
    m(value, id.sustain_ms().unwrap_or(0).to_string(), unit)
}

/// The longest stretch of minutes in breach of a rollback criterion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stretch {
    /// From the start of its first minute to the end of its last; 0 when no minute was in
    /// breach.
    pub longest_ms: u64,
    /// Its first minute (of simulated time).
    pub from_minute: u64,
    /// Minutes judged (those with something to judge).
    pub judged: u64,
}

/// The longest run of minutes for which `breach` says true. A minute it cannot judge
/// (`None`: nothing of the kind happened in it) neither ends a stretch nor starts one; a
/// judged minute not in breach ends it. `None` when no minute was judged.
fn longest_stretch(stats: &Stats, breach: impl Fn(&Minute) -> Option<bool>) -> Option<Stretch> {
    let mut best = Stretch { longest_ms: 0, from_minute: 0, judged: 0 };
    let mut open: Option<(u64, u64)> = None;
    let close = |open: &mut Option<(u64, u64)>, best: &mut Stretch| {
        if let Some((first, last)) = open.take() {
            let length = (last - first + 1) * MINUTE_MS;
            if length > best.longest_ms {
                best.longest_ms = length;
                best.from_minute = first;
            }
        }
    };
    for (minute, m) in &stats.minutes {
        match breach(m) {
            None => {}
            Some(true) => {
                best.judged += 1;
                open = Some(open.map_or((*minute, *minute), |(first, _)| (first, *minute)));
            }
            Some(false) => {
                best.judged += 1;
                close(&mut open, &mut best);
            }
        }
    }
    close(&mut open, &mut best);
    (best.judged > 0).then_some(best)
}

/// Minutes whose fast-path ratio (fast completions over completed and failed tasks) was
/// below `level`.
pub fn fast_path_stretch(stats: &Stats, level: f64) -> Option<Stretch> {
    longest_stretch(stats, |m| {
        let answered = m.completed + m.failed;
        (answered > 0).then_some((m.fast as f64) < level * answered as f64)
    })
}

/// Minutes that served a cache entry older than `level_ms`.
pub fn freshness_stretch(stats: &Stats, level_ms: f64) -> Option<Stretch> {
    longest_stretch(stats, |m| m.max_age_ms.map(|age| age as f64 > level_ms))
}

/// The window of `rollback_safety` with the highest share of failed tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureWindow {
    pub failed: u64,
    /// Completed and failed tasks in it.
    pub answered: u64,
    /// Its first minute.
    pub from_minute: u64,
}

/// The worst window of `rollback_safety`'s length (sliding by a minute over the run; the
/// whole run when it is shorter); `None` when no task completed or failed.
pub fn worst_failure_window(stats: &Stats) -> Option<FailureWindow> {
    let width = InvariantId::RollbackSafety.sustain_ms().unwrap_or(MINUTE_MS) / MINUTE_MS;
    let first = *stats.minutes.keys().next()?;
    let last = *stats.minutes.keys().next_back()?;
    let span = last - first + 1;
    let dense: Vec<(u64, u64)> = (first..=last)
        .map(|minute| stats.minutes.get(&minute).map_or((0, 0), |m| (m.failed, m.completed + m.failed)))
        .collect();
    let width = width.min(span) as usize;
    let mut worst: Option<FailureWindow> = None;
    let (mut failed, mut answered) = (0u64, 0u64);
    for (i, (f, a)) in dense.iter().enumerate() {
        failed += f;
        answered += a;
        if i >= width {
            failed -= dense[i - width].0;
            answered -= dense[i - width].1;
        }
        if i + 1 >= width && answered > 0 {
            let window = FailureWindow { failed, answered, from_minute: first + (i + 1 - width) as u64 };
            // Shares compared exactly: failed / answered > worst.failed / worst.answered.
            let higher = worst.is_none_or(|w| {
                u128::from(failed) * u128::from(w.answered) > u128::from(w.failed) * u128::from(answered)
            });
            if higher {
                worst = Some(window);
            }
        }
    }
    worst
}

/// Digests of the determinism replays: the reference root and each replay's root, and
/// the live half when a capture of the live engine was replayed too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replays {
    /// Root of the first run.
    pub reference: [u8; 32],
    /// Roots of the other runs of the same seed.
    pub replays: Vec<[u8; 32]>,
    /// A live capture replayed in the simulator (`certify --capture`).
    pub live: Option<LiveAgreement>,
}

impl Replays {
    /// Replays with the reference root, and replays; `None` with no replay.
    pub fn replay_share(&self) -> Option<(u64, u64)> {
        let matching = self.replays.iter().filter(|d| **d == self.reference).count() as u64;
        (!self.replays.is_empty()).then_some((matching, self.replays.len() as u64))
    }
}

/// The live half of `determinism` (docs/certification.md 8.1): of the captured tasks, how many the
/// simulator decided as the live engine did (the same path, or the same rejection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveAgreement {
    pub tasks: u64,
    pub agreed: u64,
}

fn upper(observed: f64, threshold: f64, warn: f64) -> Verdict {
    if observed <= threshold {
        Verdict::Pass
    } else if observed <= threshold + warn {
        Verdict::Warn
    } else {
        Verdict::Fail
    }
}

fn lower(observed: f64, threshold: f64, warn: f64) -> Verdict {
    if observed >= threshold {
        Verdict::Pass
    } else if observed >= threshold - warn {
        Verdict::Warn
    } else {
        Verdict::Fail
    }
}

fn ppm_text(ppm: i64) -> String {
    format!("{:.6}", ppm as f64 / 1e6)
}

/// What every check reads: the run's totals, its `run_start`, the policy, the replays.
#[derive(Clone, Copy)]
struct Run<'a> {
    stats: &'a Stats,
    start: &'a RunStart,
    policy: &'a Policy,
    replays: Option<&'a Replays>,
}

impl Run<'_> {
    fn rule(&self, id: InvariantId) -> &InvariantPolicy {
        self.policy.invariants.get(&id).expect("a resolved policy has every invariant")
    }
}

/// A check's finding, before its measure is attached.
struct Judged {
    verdict: Verdict,
    observed: String,
    threshold: String,
    detail: String,
}

fn judged(
    verdict: Verdict,
    observed: impl Into<String>,
    threshold: impl Into<String>,
    detail: impl Into<String>,
) -> Judged {
    Judged { verdict, observed: observed.into(), threshold: threshold.into(), detail: detail.into() }
}

fn pass_if(ok: bool) -> Verdict {
    if ok {
        Verdict::Pass
    } else {
        Verdict::Fail
    }
}

/// Evaluates every invariant of the policy, in the order of `InvariantId::ALL`.
pub fn evaluate(stats: &Stats, policy: &Policy, replays: Option<&Replays>) -> Vec<InvariantResult> {
    let Some(start) = &stats.run_start else {
        let id = InvariantId::NoLostTasks;
        return vec![InvariantResult {
            id,
            critical: id.critical(),
            verdict: Verdict::Fail,
            observed: "no run_start event".into(),
            threshold: "a complete event log".into(),
            detail: String::new(),
            measure: Measure::default(),
        }];
    };
    let run = Run { stats, start, policy, replays };
    InvariantId::ALL
        .into_iter()
        .map(|id| {
            let j = match id {
                InvariantId::FastPathRatio => fast_path_ratio(&run),
                InvariantId::LipschitzBound => lipschitz_bound(&run),
                InvariantId::CostCeiling => cost_ceiling(&run),
                InvariantId::DailyBudget => daily_budget(&run),
                InvariantId::RateLimits => rate_limits(&run),
                InvariantId::Determinism => determinism(&run),
                InvariantId::NoLostTasks => no_lost_tasks(&run),
                InvariantId::LedgerIntegrity => ledger_integrity(&run),
                InvariantId::FastLatencyP99 | InvariantId::DeepLatencyP99 | InvariantId::TtftP99 => p99(&run, id),
                InvariantId::FastSuccessRate => success_rate(&run, id, Path::Fast),
                InvariantId::DeepSuccessRate => success_rate(&run, id, Path::Deep),
                InvariantId::MemoryFreshness => memory_freshness(&run),
                InvariantId::RecoveryTime => recovery_time(&run),
                InvariantId::RollbackFastPath => rollback_fast_path(&run),
                InvariantId::RollbackFreshness => rollback_freshness(&run),
                InvariantId::RollbackSafety => rollback_safety(&run),
            };
            let measure = measure(id, &run, j.verdict == Verdict::Pass);
            InvariantResult {
                id,
                critical: id.critical(),
                verdict: j.verdict,
                observed: j.observed,
                threshold: j.threshold,
                detail: j.detail,
                measure,
            }
        })
        .collect()
}

fn fast_path_ratio(run: &Run<'_>) -> Judged {
    let (stats, rule) = (run.stats, run.rule(InvariantId::FastPathRatio));
    let threshold = format!(">= {:.2}", rule.threshold);
    match stats.fast_ratio() {
        Some(ratio) => judged(
            lower(ratio, rule.threshold, 0.0),
            format!("{ratio:.4}"),
            threshold,
            stats.worst_window_fast_ppm.map_or("fewer tasks than one window".into(), |w| {
                format!("worst window of {} tasks: {}", run.policy.window, ppm_text(w))
            }),
        ),
        None => judged(Verdict::Skipped, "no admitted task", threshold, ""),
    }
}

fn lipschitz_bound(run: &Run<'_>) -> Judged {
    let (stats, rule) = (run.stats, run.rule(InvariantId::LipschitzBound));
    let (verdict, observed) = match stats.l_tot_max_ppm {
        None => (Verdict::Fail, "no L_tot reported".to_string()),
        Some(max) => (pass_if((max as f64) < rule.threshold * 1e6 && stats.contraction_failures == 0), ppm_text(max)),
    };
    judged(
        verdict,
        observed,
        format!("< {:.2}", rule.threshold),
        format!(
            "{} sweeps checked, {} contraction failures, {} masks",
            stats.sweeps, stats.contraction_failures, stats.masks
        ),
    )
}

fn cost_ceiling(run: &Run<'_>) -> Judged {
    let (stats, ceiling) = (run.stats, run.start.ceiling_micro_usd);
    judged(
        pass_if(stats.max_cost_micro_usd <= ceiling),
        format!("{} micro-USD", stats.max_cost_micro_usd),
        format!("<= {ceiling} micro-USD per task"),
        format!("{} overruns clamped", stats.overruns_clamped),
    )
}

fn daily_budget(run: &Run<'_>) -> Judged {
    let budget = run.start.daily_budget_micro_usd;
    let (worst_day, worst_spend) = run
        .stats
        .days
        .iter()
        .map(|(day, d)| (*day, d.spend_micro_usd))
        .max_by_key(|(_, spend)| *spend)
        .unwrap_or((0, 0));
    judged(
        pass_if(worst_spend <= budget),
        format!("{worst_spend} micro-USD"),
        format!("<= {budget} micro-USD per day"),
        format!("highest day: {worst_day} (days since 1970-01-01 UTC)"),
    )
}

fn rate_limits(run: &Run<'_>) -> Judged {
    let mut worst = (0.0, String::from("no limited kind"));
    let mut over = 0;
    for (day, kind, count) in
        run.stats.days.iter().flat_map(|(day, d)| d.admitted_per_kind.iter().map(move |(k, n)| (day, k, n)))
    {
        if let Some(limit) = run.start.rate_limits.get(kind) {
            let share = *count as f64 / f64::from((*limit).max(1));
            if share > worst.0 || worst.0 == 0.0 {
                worst = (share, format!("{kind} {count}/{limit} on day {day}"));
            }
            over += u64::from(*count > u64::from(*limit));
        }
    }
    judged(pass_if(over == 0), worst.1, "<= daily limit per kind", format!("{over} kind-days over"))
}

/// The simulator's half (every replay of the seed gives the reference root) and, with a
/// live capture, the live half (the share of captured tasks the simulator decides alike);
/// each must reach the threshold.
fn determinism(run: &Run<'_>) -> Judged {
    let rule = run.rule(InvariantId::Determinism);
    let threshold = format!(">= {:.2}", rule.threshold);
    let Some(r) = run.replays else {
        return judged(Verdict::Skipped, "no replay", threshold, "run with --replays 2 or more");
    };
    let mut verdict = None;
    let mut observed = Vec::new();
    let mut detail = Vec::new();
    if let Some((matching, n)) = r.replay_share() {
        verdict = Some(lower(matching as f64 / n as f64, rule.threshold, 0.0));
        observed.push(format!("{matching}/{n} replays"));
        detail.push(format!("reference root {}", hex::encode(&r.reference[..8])));
    }
    if let Some(live) = r.live {
        let share = live.agreed as f64 / live.tasks.max(1) as f64;
        let half = if live.tasks == 0 { Verdict::Fail } else { lower(share, rule.threshold, 0.0) };
        verdict = Some(verdict.map_or(half, |v: Verdict| v.max(half)));
        observed.push(format!("live {}/{} decisions", live.agreed, live.tasks));
        detail.push(format!(
            "live capture: {:.2} % of {} tasks decided alike, {} disagreements",
            100.0 * share,
            live.tasks,
            live.tasks - live.agreed
        ));
    }
    match verdict {
        Some(verdict) => judged(verdict, observed.join(", "), threshold, detail.join("; ")),
        None => judged(Verdict::Skipped, "no replay", threshold, "run with --replays 2 or more"),
    }
}

fn no_lost_tasks(run: &Run<'_>) -> Judged {
    let stats = run.stats;
    let lost = stats.lost();
    let problems = lost + stats.duplicate_outcomes + stats.orphan_outcomes;
    judged(
        pass_if(problems == 0 && stats.arrivals > 0),
        format!("{lost} lost"),
        "every arrival has exactly one outcome",
        format!(
            "{} arrivals, {} duplicate outcomes, {} outcomes without arrival",
            stats.arrivals, stats.duplicate_outcomes, stats.orphan_outcomes
        ),
    )
}

/// The chain and every cycle signature verify, the key is the seed's, every signed head
/// is the head the outcome events give, and no reported receipt is missing.
fn ledger_integrity(run: &Run<'_>) -> Judged {
    let stats = run.stats;
    let problem = match &stats.ledger_check {
        _ if stats.ledger_halts > 0 => Some(format!(
            "coordinator halted {} time(s) on its ledger (verification failed, or writes kept failing)",
            stats.ledger_halts
        )),
        None => Some("the ledger was not checked".to_string()),
        // Never a pass without reading the ledger.
        Some(check) if !check.checked => Some("the ledger was not read".to_string()),
        Some(check) if !check.ok => Some(check.error.clone().unwrap_or_default()),
        Some(check) if check.cycles != stats.ledger_cycles.len() as u64 => {
            Some(format!("{} cycles verified, {} listed in the event log", check.cycles, stats.ledger_cycles.len()))
        }
        Some(check) if check.public_key != stats.ledger_public_key() => {
            Some(format!("the ledger was signed by {}, not by the key of the run's seed", check.public_key))
        }
        Some(check) => match stats.chain_bound() {
            Err(problem) => Some(problem),
            Ok(()) if check.receipts < stats.receipts_reported => Some(format!(
                "{} receipts reported committed, {} in the ledger",
                stats.receipts_reported, check.receipts
            )),
            Ok(()) => None,
        },
    };
    let threshold = "chain and every cycle signature verify";
    match (problem, &stats.ledger_check) {
        (Some(problem), _) => judged(Verdict::Fail, "broken", threshold, problem),
        (None, Some(check)) => judged(
            Verdict::Pass,
            "verified",
            threshold,
            format!("{} receipts, {} cycles signed, {} unsigned", check.receipts, check.cycles, check.unsigned),
        ),
        (None, None) => unreachable!("no ledger check is a problem"),
    }
}

/// A p99 in ms against the rule of `id` (`fast_latency_p99`, `deep_latency_p99`, and
/// `ttft_p99`, seed 002's "5th golden signal").
fn p99(run: &Run<'_>, id: InvariantId) -> Judged {
    let histogram = p99_histogram(run.stats, id);
    let rule = run.rule(id);
    let threshold = format!("<= {} ms", rule.threshold);
    if histogram.is_empty() {
        return judged(Verdict::Skipped, "no completed task", threshold, "");
    }
    let p99 = histogram.value_at_quantile(0.99);
    judged(
        upper(p99 as f64, rule.threshold, rule.warn),
        format!("{p99} ms"),
        threshold,
        format!("{} tasks", histogram.len()),
    )
}

fn success_rate(run: &Run<'_>, id: InvariantId, path: Path) -> Judged {
    let (stats, rule) = (run.stats, run.rule(id));
    let threshold = format!(">= {:.2}", rule.threshold);
    let total = stats.completed[path] + stats.failed[path];
    if total == 0 {
        return judged(Verdict::Skipped, "no admitted task", threshold, "");
    }
    let rate = stats.completed[path] as f64 / total as f64;
    judged(
        lower(rate, rule.threshold, rule.warn),
        format!("{rate:.4}"),
        threshold,
        format!("{} failed of {total}", stats.failed[path]),
    )
}

fn memory_freshness(run: &Run<'_>) -> Judged {
    let (stats, rule) = (run.stats, run.rule(InvariantId::MemoryFreshness));
    judged(
        if stats.cache_hits == 0 {
            Verdict::Skipped
        } else {
            upper(stats.max_cache_age_ms as f64, rule.threshold, rule.warn)
        },
        format!("{} ms", stats.max_cache_age_ms),
        format!("max served age <= {} ms", rule.threshold),
        format!("{} cache hits", stats.cache_hits),
    )
}

fn recovery_time(run: &Run<'_>) -> Judged {
    let (stats, rule) = (run.stats, run.rule(InvariantId::RecoveryTime));
    let threshold = format!("<= {} ms", rule.threshold);
    match (stats.faults, stats.last_fault_end_ms, stats.recovery_ms()) {
        (0, _, _) => judged(Verdict::Skipped, "no fault", threshold, ""),
        (_, None, _) => judged(Verdict::Fail, "a fault never ended", threshold, "liveness failure"),
        (_, Some(at), None) => {
            let why = if stats.not_restored() {
                "fast-path ratio still below target at the end"
            } else {
                "tasks open at the fault's end never answered"
            };
            judged(
                Verdict::Fail,
                "not recovered",
                threshold,
                format!("liveness failure: last fault ended at {at} ms; {why}"),
            )
        }
        (_, Some(at), Some(ms)) => judged(
            upper(ms as f64, rule.threshold, rule.warn),
            format!("{ms} ms"),
            threshold,
            format!("last fault ended at {at} ms"),
        ),
    }
}

fn rollback_fast_path(run: &Run<'_>) -> Judged {
    let id = InvariantId::RollbackFastPath;
    let level = run.rule(id).threshold;
    sustained(id, fast_path_stretch(run.stats, level), format!("below {level:.2}"), "no task completed or failed")
}

fn rollback_freshness(run: &Run<'_>) -> Judged {
    let id = InvariantId::RollbackFreshness;
    let level = run.rule(id).threshold;
    sustained(id, freshness_stretch(run.stats, level), format!("serving entries over {level} ms old"), "no cache hit")
}

/// The verdict of a sustained-stretch criterion: fail when its longest stretch in breach
/// lasted longer than the criterion allows.
fn sustained(id: InvariantId, stretch: Option<Stretch>, breach: String, nothing: &str) -> Judged {
    let allowed = id.sustain_ms().unwrap_or(0);
    let threshold = format!("<= {} min in a row {breach}", allowed / MINUTE_MS);
    let Some(stretch) = stretch else {
        return judged(Verdict::Skipped, nothing, threshold, "");
    };
    let detail = format!("{} minutes judged", stretch.judged);
    if stretch.longest_ms == 0 {
        return judged(Verdict::Pass, format!("never {breach}"), threshold, detail);
    }
    judged(
        pass_if(stretch.longest_ms <= allowed),
        format!("{} min {breach}", stretch.longest_ms / MINUTE_MS),
        threshold,
        format!("longest stretch from minute {}; {detail}", stretch.from_minute),
    )
}

fn rollback_safety(run: &Run<'_>) -> Judged {
    let rule = run.rule(InvariantId::RollbackSafety);
    let minutes = InvariantId::RollbackSafety.sustain_ms().unwrap_or(0) / MINUTE_MS;
    let threshold = format!("<= {:.2} % failed per {minutes} min", 100.0 * rule.threshold);
    let Some(w) = worst_failure_window(run.stats) else {
        return judged(Verdict::Skipped, "no task completed or failed", threshold, "");
    };
    let share = w.failed as f64 / w.answered as f64;
    judged(
        pass_if(share <= rule.threshold),
        format!("{:.2} % failed", 100.0 * share),
        threshold,
        format!("worst window from minute {}: {} failed of {}", w.from_minute, w.failed, w.answered),
    )
}

#[cfg(test)]
mod tests {
    //! Each checker, fed synthetic events, passes on good input and fails on bad: unit-level
    //! canaries beside the scenario canaries of the critical invariants.

    use super::*;
    use crate::event::{Arrival, FaultEnd, FaultRecord, RunStart};
    use seedcore_engine::probe::{ContractionSignal, LTotSignal, OutcomeSignal};

    fn policy() -> Policy {
        let invariants = InvariantId::ALL
            .into_iter()
            .map(|id| {
                let d = id.defaults();
                (id, InvariantPolicy { threshold: d.threshold, warn: d.warn, weight: d.weight })
            })
            .collect();
        Policy { window: 10, invariants }
    }

    fn start() -> Body {
        Body::Harness(Harness::RunStart(RunStart {
            ceiling_micro_usd: 50_000,
            daily_budget_micro_usd: 1_000_000,
            duration_ms: 1_000,
            engine_version: "test".into(),
            fast_target_ppm: 900_000,
            rate_limits: [("summary".to_string(), 2)].into_iter().collect(),
            scenario: "t".into(),
            scenario_sha256: String::new(),
            seed: "1".into(),
            tasks: 0,
        }))
    }

    fn arrival(task_id: u64, kind: &str) -> Body {
        Body::Harness(Harness::Arrival(Arrival {
            authority: seedcore_engine::Authority::High,
            domain: "guest".into(),
            drift_ppm: 0,
            kind: seedcore_engine::Kind::parse(kind).expect("a kind"),
            needs_planning: false,
            priority: 0,
            signature: "00".into(),
            task_id,
            tokens_in: 1,
            tokens_out: 1,
        }))
    }

    fn outcome(task_id: u64, kind: &str, path: &str, status: &str, latency_ms: u64, cost: u64) -> Body {
        Body::Engine(Signal::Outcome(OutcomeSignal {
            arrived_ms: task_id,
            attempts: 1,
            cache_age_ms: None,
            cache_hit: false,
            cache_tier: None,
            cost_micro_usd: cost,
            day: 0,
            error: (status == "failed").then(|| "timeout".into()),
            kind: seedcore_engine::Kind::parse(kind).expect("a kind"),
            latency_ms,
            ledger_seq: Some(task_id),
            overrun_clamped: false,
            path: seedcore_engine::Path::parse(path),
            reason: None,
            status: Status::ALL.into_iter().find(|s| s.as_str() == status).expect("a status"),
            task_id,
            tokens_in: 1,
            tokens_out: 1,
            truncated: false,
            ttft_ms: (status == "completed").then_some(latency_ms / 2),
            worker: None,
        }))
    }

    fn fault(id: u64) -> Body {
        Body::Harness(Harness::Fault(FaultRecord {
            at_ms: 0,
            fault: "crash".into(),
            for_ms: Some(1_000),
            id,
            magnitude: String::new(),
            node: "fast-1".into(),
        }))
    }

    fn fault_end(id: u64) -> Body {
        Body::Harness(Harness::FaultEnd(FaultEnd { fault: "crash".into(), id, node: "fast-1".into() }))
    }

    fn l_tot(ppm: i64) -> Body {
        Body::Engine(Signal::LTot(LTotSignal {
            a_inf_ppm: 0,
            cause: seedcore_engine::probe::OrganismCause::Init,
            l_tot_ppm: ppm,
            w2_bound_ppm: 0,
            w2_estimate_ppm: 0,
        }))
    }

    fn ledger_ok(receipts: u64) -> Body {
        Body::Harness(Harness::LedgerCheck(LedgerCheck {
            checked: true,
            cycles: 0,
            error: None,
            ok: true,
            public_key: hex::encode(simulation_ledger_key(1).as_bytes()),
            receipts,
            torn_bytes: 0,
            unsigned: 0,
        }))
    }

    /// What the harness lists at the end of a healthy run with seed 1: one cycle signing
    /// the chain of every outcome so far, and the check.
    fn signed_ledger(events: &[Body]) -> [Body; 2] {
        use ed25519_dalek::Signer;
        use seedcore_engine::ledger::{cycle_message, Receipt, GENESIS};
        let key = ed25519_dalek::SigningKey::from_bytes(&seedcore_engine::config::simulation_key_seed(1));
        let (mut head, mut receipts) = (None::<[u8; 32]>, 0);
        for e in events {
            if let Body::Engine(Signal::Outcome(o)) = e {
                let mut r = Receipt::of_outcome(o);
                r.seq = o.ledger_seq.expect("the test's outcomes have receipts");
                r.prev_hash = head.map_or_else(|| GENESIS.to_string(), hex::encode);
                head = Some(r.hash());
                receipts += 1;
            }
        }
        let head = head.expect("a receipt");
        let signature = key.sign(&cycle_message(0, 0, receipts - 1, &head));
        let cycle = LedgerCycle {
            cycle: 0,
            first_seq: 0,
            head: hex::encode(head),
            last_seq: receipts - 1,
            signature: hex::encode(signature.to_bytes()),
        };
        let Body::Harness(Harness::LedgerCheck(check)) = ledger_ok(receipts) else { unreachable!() };
        [
            Body::Harness(Harness::LedgerCycle(cycle)),
            Body::Harness(Harness::LedgerCheck(LedgerCheck { cycles: 1, ..check })),
        ]
    }

    /// An edit of a healthy run's events.
    type Tweak = Box<dyn FnOnce(&mut Vec<Body>)>;

    /// A healthy run of `n` fast chats, with `tweak` applied to the events before folding.
    fn verdicts(n: u64, tweak: impl FnOnce(&mut Vec<Body>)) -> BTreeMap<&'static str, Verdict> {
        let mut events = vec![start(), l_tot(700_000)];
        for id in 0..n {
            events.push(arrival(id, "chat"));
            events.push(outcome(id, "chat", "fast", "completed", 80, 500));
        }
        events.extend(signed_ledger(&events));
        tweak(&mut events);
        let mut stats = Stats::new(10);
        for (t, body) in events.iter().enumerate() {
            stats.observe(t as u64, body);
        }
        let replays = Replays { reference: [1; 32], replays: vec![[1; 32]], live: None };
        let results = evaluate(&stats, &policy(), Some(&replays));
        for r in &results {
            check_measure(r, &stats);
        }
        results.into_iter().map(|r| (r.id.as_str(), r.verdict)).collect()
    }

    /// A measure states what its verdict judged: `value rule limit` holds exactly when the
    /// invariant passes (the contraction check is the one part of `lipschitz_bound` that its
    /// value, the certified bound, does not show).
    fn check_measure(r: &InvariantResult, stats: &Stats) {
        let m = &r.measure;
        assert!(!m.unit.is_empty() && !m.rule.is_empty() && !m.limit.is_empty(), "{}: {m:?}", r.id);
        if m.value.is_empty() || r.verdict == Verdict::Skipped {
            return;
        }
        let (value, limit): (f64, f64) = (m.value.parse().unwrap(), m.limit.parse().unwrap());
        let holds = match m.rule {
            ">=" => value >= limit,
            "<=" => value <= limit,
            "<" => value < limit,
            "==" => value == limit,
            other => panic!("unknown rule {other}"),
        };
        if r.id == "lipschitz_bound" && stats.contraction_failures > 0 {
            assert_eq!(r.verdict, Verdict::Fail);
        } else {
            assert_eq!(holds, r.verdict == Verdict::Pass, "{}: {m:?} but {:?}", r.id, r.verdict);
        }
    }

    #[test]
    fn a_healthy_run_passes_every_critical_invariant() {
        let v = verdicts(20, |_| {});
        for id in InvariantId::ALL {
            if id.critical() {
                assert_eq!(v[id.as_str()], Verdict::Pass, "{id}");
            }
        }
        assert_eq!(v["fast_latency_p99"], Verdict::Pass);
        assert_eq!(v["recovery_time"], Verdict::Skipped);
    }

    /// Each invariant beside the run change that must make it fail.
    fn failing_cases() -> Vec<(&'static str, Tweak)> {
        vec![
            (
                "fast_path_ratio",
                Box::new(|e| (100..110).for_each(|id| e.push(outcome(id, "chat", "deep", "completed", 10, 1)))),
            ),
            ("lipschitz_bound", Box::new(|e| e.push(l_tot(1_000_000)))),
            (
                "lipschitz_bound",
                Box::new(|e| {
                    e.push(Body::Engine(Signal::Contraction(ContractionSignal {
                        bound_ppm: 5,
                        ok: true,
                        ratio_ppm: 6,
                        sweep: 1,
                    })))
                }),
            ),
            ("cost_ceiling", Box::new(|e| e.push(outcome(200, "chat", "fast", "completed", 80, 50_001)))),
            ("daily_budget", Box::new(|e| e.push(outcome(201, "chat", "fast", "failed", 80, 990_001)))),
            (
                "rate_limits",
                Box::new(|e| (300..303).for_each(|id| e.push(outcome(id, "summary", "fast", "completed", 80, 1)))),
            ),
            ("no_lost_tasks", Box::new(|e| e.push(arrival(400, "chat")))),
            ("no_lost_tasks", Box::new(|e| e.push(outcome(3, "chat", "fast", "completed", 80, 1)))),
            ("ledger_integrity", Box::new(|e| e.push(ledger_ok(3)))),
            // An outcome edited after the run: the signed head is not the rebuilt chain's.
            (
                "ledger_integrity",
                Box::new(|e| {
                    let Some(Body::Engine(Signal::Outcome(o))) = e.get_mut(3) else { panic!("event 3 is an outcome") };
                    o.latency_ms += 1;
                }),
            ),
            // A ledger signed by a key other than the seed's.
            (
                "ledger_integrity",
                Box::new(|e| {
                    let Some(Body::Harness(Harness::LedgerCheck(c))) = e.last_mut() else {
                        panic!("the check is last")
                    };
                    c.public_key = "00".repeat(32);
                }),
            ),
            (
                "fast_latency_p99",
                Box::new(|e| (500..520).for_each(|id| e.push(outcome(id, "chat", "fast", "completed", 900, 1)))),
            ),
            ("deep_latency_p99", Box::new(|e| e.push(outcome(600, "chat", "deep", "completed", 40_000, 1)))),
            (
                "fast_success_rate",
                Box::new(|e| (700..720).for_each(|id| e.push(outcome(id, "chat", "fast", "failed", 1, 0)))),
            ),
            ("deep_success_rate", Box::new(|e| e.push(outcome(800, "chat", "deep", "failed", 1, 0)))),
            // First tokens at 2 s: past the 800 ms threshold and its 200 ms band.
            (
                "ttft_p99",
                Box::new(|e| (850..870).for_each(|id| e.push(outcome(id, "chat", "fast", "completed", 4_000, 1)))),
            ),
            (
                "recovery_time",
                Box::new(|e| {
                    // The ratio falls during the fault and never comes back.
                    e.push(fault(1));
                    (900..920).for_each(|id| e.push(outcome(id, "chat", "deep", "completed", 10, 1)));
                    e.push(fault_end(1));
                }),
            ),
            // A fault that never ends.
            ("recovery_time", Box::new(|e| e.push(fault(1)))),
            (
                "recovery_time",
                Box::new(|e| {
                    // A task open when the fault ended never gets its outcome.
                    e.push(fault(1));
                    e.push(arrival(950, "chat"));
                    e.push(fault_end(1));
                }),
            ),
        ]
    }

    #[test]
    fn each_checker_can_fail() {
        for (id, tweak) in failing_cases() {
            let v = verdicts(20, tweak);
            assert_eq!(v[id], Verdict::Fail, "{id}: {v:?}");
        }
    }

    /// Judges the rollback criteria of a run whose minutes each hold the outcomes
    /// `minute(m)` gives: `(fast, deep, failed, oldest served age)`.
    fn rollback_verdicts(
        minutes: u64,
        minute: impl Fn(u64) -> (u64, u64, u64, Option<u64>),
    ) -> BTreeMap<&'static str, (Verdict, String)> {
        let mut stats = Stats::new(10);
        stats.observe(0, &start());
        let mut id = 0;
        for m in 0..minutes {
            let (fast, deep, failed, age) = minute(m);
            let t = m * MINUTE_MS + 1_000;
            let mut push = |path: &str, status: &str, age: Option<u64>| {
                id += 1;
                stats.observe(t, &arrival(id, "chat"));
                let mut body = outcome(id, "chat", path, status, 80, 1);
                if let Body::Engine(Signal::Outcome(o)) = &mut body {
                    o.cache_age_ms = age;
                    o.cache_hit = age.is_some();
                }
                stats.observe(t, &body);
            };
            (0..fast).for_each(|i| push("fast", "completed", if i == 0 { age } else { None }));
            (0..deep).for_each(|_| push("deep", "completed", None));
            (0..failed).for_each(|_| push("fast", "failed", None));
        }
        let results = evaluate(&stats, &policy(), None);
        for r in &results {
            check_measure(r, &stats);
        }
        results.into_iter().filter(|r| r.id.is_rollback()).map(|r| (r.id.as_str(), (r.verdict, r.observed))).collect()
    }

    #[test]
    fn rollback_criteria_fail_only_on_a_sustained_breach() {
        // Healthy: 95 % fast, fresh entries, one failure in 1,000 over ten minutes.
        let v = rollback_verdicts(30, |m| (95, 5, u64::from(m % 10 == 0), Some(1_000)));
        assert!(v.values().all(|(verdict, _)| *verdict == Verdict::Pass), "{v:?}");

        // 80 % fast for exactly ten minutes is allowed; for eleven it is a rollback. An
        // empty minute inside the stretch neither ends nor lengthens it.
        let dip = |from: u64, to: u64| {
            move |m: u64| if (from..to).contains(&m) { (80, 20, 0, None) } else { (95, 5, 0, None) }
        };
        assert_eq!(rollback_verdicts(40, dip(5, 15))["rollback_fast_path"].0, Verdict::Pass);
        let v = rollback_verdicts(40, dip(5, 16));
        assert_eq!(v["rollback_fast_path"], (Verdict::Fail, "11 min below 0.85".to_string()));
        let gap = |m: u64| match m {
            5..=9 | 11..=15 => (80, 20, 0, None),
            10 => (0, 0, 0, None),
            _ => (95, 5, 0, None),
        };
        assert_eq!(rollback_verdicts(40, gap)["rollback_fast_path"].0, Verdict::Fail, "5 + 1 empty + 5 minutes");
        let broken = |m: u64| if (5..16).contains(&m) && m != 10 { (80, 20, 0, None) } else { (95, 5, 0, None) };
        assert_eq!(rollback_verdicts(40, broken)["rollback_fast_path"].0, Verdict::Pass, "a good minute ends it");

        // Entries older than 5 s served for five minutes, then for six.
        let stale = |minutes: u64| move |m: u64| (95, 5, 0, Some(if m < minutes { 6_000 } else { 1_000 }));
        assert_eq!(rollback_verdicts(20, stale(5))["rollback_freshness"].0, Verdict::Pass);
        assert_eq!(rollback_verdicts(20, stale(6))["rollback_freshness"].0, Verdict::Fail);
        // No cache hit at all: nothing to judge.
        assert_eq!(rollback_verdicts(20, |_| (95, 5, 0, None))["rollback_freshness"].0, Verdict::Skipped);

        // 1 % failed in every ten minutes passes; 12 failures in one ten-minute window of
        // 1,012 tasks do not, though the whole run's share stays under 1 %.
        assert_eq!(rollback_verdicts(60, |_| (99, 0, 1, None))["rollback_safety"].0, Verdict::Pass);
        let burst = |m: u64| (100, 0, if m == 30 { 12 } else { 0 }, None);
        let v = rollback_verdicts(60, burst);
        assert_eq!(v["rollback_safety"].0, Verdict::Fail, "{v:?}");
        // A run shorter than the window is one window.
        assert_eq!(rollback_verdicts(3, |_| (90, 0, 2, None))["rollback_safety"].0, Verdict::Fail);
    }

    #[test]
    fn recovery_is_measured_from_the_end_of_the_last_fault() {
        let mut stats = Stats::new(10);
        stats.observe(0, &start());
        let mut id = 1;
        let mut fast = |stats: &mut Stats, t: u64, path: &str, n: u64| {
            for _ in 0..n {
                stats.observe(t, &outcome(id, "chat", path, "completed", 10, 1));
                id += 1;
            }
        };
        fast(&mut stats, 100, "fast", 10);
        // Two overlapping faults: recovery counts from the end of the later one.
        stats.observe(1_000, &fault(1));
        stats.observe(2_000, &fault(2));
        stats.observe(3_000, &fault_end(1));
        assert_eq!(stats.last_fault_end_ms, None);
        fast(&mut stats, 3_500, "deep", 5);
        stats.observe(5_000, &fault_end(2));
        assert_eq!(stats.last_fault_end_ms, Some(5_000));
        assert_eq!(stats.recovery_ms(), None, "the ratio is below target when the faults end");
        fast(&mut stats, 8_000, "fast", 34);
        assert_eq!(stats.recovery_ms(), None, "44 of 49 is just below 0.90");
        fast(&mut stats, 9_000, "fast", 1);
        assert_eq!(stats.recovery_ms(), Some(4_000));
        let result = evaluate(&stats, &policy(), None);
        assert_eq!(result.iter().find(|r| r.id == "recovery_time").unwrap().verdict, Verdict::Pass);
    }

    #[test]
    fn memory_freshness_fails_on_a_stale_hit() {
        let v = verdicts(20, |e| {
            if let Some(Body::Engine(Signal::Outcome(o))) =
                e.iter_mut().find(|b| matches!(b, Body::Engine(Signal::Outcome(_))))
            {
                o.cache_hit = true;
                o.cache_age_ms = Some(10_000);
            }
        });
        assert_eq!(v["memory_freshness"], Verdict::Fail);
    }

    #[test]
    fn determinism_fails_on_a_different_replay_and_is_skipped_without_one() {
        let mut stats = Stats::new(10);
        stats.observe(0, &start());
        let different = Replays { reference: [1; 32], replays: vec![[2; 32]], live: None };
        let result = evaluate(&stats, &policy(), Some(&different));
        assert_eq!(result.iter().find(|r| r.id == "determinism").unwrap().verdict, Verdict::Fail);
        let result = evaluate(&stats, &policy(), None);
        assert_eq!(result.iter().find(|r| r.id == "determinism").unwrap().verdict, Verdict::Skipped);
    }

    #[test]
    fn the_live_half_of_determinism_fails_below_the_threshold_even_when_the_replays_agree() {
        let mut stats = Stats::new(10);
        stats.observe(0, &start());
        let judge = |agreed: u64, replay: [u8; 32]| {
            let live = Some(LiveAgreement { tasks: 1_000, agreed });
            let replays = Replays { reference: [1; 32], replays: vec![replay], live };
            let result = evaluate(&stats, &policy(), Some(&replays));
            let determinism = result.into_iter().find(|r| r.id == "determinism").unwrap();
            check_measure(&determinism, &stats);
            determinism
        };
        let passing = judge(950, [1; 32]);
        assert_eq!(passing.verdict, Verdict::Pass, "{passing:?}");
        assert_eq!((passing.measure.value.as_str(), passing.measure.limit.as_str()), ("0.950000", "0.950000"));
        let failing = judge(949, [1; 32]);
        assert_eq!(failing.verdict, Verdict::Fail, "{failing:?}");
        assert_eq!(failing.observed, "1/1 replays, live 949/1000 decisions");
        assert!(failing.measure.unit.contains("live"), "the binding half is the measure: {failing:?}");
        // A perfect live half does not hide a replay that differs.
        let replay_differs = judge(1_000, [2; 32]);
        assert_eq!(replay_differs.verdict, Verdict::Fail);
        assert_eq!(replay_differs.measure.value, "0.000000");
    }
}
