//! The attestation for people: Markdown in the shape of seed 003's weekly attestation (2.2),
//! rendered from the signed predicate alone, so that `verify` renders it again and requires
//! the same bytes.

use super::{Class, WeeklyPredicate, PPM_ONE};
use std::fmt::Write;

/// A ratio in ppm as a percentage with two decimals, rounded down: `99.99 %`.
pub fn percent(ppm: u64) -> String {
    format!("{}.{:02} %", ppm / 10_000, (ppm % 10_000) / 100)
}

/// `attestation-YYYY-MM-DD.md`, dated by the window's end (UTC).
pub fn markdown_name(p: &WeeklyPredicate) -> String {
    format!("attestation-{}.md", date(p))
}

fn date(p: &WeeklyPredicate) -> &str {
    p.window.until.get(..10).unwrap_or(&p.window.until)
}

/// Text for a table cell: no pipe or line break breaks the table.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\r', '\n'], " ")
}

/// What the status means for production (seed 003, 2.2).
fn meaning(status: &str) -> &'static str {
    match status {
        "PASS" => "production continues as normal",
        "PASS WITH CONDITIONS" => "production continues with monitoring conditions",
        _ => "production paused, immediate escalation",
    }
}

/// The attestation as Markdown.
pub fn markdown(p: &WeeklyPredicate) -> String {
    let mut out = String::new();
    header(&mut out, p);
    outcomes(&mut out, p);
    signatures(&mut out, p);
    economic(&mut out, p);
    determinism(&mut out, p);
    deviations(&mut out, p);
    entries(&mut out, p);
    how_to_verify(&mut out);
    out
}

fn header(out: &mut String, p: &WeeklyPredicate) {
    let _ = writeln!(out, "# Weekly attestation {}\n", date(p));
    let _ = writeln!(out, "- Window: {} (inclusive) to {} (exclusive), UTC", p.window.since, p.window.until);
    let _ = writeln!(
        out,
        "- Certification log: `{}`, {} entries, Merkle root `{}` (verified with its signed checkpoints)",
        p.log.path, p.log.size, p.log.root
    );
    let _ = writeln!(out, "- Certifications in the window: {}", p.entries.len());
    let _ = writeln!(out, "\n**Status: {}**: {}.\n", p.status, meaning(&p.status));
    if !p.conditions.is_empty() {
        let _ = writeln!(out, "{}:\n", if p.status == "FAIL" { "Reasons" } else { "Conditions" });
        for condition in &p.conditions {
            let _ = writeln!(out, "- {condition}");
        }
        out.push('\n');
    }
}

fn outcomes(out: &mut String, p: &WeeklyPredicate) {
    let b = &p.by_outcome;
    out.push_str("## Certifications by outcome\n\n| Outcome | Certifications |\n| --- | ---: |\n");
    let _ = writeln!(out, "| PASS | {} |", b.pass);
    let _ = writeln!(out, "| PASS WITH CONDITIONS | {} |", b.pass_with_conditions);
    let _ = writeln!(out, "| FAIL | {} |", b.fail);
    let _ = writeln!(out, "| total | {} |\n", p.entries.len());
}

fn signatures(out: &mut String, p: &WeeklyPredicate) {
    let verified = p.entries.iter().filter(|e| e.verified).count();
    let verdict = if p.signature_validation_ppm == PPM_ONE { "as required" } else { "**below the requirement**" };
    let _ = writeln!(
        out,
        "## Signature validation rate\n\n{verified} of {} bundles re-verified (Ed25519 signature by a trusted key, \
         every file digest, every invariant recomputed) and found to be the certificate the log lists: **{}** \
         (must be 100 %; {verdict}).\n",
        p.entries.len(),
        percent(p.signature_validation_ppm)
    );
}

fn economic(out: &mut String, p: &WeeklyPredicate) {
    out.push_str(
        "## Economic safety\n\nVerdicts across the verified certifications (ADR-012: per-task cost ceiling, daily \
         budget, daily rate limits).\n\n| Invariant | pass | warn | fail | skipped |\n\
         | --- | ---: | ---: | ---: | ---: |\n",
    );
    for t in &p.economic_safety {
        let _ = writeln!(out, "| `{}` | {} | {} | {} | {} |", t.id, t.pass, t.warn, t.fail, t.skipped);
    }
    out.push('\n');
}

fn determinism(out: &mut String, p: &WeeklyPredicate) {
    let rate = p.determinism_ppm.map_or_else(|| "n/a (no verified certification)".to_string(), percent);
    let r = &p.replay_agreement;
    let _ = writeln!(
        out,
        "## Determinism\n\n- Determinism rate: **{rate}** of the verified certifications pass `determinism` \
         (target >= 95 %)\n- Replay agreement: {} of {} replays gave their run's Merkle root\n",
        r.matching, r.replays
    );
}

