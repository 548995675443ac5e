//! The `attest` command (the weekly attestation over the certification log) and `verify` of
//! an attestation directory: arguments in, one call to `seedcore_reports::attest`, what it
//! returns printed, and the exit code (0 for PASS and PASS WITH CONDITIONS, 1 for FAIL:
//! production paused, 4 when the log or the attestation does not verify).

use crate::exit::{self, usage, Failure};
use seedcore_reports::attest::{self as weekly, AttestError, AttestRequest, Attested};
use seedcore_reports::certlog::LogError;
use seedcore_reports::clock;
use seedcore_reports::keys::{self, Keyring};
use seedcore_reports::verify::VerifyError;
use std::path::{Path, PathBuf};

/// The arguments of `attest`.
#[derive(clap::Args)]
pub struct Args {
    /// The certification log's directory (`certify --log DIR`).
    #[arg(long, default_value = "out/log")]
    pub log: PathBuf,
    /// Start of the window, inclusive: YYYY-MM-DD (00:00 UTC) or an RFC 3339 time.
    #[arg(long)]
    pub since: String,
    /// End of the window, exclusive, same forms; defaults to now (this second included).
    #[arg(long)]
    pub until: Option<String>,
    /// Private key that signs the attestation (PKCS#8 PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// Directory to write into (created); one that already holds an attestation is refused.
    #[arg(long)]
    pub out: PathBuf,
    /// Trusted public key for the log's checkpoints and the bundles; repeatable. Without it
    /// or --keyring: the .pub beside --key, and keys/development.pub if present.
    #[arg(long = "pubkey")]
    pub pubkeys: Vec<PathBuf>,
    /// Directory of trusted public keys (*.pub).
    #[arg(long)]
    pub keyring: Option<PathBuf>,
}

/// Bundles to re-verify from which a progress bar is worth showing.
const MANY_BUNDLES: u64 = 8;

/// Deviations printed on the terminal; the report lists them all.
const DEVIATIONS_SHOWN: usize = 20;

/// A `--since` or `--until`: a date (its 00:00 UTC) or an RFC 3339 time, in Unix seconds.
fn instant(flag: &str, text: &str) -> Result<i64, Failure> {
    clock::parse_date_or_time(text)
        .ok_or_else(|| usage(format!("{flag} {text:?}: not a date (YYYY-MM-DD) or an RFC 3339 time")))
}

/// The trusted keys: every `--pubkey` and the `--keyring` directory's; without either,
/// the public half of `--key` (beside it, as keygen writes it) and the development key's
/// if there is one, said on stderr.
fn trusted_keys(args: &Args) -> Result<Keyring, Failure> {
    let mut keyring = Keyring::default();
    for path in &args.pubkeys {
        keyring.add_file(path)?;
    }
    if let Some(dir) = &args.keyring {
        keyring.add_dir(dir)?;
    }
    if !keyring.is_empty() {
        return Ok(keyring);
    }
    let own = keys::public_path(&args.key);
    keyring.add_file(&own).map_err(|error| {
        usage(format!("no --pubkey or --keyring given, and the public half of --key cannot be trusted: {error}"))
    })?;
    let mut trusted = vec![own.display().to_string()];
    let development = keys::public_path(Path::new(keys::DEVELOPMENT_KEY));
    if development.is_file() {
        keyring.add_file(&development)?;
        trusted.push(development.display().to_string());
    }
    eprintln!(
        "note: no --pubkey or --keyring given; trusting {} for the log's checkpoints and the bundles' certificates",
        trusted.join(" and ")
    );
    Ok(keyring)
}

/// Advances the bundles' progress bar, drawn once there are enough bundles to wait for.
fn step(bar: &mut Option<indicatif::ProgressBar>, done: u64, total: u64) {
    if total >= MANY_BUNDLES {
        bar.get_or_insert_with(|| crate::progress::bar(total, "bundles")).set_position(done);
    }
}

