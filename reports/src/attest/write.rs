//! `attest`: verifies the certification log, takes the certifications of the window,
//! re-verifies each bundle, and writes the attestation (Markdown, pretty statement, signed
//! envelope) under partial names first, the envelope last and never over another: a
//! directory holds a whole attestation or none.

use super::figures::{self, Checked};
use super::render::{markdown, markdown_name};
use super::{AttestationStatement, EntryRow, LogRef, Window, ENVELOPE, PREDICATE_TYPE, STATEMENT};
use crate::certlog::{bundle_path, relative_to, verify_log, Entry, LogError, ENTRIES};
use crate::dsse::{self, IN_TOTO};
use crate::keys::{Keyring, SigningKey};
use crate::statement::{pretty, Subject, STATEMENT_TYPE};
use crate::{clock, jcs};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What an attestation is over and who signs it.
pub struct AttestRequest<'a> {
    /// The certification log's directory.
    pub log: &'a Path,
    /// Start of the window, Unix seconds, inclusive.
    pub since: i64,
    /// End of the window, Unix seconds, exclusive.
    pub until: i64,
    pub key: &'a SigningKey,
    /// The keys trusted for the log's checkpoints and the bundles' certificates.
    pub keyring: &'a Keyring,
    /// The directory to write into (created); one that holds an attestation is refused.
    pub out: &'a Path,
}

/// A written attestation.
#[derive(Debug)]
pub struct Attested {
    pub statement: AttestationStatement,
    pub markdown: PathBuf,
    pub json: PathBuf,
    pub envelope: PathBuf,
}

/// An attestation that was not written.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The arguments cannot be used: an empty window, an output that holds an attestation
    /// (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The certification log does not verify (exit 4), or cannot be read (exit 2).
    #[error("certification log: {0}")]
    Log(#[from] LogError),
    /// Writing the attestation failed (exit 3).
    #[error("{0}")]
    Runtime(String),
}

fn runtime(path: &Path, e: impl std::fmt::Display) -> AttestError {
    AttestError::Runtime(format!("{}: {e}", path.display()))
}

fn refuse_existing(out: &Path) -> AttestError {
    AttestError::Usage(format!(
        "{} already holds an attestation ({ENVELOPE}); nothing overwrites a signed record: give another --out",
        out.display()
    ))
}

/// Attests the certifications of the log in the window, calling `progress(done, total)`
/// after each bundle is re-verified.
pub fn attest(request: &AttestRequest<'_>, progress: &mut dyn FnMut(u64, u64)) -> Result<Attested, AttestError> {
    let AttestRequest { log, since, until, key, keyring, out } = *request;
    if until <= since {
        return Err(AttestError::Usage(format!(
            "the window ends ({}) before it starts ({})",
            clock::format(until),
            clock::format(since)
        )));
    }
    if out.join(ENVELOPE).exists() {
        return Err(refuse_existing(out));
    }
    let state = verify_log(log, keyring)?;
    let size = state.size;
    let root = state.root;
    let window = in_window(log, state.entries, since, until)?;
    std::fs::create_dir_all(out).map_err(|e| runtime(out, e))?;
    let total = window.len() as u64;
    let mut checked: Vec<Checked> = Vec::with_capacity(window.len());
    for (done, entry) in window.iter().enumerate() {
        let bundle = bundle_path(log, entry);
        checked.push(figures::check(row(entry, shown_from(out, &bundle)), &bundle, keyring));
        progress(done as u64 + 1, total);
    }
    let log_ref = LogRef { path: relative_to(out, log).unwrap_or_else(|_| log.display().to_string()), root, size };
    let subject = window
        .iter()
        .map(|entry| Subject {
            name: entry.bundle.clone(),
            digest: BTreeMap::from([("sha256".to_string(), entry.envelope_sha256.clone())]),
        })
        .collect();
    let statement = AttestationStatement {
        statement_type: STATEMENT_TYPE.into(),
        predicate: figures::predicate(
            Window { since: clock::format(since), until: clock::format(until) },
            log_ref,
            checked,
        ),
        predicate_type: PREDICATE_TYPE.into(),
        subject,
    };
    let (markdown, json, envelope) = write_files(out, &statement, key)?;
    Ok(Attested { statement, markdown, json, envelope })
}

