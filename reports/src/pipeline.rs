//! The certification pipeline behind `seedcore certify` and `seedcore reproduce`: the runs
//! of a seed staged, the live half replayed, the bundle judged, written and signed once, and
//! moved into place; and the re-run of a verified bundle. The command line only parses its
//! arguments, calls these, and prints what they return. Simulation build only.

use crate::certify::{bundled_trace, certify, Certified, Certify, CertifyError};
use crate::certlog::{self, Entry};
use crate::keys::Keyring;
use crate::model::Toolchain;
use crate::statement::{LiveRef, Statement, LIVE_CAPTURE};
use ed25519_dalek::SigningKey;
use seedcore_sim::compare::{Captured, Comparison};
use seedcore_sim::invariants::LiveAgreement;
use seedcore_sim::run::{Existing, RunError, RunReport};
use seedcore_sim::Scenario;
use std::path::{Path, PathBuf};

impl From<RunError> for CertifyError {
    fn from(error: RunError) -> CertifyError {
        if error.is_usage() {
            CertifyError::Usage(error.to_string())
        } else {
            CertifyError::Runtime(error.to_string())
        }
    }
}

/// SHA-256 of the running executable: the build a certificate names.
pub fn build_digest() -> std::io::Result<String> {
    crate::certify::file_sha256(&std::env::current_exe()?)
}

/// What `certify` asks for: a loaded scenario, the run, the signing key and the extras.
pub struct CertifyRequest<'a> {
    pub scenario: &'a Scenario,
    pub seed: u64,
    pub replays: u32,
    pub key: &'a SigningKey,
    pub development_key: bool,
    /// The report directory, and what to do when it exists.
    pub out: PathBuf,
    pub existing: Existing,
    /// A previous certificate of the same scenario, verified before the run.
    pub baseline: Option<Baseline<'a>>,
    /// A frozen policy file: the scenario may tighten it, never loosen it.
    pub frozen_policy: Option<PathBuf>,
    /// The certification log to append to.
    pub log: Option<PathBuf>,
    /// A capture of the live gateway: the live half of `determinism`.
    pub capture: Option<PathBuf>,
    /// What this binary was built with.
    pub toolchain: Toolchain,
}

/// `--baseline DIR`, with the keys it must verify against.
pub struct Baseline<'a> {
    pub dir: PathBuf,
    pub keyring: &'a Keyring,
    /// `--baseline-allow-changed-scenario`: a baseline of another scenario digest is
    /// compared with all the same, its differences listed.
    pub allow_changed_scenario: bool,
}

/// A certification written to its directory.
pub struct Certification {
    /// The runs, with the verdicts the certificate states (judged once, from the log on
    /// disk, as a verifier judges them).
    pub report: RunReport,
    pub wall: std::time::Duration,
    pub dir: PathBuf,
    pub certified: Certified,
    /// The command that reproduces the certification.
    pub repro: String,
    /// The log entry appended, when there is a log.
    pub logged: Option<Entry>,
    /// What differs between the baseline's scenario and this one (allowed by the flag).
    pub scenario_changes: Vec<String>,
}

/// The baseline's statement, verified against the trusted keys, of the same scenario
/// digest (or, when allowed, with the differences listed).
pub fn verified_baseline(
    baseline: &Baseline<'_>,
    scenario: &Scenario,
) -> Result<(Statement, Vec<String>), CertifyError> {
    use crate::verify::{verify_bundle, VerifyError};
    let dir = &baseline.dir;
    let verified = match verify_bundle(dir, baseline.keyring, None) {
        Ok(verified) => verified,
        Err(VerifyError::Unreadable { path, message }) => {
            return Err(CertifyError::Usage(format!("--baseline {path}: {message}")))
        }
        Err(VerifyError::Rejected(reason)) => {
            return Err(CertifyError::Rejected(format!(
                "--baseline {}: the baseline does not verify ({reason}); a baseline is a verified certificate",
                dir.display()
            )))
        }
    };
    let statement = verified.statement;
    if statement.predicate.scenario.sha256 == scenario.sha256 {
        return Ok((statement, Vec::new()));
    }
    let before = std::fs::read_to_string(dir.join(&statement.predicate.scenario.file)).unwrap_or_default();
    let changes = scenario_differences(&before, &scenario.source);
    if baseline.allow_changed_scenario {
        return Ok((statement, changes));
    }
    Err(CertifyError::Usage(format!(
        "--baseline {}: it certifies scenario {} with SHA-256 {}, not this one's {}; a baseline must certify the same \
         scenario (--baseline-allow-changed-scenario compares all the same). What differs:\n  {}",
        dir.display(),
        statement.predicate.scenario.name,
        statement.predicate.scenario.sha256,
        scenario.sha256,
        changes.join("\n  ")
    )))
}

