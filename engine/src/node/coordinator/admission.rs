//! Admission: who processes a submission (the claim), then the valve, the router and the
//! governor decide the task's path and budget, all under the coordinator's lock
//! (docs/engine.md 4.1, 4.2, 4.4, 4.5). Nothing here waits.

use super::Core;
use crate::config::EngineConfig;
use crate::governor::{AdmitRequest, Alert, Plan};
use crate::probe::{ppm, DecisionSignal};
use crate::router::{Reason, RouterInputs};
use crate::rpc::{Decided, Routed};
use crate::task::{Authority, Outcome, Path, PerPath, RejectReason, Task};
use crate::valve::ValveStep;

/// Who processes a submission.
pub(super) enum Claim {
    /// This submission: the task was neither recorded nor in progress.
    Claimed,
    /// Another submission is processing the task.
    InProgress,
    /// The task has a recorded outcome.
    Recorded(Outcome),
}

/// An admitted task.
pub(super) struct Admitted {
    pub plan: Plan,
    pub reason: Reason,
    pub day: u64,
    pub decided: Decided,
}

/// Counts since the coordinator started.
#[derive(Default)]
pub(super) struct Counters {
    pub decisions: [u64; Reason::ALL.len()],
    pub rejections: [u64; RejectReason::ALL.len()],
    pub completed: PerPath<u64>,
    pub failed: PerPath<u64>,
    pub cache_hits: u64,
    /// Lookups served per tier, in `Tier::ALL` order.
    pub tier_hits: [u64; 3],
    pub ledger_receipts: u64,
    pub ledger_cycles: u64,
}

impl Counters {
    pub fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Completed { path, cache_hit, .. } => {
                self.completed[*path] += 1;
                self.cache_hits += u64::from(*cache_hit);
            }
            Outcome::Failed { path, .. } => self.failed[*path] += 1,
            Outcome::Rejected { reason } => {
                let index = RejectReason::ALL.iter().position(|r| r == reason).expect("every reason is listed");
                self.rejections[index] += 1;
            }
        }
    }
}

impl Core {
    /// Takes a task for processing, atomically: exactly one submission of a task id gets
    /// `Claimed`; the others see it in progress or recorded.
    pub(super) fn claim(&mut self, task_id: u64) -> Claim {
        if let Some(outcome) = self.outcomes.get(&task_id) {
            return Claim::Recorded(outcome.clone());
        }
        if self.in_progress.insert(task_id) {
            self.next_task_id = self.next_task_id.max(task_id.saturating_add(1));
            Claim::Claimed
        } else {
            Claim::InProgress
        }
    }

