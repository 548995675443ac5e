//! The `certify`, `verify`, `reproduce` and `keygen` commands: arguments in, one call to
//! `seedcore_reports`, what it returns printed, and the exit code.

use crate::exit::{self, usage, Failure};
use seedcore_reports::keys::{self, Keyring};
use seedcore_reports::verify::{verify_bundle, VerifyError};
#[cfg(madsim)]
use seedcore_sim::run::Existing;
use std::path::{Path, PathBuf};

/// The arguments of `certify`.
#[derive(clap::Args)]
#[cfg_attr(not(madsim), allow(dead_code, reason = "certify runs in the simulation build only"))]
pub struct Args {
    /// Scenario file (TOML).
    pub scenario: PathBuf,
    /// Run seed; defaults to the scenario's.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Runs of the seed for the determinism check; defaults to the scenario's (2).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub replays: Option<u32>,
    /// Ed25519 private key (PKCS#8 PEM, from `seedcore keygen`); without it, the
    /// development key keys/development.key is used (and created if missing).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Report directory; defaults to out/<scenario>-<seed>, or, when that holds another
    /// certificate, the first free out/<scenario>-<seed>-N. Nothing overwrites a
    /// certificate: a directory given here that holds one is refused without --force.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the certificate in --out DIR (the log keeps the replaced one's entry, which
    /// `log verify` then reports).
    #[arg(long, requires = "out")]
    pub force: bool,
    /// The certification log this certification is appended to (docs/certification.md 8.6).
    #[arg(long, default_value = "out/log")]
    pub log: PathBuf,
    /// Exit 1 on PASS WITH CONDITIONS too.
    #[arg(long)]
    pub fail_on_conditions: bool,
    /// Exit 1 on any regression against --baseline.
    #[arg(long, requires = "baseline")]
    pub fail_on_regression: bool,
    /// A previous certificate of the same scenario: verified (against --pubkey/--keyring,
    /// or the signing key), then regressions against it are flagged.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Compare with a baseline of another scenario digest all the same, listing what
    /// differs.
    #[arg(long, requires = "baseline")]
    pub baseline_allow_changed_scenario: bool,
    /// Trusted public key for the baseline (SPKI PEM); repeatable.
    #[arg(long)]
    pub pubkey: Vec<PathBuf>,
    /// Directory of trusted public keys (*.pub) for the baseline.
    #[arg(long)]
    pub keyring: Option<PathBuf>,
    /// A frozen policy (a TOML file with a [policy] table, kept by the governance owner):
    /// a scenario policy that loosens or reweighs it is refused (exit 2).
    #[arg(long)]
    pub frozen_policy: Option<PathBuf>,
    /// A capture of the live gateway (`serve --scenario SCENARIO --capture FILE`):
    /// replayed in the simulator with the scenario's engine settings, its decision
    /// agreement is the live half of `determinism`, and it is bundled.
    #[arg(long)]
    pub capture: Option<PathBuf>,
}

#[cfg(not(madsim))]
pub fn certify(_args: Args) -> Result<u8, Failure> {
    Err(usage("certify runs under the simulator; use the simulation build: cargo sim certify <scenario>"))
}

/// `--replays`, or the scenario's: certify needs two runs at least.
#[cfg(madsim)]
fn certify_replays(scenario: &seedcore_sim::Scenario, given: Option<u32>) -> Result<u32, Failure> {
    let replays = given.unwrap_or(scenario.harness.replays);
    if replays >= 2 {
        return Ok(replays);
    }
    let asked = match given {
        Some(_) => "--replays".to_string(),
        None => format!("{} harness.replays", scenario.path.display()),
    };
    Err(usage(format!(
        "certify needs 2 or more runs of the seed for the determinism invariant ({asked} asks for {replays}); give \
         --replays 2, or use replay for a single run"
    )))
}

/// Where the bundle goes: `--out DIR` (refused when it holds a certificate, unless
/// `--force`), or the default directory, or the next free name beside it.
#[cfg(madsim)]
fn placement(args: &Args, scenario: &seedcore_sim::Scenario, seed: u64) -> Result<(PathBuf, Existing), Failure> {
    match &args.out {
        None => Ok((crate::summary::default_out(scenario, seed), Existing::NextFree)),
        Some(out) if args.force => Ok((out.clone(), Existing::Force)),
        Some(out) if seedcore_sim::run::holds_certificate(out) => Err(usage(format!(
            "--out {}: holds another certificate, and nothing overwrites one; give another directory, leave --out out \
             (a new directory is chosen), or --force to replace it",
            out.display()
        ))),
        Some(out) => Ok((out.clone(), Existing::Replace)),
    }
}

