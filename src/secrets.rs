//! `seedcore certs` (mutual TLS between roles, docs/engine.md 2.3) and `seedcore token create` (the
//! gateway's bearer tokens, docs/live.md 4.11). Live build only: the simulation build has no TLS
//! and no gateway.

use crate::exit;
use std::path::PathBuf;

/// `seedcore certs DIR`.
#[derive(clap::Args)]
pub struct CertsArgs {
    /// Directory to write ca.pem, ca.key and <role>.pem, <role>.key into (created; one that
    /// already holds a ca.pem is refused).
    dir: PathBuf,
    /// Fast workers to make certificates for (fast-1..fast-N).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=250))]
    fast: u32,
    /// Deep workers to make certificates for (deep-1..deep-M).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=250))]
    deep: u32,
    /// Days the certificates are valid for.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
}

/// `seedcore token ...`.
#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Append a new token's SHA-256, name and scopes to FILE (created mode 0600) and print
    /// the token, once, on the last line.
    Create {
        /// The tokens file `serve --tokens FILE` reads.
        #[arg(long)]
        tokens: PathBuf,
        /// The token's name, logged and captured in its place: letters, digits, . _ -.
        #[arg(long)]
        name: String,
        /// What it may do (repeatable, or comma-separated): submit (/v1/tasks,
        /// /ocps/route), read (status, state, energy, tier 2.5 retrieve; /metrics with
        /// --metrics-scope read), operate (/safety/validate, tier 2.5 store).
        #[arg(long = "scope", required = true, value_delimiter = ',', value_parser = ["submit", "read", "operate"])]
        scopes: Vec<String>,
    },
}

#[cfg(madsim)]
pub fn certs(_: CertsArgs) -> Result<u8, exit::Failure> {
    Err(exit::usage("certs is a live command; use the live build: cargo run --release -- certs DIR"))
}

#[cfg(madsim)]
pub fn token(_: TokenCommand) -> Result<u8, exit::Failure> {
    Err(exit::usage("token is a live command; use the live build: cargo run --release -- token create ..."))
}

#[cfg(not(madsim))]
pub fn certs(args: CertsArgs) -> Result<u8, exit::Failure> {
    let mut roles = vec!["coordinator".to_string(), "state".to_string()];
    roles.extend((1..=args.fast).map(|n| format!("fast-{n}")));
    roles.extend((1..=args.deep).map(|n| format!("deep-{n}")));
    roles.push("gateway".into());
    let written = seedcore_engine::tls::write_development_pki(&args.dir, &roles, args.days).map_err(exit::usage)?;
    for file in &written.files {
        println!("wrote {}", file.display());
    }
    let (y, m, d) = written.expires;
    println!(
        "a development CA and certificates for {} roles, valid until {y}-{m:02}-{d:02}. Give every role `serve \
         --tls-dir {}`; keep ca.key out of the deployment (it signs new certificates).",
        roles.len(),
        args.dir.display()
    );
    Ok(exit::PASS)
}

#[cfg(not(madsim))]
pub fn token(command: TokenCommand) -> Result<u8, exit::Failure> {
    use seedcore_engine::gateway::auth::{create, Scope};
    let TokenCommand::Create { tokens, name, scopes } = command;
    let mut parsed: Vec<Scope> = scopes.iter().filter_map(|s| Scope::parse(s)).collect();
    parsed.sort();
    parsed.dedup();
    let token = create(&tokens, &name, &parsed).map_err(exit::usage)?;
    let scopes: Vec<&str> = parsed.iter().map(|s| s.as_str()).collect();
    println!(
        "added {name:?} ({}) to {}; the token is shown once, below. Send it as `Authorization: Bearer TOKEN`.",
        scopes.join(", "),
        tokens.display()
    );
    println!("{token}");
    Ok(exit::PASS)
}