fn deviations(out: &mut String, p: &WeeklyPredicate) {
    out.push_str("## Deviations\n\n");
    if p.deviations.is_empty() {
        out.push_str("None.\n\n");
        return;
    }
    out.push_str(
        "| Entry | Scenario | Seed | Class | SLA | Action | Detail |\n| ---: | --- | ---: | --- | --- | --- | --- |\n",
    );
    for d in &p.deviations {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            d.entry,
            cell(&d.scenario),
            cell(&d.seed),
            d.class.as_str(),
            d.class.sla(),
            d.action.meaning(),
            cell(&d.detail)
        );
    }
    out.push_str("\nSLA and action by class (seed 003, 3.1):\n\n");
    for class in [
        Class::SignatureVerificationFailure,
        Class::CostCeilingBreach,
        Class::ComplianceFailure,
        Class::DeterminismThresholdFailure,
        Class::SloBreach,
    ] {
        let _ = writeln!(out, "- `{}`: {}, {}", class.as_str(), class.sla(), class.action().meaning());
    }
    out.push('\n');
}

fn entries(out: &mut String, p: &WeeklyPredicate) {
    out.push_str("## Certifications\n\n");
    if p.entries.is_empty() {
        out.push_str("No certification in the window.\n\n");
        return;
    }
    out.push_str(
        "| # | Time | Scenario | Seed | Outcome | Score | Verified | Bundle |\n\
         | ---: | --- | --- | ---: | --- | ---: | --- | --- |\n",
    );
    for e in &p.entries {
        let verified = match &e.reason {
            None if e.verified => "yes".to_string(),
            None => "no".to_string(),
            Some(reason) => format!("no: {}", cell(reason)),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | `{}` |",
            e.index,
            cell(&e.time),
            cell(&e.scenario),
            cell(&e.seed),
            cell(&e.outcome),
            cell(&e.score),
            verified,
            cell(&e.bundle)
        );
    }
    out.push('\n');
}

fn how_to_verify(out: &mut String) {
    out.push_str(
        "## How to verify\n\n```\nseedcore verify <this directory> --pubkey <signer>.pub\n```\n\nThe signature of \
         `attestation.dsse.json` is checked, this file and `attestation.json` are regenerated from the signed \
         statement and compared byte for byte, and every bundle listed above is verified again (paths relative to \
         this directory) to recompute every figure. The keys given must trust the attestation's signer and the \
         certifications' signers.\n",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::{Action, ByOutcome, Deviation, EntryRow, LogRef, ReplayAgreement, VerdictTally, Window};

    fn predicate() -> WeeklyPredicate {
        WeeklyPredicate {
            by_outcome: ByOutcome { fail: 0, pass: 1, pass_with_conditions: 0 },
            conditions: vec!["1 deviation to alert and investigate (slo_breach)".into()],
            determinism_ppm: Some(PPM_ONE),
            deviations: vec![Deviation {
                action: Action::Alert,
                class: Class::SloBreach,
                detail: "fast_latency_p99: fail (250 ms | tail, threshold <= 200 ms)".into(),
                entry: 7,
                scenario: "azure".into(),
                seed: "42".into(),
            }],
            economic_safety: vec![VerdictTally { fail: 0, id: "cost_ceiling".into(), pass: 1, skipped: 0, warn: 0 }],
            entries: vec![EntryRow {
                bundle: "../bundles/azure-42".into(),
                envelope_sha256: "ab".repeat(32),
                index: 7,
                key_id: "cd".repeat(32),
                outcome: "PASS".into(),
                reason: None,
                scenario: "azure".into(),
                score: "96.00".into(),
                seed: "42".into(),
                time: "2026-12-02T10:00:00Z".into(),
                verified: true,
            }],
            log: LogRef { path: "../log".into(), root: "ef".repeat(32), size: 9 },
            replay_agreement: ReplayAgreement { matching: 2, replays: 2 },
            signature_validation_ppm: PPM_ONE,
            status: "PASS WITH CONDITIONS".into(),
            window: Window { since: "2026-11-30T00:00:00Z".into(), until: "2026-12-07T00:00:00Z".into() },
        }
    }

    #[test]
    fn the_markdown_is_a_function_of_the_predicate() {
        let p = predicate();
        let text = markdown(&p);
        assert_eq!(text, markdown(&p.clone()), "the same predicate renders the same bytes");
        assert!(text.starts_with("# Weekly attestation 2026-12-07\n"), "{text}");
        assert_eq!(markdown_name(&p), "attestation-2026-12-07.md");
        assert!(text.contains("**Status: PASS WITH CONDITIONS**"), "{text}");
        assert!(text.contains("| 7 | azure | 42 | slo_breach | 24 h | alert and investigate |"), "{text}");
        assert!(text.contains("250 ms \\| tail"), "a pipe in a cell is escaped: {text}");
        assert!(text.contains("`../bundles/azure-42`"), "{text}");
        assert!(text.contains("**100.00 %** (must be 100 %"), "{text}");
        let mut other = p;
        other.signature_validation_ppm = 999_999;
        assert!(markdown(&other).contains("**99.99 %**"), "a rate short of 100 % never reads as 100 %");
    }

    #[test]
    fn percentages_round_down() {
        assert_eq!(percent(PPM_ONE), "100.00 %");
        assert_eq!(percent(954_999), "95.49 %");
        assert_eq!(percent(0), "0.00 %");
    }
}
