//! The certification log (docs/certification.md 8.6): one entry per certification, PASS,
//! PASS WITH CONDITIONS and FAIL alike, in `entries.jsonl`; an RFC 6962 Merkle tree over
//! the entries' canonical bytes; a signed checkpoint (size, root, time) after each append
//! in `checkpoints.jsonl`; and a lock file so that concurrent certifies append in turn.

use crate::certify::{file_sha256, CERTIFICATE};
use crate::dsse::{self, Envelope};
use crate::keys::Keyring;
use crate::merkle::{consistency_proof, leaf_hash, root_of_hashes, verify_consistency};
use crate::statement::{Predicate, Statement};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The entries, one canonical JSON object per line.
pub const ENTRIES: &str = "entries.jsonl";
/// The signed checkpoints, one DSSE envelope per line.
pub const CHECKPOINTS: &str = "checkpoints.jsonl";
/// Held (an exclusive `flock`) while an append is under way.
pub const LOCK: &str = "log.lock";
/// The payload type of a signed checkpoint.
pub const CHECKPOINT_TYPE: &str = "application/vnd.seedcore.log-checkpoint+json";
/// The `log` field of every checkpoint: what it is a checkpoint of.
pub const LOG_ID: &str = "seedcore certification log v1";

/// The signed state of the log after an append: its size and Merkle root, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub log: String,
    pub size: u64,
    /// RFC 6962 Merkle tree hash over the first `size` entries' lines, hex.
    pub root: String,
    /// UTC, RFC 3339 to the second.
    pub time: String,
}

/// One certification: a line of `entries.jsonl`, whose RFC 8785 bytes are its Merkle leaf.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Position in the log, from 0.
    pub index: u64,
    /// When the certification was appended, UTC, RFC 3339 to the second.
    pub time: String,
    pub scenario: String,
    pub scenario_sha256: String,
    /// Decimal.
    pub seed: String,
    /// `PASS`, `PASS WITH CONDITIONS` or `FAIL`.
    pub outcome: String,
    /// Out of 100, two decimals.
    pub score: String,
    /// The signing key's id.
    pub key_id: String,
    /// SHA-256 of `certificate.dsse.json`.
    pub envelope_sha256: String,
    /// The bundle's directory: relative to the log's directory (`/`-separated) when it is
    /// below the same root, absolute otherwise.
    pub bundle: String,
    /// SHA-256 of the executable that certified.
    pub build_sha256: String,
}

/// Where an entry's bundle is, as a path usable from the current directory.
pub fn bundle_path(log: &Path, entry: &Entry) -> PathBuf {
    let bundle = Path::new(&entry.bundle);
    if bundle.is_absolute() {
        return bundle.to_path_buf();
    }
    // `out/log` and `../azure-conv-7` give `out/azure-conv-7`, not `out/log/../azure-conv-7`.
    let mut path = log.to_path_buf();
    for part in bundle.components() {
        match part {
            std::path::Component::ParentDir if path.file_name().is_some_and(|n| n != "..") => {
                path.pop();
            }
            other => path.push(other),
        }
    }
    if path.as_os_str().is_empty() {
        path.push(".");
    }
    path
}

/// A log that cannot be read or appended to, naming the file and line.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Not there, not readable, not writable (exit 2 for a path the user gave).
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// Read, and wrong: a malformed or altered line, a bad signature, a tree that does not
    /// match (exit 4).
    #[error("{path}:{line}: {message}")]
    Rejected { path: String, line: usize, message: String },
}

/// Reads every entry of the log in `log` (none when the log has no entries file yet); a
/// line that does not parse, or whose index is not its position, is rejected naming it.
pub fn read_entries(log: &Path) -> Result<Vec<Entry>, LogError> {
    let (path, text) = entries_text(log)?;
    parse_entries(&path, &text)
}

