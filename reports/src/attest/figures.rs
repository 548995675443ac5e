//! Every figure of an attestation, computed once: a certification's bundle re-verified
//! (`check`), then the window's figures, deviations and status from the certifications so
//! checked (`predicate`). `attest` states what these return; `verify_attestation` calls
//! them again on the bundles an attestation names and compares.

use super::classify::{classify, status, Finding, ECONOMIC};
use super::{ByOutcome, Deviation, EntryRow, LogRef, ReplayAgreement, VerdictTally, WeeklyPredicate, Window, PPM_ONE};
use crate::keys::Keyring;
use crate::model::Outcome;
use crate::statement::Predicate;
use std::path::Path;

/// One certification of the window with its bundle re-verified.
pub(super) struct Checked {
    /// `verified` and `reason` as found.
    pub row: EntryRow,
    /// The verified certificate's predicate; none when it did not verify.
    pub predicate: Option<Predicate>,
}

/// Re-verifies the bundle in `bundle` of the certification `row` describes, against
/// `keyring`, and records what was found in the row.
pub(super) fn check(mut row: EntryRow, bundle: &Path, keyring: &Keyring) -> Checked {
    let found = verified_predicate(&row, bundle, keyring);
    row.verified = found.is_ok();
    row.reason = found.as_ref().err().cloned();
    Checked { row, predicate: found.ok() }
}

/// The bundle's verified predicate, or why there is none (`certlog::check_bundle`).
fn verified_predicate(row: &EntryRow, bundle: &Path, keyring: &Keyring) -> Result<Predicate, String> {
    let listed = crate::certlog::Listed {
        envelope_sha256: &row.envelope_sha256,
        scenario: &row.scenario,
        seed: &row.seed,
        outcome: &row.outcome,
        score: &row.score,
        key_id: &row.key_id,
    };
    crate::certlog::check_bundle(bundle, &listed, keyring)
}

/// `numerator / denominator` in ppm, rounded down (so a rate just short of 100 % never
/// reads as 100 %); none for an empty denominator.
fn ppm(numerator: usize, denominator: usize) -> Option<u64> {
    if denominator == 0 {
        return None;
    }
    Some(numerator as u64 * PPM_ONE / denominator as u64)
}

/// The verdict of invariant `id` in a certificate.
fn verdict<'a>(p: &'a Predicate, id: &str) -> Option<&'a str> {
    p.invariants.iter().find(|row| row.id == id).map(|row| row.verdict.as_str())
}

fn by_outcome(rows: &[&EntryRow]) -> ByOutcome {
    let mut tally = ByOutcome::default();
    for row in rows {
        match Outcome::parse(&row.outcome) {
            Some(Outcome::Pass) => tally.pass += 1,
            Some(Outcome::PassWithConditions) => tally.pass_with_conditions += 1,
            Some(Outcome::Fail) => tally.fail += 1,
            None => {}
        }
    }
    tally
}

fn tally(id: &str, verified: &[&Predicate]) -> VerdictTally {
    let mut tally = VerdictTally { fail: 0, id: id.to_string(), pass: 0, skipped: 0, warn: 0 };
    for p in verified {
        match verdict(p, id) {
            Some("pass") => tally.pass += 1,
            Some("warn") => tally.warn += 1,
            Some("fail") => tally.fail += 1,
            Some("skipped") => tally.skipped += 1,
            _ => {}
        }
    }
    tally
}

/// What a certification showed that may be a deviation, with the words that describe it.
fn findings(c: &Checked) -> Vec<(Finding<'_>, String)> {
    let Some(p) = &c.predicate else {
        let reason = c.row.reason.clone().unwrap_or_default();
        return vec![(Finding::Unverified, reason)];
    };
    let invariants = p.invariants.iter().map(|row| {
        let detail = format!("{}: {} ({}, threshold {})", row.id, row.verdict, row.observed, row.threshold);
        (Finding::Invariant(row), detail)
    });
    let changes = p.policy_changes.iter().map(|change| {
        let detail = format!(
            "policy {}.{} {} -> {} ({})",
            change.invariant, change.setting, change.default, change.value, change.effect
        );
        (Finding::PolicyChange { effect: change.effect.as_str() }, detail)
    });
    invariants.chain(changes).collect()
}

