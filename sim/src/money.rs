//! Money and admission per simulated UTC day, folded from the outcome events: the one
//! computation behind the `cost_ceiling`, `daily_budget` and `rate_limits` invariants, the
//! report's per-day table and `cost_report.json` (ISSUE 8: one truth per figure). The
//! report's plots read `tasks.csv`, and certification refuses a `tasks.csv` whose per-day
//! spend differs from these figures.

use seedcore_engine::probe::OutcomeSignal;
use seedcore_engine::task::Status;
use std::collections::BTreeMap;

/// One day, by the admission day of each outcome (the governor's budget day).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayMoney {
    /// Charged micro-USD.
    pub spend_micro_usd: u64,
    pub completed: u64,
    pub failed: u64,
    pub rejected: u64,
    /// Admitted (completed or failed) tasks per kind: what the daily rate limits count.
    pub admitted_per_kind: BTreeMap<String, u64>,
    /// Sum, least and most of the charges of completed tasks.
    pub completed_cost_sum: u128,
    pub completed_cost_min: Option<u64>,
    pub completed_cost_max: Option<u64>,
    /// Completed tasks charged above the per-task ceiling.
    pub ceiling_breaches: u64,
    /// Completed tasks charged at or above 90 % of the ceiling (the governor's alert level).
    pub near_ceiling: u64,
    /// Charges that left the day's cumulative spend above the daily budget.
    pub budget_breaches: u64,
}

impl DayMoney {
    /// Tasks that passed admission (completed or failed).
    pub fn admitted(&self) -> u64 {
        self.completed + self.failed
    }

    /// Outcomes of the day, whatever their status.
    pub fn outcomes(&self) -> u64 {
        self.completed + self.failed + self.rejected
    }

    /// Mean charge of a completed task.
    pub fn completed_cost_mean(&self) -> Option<f64> {
        (self.completed > 0).then(|| self.completed_cost_sum as f64 / self.completed as f64)
    }

    /// Folds in one outcome of this day, under the run's per-task `ceiling` and daily
    /// `budget` (micro-USD).
    pub fn observe(&mut self, outcome: &OutcomeSignal, ceiling: u64, budget: u64) {
        let cost = outcome.cost_micro_usd;
        match outcome.status {
            Status::Completed => {
                self.completed += 1;
                self.completed_cost_sum += u128::from(cost);
                self.completed_cost_min = Some(self.completed_cost_min.map_or(cost, |m| m.min(cost)));
                self.completed_cost_max = Some(self.completed_cost_max.map_or(cost, |m| m.max(cost)));
                self.ceiling_breaches += u64::from(cost > ceiling);
                self.near_ceiling += u64::from(u128::from(cost) * 10 >= u128::from(ceiling) * 9);
            }
            Status::Failed => self.failed += 1,
            Status::Rejected => self.rejected += 1,
        }
        if outcome.status != Status::Rejected {
            bump(&mut self.admitted_per_kind, outcome.kind.as_str());
        }
        if cost > 0 {
            self.spend_micro_usd = self.spend_micro_usd.saturating_add(cost);
            self.budget_breaches += u64::from(self.spend_micro_usd > budget);
        }
    }
}

/// Counts one more of `key`, allocating the key only the first time.
pub(crate) fn bump(counts: &mut BTreeMap<String, u64>, key: &str) {
    match counts.get_mut(key) {
        Some(count) => *count += 1,
        None => {
            counts.insert(key.to_string(), 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seedcore_engine::task::{Kind, Path, RejectReason};

    fn outcome(kind: Kind, status: Status, cost: u64) -> OutcomeSignal {
        OutcomeSignal {
            arrived_ms: 0,
            attempts: 1,
            cache_age_ms: None,
            cache_hit: false,
            cache_tier: None,
            cost_micro_usd: cost,
            day: 0,
            error: (status == Status::Failed).then(|| "timeout".into()),
            kind,
            latency_ms: 1,
            ledger_seq: None,
            overrun_clamped: false,
            path: (status != Status::Rejected).then_some(Path::Fast),
            reason: (status == Status::Rejected).then_some(RejectReason::RateLimit),
            status,
            task_id: 0,
            tokens_in: 1,
            tokens_out: 1,
            truncated: false,
            ttft_ms: None,
            worker: None,
        }
    }

    #[test]
    fn a_day_counts_admissions_charges_and_breaches() {
        let mut day = DayMoney::default();
        let (ceiling, budget) = (50_000, 100_000);
        for (kind, status, cost) in [
            (Kind::Chat, Status::Completed, 1_000),
            (Kind::Chat, Status::Completed, 46_000),
            (Kind::Query, Status::Failed, 0),
            (Kind::Query, Status::Rejected, 0),
            (Kind::Summary, Status::Completed, 60_000),
        ] {
            day.observe(&outcome(kind, status, cost), ceiling, budget);
        }
        assert_eq!((day.completed, day.failed, day.rejected, day.admitted(), day.outcomes()), (3, 1, 1, 4, 5));
        assert_eq!(day.spend_micro_usd, 107_000);
        assert_eq!(
            day.admitted_per_kind,
            BTreeMap::from([("chat".into(), 2), ("query".into(), 1), ("summary".into(), 1)])
        );
        assert_eq!((day.completed_cost_min, day.completed_cost_max), (Some(1_000), Some(60_000)));
        assert_eq!(day.completed_cost_mean(), Some(107_000.0 / 3.0));
        assert_eq!((day.ceiling_breaches, day.near_ceiling), (1, 2), "60000 > 50000; 46000 >= 45000");
        assert_eq!(day.budget_breaches, 1, "the last charge crosses 100000");
    }
}
