//! The cost governor (docs/engine.md 4.4, the seeds' ADR-012): per-task ceiling, daily budget,
//! daily rate limits per kind, idempotent charging, alerts.
//!
//! Guarantees, with enforcement on: no charge exceeds the ceiling (the output is capped
//! before dispatch and a backend overrun is clamped); the spend of a day never exceeds the
//! budget, because every admission reserves its worst-case cost and the charge of a task is
//! at most its reservation; a task is charged at most once; the state can be rebuilt from
//! the ledger's receipts.

use crate::config::GovernorConfig;
use crate::task::{Kind, Path, RejectReason};
use std::collections::{BTreeMap, BTreeSet};

/// An alert raised by the governor, recorded as an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// `cost_near_ceiling`, `daily_budget_80` or `rate_limit_80`.
    pub name: &'static str,
    /// Observed value, in the unit of the alert (micro-USD or a count).
    pub value: u64,
    /// The limit it is measured against.
    pub limit: u64,
    /// The day or task it concerns.
    pub subject: String,
}

/// What admission asks of the governor.
#[derive(Clone, Copy, Debug)]
pub struct AdmitRequest {
    pub task_id: u64,
    pub day: u64,
    pub kind: Kind,
    pub path: Path,
    /// The path was chosen by a soft escalation and may be moved to the fast path.
    pub soft: bool,
    pub tokens_in: u32,
    pub tokens_out: u32,
    /// Largest output any task may ask for (docs/engine.md 4.5).
    pub max_tokens: u32,
}

/// An admitted task's cost plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The path after any cost degradation.
    pub path: Path,
    /// Context tokens after truncation.
    pub tokens_in: u32,
    /// Context tokens cut to fit the ceiling.
    pub truncated_tokens: u32,
    /// Output cap sent to the backend.
    pub max_tokens_out: u32,
    /// Reserved worst-case cost.
    pub estimate_micro_usd: u64,
    /// A soft escalation was moved to the fast path to fit the ceiling or the budget.
    pub degraded: bool,
    /// Alerts raised by this admission.
    pub alerts: Vec<Alert>,
}

/// A settled charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    pub cost_micro_usd: u64,
    /// Output tokens the charge is computed from.
    pub tokens_out: u32,
    /// The backend returned more than `max_tokens_out` and the charge was clamped.
    pub overrun_clamped: bool,
    pub alerts: Vec<Alert>,
}

/// Spend and counters of one UTC day.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayState {
    /// Settled charges.
    pub spent_micro_usd: u64,
    /// Reservations of admitted, unsettled tasks.
    pub reserved_micro_usd: u64,
    /// Admissions per kind.
    pub admitted: [u32; Kind::COUNT],
    /// The 80 % budget alert was raised.
    budget_alerted: bool,
    /// The 80 % rate-limit alert was raised, per kind.
    rate_alerted: [bool; Kind::COUNT],
}

/// The governor's state.
#[derive(Clone, Debug)]
pub struct Governor {
    config: GovernorConfig,
    days: BTreeMap<u64, DayState>,
    /// Open reservations: task id to (day, micro-USD).
    reservations: BTreeMap<u64, (u64, u64)>,
    /// Tasks already charged.
    charged: BTreeSet<u64>,
}

/// Output tokens reserved at least, when there is room, before the context is truncated.
const MIN_OUTPUT_TOKENS: u32 = 64;

impl Governor {
    /// A governor with nothing spent.
    pub fn new(config: GovernorConfig) -> Governor {
        Governor { config, days: BTreeMap::new(), reservations: BTreeMap::new(), charged: BTreeSet::new() }
    }

    /// Cost of a call in micro-USD, rounded up.
    pub fn price(&self, path: Path, tokens_in: u32, tokens_out: u32) -> u64 {
        // In u128: neither tokens (u32) times a price (u64) nor their sum can overflow it,
        // whatever a scenario sets; a charge beyond u64 saturates.
        let (price_in, price_out) = self.config.prices.of(path);
        let milli = u128::from(tokens_in) * u128::from(price_in) + u128::from(tokens_out) * u128::from(price_out);
        u64::try_from(milli.div_ceil(1000)).unwrap_or(u64::MAX)
    }

