//! `seedcore log list` and `seedcore log verify`: the certification log
//! (docs/certification.md 8.6) read, and checked as a transparency log is.

use crate::exit::{self, Failure};
use seedcore_reports::certlog::{self, LogError};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum LogCommand {
    /// Print every entry of a certification log, each with its bundle's path.
    List {
        /// The log directory (certify's --log, default out/log).
        #[arg(default_value = "out/log")]
        dir: PathBuf,
    },
    /// Check a certification log: its Merkle tree, every signed checkpoint, and every
    /// listed bundle (there, verifying, with the listed digest). Exit 0, or 4 naming the
    /// entry.
    Verify {
        /// The log directory.
        #[arg(default_value = "out/log")]
        dir: PathBuf,
        /// Trusted public key (SPKI PEM) of the checkpoints' and bundles' signers; repeatable.
        #[arg(long)]
        pubkey: Vec<PathBuf>,
        /// Directory of trusted public keys (*.pub).
        #[arg(long)]
        keyring: Option<PathBuf>,
        /// An older checkpoint (a line of checkpoints.jsonl saved to a file): also prove,
        /// by an RFC 6962 consistency proof, that the log then is a prefix of the log now.
        #[arg(long)]
        since: Option<PathBuf>,
    },
}

pub fn run(command: LogCommand) -> Result<u8, Failure> {
    match command {
        LogCommand::List { dir } => list(&dir),
        LogCommand::Verify { dir, pubkey, keyring, since } => {
            let keyring = crate::certify::trusted_keys(&pubkey, keyring.as_deref())?;
            verify(&dir, &keyring, since.as_deref())
        }
    }
}

fn list(dir: &std::path::Path) -> Result<u8, Failure> {
    if !dir.join(certlog::ENTRIES).is_file() {
        return Err(exit::usage(format!(
            "{}: no certification log here (certify --log DIR writes one)",
            dir.display()
        )));
    }
    let entries = certlog::read_entries(dir)?;
    println!(
        "{:>5}  {:<20}  {:<22} {:>6}  {:<20}  {:<16}  bundle",
        "entry", "time", "scenario", "seed", "outcome", "key"
    );
    for e in &entries {
        println!(
            "{:>5}  {:<20}  {:<22} {:>6}  {:<20}  {:<16}  {}",
            e.index,
            e.time,
            e.scenario,
            e.seed,
            format!("{} {}", e.outcome, e.score),
            &e.key_id[..16.min(e.key_id.len())],
            certlog::bundle_path(dir, e).display()
        );
    }
    println!("{} entr{} in {}", entries.len(), if entries.len() == 1 { "y" } else { "ies" }, dir.display());
    Ok(exit::PASS)
}

fn verify(
    dir: &std::path::Path,
    keyring: &seedcore_reports::keys::Keyring,
    since: Option<&std::path::Path>,
) -> Result<u8, Failure> {
    let rejected = |error: LogError| -> Result<u8, Failure> {
        match error {
            LogError::Io { .. } => Err(exit::usage(error.to_string())),
            LogError::Rejected { .. } => {
                println!("REJECTED {}: {error}", dir.display());
                Ok(exit::REJECTED)
            }
        }
    };
    let state = match certlog::verify_log(dir, keyring) {
        Ok(state) => state,
        Err(error) => return rejected(error),
    };
    println!(
        "  ok  tree: {} entries, Merkle root {}, each of the {} checkpoints signs the tree of its size",
        state.size,
        state.root,
        state.checkpoints.len()
    );
    if let Some(file) = since {
        match certlog::prove_since(&state, file, keyring) {
            Ok((old, hashes)) => println!(
                "  ok  consistency: the checkpoint of {} ({} entries, root {}…) is a prefix of the log now (an RFC \
                 6962 proof of {hashes} hashes)",
                old.time,
                old.size,
                &old.root[..16]
            ),
            Err(error) => return rejected(error),
        }
    }
    let bar = crate::progress::bar(state.entries.len() as u64, "bundles");
    for entry in &state.entries {
        bar.inc(1);
        let bundle = certlog::bundle_path(dir, entry);
        if let Err(reason) = certlog::check_bundle(&bundle, &entry.into(), keyring) {
            bar.finish_and_clear();
            println!(
                "REJECTED {}: entry {} ({} seed {}, {}), {}: {reason}",
                dir.display(),
                entry.index,
                entry.scenario,
                entry.seed,
                entry.time,
                bundle.display()
            );
            return Ok(exit::REJECTED);
        }
    }
    bar.finish_and_clear();
    println!("  ok  bundles: all {} listed bundles are there, verify, and have the listed digests", state.size);
    println!("VERIFIED {}: {} certifications, root {}", dir.display(), state.size, state.root);
    Ok(exit::PASS)
}