/// The entries file and its text (empty when there is no entries file yet).
fn entries_text(log: &Path) -> Result<(PathBuf, String), LogError> {
    let path = log.join(ENTRIES);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((path, text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((path, String::new())),
        Err(e) => Err(LogError::Io { path: path.display().to_string(), message: e.to_string() }),
    }
}

fn parse_entries(path: &Path, text: &str) -> Result<Vec<Entry>, LogError> {
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let rejected =
            |message: String| LogError::Rejected { path: path.display().to_string(), line: number + 1, message };
        let entry: Entry = serde_json::from_str(line).map_err(|e| rejected(format!("not a log entry: {e}")))?;
        if entry.index != number as u64 {
            return Err(rejected(format!("entry {} at position {number}", entry.index)));
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// `target` as a path relative to the directory `base` (`/`-separated, with `..` where
/// needed), when both resolve below one root; otherwise `target` absolute. Both must exist.
pub fn relative_to(base: &Path, target: &Path) -> std::io::Result<String> {
    let base = base.canonicalize()?;
    let target = target.canonicalize()?;
    let (b, t): (Vec<_>, Vec<_>) = (base.components().collect(), target.components().collect());
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return Ok(target.display().to_string());
    }
    let mut parts: Vec<String> = vec!["..".to_string(); b.len() - common];
    parts.extend(t[common..].iter().map(|c| c.as_os_str().to_string_lossy().into_owned()));
    Ok(if parts.is_empty() { ".".to_string() } else { parts.join("/") })
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> LogError {
    LogError::Io { path: path.display().to_string(), message: e.to_string() }
}

fn rejected(path: &Path, line: usize, message: impl Into<String>) -> LogError {
    LogError::Rejected { path: path.display().to_string(), line, message: message.into() }
}

/// The canonical bytes of an entry: its line in `entries.jsonl` and its Merkle leaf.
fn entry_bytes(entry: &Entry) -> Vec<u8> {
    let value = serde_json::to_value(entry).expect("an entry always serialises");
    crate::jcs::canonical(&value).expect("an entry holds strings and integers only")
}

/// A signed checkpoint as read back, with the key that signed it.
#[derive(Clone, Debug)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub key_id: String,
    /// The envelope as one JSON line (what `--since` takes, saved to a file).
    pub line: String,
}

/// Reads a checkpoint envelope: parsed, and, with a keyring, its signature verified.
fn parse_checkpoint(text: &str, keyring: Option<&Keyring>) -> Result<SignedCheckpoint, String> {
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| format!("not a DSSE envelope: {e}"))?;
    let (payload, key_id) = match keyring {
        Some(keyring) => {
            let verified = dsse::verify_as(&envelope, CHECKPOINT_TYPE, keyring).map_err(|e| e.to_string())?;
            (verified.payload, verified.keyid)
        }
        None => {
            use base64::Engine;
            let payload = base64::engine::general_purpose::STANDARD
                .decode(&envelope.payload)
                .map_err(|_| "the payload is not valid base64".to_string())?;
            (payload, envelope.signatures.first().map(|s| s.keyid.clone()).unwrap_or_default())
        }
    };
    if !crate::jcs::is_canonical(&payload) {
        return Err("the checkpoint is not in RFC 8785 canonical form".into());
    }
    let checkpoint: Checkpoint = serde_json::from_slice(&payload).map_err(|e| format!("not a log checkpoint: {e}"))?;
    if checkpoint.log != LOG_ID {
        return Err(format!("a checkpoint of {:?}, not of {LOG_ID:?}", checkpoint.log));
    }
    let line = serde_json::to_string(&envelope).expect("an envelope always serialises");
    Ok(SignedCheckpoint { checkpoint, key_id, line })
}

/// Every checkpoint of the log, in order (signatures checked with a keyring).
fn read_checkpoints(log: &Path, keyring: Option<&Keyring>) -> Result<Vec<SignedCheckpoint>, LogError> {
    let path = log.join(CHECKPOINTS);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(&path, e)),
    };
    let mut out: Vec<SignedCheckpoint> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let signed = parse_checkpoint(line, keyring).map_err(|m| rejected(&path, number + 1, m))?;
        if let Some(before) = out.last() {
            if signed.checkpoint.size <= before.checkpoint.size {
                return Err(rejected(
                    &path,
                    number + 1,
                    format!("size {} after size {}: a log only grows", signed.checkpoint.size, before.checkpoint.size),
                ));
            }
        }
        out.push(signed);
    }
    Ok(out)
}

/// The log as verified: its entries, their leaf hashes, its signed checkpoints.
#[derive(Clone, Debug)]
pub struct LogState {
    pub entries: Vec<Entry>,
    pub hashes: Vec<[u8; 32]>,
    pub checkpoints: Vec<SignedCheckpoint>,
    pub size: u64,
    /// The Merkle root over every entry, hex.
    pub root: String,
}

