//! Offline verification of an attestation directory, a numbered checklist as `verify_bundle`
//! is: the envelope and its signature, the canonical payload of this predicate, the two
//! copies for people and machines byte for byte, the window, and then every figure
//! recomputed from the bundles the attestation names. A figure is never taken on trust.

use super::figures::{self, Checked};
use super::render::{markdown, markdown_name};
use super::{AttestationStatement, EntryRow, WeeklyPredicate, ENVELOPE, PREDICATE_TYPE, STATEMENT};
use crate::dsse;
use crate::keys::Keyring;
use crate::statement::{pretty, STATEMENT_TYPE};
use crate::verify::VerifyError;
use crate::{clock, jcs};
use serde::Deserialize;
use std::path::Path;

/// Largest attestation envelope read (a row is under a kilobyte: tens of thousands of
/// certifications fit).
const MAX_ENVELOPE_BYTES: u64 = 32 << 20;

/// An attestation that verified.
#[derive(Debug)]
pub struct AttestationCheck {
    /// What was checked, in order, one line each.
    pub checks: Vec<String>,
    pub statement: AttestationStatement,
    /// The key that signed it and where the trusted copy came from.
    pub keyid: String,
    pub key_source: String,
}

fn reject(message: impl Into<String>) -> VerifyError {
    VerifyError::Rejected(message.into())
}

/// Verifies the attestation in `dir` against `keyring`, which must trust its signer and
/// the signers of the certifications it names.
pub fn verify_attestation(dir: &Path, keyring: &Keyring) -> Result<AttestationCheck, VerifyError> {
    verify_attestation_with(dir, keyring, &mut |_, _| {})
}