    /// Fits a call under the ceiling: (tokens_in, truncated, max_tokens_out), or `None` when
    /// not even a truncated context fits.
    fn fit(&self, path: Path, tokens_in: u32, tokens_out: u32, max_tokens: u32) -> Option<(u32, u32, u32)> {
        // In u128 for the same reason as `price`.
        let (price_in, price_out) = self.config.prices.of(path);
        let (price_in, price_out) = (u128::from(price_in), u128::from(price_out));
        let budget_milli = u128::from(self.config.ceiling_micro_usd) * 1000;
        let want_out = u128::from(tokens_out.min(MIN_OUTPUT_TOKENS).min(max_tokens));
        let mut kept_in = u128::from(tokens_in);
        if kept_in * price_in + want_out * price_out > budget_milli {
            let room = budget_milli.checked_sub(want_out * price_out)?;
            kept_in = room.checked_div(price_in).unwrap_or(kept_in).min(kept_in);
            if kept_in == 0 && tokens_in > 0 {
                return None;
            }
        }
        let left = budget_milli - kept_in * price_in;
        let by_cost = left.checked_div(price_out).unwrap_or(u128::from(u32::MAX));
        let max_out = by_cost.min(u128::from(max_tokens)) as u32;
        let kept_in = kept_in as u32;
        let plan = (kept_in, tokens_in - kept_in, max_out);
        assert!(self.price(path, plan.0, plan.2) <= self.config.ceiling_micro_usd);
        Some(plan)
    }

    fn day(&mut self, day: u64) -> &mut DayState {
        self.days.entry(day).or_default()
    }

    /// Decides whether a task may run, and on which terms.
    pub fn admit(&mut self, request: AdmitRequest) -> Result<Plan, RejectReason> {
        assert!(!self.reservations.contains_key(&request.task_id), "task admitted twice");
        let limit = self.config.rate_limits_per_day[request.kind.index()];
        let kind = request.kind.index();
        if let Some(limit) = limit {
            if self.config.enforce_rate_limits && self.day(request.day).admitted[kind] >= limit {
                return Err(RejectReason::RateLimit);
            }
        }
        let mut path = request.path;
        let mut degraded = false;
        let fitted = match self.fit(path, request.tokens_in, request.tokens_out, request.max_tokens) {
            Some(fit) if !(request.soft && fit.1 > 0) => Some(fit),
            // A soft escalation that would need its context cut runs fast instead.
            _ if request.soft => {
                path = Path::Fast;
                degraded = true;
                self.fit(path, request.tokens_in, request.tokens_out, request.max_tokens)
            }
            other => other,
        };
        let Some((mut tokens_in, mut truncated, mut max_out)) = fitted else {
            return Err(RejectReason::CostCeiling);
        };
        let mut estimate = self.price(path, tokens_in, max_out);
        let budget = self.config.daily_budget_micro_usd;
        if self.config.enforce_daily_budget {
            let day = self.day(request.day);
            let committed = day.spent_micro_usd.saturating_add(day.reserved_micro_usd);
            if committed.saturating_add(estimate) > budget {
                let fast = if path == Path::Deep && request.soft {
                    self.fit(Path::Fast, request.tokens_in, request.tokens_out, request.max_tokens)
                } else {
                    None
                };
                match fast {
                    Some(fit) if committed.saturating_add(self.price(Path::Fast, fit.0, fit.2)) <= budget => {
                        path = Path::Fast;
                        degraded = true;
                        (tokens_in, truncated, max_out) = fit;
                        estimate = self.price(path, tokens_in, max_out);
                    }
                    _ => return Err(RejectReason::DailyBudget),
                }
            }
        }
        let mut alerts = Vec::new();
        let day = self.days.entry(request.day).or_default();
        day.reserved_micro_usd = day.reserved_micro_usd.saturating_add(estimate);
        day.admitted[kind] = day.admitted[kind].saturating_add(1);
        let committed = day.spent_micro_usd.saturating_add(day.reserved_micro_usd);
        if !day.budget_alerted && u128::from(committed) * 5 >= u128::from(budget) * 4 {
            day.budget_alerted = true;
            alerts.push(Alert {
                name: "daily_budget_80",
                value: committed,
                limit: budget,
                subject: format!("day {}", request.day),
            });
        }
        if let Some(limit) = limit {
            if !day.rate_alerted[kind] && u64::from(day.admitted[kind]) * 5 >= u64::from(limit) * 4 {
                day.rate_alerted[kind] = true;
                alerts.push(Alert {
                    name: "rate_limit_80",
                    value: u64::from(day.admitted[kind]),
                    limit: u64::from(limit),
                    subject: format!("{} day {}", request.kind.as_str(), request.day),
                });
            }
        }
        self.reservations.insert(request.task_id, (request.day, estimate));
        Ok(Plan {
            path,
            tokens_in,
            truncated_tokens: truncated,
            max_tokens_out: max_out,
            estimate_micro_usd: estimate,
            degraded,
            alerts,
        })
    }