/// Reads the log and checks that each checkpoint's root is the tree of its first `size`
/// entries, that the last covers every entry, and (with a keyring) every signature.
fn read_log(log: &Path, keyring: Option<&Keyring>) -> Result<LogState, LogError> {
    // One read of the file: the lines parsed and hashed are the same bytes.
    let (path, text) = entries_text(log)?;
    let entries = parse_entries(&path, &text)?;
    let mut hashes = Vec::with_capacity(entries.len());
    for ((number, line), entry) in text.lines().enumerate().zip(&entries) {
        if line.as_bytes() != entry_bytes(entry).as_slice() {
            return Err(rejected(
                &path,
                number + 1,
                format!("entry {} is not as appended (not canonical)", entry.index),
            ));
        }
        hashes.push(leaf_hash(line.as_bytes()));
    }
    let checkpoints = read_checkpoints(log, keyring)?;
    let checkpoints_path = log.join(CHECKPOINTS);
    for (number, signed) in checkpoints.iter().enumerate() {
        let size = signed.checkpoint.size;
        if size > hashes.len() as u64 {
            return Err(rejected(
                &checkpoints_path,
                number + 1,
                format!("signs {size} entries, the log holds {}: entries were removed", hashes.len()),
            ));
        }
        let root = hex::encode(root_of_hashes(&hashes[..size as usize]));
        if root != signed.checkpoint.root {
            let first = number.checked_sub(1).map_or(0, |i| checkpoints[i].checkpoint.size);
            return Err(rejected(
                &path,
                first as usize + 1,
                format!(
                    "entries {first}..{size} do not give the signed root of checkpoint {} (line {}): an entry was \
                     altered",
                    number + 1,
                    number + 1
                ),
            ));
        }
    }
    let covered = checkpoints.last().map_or(0, |c| c.checkpoint.size);
    if covered != hashes.len() as u64 {
        return Err(rejected(
            &path,
            covered as usize + 1,
            format!("entries {covered}..{} are not covered by a signed checkpoint", hashes.len()),
        ));
    }
    let root = hex::encode(root_of_hashes(&hashes));
    Ok(LogState { size: entries.len() as u64, entries, hashes, checkpoints, root })
}

/// `seedcore log verify`'s first half: the tree and every checkpoint signature.
pub fn verify_log(log: &Path, keyring: &Keyring) -> Result<LogState, LogError> {
    if !log.join(ENTRIES).is_file() {
        return Err(io_error(&log.join(ENTRIES), "no certification log here (certify --log DIR writes one)"));
    }
    read_log(log, Some(keyring))
}

/// Checks that the log can take an append (its tree matches its last checkpoint), before a
/// certification runs: a log that was tampered with is reported before, not after, the run.
pub fn check_appendable(log: &Path) -> Result<u64, LogError> {
    read_log(log, None).map(|state| state.size)
}

/// `--since`: an older checkpoint (a file holding one envelope, as a line of
/// `checkpoints.jsonl`), verified, and the RFC 6962 consistency proof that it is a prefix
/// of the log now. Returns the checkpoint and the proof's length.
pub fn prove_since(state: &LogState, file: &Path, keyring: &Keyring) -> Result<(Checkpoint, usize), LogError> {
    let text = std::fs::read_to_string(file).map_err(|e| io_error(file, e))?;
    let old = parse_checkpoint(text.trim(), Some(keyring)).map_err(|m| rejected(file, 1, m))?.checkpoint;
    if old.size > state.size {
        return Err(rejected(file, 1, format!("signs {} entries, the log holds {}: it was cut", old.size, state.size)));
    }
    let old_root = decode_root(&old.root).ok_or_else(|| rejected(file, 1, "the root is not a hex SHA-256"))?;
    let new_root = root_of_hashes(&state.hashes);
    let proof = consistency_proof(&state.hashes, old.size as usize);
    if !verify_consistency(old.size, state.size, &old_root, &new_root, &proof) {
        return Err(rejected(
            file,
            1,
            format!(
                "the log of {} entries is not an extension of this checkpoint of {}: it was rewritten",
                state.size, old.size
            ),
        ));
    }
    Ok((old, proof.len()))
}

fn decode_root(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok().and_then(|b| <[u8; 32]>::try_from(b).ok())
}

/// What a log (or an attestation) lists about a certification, to check its bundle by.
pub struct Listed<'a> {
    pub envelope_sha256: &'a str,
    pub scenario: &'a str,
    pub seed: &'a str,
    pub outcome: &'a str,
    pub score: &'a str,
    pub key_id: &'a str,
}

impl<'a> From<&'a Entry> for Listed<'a> {
    fn from(e: &'a Entry) -> Listed<'a> {
        Listed {
            envelope_sha256: &e.envelope_sha256,
            scenario: &e.scenario,
            seed: &e.seed,
            outcome: &e.outcome,
            score: &e.score,
            key_id: &e.key_id,
        }
    }
}