/// The keys a baseline must verify against: `--pubkey`/`--keyring`, or the signing key's.
#[cfg(madsim)]
fn baseline_keys(args: &Args, key: &keys::SigningKey) -> Result<Keyring, Failure> {
    if args.pubkey.is_empty() && args.keyring.is_none() {
        let mut keyring = Keyring::default();
        keyring.add_key(key.verifying_key(), "the signing key");
        return Ok(keyring);
    }
    trusted_keys(&args.pubkey, args.keyring.as_deref())
}

#[cfg(madsim)]
pub fn certify(args: Args) -> Result<u8, Failure> {
    use seedcore_reports::pipeline::{certify_into, Baseline, CertifyRequest};
    let scenario = seedcore_sim::load(&args.scenario)?;
    let seed = args.seed.unwrap_or(scenario.seed);
    let replays = certify_replays(&scenario, args.replays)?;
    let (key, development_key) = crate::signing::signing_key(args.key.as_deref())?;
    let (out, existing) = placement(&args, &scenario, seed)?;
    let keyring = baseline_keys(&args, &key)?;
    crate::summary::banner("certify", &scenario, seed, replays);
    if let Some(capture) = &args.capture {
        eprintln!(
            "live half: {} will be replayed in the simulator with {}'s engine settings",
            capture.display(),
            scenario.name
        );
    }
    let baseline = args.baseline.as_ref().map(|dir| Baseline {
        dir: dir.clone(),
        keyring: &keyring,
        allow_changed_scenario: args.baseline_allow_changed_scenario,
    });
    let done = certify_into(CertifyRequest {
        scenario: &scenario,
        seed,
        replays,
        key: &key,
        development_key,
        out: out.clone(),
        existing,
        baseline,
        frozen_policy: args.frozen_policy.clone(),
        log: Some(args.log.clone()),
        capture: args.capture.clone(),
        toolchain: toolchain(),
    })?;
    crate::summary::print(&scenario, &done.report, done.wall);
    if done.dir != out {
        println!(
            "{} holds another certificate, which nothing overwrites: this one is in {}",
            out.display(),
            done.dir.display()
        );
    }
    let public = keys::public_path(args.key.as_deref().unwrap_or(Path::new(keys::DEVELOPMENT_KEY)));
    print_certified(&scenario, seed, &done, &public, &args.log);
    Ok(exit_code(&done, args.fail_on_conditions, args.fail_on_regression))
}

/// The closing box: outcome, score, regressions, and where the report and the
/// certificate are, with the commands that verify and reproduce it.
#[cfg(madsim)]
fn print_certified(
    scenario: &seedcore_sim::Scenario,
    seed: u64,
    done: &seedcore_reports::pipeline::Certification,
    public: &Path,
    log: &Path,
) {
    let data = &done.certified.data;
    let written = done.dir.display();
    let rule = "=".repeat(78);
    println!();
    println!("{rule}");
    println!("  {}   score {}   {} seed {seed}", data.outcome.as_str(), data.score, scenario.name);
    if !data.critical_failures.is_empty() {
        println!("  critical invariant(s) not passed: {}", data.critical_failures.join(", "));
    }
    for change in &done.scenario_changes {
        println!("  scenario changed since the baseline: {change}");
    }
    for regression in &data.regressions {
        println!("  regression against the baseline: {regression}");
    }
    for change in data.policy_changes.iter().filter(|c| c.weakens()) {
        println!("  policy {} against the defaults: {}", change.effect, change.sentence());
    }
    println!("  report      {written}/report.html (and report.md)");
    let development = if data.development_key { " (DEVELOPMENT key)" } else { "" };
    println!("  certificate {written}/certificate.dsse.json, key id {}{development}", &data.key_id[..16]);
    println!("  verify      cargo sim verify {written} --pubkey {}", public.display());
    println!("  reproduce   cargo sim reproduce {written} --pubkey {}", public.display());
    if let Some(entry) = &done.logged {
        println!(
            "  logged      entry {} of {} at {}; check it: seedcore log verify {} --pubkey {}",
            entry.index,
            log.display(),
            entry.time,
            log.display(),
            public.display()
        );
    }
    println!("{rule}");
}

