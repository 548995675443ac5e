//! The `replay` command: a scenario's runs of a seed under the simulator, their files, the
//! summary and the outcome.

use crate::exit::{self, Failure};
use std::path::PathBuf;

/// The arguments of `replay`.
#[cfg_attr(not(madsim), allow(dead_code, reason = "replay runs in the simulation build only"))]
pub struct Args {
    pub scenario: PathBuf,
    pub seed: Option<u64>,
    pub replays: Option<u32>,
    pub out: Option<PathBuf>,
    pub swarm: bool,
}

#[cfg(not(madsim))]
pub fn run(_args: Args) -> Result<u8, Failure> {
    Err(exit::usage("replay runs under the simulator; use the simulation build: cargo sim replay <scenario>"))
}

#[cfg(madsim)]
pub fn run(args: Args) -> Result<u8, Failure> {
    let scenario = seedcore_sim::load_with_swarm(&args.scenario, args.swarm)?;
    let seed = args.seed.unwrap_or(scenario.seed);
    let replays = args.replays.unwrap_or(scenario.harness.replays);
    let out = args.out.unwrap_or_else(|| crate::summary::default_replay_out(&scenario, seed));
    crate::summary::banner("replay", &scenario, seed, replays);
    let replayed = seedcore_sim::run::replay_into(&scenario, seed, replays, &out).map_err(|e| {
        if e.is_usage() {
            exit::usage(format!("cannot write the output: {e}"))
        } else {
            e.into()
        }
    })?;
    crate::summary::print(&scenario, &replayed.report, replayed.wall);
    println!("wrote {}/events.jsonl and tasks.csv", replayed.dir.display());
    Ok(print_outcome(&scenario, &replayed, seed))
}

/// The outcome line (the rule of docs/certification.md 8.2, shared with certify and
/// verify: the same run exits the same way under each), and why it failed.
#[cfg(madsim)]
fn print_outcome(scenario: &seedcore_sim::Scenario, replayed: &seedcore_sim::run::Replayed, seed: u64) -> u8 {
    use seedcore_sim::score::{critical_failures, outcome, score, Outcome};
    let results = &replayed.report.results;
    let score = score(results, &scenario.policy);
    let outcome = outcome(results, score);
    println!();
    println!("{}   score {score}   {} seed {seed}", outcome.as_str(), scenario.name);
    if outcome != Outcome::Fail {
        return exit::PASS;
    }
    let failed = critical_failures(results);
    if failed.is_empty() {
        println!("FAIL: the score is below 75");
    } else {
        println!("FAIL: critical invariant(s) {} did not pass with seed {seed}", failed.join(", "));
    }
    println!("reproduce: {}", replayed.repro);
    exit::INVARIANT_FAILED
}
