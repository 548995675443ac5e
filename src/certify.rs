//! The `certify`, `verify` and `keygen` commands: argument checks, key handling, printing
//! and exit codes. The work is in `seedcore_reports`.

use crate::exit;
use seedcore_reports::keys::{self, Keyring};
use seedcore_reports::verify::{verify_bundle, VerifyError};
use std::path::PathBuf;

/// The arguments of `certify`.
#[cfg_attr(not(madsim), allow(dead_code, reason = "certify runs in the simulation build only"))]
pub struct Args {
    pub scenario: PathBuf,
    pub seed: Option<u64>,
    pub replays: Option<u32>,
    pub key: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub fail_on_conditions: bool,
    pub baseline: Option<PathBuf>,
    pub capture: Option<PathBuf>,
}

#[cfg(not(madsim))]
pub fn certify(_args: Args) -> u8 {
    eprintln!("error: certify runs under the simulator; use the simulation build: cargo sim certify <scenario>");
    exit::USAGE
}

/// SHA-256 of the running executable: the build a certificate names.
#[cfg(madsim)]
fn build_digest() -> std::io::Result<String> {
    seedcore_reports::certify::file_sha256(&std::env::current_exe()?)
}

#[cfg(madsim)]
pub fn certify(args: Args) -> u8 {
    use seedcore_reports::certify::{bundled_trace, certify, read_baseline, Certify, CertifyError};
    use seedcore_reports::model::Outcome;
    use seedcore_sim::run::Staging;

    let scenario = match crate::load(&args.scenario) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Err(error) = bundled_trace(&scenario) {
        eprintln!("error: {error}");
        return exit::USAGE;
    }
    let seed = args.seed.unwrap_or(scenario.seed);
    let replays = args.replays.unwrap_or(scenario.harness.replays);
    if replays < 2 {
        eprintln!(
            "error: certify needs 2 or more runs of the seed for the determinism invariant ({} asks for {replays}); \
             give --replays 2, or use replay for a single run",
            if args.replays.is_some() {
                "--replays".to_string()
            } else {
                format!("{} harness.replays", scenario.path.display())
            }
        );
        return exit::USAGE;
    }
    let (key, development) = match &args.key {
        Some(path) => match keys::read_signing_key(path) {
            Ok(key) => (key, false),
            Err(error) => {
                eprintln!("error: {error}");
                return exit::USAGE;
            }
        },
        None => match keys::development_key(std::path::Path::new(keys::DEVELOPMENT_KEY)) {
            Ok((key, created)) => {
                let verb = if created { "created" } else { "using" };
                eprintln!(
                    "note: no --key given; {verb} the DEVELOPMENT key {} (public key {}). Its certificates are \
                     marked as development ones, for local checks only; make a release key with `seedcore keygen \
                     keys/release.key`.",
                    keys::DEVELOPMENT_KEY,
                    keys::public_path(std::path::Path::new(keys::DEVELOPMENT_KEY)).display()
                );
                (key, true)
            }
            Err(error) => {
                eprintln!("error: development key: {error}");
                return exit::USAGE;
            }
        },
    };
    let baseline = match &args.baseline {
        None => None,
        Some(dir) => match read_baseline(dir) {
            Ok(b) if b.predicate.scenario.name != scenario.name => {
                eprintln!(
                    "error: {}: the baseline certifies scenario {:?}, not {:?}",
                    dir.display(),
                    b.predicate.scenario.name,
                    scenario.name
                );
                return exit::USAGE;
            }
            Ok(b) => Some(b),
            Err(error) => {
                eprintln!("error: {error}");
                return exit::USAGE;
            }
        },
    };
    let captured = match &args.capture {
        None => None,
        Some(path) => match seedcore_sim::compare::read_capture(path) {
            Ok(rows) => Some((path.clone(), rows)),
            Err(error) => {
                eprintln!("error: {error}");
                return exit::USAGE;
            }
        },
    };
    let build_sha256 = match build_digest() {
        Ok(d) => d,
        Err(error) => {
            eprintln!("error: cannot read the running executable to digest it: {error}");
            return exit::RUNTIME;
        }
    };
    let out = args.out.unwrap_or_else(|| PathBuf::from("out").join(format!("{}-{seed}", scenario.name)));
    let staging = match Staging::new(&out) {
        Ok(s) => s,
        Err(error) => {
            eprintln!("error: cannot write the report: {error}");
            return exit::USAGE;
        }
    };
    crate::summary::banner("certify", &scenario, seed, replays);
    let repro = format!("cargo sim certify {} --seed {seed}", scenario.path.display());
    let (mut report, wall) = match crate::run_staged(&scenario, seed, replays, &staging, &repro) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if let Some((path, rows)) = &captured {
        match live_half(&scenario, path, rows, staging.path()) {
            Ok(live) => report.replays.live = Some(live),
            Err(code) => return code,
        }
    }
    let certified = match certify(&Certify {
        scenario: &scenario,
        seed,
        dir: staging.path(),
        replays: &report.replays,
        key: &key,
        development_key: development,
        build_sha256,
        toolchain: toolchain(),
        baseline: baseline.as_ref(),
    }) {
        Ok(c) => c,
        Err(CertifyError::Usage(message)) => {
            eprintln!("error: {message}");
            return exit::USAGE;
        }
        Err(CertifyError::Runtime(message)) => {
            eprintln!("error: {message}");
            return exit::RUNTIME;
        }
    };
    let written = match crate::commit(staging) {
        Ok(dir) => dir,
        Err(code) => return code,
    };
    report.results = certified.results;
    crate::summary::print(&scenario, &report, wall);
    let data = &certified.data;
    println!();
    let rule = "=".repeat(78);
    println!("{rule}");
    println!("  {}   score {}   {} seed {seed}", data.outcome.as_str(), data.score, scenario.name);
    if !data.critical_failures.is_empty() {
        println!("  critical invariant(s) not passed: {}", data.critical_failures.join(", "));
    }
    for regression in &data.regressions {
        println!("  regression against the baseline: {regression}");
    }
    println!("  report      {}/report.html (and report.md)", written.display());
    println!(
        "  certificate {}/certificate.dsse.json, key id {}{}",
        written.display(),
        &data.key_id[..16],
        if development { " (DEVELOPMENT key)" } else { "" }
    );
    let public = keys::public_path(args.key.as_deref().unwrap_or(std::path::Path::new(keys::DEVELOPMENT_KEY)));
    println!("  verify      cargo sim verify {} --pubkey {}", written.display(), public.display());
    println!("  reproduce   cargo sim reproduce {} --pubkey {}", written.display(), public.display());
    println!("{rule}");
    match data.outcome {
        Outcome::Pass => exit::PASS,
        Outcome::PassWithConditions if !args.fail_on_conditions => exit::PASS,
        Outcome::PassWithConditions => {
            println!("exit 1: PASS WITH CONDITIONS and --fail-on-conditions");
            exit::INVARIANT_FAILED
        }
        Outcome::Fail => {
            println!("reproduce: {repro}");
            exit::INVARIANT_FAILED
        }
    }
}

