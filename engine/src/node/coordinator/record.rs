//! The ledger writer: recovery at start, one receipt per terminal outcome (written before
//! the outcome is reported), signed cycles, and the last cycle at shutdown
//! (docs/engine.md 4.9).
//!
//! A write that fails is retried with backoff (100 ms, doubling to 2 s), holding the
//! ledger so that receipts keep their order, for at most `GIVE_UP_MS` from the first
//! failure. While it fails, outcomes wait and the in-flight limit turns new tasks away
//! (`overload`); none is lost and none is recorded twice. A ledger that still cannot be
//! written then halts the coordinator, as one that fails verification does: the outcomes
//! waiting for the ledger are reported without a receipt, every later task is rejected
//! `halted`, and a restart verifies the ledger again (ARCHITECTURE.md, "The ledger writer gives up").

use super::{Coordinator, Core};
use crate::governor::Alert;
use crate::ledger::{CycleRecord, LedgerWriter, Receipt};
use crate::memory::Tier;
use crate::node::NodeContext;
use crate::probe::{AlertSignal, LedgerEvent, LedgerSignal, OutcomeSignal, Signal};
use crate::task::{Outcome, RejectReason, Status, Task};
use madsim::time::Instant;
use std::time::Duration;

/// First pause before retrying a ledger write that failed, and the longest.
const APPEND_BACKOFF_MS: u64 = 100;
const APPEND_BACKOFF_MAX_MS: u64 = 2_000;
/// How long a failing ledger write is retried before the coordinator halts.
pub(super) const GIVE_UP_MS: u64 = 10 * 60_000;

/// Extra facts recorded with an outcome.
#[derive(Default)]
pub(super) struct Details {
    pub attempts: u32,
    pub cache_age_ms: Option<u64>,
    pub cache_tier: Option<Tier>,
    pub overrun_clamped: bool,
    pub truncated: bool,
    pub day: u64,
    /// The worker whose attempt succeeded.
    pub worker: Option<String>,
}

/// The pauses between the retries of a failing ledger write: `None` once the next pause
/// would end past `GIVE_UP_MS` after the first failure.
struct Retry {
    next: Duration,
    waited: Duration,
}

impl Retry {
    fn new() -> Retry {
        Retry { next: Duration::from_millis(APPEND_BACKOFF_MS), waited: Duration::ZERO }
    }

    fn pause(&mut self) -> Option<Duration> {
        let pause = self.next;
        if self.waited + pause > Duration::from_millis(GIVE_UP_MS) {
            return None;
        }
        self.waited += pause;
        self.next = (pause * 2).min(Duration::from_millis(APPEND_BACKOFF_MAX_MS));
        Some(pause)
    }
}

/// The outcome a recovered receipt stands for.
fn outcome_of_receipt(receipt: &Receipt) -> Outcome {
    let first_reason = receipt.reasons.first().cloned().unwrap_or_default();
    match (receipt.outcome, receipt.path) {
        (Status::Completed, Some(path)) => Outcome::Completed {
            path,
            latency_ms: receipt.latency_ms,
            // A receipt does not record the first token: the whole answer is what is known.
            ttft_ms: receipt.latency_ms,
            cost_micro_usd: receipt.cost_micro_usd,
            tokens_in: receipt.tokens_in,
            tokens_out: receipt.tokens_out,
            cache_hit: receipt.reasons.iter().any(|r| r == "cache_hit"),
        },
        (Status::Failed, Some(path)) => Outcome::Failed { path, error: first_reason },
        _ => Outcome::Rejected { reason: RejectReason::parse(&first_reason).unwrap_or(RejectReason::Halted) },
    }
}

/// The outcome event of a task: every field of its receipt (`ledger_seq` still unset).
fn outcome_signal(task: &Task, outcome: &Outcome, details: Details, elapsed_ms: u64) -> OutcomeSignal {
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
        ttft_ms: None,
        worker: details.worker,
    };
    match outcome {
        Outcome::Completed { path, latency_ms, ttft_ms, cost_micro_usd, tokens_in, tokens_out, cache_hit } => {
            signal.ttft_ms = Some(*ttft_ms);
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
            signal.latency_ms = elapsed_ms;
            signal.reason = Some(*reason);
        }
        Outcome::Failed { path, error } => {
            signal.error = Some(error.clone());
            signal.latency_ms = elapsed_ms;
            signal.path = Some(*path);
        }
    }
    signal
}

