//! The certification pipeline behind `seedcore certify` and `seedcore reproduce`: the runs
//! of a seed staged, the live half replayed, the bundle judged, written and signed once, and
//! moved into place; and the re-run of a verified bundle. The command line only parses its
//! arguments, calls these, and prints what they return. Simulation build only.

use crate::certify::{bundled_trace, certify, read_baseline, Certified, Certify, CertifyError};
use crate::model::Toolchain;
use crate::statement::{LiveRef, Statement, LIVE_CAPTURE};
use ed25519_dalek::SigningKey;
use seedcore_sim::compare::{Captured, Comparison};
use seedcore_sim::invariants::LiveAgreement;
use seedcore_sim::run::{RunError, RunReport};
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
    /// The report directory.
    pub out: PathBuf,
    /// A previous report directory of the same scenario.
    pub baseline: Option<PathBuf>,
    /// A capture of the live gateway: the live half of `determinism`.
    pub capture: Option<PathBuf>,
    /// What this binary was built with.
    pub toolchain: Toolchain,
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
}

/// The baseline's statement, when it certifies the same scenario.
fn baseline_of(dir: &Path, scenario: &Scenario) -> Result<Statement, CertifyError> {
    let baseline = read_baseline(dir)?;
    if baseline.predicate.scenario.name != scenario.name {
        return Err(CertifyError::Usage(format!(
            "{}: the baseline certifies scenario {:?}, not {:?}",
            dir.display(),
            baseline.predicate.scenario.name,
            scenario.name
        )));
    }
    Ok(baseline)
}

/// `seedcore certify`: every input checked before the runs, then the runs staged, judged,
/// written, signed and moved to `out`.
pub fn certify_into(request: CertifyRequest<'_>) -> Result<Certification, CertifyError> {
    use seedcore_sim::run::{run_staged, Staging, Verdicts};
    let scenario = request.scenario;
    bundled_trace(scenario)?;
    let baseline = request.baseline.as_deref().map(|dir| baseline_of(dir, scenario)).transpose()?;
    let captured = match &request.capture {
        None => None,
        Some(path) => Some((path.clone(), seedcore_sim::compare::read_capture(path).map_err(usage)?)),
    };
    let build_sha256 = build_digest()
        .map_err(|e| CertifyError::Runtime(format!("cannot read the running executable to digest it: {e}")))?;
    let staging = Staging::new(&request.out).map_err(|e| usage(format!("cannot write the report: {e}")))?;
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
    Ok(Certification { report, wall, dir, certified, repro })
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
