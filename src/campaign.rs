//! `campaign`, `campaign merge` and `shrink` (docs/harness.md 7): many seeds across threads, one
//! madsim runtime per thread, with a progress bar, per-seed JSON lines, a summary table,
//! shard merging, and the shrinker on a failing seed. Simulation build only, but `merge`,
//! which runs nothing, works in both builds.

use crate::exit::{self, runtime, usage, Failure};
use seedcore_sim::campaign::{self, CampaignInfo, SeedLine, SeedRange, Shard};
use std::path::{Path, PathBuf};

/// The arguments of `campaign`.
#[cfg_attr(not(madsim), allow(dead_code, reason = "campaigns run in the simulation build only"))]
pub struct Args {
    pub scenario: PathBuf,
    pub seeds: SeedRange,
    pub jobs: usize,
    pub swarm: bool,
    pub shard: Option<Shard>,
    pub shrink: bool,
    pub out: PathBuf,
}

/// Writes the summary to stdout, `summary.md`, and `$GITHUB_STEP_SUMMARY` when set.
fn publish(dir: &Path, info: &CampaignInfo, lines: &[SeedLine]) -> Result<(), Failure> {
    let text = campaign::summary(info, lines);
    println!("{text}");
    let error = |path: &Path, e: std::io::Error| runtime(format!("{}: {e}", path.display()));
    let path = dir.join("summary.md");
    std::fs::write(&path, &text).map_err(|e| error(&path, e))?;
    if let Some(step) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write;
        let step = PathBuf::from(step);
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(&step).map_err(|e| error(&step, e))?;
        writeln!(file, "{text}").map_err(|e| error(&step, e))?;
    }
    Ok(())
}

/// The exit code of a campaign's lines (docs/certification.md 8.3): 1 if any seed failed a critical
/// invariant (or crashed the simulation), else 0.
fn exit_code(lines: &[SeedLine]) -> u8 {
    if lines.iter().any(SeedLine::failed_critically) {
        exit::INVARIANT_FAILED
    } else {
        exit::PASS
    }
}

/// A shard directory's `campaign.json` and `campaign.jsonl`.
fn read_shard(dir: &Path) -> Result<(CampaignInfo, Vec<SeedLine>), Failure> {
    let info_path = dir.join("campaign.json");
    let info = std::fs::read_to_string(&info_path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str::<CampaignInfo>(&t).map_err(|e| e.to_string()))
        .map_err(|e| usage(format!("{}: {e} (not a campaign directory?)", info_path.display())))?;
    let lines = campaign::read_lines(&dir.join("campaign.jsonl")).map_err(|e| usage(e.to_string()))?;
    Ok((info, lines))
}

/// `campaign merge DIR... --out DIR`.
pub fn merge(dirs: Vec<PathBuf>, out: PathBuf) -> Result<u8, Failure> {
    let (infos, shards): (Vec<_>, Vec<_>) =
        dirs.iter().map(|d| read_shard(d)).collect::<Result<Vec<_>, _>>()?.into_iter().unzip();
    let (info, lines) = campaign::merge(&infos, shards).map_err(|e| usage(e.to_string()))?;
    write_dir(&out, &info, &lines)?;
    println!("merged {} shard(s), {} seeds, into {}", dirs.len(), lines.len(), out.display());
    publish(&out, &info, &lines)?;
    Ok(exit_code(&lines))
}

/// Writes `campaign.json` and `campaign.jsonl` (in seed order) into `dir`.
fn write_dir(dir: &Path, info: &CampaignInfo, lines: &[SeedLine]) -> Result<(), Failure> {
    let error = |path: &Path, e: &dyn std::fmt::Display| usage(format!("{}: {e}", path.display()));
    if seedcore_sim::run::holds_certificate(dir) {
        return Err(seedcore_sim::run::refuse_certificate(dir, " for the campaign").into());
    }
    std::fs::create_dir_all(dir).map_err(|e| error(dir, &e))?;
    let info_path = dir.join("campaign.json");
    let text = serde_json::to_string_pretty(info).expect("the info serialises");
    std::fs::write(&info_path, text + "\n").map_err(|e| error(&info_path, &e))?;
    let path = dir.join("campaign.jsonl");
    let staged = dir.join("campaign.jsonl.partial");
    campaign::write_lines(&staged, lines).map_err(|e| error(&staged, &e))?;
    std::fs::rename(&staged, &path).map_err(|e| error(&path, &e))
}

