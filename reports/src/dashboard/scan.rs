//! Finding what the dashboard reads below the directories it is given: bundles (a directory
//! with `certificate.dsse.json`), campaigns (`campaign.jsonl`) and certification logs
//! (`entries.jsonl`, read here: they name bundles too).
//!
//! The walk is bounded: it looks at most [`MAX_DEPTH`] directories below each given one,
//! skips directories whose name starts with `.` and symbolic links (so it cannot loop), and
//! does not look inside a bundle (a bundle holds no other). Each directory is found once,
//! by its canonical path, whichever given directory or log led to it; the lists are sorted.

use super::{DashboardError, Unreadable};
use crate::certify::CERTIFICATE;
use crate::certlog::{self, Entry, ENTRIES};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How many levels below each given directory the walk looks; deeper ones are not read.
pub const MAX_DEPTH: usize = 6;

/// A campaign directory's seed lines (as `seedcore campaign` writes them).
pub const CAMPAIGN_LINES: &str = "campaign.jsonl";

/// What the given directories hold.
#[derive(Debug)]
pub struct Scan {
    /// Bundle directories: found by the walk, or named by a log's entry and present.
    pub bundles: Vec<PathBuf>,
    pub campaigns: Vec<PathBuf>,
    pub logs: Vec<LogRead>,
    /// Directories the walk could not list.
    pub unreadable: Vec<Unreadable>,
}

impl Scan {
    /// Nothing at all to show.
    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty() && self.campaigns.is_empty() && self.logs.is_empty()
    }
}

/// A certification log and its entries, or why they could not be read.
#[derive(Debug)]
pub struct LogRead {
    pub dir: PathBuf,
    pub entries: Result<Vec<Entry>, String>,
}

/// The directories found so far, each kind by canonical path (the path as found is kept).
#[derive(Default)]
struct Found {
    bundles: BTreeMap<PathBuf, PathBuf>,
    campaigns: BTreeMap<PathBuf, PathBuf>,
    logs: BTreeMap<PathBuf, PathBuf>,
    unreadable: Vec<Unreadable>,
}

/// Walks every directory of `dirs` (each must be one) and reads the logs found.
pub fn scan(dirs: &[PathBuf]) -> Result<Scan, DashboardError> {
    let mut found = Found::default();
    for dir in dirs {
        if !dir.is_dir() {
            return Err(DashboardError::Input {
                path: dir.display().to_string(),
                message: "not a directory (give directories that hold bundles, campaigns or certification logs)".into(),
            });
        }
        walk(dir, 0, &mut found);
    }
    let logs: Vec<LogRead> = sorted(found.logs)
        .into_iter()
        .map(|dir| {
            let entries = certlog::read_entries(&dir).map_err(|e| e.to_string());
            LogRead { dir, entries }
        })
        .collect();
    for log in &logs {
        let Ok(entries) = &log.entries else { continue };
        for entry in entries {
            let bundle = certlog::bundle_path(&log.dir, entry);
            if bundle.join(CERTIFICATE).is_file() {
                remember(&mut found.bundles, &bundle);
            }
        }
    }
    Ok(Scan { bundles: sorted(found.bundles), campaigns: sorted(found.campaigns), logs, unreadable: found.unreadable })
}

/// Notes what `dir` is, then looks below it while the depth allows.
fn walk(dir: &Path, depth: usize, found: &mut Found) {
    if dir.join(CERTIFICATE).is_file() {
        remember(&mut found.bundles, dir);
        return;
    }
    if dir.join(CAMPAIGN_LINES).is_file() {
        remember(&mut found.campaigns, dir);
    }
    if dir.join(ENTRIES).is_file() {
        remember(&mut found.logs, dir);
    }
    if depth >= MAX_DEPTH {
        return;
    }
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) => {
            found.unreadable.push(Unreadable { path: dir.display().to_string(), message: e.to_string() });
            return;
        }
    };
    // `file_type` does not follow symbolic links: a linked directory is not walked.
    let mut children: Vec<PathBuf> = listing
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .map(|entry| entry.path())
        .collect();
    children.sort();
    for child in children {
        walk(&child, depth + 1, found);
    }
}

/// Adds `dir` unless it is already there under another path.
fn remember(set: &mut BTreeMap<PathBuf, PathBuf>, dir: &Path) {
    let key = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    set.entry(key).or_insert_with(|| dir.to_path_buf());
}

/// The paths as found, sorted.
fn sorted(set: BTreeMap<PathBuf, PathBuf>) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = set.into_values().collect();
    paths.sort();
    paths
}