/// The lines of one scenario text that the other lacks (comments and blank lines aside),
/// as `- line N: ...` (the baseline's) and `+ line N: ...` (this one's).
pub fn scenario_differences(before: &str, after: &str) -> Vec<String> {
    let meaningful = |text: &str| -> Vec<(usize, String)> {
        text.lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim().to_string()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .collect()
    };
    let (old, new) = (meaningful(before), meaningful(after));
    let mut out: Vec<String> = Vec::new();
    for (n, line) in &old {
        if !new.iter().any(|(_, l)| l == line) {
            out.push(format!("- line {n}: {line}"));
        }
    }
    for (n, line) in &new {
        if !old.iter().any(|(_, l)| l == line) {
            out.push(format!("+ line {n}: {line}"));
        }
    }
    out
}

/// `--frozen-policy FILE`: every change of the scenario's policy against it must tighten.
pub fn check_frozen(scenario: &Scenario, file: &Path) -> Result<(), CertifyError> {
    let frozen = seedcore_sim::scenario::load_policy(file, &scenario.engine).map_err(usage)?;
    let refused: Vec<String> = scenario
        .policy
        .changes_from(&frozen)
        .into_iter()
        .filter(|c| !c.effect.allowed_under_freeze())
        .map(|c| {
            format!(
                "policy.{}.{} = {} ({} against the frozen {})",
                c.invariant,
                c.setting,
                c.to,
                c.effect.as_str(),
                c.from
            )
        })
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(CertifyError::Usage(format!(
        "{}: the policy is frozen by {}, which a scenario may only tighten: {}",
        scenario.path.display(),
        file.display(),
        refused.join("; ")
    )))
}

/// `seedcore certify`: every input checked before the runs, then the runs staged, judged,
/// written, signed, moved to `out`, and appended to the log.
pub fn certify_into(request: CertifyRequest<'_>) -> Result<Certification, CertifyError> {
    use seedcore_sim::run::{run_staged, Staging, Verdicts};
    let scenario = request.scenario;
    bundled_trace(scenario)?;
    if let Some(file) = &request.frozen_policy {
        check_frozen(scenario, file)?;
    }
    let (baseline, scenario_changes) = match &request.baseline {
        Some(b) => verified_baseline(b, scenario).map(|(s, c)| (Some(s), c))?,
        None => (None, Vec::new()),
    };
    if let Some(log) = &request.log {
        certlog::check_appendable(log).map_err(log_error)?;
    }
    let captured = match &request.capture {
        None => None,
        Some(path) => Some((path.clone(), seedcore_sim::compare::read_capture(path).map_err(usage)?)),
    };
    let build_sha256 = build_digest()
        .map_err(|e| CertifyError::Runtime(format!("cannot read the running executable to digest it: {e}")))?;
    let staging =
        Staging::new(&request.out, request.existing).map_err(|e| usage(format!("cannot write the report: {e}")))?;
    let repro = format!("cargo sim certify {} --seed {}", scenario.path.display(), request.seed);
    let (mut report, wall) = run_staged(scenario, request.seed, request.replays, &staging, &repro, Verdicts::Leave)?;
    if let Some((path, rows)) = &captured {
        report.replays.live = Some(live_half(scenario, path, rows, staging.path())?);
    }
    let certified = certify(&Certify {
        scenario,
        seed: request.seed,
        dir: staging.path(),
        replays: &report.replays,
        key: request.key,
        development_key: request.development_key,
        build_sha256,
        toolchain: request.toolchain,
        baseline: baseline.as_ref(),
    })?;
    let dir = staging.commit()?;
    report.results = certified.results.clone();
    let logged = match &request.log {
        None => None,
        Some(log) => Some(certlog::append(log, &dir, &certified.statement, request.key).map_err(|e| {
            CertifyError::Runtime(format!("the certificate is written to {}, but not logged: {e}", dir.display()))
        })?),
    };
    Ok(Certification { report, wall, dir, certified, repro, logged, scenario_changes })
}

/// A log that cannot take an append: unreadable is the user's to fix (2), altered is
/// rejected (4).
fn log_error(error: certlog::LogError) -> CertifyError {
    match error {
        certlog::LogError::Io { .. } => CertifyError::Usage(format!("--log: {error}")),
        certlog::LogError::Rejected { .. } => CertifyError::Rejected(format!(
            "--log: the certification log does not verify, so nothing is appended: {error}"
        )),
    }
}

fn usage(error: impl std::fmt::Display) -> CertifyError {
    CertifyError::Usage(error.to_string())
}

