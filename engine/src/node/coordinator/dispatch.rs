//! Dispatch: an admitted task's cache lookup at the state node, its backend attempts with
//! timeouts, backoff and bounded retries, its charge, and the completions that go to the
//! state node in batches (docs/engine.md 4.3, 4.8).

use super::admission::Admitted;
use super::record::Details;
use super::Coordinator;
use crate::config::DispatchConfig;
use crate::memory::Tier;
use crate::organism::{features, FEATURES};
use crate::probe::{AttemptSignal, Signal};
use crate::router::Reason;
use crate::rpc::{Complete, CompleteBatch, Execute, Executed, Found, Lookup};
use crate::task::{Outcome, Path, Task};
use madsim::time::Instant;
use std::time::Duration;

/// Smoothing of the rolling Mw hit rate (about the last 1,000 lookups).
const HIT_RATE_SMOOTHING: f64 = 1.0 / 1000.0;
/// The most completions in one call to the state node (`send_completions`).
const MAX_BATCH: usize = 256;

/// The pause before attempt `attempt` (0: the first, no pause): `backoff * 2^(attempt-1)`.
fn backoff(dispatch: &DispatchConfig, attempt: u32) -> Option<Duration> {
    (attempt > 0).then(|| Duration::from_millis(dispatch.backoff_ms << (attempt - 1).min(16)))
}