    /// Charges a task for the tokens it used. Returns `None` if the task was already
    /// charged: retries and duplicate completions never charge twice.
    pub fn settle(
        &mut self,
        task_id: u64,
        path: Path,
        tokens_in: u32,
        tokens_out: u32,
        max_tokens_out: u32,
    ) -> Option<Charge> {
        if self.charged.contains(&task_id) {
            return None;
        }
        let (charged_out, overrun_clamped) = if tokens_out > max_tokens_out && self.config.clamp_overrun {
            (max_tokens_out, true)
        } else {
            (tokens_out, false)
        };
        let cost = self.price(path, tokens_in, charged_out);
        if self.config.clamp_overrun {
            assert!(cost <= self.config.ceiling_micro_usd, "a clamped charge is within the ceiling");
        }
        Some(self.book(task_id, cost, charged_out, overrun_clamped))
    }

    /// Charges a task a fixed amount (a cache hit costs nothing).
    pub fn settle_fixed(&mut self, task_id: u64, cost_micro_usd: u64) -> Option<Charge> {
        if self.charged.contains(&task_id) {
            return None;
        }
        Some(self.book(task_id, cost_micro_usd, 0, false))
    }

    fn book(&mut self, task_id: u64, cost: u64, tokens_out: u32, overrun_clamped: bool) -> Charge {
        let (day, reserved) = self.reservations.remove(&task_id).expect("settled task was admitted");
        let ceiling = self.config.ceiling_micro_usd;
        let state = self.day(day);
        state.reserved_micro_usd = state.reserved_micro_usd.saturating_sub(reserved);
        state.spent_micro_usd = state.spent_micro_usd.saturating_add(cost);
        self.charged.insert(task_id);
        let mut alerts = Vec::new();
        if u128::from(cost) * 10 >= u128::from(ceiling) * 9 {
            alerts.push(Alert {
                name: "cost_near_ceiling",
                value: cost,
                limit: ceiling,
                subject: format!("task {task_id}"),
            });
        }
        Charge { cost_micro_usd: cost, tokens_out, overrun_clamped, alerts }
    }

    /// Drops the reservation of an admitted task that ended without a charge.
    pub fn release(&mut self, task_id: u64) {
        if let Some((day, reserved)) = self.reservations.remove(&task_id) {
            let state = self.day(day);
            state.reserved_micro_usd = state.reserved_micro_usd.saturating_sub(reserved);
        }
    }

    /// Rebuilds spend and counters from one ledger receipt (coordinator recovery).
    pub fn recover(&mut self, task_id: u64, day: u64, kind: Kind, admitted: bool, cost_micro_usd: u64) {
        let state = self.day(day);
        state.spent_micro_usd = state.spent_micro_usd.saturating_add(cost_micro_usd);
        if admitted {
            state.admitted[kind.index()] = state.admitted[kind.index()].saturating_add(1);
            self.charged.insert(task_id);
        }
    }