/// `verify_attestation`, calling `progress(done, total)` after each bundle is re-verified.
pub fn verify_attestation_with(
    dir: &Path,
    keyring: &Keyring,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<AttestationCheck, VerifyError> {
    if !dir.is_dir() {
        return Err(VerifyError::Unreadable {
            path: dir.display().to_string(),
            message: "not a directory (give the directory attest wrote)".into(),
        });
    }
    let mut checks = Vec::new();
    let (statement, value, verified) = signed_statement(dir, keyring, &mut checks)?;
    let p = &statement.predicate;
    check_copies(dir, p, &value, &mut checks)?;
    check_window(&statement, &mut checks)?;
    let recomputed = recompute(dir, keyring, p, progress);
    compare(p, &recomputed)?;
    let verified_bundles = recomputed.entries.iter().filter(|e| e.verified).count();
    checks.push(format!(
        "figures: all recomputed from the {} bundle(s) named ({verified_bundles} verified), equal to the stated ones",
        p.entries.len()
    ));
    Ok(AttestationCheck { checks, statement, keyid: verified.keyid, key_source: verified.key_source })
}

/// 1 and 2: the envelope as `attest` writes it, a signature by a trusted key, and a
/// canonical in-toto statement of this predicate.
fn signed_statement(
    dir: &Path,
    keyring: &Keyring,
    checks: &mut Vec<String>,
) -> Result<(AttestationStatement, serde_json::Value, dsse::Verified), VerifyError> {
    let verified =
        dsse::read_signed_file(&dir.join(ENVELOPE), ENVELOPE, MAX_ENVELOPE_BYTES, keyring).map_err(reject)?;
    checks.push(format!(
        "signature: Ed25519 (verify_strict) by trusted key {} ({})",
        verified.keyid, verified.key_source
    ));
    if !jcs::is_canonical(&verified.payload) {
        return Err(reject("payload: not in RFC 8785 canonical form (or holds a non-integer number)"));
    }
    let value: serde_json::Value = serde_json::from_slice(&verified.payload).expect("canonical payloads parse");
    if value["predicateType"] != PREDICATE_TYPE {
        return Err(reject(format!("payload: predicateType {} is not {PREDICATE_TYPE:?}", value["predicateType"])));
    }
    let statement = AttestationStatement::deserialize(&value)
        .map_err(|e| reject(format!("payload: not a weekly attestation statement: {e}")))?;
    if statement.statement_type != STATEMENT_TYPE {
        return Err(reject(format!("payload: _type {:?} is not {STATEMENT_TYPE:?}", statement.statement_type)));
    }
    checks.push("payload: canonical JSON (RFC 8785), in-toto Statement v1, seedcore weekly attestation v1".into());
    Ok((statement, value, verified))
}

/// 3. `attestation.json` and the Markdown are the signed statement, byte for byte.
fn check_copies(
    dir: &Path,
    p: &WeeklyPredicate,
    value: &serde_json::Value,
    checks: &mut Vec<String>,
) -> Result<(), VerifyError> {
    let json = std::fs::read(dir.join(STATEMENT)).map_err(|e| reject(format!("{STATEMENT}: cannot read: {e}")))?;
    if json != pretty(value) {
        return Err(reject(format!("{STATEMENT}: differs from the signed statement")));
    }
    let name = markdown_name(p);
    let text = std::fs::read(dir.join(&name)).map_err(|e| reject(format!("{name}: cannot read: {e}")))?;
    if text != markdown(p).into_bytes() {
        return Err(reject(format!("{name}: differs from the Markdown of the signed statement")));
    }
    checks.push(format!("{STATEMENT} and {name}: the signed statement, byte for byte"));
    Ok(())
}

/// A time as `attest` writes it: RFC 3339 UTC to the second.
fn instant(text: &str, what: &str) -> Result<i64, VerifyError> {
    clock::parse(text)
        .filter(|seconds| clock::format(*seconds) == text)
        .ok_or_else(|| reject(format!("{what}: {text:?} is not an RFC 3339 UTC time to the second")))
}

/// 4. The window, the entries in it in log order, one subject per entry with its digest.
fn check_window(statement: &AttestationStatement, checks: &mut Vec<String>) -> Result<(), VerifyError> {
    let p = &statement.predicate;
    let since = instant(&p.window.since, "window.since")?;
    let until = instant(&p.window.until, "window.until")?;
    if until <= since {
        return Err(reject(format!("window: ends at {} before it starts at {}", p.window.until, p.window.since)));
    }
    let mut previous: Option<u64> = None;
    for entry in &p.entries {
        let time = instant(&entry.time, &format!("entry {}: time", entry.index))?;
        if !(since <= time && time < until) {
            return Err(reject(format!("entry {}: time {} is outside the window", entry.index, entry.time)));
        }
        if previous.is_some_and(|before| entry.index <= before) {
            return Err(reject(format!("entry {}: not in log order", entry.index)));
        }
        previous = Some(entry.index);
    }
    if statement.subject.len() != p.entries.len() {
        return Err(reject(format!("subject: {} subjects for {} entries", statement.subject.len(), p.entries.len())));
    }
    for (subject, entry) in statement.subject.iter().zip(&p.entries) {
        if subject.digest.get("sha256") != Some(&entry.envelope_sha256) {
            return Err(reject(format!(
                "subject {}: its digest is not entry {}'s certificate",
                subject.name, entry.index
            )));
        }
    }
    checks.push(format!(
        "window: {} to {}, {} entries in it in log order, one subject each",
        p.window.since,
        p.window.until,
        p.entries.len()
    ));
    Ok(())
}

/// 5. Every bundle named, resolved against `dir`, re-verified; the figures recomputed.
fn recompute(
    dir: &Path,
    keyring: &Keyring,
    p: &WeeklyPredicate,
    progress: &mut dyn FnMut(u64, u64),
) -> WeeklyPredicate {
    let total = p.entries.len() as u64;
    let mut checked: Vec<Checked> = Vec::with_capacity(p.entries.len());
    for (done, stated) in p.entries.iter().enumerate() {
        let row = EntryRow { verified: false, reason: None, ..stated.clone() };
        checked.push(figures::check(row, &dir.join(&stated.bundle), keyring));
        progress(done as u64 + 1, total);
    }
    figures::predicate(p.window.clone(), p.log.clone(), checked)
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("a figure always serialises")
}

/// Step 6: the stated figures against the recomputed ones, the first that differs named.
/// The words of a reason or a deviation's detail are not compared: a bundle's rejection
/// can name paths that depend on where it was reached from.
fn compare(stated: &WeeklyPredicate, recomputed: &WeeklyPredicate) -> Result<(), VerifyError> {
    for (s, r) in stated.entries.iter().zip(&recomputed.entries) {
        if s.verified != r.verified {
            let found = r.reason.as_deref().unwrap_or("its bundle verifies");
            return Err(reject(format!(
                "entry {}: stated verified {}, recomputed {} ({found})",
                s.index, s.verified, r.verified
            )));
        }
    }
    let deviations = |p: &WeeklyPredicate| -> String {
        let list: Vec<String> = p
            .deviations
            .iter()
            .map(|d| format!("entry {} {} ({})", d.entry, d.class.as_str(), d.action.as_str()))
            .collect();
        format!("[{}]", list.join(", "))
    };
    let pairs = [
        ("by_outcome", json(&stated.by_outcome), json(&recomputed.by_outcome)),
        (
            "signature_validation_ppm",
            json(&stated.signature_validation_ppm),
            json(&recomputed.signature_validation_ppm),
        ),
        ("determinism_ppm", json(&stated.determinism_ppm), json(&recomputed.determinism_ppm)),
        ("replay_agreement", json(&stated.replay_agreement), json(&recomputed.replay_agreement)),
        ("economic_safety", json(&stated.economic_safety), json(&recomputed.economic_safety)),
        ("deviations", deviations(stated), deviations(recomputed)),
        ("status", stated.status.clone(), recomputed.status.clone()),
        ("conditions", json(&stated.conditions), json(&recomputed.conditions)),
    ];
    match pairs.iter().find(|(_, s, r)| s != r) {
        Some((name, s, r)) => Err(reject(format!("{name}: stated {s}, recomputed {r}"))),
        None => Ok(()),
    }
}