/// Opens the ledger and rebuilds spend, counters and outcomes receipt by receipt; if
/// verification fails part way, the coordinator halts and the partial state only serves
/// rejections.
pub(super) async fn recover(context: &NodeContext, core: &mut Core) -> Option<LedgerWriter> {
    let config = &context.config;
    let mut last_day = None;
    let opened = LedgerWriter::open(&config.ledger, |receipt| {
        core.governor.recover(receipt.task_id, receipt.day, receipt.kind, receipt.admitted(), receipt.cost_micro_usd);
        core.outcomes.insert(receipt.task_id, outcome_of_receipt(receipt));
        core.next_task_id = core.next_task_id.max(receipt.task_id.saturating_add(1));
        last_day = Some(receipt.day);
    })
    .await;
    match opened {
        Ok((mut writer, verified)) => {
            writer.set_conditions(context.conditions.clone());
            writer.set_sync_appends(config.ledger.fsync_every_receipt);
            core.counters.ledger_receipts = verified.receipts;
            core.counters.ledger_cycles = verified.cycles;
            context.emit(Signal::Ledger(LedgerSignal {
                error: None,
                event: LedgerEvent::Recovered,
                head: Some(hex::encode(verified.head)),
                receipts: verified.receipts,
                spent_micro_usd: last_day.map(|day| core.governor.day_state(day).spent_micro_usd),
            }));
            Some(writer)
        }
        Err(error) => {
            // The seeds' deviation rule: signature verification failure halts the engine.
            halt(context, core, "ledger_verification_failed", error.to_string(), 0);
            None
        }
    }
}

/// Halts the coordinator on its ledger: the `halt` event and the alert `alert`.
fn halt(context: &NodeContext, core: &mut Core, alert: &str, message: String, receipts: u64) {
    context.emit(Signal::Ledger(LedgerSignal {
        error: Some(message.clone()),
        event: LedgerEvent::Halt,
        head: None,
        receipts,
        spent_micro_usd: None,
    }));
    context.emit(Signal::Alert(AlertSignal { limit: 0, name: alert.into(), subject: message.clone(), value: 1 }));
    core.halted = Some(message);
}

impl Coordinator {
    pub(super) fn emit_alerts(&self, alerts: Vec<Alert>) {
        for alert in alerts {
            self.emit(Signal::Alert(AlertSignal {
                limit: alert.limit,
                name: alert.name.into(),
                subject: alert.subject,
                value: alert.value,
            }));
        }
    }

    fn emit_cycle(&self, cycle: CycleRecord) {
        self.emit(Signal::Ledger(LedgerSignal {
            error: None,
            event: LedgerEvent::Cycle,
            head: Some(cycle.head),
            receipts: cycle.last_seq + 1,
            spent_micro_usd: None,
        }));
    }

    fn emit_write_failed(&self, error: String, receipts: u64) {
        self.emit(Signal::Ledger(LedgerSignal {
            error: Some(error),
            event: LedgerEvent::WriteFailed,
            head: None,
            receipts,
            spent_micro_usd: None,
        }));
    }