/// What an attempt gave: the tokens generated and the time the backend spent decoding them
/// (after its first token), or why it failed (the worker's error, a timeout, or the
/// transport's error).
fn attempt_result(answer: std::io::Result<Executed>, timeout: Duration) -> Result<(u32, u64), String> {
    match answer {
        Ok(Executed { result, latency_ms, ttft_ms }) => {
            result.map(|tokens| (tokens, latency_ms.saturating_sub(ttft_ms)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(format!("timeout after {} ms", timeout.as_millis())),
        Err(e) => Err(e.to_string()),
    }
}

impl Coordinator {
    fn scenario_now_ms(task: &Task, received: Instant) -> u64 {
        task.at_ms + received.elapsed().as_millis() as u64
    }

    /// Cache lookup, dispatch with retries, charge, organism update.
    pub(super) async fn execute(&self, task: &Task, admitted: Admitted, received: Instant) -> Outcome {
        let config = &self.context.config;
        let Admitted { plan, reason, day, .. } = admitted;
        let path = plan.path;
        let mut details = Details { day, truncated: plan.truncated_tokens > 0, ..Details::default() };
        let salient = reason == Reason::Breach;
        let task_features =
            features(task.kind, task.drift, task.priority, plan.tokens_in, task.tokens_out, task.signature);
        debug_assert!(reason != Reason::Surprise || path == Path::Deep);

        if let Some(found) = self.look_up(task, path, received).await {
            let charge =
                self.lock().governor.settle_fixed(task.task_id, 0).expect("an in-progress task is not yet charged");
            self.update_state(task, &task_features, found.tokens_out, (false, salient), received);
            details.cache_age_ms = Some(found.age_ms);
            details.cache_tier = Some(found.tier);
            let latency_ms = received.elapsed().as_millis() as u64;
            let outcome = Outcome::Completed {
                path,
                latency_ms,
                // A cached answer comes whole.
                ttft_ms: latency_ms,
                cost_micro_usd: charge.cost_micro_usd,
                tokens_in: plan.tokens_in,
                tokens_out: found.tokens_out,
                cache_hit: true,
            };
            self.lock().in_flight[path] -= 1;
            return self.finish(task, outcome, details, received).await;
        }

        let outcome = match self.attempts(task, path, (plan.tokens_in, plan.max_tokens_out), &mut details).await {
            Ok((tokens_out, decode_ms)) => {
                let charge = self
                    .lock()
                    .governor
                    .settle(task.task_id, path, plan.tokens_in, tokens_out, plan.max_tokens_out)
                    .expect("an in-progress task is not yet charged");
                details.overrun_clamped = charge.overrun_clamped;
                self.emit_alerts(charge.alerts);
                let cacheable = config.memory.caches(task.kind);
                self.update_state(task, &task_features, charge.tokens_out, (cacheable, salient), received);
                let latency_ms = received.elapsed().as_millis() as u64;
                Outcome::Completed {
                    path,
                    latency_ms,
                    // The first token reached the coordinator when the last did, less the
                    // backend's decoding.
                    ttft_ms: latency_ms.saturating_sub(decode_ms),
                    cost_micro_usd: charge.cost_micro_usd,
                    tokens_in: plan.tokens_in,
                    tokens_out: charge.tokens_out,
                    cache_hit: false,
                }
            }
            Err(error) => {
                self.lock().governor.release(task.task_id);
                Outcome::Failed { path, error }
            }
        };
        self.lock().in_flight[path] -= 1;
        self.finish(task, outcome, details, received).await
    }

    /// The memory fabric's answer for a fast task whose kind is served from memory, when
    /// an entry may be held; the completions waiting go with the lookup.
    async fn look_up(&self, task: &Task, path: Path, received: Instant) -> Option<Found> {
        let config = &self.context.config;
        let ttl_ms = config.memory.served_limit_ms(task.kind);
        if path != Path::Fast || ttl_ms == 0 {
            return None;
        }
        let now_ms = Self::scenario_now_ms(task, received);
        let may_hit = self.lock().stored.may_hit(task.signature, ttl_ms, now_ms);
        let found = if may_hit {
            let pending = std::mem::take(&mut self.lock().outbox);
            let lookup = Lookup { signature: task.signature, kind: task.kind, now_ms, pending };
            let state_timeout = Duration::from_millis(config.dispatch.state_timeout_ms);
            let looked = self.peers.call(&self.context.addresses.state, lookup, state_timeout).await.ok();
            if let Some(completed) = looked.and_then(|l| l.completed) {
                self.lock().state_change = completed.state_change;
            }
            looked.and_then(|l| l.found)
        } else {
            None
        };
        let mut core = self.lock();
        let hit = if found.is_some_and(|f| f.tier == Tier::Mw) { 1.0 } else { 0.0 };
        core.hit_rate += HIT_RATE_SMOOTHING * (hit - core.hit_rate);
        if let Some(found) = found {
            // Every hit found here is served (`execute`); the time is the coordinator's own,
            // read under the lock that orders it with the status's reading.
            core.counters.tier_hits[found.tier.index()] += 1;
            core.served_ages.record(self.uptime_ms(), found.age_ms);
        }
        found
    }

    /// The backend attempts: the tokens generated and the successful call's decode time, or
    /// the last attempt's error.
    async fn attempts(
        &self,
        task: &Task,
        path: Path,
        (tokens_in, max_tokens_out): (u32, u32),
        details: &mut Details,
    ) -> Result<(u32, u64), String> {
        let config = &self.context.config;
        let workers = self.context.addresses.workers(path);
        let timeout = Duration::from_millis(config.dispatch.timeout_ms(path));
        let mut error = String::from("no attempt made");
        let mut previous: Option<usize> = None;
        for attempt in 0..=config.dispatch.retries {
            if let Some(pause) = backoff(&config.dispatch, attempt) {
                madsim::time::sleep(pause).await;
            }
            // The first attempt takes the next replica in turn; a retry goes to the replica
            // after the one that just failed, so a cut-off or dead worker is not tried
            // twice in a row (with the shared turn, it could be, under concurrency).
            let replica = self.start_call(path, previous);
            previous = Some(replica);
            details.attempts += 1;
            let request = Execute {
                task_id: task.task_id,
                attempt,
                kind: task.kind,
                tokens_in,
                tokens_out: task.tokens_out,
                max_tokens_out,
            };
            let worker_name = || format!("{}-{}", path.as_str(), replica + 1);
            let answer = self.peers.call(&workers[replica], request, timeout).await;
            self.lock().fleet.call_ended(path, replica, self.uptime_ms());
            match attempt_result(answer, timeout) {
                Ok(done) => {
                    details.worker = Some(worker_name());
                    return Ok(done);
                }
                Err(e) => error = e,
            }
            self.emit(Signal::Attempt(AttemptSignal {
                attempt,
                error: error.clone(),
                task_id: task.task_id,
                worker: worker_name(),
            }));
        }
        Err(error)
    }

    /// Picks the replica of an attempt and counts the call on it; wakes a parked autoscaler.
    fn start_call(&self, path: Path, previous: Option<usize>) -> usize {
        let mut core = self.lock();
        let replica = core.fleet.pick(path, previous);
        core.fleet.call_started(path, replica, self.uptime_ms());
        if core.scaler_parked {
            core.scaler_parked = false;
            self.wake_scaler.notify_one();
        }
        replica
    }

    /// Queues a completion for the state node (`send_completions`); the task does not
    /// wait for it. A state node that does not answer in time costs the router its x4
    /// update and the organism those updates, never the task.
    fn update_state(
        &self,
        task: &Task,
        task_features: &[f64; FEATURES],
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
    pub(super) async fn send_completions(&self) {
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
    pub(super) async fn flush_completions(&self) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_doubling_from_the_configured_step() {
        let dispatch = DispatchConfig { backoff_ms: 50, ..DispatchConfig::default() };
        assert_eq!(backoff(&dispatch, 0), None, "the first attempt does not wait");
        assert_eq!(backoff(&dispatch, 1), Some(Duration::from_millis(50)));
        assert_eq!(backoff(&dispatch, 2), Some(Duration::from_millis(100)));
        assert_eq!(backoff(&dispatch, 3), Some(Duration::from_millis(200)));
    }

    #[test]
    fn an_attempt_gives_tokens_or_says_why_it_failed() {
        let timeout = Duration::from_millis(1_000);
        let done = Executed { result: Ok(12), latency_ms: 80, ttft_ms: 30 };
        assert_eq!(attempt_result(Ok(done), timeout), Ok((12, 50)), "50 ms decoding after the first token");
        let refused = Executed { result: Err("backend error".into()), latency_ms: 3, ttft_ms: 3 };
        assert_eq!(attempt_result(Ok(refused), timeout), Err("backend error".into()));
        let late = Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline"));
        assert_eq!(attempt_result(late, timeout), Err("timeout after 1000 ms".into()));
        let down = Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"));
        assert_eq!(attempt_result(down, timeout), Err("connection refused".into()));
    }
}