#[cfg(not(madsim))]
pub fn run(_args: Args) -> Result<u8, Failure> {
    Err(usage("campaigns run under the simulator; use the simulation build: cargo sim campaign <scenario>"))
}

#[cfg(not(madsim))]
pub fn shrink(_args: ShrinkArgs) -> Result<u8, Failure> {
    Err(usage("shrink runs under the simulator; use the simulation build: cargo sim shrink <scenario>"))
}

/// The arguments of `shrink`.
#[cfg_attr(not(madsim), allow(dead_code, reason = "shrink runs in the simulation build only"))]
pub struct ShrinkArgs {
    pub scenario: PathBuf,
    pub seed: Option<u64>,
    pub swarm: bool,
    pub invariant: Option<String>,
    pub max_runs: u32,
    pub out: Option<PathBuf>,
}

#[cfg(madsim)]
pub use sim::{run, shrink};

#[cfg(madsim)]
mod sim {
    use super::*;
    use seedcore_sim::run::{judge, with_plan, Judged};
    use seedcore_sim::score::{critical_failures, outcome, score};
    use seedcore_sim::Scenario;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    use seedcore_sim::run::timed;

    /// Runs one seed, catching a panic of the simulation as an `ERROR` line.
    fn run_seed(scenario: &Scenario, seed: u64) -> SeedLine {
        let plan = scenario.fault_plan(seed);
        let (result, wall) = timed(|| run_caught(scenario, seed, false));
        let wall_ms = wall.as_millis() as u64;
        match result {
            Ok(Ok(judged)) => line_of(scenario, seed, &judged, wall_ms),
            Ok(Err(error)) => {
                eprintln!("error: seed {seed}: {error}");
                crashed(seed, &plan, "error", wall_ms)
            }
            // The panic message is printed by the panic hook, above.
            Err(_) => crashed(seed, &plan, "panic", wall_ms),
        }
    }

    /// The line of a seed whose simulation could not finish.
    fn crashed(seed: u64, plan: &seedcore_chaos::FaultPlan, why: &str, wall_ms: u64) -> SeedLine {
        SeedLine {
            failed: vec![why.into()],
            fault_plan: plan.digest(),
            faults: plan.faults().len() as u64,
            outcome: "ERROR".into(),
            root: String::new(),
            score: "0.00".into(),
            seed,
            wall_ms,
        }
    }

    /// A seed's line. A campaign seed is one run: `determinism` is not judged per seed (the
    /// campaign's own check is that every job count and shard split gives the same roots), so its
    /// `skipped` verdict is left out of the outcome, which docs/certification.md 8.2's rule decides
    /// from the rest.
    fn line_of(scenario: &Scenario, seed: u64, judged: &Judged, wall_ms: u64) -> SeedLine {
        let s = score(&judged.results, &scenario.policy);
        let judged_outcome = outcome(&judged.results, s);
        SeedLine {
            failed: judged.failed().into_iter().map(String::from).collect(),
            fault_plan: judged.plan.digest(),
            faults: judged.plan.faults().len() as u64,
            outcome: judged_outcome.as_str().into(),
            root: hex::encode(judged.root),
            score: s.to_string(),
            seed,
            wall_ms,
        }
    }

    /// `campaign SCENARIO --seeds A..B [--jobs N] [--swarm] [--shard i/n] [--shrink] --out DIR`.
    pub fn run(args: Args) -> Result<u8, Failure> {
        let scenario = seedcore_sim::load_with_swarm(&args.scenario, args.swarm)?;
        let seeds = args.seeds.seeds(args.shard);
        let info = CampaignInfo {
            scenario: args.scenario.display().to_string(),
            scenario_name: scenario.name.clone(),
            scenario_sha256: scenario.sha256.clone(),
            seeds: args.seeds,
            shard: args.shard,
            swarm: args.swarm,
        };
        if args.out.exists() && !args.out.is_dir() {
            return Err(usage(format!("{}: exists and is not a directory", args.out.display())));
        }
        // campaign.json first: a directory that is being filled says what it is.
        write_dir(&args.out, &info, &[])?;
        let jobs = args.jobs.clamp(1, seeds.len().max(1));
        println!(
            "seedcore campaign  scenario {} ({})  seeds {}{}  {} seed(s) on {jobs} thread(s){}",
            scenario.name,
            &scenario.sha256[..16],
            args.seeds,
            args.shard.map_or(String::new(), |s| format!(" shard {}/{}", s.index, s.count)),
            seeds.len(),
            if scenario.swarm.is_some() { ", swarm" } else { "" }
        );
        let (lines, wall) = timed(|| run_seeds(&scenario, &seeds, jobs, &info));
        write_dir(&args.out, &info, &lines)?;
        println!(
            "{} seeds in {:.1} s wall ({:.2} s per seed per thread); wrote {}/campaign.jsonl",
            lines.len(),
            wall.as_secs_f64(),
            lines.iter().map(|l| l.wall_ms).sum::<u64>() as f64 / 1e3 / lines.len().max(1) as f64,
            args.out.display()
        );
        publish(&args.out, &info, &lines)?;
        if args.shrink {
            shrink_first_failure(&args, &lines)?;
        }
        Ok(exit_code(&lines))
    }