/// The live half of `determinism`: the capture replayed in the simulator with the
/// scenario's engine settings and the organism seed `serve --scenario` runs with, the
/// comparison written to the bundle's `live/` with the capture beside it.
fn live_half(
    scenario: &Scenario,
    capture: &Path,
    rows: &[Captured],
    bundle: &Path,
) -> Result<LiveAgreement, CertifyError> {
    let to = bundle.join(LIVE_CAPTURE);
    let comparison = compare_capture(scenario, rows, to.parent().expect("the capture is in a directory"))?;
    std::fs::copy(capture, &to).map_err(|e| {
        CertifyError::Runtime(format!("{}: cannot bundle it as {}: {e}", capture.display(), to.display()))
    })?;
    Ok(LiveAgreement { tasks: comparison.tasks, agreed: comparison.agreed })
}

/// Replays captured rows with a scenario's live settings into `out`.
fn compare_capture(scenario: &Scenario, rows: &[Captured], out: &Path) -> Result<Comparison, CertifyError> {
    let organism_seed = seedcore_sim::compare::live_organism_seed(scenario);
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        seedcore_sim::compare::compare(scenario, organism_seed, rows, out)
    }));
    match run {
        Ok(Ok(comparison)) => Ok(comparison),
        Ok(Err(error)) => Err(CertifyError::Runtime(format!("replaying the capture: {error}"))),
        Err(_) => Err(CertifyError::Runtime("replaying the capture panicked; the panic is printed above".into())),
    }
}

/// A verified bundle's scenario run again with its seed in this build.
pub struct Rerun {
    pub scenario: String,
    pub seed: u64,
    pub root: String,
    pub events: u64,
    /// Whether root and size are the certified ones.
    pub reproduced: bool,
    /// The live half replayed again, when the bundle has one.
    pub live: Option<LiveRerun>,
}

/// The live half of a bundle replayed again.
pub struct LiveRerun {
    pub tasks: u64,
    pub agreed: u64,
    pub disagreements: usize,
    /// The stated figures, and whether the re-run gives exactly the bundled disagreements.
    pub stated: LiveRef,
    pub stated_disagreements: usize,
    pub same: bool,
}

/// Why a re-run could not be judged: the bundle is wrong (exit 4), or the run failed.
#[derive(Debug, thiserror::Error)]
pub enum RerunError {
    #[error("{0}")]
    Rejected(String),
    #[error(transparent)]
    Failed(#[from] CertifyError),
}

/// `seedcore reproduce` (`verify --rerun`): the bundled scenario re-run with its seed; the
/// live half replayed again when it was certified (only when the event log reproduces).
pub fn rerun(bundle: &Path, statement: &Statement) -> Result<Rerun, RerunError> {
    let p = &statement.predicate;
    let scenario = seedcore_sim::load(&bundle.join(&p.scenario.file)).map_err(usage)?;
    let seed =
        p.seed.parse::<u64>().map_err(|_| RerunError::Rejected(format!("the seed {:?} is not a u64", p.seed)))?;
    let run =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| seedcore_sim::run::replay(&scenario, seed, 1, None)));
    let report = match run {
        Ok(report) => report.map_err(CertifyError::from)?,
        Err(_) => {
            let repro = format!("cargo sim reproduce {}", bundle.display());
            return Err(CertifyError::Runtime(format!(
                "the re-run panicked; the panic is printed above. reproduce: {repro}"
            ))
            .into());
        }
    };
    let root = hex::encode(report.root);
    let reproduced = root == p.event_log.merkle_root && report.events == p.event_log.size;
    let live = match (&p.determinism.live, reproduced) {
        (Some(live), true) => Some(rerun_live(bundle, &scenario, live)?),
        _ => None,
    };
    Ok(Rerun { scenario: scenario.name, seed, root, events: report.events, reproduced, live })
}

/// The live half replayed again: the bundled capture must give the stated agreement and
/// exactly the bundled disagreements.
fn rerun_live(bundle: &Path, scenario: &Scenario, live: &LiveRef) -> Result<LiveRerun, RerunError> {
    use seedcore_sim::compare::{read_capture, read_disagreements};
    let rows = read_capture(&bundle.join(&live.capture)).map_err(|e| RerunError::Rejected(e.to_string()))?;
    let stated =
        read_disagreements(&bundle.join(&live.disagreements)).map_err(|e| RerunError::Rejected(e.to_string()))?;
    let scratch = std::env::temp_dir().join(format!("seedcore-reproduce-live-{}", std::process::id()));
    let comparison = compare_capture(scenario, &rows, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let comparison = comparison?;
    Ok(LiveRerun {
        tasks: comparison.tasks,
        agreed: comparison.agreed,
        disagreements: comparison.disagreements.len(),
        same: comparison.agreed == live.agreed && comparison.tasks == live.tasks && comparison.disagreements == stated,
        stated: live.clone(),
        stated_disagreements: stated.len(),
    })
}
