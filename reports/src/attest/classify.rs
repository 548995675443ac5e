//! Deviations and the attestation's status (seed 003, sections 3 and 2.2): what each finding
//! of a certification is, and what the window's figures make of production. Both are small
//! pure functions, so each rule has a test of its own.

use super::{Action, ByOutcome, Class, Deviation, PPM_ONE};
use crate::model::{InvariantRow, Outcome};

/// The invariants of ADR-012's economic safety (seed 003, 2.2): a breach of any of them is
/// a cost ceiling breach.
pub const ECONOMIC: [&str; 3] = ["cost_ceiling", "daily_budget", "rate_limits"];

/// Something a certification of the window showed that may be a deviation.
#[derive(Clone, Copy, Debug)]
pub enum Finding<'a> {
    /// Its bundle is missing, does not verify, or is not the one the log lists.
    Unverified,
    /// One invariant of its verified certificate.
    Invariant(&'a InvariantRow),
    /// A policy setting that differs from the defaults, by its effect (`loosened`,
    /// `tightened`, `reweighted` or `changed`).
    PolicyChange { effect: &'a str },
}

/// The deviation class of a finding (its action follows from the class), or none.
///
/// A critical invariant that did not pass (failed, warned, or had nothing to judge) fails
/// the certification (docs/certification.md 8.2), so each is a deviation; a non-critical
/// one is a deviation only when it fails.
pub fn classify(finding: Finding<'_>) -> Option<Class> {
    match finding {
        Finding::Unverified => Some(Class::SignatureVerificationFailure),
        Finding::PolicyChange { effect } => {
            matches!(effect, "loosened" | "reweighted").then_some(Class::ComplianceFailure)
        }
        Finding::Invariant(row) if row.verdict == "pass" => None,
        Finding::Invariant(row) => match row.id.as_str() {
            "ledger_integrity" => Some(Class::SignatureVerificationFailure),
            id if ECONOMIC.contains(&id) => Some(Class::CostCeilingBreach),
            "determinism" => Some(Class::DeterminismThresholdFailure),
            _ if row.critical => Some(Class::ComplianceFailure),
            _ if row.verdict == "fail" => Some(Class::SloBreach),
            _ => None,
        },
    }
}

/// `1 certification`, `2 certifications`.
fn count(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// The status of a window and why it is not PASS: FAIL (production paused) on a deviation
/// that halts, blocks or pauses, a FAIL certification, or a signature validation rate below
/// 100 %; else PASS WITH CONDITIONS on an alert, a PASS WITH CONDITIONS certification, or
/// no certification at all; else PASS.
pub fn status(
    by_outcome: &ByOutcome,
    signature_validation_ppm: u64,
    entries: usize,
    deviations: &[Deviation],
) -> (Outcome, Vec<String>) {
    let mut conditions = Vec::new();
    let (mut stops, mut alerts) = (false, false);
    for action in Action::ALL {
        let of_action: Vec<&Deviation> = deviations.iter().filter(|d| d.action == action).collect();
        if of_action.is_empty() {
            continue;
        }
        let mut classes: Vec<&str> = of_action.iter().map(|d| d.class.as_str()).collect();
        classes.sort_unstable();
        classes.dedup();
        conditions.push(format!(
            "{} to {} ({})",
            count(of_action.len() as u64, "deviation"),
            action.meaning(),
            classes.join(", ")
        ));
        stops |= action.stops_production();
        alerts |= !action.stops_production();
    }
    if by_outcome.fail > 0 {
        conditions.push(format!("{} FAIL", count(by_outcome.fail, "certification")));
    }
    if signature_validation_ppm < PPM_ONE {
        conditions
            .push(format!("signature validation rate {} (must be 100 %)", super::percent(signature_validation_ppm)));
    }
    if by_outcome.pass_with_conditions > 0 {
        conditions.push(format!("{} PASS WITH CONDITIONS", count(by_outcome.pass_with_conditions, "certification")));
    }
    if entries == 0 {
        conditions.push("no certification in the window".to_string());
    }
    let outcome = if stops || by_outcome.fail > 0 || signature_validation_ppm < PPM_ONE {
        Outcome::Fail
    } else if alerts || by_outcome.pass_with_conditions > 0 || entries == 0 {
        Outcome::PassWithConditions
    } else {
        Outcome::Pass
    };
    (outcome, conditions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, critical: bool, verdict: &str) -> InvariantRow {
        InvariantRow {
            id: id.into(),
            critical,
            verdict: verdict.into(),
            observed: String::new(),
            threshold: String::new(),
            value: String::new(),
            rule: String::new(),
            limit: String::new(),
            unit: String::new(),
            weight: "1".into(),
            detail: String::new(),
        }
    }

    fn of(id: &str, critical: bool, verdict: &str) -> Option<Class> {
        classify(Finding::Invariant(&row(id, critical, verdict)))
    }

    #[test]
    fn a_bundle_that_does_not_verify_or_a_broken_ledger_halts() {
        assert_eq!(classify(Finding::Unverified), Some(Class::SignatureVerificationFailure));
        assert_eq!(of("ledger_integrity", true, "fail"), Some(Class::SignatureVerificationFailure));
        assert_eq!(Class::SignatureVerificationFailure.action(), Action::Halt);
        assert_eq!(Class::SignatureVerificationFailure.sla(), "1 h");
    }

    #[test]
    fn an_economic_invariant_not_passing_blocks() {
        for id in ECONOMIC {
            assert_eq!(of(id, true, "fail"), Some(Class::CostCeilingBreach), "{id}");
            assert_eq!(of(id, true, "warn"), Some(Class::CostCeilingBreach), "{id}");
            assert_eq!(of(id, true, "pass"), None, "{id}");
        }
        assert_eq!(Class::CostCeilingBreach.action(), Action::Block);
    }

    #[test]
    fn another_critical_failure_or_a_loosened_policy_pauses() {
        for id in ["fast_path_ratio", "lipschitz_bound", "no_lost_tasks"] {
            assert_eq!(of(id, true, "fail"), Some(Class::ComplianceFailure), "{id}");
            assert_eq!(of(id, true, "skipped"), Some(Class::ComplianceFailure), "{id}");
        }
        for effect in ["loosened", "reweighted"] {
            assert_eq!(classify(Finding::PolicyChange { effect }), Some(Class::ComplianceFailure));
        }
        for effect in ["tightened", "changed"] {
            assert_eq!(classify(Finding::PolicyChange { effect }), None);
        }
        assert_eq!(Class::ComplianceFailure.action(), Action::Pause);
    }

    #[test]
    fn determinism_not_passing_alerts() {
        assert_eq!(of("determinism", true, "fail"), Some(Class::DeterminismThresholdFailure));
        assert_eq!(of("determinism", true, "pass"), None);
        assert_eq!(Class::DeterminismThresholdFailure.action(), Action::Alert);
        assert_eq!(Class::DeterminismThresholdFailure.sla(), "24 h");
    }

    #[test]
    fn a_failed_non_critical_invariant_is_an_slo_breach() {
        assert_eq!(of("fast_latency_p99", false, "fail"), Some(Class::SloBreach));
        assert_eq!(of("fast_latency_p99", false, "warn"), None);
        assert_eq!(of("recovery_time", false, "skipped"), None);
        assert_eq!(Class::SloBreach.action(), Action::Alert);
    }

    fn deviation(class: Class) -> Deviation {
        Deviation {
            action: class.action(),
            class,
            detail: String::new(),
            entry: 0,
            scenario: "s".into(),
            seed: "1".into(),
        }
    }

    #[test]
    fn status_rules() {
        let clean = ByOutcome { pass: 2, ..ByOutcome::default() };
        assert_eq!(status(&clean, PPM_ONE, 2, &[]), (Outcome::Pass, vec![]));

        let (outcome, why) = status(&ByOutcome::default(), PPM_ONE, 0, &[]);
        assert_eq!((outcome, why), (Outcome::PassWithConditions, vec!["no certification in the window".to_string()]));

        let conditional = ByOutcome { pass: 1, pass_with_conditions: 1, ..ByOutcome::default() };
        assert_eq!(status(&conditional, PPM_ONE, 2, &[]).0, Outcome::PassWithConditions);
        let alert = [deviation(Class::SloBreach)];
        let (outcome, why) = status(&clean, PPM_ONE, 2, &alert);
        assert_eq!(outcome, Outcome::PassWithConditions);
        assert_eq!(why, ["1 deviation to alert and investigate (slo_breach)"]);

        for class in [Class::SignatureVerificationFailure, Class::CostCeilingBreach, Class::ComplianceFailure] {
            assert_eq!(status(&clean, PPM_ONE, 2, &[deviation(class)]).0, Outcome::Fail, "{class:?}");
        }
        let failed = ByOutcome { pass: 1, fail: 1, ..ByOutcome::default() };
        assert_eq!(status(&failed, PPM_ONE, 2, &[]), (Outcome::Fail, vec!["1 certification FAIL".to_string()]));
        let (outcome, why) = status(&clean, 500_000, 2, &[]);
        assert_eq!(outcome, Outcome::Fail);
        assert_eq!(why, ["signature validation rate 50.00 % (must be 100 %)"]);
    }
}
