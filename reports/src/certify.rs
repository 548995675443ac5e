//! Writes a certification bundle (docs/certification.md 9) into a staging directory that already
//! holds the run's `events.jsonl` and `tasks.csv`: the scenario (and its trace), the signature log,
//! the human reports and plots, then the statement over the digests of all of them, signed into
//! `certificate.dsse.json`. The caller renames the staging directory into place, so a bundle exists
//! whole or not at all.
//!
//! The verdicts are computed from the events as written to disk (not from the run's
//! in-memory totals), with the same code `verify` runs.

use crate::data::{report_data, Provenance};
use crate::dsse::{self, Envelope, IN_TOTO};
use crate::fold::fold_events;
use crate::jcs;
use crate::model::{Outcome, ReportData};
use crate::siglog::signature_log;
use crate::statement::{pretty, statement, BaselineRef, Statement};
use ed25519_dalek::SigningKey;
use seedcore_sim::invariants::{InvariantResult, Replays};
use seedcore_sim::workload::Workload;
use seedcore_sim::Scenario;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The envelope's file name (defined where runs are staged, which never overwrite one).
pub use seedcore_sim::run::CERTIFICATE;
/// The pretty statement's file name.
pub const STATEMENT: &str = "statement.json";

/// A certification that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CertifyError {
    /// Something the user gave cannot be used (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Writing or reading back the bundle failed (exit 3).
    #[error("{0}")]
    Runtime(String),
    /// Something given to check against does not verify: a baseline, the log (exit 4).
    #[error("{0}")]
    Rejected(String),
}

/// Everything a certification needs besides the staged run.
pub struct Certify<'a> {
    pub scenario: &'a Scenario,
    pub seed: u64,
    /// The staging directory with `events.jsonl` and `tasks.csv`.
    pub dir: &'a Path,
    pub replays: &'a Replays,
    pub key: &'a SigningKey,
    pub development_key: bool,
    pub build_sha256: String,
    pub toolchain: crate::model::Toolchain,
    pub baseline: Option<&'a Statement>,
}

/// A written certification.
pub struct Certified {
    pub data: ReportData,
    pub results: Vec<InvariantResult>,
    pub statement: Statement,
}

fn runtime(path: &Path, e: impl std::fmt::Display) -> CertifyError {
    CertifyError::Runtime(format!("{}: {e}", path.display()))
}