/// The verified predicate of the bundle in `bundle`, or why there is none: missing, another
/// certificate than the one listed, rejected by `verify_bundle`, or certifying something
/// else than listed. The reasons name no path outside the bundle, so that one bundle reached
/// from a log or from an attestation gives the same words.
pub fn check_bundle(bundle: &Path, listed: &Listed<'_>, keyring: &Keyring) -> Result<Predicate, String> {
    use crate::verify::{verify_bundle, VerifyError};
    if !bundle.is_dir() {
        return Err("bundle missing".to_string());
    }
    let certificate = bundle.join(CERTIFICATE);
    if !certificate.is_file() {
        return Err(format!("bundle without {CERTIFICATE}"));
    }
    let digest = file_sha256(&certificate).map_err(|e| format!("{CERTIFICATE}: cannot read: {e}"))?;
    if digest != listed.envelope_sha256 {
        return Err(format!(
            "{CERTIFICATE} has SHA-256 {digest}, the log lists {}: not the certified bundle",
            listed.envelope_sha256
        ));
    }
    let shown = bundle.display().to_string();
    let verification = verify_bundle(bundle, keyring, None).map_err(|error| match error {
        VerifyError::Unreadable { message, .. } => format!("bundle unreadable: {message}"),
        VerifyError::Rejected(message) => format!("bundle rejected: {}", message.replace(&shown, "<bundle>")),
    })?;
    let p = verification.statement.predicate;
    let stated = [
        ("scenario", listed.scenario, p.scenario.name.as_str()),
        ("seed", listed.seed, &p.seed),
        ("outcome", listed.outcome, &p.outcome),
        ("score", listed.score, &p.score),
        ("key id", listed.key_id, &p.signer.keyid),
    ];
    if let Some((what, logged, certified)) = stated.iter().find(|(_, logged, certified)| logged != certified) {
        return Err(format!("the log lists {what} {logged}, the certificate states {certified}"));
    }
    Ok(p)
}

/// Appends a certification to the log in `log` (created when missing) and signs the new
/// checkpoint with `key`, holding the log's lock throughout: concurrent certifies append
/// one after the other. Refuses a log whose tree does not match its last checkpoint.
pub fn append(log: &Path, bundle: &Path, statement: &Statement, key: &SigningKey) -> Result<Entry, LogError> {
    std::fs::create_dir_all(log).map_err(|e| io_error(log, e))?;
    let lock_path = log.join(LOCK);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io_error(&lock_path, e))?;
    lock.lock().map_err(|e| io_error(&lock_path, e))?;
    let state = read_log(log, None)?;
    let envelope = bundle.join(CERTIFICATE);
    let p = &statement.predicate;
    let entry = Entry {
        index: state.size,
        time: crate::clock::now(),
        scenario: p.scenario.name.clone(),
        scenario_sha256: p.scenario.sha256.clone(),
        seed: p.seed.clone(),
        outcome: p.outcome.clone(),
        score: p.score.clone(),
        key_id: p.signer.keyid.clone(),
        envelope_sha256: file_sha256(&envelope).map_err(|e| io_error(&envelope, e))?,
        bundle: relative_to(log, bundle).map_err(|e| io_error(bundle, e))?,
        build_sha256: p.engine.build_sha256.clone(),
    };
    let line = entry_bytes(&entry);
    let mut hashes = state.hashes;
    hashes.push(leaf_hash(&line));
    let checkpoint = Checkpoint {
        log: LOG_ID.into(),
        size: hashes.len() as u64,
        root: hex::encode(root_of_hashes(&hashes)),
        time: entry.time.clone(),
    };
    let payload = crate::jcs::canonical(&serde_json::to_value(&checkpoint).expect("a checkpoint serialises"))
        .expect("a checkpoint holds strings and integers only");
    let signed = serde_json::to_string(&dsse::sign(CHECKPOINT_TYPE, &payload, key)).expect("an envelope serialises");
    append_line(&log.join(ENTRIES), &line)?;
    append_line(&log.join(CHECKPOINTS), signed.as_bytes())?;
    drop(lock);
    Ok(entry)
}

/// Appends one line and syncs it to disk.
fn append_line(path: &Path, line: &[u8]) -> Result<(), LogError> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| io_error(path, e))?;
    let mut bytes = line.to_vec();
    bytes.push(b'\n');
    file.write_all(&bytes).and_then(|()| file.sync_data()).map_err(|e| io_error(path, e))
}
