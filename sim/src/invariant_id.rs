//! The invariants of docs/certification.md 8.1 as a type: each id, whether it is critical, and its
//! default policy. Every list of invariants (the policy, the verdicts, the campaign tally, the
//! canaries) is `InvariantId::ALL` in this order, the order of the SPEC's table and of a
//! certificate's rows; ids are written as their `as_str` names.

/// One invariant of docs/certification.md 8.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InvariantId {
    FastPathRatio,
    LipschitzBound,
    CostCeiling,
    DailyBudget,
    RateLimits,
    Determinism,
    NoLostTasks,
    LedgerIntegrity,
    FastLatencyP99,
    DeepLatencyP99,
    FastSuccessRate,
    DeepSuccessRate,
    MemoryFreshness,
    RecoveryTime,
    TtftP99,
    RollbackFastPath,
    RollbackFreshness,
    RollbackSafety,
}

/// An invariant's default policy: threshold, width of the warning band, weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Defaults {
    pub threshold: f64,
    pub warn: f64,
    pub weight: f64,
}

impl InvariantId {
    /// Every invariant, in the SPEC's order.
    pub const ALL: [InvariantId; 18] = [
        InvariantId::FastPathRatio,
        InvariantId::LipschitzBound,
        InvariantId::CostCeiling,
        InvariantId::DailyBudget,
        InvariantId::RateLimits,
        InvariantId::Determinism,
        InvariantId::NoLostTasks,
        InvariantId::LedgerIntegrity,
        InvariantId::FastLatencyP99,
        InvariantId::DeepLatencyP99,
        InvariantId::FastSuccessRate,
        InvariantId::DeepSuccessRate,
        InvariantId::MemoryFreshness,
        InvariantId::RecoveryTime,
        InvariantId::TtftP99,
        InvariantId::RollbackFastPath,
        InvariantId::RollbackFreshness,
        InvariantId::RollbackSafety,
    ];

