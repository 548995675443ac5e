//! The runs of `seedcore shadow` and `seedcore canary` (simulation build): both sides on
//! the same seed and arrivals, each into a directory of its own, then folded from their
//! event logs, judged, diffed and written. The candidate runs in this process, or in
//! another build of seedcore (`--candidate-bin`) whose event log is read back.

use super::bundle;
use super::diff::{diff_runs, read_tasks};
use super::{BinaryRef, Canary, CaptureInfo, RunRef, SeedRun, Shadow, Side};
use crate::fold::fold_events;
use ed25519_dalek::SigningKey;
use seedcore_sim::compare::{capture_world, live_organism_seed, read_capture, seed_for_organism, Captured};
use seedcore_sim::invariants::evaluate;
use seedcore_sim::run::{holds_certificate, refuse_certificate, run_files, Existing, Staging};
use seedcore_sim::shadow::canary::{judge_seed, seed_effect, CanaryVerdict};
use seedcore_sim::Scenario;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A shadow or canary that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    /// Bad arguments or scenarios (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A run, a file or the other build failed (exit 3).
    #[error("{0}")]
    Runtime(String),
}

impl From<seedcore_sim::run::RunError> for ShadowError {
    fn from(e: seedcore_sim::run::RunError) -> ShadowError {
        if e.is_usage() {
            ShadowError::Usage(e.to_string())
        } else {
            ShadowError::Runtime(e.to_string())
        }
    }
}

fn runtime(e: impl std::fmt::Display) -> ShadowError {
    ShadowError::Runtime(e.to_string())
}

/// What `shadow` asks for.
pub struct ShadowRequest<'a> {
    pub base: &'a Scenario,
    pub candidate: &'a Scenario,
    /// Another build of seedcore that runs the candidate.
    pub candidate_bin: Option<&'a Path>,
    pub seed: u64,
    /// A live capture: its arrivals instead of the scenarios' workload.
    pub capture: Option<&'a Path>,
    pub out: &'a Path,
}

/// The command that shows one seed of a canary in full.
pub fn shadow_command(base: &Scenario, candidate: &Scenario, bin: Option<&Path>, seed: u64) -> String {
    let bin = bin.map_or_else(String::new, |b| format!(" --candidate-bin {}", b.display()));
    format!("cargo sim shadow {} {} --seed {seed}{bin}", base.path.display(), candidate.path.display())
}

/// Refuses an output directory that holds a certificate (nothing overwrites one).
fn check_out(out: &Path) -> Result<(), ShadowError> {
    if holds_certificate(out) {
        return Err(ShadowError::Usage(refuse_certificate(out, "").to_string()));
    }
    Ok(())
}

/// Runs one side into `dir`: in this build, or in `bin` (`seedcore replay` of the
/// scenario file with the seed, one run, into `dir`).
fn run_side(
    scenario: &Scenario,
    bin: Option<&Path>,
    tasks: Option<Vec<seedcore_engine::Task>>,
    seed: u64,
    dir: &Path,
) -> Result<(), ShadowError> {
    let Some(bin) = bin else {
        std::fs::create_dir_all(dir).map_err(|e| runtime(format!("{}: {e}", dir.display())))?;
        return run_files(scenario, tasks, seed, dir).map_err(ShadowError::from);
    };
    let output = std::process::Command::new(bin)
        .arg("replay")
        .arg(&scenario.path)
        .args(["--seed", &seed.to_string(), "--replays", "1", "--out"])
        .arg(dir)
        .output()
        .map_err(|e| ShadowError::Usage(format!("--candidate-bin {}: cannot run it: {e}", bin.display())))?;
    // Replay exits 0 or 1 by the run's outcome and writes the event log; anything else is
    // the other build failing (or not being seedcore at all).
    if !matches!(output.status.code(), Some(0 | 1)) || !dir.join("events.jsonl").is_file() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(ShadowError::Runtime(format!(
            "--candidate-bin {} replay {} --seed {seed} exited with {} and no event log in {}:\n{}",
            bin.display(),
            scenario.path.display(),
            output.status,
            dir.display(),
            tail.join("\n")
        )));
    }
    Ok(())
}

/// Folds a side's event log and judges it by its scenario's policy.
fn fold_side(scenario: &Scenario, dir: &Path) -> Result<RunRef, ShadowError> {
    let events = dir.join("events.jsonl");
    let fold = fold_events(&events, scenario.policy.window).map_err(runtime)?;
    let results = evaluate(&fold.stats, &scenario.policy, None);
    let run = RunRef { events_file: String::new(), root: fold.root, events: fold.size, stats: fold.stats, results };
    Ok(run)
}