    /// Signs the ledger head every cycle period while receipts are pending.
    pub(super) async fn close_cycles(self: std::sync::Arc<Self>) {
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
                Err(error) => self.emit_write_failed(error.to_string(), writer.receipts()),
            }
        }
    }

    /// At shutdown: signs the last cycle and syncs the ledger, waiting for the ledger (a
    /// write being retried holds it) until `deadline`, and at least a second. Returns the
    /// receipts and whether they are all signed.
    pub(super) async fn sign_last_cycle(&self, deadline: Instant) -> (u64, bool) {
        let wait = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
        let Ok(mut ledger) = madsim::time::timeout(wait, self.ledger.lock()).await else {
            tracing::error!("the ledger was busy until the drain timed out; its last cycle is not signed");
            return (self.lock().counters.ledger_receipts, false);
        };
        let Some(writer) = ledger.as_mut() else { return (0, false) };
        let signed = match writer.close_cycle().await {
            Ok(cycle) => {
                if let Some(cycle) = cycle {
                    self.lock().counters.ledger_cycles += 1;
                    self.emit_cycle(cycle);
                }
                true
            }
            Err(error) => {
                tracing::error!(%error, "the ledger's last cycle could not be signed");
                false
            }
        };
        (writer.receipts(), signed)
    }

    /// Appends a receipt; returns its seq, or `None` when the ledger is halted.
    async fn record(&self, entry: Receipt) -> Option<u64> {
        self.lock().recording += 1;
        let seq = self.record_waiting(entry).await;
        self.lock().recording -= 1;
        seq
    }

    async fn record_waiting(&self, entry: Receipt) -> Option<u64> {
        let mut ledger = self.ledger.lock().await;
        let writer = ledger.as_mut()?;
        let mut retry = Retry::new();
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
                    let receipts = writer.receipts();
                    self.emit_write_failed(error.to_string(), receipts);
                    let Some(pause) = retry.pause() else {
                        let message = format!("ledger writes failed for {} s: {error}", GIVE_UP_MS / 1_000);
                        halt(&self.context, &mut self.lock(), "ledger_write_failed", message, receipts);
                        *ledger = None;
                        return None;
                    };
                    madsim::time::sleep(pause).await;
                }
            }
        }
    }

    /// Commits the outcome to the ledger, remembers it, and reports it. The receipt is
    /// derived from the outcome signal by `Receipt::of_outcome`, the same function a
    /// verifier uses to rebuild the chain from the event log.
    pub(super) async fn finish(&self, task: &Task, outcome: Outcome, details: Details, received: Instant) -> Outcome {
        let elapsed_ms = u64::try_from(received.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut signal = outcome_signal(task, &outcome, details, elapsed_ms);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Authority, Kind, Path};

    #[test]
    fn a_failing_write_is_retried_with_doubling_pauses_until_the_bound() {
        let mut retry = Retry::new();
        let pauses: Vec<u64> = std::iter::from_fn(|| retry.pause()).map(|p| p.as_millis() as u64).collect();
        assert_eq!(&pauses[..6], &[100, 200, 400, 800, 1_600, 2_000]);
        assert!(pauses[6..].iter().all(|p| *p == 2_000), "the pause stops growing at 2 s");
        let total: u64 = pauses.iter().sum();
        assert!(total <= GIVE_UP_MS && total + 2_000 > GIVE_UP_MS, "retried for as long as the bound allows: {total}");
    }

    fn task() -> Task {
        Task {
            task_id: 4,
            at_ms: 900,
            kind: Kind::Query,
            domain: "guest".into(),
            drift: 0.1,
            priority: 1,
            authority: Authority::High,
            needs_planning: false,
            tokens_in: 300,
            tokens_out: 50,
            signature: 11,
        }
    }

    #[test]
    fn a_receipt_recovers_the_outcome_it_records() {
        let outcomes = [
            Outcome::Completed {
                path: Path::Deep,
                latency_ms: 70,
                ttft_ms: 70,
                cost_micro_usd: 31,
                tokens_in: 300,
                tokens_out: 40,
                cache_hit: false,
            },
            Outcome::Failed { path: Path::Fast, error: "backend error".into() },
            Outcome::Rejected { reason: RejectReason::DailyBudget },
        ];
        for outcome in outcomes {
            let signal = outcome_signal(&task(), &outcome, Details { attempts: 1, ..Details::default() }, 5);
            assert_eq!(outcome_of_receipt(&Receipt::of_outcome(&signal)), outcome);
        }
    }

    #[test]
    fn a_cache_hit_is_recovered_as_one() {
        let outcome = Outcome::Completed {
            path: Path::Fast,
            latency_ms: 6,
            ttft_ms: 6,
            cost_micro_usd: 0,
            tokens_in: 300,
            tokens_out: 40,
            cache_hit: true,
        };
        let details = Details { cache_age_ms: Some(300), cache_tier: Some(Tier::Mw), ..Details::default() };
        let signal = outcome_signal(&task(), &outcome, details, 6);
        assert_eq!(signal.cache_tier, Some(Tier::Mw));
        assert_eq!(outcome_of_receipt(&Receipt::of_outcome(&signal)), outcome);
    }
}
