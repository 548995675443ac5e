//! The `seedcore` command line: argument parsing, commands and exit codes (SPEC 8.3).
//! Everything else lives in the library crates.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod campaign;
mod certify;
mod compare;
mod load;
mod logs;
mod progress;
mod secrets;
mod serve;
#[cfg(madsim)]
mod summary;

/// The simulator allocates per message and per event; mimalloc spends markedly less time
/// there than the system allocator (see ARCHITECTURE.md, performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes of every command (SPEC 8.3).
#[allow(dead_code, reason = "each build uses the codes of its own commands")]
mod exit {
    pub const PASS: u8 = 0;
    pub const INVARIANT_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const RUNTIME: u8 = 3;
    pub const REJECTED: u8 = 4;

    /// A command that could not do its work: the exit code and what to print.
    pub type Failure = (u8, String);

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        (USAGE, message.into())
    }

    /// The exit code of a command's result; a failure is printed as `error: ...` first.
    pub fn report(result: Result<u8, Failure>) -> u8 {
        result.unwrap_or_else(|(code, message)| {
            eprintln!("error: {message}");
            code
        })
    }
}

#[derive(Parser)]
#[command(
    name = "seedcore",
    version,
    about = "Coordination engine for AI task traffic, and its deterministic certification harness"
)]
struct Cli {
    /// Log format on stderr: human-readable, or one JSON object per line. Filtered by
    /// RUST_LOG (default: info for serve and load, warn otherwise).
    #[arg(long, global = true, default_value = "human", value_parser = ["human", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum CampaignCommand {
    /// Combine the directories of a campaign's shards into one.
    Merge {
        /// Shard directories (each from `campaign --shard i/n --out DIR`).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Directory for the merged campaign.jsonl and summary.md.
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_seeds(text: &str) -> Result<seedcore_sim::campaign::SeedRange, String> {
    seedcore_sim::campaign::SeedRange::parse(text)
}

fn parse_shard(text: &str) -> Result<seedcore_sim::campaign::Shard, String> {
    seedcore_sim::campaign::Shard::parse(text)
}

#[derive(Subcommand)]
enum Command {
    /// Replay a scenario under the deterministic simulator and check its invariants
    /// (simulation build: `cargo sim replay ...`).
    Replay {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// Run seed; defaults to the scenario's.
        #[arg(long)]
        seed: Option<u64>,
        /// Runs of the seed for the determinism check; defaults to the scenario's (2).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        replays: Option<u32>,
        /// Directory for events.jsonl and tasks.csv; defaults to out/<scenario>-<seed>.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Swarm mode: the seed also draws a fault plan, within the scenario's
        /// [chaos.swarm] bounds or the defaults.
        #[arg(long)]
        swarm: bool,
    },
    /// Run a chaos campaign: many seeds of a scenario across threads, one JSON line per
    /// seed, a summary per invariant, repro lines (simulation build: `cargo sim campaign ...`).
    /// `campaign merge DIR... --out DIR` combines the shards of one campaign.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Campaign {
        #[command(subcommand)]
        merge: Option<CampaignCommand>,
        /// Scenario file (TOML).
        #[arg(required = true)]
        scenario: Option<PathBuf>,
        /// Seeds, inclusive: `1..1000` (or `1..=1000`, or one seed).
        #[arg(long, required = true, value_parser = parse_seeds)]
        seeds: Option<seedcore_sim::campaign::SeedRange>,
        /// Threads, each with its own simulator runtime (default: the machine's cores).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
        jobs: Option<u16>,
        /// Swarm mode: each seed draws its fault plan.
        #[arg(long)]
        swarm: bool,
        /// Run only shard i of n (`--shard 2/4`, from 1): every n-th seed of the range.
        #[arg(long, value_parser = parse_shard)]
        shard: Option<seedcore_sim::campaign::Shard>,
        /// Shrink the first failing seed into DIR/shrink-<seed>/shrunk.toml.
        #[arg(long)]
        shrink: bool,
        /// Directory for campaign.json, campaign.jsonl and summary.md.
        #[arg(long, required = true)]
        out: Option<PathBuf>,
    },
    /// Shrink a failing seed's fault plan to a minimal one that still fails the same
    /// invariant; writes shrunk.toml and the command that reproduces it
    /// (simulation build: `cargo sim shrink ...`).
    Shrink {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// The failing seed; defaults to the scenario's.
        #[arg(long)]
        seed: Option<u64>,
        /// Swarm mode, as in the run that failed.
        #[arg(long)]
        swarm: bool,
        /// The invariant to keep failing (default: the first critical one that fails).
        #[arg(long)]
        invariant: Option<String>,
        /// The most runs to spend.
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        max_runs: u32,
        /// Directory for shrunk.toml; defaults to out/shrink-<scenario>-<seed>.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Certify a scenario: replay it under the simulator with its determinism replays,
    /// evaluate and score every invariant, and write a signed report directory
    /// (simulation build: `cargo sim certify ...`).
    Certify {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// Run seed; defaults to the scenario's.
        #[arg(long)]
        seed: Option<u64>,
        /// Runs of the seed for the determinism check; defaults to the scenario's (2).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        replays: Option<u32>,
        /// Ed25519 private key (PKCS#8 PEM, from `seedcore keygen`); without it, the
        /// development key keys/development.key is used (and created if missing).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Report directory; defaults to out/<scenario>-<seed>.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Exit 1 on PASS WITH CONDITIONS too.
        #[arg(long)]
        fail_on_conditions: bool,
        /// A previous report directory of the same scenario: flag regressions against it.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// A capture of the live gateway (`serve --scenario SCENARIO --capture FILE`):
        /// replayed in the simulator with the scenario's engine settings, its decision
        /// agreement is the live half of `determinism`, and it is bundled.
        #[arg(long)]
        capture: Option<PathBuf>,
    },
    /// Verify a report directory offline: signature, digests, event log, and every
    /// invariant recomputed from the events (exit 4 when rejected).
    Verify {
        /// The report directory.
        bundle: PathBuf,
        /// Trusted public key (SPKI PEM); repeatable.
        #[arg(long)]
        pubkey: Vec<PathBuf>,
        /// Directory of trusted public keys (*.pub).
        #[arg(long)]
        keyring: Option<PathBuf>,
        /// Require the bundle to certify exactly this scenario file.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Also re-run the bundled scenario with its seed in this build and require the
        /// same Merkle root and event count (simulation build: `cargo sim verify ...`).
        #[arg(long)]
        rerun: bool,
    },
    /// Reproduce a certificate: verify it as `verify` does, then re-run the bundled
    /// scenario with its seed and require the same event log (`verify --rerun`;
    /// simulation build: `cargo sim reproduce ...`).
    Reproduce {
        /// The report directory.
        bundle: PathBuf,
        /// Trusted public key (SPKI PEM); repeatable.
        #[arg(long)]
        pubkey: Vec<PathBuf>,
        /// Directory of trusted public keys (*.pub).
        #[arg(long)]
        keyring: Option<PathBuf>,
    },
    /// Generate an Ed25519 signing key: <path>.key (PKCS#8 PEM, mode 0600) and <path>.pub.
    Keygen {
        /// Where to write the private key, e.g. keys/release.key (never overwritten).
        path: PathBuf,
    },
    /// Start the engine: every role in one process on loopback behind the HTTP gateway,
    /// with the simulated backend in real time (live build: `cargo run --release -- serve`).
    Serve(Box<serve::ServeArgs>),
    /// Write a development CA and a key and certificate per role, for mutual TLS between
    /// roles (`serve --tls-dir DIR`; live build).
    Certs(secrets::CertsArgs),
    /// The gateway's bearer tokens (`serve --tokens FILE`; live build).
    Token {
        #[command(subcommand)]
        command: secrets::TokenCommand,
    },
    /// Send a trace to a live gateway at its recorded pace (or --speed, --rate), bounded in
    /// requests and time, and print a k6-style summary (live build).
    Load(load::LoadArgs),
    /// Replay a capture of the live gateway (`serve --capture`) in the simulator and report
    /// the share of decisions that agree; exit 1 below --min-agreement (simulation build:
    /// `cargo sim compare CAPTURE`).
    Compare(compare::CompareArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let live = matches!(cli.command, Command::Serve(_) | Command::Load(_) | Command::Certs(_) | Command::Token { .. });
    // madsim warns on every simulation that it cannot make std's HashMap seeds
    // deterministic; the engine and the harness use no std HashMap or HashSet (clippy's
    // disallowed-types refuses them, .cargo/clippy-sim), so the line is noise to a user.
    let quiet = "madsim::sim::rand=error";
    logs::init(&cli.log_format, &if live { format!("info,{quiet}") } else { format!("warn,{quiet}") });
    let code = match cli.command {
        Command::Replay { scenario, seed, replays, out, swarm } => replay(scenario, seed, replays, out, swarm),
        Command::Campaign { merge: Some(CampaignCommand::Merge { dirs, out }), .. } => campaign::merge(dirs, out),
        Command::Campaign { merge: None, scenario, seeds, jobs, swarm, shard, shrink, out } => {
            campaign::run(campaign::Args {
                scenario: scenario.expect("clap requires it"),
                seeds: seeds.expect("clap requires it"),
                jobs: jobs.map_or_else(
                    || std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
                    usize::from,
                ),
                swarm,
                shard,
                shrink,
                out: out.expect("clap requires it"),
            })
        }
        Command::Shrink { scenario, seed, swarm, invariant, max_runs, out } => {
            campaign::shrink(campaign::ShrinkArgs { scenario, seed, swarm, invariant, max_runs, out })
        }
        Command::Certify { scenario, seed, replays, key, out, fail_on_conditions, baseline, capture } => {
            certify::certify(certify::Args { scenario, seed, replays, key, out, fail_on_conditions, baseline, capture })
        }
        Command::Verify { bundle, pubkey, keyring, scenario, rerun } => {
            certify::verify(certify::VerifyArgs { bundle, pubkeys: pubkey, keyring, scenario, rerun })
        }
        Command::Reproduce { bundle, pubkey, keyring } => {
            certify::verify(certify::VerifyArgs { bundle, pubkeys: pubkey, keyring, scenario: None, rerun: true })
        }
        Command::Keygen { path } => certify::keygen(path),
        Command::Serve(args) => serve::run(*args),
        Command::Certs(args) => secrets::certs(args),
        Command::Token { command } => secrets::token(command),
        Command::Load(args) => load::run(args),
        Command::Compare(args) => compare::run(args),
    };
    ExitCode::from(code)
}

#[cfg(madsim)]
fn load(path: &std::path::Path) -> Result<seedcore_sim::Scenario, u8> {
    seedcore_sim::load(path).map_err(|error| {
        eprintln!("error: {error}");
        exit::USAGE
    })
}

/// Loads a scenario, with swarm mode on when `swarm` (`--swarm`).
#[cfg(madsim)]
fn load_with_swarm(path: &std::path::Path, swarm: bool) -> Result<seedcore_sim::Scenario, u8> {
    let mut scenario = load(path)?;
    if swarm {
        scenario.enable_swarm();
    }
    Ok(scenario)
}

#[cfg(not(madsim))]
fn replay(_scenario: PathBuf, _seed: Option<u64>, _replays: Option<u32>, _out: Option<PathBuf>, _swarm: bool) -> u8 {
    eprintln!("error: replay runs under the simulator; use the simulation build: cargo sim replay <scenario>");
    exit::USAGE
}

#[cfg(madsim)]
fn replay(path: PathBuf, seed: Option<u64>, replays: Option<u32>, out: Option<PathBuf>, swarm: bool) -> u8 {
    use seedcore_sim::run::{repro_command, Staging};
    use seedcore_sim::score::{critical_failures, outcome, score, Outcome};

    let scenario = match load_with_swarm(&path, swarm) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let seed = seed.unwrap_or(scenario.seed);
    let replays = replays.unwrap_or(scenario.harness.replays);
    let out = out.unwrap_or_else(|| PathBuf::from("out").join(format!("{}-{seed}", scenario.name)));
    let staging = match Staging::new(&out) {
        Ok(s) => s,
        Err(error) => {
            eprintln!("error: cannot write the output: {error}");
            return exit::USAGE;
        }
    };
    summary::banner("replay", &scenario, seed, replays);
    let repro = repro_command(&scenario, seed);
    let (report, wall) = match run_staged(&scenario, seed, replays, &staging, &repro) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let written = match commit(staging) {
        Ok(dir) => dir,
        Err(code) => return code,
    };
    summary::print(&scenario, &report, wall);
    println!("wrote {}/events.jsonl and tasks.csv", written.display());
    // The outcome rule of SPEC 8.2, shared with certify and verify: the same run exits
    // the same way under both commands.
    let score = score(&report.results, &scenario.policy);
    let outcome = outcome(&report.results, score);
    println!();
    println!("{}   score {score}   {} seed {seed}", outcome.as_str(), scenario.name);
    if outcome != Outcome::Fail {
        return exit::PASS;
    }
    let failed = critical_failures(&report.results);
    if failed.is_empty() {
        println!("FAIL: the score is below 75");
    } else {
        println!("FAIL: critical invariant(s) {} did not pass with seed {seed}", failed.join(", "));
    }
    println!("reproduce: {repro}");
    exit::INVARIANT_FAILED
}

/// Runs a scenario with its replays into a staging directory, timing the wall clock;
/// a failure is printed (a panic with the repro line) and becomes its exit code.
#[cfg(madsim)]
fn run_staged(
    scenario: &seedcore_sim::Scenario,
    seed: u64,
    replays: u32,
    staging: &seedcore_sim::run::Staging,
    repro: &str,
) -> Result<(seedcore_sim::run::RunReport, std::time::Duration), u8> {
    let (result, wall) = timed(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            seedcore_sim::run::replay(scenario, seed, replays, Some(staging.path()))
        }))
    });
    match result {
        Ok(Ok(report)) => Ok((report, wall)),
        Ok(Err(error)) => {
            eprintln!("error: {error}");
            Err(exit::RUNTIME)
        }
        Err(_) => {
            eprintln!("error: the simulation panicked (seed {seed}); the panic is printed above");
            eprintln!("reproduce: {repro}");
            Err(exit::RUNTIME)
        }
    }
}

/// Runs `f`, timing it on the wall clock (outside any simulation).
#[cfg(madsim)]
#[allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "wall-clock timing of whole commands and runs, outside the simulation"
)]
fn timed<T>(f: impl FnOnce() -> T) -> (T, std::time::Duration) {
    let started = std::time::Instant::now();
    let value = f();
    (value, started.elapsed())
}

/// Renames a complete staging directory into place.
#[cfg(madsim)]
fn commit(staging: seedcore_sim::run::Staging) -> Result<std::path::PathBuf, u8> {
    staging.commit().map_err(|error| {
        eprintln!("error: {error}");
        exit::RUNTIME
    })
}
