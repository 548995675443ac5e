//! A replay run: the first run of a seed writes `events.jsonl` and `tasks.csv` and folds
//! the invariant totals; the determinism replays recompute the digest only; the verdicts
//! come from the totals, the policy and the replay digests.

use crate::invariants::{InvariantResult, Replays, Stats};
use crate::scenario::Scenario;
use std::path::{Path, PathBuf};

/// A run that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The output directory cannot be prepared or written (a usage error).
    #[error("{path}: {message}")]
    Output { path: String, message: String },
    /// The finished run could not be moved into place.
    #[error("{path}: {message}")]
    Commit { path: String, message: String },
    /// The simulation failed to write its observations.
    #[error("simulation I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The simulation panicked (the panic is printed where it happened).
    #[error("the simulation panicked (seed {seed}); the panic is printed above\nreproduce: {repro}")]
    Panicked { seed: u64, repro: String },
}

impl RunError {
    /// Whether the user can fix it by giving other arguments (exit 2), rather than a
    /// failure of the run itself (exit 3).
    pub fn is_usage(&self) -> bool {
        matches!(self, RunError::Output { .. })
    }
}

/// The result of a replay.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub seed: u64,
    /// Tasks the workload submitted.
    pub tasks: usize,
    /// Merkle root of the event log of the first run.
    pub root: [u8; 32],
    pub events: u64,
    pub stats: Stats,
    pub results: Vec<InvariantResult>,
    pub replays: Replays,
    /// Whether the determinism replays ran after the first run instead of beside it
    /// (two runs of this many tasks would not fit in `MEMORY_BUDGET` together).
    pub replays_after: bool,
}

/// What a whole command may use at its peak (docs/harness.md 11: `certify` of a simulated day under
/// 1 GiB): the determinism replays run beside the first run only when both fit.
pub const MEMORY_BUDGET: u64 = 1 << 30;
/// Memory of one run per task, measured and rounded up: a simulated day of `steady.toml`
/// (865,402 tasks) peaks at 0.51 GB in one run, mostly the simulated disk's ledger, the
/// workload and the coordinator's record of outcomes (see ARCHITECTURE.md).
pub const RUN_BYTES_PER_TASK: u64 = 600;
/// Memory of the process beside the runs (binary, allocator, trace, output buffers).
pub const BASE_BYTES: u64 = 96 << 20;

/// Whether two runs of `tasks` tasks fit in the budget together.
pub fn replays_fit_beside(tasks: usize) -> bool {
    BASE_BYTES.saturating_add((tasks as u64).saturating_mul(2 * RUN_BYTES_PER_TASK)) <= MEMORY_BUDGET
}

/// The signed envelope of a certification bundle: a directory holding it is a certificate,
/// which nothing overwrites, deletes or writes into (docs/certification.md 8.6).
pub const CERTIFICATE: &str = "certificate.dsse.json";

/// Whether `dir` holds a certification bundle.
pub fn holds_certificate(dir: &Path) -> bool {
    dir.join(CERTIFICATE).exists()
}

/// The usage error of writing over a certificate.
pub fn refuse_certificate(dir: &Path, how: &str) -> RunError {
    RunError::Output {
        path: dir.display().to_string(),
        message: format!(
            "holds a certification bundle ({CERTIFICATE}); nothing overwrites one: give another directory{how}"
        ),
    }
}

/// What becomes of the target directory when it already exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Replaced, unless it holds a certificate (then a usage error, before any run).
    Replace,
    /// Replaced even when it holds a certificate (`certify --out DIR --force`).
    Force,
    /// Kept: the staged directory goes to the first free name among `target`,
    /// `target-2`, `target-3`, ... (a certify to its default directory).
    NextFree,
}

/// Most directories `Existing::NextFree` tries before giving up.
const MAX_NEXT_FREE: u32 = 10_000;

/// Whether the process that named a staging directory is still running (Linux's `/proc`;
/// where there is none, every leftover counts as abandoned, as before).
fn process_alive(pid: &str) -> bool {
    pid.parse::<u32>().is_ok_and(|pid| pid != std::process::id() && Path::new("/proc").join(pid.to_string()).exists())
}

/// A directory written atomically: filled under a temporary name next to the target and
/// renamed into place by `commit`; dropped without commit, it is removed.
pub struct Staging {
    staging: PathBuf,
    target: PathBuf,
    existing: Existing,
    committed: bool,
}