/// The live half of `determinism`: the capture replayed in the simulator with the
/// scenario's engine settings and the organism seed `serve --scenario` runs with, the
/// comparison written to the bundle's `live/` with the capture beside it.
#[cfg(madsim)]
fn live_half(
    scenario: &seedcore_sim::Scenario,
    capture: &std::path::Path,
    rows: &[seedcore_sim::compare::Captured],
    bundle: &std::path::Path,
) -> Result<seedcore_sim::invariants::LiveAgreement, u8> {
    use seedcore_reports::statement::LIVE_CAPTURE;
    eprintln!(
        "live half: replaying the {} tasks of {} in the simulator with {}'s engine settings ...",
        rows.len(),
        capture.display(),
        scenario.name
    );
    // The comparison goes beside the capture, in the bundle's live directory.
    let to = bundle.join(LIVE_CAPTURE);
    let comparison = compare_capture(scenario, rows, to.parent().expect("the capture is in a directory"))?;
    if let Err(error) = std::fs::copy(capture, &to) {
        eprintln!("error: {}: cannot bundle it as {}: {error}", capture.display(), to.display());
        return Err(exit::RUNTIME);
    }
    Ok(seedcore_sim::invariants::LiveAgreement { tasks: comparison.tasks, agreed: comparison.agreed })
}