fn finish(bar: Option<indicatif::ProgressBar>) {
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

/// An attestation not written, with its exit code.
fn failure(error: AttestError) -> Failure {
    let code = match &error {
        AttestError::Usage(_) | AttestError::Log(LogError::Io { .. }) => exit::USAGE,
        AttestError::Log(LogError::Rejected { .. }) => exit::REJECTED,
        AttestError::Runtime(_) => exit::RUNTIME,
    };
    Failure::new(code, error.to_string())
}

pub fn run(args: Args) -> Result<u8, Failure> {
    let since = instant("--since", &args.since)?;
    let until = match &args.until {
        Some(text) => instant("--until", text)?,
        // Now, inclusive: a certification logged in this very second is in the window.
        None => clock::parse(&clock::now()).expect("clock::now writes RFC 3339") + 1,
    };
    if until <= since {
        return Err(usage(format!(
            "--until {} is not after --since {}: the window is empty",
            clock::format(until),
            clock::format(since)
        )));
    }
    let key = keys::read_signing_key(&args.key)?;
    let keyring = trusted_keys(&args)?;
    let request = AttestRequest { log: &args.log, since, until, key: &key, keyring: &keyring, out: &args.out };
    let mut bar: Option<indicatif::ProgressBar> = None;
    let result = weekly::attest(&request, &mut |done, total| step(&mut bar, done, total));
    finish(bar);
    let attested = result.map_err(failure)?;
    print_attested(&args, &attested, &keys::key_id(&key.verifying_key()));
    Ok(if attested.statement.predicate.status == "FAIL" { exit::INVARIANT_FAILED } else { exit::PASS })
}

/// The figures, the status in a box with its reasons, the files written and the command
/// that verifies them.
fn print_attested(args: &Args, attested: &Attested, key_id: &str) {
    let p = &attested.statement.predicate;
    let (b, r) = (&p.by_outcome, &p.replay_agreement);
    let verified = p.entries.iter().filter(|e| e.verified).count();
    println!("weekly attestation of {} from {} to {}", args.log.display(), p.window.since, p.window.until);
    println!(
        "  certifications  {}: PASS {}, PASS WITH CONDITIONS {}, FAIL {}",
        p.entries.len(),
        b.pass,
        b.pass_with_conditions,
        b.fail
    );
    println!(
        "  signatures      {verified} of {} bundles verified: {} (must be 100 %)",
        p.entries.len(),
        weekly::percent(p.signature_validation_ppm)
    );
    let determinism = p.determinism_ppm.map_or_else(|| "n/a".to_string(), weekly::percent);
    println!("  determinism     {determinism}; {} of {} replays agree", r.matching, r.replays);
    println!("  deviations      {}", p.deviations.len());
    for d in p.deviations.iter().take(DEVIATIONS_SHOWN) {
        println!(
            "    entry {} {} seed {}: {} (SLA {}, {}): {}",
            d.entry,
            d.scenario,
            d.seed,
            d.class.as_str(),
            d.class.sla(),
            d.action.meaning(),
            d.detail
        );
    }
    if p.deviations.len() > DEVIATIONS_SHOWN {
        println!("    ... and {} more (see the report)", p.deviations.len() - DEVIATIONS_SHOWN);
    }
    let rule = "=".repeat(78);
    println!("{rule}");
    let paused = if p.status == "FAIL" { ": production paused" } else { "" };
    println!("  {}{paused}", p.status);
    for condition in &p.conditions {
        println!("  - {condition}");
    }
    println!("  report       {}", attested.markdown.display());
    println!("  statement    {}", attested.json.display());
    println!("  attestation  {}, key id {}", attested.envelope.display(), &key_id[..16.min(key_id.len())]);
    println!(
        "  verify       seedcore verify {} --pubkey {}",
        args.out.display(),
        keys::public_path(&args.key).display()
    );
    println!("{rule}");
}

/// `verify DIR` of a directory that holds an attestation: every check, then `VERIFIED`, or
/// `REJECTED` and exit 4.
pub fn verify(dir: &Path, keyring: &Keyring) -> Result<u8, Failure> {
    let mut bar: Option<indicatif::ProgressBar> = None;
    let result = weekly::verify_attestation_with(dir, keyring, &mut |done, total| step(&mut bar, done, total));
    finish(bar);
    let check = match result {
        Ok(check) => check,
        Err(error @ VerifyError::Unreadable { .. }) => return Err(usage(error.to_string())),
        Err(VerifyError::Rejected(reason)) => {
            eprintln!("REJECTED {}: {reason}", dir.display());
            return Ok(exit::REJECTED);
        }
    };
    for line in &check.checks {
        println!("  ok  {line}");
    }
    let p = &check.statement.predicate;
    println!(
        "VERIFIED {}: weekly attestation {} ({} to {}), {} certifications, signature validation {}, {} deviations, \
         signed by {}",
        dir.display(),
        p.status,
        p.window.since,
        p.window.until,
        p.entries.len(),
        weekly::percent(p.signature_validation_ppm),
        p.deviations.len(),
        check.keyid
    );
    Ok(exit::PASS)
}