    /// `campaign --shrink`: the first failing seed shrunk into `DIR/shrink-<seed>`.
    fn shrink_first_failure(args: &Args, lines: &[SeedLine]) -> Result<(), Failure> {
        let Some(first) = lines.iter().filter(|l| !l.failed.is_empty()).min_by_key(|l| l.seed) else {
            return Ok(());
        };
        println!("shrinking the first failing seed, {}", first.seed);
        shrink(ShrinkArgs {
            scenario: args.scenario.clone(),
            seed: Some(first.seed),
            swarm: args.swarm,
            invariant: None,
            max_runs: 300,
            out: Some(args.out.join(format!("shrink-{}", first.seed))),
        })
        .map(|_| ())
    }

    /// Runs the seeds on `jobs` threads, each seed in a runtime of its own; returns the
    /// lines in seed order.
    fn run_seeds(scenario: &Scenario, seeds: &[u64], jobs: usize, info: &CampaignInfo) -> Vec<SeedLine> {
        let next = AtomicUsize::new(0);
        let (sender, receiver) = mpsc::channel::<SeedLine>();
        let bar = crate::progress::interactive().then(|| {
            let bar = indicatif::ProgressBar::new(seeds.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} seeds  {msg}  eta {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar
        });
        let mut lines = Vec::with_capacity(seeds.len());
        std::thread::scope(|scope| {
            for _ in 0..jobs {
                let (next, sender) = (&next, sender.clone());
                #[allow(clippy::disallowed_methods, reason = "one simulation runtime per thread")]
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else { break };
                    if sender.send(run_seed(scenario, seed)).is_err() {
                        break;
                    }
                });
            }
            drop(sender);
            let (mut critical, mut other) = (0, 0);
            for line in receiver {
                let failed = !line.failed.is_empty();
                if line.failed_critically() {
                    critical += 1;
                } else if failed {
                    other += 1;
                }
                let text = format!(
                    "seed {:>6}  {:<20} score {:>6}  {:>5} ms  {}",
                    line.seed,
                    line.outcome,
                    line.score,
                    line.wall_ms,
                    if failed { line.failed.join(", ") } else { String::new() }
                );
                match &bar {
                    Some(bar) => {
                        if failed {
                            bar.println(format!("{text}\n  reproduce: {}", campaign::repro(info, line.seed)));
                        }
                        bar.set_message(format!("{critical} failed critically, {other} non-critically"));
                        bar.inc(1);
                    }
                    None => {
                        println!("[{}/{}] {text}", lines.len() + 1, seeds.len());
                    }
                }
                lines.push(line);
            }
        });
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        lines.sort_by_key(|l| l.seed);
        lines
    }

    /// The invariant to keep failing: `--invariant`, or the first critical one that fails,
    /// or the first that fails; `None` when the seed passes. A seed that crashes the
    /// simulation shrinks too: its "invariant" is `panic`.
    fn shrink_target(scenario: &Scenario, seed: u64, asked: Option<&str>) -> Result<Option<&'static str>, Failure> {
        let (failed, critical) = match run_caught(scenario, seed, false) {
            Ok(Ok(j)) => (j.failed(), critical_failures(&j.results)),
            Ok(Err(e)) => return Err(runtime(e.to_string())),
            Err(()) => (vec!["panic"], vec!["panic"]),
        };
        match (asked, critical.first(), failed.first()) {
            (Some(id), ..) => match failed.iter().find(|f| **f == id) {
                Some(found) => Ok(Some(*found)),
                None => Err(usage(format!("seed {seed} does not fail {id} (it fails: {})", list(&failed)))),
            },
            (None, Some(critical), _) => Ok(Some(*critical)),
            (None, None, any) => Ok(any.copied()),
        }
    }

    /// `shrink SCENARIO --seed N [--swarm] [--invariant ID] [--max-runs K] [--out DIR]`.
    pub fn shrink(args: ShrinkArgs) -> Result<u8, Failure> {
        let scenario = seedcore_sim::load_with_swarm(&args.scenario, args.swarm)?;
        let seed = args.seed.unwrap_or(scenario.seed);
        let out =
            args.out.unwrap_or_else(|| PathBuf::from("out").join("shrink").join(format!("{}-{seed}", scenario.name)));
        if out.exists() && !out.is_dir() {
            return Err(usage(format!("{}: exists and is not a directory", out.display())));
        }
        if seedcore_sim::run::holds_certificate(&out) {
            return Err(seedcore_sim::run::refuse_certificate(&out, " for shrunk.toml").into());
        }
        let Some(target) = shrink_target(&scenario, seed, args.invariant.as_deref())? else {
            println!("nothing to shrink: seed {seed} passes every invariant");
            return Ok(exit::PASS);
        };
        let before = scenario.fault_plan(seed).faults().to_vec();
        println!(
            "shrinking seed {seed} of {}: {} fault(s), failing {target}; at most {} runs",
            scenario.name,
            before.len(),
            args.max_runs
        );
        let shrunk = shrink_runs(&scenario, seed, target, &before, args.max_runs);
        let text = seedcore_sim::shrink::shrunk_toml(&scenario, &shrunk.after, seed, target, &out)
            .map_err(|e| runtime(e.to_string()))?;
        let path = out.join("shrunk.toml");
        std::fs::create_dir_all(&out)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| usage(format!("{}: {e}", path.display())))?;
        println!(
            "shrunk in {} runs: {} fault(s) before, {} after{}",
            shrunk.runs,
            shrunk.before.len(),
            shrunk.after.len(),
            if shrunk.exhausted { " (run budget spent; the plan may shrink further with --max-runs)" } else { "" }
        );
        for fault in &shrunk.after {
            println!("  {}", fault.describe());
        }
        println!("wrote {}", path.display());
        println!("reproduce: cargo sim replay {} --seed {seed}", path.display());
        Ok(exit::INVARIANT_FAILED)
    }

    /// The shrinker's runs over candidate plans, with a spinner on a terminal.
    fn shrink_runs(
        scenario: &Scenario,
        seed: u64,
        target: &str,
        before: &[seedcore_chaos::Fault],
        max_runs: u32,
    ) -> seedcore_sim::shrink::Shrunk {
        let progress = crate::progress::interactive().then(indicatif::ProgressBar::new_spinner);
        let mut runs = 0;
        let shrunk = seedcore_sim::shrink::shrink_plan(before, scenario.duration_ms, max_runs, |faults| {
            runs += 1;
            let fails = match run_caught(&with_plan(scenario, faults), seed, true) {
                Err(()) => target == "panic",
                Ok(Ok(j)) => j.failed().contains(&target),
                Ok(Err(_)) => false,
            };
            match &progress {
                Some(p) => p.set_message(format!("run {runs}: {} fault(s) {}", faults.len(), verdict(fails))),
                None => println!("  run {runs:>3}: {:>2} fault(s) {}", faults.len(), verdict(fails)),
            }
            fails
        });
        if let Some(p) = progress {
            p.finish_and_clear();
        }
        shrunk
    }

    /// One judged run, a panic caught (`Err(())`); `quiet` without the panic's message:
    /// while shrinking a crash, every candidate that still crashes would print it again.
    fn run_caught(
        scenario: &Scenario,
        seed: u64,
        quiet: bool,
    ) -> Result<Result<Judged, seedcore_sim::run::RunError>, ()> {
        let hook = quiet.then(|| {
            let hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(|_| {}));
            hook
        });
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| judge(scenario, seed))).map_err(|_| ());
        if let Some(hook) = hook {
            std::panic::set_hook(hook);
        }
        result
    }

    fn verdict(fails: bool) -> &'static str {
        if fails {
            "still fails"
        } else {
            "passes"
        }
    }

    fn list(ids: &[&str]) -> String {
        if ids.is_empty() {
            "nothing".into()
        } else {
            ids.join(", ")
        }
    }
}