    /// Valve, router and governor for a claimed task: the admission with the decision's
    /// signal and the governor's alerts, or why the task is refused.
    pub(super) fn admit(
        &mut self,
        config: &EngineConfig,
        task: &Task,
        day: u64,
    ) -> Result<(Admitted, DecisionSignal, Vec<Alert>), RejectReason> {
        assert!(self.in_progress.contains(&task.task_id), "admitted tasks are claimed");
        if self.halted.is_some() {
            return Err(RejectReason::Halted);
        }
        let in_flight = self.in_flight();
        if self.draining || in_flight >= config.dispatch.max_in_flight {
            return Err(RejectReason::Overload);
        }
        self.forecast.observe(task.tokens_in);
        let forecast = self.forecast.forecast(task.tokens_out.min(config.tokens.max_tokens));
        let step = self.valve.observe(task.drift);
        let valve_seq = self.valve.tasks();
        let inputs = self.router_inputs(config, task, step);
        let decision = self.router.decide(step.breached, task.needs_planning, &inputs);
        // Under pressure, the forecast gates admission (docs/engine.md 4.5).
        if f64::from(in_flight) >= 0.8 * f64::from(config.dispatch.max_in_flight)
            && forecast > f64::from(config.tokens.max_tokens)
        {
            return Err(RejectReason::Overload);
        }
        let mut plan = self.governor.admit(AdmitRequest {
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
        self.router.commit(plan.path);
        self.counters.decisions[Reason::ALL.iter().position(|r| *r == reason).expect("every reason is listed")] += 1;
        self.in_flight[plan.path] += 1;
        let signal = DecisionSignal {
            cusum_s_ppm: ppm(step.s),
            degraded: plan.degraded,
            forecast_tokens: forecast.round() as u64,
            max_tokens_out: plan.max_tokens_out,
            path: plan.path,
            reason,
            router_fast_ppm: ppm(1.0 - self.router.deep_share()),
            surprise_ppm: ppm(decision.surprise),
            task_id: task.task_id,
            truncated_tokens: plan.truncated_tokens,
            x_ppm: inputs.as_array().map(|x| ppm(x.clamp(0.0, 1.0))),
        };
        let alerts = std::mem::take(&mut plan.alerts);
        let decided = Decided { path: plan.path, reason, surprise: decision.surprise, valve_seq };
        Ok((Admitted { plan, reason, day, decided }, signal, alerts))
    }

    /// The router's inputs for a task after the valve's `step` (docs/engine.md 4.2).
    fn router_inputs(&self, config: &EngineConfig, task: &Task, step: ValveStep) -> RouterInputs {
        let fast_capacity = self.fleet.active(Path::Fast).saturating_mul(config.dispatch.fast_concurrency).max(1);
        let waiting = self.in_flight.fast.saturating_sub(fast_capacity);
        let queue_wait_ms = f64::from(waiting) / f64::from(fast_capacity)
            * config.backend.fast.median_ms(task.tokens_in, task.tokens_out);
        RouterInputs {
            cache_miss: 1.0 - self.hit_rate,
            valve: if step.breached { 1.0 } else { step.s / self.valve.h() },
            drift: task.drift,
            state_change: self.state_change,
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
    pub(super) fn route(&self, config: &EngineConfig, task: &Task) -> Routed {
        let step = self.valve.clone().observe(task.drift);
        let inputs = self.router_inputs(config, task, step);
        let decision = self.router.decide(step.breached, task.needs_planning, &inputs);
        Routed {
            path: decision.path,
            reason: decision.reason,
            surprise: decision.surprise,
            cusum_s: step.s,
            breached: step.breached,
            inputs: inputs.as_array(),
            halted: self.halted.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Kind;

    fn core(config: &EngineConfig) -> Core {
        Core::new(config, [2, 1].into(), false)
    }

    fn task(task_id: u64) -> Task {
        Task {
            task_id,
            at_ms: task_id,
            kind: Kind::Chat,
            domain: "guest".into(),
            drift: 0.0,
            priority: 0,
            authority: Authority::High,
            needs_planning: false,
            tokens_in: 500,
            tokens_out: 100,
            signature: task_id,
        }
    }

    #[test]
    fn one_submission_claims_a_task_the_others_wait_or_get_its_outcome() {
        let config = EngineConfig::default();
        let mut core = core(&config);
        assert!(matches!(core.claim(7), Claim::Claimed));
        assert!(matches!(core.claim(7), Claim::InProgress));
        assert_eq!(core.next_task_id, 8, "ids handed out later start above every id seen");
        core.outcomes.insert(7, Outcome::Rejected { reason: RejectReason::Overload });
        assert!(matches!(core.claim(7), Claim::Recorded(Outcome::Rejected { reason: RejectReason::Overload })));
    }

    #[test]
    fn a_calm_task_goes_fast_and_is_counted_in_flight() {
        let config = EngineConfig::default();
        let mut core = core(&config);
        core.claim(1);
        let (admitted, signal, alerts) = core.admit(&config, &task(1), 0).unwrap();
        assert_eq!(admitted.plan.path, Path::Fast);
        assert_eq!(signal.path, Path::Fast);
        assert_eq!(signal.task_id, 1);
        assert!(alerts.is_empty());
        assert_eq!(core.in_flight, PerPath { fast: 1, deep: 0 });
        assert_eq!(core.counters.decisions.iter().sum::<u64>(), 1);
    }

    #[test]
    fn a_halted_draining_or_full_coordinator_refuses() {
        let config = EngineConfig::default();
        let mut halted = core(&config);
        halted.claim(1);
        halted.halted = Some("ledger".into());
        assert_eq!(halted.admit(&config, &task(1), 0).err(), Some(RejectReason::Halted));
        let mut draining = core(&config);
        draining.claim(1);
        draining.draining = true;
        assert_eq!(draining.admit(&config, &task(1), 0).err(), Some(RejectReason::Overload));
        let mut full = core(&config);
        full.claim(1);
        full.recording = config.dispatch.max_in_flight;
        assert_eq!(full.admit(&config, &task(1), 0).err(), Some(RejectReason::Overload));
        assert_eq!(full.in_flight.total(), 0, "a refused task is not in flight");
    }

    #[test]
    fn a_breach_escalates_to_the_deep_path() {
        let config = EngineConfig::default();
        let mut core = core(&config);
        let mut last = None;
        for id in 0..20 {
            core.claim(id);
            let drifting = Task { drift: 1.0, ..task(id) };
            last = Some(core.admit(&config, &drifting, 0).unwrap().0);
        }
        let last = last.unwrap();
        assert!(core.valve.breaches() > 0, "a drift of 1.0 per task breaches h = 2.5");
        assert!(core.in_flight.deep > 0, "breaches go deep");
        assert_eq!(last.decided.valve_seq, 20);
    }

    #[test]
    fn route_changes_nothing() {
        let config = EngineConfig::default();
        let core = core(&config);
        let before = (core.valve.tasks(), core.valve.s());
        let routed = core.route(&config, &Task { drift: 1.0, ..task(1) });
        assert!(routed.cusum_s > 0.0, "the answer is the valve after this task");
        assert_eq!((core.valve.tasks(), core.valve.s()), before);
    }

    #[test]
    fn counters_count_each_outcome_once_by_path_and_reason() {
        let mut counters = Counters::default();
        counters.count(&Outcome::Failed { path: Path::Deep, error: "x".into() });
        counters.count(&Outcome::Rejected { reason: RejectReason::Halted });
        assert_eq!(counters.failed, PerPath { fast: 0, deep: 1 });
        assert_eq!(counters.rejections.iter().sum::<u64>(), 1);
    }
}
