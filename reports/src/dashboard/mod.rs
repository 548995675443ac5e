//! The fleet dashboard (docs/certification.md 8.8, seed 002's "Mission Control"): one static
//! page over many certification bundles, campaigns and certification logs. It shows the latest
//! outcome per scenario, trends over time, the determinism and signature validation rates,
//! every deviation, the campaigns' failing seeds, and a link to every bundle's report.
//!
//! The work is three steps: [`scan()`] finds what the given directories hold, [`verify_all`]
//! verifies every bundle and reads the rest into a [`Fleet`], and [`render`] turns the fleet
//! into the page ([`write_site`] writes it). What it guarantees:
//!
//! * A bundle counts in the trends and the rates only if it verifies
//!   (`verify::verify_bundle`, the checks of `seedcore verify`); one that does not is
//!   listed with the reason, never dropped.
//! * The page is one self-contained file: inline CSS, hand-written inline SVG, no script and
//!   no URL but relative links to the bundles' own files, so it opens from `file://`.
//!   Every text read from a file is escaped.
//! * Everything is listed in a fixed order (time, then path), so the same directories give
//!   the same page but for its "generated" time.
//!
//! A bundle's time is the certification log's entry for its envelope (docs/certification.md
//! 8.6: the certificate itself keeps no time); a bundle no log lists shows its certificate
//! file's modified time, marked as such.

mod fleet;
mod html;
mod scan;
mod svg;

pub use fleet::{verify_all, CAMPAIGN_INFO, CAMPAIGN_SUMMARY, FAILING_SHOWN};
pub use html::render;
pub use scan::{scan, LogRead, Scan, CAMPAIGN_LINES, MAX_DEPTH};

use crate::certlog::Entry;
use crate::clock;
use crate::model::{InvariantRow, PolicyChange};
use seedcore_sim::invariant_id::InvariantId;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The page's file in the site directory.
pub const INDEX: &str = "index.html";

/// Why the dashboard cannot be made (both exit 2: the user gave the paths).
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A directory to scan is not there, or is not a directory.
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    /// The site directory or its page cannot be written.
    #[error("{path}: {message}")]
    Site { path: String, message: String },
}

/// When a bundle was certified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    /// Unix seconds, UTC.
    pub unix: i64,
    /// From a certification log's entry; `false`: the certificate file's modified time.
    pub logged: bool,
}

impl Stamp {
    /// RFC 3339, marked when it is only the file's time.
    pub fn text(self) -> String {
        let time = clock::format(self.unix);
        if self.logged {
            time
        } else {
            format!("{time} (file time, not in a log)")
        }
    }
}

/// A stamp's text, or `unknown` for a bundle with neither a log entry nor a file time.
pub fn stamp_text(stamp: Option<Stamp>) -> String {
    stamp.map_or_else(|| "unknown".to_string(), Stamp::text)
}

/// A bundle that verified: what the dashboard shows of its statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Certification {
    /// The bundle's directory, as found.
    pub dir: String,
    /// Its `report.html`, relative to the site (percent-encoded), if it has one.
    pub href: Option<String>,
    pub stamp: Option<Stamp>,
    pub scenario: String,
    /// Decimal.
    pub seed: String,
    /// `PASS`, `PASS WITH CONDITIONS` or `FAIL`.
    pub outcome: String,
    /// Out of 100, two decimals.
    pub score: String,
    pub key_id: String,
    /// Signed with the development key.
    pub development_key: bool,
    pub invariants: Vec<InvariantRow>,
    /// Determinism replays run, and those whose root equals the reference.
    pub replays: u64,
    pub replays_matching: u64,
    pub policy_changes: Vec<PolicyChange>,
}

/// A bundle that did not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadBundle {
    pub dir: String,
    pub href: Option<String>,
    pub stamp: Option<Stamp>,
    /// What its statement claims, read without verifying, when it can be read at all.
    pub scenario: Option<String>,
    pub seed: Option<String>,
    /// Why it was rejected.
    pub reason: String,
}

/// A campaign directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Campaign {
    pub dir: String,
    /// From its `campaign.json`, when there is one.
    pub scenario: Option<String>,
    /// The seed range, e.g. `1..1000`, from `campaign.json`.
    pub range: Option<String>,
    /// Its `summary.md`, relative to the site, if it has one.
    pub summary_href: Option<String>,
    /// The seeds, or why `campaign.jsonl` could not be read.
    pub seeds: Result<CampaignSeeds, String>,
}

/// What a campaign's seeds gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignSeeds {
    /// Seeds run.
    pub seeds: u64,
    /// Seeds per outcome.
    pub by_outcome: BTreeMap<String, u64>,
    /// The first failing seeds, in seed order (at most [`FAILING_SHOWN`]).
    pub failing: Vec<FailingSeed>,
    /// Every failing seed, shown or not.
    pub failing_total: u64,
}

/// A seed that failed an invariant (or crashed the simulation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailingSeed {
    pub seed: u64,
    pub outcome: String,
    /// The invariants it failed, or `panic`/`error`.
    pub failed: Vec<String>,
    /// A critical invariant failed, or the simulation crashed.
    pub critical: bool,
    /// The command that reproduces it, when the campaign names its scenario file.
    pub repro: Option<String>,
}

/// A certification log that was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSummary {
    pub dir: String,
    pub entries: usize,
}

/// Something wrong with a log: an entry whose bundle is missing or not the one logged, or a
/// log that could not be read (no entry then).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogProblem {
    pub log: String,
    pub entry: Option<Entry>,
    pub problem: String,
}

/// A directory below the given ones that could not be listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    pub path: String,
    pub message: String,
}