/// SHA-256 of a file, hex, streamed.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Every file under `dir`, as sorted `/`-separated relative paths.
pub fn list_files(dir: &Path) -> std::io::Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(root, &path, out)?;
            } else {
                let relative = path.strip_prefix(root).expect("walked below the root");
                let parts: Vec<_> =
                    relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
                out.push(parts.join("/"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// Where a scenario's trace goes in the bundle: its path relative to the scenario file,
/// which must stay below the scenario's directory so that the bundled `scenario.toml`
/// finds it unchanged.
pub fn bundled_trace(scenario: &Scenario) -> Result<Option<(PathBuf, PathBuf)>, CertifyError> {
    let Workload::Trace { path, .. } = &scenario.workload else { return Ok(None) };
    let base = scenario.path.parent().unwrap_or(Path::new(""));
    let relative = path.strip_prefix(base).ok().filter(|r| r.components().all(|c| matches!(c, Component::Normal(_))));
    match relative {
        Some(relative) => Ok(Some((path.clone(), relative.to_path_buf()))),
        None => Err(CertifyError::Usage(format!(
            "{}: workload.trace {} must be a path below the scenario's directory to be bundled with the certificate",
            scenario.path.display(),
            path.display()
        ))),
    }
}

/// Reads the statement of a certificate (its envelope's payload) without verifying it: for
/// naming what a bundle that does not verify claimed. A baseline is verified instead
/// (`pipeline::verified_baseline`).
pub fn read_baseline(dir: &Path) -> Result<Statement, CertifyError> {
    let path = dir.join(CERTIFICATE);
    let usage = |message: String| CertifyError::Usage(format!("{}: {message}", path.display()));
    let bytes = std::fs::read(&path).map_err(|e| usage(format!("cannot read the baseline certificate: {e}")))?;
    let envelope: Envelope = serde_json::from_slice(&bytes).map_err(|e| usage(format!("not a DSSE envelope: {e}")))?;
    use base64::Engine;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&envelope.payload)
        .map_err(|_| usage("the payload is not valid base64".into()))?;
    serde_json::from_slice(&payload).map_err(|e| usage(format!("not a seedcore certification statement: {e}")))
}

/// Score drop (hundredths) beyond which a baseline comparison flags a regression.
pub const SCORE_TOLERANCE: u32 = 100;

fn verdict_rank(verdict: &str) -> Option<u8> {
    match verdict {
        "pass" => Some(0),
        "warn" => Some(1),
        "fail" => Some(2),
        _ => None,
    }
}

/// Regressions of `data` against `baseline`: a worse outcome, a score lower by more than
/// `SCORE_TOLERANCE`, any invariant whose verdict got worse.
pub fn regressions(data: &ReportData, baseline: &Statement) -> Vec<String> {
    let before = &baseline.predicate;
    let mut found = Vec::new();
    let rank = |o: &str| Outcome::parse(o).map(|o| o as u8);
    if let (Some(old), new) = (rank(&before.outcome), data.outcome as u8) {
        if new > old {
            found.push(format!("outcome {} -> {}", before.outcome, data.outcome.as_str()));
        }
    }
    let old_score = parse_score(&before.score);
    if let Some(old) = old_score {
        if data.score.0 + SCORE_TOLERANCE < old {
            found.push(format!("score {} -> {} (tolerance 1.00)", before.score, data.score));
        }
    }
    for row in &data.invariants {
        let Some(old) = before.invariants.iter().find(|i| i.id == row.id) else { continue };
        if let (Some(a), Some(b)) = (verdict_rank(&old.verdict), verdict_rank(&row.verdict)) {
            if b > a {
                found.push(format!(
                    "{}: {} -> {} ({} -> {})",
                    row.id, old.verdict, row.verdict, old.observed, row.observed
                ));
            }
        }
    }
    found
}

/// Reads a score written as `"97.50"` back into hundredths.
pub fn parse_score(text: &str) -> Option<u32> {
    let (whole, fraction) = text.split_once('.')?;
    if fraction.len() != 2 {
        return None;
    }
    Some(whole.parse::<u32>().ok()? * 100 + fraction.parse::<u32>().ok()?)
}

/// Writes the bundle's remaining files and signs it.
pub fn certify(c: &Certify<'_>) -> Result<Certified, CertifyError> {
    let dir = c.dir;
    let scenario_copy = dir.join("scenario.toml");
    std::fs::write(&scenario_copy, c.scenario.source.as_bytes()).map_err(|e| runtime(&scenario_copy, e))?;
    if let Some((from, relative)) = bundled_trace(c.scenario)? {
        let to = dir.join(&relative);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| runtime(parent, e))?;
        }
        std::fs::copy(&from, &to).map_err(|e| runtime(&from, e))?;
    }

    let events = dir.join("events.jsonl");
    let fold = fold_events(&events, c.scenario.policy.window).map_err(|e| CertifyError::Runtime(e.to_string()))?;
    if fold.root != c.replays.reference {
        return Err(CertifyError::Runtime(format!(
            "{}: the log on disk has root {}, the run reported {}",
            events.display(),
            hex::encode(fold.root),
            hex::encode(c.replays.reference)
        )));
    }
    let provenance = Provenance {
        build_sha256: c.build_sha256.clone(),
        toolchain: c.toolchain.clone(),
        key_id: crate::keys::key_id(&c.key.verifying_key()),
        development_key: c.development_key,
        regressions: Vec::new(),
    };
    let (mut data, results) = report_data(c.scenario, c.seed, &fold, c.replays, provenance);
    if let Some(baseline) = c.baseline {
        data.regressions = regressions(&data, baseline);
    }

    let (log, _) = signature_log(&fold);
    let log_path = dir.join("signature_log.json");
    std::fs::write(&log_path, log).map_err(|e| runtime(&log_path, e))?;
    crate::render::write_all(dir, &data).map_err(|e| CertifyError::Runtime(e.to_string()))?;

    let mut files = BTreeMap::new();
    for name in list_files(dir).map_err(|e| runtime(dir, e))? {
        if name != CERTIFICATE && name != STATEMENT {
            let path = dir.join(&name);
            files.insert(name, file_sha256(&path).map_err(|e| runtime(&path, e))?);
        }
    }
    let baseline = c.baseline.map(|b| BaselineRef {
        merkle_root: b.predicate.event_log.merkle_root.clone(),
        outcome: b.predicate.outcome.clone(),
        score: b.predicate.score.clone(),
        scenario_sha256: b.predicate.scenario.sha256.clone(),
        seed: b.predicate.seed.clone(),
    });
    let statement = statement(&data, files, baseline);
    let value = serde_json::to_value(&statement).expect("a statement always serialises");
    let payload = jcs::canonical(&value).map_err(|e| CertifyError::Runtime(format!("statement: {e}")))?;
    let envelope = dsse::sign(IN_TOTO, &payload, c.key);
    let mut envelope_bytes = serde_json::to_vec_pretty(&envelope).expect("an envelope always serialises");
    envelope_bytes.push(b'\n');
    let statement_path = dir.join(STATEMENT);
    std::fs::write(&statement_path, pretty(&value)).map_err(|e| runtime(&statement_path, e))?;
    let certificate = dir.join(CERTIFICATE);
    std::fs::write(&certificate, envelope_bytes).map_err(|e| runtime(&certificate, e))?;
    Ok(Certified { data, results, statement })
}