    /// The id as written in scenarios, events, reports and certificates.
    pub fn as_str(self) -> &'static str {
        match self {
            InvariantId::FastPathRatio => "fast_path_ratio",
            InvariantId::LipschitzBound => "lipschitz_bound",
            InvariantId::CostCeiling => "cost_ceiling",
            InvariantId::DailyBudget => "daily_budget",
            InvariantId::RateLimits => "rate_limits",
            InvariantId::Determinism => "determinism",
            InvariantId::NoLostTasks => "no_lost_tasks",
            InvariantId::LedgerIntegrity => "ledger_integrity",
            InvariantId::FastLatencyP99 => "fast_latency_p99",
            InvariantId::DeepLatencyP99 => "deep_latency_p99",
            InvariantId::FastSuccessRate => "fast_success_rate",
            InvariantId::DeepSuccessRate => "deep_success_rate",
            InvariantId::MemoryFreshness => "memory_freshness",
            InvariantId::RecoveryTime => "recovery_time",
            InvariantId::TtftP99 => "ttft_p99",
            InvariantId::RollbackFastPath => "rollback_fast_path",
            InvariantId::RollbackFreshness => "rollback_freshness",
            InvariantId::RollbackSafety => "rollback_safety",
        }
    }

    /// Reads an id back.
    pub fn parse(name: &str) -> Option<InvariantId> {
        InvariantId::ALL.into_iter().find(|id| id.as_str() == name)
    }

    /// A critical invariant that does not pass forces FAIL (docs/certification.md 8.2).
    pub fn critical(self) -> bool {
        self <= InvariantId::LedgerIntegrity
    }

    /// The default policy of docs/certification.md 8.1.
    pub fn defaults(self) -> Defaults {
        let (threshold, warn, weight) = match self {
            InvariantId::FastPathRatio => (0.90, 0.0, 3.0),
            InvariantId::LipschitzBound => (1.0, 0.0, 3.0),
            InvariantId::CostCeiling | InvariantId::DailyBudget => (0.0, 0.0, 3.0),
            InvariantId::RateLimits => (0.0, 0.0, 2.0),
            InvariantId::Determinism => (0.95, 0.0, 3.0),
            InvariantId::NoLostTasks => (0.0, 0.0, 3.0),
            InvariantId::LedgerIntegrity => (1.0, 0.0, 3.0),
            InvariantId::FastLatencyP99 => (200.0, 50.0, 1.0),
            InvariantId::DeepLatencyP99 => (20_000.0, 5_000.0, 1.0),
            InvariantId::FastSuccessRate => (0.95, 0.05, 1.0),
            InvariantId::DeepSuccessRate => (0.90, 0.05, 1.0),
            InvariantId::MemoryFreshness => (3_000.0, 1_000.0, 1.0),
            InvariantId::RecoveryTime => (60_000.0, 30_000.0, 1.0),
            // Seed 002's "5th golden signal": the fast path's time to first token.
            InvariantId::TtftP99 => (800.0, 200.0, 1.0),
            // Seed 000's rollback criteria: the level a sustained stretch is judged against
            // (the stretch's length is the invariant's own, `sustain_ms`).
            InvariantId::RollbackFastPath => (0.85, 0.0, 1.0),
            InvariantId::RollbackFreshness => (5_000.0, 0.0, 1.0),
            InvariantId::RollbackSafety => (0.01, 0.0, 1.0),
        };
        Defaults { threshold, warn, weight }
    }

    /// Whether the threshold is a ratio in [0, 1].
    pub fn is_ratio(self) -> bool {
        self.at_least() || self == InvariantId::RollbackSafety
    }

    /// Whether the observed value must reach the threshold (a share of good outcomes)
    /// rather than stay under it: a lower threshold is then the looser one.
    pub fn at_least(self) -> bool {
        matches!(
            self,
            InvariantId::FastPathRatio
                | InvariantId::Determinism
                | InvariantId::FastSuccessRate
                | InvariantId::DeepSuccessRate
                | InvariantId::RollbackFastPath
        )
    }

    /// Seed 000's rollback criteria (docs/certification.md 8.1): judged over sustained
    /// stretches of simulated time, and the rules a canary rolls back on.
    pub fn is_rollback(self) -> bool {
        self >= InvariantId::RollbackFastPath
    }

    /// How long a breach of a rollback criterion may last (`rollback_fast_path`,
    /// `rollback_freshness`), or the window it is counted over (`rollback_safety`), ms.
    pub fn sustain_ms(self) -> Option<u64> {
        match self {
            InvariantId::RollbackFastPath | InvariantId::RollbackSafety => Some(10 * 60_000),
            InvariantId::RollbackFreshness => Some(5 * 60_000),
            _ => None,
        }
    }

    /// Whether the policy may give it a warning band: not a critical invariant (a critical
    /// failure is a failure) and not a rollback criterion (its stretch is the margin).
    pub fn has_warning_band(self) -> bool {
        !self.critical() && !self.is_rollback()
    }

    /// Whether the limit is the engine's own (money, loss, the ledger): a policy cannot set
    /// its threshold.
    pub fn fixed_by_the_engine(self) -> bool {
        matches!(
            self,
            InvariantId::CostCeiling
                | InvariantId::DailyBudget
                | InvariantId::RateLimits
                | InvariantId::NoLostTasks
                | InvariantId::LedgerIntegrity
        )
    }
}

impl std::fmt::Display for InvariantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl PartialEq<&str> for InvariantId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_and_the_critical_ones_come_first() {
        for id in InvariantId::ALL {
            assert_eq!(InvariantId::parse(id.as_str()), Some(id));
        }
        let critical: Vec<&str> = InvariantId::ALL.iter().filter(|i| i.critical()).map(|i| i.as_str()).collect();
        assert_eq!(
            critical,
            [
                "fast_path_ratio",
                "lipschitz_bound",
                "cost_ceiling",
                "daily_budget",
                "rate_limits",
                "determinism",
                "no_lost_tasks",
                "ledger_integrity"
            ]
        );
        assert_eq!(InvariantId::parse("fast_path"), None);
        assert_eq!(format!("{:<18}|", InvariantId::Determinism), "determinism       |");
    }
}