    /// Spend and counters of a day.
    pub fn day_state(&self, day: u64) -> DayState {
        self.days.get(&day).cloned().unwrap_or_default()
    }

    /// The configuration.
    pub fn config(&self) -> &GovernorConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(task_id: u64, path: Path, tokens_in: u32, tokens_out: u32) -> AdmitRequest {
        AdmitRequest { task_id, day: 0, kind: Kind::Chat, path, soft: false, tokens_in, tokens_out, max_tokens: 4096 }
    }

    #[test]
    fn output_is_capped_to_fit_the_ceiling() {
        let mut governor = Governor::new(GovernorConfig::default());
        // Deep: 4,000 tokens in cost 40,000; 10,000 left buys 333 tokens out.
        let plan = governor.admit(request(1, Path::Deep, 4_000, 2_000)).unwrap();
        assert_eq!((plan.tokens_in, plan.truncated_tokens, plan.max_tokens_out), (4_000, 0, 333));
        assert!(plan.estimate_micro_usd <= 50_000);
    }

    #[test]
    fn oversized_context_is_truncated_and_soft_escalations_run_fast() {
        let mut governor = Governor::new(GovernorConfig::default());
        let plan = governor.admit(request(1, Path::Deep, 9_000, 100)).unwrap();
        assert_eq!(plan.path, Path::Deep);
        assert!(plan.truncated_tokens > 0);
        let soft = AdmitRequest { soft: true, ..request(2, Path::Deep, 9_000, 100) };
        let plan = governor.admit(soft).unwrap();
        assert_eq!((plan.path, plan.truncated_tokens, plan.degraded), (Path::Fast, 0, true));
    }

    #[test]
    fn rate_limit_rejects_the_101st_summary() {
        let mut governor = Governor::new(GovernorConfig::default());
        for id in 0..100 {
            let r = AdmitRequest { kind: Kind::Summary, ..request(id, Path::Fast, 10, 10) };
            governor.admit(r).unwrap();
        }
        let r = AdmitRequest { kind: Kind::Summary, ..request(100, Path::Fast, 10, 10) };
        assert_eq!(governor.admit(r), Err(RejectReason::RateLimit));
    }

    proptest! {
        /// For any token sequence, with overruns and duplicate settlements, no charge exceeds
        /// the ceiling, no day exceeds the budget, and no task is charged twice.
        #[test]
        fn no_ceiling_or_budget_breach_and_charging_is_idempotent(
            tasks in proptest::collection::vec((0u32..20_000, 0u32..8_000, 1u32..4, any::<bool>(), 0u64..3, 1u8..3), 1..300),
            budget in 1_000u64..2_000_000,
        ) {
            let config = GovernorConfig { daily_budget_micro_usd: budget, ..GovernorConfig::default() };
            let ceiling = config.ceiling_micro_usd;
            let mut governor = Governor::new(config);
            let mut total: BTreeMap<u64, u64> = BTreeMap::new();
            for (id, (tokens_in, tokens_out, inflation, deep, day, settles)) in tasks.into_iter().enumerate() {
                let path = if deep { Path::Deep } else { Path::Fast };
                let r = AdmitRequest { day, soft: deep && id % 2 == 0, ..request(id as u64, path, tokens_in, tokens_out) };
                let Ok(plan) = governor.admit(r) else { continue };
                let returned = tokens_out.min(plan.max_tokens_out).saturating_mul(inflation);
                let mut charges = 0;
                for _ in 0..settles {
                    if let Some(charge) = governor.settle(id as u64, plan.path, plan.tokens_in, returned, plan.max_tokens_out) {
                        charges += 1;
                        prop_assert!(charge.cost_micro_usd <= ceiling);
                        prop_assert!(charge.cost_micro_usd <= plan.estimate_micro_usd);
                        *total.entry(day).or_default() += charge.cost_micro_usd;
                    }
                }
                prop_assert_eq!(charges, 1);
            }
            for (day, spent) in total {
                prop_assert!(spent <= budget);
                prop_assert_eq!(governor.day_state(day).spent_micro_usd, spent);
            }
        }
    }
}