impl Staging {
    /// Prepares a staging directory for `target`; fails early if the place is not writable
    /// or, with `Existing::Replace`, holds a certificate.
    pub fn new(target: &Path, existing: Existing) -> Result<Staging, RunError> {
        let name = target.file_name().ok_or_else(|| RunError::Output {
            path: target.display().to_string(),
            message: "not a directory name".into(),
        })?;
        let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let error = |path: &Path, e: std::io::Error| RunError::Output {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        if target.exists() && !target.is_dir() {
            return Err(RunError::Output {
                path: target.display().to_string(),
                message: "exists and is not a directory".into(),
            });
        }
        if existing == Existing::Replace && holds_certificate(target) {
            return Err(refuse_certificate(target, ""));
        }
        std::fs::create_dir_all(parent).map_err(|e| error(parent, e))?;
        // Leftovers of interrupted runs into the same target (killed before they could
        // clean up) go first; they were never the report. A run still going (two certifies
        // of one scenario and seed at once) keeps its own.
        let prefix = format!(".{}.partial-", name.to_string_lossy());
        if let Ok(entries) = std::fs::read_dir(parent) {
            for entry in entries.flatten() {
                let file_name = entry.file_name().to_string_lossy().into_owned();
                let Some(pid) = file_name.strip_prefix(&prefix) else { continue };
                if !process_alive(pid) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let staging = parent.join(format!("{prefix}{}", std::process::id()));
        std::fs::create_dir(&staging).map_err(|e| error(&staging, e))?;
        Ok(Staging { staging, target: target.to_path_buf(), existing, committed: false })
    }

    /// The directory to write into.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Moves the staged directory into place (see `Existing`) and says where.
    pub fn commit(mut self) -> Result<PathBuf, RunError> {
        let error = |path: &Path, e: std::io::Error| RunError::Commit {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let target = match self.existing {
            Existing::NextFree => self.next_free()?,
            Existing::Replace | Existing::Force => {
                if self.existing == Existing::Replace && holds_certificate(&self.target) {
                    // Certified while this run ran: keep it.
                    return Err(refuse_certificate(&self.target, ""));
                }
                if self.target.exists() {
                    std::fs::remove_dir_all(&self.target).map_err(|e| error(&self.target, e))?;
                }
                std::fs::rename(&self.staging, &self.target).map_err(|e| error(&self.target, e))?;
                self.target.clone()
            }
        };
        self.committed = true;
        Ok(target)
    }

    /// Renames the staged directory to the first free name. A rename onto a directory that
    /// is not empty fails, so two certifies racing for a name never replace each other.
    fn next_free(&self) -> Result<PathBuf, RunError> {
        for n in 1..=MAX_NEXT_FREE {
            let candidate = if n == 1 {
                self.target.clone()
            } else {
                let mut name = self.target.file_name().expect("checked in new").to_os_string();
                name.push(format!("-{n}"));
                self.target.with_file_name(name)
            };
            let empty = std::fs::read_dir(&candidate).map(|mut d| d.next().is_none()).unwrap_or(false);
            if candidate.exists() && !empty {
                continue;
            }
            match std::fs::rename(&self.staging, &candidate) {
                Ok(()) => return Ok(candidate),
                // Taken meanwhile by another certify: try the next name.
                Err(_) if candidate.exists() => continue,
                Err(e) => {
                    return Err(RunError::Commit { path: candidate.display().to_string(), message: e.to_string() })
                }
            }
        }
        Err(RunError::Commit {
            path: self.target.display().to_string(),
            message: format!("{MAX_NEXT_FREE} directories of this name exist already"),
        })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

/// The command that reproduces a run.
pub fn repro_command(scenario: &Scenario, seed: u64) -> String {
    let flag = if scenario.swarm_by_flag { " --swarm" } else { "" };
    format!("cargo sim replay {} --seed {seed}{flag}", scenario.path.display())
}

/// Replays a scenario with `seed`, `replays` times in all, writing the first run's files
/// into `out` (a staging directory), and judges every invariant.
#[cfg(madsim)]
pub fn replay(scenario: &Scenario, seed: u64, replays: u32, out: Option<&Path>) -> Result<RunReport, RunError> {
    let mut report = run_seed(scenario, seed, replays, out)?;
    report.results = crate::invariants::evaluate(&report.stats, &scenario.policy, Some(&report.replays));
    Ok(report)
}

/// The runs of `replay` without the verdicts (`results` empty): for a caller that judges
/// the run itself, as `certify` does from the log on disk.
#[cfg(madsim)]
pub fn run_seed(scenario: &Scenario, seed: u64, replays: u32, out: Option<&Path>) -> Result<RunReport, RunError> {
    use crate::observer::Sinks;
    use crate::world::run_once;
    use std::sync::Arc;

    assert!(replays >= 1);
    let tasks = Arc::new(scenario.workload.tasks(seed, scenario.duration_ms));
    let create = |name: &str| -> Result<Option<std::fs::File>, RunError> {
        match out {
            None => Ok(None),
            Some(dir) => {
                let path = dir.join(name);
                std::fs::File::create(&path)
                    .map(Some)
                    .map_err(|e| RunError::Output { path: path.display().to_string(), message: e.to_string() })
            }
        }
    };
    let sinks = Sinks {
        events: create("events.jsonl")?,
        tasks: create("tasks.csv")?,
        stats_window: Some(scenario.policy.window),
    };
    // The determinism replays only need their digests. They run beside the first run, each
    // on its own OS thread with its own runtime (threads outside any simulation; at most
    // two at a time, the CI machine's cores), unless two runs would not fit in memory
    // together: then after it, on this thread.
    let replay_all = || -> std::io::Result<Vec<[u8; 32]>> {
        (1..replays).map(|_| run_once(scenario, tasks.clone(), seed, Sinks::default()).map(|o| o.root)).collect()
    };
    let replays_after = replays > 1 && !replays_fit_beside(tasks.len());
    let (first, digests) = if replays_after {
        let first = run_once(scenario, tasks.clone(), seed, sinks)?;
        (first, replay_all()?)
    } else {
        let (first, digests) = std::thread::scope(|scope| {
            #[allow(clippy::disallowed_methods, reason = "one whole simulation per thread, outside any runtime")]
            let replaying = scope.spawn(replay_all);
            let first = run_once(scenario, tasks.clone(), seed, sinks);
            (first, replaying.join().expect("a replay thread does not panic"))
        });
        (first?, digests?)
    };
    let stats = first.stats.expect("the first run folds totals");
    let replays = Replays { reference: first.root, replays: digests, live: None };
    Ok(RunReport {
        seed,
        tasks: tasks.len(),
        root: first.root,
        events: first.events,
        stats,
        results: Vec::new(),
        replays,
        replays_after,
    })
}

/// Whether a staged run judges its invariants itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdicts {
    /// In memory, from the run's totals (`replay`).
    Judge,
    /// Left to the caller (`certify` judges from the log on disk).
    Leave,
}

/// Runs a scenario into a staging directory, timing the wall clock; a panic of the
/// simulation becomes `RunError::Panicked` with the command that reproduces it.
#[cfg(madsim)]
pub fn run_staged(
    scenario: &Scenario,
    seed: u64,
    replays: u32,
    staging: &Staging,
    repro: &str,
    verdicts: Verdicts,
) -> Result<(RunReport, std::time::Duration), RunError> {
    let (result, wall) = timed(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match verdicts {
            Verdicts::Judge => replay(scenario, seed, replays, Some(staging.path())),
            Verdicts::Leave => run_seed(scenario, seed, replays, Some(staging.path())),
        }))
    });
    match result {
        Ok(report) => Ok((report?, wall)),
        Err(_) => Err(RunError::Panicked { seed, repro: repro.to_string() }),
    }
}

/// One run of `scenario` with `seed` writing `events.jsonl` and `tasks.csv` into `dir`,
/// on the workload's arrivals or on `tasks` when given (a live capture's): what a shadow
/// runs on each side. A panic of the simulation becomes `RunError::Panicked`.
#[cfg(madsim)]
pub fn run_files(
    scenario: &Scenario,
    tasks: Option<Vec<seedcore_engine::Task>>,
    seed: u64,
    dir: &Path,
) -> Result<(), RunError> {
    use crate::observer::Sinks;
    use std::sync::Arc;
    let tasks = Arc::new(tasks.unwrap_or_else(|| scenario.workload.tasks(seed, scenario.duration_ms)));
    let create = |name: &str| {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .map_err(|e| RunError::Output { path: path.display().to_string(), message: e.to_string() })
    };
    let sinks = Sinks { events: Some(create("events.jsonl")?), tasks: Some(create("tasks.csv")?), stats_window: None };
    let ran =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| crate::world::run_once(scenario, tasks, seed, sinks)));
    match ran {
        Ok(observed) => observed.map(|_| ()).map_err(RunError::from),
        Err(_) => Err(RunError::Panicked { seed, repro: repro_command(scenario, seed) }),
    }
}