/// 0 for PASS (and PASS WITH CONDITIONS unless `--fail-on-conditions`), 1 otherwise, and
/// 1 for a regression against the baseline with `--fail-on-regression`.
#[cfg(madsim)]
fn exit_code(
    done: &seedcore_reports::pipeline::Certification,
    fail_on_conditions: bool,
    fail_on_regression: bool,
) -> u8 {
    use seedcore_reports::model::Outcome;
    let regressions = &done.certified.data.regressions;
    if fail_on_regression && !regressions.is_empty() && done.certified.data.outcome != Outcome::Fail {
        println!("exit 1: {} regression(s) against the baseline and --fail-on-regression", regressions.len());
        return exit::INVARIANT_FAILED;
    }
    match done.certified.data.outcome {
        Outcome::Pass => exit::PASS,
        Outcome::PassWithConditions if !fail_on_conditions => exit::PASS,
        Outcome::PassWithConditions => {
            println!("exit 1: PASS WITH CONDITIONS and --fail-on-conditions");
            exit::INVARIANT_FAILED
        }
        Outcome::Fail => {
            println!("reproduce: {}", done.repro);
            exit::INVARIANT_FAILED
        }
    }
}

/// The arguments of `verify` and `reproduce`.
pub struct VerifyArgs {
    pub bundle: PathBuf,
    pub pubkeys: Vec<PathBuf>,
    pub keyring: Option<PathBuf>,
    pub scenario: Option<PathBuf>,
    pub rerun: bool,
}

/// The trusted keys: every `--pubkey` and the `--keyring` directory's; at least one.
pub fn trusted_keys(pubkeys: &[PathBuf], dir: Option<&Path>) -> Result<Keyring, Failure> {
    let mut keyring = Keyring::default();
    for path in pubkeys {
        keyring.add_file(path)?;
    }
    if let Some(dir) = dir {
        keyring.add_dir(dir)?;
    }
    if keyring.is_empty() {
        return Err(usage("no trusted key: give --pubkey <file.pub> (repeatable) or --keyring <dir>"));
    }
    Ok(keyring)
}

pub fn verify(args: VerifyArgs) -> Result<u8, Failure> {
    let VerifyArgs { bundle, pubkeys, keyring, scenario, rerun } = args;
    if rerun && cfg!(not(madsim)) {
        return Err(usage(format!(
            "--rerun runs the simulator; use the simulation build: cargo sim verify {} --rerun ...",
            bundle.display()
        )));
    }
    let keyring = trusted_keys(&pubkeys, keyring.as_deref())?;
    if bundle.join(seedcore_reports::attest::ENVELOPE).is_file() {
        if rerun {
            return Err(usage("--rerun re-runs a certification bundle; an attestation is verified from its bundles"));
        }
        return crate::attest::verify(&bundle, &keyring);
    }
    if seedcore_reports::shadow::bundle::is_canary(&bundle) {
        if rerun {
            return Err(usage("--rerun re-runs a certification bundle; a canary is verified from its event logs"));
        }
        return crate::shadow::verify(&bundle, &keyring);
    }
    let verified = match verify_bundle(&bundle, &keyring, scenario.as_deref()) {
        Ok(verified) => verified,
        Err(error @ VerifyError::Unreadable { .. }) => return Err(usage(error.to_string())),
        Err(error @ VerifyError::Rejected(_)) => {
            eprintln!("REJECTED {}: {}", bundle.display(), error.to_string().trim_start_matches("rejected: "));
            return Ok(exit::REJECTED);
        }
    };
    for check in &verified.checks {
        println!("  ok  {check}");
    }
    for warning in &verified.warnings {
        println!("  !!  {warning}");
    }
    let p = &verified.statement.predicate;
    println!(
        "VERIFIED {}: {} (score {}), scenario {} seed {}, {} events",
        bundle.display(),
        p.outcome,
        p.score,
        p.scenario.name,
        p.seed,
        p.event_log.size
    );
    // The live build refused --rerun above, before reading the bundle.
    #[cfg(madsim)]
    if rerun {
        return reproduce(&bundle, &verified.statement);
    }
    Ok(exit::PASS)
}

/// What this binary was built with, as a certificate states it (see build.rs).
#[cfg(madsim)]
fn toolchain() -> seedcore_reports::model::Toolchain {
    seedcore_reports::model::Toolchain {
        rustc: env!("SEEDCORE_RUSTC").into(),
        target: env!("SEEDCORE_TARGET").into(),
        cargo_lock_sha256: env!("SEEDCORE_CARGO_LOCK_SHA256").into(),
        source_commit: Some(env!("SEEDCORE_GIT_COMMIT")).filter(|c| !c.is_empty()).map(String::from),
        source_dirty: env!("SEEDCORE_GIT_DIRTY") == "true",
    }
}

