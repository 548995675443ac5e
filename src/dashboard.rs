//! The `dashboard` command (docs/certification.md 8.8): scans directories for certification
//! bundles, campaigns and certification logs, verifies every bundle, and writes the fleet's
//! static page, `SITE/index.html`. A bundle that does not verify is listed on the page, not
//! fatal: the command fails (exit 2) only when a directory is not there, when it finds
//! nothing at all, or when it cannot write the page.

use crate::exit::{self, usage, Failure};
use seedcore_reports::certify::CERTIFICATE;
use seedcore_reports::certlog::ENTRIES;
use seedcore_reports::dashboard::{self, Fleet, Scan, CAMPAIGN_LINES};
use seedcore_reports::keys::{self, Keyring};
use std::path::{Path, PathBuf};

/// From this many bundles on, verifying them shows a progress bar (on a terminal).
const BAR_FROM: usize = 5;

/// The arguments of `dashboard`.
pub struct Args {
    /// Directories to scan (each walked a few levels down).
    pub dirs: Vec<PathBuf>,
    /// The site directory, created if needed.
    pub out: PathBuf,
    pub pubkeys: Vec<PathBuf>,
    pub keyring: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<u8, Failure> {
    let Args { dirs, out, pubkeys, keyring } = args;
    if dirs.is_empty() {
        return Err(usage("give at least one directory to scan"));
    }
    let keyring = trusted_keys(&pubkeys, keyring.as_deref())?;
    let scan = dashboard::scan(&dirs).map_err(|e| usage(e.to_string()))?;
    if scan.is_empty() {
        let given: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(usage(format!(
            "nothing to show under {}: no bundle ({CERTIFICATE}), campaign ({CAMPAIGN_LINES}) or certification log \
             ({ENTRIES}) within {} levels",
            given.join(", "),
            dashboard::MAX_DEPTH
        )));
    }
    // The site first: links are relative to it, and a site that cannot be made should fail
    // before the bundles are verified, not after.
    dashboard::create_site(&out).map_err(|e| usage(e.to_string()))?;
    let fleet = verify(&scan, &keyring, &out);
    let index = dashboard::write_site(&fleet, &out).map_err(|e| usage(e.to_string()))?;
    println!("{}", index.display());
    println!("{}", fleet.tally());
    Ok(exit::PASS)
}

/// Every `--pubkey` and the `--keyring`'s keys; without either, the development key when it
/// is here (and said so, since release bundles do not verify against it).
fn trusted_keys(pubkeys: &[PathBuf], dir: Option<&Path>) -> Result<Keyring, Failure> {
    if !pubkeys.is_empty() || dir.is_some() {
        return crate::certify::trusted_keys(pubkeys, dir);
    }
    let development = keys::public_path(Path::new(keys::DEVELOPMENT_KEY));
    if !development.is_file() {
        return Err(usage(format!(
            "no trusted key: give --pubkey <file.pub> (repeatable) or --keyring <dir> (there is no development key \
             {} here either)",
            development.display()
        )));
    }
    let mut keyring = Keyring::default();
    keyring.add_file(&development)?;
    eprintln!(
        "note: no --pubkey or --keyring given; trusting the DEVELOPMENT key {} alone: bundles signed with any other \
         key are listed as not verified",
        development.display()
    );
    Ok(keyring)
}

/// Verifies the bundles, with a progress bar when there are many.
fn verify(scan: &Scan, keyring: &Keyring, site: &Path) -> Fleet {
    let count = scan.bundles.len();
    let bar = if count >= BAR_FROM {
        crate::progress::bar(count as u64, "bundles")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let fleet = dashboard::verify_all(scan, keyring, site, || bar.inc(1));
    bar.finish_and_clear();
    fleet
}