/// Everything the page shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Fleet {
    /// When the page was made, RFC 3339.
    pub generated: String,
    /// Verified bundles, in time order, then by directory.
    pub certifications: Vec<Certification>,
    /// Bundles that did not verify, in the same order.
    pub bad_bundles: Vec<BadBundle>,
    pub campaigns: Vec<Campaign>,
    pub logs: Vec<LogSummary>,
    pub log_problems: Vec<LogProblem>,
    pub unreadable: Vec<Unreadable>,
}

/// The rates of docs/certification.md 8.8, as counts (the page shows each as a share).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rates {
    /// Bundles found, verified or not.
    pub bundles: u64,
    pub verified: u64,
    /// Verified certifications whose `determinism` verdict is pass.
    pub determinism_pass: u64,
    /// Replay roots over all verified certifications, and those equal to their reference.
    pub replays: u64,
    pub replays_matching: u64,
}

/// A verdict a reviewer must see: a warning, a failure, or a critical invariant with
/// nothing to judge. A non-critical one with nothing to judge (`recovery_time` of a run
/// without faults) is not a deviation: it cost the run nothing.
pub fn is_deviation(row: &InvariantRow) -> bool {
    match row.verdict.as_str() {
        "pass" => false,
        "skipped" => row.critical,
        _ => true,
    }
}

impl Fleet {
    /// Verified certifications by scenario name, each in time order: the last is the latest.
    pub fn by_scenario(&self) -> BTreeMap<&str, Vec<&Certification>> {
        let mut groups: BTreeMap<&str, Vec<&Certification>> = BTreeMap::new();
        for certification in &self.certifications {
            groups.entry(certification.scenario.as_str()).or_default().push(certification);
        }
        groups
    }

    /// The directories of the latest certification of each scenario.
    pub fn latest_dirs(&self) -> BTreeSet<&str> {
        // In time order, so each scenario's last directory stays.
        let mut latest: BTreeMap<&str, &str> = BTreeMap::new();
        for certification in &self.certifications {
            latest.insert(certification.scenario.as_str(), certification.dir.as_str());
        }
        latest.into_values().collect()
    }

    pub fn rates(&self) -> Rates {
        let determinism = InvariantId::Determinism.as_str();
        let verified = self.certifications.len() as u64;
        let passes = |c: &&Certification| c.invariants.iter().any(|r| r.id == determinism && r.verdict == "pass");
        Rates {
            bundles: verified + self.bad_bundles.len() as u64,
            verified,
            determinism_pass: self.certifications.iter().filter(passes).count() as u64,
            replays: self.certifications.iter().map(|c| c.replays).sum(),
            replays_matching: self.certifications.iter().map(|c| c.replays_matching).sum(),
        }
    }

    /// Every deviating invariant verdict of every verified certification, in time order.
    pub fn invariant_deviations(&self) -> Vec<(&Certification, &InvariantRow)> {
        self.certifications
            .iter()
            .flat_map(|c| c.invariants.iter().filter(|r| is_deviation(r)).map(move |r| (c, r)))
            .collect()
    }

    /// Every policy setting a reviewer must be told of (all but tightenings), in time order.
    pub fn policy_deviations(&self) -> Vec<(&Certification, &PolicyChange)> {
        self.certifications
            .iter()
            .flat_map(|c| c.policy_changes.iter().filter(|p| p.weakens()).map(move |p| (c, p)))
            .collect()
    }

    /// Rows of the deviations section: verdicts, policy changes, bad bundles, log problems
    /// and unreadable directories.
    pub fn deviations(&self) -> usize {
        self.invariant_deviations().len()
            + self.policy_deviations().len()
            + self.bad_bundles.len()
            + self.log_problems.len()
            + self.unreadable.len()
    }

    /// One line: what was read and how much of it deviates.
    pub fn tally(&self) -> String {
        let rates = self.rates();
        let seeds: u64 = self.campaigns.iter().filter_map(|c| c.seeds.as_ref().ok()).map(|s| s.seeds).sum();
        format!(
            "{} bundles ({} verified, {} rejected) of {} scenarios, {} campaigns ({seeds} seeds), {} certification \
             logs; {} deviations",
            rates.bundles,
            rates.verified,
            self.bad_bundles.len(),
            self.by_scenario().len(),
            self.campaigns.len(),
            self.logs.len(),
            self.deviations()
        )
    }
}

/// `part` of `whole` as a percentage with one decimal, or `n/a` of nothing.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "n/a".to_string();
    }
    let share = part as f64 * 100.0 / whole as f64;
    format!("{share:.1} %")
}

/// Creates the site directory (and its parents) if it is not there.
pub fn create_site(out: &Path) -> Result<(), DashboardError> {
    std::fs::create_dir_all(out).map_err(|e| DashboardError::Site {
        path: out.display().to_string(),
        message: format!("cannot create the site directory: {e}"),
    })
}

/// Writes the page as `out/index.html` (staged as `index.html.partial`, then renamed, so a
/// reader never sees half a page) and returns its path.
pub fn write_site(fleet: &Fleet, out: &Path) -> Result<PathBuf, DashboardError> {
    create_site(out)?;
    let index = out.join(INDEX);
    let partial = out.join(format!("{INDEX}.partial"));
    let failed = |path: &Path, e: std::io::Error| DashboardError::Site {
        path: path.display().to_string(),
        message: format!("cannot write the page: {e}"),
    };
    std::fs::write(&partial, render(fleet)).map_err(|e| failed(&partial, e))?;
    std::fs::rename(&partial, &index).map_err(|e| failed(&index, e))?;
    Ok(index)
}

// Text for HTML, in an element or an attribute: the reports' own.
use crate::render::escape;

#[cfg(test)]
mod tests;
