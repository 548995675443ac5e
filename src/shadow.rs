//! `seedcore shadow` and `seedcore canary` (docs/certification.md 8.9), simulation build:
//! arguments in, one call to `seedcore_reports::shadow::run`, what it returns printed, and
//! the exit code (shadow: 0; canary: 0 for PROMOTE and PROMOTE WITH CONDITIONS, 1 for
//! ROLLBACK). `verify` of a canary bundle is here too, in both builds.

use crate::exit::{self, usage, Failure};
use seedcore_reports::keys::Keyring;
use seedcore_reports::shadow::bundle;
use seedcore_reports::verify::VerifyError;
use std::path::{Path, PathBuf};

/// The arguments of `shadow`.
#[derive(clap::Args)]
pub struct ShadowArgs {
    /// The base scenario: the engine version running now.
    base: PathBuf,
    /// The candidate scenario: the same workload, other engine settings or policy.
    candidate: PathBuf,
    /// The seed both run with; defaults to the base scenario's.
    #[arg(long)]
    seed: Option<u64>,
    /// Shadow a capture of the live gateway (`serve --capture`): the base is what `serve`
    /// ran with, the candidate what it would have decided on the same traffic.
    #[arg(long)]
    capture: Option<PathBuf>,
    /// Another build of seedcore (its simulation binary) that runs the candidate: a
    /// release against the last one. Its event log is read back.
    #[arg(long)]
    candidate_bin: Option<PathBuf>,
    /// Directory to write into; defaults to out/shadow/<base>-vs-<candidate>-<seed>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Differing tasks to print (all are in diff.csv).
    #[arg(long, default_value_t = 10)]
    show: usize,
}

