//! `seedcore shadow` and `seedcore canary` (docs/certification.md 8.9): two engine versions
//! (two scenario configurations, or another build) on the same seed and the same arrivals,
//! so that every difference between the runs is caused by the change.
//!
//! - `world`: what must be the same in both scenarios (arrivals, faults, network), and
//!   the usage error that names what differs.
//! - `diff`: the per-task diff of two runs and where their event logs part.
//! - `run` (simulation build): the runs of a shadow and of a canary.
//! - `render`: `shadow.md`, `shadow.html` and `canary.md`.
//! - `bundle`: the canary's signed statement, written and verified.

pub mod bundle;
pub mod diff;
pub mod render;
#[cfg(madsim)]
pub mod run;
pub mod world;

use seedcore_sim::invariants::{InvariantResult, Stats};
use seedcore_sim::shadow::measures::{self, Value};
use std::path::PathBuf;

/// One run of a shadow.
#[derive(Clone, Debug)]
pub struct Side {
    /// `base` or `candidate`.
    pub role: &'static str,
    /// The scenario's name.
    pub scenario: String,
    /// The scenario file as given.
    pub scenario_file: PathBuf,
    /// Another build of seedcore that ran it (`--candidate-bin`); `None`: this build.
    pub binary: Option<PathBuf>,
    /// Merkle root and size of its event log.
    pub root: [u8; 32],
    pub events: u64,
    pub stats: Stats,
    /// Its invariants, judged by its own scenario's policy (`determinism` is skipped: a
    /// shadow runs each side once).
    pub results: Vec<InvariantResult>,
}

impl Side {
    /// What ran, as people read it.
    pub fn label(&self) -> String {
        match &self.binary {
            None => self.scenario.clone(),
            Some(bin) => format!("{} ({})", self.scenario, bin.display()),
        }
    }
}

/// A live capture shadowed (`shadow --capture`): the base replays what the live engine
/// decided, the candidate what it would have.
#[derive(Clone, Debug)]
pub struct CaptureInfo {
    pub file: PathBuf,
    pub tasks: u64,
    /// Tasks the base's replay decided as the live engine did.
    pub base_agreed: u64,
}

/// A shadow's result.
#[derive(Clone, Debug)]
pub struct Shadow {
    pub seed: u64,
    pub base: Side,
    pub candidate: Side,
    pub diff: diff::Diff,
    pub capture: Option<CaptureInfo>,
    /// Where its files are.
    pub dir: PathBuf,
}

/// Every measure of both runs, side by side, in `measures::all`'s order.
pub fn side_by_side(base: &Stats, candidate: &Stats) -> Vec<(Value, Value)> {
    measures::all(base).into_iter().zip(measures::all(candidate)).collect()
}

/// A point of a per-minute curve: (minute, value).
pub type Curve = Vec<(u64, f64)>;

/// The fast-path ratio of each minute with a completed or failed task.
pub fn fast_ratio_curve(stats: &Stats) -> Curve {
    stats
        .minutes
        .iter()
        .filter(|(_, m)| m.completed + m.failed > 0)
        .map(|(minute, m)| (*minute, m.fast as f64 / (m.completed + m.failed) as f64))
        .collect()
}

/// Cumulative spend at the end of each minute, USD.
pub fn spend_curve(stats: &Stats) -> Curve {
    let mut total = 0u64;
    stats
        .minutes
        .iter()
        .map(|(minute, m)| {
            total += m.cost_micro_usd;
            (*minute, total as f64 / 1e6)
        })
        .collect()
}

/// A scenario a canary judged, as its bundle names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioRef {
    /// The scenario's name.
    pub name: String,
    /// Its copy in the bundle (`base.toml`, `candidate.toml`).
    pub file: String,
    pub sha256: String,
    /// The file it was read from (printed in repro commands).
    pub source_path: String,
}

/// Another build that ran the candidate (`--candidate-bin`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinaryRef {
    pub path: String,
    pub sha256: String,
}

/// One run of a canary's seed, folded from its bundled event log.
#[derive(Clone, Debug)]
pub struct RunRef {
    /// The event log, relative to the bundle.
    pub events_file: String,
    pub root: [u8; 32],
    pub events: u64,
    pub stats: Stats,
    pub results: Vec<InvariantResult>,
}

/// One seed of a canary: both runs, how many tasks they decided differently, and every
/// finding of the rules.
#[derive(Clone, Debug)]
pub struct SeedRun {
    pub seed: u64,
    pub base: RunRef,
    pub candidate: RunRef,
    /// Tasks with any compared field different, and with another decision (`diff.csv`).
    pub differing: u64,
    pub decisions_differing: u64,
    pub findings: Vec<seedcore_sim::shadow::canary::Finding>,
    /// The worst finding's effect.
    pub effect: seedcore_sim::shadow::canary::Effect,
    /// The shadow that shows this seed in full.
    pub repro: String,
}

/// A canary's judgement.
#[derive(Clone, Debug)]
pub struct Canary {
    pub verdict: seedcore_sim::shadow::canary::CanaryVerdict,
    pub base: ScenarioRef,
    pub candidate: ScenarioRef,
    pub binary: Option<BinaryRef>,
    pub rules: seedcore_sim::shadow::canary::CanaryRules,
    pub seeds: Vec<SeedRun>,
}

impl Canary {
    /// The seeds whose findings tipped the verdict (those with the verdict's effect).
    pub fn tipping(&self) -> Vec<&SeedRun> {
        use seedcore_sim::shadow::canary::CanaryVerdict;
        self.seeds
            .iter()
            .filter(|s| CanaryVerdict::of(s.effect) == self.verdict && self.verdict != CanaryVerdict::Promote)
            .collect()
    }
}