/// Replays captured rows with a scenario's live settings into `out`.
#[cfg(madsim)]
fn compare_capture(
    scenario: &seedcore_sim::Scenario,
    rows: &[seedcore_sim::compare::Captured],
    out: &std::path::Path,
) -> Result<seedcore_sim::compare::Comparison, u8> {
    let organism_seed = seedcore_sim::compare::live_organism_seed(scenario);
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        seedcore_sim::compare::compare(scenario, organism_seed, rows, out)
    }));
    match run {
        Ok(Ok(comparison)) => Ok(comparison),
        Ok(Err(error)) => {
            eprintln!("error: replaying the capture: {error}");
            Err(exit::RUNTIME)
        }
        Err(_) => {
            eprintln!("error: replaying the capture panicked; the panic is printed above");
            Err(exit::RUNTIME)
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

pub fn verify(args: VerifyArgs) -> u8 {
    let VerifyArgs { bundle, pubkeys, keyring: keyring_dir, scenario, rerun } = args;
    if rerun && cfg!(not(madsim)) {
        eprintln!(
            "error: --rerun runs the simulator; use the simulation build: cargo sim verify {} --rerun ...",
            bundle.display()
        );
        return exit::USAGE;
    }
    let mut keyring = Keyring::default();
    for path in &pubkeys {
        if let Err(error) = keyring.add_file(path) {
            eprintln!("error: {error}");
            return exit::USAGE;
        }
    }
    if let Some(dir) = &keyring_dir {
        if let Err(error) = keyring.add_dir(dir) {
            eprintln!("error: {error}");
            return exit::USAGE;
        }
    }
    if keyring.is_empty() {
        eprintln!("error: no trusted key: give --pubkey <file.pub> (repeatable) or --keyring <dir>");
        return exit::USAGE;
    }
    match verify_bundle(&bundle, &keyring, scenario.as_deref()) {
        Ok(v) => {
            for check in &v.checks {
                println!("  ok  {check}");
            }
            for warning in &v.warnings {
                println!("  !!  {warning}");
            }
            let p = &v.statement.predicate;
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
                return rerun_bundle(&bundle, &v.statement);
            }
            exit::PASS
        }
        Err(error @ VerifyError::Unreadable { .. }) => {
            eprintln!("error: {error}");
            exit::USAGE
        }
        Err(error @ VerifyError::Rejected(_)) => {
            eprintln!("REJECTED {}: {}", bundle.display(), error.to_string().trim_start_matches("rejected: "));
            exit::REJECTED
        }
    }
}

/// What this binary was built with, as a certificate states it (see build.rs).
#[cfg(madsim)]
fn toolchain() -> seedcore_reports::statement::Toolchain {
    seedcore_reports::statement::Toolchain {
        rustc: env!("SEEDCORE_RUSTC").into(),
        target: env!("SEEDCORE_TARGET").into(),
        cargo_lock_sha256: env!("SEEDCORE_CARGO_LOCK_SHA256").into(),
        source_commit: Some(env!("SEEDCORE_GIT_COMMIT")).filter(|c| !c.is_empty()).map(String::from),
        source_dirty: env!("SEEDCORE_GIT_DIRTY") == "true",
    }
}

/// Re-runs a verified bundle's scenario with its seed in this build: the same Merkle root
/// and event count reproduce the certificate, anything else rejects it (exit 4).
#[cfg(madsim)]
fn rerun_bundle(bundle: &std::path::Path, statement: &seedcore_reports::statement::Statement) -> u8 {
    let p = &statement.predicate;
    println!();
    match build_digest() {
        Ok(digest) if digest == p.engine.build_sha256 => {
            println!("  ok  build: this binary is the certified one (sha256 {}…)", &digest[..16]);
        }
        Ok(digest) => {
            println!(
                "  !!  build: this binary (sha256 {}…) is not the certified one ({}…); a different root may come \
                 from the engine's code, not only from the events",
                &digest[..16],
                &p.engine.build_sha256[..16.min(p.engine.build_sha256.len())]
            );
            let ours = toolchain();
            let theirs = &p.engine.toolchain;
            let differs = [
                ("rustc", &ours.rustc, &theirs.rustc),
                ("target", &ours.target, &theirs.target),
                ("Cargo.lock sha256", &ours.cargo_lock_sha256, &theirs.cargo_lock_sha256),
            ];
            for (what, ours, theirs) in differs.iter().filter(|(_, a, b)| a != b) {
                println!("  !!  build: {what} here is {ours:?}, the certificate's was {theirs:?}");
            }
            if ours.source_commit != theirs.source_commit {
                println!(
                    "  !!  build: source commit here {}, the certificate's {}",
                    ours.source_commit.as_deref().unwrap_or("unknown"),
                    theirs.source_commit.as_deref().unwrap_or("unknown")
                );
            }
        }
        Err(error) => println!("  !!  build: cannot digest this binary: {error}"),
    }
    let scenario = match crate::load(&bundle.join(&p.scenario.file)) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let Ok(seed) = p.seed.parse::<u64>() else {
        eprintln!("error: the statement's seed {:?} is not a u64", p.seed);
        return exit::REJECTED;
    };
    println!("  ..  re-running {} with seed {seed} in this build", scenario.name);
    let repro = format!("cargo sim reproduce {}", bundle.display());
    let run =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| seedcore_sim::run::replay(&scenario, seed, 1, None)));
    let report = match run {
        Ok(Ok(report)) => report,
        Ok(Err(error)) => {
            eprintln!("error: {error}");
            return exit::RUNTIME;
        }
        Err(_) => {
            eprintln!("error: the re-run panicked; the panic is printed above. reproduce: {repro}");
            return exit::RUNTIME;
        }
    };
    let root = hex::encode(report.root);
    if root == p.event_log.merkle_root && report.events == p.event_log.size {
        if let Some(live) = &p.determinism.live {
            if let Err(code) = rerun_live(bundle, &scenario, live) {
                return code;
            }
        }
        println!("REPRODUCED {}: Merkle root {root} and {} events, as certified", bundle.display(), report.events);
        exit::PASS
    } else {
        println!(
            "REJECTED {}: the re-run gives Merkle root {root} with {} events; the certificate states {} with {}",
            bundle.display(),
            report.events,
            p.event_log.merkle_root,
            p.event_log.size
        );
        exit::REJECTED
    }
}

