//! Reading what the scan found into the dashboard's [`Fleet`]: every bundle verified (the
//! checks of `seedcore verify`) and stamped with its time, every campaign's seeds, and every
//! log entry checked against the bundle it names.
//!
//! Nothing here fails the dashboard: a bundle that does not verify, a campaign or a log that
//! cannot be read, is kept with the reason, for the page to list.

use super::scan::{LogRead, Scan, CAMPAIGN_LINES};
use super::{BadBundle, Campaign, CampaignSeeds, Certification, FailingSeed, Fleet, LogProblem, LogSummary, Stamp};
use crate::certify::{file_sha256, read_baseline, CERTIFICATE};
use crate::certlog::{bundle_path, relative_to, Entry};
use crate::clock;
use crate::keys::Keyring;
use crate::verify::{verify_bundle, Verification};
use seedcore_sim::campaign::{self, CampaignInfo, SeedLine};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// What a campaign directory was a run of (scenario file, seeds), as `seedcore campaign`
/// writes it: the scenario file gives each failing seed its repro command.
pub const CAMPAIGN_INFO: &str = "campaign.json";
/// A campaign's Markdown summary.
pub const CAMPAIGN_SUMMARY: &str = "summary.md";
/// The failing seeds listed per campaign, as its summary lists them.
pub const FAILING_SHOWN: usize = 50;
/// A bundle's human report.
const REPORT: &str = "report.html";

/// Verifies every bundle of `scan` against `keyring` and reads its campaigns and logs;
/// links are relative to `site`, which must exist. `progress` is called once per bundle.
pub fn verify_all(scan: &Scan, keyring: &Keyring, site: &Path, mut progress: impl FnMut()) -> Fleet {
    let logged = logged_times(&scan.logs);
    let mut certifications = Vec::new();
    let mut bad_bundles = Vec::new();
    for dir in &scan.bundles {
        let stamp = bundle_stamp(dir, &logged);
        let href = link(site, &dir.join(REPORT));
        match verify_bundle(dir, keyring, None) {
            Ok(verified) => certifications.push(certification(dir, href, stamp, verified)),
            Err(error) => bad_bundles.push(bad_bundle(dir, href, stamp, error.to_string())),
        }
        progress();
    }
    certifications.sort_by(|a, b| a.stamp.cmp(&b.stamp).then_with(|| a.dir.cmp(&b.dir)));
    bad_bundles.sort_by(|a, b| a.stamp.cmp(&b.stamp).then_with(|| a.dir.cmp(&b.dir)));
    Fleet {
        generated: clock::now(),
        certifications,
        bad_bundles,
        campaigns: scan.campaigns.iter().map(|dir| read_campaign(dir, site)).collect(),
        logs: scan
            .logs
            .iter()
            .filter_map(|log| {
                let entries = log.entries.as_ref().ok()?;
                Some(LogSummary { dir: log.dir.display().to_string(), entries: entries.len() })
            })
            .collect(),
        log_problems: log_problems(&scan.logs),
        unreadable: scan.unreadable.clone(),
    }
}

/// The time of every logged certification: by its bundle's directory (resolved), and by
/// its envelope's SHA-256 (the earliest) for a bundle whose log lists it elsewhere. Two
/// certifications of one scenario, seed and key have the same certificate bytes, so the
/// digest alone cannot tell their bundles apart.
#[derive(Default)]
struct Logged<'a> {
    by_dir: BTreeMap<std::path::PathBuf, (&'a str, i64)>,
    by_digest: BTreeMap<&'a str, i64>,
}

fn logged_times(logs: &[LogRead]) -> Logged<'_> {
    let mut logged = Logged::default();
    for log in logs {
        let Ok(entries) = log.entries.as_ref() else { continue };
        for entry in entries {
            let Some(unix) = clock::parse(&entry.time) else { continue };
            let time = logged.by_digest.entry(entry.envelope_sha256.as_str()).or_insert(unix);
            *time = (*time).min(unix);
            if let Ok(dir) = bundle_path(&log.dir, entry).canonicalize() {
                logged.by_dir.insert(dir, (entry.envelope_sha256.as_str(), unix));
            }
        }
    }
    logged
}

/// A bundle's time: its log entry's, else its certificate file's modified time.
fn bundle_stamp(dir: &Path, logged: &Logged<'_>) -> Option<Stamp> {
    let certificate = dir.join(CERTIFICATE);
    let sha = file_sha256(&certificate).ok();
    let by_dir = dir.canonicalize().ok().and_then(|d| logged.by_dir.get(&d).copied());
    let in_log = match (by_dir, sha.as_deref()) {
        (Some((listed, unix)), Some(sha)) if listed == sha => Some(unix),
        (_, Some(sha)) => logged.by_digest.get(sha).copied(),
        (_, None) => None,
    };
    match in_log {
        Some(unix) => Some(Stamp { unix, logged: true }),
        None => file_time(&certificate).map(|unix| Stamp { unix, logged: false }),
    }
}