/// Runs both sides, at once on two threads when both run in this process.
fn run_both(
    base: &Scenario,
    candidate: &Scenario,
    bin: Option<&Path>,
    tasks: Option<&[seedcore_engine::Task]>,
    seed: u64,
    dirs: (&Path, &Path),
) -> Result<(), ShadowError> {
    let (b, c) = std::thread::scope(|scope| {
        #[allow(clippy::disallowed_methods, reason = "one whole simulation per thread, outside any runtime")]
        let base_run = scope.spawn(|| run_side(base, None, tasks.map(<[_]>::to_vec), seed, dirs.0));
        let c = run_side(candidate, bin, tasks.map(<[_]>::to_vec), seed, dirs.1);
        (base_run.join().unwrap_or_else(|_| Err(runtime("the base's run thread panicked"))), c)
    });
    b?;
    c
}

/// `seedcore shadow`: both runs, their diff, measures and verdicts, and the report, written
/// to `out` (replaced, unless it holds a certificate).
pub fn shadow_into(req: &ShadowRequest<'_>) -> Result<Shadow, ShadowError> {
    check_out(req.out)?;
    let mut capture_rows: Option<Vec<Captured>> = None;
    let (base, candidate, tasks, seed) = match req.capture {
        Some(file) => {
            if req.candidate_bin.is_some() {
                return Err(ShadowError::Usage(
                    "--capture with --candidate-bin: another build replays a capture with its own `compare`; shadow a capture with two scenarios of this build".into(),
                ));
            }
            let rows = read_capture(file).map_err(|e| ShadowError::Usage(e.to_string()))?;
            let (base, tasks) = capture_world(req.base, &rows);
            let (candidate, _) = capture_world(req.candidate, &rows);
            // The organism starts where the live one did: the base is what `serve` ran.
            let seed = seed_for_organism(live_organism_seed(req.base));
            capture_rows = Some(rows);
            (base, candidate, Some(tasks), seed)
        }
        None => {
            super::world::same_world(req.base, req.candidate, req.seed).map_err(ShadowError::Usage)?;
            (req.base.clone(), req.candidate.clone(), None, req.seed)
        }
    };
    let staging = Staging::new(req.out, Existing::Replace)?;
    let (base_dir, candidate_dir) = (staging.path().join("base"), staging.path().join("candidate"));
    run_both(&base, &candidate, req.candidate_bin, tasks.as_deref(), seed, (&base_dir, &candidate_dir))?;
    let b = fold_side(&base, &base_dir)?;
    let c = fold_side(&candidate, &candidate_dir)?;
    let diff = diff_runs(&base_dir, &candidate_dir, &staging.path().join("diff.csv")).map_err(runtime)?;
    let capture = match (&capture_rows, req.capture) {
        (Some(rows), Some(file)) => {
            let replayed = read_tasks(&base_dir.join("tasks.csv")).map_err(runtime)?;
            let agreed =
                rows.iter().filter(|r| replayed.get(&r.task.task_id).is_some_and(|t| t.decision == r.decision)).count()
                    as u64;
            Some(CaptureInfo { file: file.to_path_buf(), tasks: rows.len() as u64, base_agreed: agreed })
        }
        _ => None,
    };
    let side = |role: &'static str, scenario: &Scenario, run: RunRef, binary: Option<&Path>| Side {
        role,
        scenario: scenario.name.clone(),
        scenario_file: scenario.path.clone(),
        binary: binary.map(Path::to_path_buf),
        root: run.root,
        events: run.events,
        stats: run.stats,
        results: run.results,
    };
    let mut shadow = Shadow {
        seed,
        base: side("base", req.base, b, None),
        candidate: side("candidate", req.candidate, c, req.candidate_bin),
        diff,
        capture,
        dir: req.out.to_path_buf(),
    };
    let write = |name: &str, text: String| {
        let path = staging.path().join(name);
        std::fs::write(&path, text).map_err(|e| runtime(format!("{}: {e}", path.display())))
    };
    write("shadow.md", super::render::shadow_markdown(&shadow))?;
    write("shadow.html", super::render::shadow_html(&shadow))?;
    shadow.dir = staging.commit()?;
    Ok(shadow)
}

