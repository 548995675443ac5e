//! The `seedcore` command line: argument parsing, commands and exit codes (docs/certification.md
//! 8.3). Everything else lives in the library crates.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod attest;
mod campaign;
mod certify;
mod certlog;
mod compare;
mod dashboard;
mod exit;
mod load;
mod logs;
mod progress;
mod replay;
mod secrets;
mod serve;
mod shadow;
#[cfg(madsim)]
mod signing;
#[cfg(madsim)]
mod summary;
mod trace;

/// The simulator allocates per message and per event; mimalloc spends markedly less time
/// there than the system allocator (see ARCHITECTURE.md, performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Directory for events.jsonl and tasks.csv; defaults to out/replay/<scenario>-<seed>.
        /// A directory that holds a certificate is refused: nothing overwrites one.
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
        /// Directory for shrunk.toml; defaults to out/shrink/<scenario>-<seed>.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Certify a scenario: replay it under the simulator with its determinism replays,
    /// evaluate and score every invariant, and write a signed report directory
    /// (simulation build: `cargo sim certify ...`).
    Certify(Box<certify::Args>),
    /// The weekly attestation over the certification log (docs/certification.md 8.8): every
    /// bundle of the window re-verified, figures, deviations with their actions, and a
    /// status, as Markdown and a signed in-toto statement (exit 1 when FAIL: production
    /// paused; 4 when the log does not verify).
    Attest(Box<attest::Args>),
    /// Build the fleet dashboard: one static page (SITE/index.html) over every certification
    /// bundle, campaign and certification log under the directories, each bundle verified.
    Dashboard {
        /// Directories to scan (bundles, campaigns, certification logs; up to 6 levels down).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// The site directory (created if needed; index.html is replaced).
        #[arg(long)]
        out: PathBuf,
        /// Trusted public key (SPKI PEM); repeatable. Without --pubkey or --keyring:
        /// keys/development.pub.
        #[arg(long)]
        pubkey: Vec<PathBuf>,
        /// Directory of trusted public keys (*.pub).
        #[arg(long)]
        keyring: Option<PathBuf>,
    },
    /// The certification log: list its entries, or verify it as a transparency log.
    Log {
        #[command(subcommand)]
        command: certlog::LogCommand,
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
    /// Runs two engine versions on the same seed and arrivals and diffs every decision
    /// (simulation build): diff.csv, decisions by pair, the first divergence, every
    /// measure and invariant side by side, shadow.md and shadow.html.
    Shadow(Box<shadow::ShadowArgs>),
    /// Shadows a candidate over several seeds and judges it by explicit rules: PROMOTE
    /// and PROMOTE WITH CONDITIONS exit 0, ROLLBACK exits 1 (simulation build). Writes a
    /// signed bundle that `verify` recomputes.
    Canary(Box<shadow::CanaryArgs>),
    /// Look into a trace before replaying it (`trace inspect FILE`), or write it as the
    /// canonical CSV (`trace convert FILE --to canonical`); formats canonical, azure,
    /// mooncake, burstgpt. Both builds.
    Trace {
        #[command(subcommand)]
        command: trace::TraceCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let live = matches!(cli.command, Command::Serve(_) | Command::Load(_) | Command::Certs(_) | Command::Token { .. });
    // madsim warns on every simulation that it cannot make std's HashMap seeds
    // deterministic; the engine and the harness use no std HashMap or HashSet (clippy's
    // disallowed-types refuses them, .cargo/clippy-sim), so the line is noise to a user.
    let quiet = "madsim::sim::rand=error";
    logs::init(&cli.log_format, &if live { format!("info,{quiet}") } else { format!("warn,{quiet}") });
    let result = match cli.command {
        Command::Replay { scenario, seed, replays, out, swarm } => {
            replay::run(replay::Args { scenario, seed, replays, out, swarm })
        }
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
        Command::Certify(args) => certify::certify(*args),
        Command::Log { command } => certlog::run(command),
        Command::Attest(args) => attest::run(*args),
        Command::Dashboard { dirs, out, pubkey, keyring } => {
            dashboard::run(dashboard::Args { dirs, out, pubkeys: pubkey, keyring })
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
        Command::Shadow(args) => shadow::shadow(*args),
        Command::Canary(args) => shadow::canary(*args),
        Command::Trace { command } => trace::run(command),
    };
    ExitCode::from(exit::report(result))
}