/// A file's modified time, Unix seconds. This is a record of when the file was written,
/// not a clock read: nothing of it reaches a certificate.
fn file_time(path: &Path) -> Option<i64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let since_epoch = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since_epoch.as_secs()).ok()
}

/// A link from the site to `target`, when it is a file: relative, percent-encoded.
fn link(site: &Path, target: &Path) -> Option<String> {
    if !target.is_file() {
        return None;
    }
    relative_to(site, target).ok().map(|path| percent_encode(&path))
}

/// A path as a URL path: bytes other than unreserved ones and `/` as `%XX`.
fn percent_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// What the page shows of a verified bundle's statement.
fn certification(dir: &Path, href: Option<String>, stamp: Option<Stamp>, verified: Verification) -> Certification {
    let p = verified.statement.predicate;
    Certification {
        dir: dir.display().to_string(),
        href,
        stamp,
        scenario: p.scenario.name,
        seed: p.seed,
        outcome: p.outcome,
        score: p.score,
        key_id: p.signer.keyid,
        development_key: p.signer.development,
        invariants: p.invariants,
        replays: p.determinism.replays.len() as u64,
        replays_matching: p.determinism.matching,
        policy_changes: p.policy_changes,
    }
}

/// A bundle that did not verify, named by what its statement claims if that can be read
/// (without verifying: only to say which scenario it would have been).
fn bad_bundle(dir: &Path, href: Option<String>, stamp: Option<Stamp>, reason: String) -> BadBundle {
    let (scenario, seed) = match read_baseline(dir) {
        Ok(statement) => (Some(statement.predicate.scenario.name), Some(statement.predicate.seed)),
        Err(_) => (None, None),
    };
    BadBundle { dir: dir.display().to_string(), href, stamp, scenario, seed, reason }
}

/// A campaign directory: its seeds, and its scenario when `campaign.json` reads.
fn read_campaign(dir: &Path, site: &Path) -> Campaign {
    let info: Option<CampaignInfo> =
        std::fs::read_to_string(dir.join(CAMPAIGN_INFO)).ok().and_then(|text| serde_json::from_str(&text).ok());
    let seeds = campaign::read_lines(&dir.join(CAMPAIGN_LINES)).map(|lines| campaign_seeds(&lines, info.as_ref()));
    let (scenario, range) = match info {
        Some(info) => (Some(info.scenario_name), Some(info.seeds.to_string())),
        None => (None, None),
    };
    Campaign {
        dir: dir.display().to_string(),
        scenario,
        range,
        summary_href: link(site, &dir.join(CAMPAIGN_SUMMARY)),
        seeds,
    }
}

/// Seeds by outcome and the failing ones (a failed invariant, a crash, or a FAIL), in seed
/// order, with their repro command when the campaign names its scenario file.
fn campaign_seeds(lines: &[SeedLine], info: Option<&CampaignInfo>) -> CampaignSeeds {
    let mut by_outcome: BTreeMap<String, u64> = BTreeMap::new();
    for line in lines {
        *by_outcome.entry(line.outcome.clone()).or_default() += 1;
    }
    let mut failing: Vec<&SeedLine> =
        lines.iter().filter(|l| !l.failed.is_empty() || matches!(l.outcome.as_str(), "FAIL" | "ERROR")).collect();
    failing.sort_by_key(|l| l.seed);
    let shown = failing
        .iter()
        .take(FAILING_SHOWN)
        .map(|l| FailingSeed {
            seed: l.seed,
            outcome: l.outcome.clone(),
            failed: l.failed.clone(),
            critical: l.failed_critically(),
            repro: info.map(|info| campaign::repro(info, l.seed)),
        })
        .collect();
    CampaignSeeds { seeds: lines.len() as u64, by_outcome, failing: shown, failing_total: failing.len() as u64 }
}

/// Logs that could not be read, and entries whose bundle is missing or is not the one the
/// log lists (another envelope at its path).
fn log_problems(logs: &[LogRead]) -> Vec<LogProblem> {
    let mut problems = Vec::new();
    for log in logs {
        let name = log.dir.display().to_string();
        match &log.entries {
            Err(message) => {
                problems.push(LogProblem { log: name, entry: None, problem: format!("log not read: {message}") })
            }
            Ok(entries) => {
                for entry in entries {
                    if let Some(problem) = entry_problem(&log.dir, entry) {
                        problems.push(LogProblem { log: name.clone(), entry: Some(entry.clone()), problem });
                    }
                }
            }
        }
    }
    problems
}

/// What is wrong with the bundle a log entry names, if anything.
fn entry_problem(log: &Path, entry: &Entry) -> Option<String> {
    let certificate = bundle_path(log, entry).join(CERTIFICATE);
    if !certificate.is_file() {
        return Some("listed in the log, bundle missing".to_string());
    }
    match file_sha256(&certificate) {
        Ok(sha) if sha == entry.envelope_sha256 => None,
        Ok(_) => Some("listed in the log, but its certificate is not the one logged (another envelope SHA-256)".into()),
        Err(e) => Some(format!("listed in the log, certificate not readable: {e}")),
    }
}