/// A replay written to its directory (`seedcore replay`).
pub struct Replayed {
    pub report: RunReport,
    /// Wall-clock time of the runs.
    pub wall: std::time::Duration,
    /// Where `events.jsonl` and `tasks.csv` are.
    pub dir: PathBuf,
    /// The command that reproduces the run.
    pub repro: String,
}

/// `seedcore replay`: the runs of a seed judged, their files staged and moved to `out`.
#[cfg(madsim)]
pub fn replay_into(scenario: &Scenario, seed: u64, replays: u32, out: &Path) -> Result<Replayed, RunError> {
    let staging = Staging::new(out, Existing::Replace)?;
    let repro = repro_command(scenario, seed);
    let (report, wall) = run_staged(scenario, seed, replays, &staging, &repro, Verdicts::Judge)?;
    let dir = staging.commit()?;
    Ok(Replayed { report, wall, dir, repro })
}

/// Runs `f`, timing it on the wall clock (outside any simulation).
#[allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "wall-clock timing of whole commands and runs, outside the simulation"
)]
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, std::time::Duration) {
    let started = std::time::Instant::now();
    let value = f();
    (value, started.elapsed())
}

/// One run of a seed judged on its own: no files, no determinism replay (`determinism` is
/// skipped). What a campaign runs per seed and the shrinker per candidate plan.
#[derive(Clone, Debug)]
pub struct Judged {
    pub root: [u8; 32],
    pub events: u64,
    pub plan: seedcore_chaos::FaultPlan,
    pub stats: Stats,
    pub results: Vec<InvariantResult>,
}