/// Re-runs the live half: the bundled capture replayed again must give the stated
/// agreement and exactly the bundled disagreements.
#[cfg(madsim)]
fn rerun_live(
    bundle: &std::path::Path,
    scenario: &seedcore_sim::Scenario,
    live: &seedcore_reports::statement::LiveRef,
) -> Result<(), u8> {
    use seedcore_sim::compare::{read_capture, read_disagreements};
    let rows = read_capture(&bundle.join(&live.capture)).map_err(|error| {
        println!("REJECTED {}: {error}", bundle.display());
        exit::REJECTED
    })?;
    let stated = read_disagreements(&bundle.join(&live.disagreements)).map_err(|error| {
        println!("REJECTED {}: {error}", bundle.display());
        exit::REJECTED
    })?;
    println!("  ..  re-running the live half: the {} captured tasks replayed in this build", rows.len());
    let scratch = std::env::temp_dir().join(format!("seedcore-reproduce-live-{}", std::process::id()));
    let comparison = compare_capture(scenario, &rows, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let comparison = comparison?;
    if comparison.agreed != live.agreed || comparison.tasks != live.tasks || comparison.disagreements != stated {
        println!(
            "REJECTED {}: the live half re-run gives {} of {} decisions alike ({} disagreements); the certificate \
             states {} of {} with the {} listed in {}",
            bundle.display(),
            comparison.agreed,
            comparison.tasks,
            comparison.disagreements.len(),
            live.agreed,
            live.tasks,
            stated.len(),
            live.disagreements
        );
        return Err(exit::REJECTED);
    }
    println!(
        "  ok  live half: {} of {} captured decisions replayed alike, the same {} disagreements, as certified",
        comparison.agreed,
        comparison.tasks,
        stated.len()
    );
    Ok(())
}

pub fn keygen(path: PathBuf) -> u8 {
    let path = if path.extension().is_some_and(|e| e == "key") {
        path
    } else {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".key");
        path.with_file_name(name)
    };
    match keys::generate(&path) {
        Ok(key) => {
            println!("private key {} (PKCS#8 PEM, mode 0600: keep it secret)", path.display());
            println!("public key  {} (give it to verifiers)", keys::public_path(&path).display());
            println!("key id      {}", keys::key_id(&key.verifying_key()));
            exit::PASS
        }
        Err(error) => {
            eprintln!("error: {error}");
            exit::USAGE
        }
    }
}