/// What `canary` asks for.
pub struct CanaryRequest<'a> {
    pub base: &'a Scenario,
    pub candidate: &'a Scenario,
    pub candidate_bin: Option<&'a Path>,
    pub seeds: Vec<u64>,
    /// Seeds run at once.
    pub jobs: usize,
    pub out: &'a Path,
    pub key: &'a SigningKey,
    /// Called after each seed, from the thread that ran it, with the seeds done so far.
    pub progress: &'a (dyn Fn(usize) + Sync),
}

/// A canary written to its directory.
pub struct CanaryWritten {
    pub canary: Canary,
    pub dir: PathBuf,
}

/// Runs one seed of a canary into `dir/runs/<seed>`: both sides, the diff, and the rules.
fn canary_seed(req: &CanaryRequest<'_>, seed: u64, root: &Path) -> Result<SeedRun, ShadowError> {
    let relative = format!("runs/{seed}");
    let dir = root.join(&relative);
    let (base_dir, candidate_dir) = (dir.join("base"), dir.join("candidate"));
    run_side(req.base, None, None, seed, &base_dir)?;
    run_side(req.candidate, req.candidate_bin, None, seed, &candidate_dir)?;
    let diff = diff_runs(&base_dir, &candidate_dir, &dir.join("diff.csv")).map_err(runtime)?;
    // The bundle keeps the event logs (what a verifier recomputes from) and the diff.
    for side in [&base_dir, &candidate_dir] {
        std::fs::remove_file(side.join("tasks.csv")).map_err(runtime)?;
    }
    let mut b = fold_side(req.base, &base_dir)?;
    let mut c = fold_side(req.candidate, &candidate_dir)?;
    b.events_file = format!("{relative}/base/events.jsonl");
    c.events_file = format!("{relative}/candidate/events.jsonl");
    let findings = judge_seed(&req.candidate.canary, (&b.stats, &b.results), (&c.stats, &c.results));
    Ok(SeedRun {
        seed,
        effect: seed_effect(&findings),
        findings,
        differing: diff.differing,
        decisions_differing: diff.decisions_differing,
        repro: shadow_command(req.base, req.candidate, req.candidate_bin, seed),
        base: b,
        candidate: c,
    })
}

/// `seedcore canary`: every seed's pair of runs judged by the candidate's rules, the
/// verdict, and the signed bundle, written to `out` (replaced, unless it holds a
/// certificate).
pub fn canary_into(req: &CanaryRequest<'_>) -> Result<CanaryWritten, ShadowError> {
    check_out(req.out)?;
    if req.seeds.is_empty() {
        return Err(ShadowError::Usage("--seeds names no seed".into()));
    }
    for seed in &req.seeds {
        super::world::same_world(req.base, req.candidate, *seed).map_err(ShadowError::Usage)?;
    }
    let staging = Staging::new(req.out, Existing::Replace)?;
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let jobs = req.jobs.clamp(1, req.seeds.len());
    let mut runs: Vec<Result<SeedRun, ShadowError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                #[allow(clippy::disallowed_methods, reason = "one whole simulation per thread, outside any runtime")]
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(seed) = req.seeds.get(i) else { break };
                        mine.push((i, canary_seed(req, *seed, staging.path())));
                        (req.progress)(done.fetch_add(1, Ordering::Relaxed) + 1);
                    }
                    mine
                })
            })
            .collect();
        let mut all: Vec<(usize, Result<SeedRun, ShadowError>)> = Vec::new();
        for worker in workers {
            match worker.join() {
                Ok(mine) => all.extend(mine),
                Err(_) => all.push((usize::MAX, Err(runtime("a canary thread panicked")))),
            }
        }
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, r)| r).collect()
    });
    let mut seeds = Vec::new();
    for run in runs.drain(..) {
        seeds.push(run?);
    }
    let worst = seeds.iter().map(|s| s.effect).max().unwrap_or(seedcore_sim::shadow::canary::Effect::Promote);
    let verdict = CanaryVerdict::of(worst);
    let binary = match req.candidate_bin {
        None => None,
        Some(bin) => Some(BinaryRef {
            path: bin.display().to_string(),
            sha256: crate::certify::file_sha256(bin).map_err(|e| runtime(format!("{}: {e}", bin.display())))?,
        }),
    };
    let canary = Canary {
        verdict,
        base: bundle::scenario_ref(req.base, bundle::BASE_FILE),
        candidate: bundle::scenario_ref(req.candidate, bundle::CANDIDATE_FILE),
        binary,
        rules: req.candidate.canary.clone(),
        seeds,
    };
    bundle::write(staging.path(), &canary, req.base, req.candidate, req.key).map_err(runtime)?;
    let dir = staging.commit()?;
    Ok(CanaryWritten { canary, dir })
}