impl Judged {
    /// Ids of the invariants that failed (critical or not).
    pub fn failed(&self) -> Vec<&'static str> {
        self.results.iter().filter(|r| r.verdict == crate::invariants::Verdict::Fail).map(|r| r.id.as_str()).collect()
    }
}

/// Runs `scenario` once with `seed` and its fault plan for that seed.
#[cfg(madsim)]
pub fn judge(scenario: &Scenario, seed: u64) -> Result<Judged, RunError> {
    use crate::invariants::evaluate;
    use crate::observer::Sinks;
    use crate::world::run_once;
    use std::sync::Arc;

    let tasks = Arc::new(scenario.workload.tasks(seed, scenario.duration_ms));
    let sinks = Sinks { events: None, tasks: None, stats_window: Some(scenario.policy.window) };
    let observed = run_once(scenario, tasks, seed, sinks)?;
    let stats = observed.stats.expect("the run folds totals");
    let results = evaluate(&stats, &scenario.policy, None);
    Ok(Judged { root: observed.root, events: observed.events, plan: scenario.fault_plan(seed), stats, results })
}

/// The scenario with exactly `faults` as its plan (no swarm).
pub fn with_plan(scenario: &Scenario, faults: &[seedcore_chaos::Fault]) -> Scenario {
    let mut explicit = scenario.clone();
    explicit.swarm = None;
    explicit.swarm_by_flag = false;
    explicit.faults = seedcore_chaos::FaultPlan::new(faults.to_vec()).expect("a plan drawn or shrunk from a valid one");
    explicit
}

#[cfg(test)]
mod memory_tests {
    use super::*;

    #[test]
    fn replays_run_beside_the_first_run_only_when_both_fit_in_the_budget() {
        // The Azure hour: two runs fit together; a simulated day of steady.toml does not.
        assert!(replays_fit_beside(19_366));
        assert!(!replays_fit_beside(865_402));
        let largest = ((MEMORY_BUDGET - BASE_BYTES) / (2 * RUN_BYTES_PER_TASK)) as usize;
        assert!(replays_fit_beside(largest) && !replays_fit_beside(largest + 1));
        assert!(!replays_fit_beside(usize::MAX), "no overflow");
    }
}