/// Whether this binary is the certified one; where it is not, what differs (a different
/// root may then come from the engine's code, not only from the events).
#[cfg(madsim)]
fn print_build_check(certified: &seedcore_reports::statement::EngineRef) {
    let digest = match seedcore_reports::pipeline::build_digest() {
        Ok(digest) => digest,
        Err(error) => return println!("  !!  build: cannot digest this binary: {error}"),
    };
    if digest == certified.build_sha256 {
        return println!("  ok  build: this binary is the certified one (sha256 {}…)", &digest[..16]);
    }
    println!(
        "  !!  build: this binary (sha256 {}…) is not the certified one ({}…); a different root may come from the \
         engine's code, not only from the events",
        &digest[..16],
        &certified.build_sha256[..16.min(certified.build_sha256.len())]
    );
    let (ours, theirs) = (toolchain(), &certified.toolchain);
    let differs = [
        ("rustc", &ours.rustc, &theirs.rustc),
        ("target", &ours.target, &theirs.target),
        ("Cargo.lock sha256", &ours.cargo_lock_sha256, &theirs.cargo_lock_sha256),
    ];
    for (what, ours, theirs) in differs.iter().filter(|(_, a, b)| a != b) {
        println!("  !!  build: {what} here is {ours:?}, the certificate's was {theirs:?}");
    }
    if ours.source_commit != theirs.source_commit {
        let commit = |c: &Option<String>| c.clone().unwrap_or_else(|| "unknown".into());
        println!(
            "  !!  build: source commit here {}, the certificate's {}",
            commit(&ours.source_commit),
            commit(&theirs.source_commit)
        );
    }
}

/// Re-runs a verified bundle's scenario with its seed in this build: the same Merkle root
/// and event count (and live half) reproduce the certificate, anything else rejects it.
#[cfg(madsim)]
fn reproduce(bundle: &Path, statement: &seedcore_reports::statement::Statement) -> Result<u8, Failure> {
    use seedcore_reports::pipeline::{rerun, RerunError};
    let p = &statement.predicate;
    println!();
    print_build_check(&p.engine);
    println!("  ..  re-running {} with seed {} in this build", p.scenario.name, p.seed);
    if p.determinism.live.is_some() {
        println!("  ..  and its live half: the bundled capture replayed in this build");
    }
    let rerun = match rerun(bundle, statement) {
        Ok(rerun) => rerun,
        Err(RerunError::Rejected(message)) => {
            println!("REJECTED {}: {message}", bundle.display());
            return Ok(exit::REJECTED);
        }
        Err(RerunError::Failed(error)) => return Err(error.into()),
    };
    if !rerun.reproduced {
        println!(
            "REJECTED {}: the re-run gives Merkle root {} with {} events; the certificate states {} with {}",
            bundle.display(),
            rerun.root,
            rerun.events,
            p.event_log.merkle_root,
            p.event_log.size
        );
        return Ok(exit::REJECTED);
    }
    if let Some(live) = &rerun.live {
        if !print_live_rerun(bundle, live) {
            return Ok(exit::REJECTED);
        }
    }
    println!("REPRODUCED {}: Merkle root {} and {} events, as certified", bundle.display(), rerun.root, rerun.events);
    Ok(exit::PASS)
}

/// The live half's re-run against the certificate's; whether it holds.
#[cfg(madsim)]
fn print_live_rerun(bundle: &Path, live: &seedcore_reports::pipeline::LiveRerun) -> bool {
    if live.same {
        println!(
            "  ok  live half: {} of {} captured decisions replayed alike, the same {} disagreements, as certified",
            live.agreed, live.tasks, live.stated_disagreements
        );
        return true;
    }
    println!(
        "REJECTED {}: the live half re-run gives {} of {} decisions alike ({} disagreements); the certificate states \
         {} of {} with the {} listed in {}",
        bundle.display(),
        live.agreed,
        live.tasks,
        live.disagreements,
        live.stated.agreed,
        live.stated.tasks,
        live.stated_disagreements,
        live.stated.disagreements
    );
    false
}

pub fn keygen(path: PathBuf) -> Result<u8, Failure> {
    let path = if path.extension().is_some_and(|e| e == "key") {
        path
    } else {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".key");
        path.with_file_name(name)
    };
    let key = keys::generate(&path)?;
    println!("private key {} (PKCS#8 PEM, mode 0600: keep it secret)", path.display());
    println!("public key  {} (give it to verifiers)", keys::public_path(&path).display());
    println!("key id      {}", keys::key_id(&key.verifying_key()));
    Ok(exit::PASS)
}