/// The log's entries with `since <= time < until`, in log order.
fn in_window(log: &Path, entries: Vec<Entry>, since: i64, until: i64) -> Result<Vec<Entry>, AttestError> {
    let mut selected = Vec::new();
    for entry in entries {
        let time = clock::parse(&entry.time).ok_or_else(|| LogError::Rejected {
            path: log.join(ENTRIES).display().to_string(),
            line: entry.index as usize + 1,
            message: format!("entry {}: time {:?} is not RFC 3339", entry.index, entry.time),
        })?;
        if since <= time && time < until {
            selected.push(entry);
        }
    }
    Ok(selected)
}

/// The bundle's path as the attestation states it: relative to its directory, or absolute
/// (a missing bundle cannot be made relative, and stays missing from anywhere).
fn shown_from(out: &Path, bundle: &Path) -> String {
    relative_to(out, bundle)
        .or_else(|_| std::path::absolute(bundle).map(|p| p.display().to_string()))
        .unwrap_or_else(|_| bundle.display().to_string())
}

/// A log entry as a row, before its bundle is checked.
fn row(entry: &Entry, bundle: String) -> EntryRow {
    EntryRow {
        bundle,
        envelope_sha256: entry.envelope_sha256.clone(),
        index: entry.index,
        key_id: entry.key_id.clone(),
        outcome: entry.outcome.clone(),
        reason: None,
        scenario: entry.scenario.clone(),
        score: entry.score.clone(),
        seed: entry.seed.clone(),
        time: entry.time.clone(),
        verified: false,
    }
}

/// Signs the statement and writes the three files under partial names, then puts them in
/// place, the envelope last and only where there is none: an attestation exists whole or
/// not at all, and none is overwritten.
pub(super) fn write_files(
    out: &Path,
    statement: &AttestationStatement,
    key: &SigningKey,
) -> Result<(PathBuf, PathBuf, PathBuf), AttestError> {
    let value = serde_json::to_value(statement).expect("an attestation statement always serialises");
    let payload = jcs::canonical(&value).map_err(|e| AttestError::Runtime(format!("attestation statement: {e}")))?;
    let envelope = dsse::sign(IN_TOTO, &payload, key);
    let mut envelope_bytes = serde_json::to_vec_pretty(&envelope).expect("an envelope always serialises");
    envelope_bytes.push(b'\n');
    // The statement as `verify` reads it back from the payload, pretty-printed.
    let signed: serde_json::Value = serde_json::from_slice(&payload).expect("canonical bytes parse");
    let markdown_file = markdown_name(&statement.predicate);
    let names = [markdown_file.as_str(), STATEMENT, ENVELOPE];
    let contents = [markdown(&statement.predicate).into_bytes(), pretty(&signed), envelope_bytes];
    for (name, bytes) in names.iter().zip(&contents) {
        if let Err(e) = std::fs::write(partial(out, name), bytes) {
            remove_partials(out, &names);
            return Err(runtime(&partial(out, name), e));
        }
    }
    if out.join(ENVELOPE).exists() {
        remove_partials(out, &names);
        return Err(refuse_existing(out));
    }
    for name in [markdown_file.as_str(), STATEMENT] {
        std::fs::rename(partial(out, name), out.join(name)).map_err(|e| runtime(&out.join(name), e))?;
    }
    // A hard link never replaces an existing file, as a rename would.
    let envelope_path = out.join(ENVELOPE);
    let linked = std::fs::hard_link(partial(out, ENVELOPE), &envelope_path);
    remove_partials(out, &[ENVELOPE]);
    match linked {
        Ok(()) => Ok((out.join(&markdown_file), out.join(STATEMENT), envelope_path)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(refuse_existing(out)),
        Err(e) => Err(runtime(&envelope_path, e)),
    }
}

/// Where a file is written before it is put in place.
fn partial(out: &Path, name: &str) -> PathBuf {
    out.join(format!(".{name}.partial"))
}

/// Removes partial files, if there (a failed write leaves nothing behind).
fn remove_partials(out: &Path, names: &[&str]) {
    for name in names {
        let _ = std::fs::remove_file(partial(out, name));
    }
}
