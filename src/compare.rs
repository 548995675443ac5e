//! `seedcore compare CAPTURE`: replays a capture of the live gateway in the simulator and
//! reports how many decisions agree (simulation build). The work is in
//! `seedcore_sim::compare`.

use crate::exit;
use std::path::PathBuf;

/// `seedcore compare`.
#[derive(clap::Args)]
pub struct CompareArgs {
    /// A capture written by `serve --capture FILE`.
    capture: PathBuf,
    /// The scenario `serve` ran with (`serve --scenario`); the defaults otherwise.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Directory for the replay's tasks.csv, disagreements.csv and agreement.json;
    /// defaults to out/compare/<capture name>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Exit 1 when the agreement is below this share (docs/certification.md 8.1's live half of
    /// determinism: 0.95).
    #[arg(long, default_value_t = 0.95)]
    min_agreement: f64,
    /// Disagreements to print (all are in disagreements.csv).
    #[arg(long, default_value_t = 20)]
    show: usize,
}

/// What `serve` runs with when it is given no scenario: the engine's defaults. The
/// workload here is never used (the capture is the workload).
#[cfg_attr(not(madsim), allow(dead_code))]
const DEFAULTS: &str = r#"
name = "serve-defaults"
duration = "1s"
[workload]
source = "generated"
rate_per_s = 1.0
"#;

/// The engine settings and the organism seed `serve` ran with.
#[cfg(madsim)]
pub fn live_settings(scenario: Option<&std::path::Path>) -> Result<(seedcore_sim::Scenario, u64), exit::Failure> {
    match scenario {
        Some(path) => {
            let scenario = seedcore_sim::load(path)?;
            let organism_seed = seedcore_sim::compare::live_organism_seed(&scenario);
            Ok((scenario, organism_seed))
        }
        None => {
            let path = std::path::Path::new("(serve's defaults)");
            let scenario = seedcore_sim::scenario::from_source(DEFAULTS, path, std::path::Path::new("."))
                .expect("the embedded defaults parse");
            Ok((scenario, seedcore_engine::EngineConfig::default().organism.seed))
        }
    }
}

#[cfg(not(madsim))]
pub fn run(_: CompareArgs) -> Result<u8, exit::Failure> {
    Err(exit::usage("compare replays in the simulator; use the simulation build: cargo sim compare CAPTURE"))
}

#[cfg(madsim)]
pub fn run(args: CompareArgs) -> Result<u8, exit::Failure> {
    use seedcore_sim::compare::{compare, read_capture};
    if !(0.0..=1.0).contains(&args.min_agreement) {
        return Err(exit::usage(format!("--min-agreement {} is not in [0, 1]", args.min_agreement)));
    }
    let (scenario, organism_seed) = live_settings(args.scenario.as_deref())?;
    let rows = read_capture(&args.capture).map_err(|e| exit::usage(e.to_string()))?;
    let stem = args.capture.file_stem().map_or_else(|| "capture".into(), |s| s.to_string_lossy().into_owned());
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("out").join("compare").join(&stem));
    eprintln!("replaying {} captured tasks in the simulator ...", rows.len());
    let comparison = compare(&scenario, organism_seed, &rows, &out)?;
    println!("{}", report(&comparison, &args));
    Ok(if comparison.agreement() >= args.min_agreement { exit::PASS } else { exit::INVARIANT_FAILED })
}

#[cfg(madsim)]
fn report(comparison: &seedcore_sim::compare::Comparison, args: &CompareArgs) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    let share = comparison.agreement();
    let verdict = if share >= args.min_agreement { "PASS" } else { "FAIL" };
    let _ = writeln!(
        text,
        "live decisions replayed in the simulator: {} of {} agree ({:.2} %, needs >= {:.2} %): {verdict}",
        comparison.agreed,
        comparison.tasks,
        100.0 * share,
        100.0 * args.min_agreement
    );
    let _ = writeln!(text, "\n  live -> replayed");
    for (live, replayed) in &comparison.matrix {
        let cells: Vec<String> = replayed.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = writeln!(text, "  {live:<24} {}", cells.join(", "));
    }
    if !comparison.disagreements.is_empty() {
        let shown = comparison.disagreements.len().min(args.show);
        let _ = writeln!(text, "\n  disagreements (first {shown} of {}):", comparison.disagreements.len());
        let _ = writeln!(text, "  {:>12} {:>15}  {:<22} replayed", "task_id", "at_ms", "live");
        for d in comparison.disagreements.iter().take(shown) {
            let _ = writeln!(text, "  {:>12} {:>15}  {:<22} {}", d.task_id, d.at_ms, d.live, d.replayed);
        }
    }
    let _ = write!(
        text,
        "\n  {}/ holds the replay's tasks.csv, disagreements.csv and agreement.json",
        comparison.out.display()
    );
    text
}