/// Every deviation of the window, by certification in log order.
fn deviations(checked: &[Checked]) -> Vec<Deviation> {
    let mut found = Vec::new();
    for c in checked {
        for (finding, detail) in findings(c) {
            let Some(class) = classify(finding) else { continue };
            found.push(Deviation {
                action: class.action(),
                class,
                detail,
                entry: c.row.index,
                scenario: c.row.scenario.clone(),
                seed: c.row.seed.clone(),
            });
        }
    }
    found
}

/// The predicate of an attestation of `window` over `log`, from its certifications as
/// checked, in log order.
pub(super) fn predicate(window: Window, log: LogRef, checked: Vec<Checked>) -> WeeklyPredicate {
    let rows: Vec<&EntryRow> = checked.iter().map(|c| &c.row).collect();
    let verified: Vec<&Predicate> = checked.iter().filter_map(|c| c.predicate.as_ref()).collect();
    let by_outcome = by_outcome(&rows);
    let signature_validation_ppm = ppm(verified.len(), rows.len()).unwrap_or(PPM_ONE);
    let deterministic = verified.iter().filter(|p| verdict(p, "determinism") == Some("pass")).count();
    let replay_agreement = ReplayAgreement {
        matching: verified.iter().map(|p| p.determinism.matching).sum(),
        replays: verified.iter().map(|p| p.determinism.replays.len() as u64).sum(),
    };
    let economic_safety = ECONOMIC.iter().map(|id| tally(id, &verified)).collect();
    let deviations = deviations(&checked);
    let (status, conditions) = status(&by_outcome, signature_validation_ppm, rows.len(), &deviations);
    let determinism_ppm = ppm(deterministic, verified.len());
    WeeklyPredicate {
        by_outcome,
        conditions,
        determinism_ppm,
        deviations,
        economic_safety,
        entries: checked.into_iter().map(|c| c.row).collect(),
        log,
        replay_agreement,
        signature_validation_ppm,
        status: status.as_str().to_string(),
        window,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::{Action, Class};

    fn row(index: u64, outcome: &str) -> EntryRow {
        EntryRow {
            bundle: format!("../bundles/{index}"),
            envelope_sha256: "0".repeat(64),
            index,
            key_id: "k".into(),
            outcome: outcome.into(),
            reason: None,
            scenario: "azure".into(),
            score: "97.50".into(),
            seed: index.to_string(),
            time: "2026-12-01T00:00:00Z".into(),
            verified: false,
        }
    }

    #[test]
    fn a_missing_bundle_is_a_signature_failure_that_halts() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = Keyring::default();
        let checked = vec![
            check(row(3, "PASS"), &dir.path().join("gone"), &keyring),
            check(row(4, "FAIL"), &dir.path().join("gone-too"), &keyring),
        ];
        assert_eq!(checked[0].row.reason.as_deref(), Some("bundle missing"));
        let window = Window { since: "2026-11-30T00:00:00Z".into(), until: "2026-12-07T00:00:00Z".into() };
        let log = LogRef { path: "log".into(), root: "00".repeat(32), size: 5 };
        let p = predicate(window, log, checked);
        assert_eq!(p.signature_validation_ppm, 0);
        assert_eq!(p.by_outcome, ByOutcome { fail: 1, pass: 1, pass_with_conditions: 0 });
        assert_eq!(p.determinism_ppm, None);
        assert_eq!(p.replay_agreement, ReplayAgreement::default());
        assert_eq!(p.deviations.len(), 2);
        assert!(p
            .deviations
            .iter()
            .all(|d| d.class == Class::SignatureVerificationFailure && d.action == Action::Halt));
        assert_eq!((p.deviations[0].entry, p.deviations[1].entry), (3, 4));
        assert_eq!(p.status, "FAIL");
        assert!(p.entries.iter().all(|e| !e.verified && e.reason.is_some()));
    }

    #[test]
    fn ppm_rounds_down_and_knows_no_denominator() {
        assert_eq!(ppm(1, 3), Some(333_333));
        assert_eq!(ppm(999_999, 1_000_000), Some(999_999));
        assert_eq!(ppm(2, 2), Some(PPM_ONE));
        assert_eq!(ppm(0, 0), None);
    }
}