/// The arguments of `canary`.
#[derive(clap::Args)]
pub struct CanaryArgs {
    /// The base scenario.
    base: PathBuf,
    /// The candidate scenario; its `[canary]` table sets the measures judged.
    candidate: PathBuf,
    /// Seeds to run, e.g. 1..8 (inclusive).
    #[arg(long, value_parser = crate::parse_seeds)]
    seeds: seedcore_sim::campaign::SeedRange,
    /// Seeds run at once (default: the machine's cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    jobs: Option<u16>,
    /// Another build of seedcore that runs the candidate.
    #[arg(long)]
    candidate_bin: Option<PathBuf>,
    /// Private key that signs the statement (PKCS#8 PEM); the development key without it.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Directory to write into; defaults to out/canary/<base>-vs-<candidate>-<A>..<B>.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The most seeds one canary runs: every seed's two event logs go into the bundle.
#[cfg(madsim)]
pub const MAX_CANARY_SEEDS: usize = 10_000;

#[cfg(not(madsim))]
pub fn shadow(_: ShadowArgs) -> Result<u8, Failure> {
    Err(usage("shadow runs under the simulator; use the simulation build: cargo sim shadow BASE CANDIDATE"))
}

#[cfg(not(madsim))]
pub fn canary(_: CanaryArgs) -> Result<u8, Failure> {
    Err(usage(
        "canary runs under the simulator; use the simulation build: cargo sim canary BASE CANDIDATE --seeds A..B",
    ))
}

#[cfg(madsim)]
fn failure(e: seedcore_reports::shadow::run::ShadowError) -> Failure {
    use seedcore_reports::shadow::run::ShadowError;
    match e {
        ShadowError::Usage(m) => usage(m),
        ShadowError::Runtime(m) => exit::runtime(m),
    }
}

#[cfg(madsim)]
fn load_pair(base: &Path, candidate: &Path) -> Result<(seedcore_sim::Scenario, seedcore_sim::Scenario), Failure> {
    Ok((seedcore_sim::load(base)?, seedcore_sim::load(candidate)?))
}

#[cfg(madsim)]
pub fn shadow(args: ShadowArgs) -> Result<u8, Failure> {
    use seedcore_reports::shadow::run::{shadow_into, ShadowRequest};
    let (base, candidate) = load_pair(&args.base, &args.candidate)?;
    let seed = args.seed.unwrap_or(base.seed);
    let out = args.out.unwrap_or_else(|| {
        let what = args
            .capture
            .as_ref()
            .and_then(|c| c.file_stem())
            .map_or(seed.to_string(), |s| s.to_string_lossy().into_owned());
        PathBuf::from(format!("out/shadow/{}-vs-{}-{what}", base.name, candidate.name))
    });
    eprintln!("shadow: {} against {} with seed {seed}: two runs on the same arrivals", candidate.name, base.name);
    let request = ShadowRequest {
        base: &base,
        candidate: &candidate,
        candidate_bin: args.candidate_bin.as_deref(),
        seed,
        capture: args.capture.as_deref(),
        out: &out,
    };
    // Two runs of a long scenario take a while: a spinner on a terminal, ticking on its own.
    let spinner = crate::progress::interactive().then(|| {
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.set_message(format!("running {} and {} with seed {seed}", base.name, candidate.name));
        spinner.enable_steady_tick(std::time::Duration::from_millis(200));
        spinner
    });
    let (shadow, wall) = seedcore_sim::run::timed(|| shadow_into(&request));
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    let shadow = shadow.map_err(failure)?;
    print_shadow(&shadow, wall, args.show);
    println!("wrote {}/shadow.md, shadow.html and diff.csv", shadow.dir.display());
    Ok(exit::PASS)
}

/// What a shadow found, on the terminal: the counts, the pairs of decisions that differ,
/// the first divergence, the measures and verdicts that changed.
#[cfg(madsim)]
fn print_shadow(shadow: &seedcore_reports::shadow::Shadow, wall: std::time::Duration, show: usize) {
    use seedcore_reports::shadow::side_by_side;
    let d = &shadow.diff;
    println!(
        "{} tasks, {} differ ({} decided differently); both runs in {:.1} s",
        d.tasks,
        d.differing,
        d.decisions_differing,
        wall.as_secs_f64()
    );
    if let Some(capture) = &shadow.capture {
        println!(
            "capture {}: the base's replay decided {} of {} tasks as the live engine did",
            capture.file.display(),
            capture.base_agreed,
            capture.tasks
        );
    }
    let mut pairs: Vec<_> = d.pairs.iter().filter(|((b, c), _)| b != c).collect();
    pairs.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
    for ((b, c), n) in pairs.iter().take(show) {
        println!("  {b:>24} -> {c:<24} {n} tasks");
    }
    if let Some(first) = &d.first {
        let decision = |row: &Option<seedcore_reports::shadow::diff::TaskRow>| {
            row.as_ref().map_or("none".to_string(), |r| format!("{} ({})", r.decision, r.reason))
        };
        println!(
            "first divergence: task {} at {} ms: {} -> {}",
            first.task_id,
            first.base.as_ref().or(first.candidate.as_ref()).map_or(0, |r| r.at_ms),
            decision(&first.base),
            decision(&first.candidate)
        );
    }
    println!("  {:<22} {:>14} {:>14} {:>12}", "measure", "base", "candidate", "change");
    for (b, c) in side_by_side(&shadow.base.stats, &shadow.candidate.stats) {
        if b.value != c.value {
            let change = seedcore_sim::shadow::canary::change_text(b.value, c.value);
            println!("  {:<22} {:>14} {:>14} {:>12}", b.name, b.text(), c.text(), change);
        }
    }
    for (b, c) in shadow.base.results.iter().zip(&shadow.candidate.results) {
        if b.verdict != c.verdict {
            println!("  invariant {}: {} -> {}", b.id, b.verdict.as_str(), c.verdict.as_str());
        }
    }
}

#[cfg(madsim)]
pub fn canary(args: CanaryArgs) -> Result<u8, Failure> {
    use seedcore_reports::shadow::run::{canary_into, CanaryRequest};
    use seedcore_sim::shadow::canary::{CanaryVerdict, Effect};
    let (base, candidate) = load_pair(&args.base, &args.candidate)?;
    let seeds = args.seeds.seeds(None);
    if seeds.len() > MAX_CANARY_SEEDS {
        return Err(usage(format!("--seeds {}: at most {MAX_CANARY_SEEDS} seeds in one canary", args.seeds)));
    }
    let (key, _) = crate::signing::signing_key(args.key.as_deref())?;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("out/canary/{}-vs-{}-{}", base.name, candidate.name, args.seeds)));
    let jobs = args
        .jobs
        .map_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get), usize::from);
    eprintln!(
        "canary: {} against {} over {} seeds ({}), {jobs} at a time",
        candidate.name,
        base.name,
        seeds.len(),
        args.seeds
    );
    let bar = crate::progress::bar(seeds.len() as u64, "seeds");
    let progress = |done: usize| bar.set_position(done as u64);
    let request = CanaryRequest {
        base: &base,
        candidate: &candidate,
        candidate_bin: args.candidate_bin.as_deref(),
        seeds,
        jobs,
        out: &out,
        key: &key,
        progress: &progress,
    };
    let (written, wall) = seedcore_sim::run::timed(|| canary_into(&request));
    bar.finish_and_clear();
    let written = written.map_err(failure)?;
    let canary = &written.canary;
    for seed in &canary.seeds {
        println!(
            "  seed {:<8} {:<9} {} tasks differ ({} decisions)",
            seed.seed,
            seed.effect.as_str(),
            seed.differing,
            seed.decisions_differing
        );
        for f in seed.findings.iter().filter(|f| f.effect != Effect::Promote) {
            println!("      {} {}: {}", f.effect.as_str(), f.subject, f.why);
        }
    }
    println!();
    println!(
        "{}   {} against {}, {} seeds in {:.1} s",
        canary.verdict.as_str(),
        canary.candidate.name,
        canary.base.name,
        canary.seeds.len(),
        wall.as_secs_f64()
    );
    for seed in canary.tipping() {
        println!("reproduce seed {}: {}", seed.seed, seed.repro);
    }
    println!("wrote {}/canary.md and canary.dsse.json", written.dir.display());
    Ok(if canary.verdict == CanaryVerdict::Rollback { exit::INVARIANT_FAILED } else { exit::PASS })
}

/// `seedcore verify DIR` of a canary bundle: 0 when it verifies (whatever its verdict), 4
/// when it does not.
pub fn verify(dir: &Path, keyring: &Keyring) -> Result<u8, Failure> {
    match bundle::verify(dir, keyring) {
        Ok(verified) => {
            for check in &verified.checks {
                println!("  ok  {check}");
            }
            let c = &verified.canary;
            println!(
                "VERIFIED {}: canary {} of {} against {}, {} seeds",
                dir.display(),
                c.verdict.as_str(),
                c.candidate.name,
                c.base.name,
                c.seeds.len()
            );
            Ok(exit::PASS)
        }
        Err(error @ VerifyError::Unreadable { .. }) => Err(usage(error.to_string())),
        Err(error @ VerifyError::Rejected(_)) => {
            eprintln!("REJECTED {}: {}", dir.display(), error.to_string().trim_start_matches("rejected: "));
            Ok(exit::REJECTED)
        }
    }
}
