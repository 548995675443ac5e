//! What a report shows: the evaluated run, as the certifier (or a verifier) recomputed it
//! from the bundle. The renderers read this and the bundle's `tasks.csv`; they never see
//! the engine or the simulator.

use std::collections::BTreeMap;

pub use seedcore_sim::score::{Outcome, Score};

/// One row of the invariant table, as the certificate states it too.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvariantRow {
    /// The invariant id of docs/certification.md 8.1, e.g. `fast_path_ratio`.
    pub id: String,
    pub critical: bool,
    /// `pass`, `warn`, `fail` or `skipped`.
    pub verdict: String,
    /// Observed value as text, e.g. `0.9648` or `199 ms`.
    pub observed: String,
    /// The rule, e.g. `>= 0.90`.
    pub threshold: String,
    /// The observed value as a plain decimal string in `unit` (empty: nothing observed).
    pub value: String,
    /// What `value` must satisfy against `limit`: `>=`, `<=`, `<` or `==`.
    pub rule: String,
    /// The limit as a plain decimal string in `unit`.
    pub limit: String,
    /// Unit of `value` and `limit`, e.g. `ratio`, `ms`, `micro-USD`.
    pub unit: String,
    /// Weight in the score, as a decimal string (policy weights are decimals).
    pub weight: String,
    /// What else a reader needs to judge the value.
    pub detail: String,
}

/// How the binary was built: with the same toolchain, target, lock file and commit, and
/// the flags of the README's reproducible build, a rebuild has the same SHA-256.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toolchain {
    /// `rustc -V` of the compiler.
    pub rustc: String,
    /// The target triple, e.g. `x86_64-unknown-linux-gnu`.
    pub target: String,
    /// SHA-256 of `Cargo.lock`, hex.
    pub cargo_lock_sha256: String,
    /// The git commit of the source, when built from a git checkout.
    pub source_commit: Option<String>,
    /// The checkout had uncommitted changes to tracked files: the commit alone does not
    /// give the source.
    pub source_dirty: bool,
}

/// Latency percentiles of one path (completed tasks), with those of the time to first token
/// and of the time per output token (hdrhistogram quantiles of the event log's fold).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathLatency {
    /// `fast` or `deep`.
    pub path: String,
    pub completed: u64,
    pub failed: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
    /// Time to first token of completed tasks (a cached answer's is its latency), ms; `None`
    /// when the event log records none (nothing completed, or a run from before it was
    /// recorded).
    pub ttft_p50_ms: Option<u64>,
    pub ttft_p99_ms: Option<u64>,
    /// Time per output token after the first, of completed uncached tasks with two output
    /// tokens or more, microseconds; `None` when there is none.
    pub tpot_p50_us: Option<u64>,
    pub tpot_p99_us: Option<u64>,
}

/// The limits a run was checked against (from its `run_start` event and its scenario).
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub ceiling_micro_usd: u64,
    pub daily_budget_micro_usd: u64,
    /// Daily limit per task kind; kinds without a limit are absent.
    pub rate_limits: BTreeMap<String, u32>,
    /// Target of the fast-path ratio, ppm (900000 is 90 %).
    pub fast_target_ppm: i64,
    /// CUSUM threshold `h` of the OCPS valve.
    pub cusum_h: f64,
    /// Rolling window (tasks) of the fast-path ratio.
    pub window: usize,
    /// Threshold of `ttft_p99` in the run's policy, ms (the line of
    /// plots/ttft_vs_tokens_in.svg).
    pub ttft_p99_threshold_ms: f64,
}

/// The determinism replays: the reference root and every replay's root, hex; and the
/// live half, when a capture of the live engine was replayed (`certify --capture`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Determinism {
    pub reference: String,
    pub replays: Vec<String>,
    pub live: Option<seedcore_sim::invariants::LiveAgreement>,
}

impl Determinism {
    /// Replays whose root equals the reference.
    pub fn matching(&self) -> usize {
        self.replays.iter().filter(|r| **r == self.reference).count()
    }
}

/// A fault the injector applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRow {
    pub t_ms: u64,
    /// When it ended (`fault_end`).
    pub end_ms: Option<u64>,
    /// Its number in the plan, from 1.
    pub id: u64,
    pub fault: String,
    pub node: String,
    /// Rate, factor, norm or latency range as text, or empty.
    pub magnitude: String,
    /// Time from its end until the engine had recovered (queue drained, fast share back at
    /// target); `None` if it never did.
    pub recovery_ms: Option<u64>,
}

/// The memory fabric, the organism's energy and the autoscaler over a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrganismReport {
    /// Fast completions (the denominator of the hit rates).
    pub fast_completed: u64,
    /// Hits per tier (Mw, M2.5, Mlt) and the oldest entry each served.
    pub tier_hits: [u64; 3],
    pub tier_max_age_ms: [u64; 3],
    /// Events kept in Mfb.
    pub flashbulbs: u64,
    /// Energy total over time: (t_ms, ppm).
    pub energy: Vec<(u64, i64)>,
    pub energy_first: Option<seedcore_engine::probe::EnergySignal>,
    pub energy_last: Option<seedcore_engine::probe::EnergySignal>,
    pub energy_min_ppm: Option<i64>,
    pub energy_max_ppm: Option<i64>,
    pub promotions_refused: u64,
    /// Autoscaler per path (fast, deep), and its events over time.
    pub scale: seedcore_engine::task::PerPath<seedcore_sim::invariants::ScaleStats>,
    pub scale_points: Vec<ScalePoint>,
}

/// One autoscaler event: replicas taking work and the target after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePoint {
    pub t_ms: u64,
    pub path: seedcore_engine::Path,
    pub replicas: u32,
    pub target: u32,
}

/// Everything a report shows.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportData {
    /// Scenario name, e.g. `azure-conv`.
    pub scenario: String,
    pub description: String,
    /// SHA-256 of `scenario.toml`, hex.
    pub scenario_sha256: String,
    pub seed: u64,
    pub engine_version: String,
    /// SHA-256 of the binary that ran the simulation, hex.
    pub build_sha256: String,
    /// How that binary was built.
    pub toolchain: Toolchain,
    /// Simulated start of the run, ms since 1970-01-01 UTC (for dates).
    pub epoch_utc_ms: u64,
    /// Simulated duration of the arrivals, ms.
    pub duration_ms: u64,
    pub outcome: Outcome,
    pub score: Score,
    /// Ids of the critical invariants that did not pass (failed, or had nothing to judge).
    pub critical_failures: Vec<String>,
    pub invariants: Vec<InvariantRow>,
    /// Fast first, then deep.
    pub latency: Vec<PathLatency>,
    pub arrivals: u64,
    pub lost: u64,
    /// Rejections per reason.
    pub rejections: BTreeMap<String, u64>,
    /// Decisions per reason (`fast`, `breach`, `planning`, `surprise`, `deferred`).
    pub decisions: BTreeMap<String, u64>,
    /// Alerts per name.
    pub alerts: BTreeMap<String, u64>,
    pub total_cost_micro_usd: u64,
    /// Charged micro-USD per simulated UTC day (days since 1970-01-01).
    pub days: BTreeMap<u64, seedcore_sim::money::DayMoney>,
    pub limits: Limits,
    pub determinism: Determinism,
    pub faults: Vec<FaultRow>,
    /// From the last fault until the fast ratio was back above target, if measured.
    pub recovery_ms: Option<u64>,
    /// Certified `L_tot` over time: (t_ms, ppm), one point per change.
    pub l_tot: Vec<(u64, i64)>,
    /// The memory fabric, the energy and the autoscaler, from the event log.
    pub organism: OrganismReport,
    /// Events in the log and their RFC 6962 Merkle root, hex.
    pub events: u64,
    pub merkle_root: String,
    /// The ledger's public key (hex), committed receipts and signed cycles.
    pub ledger_public_key: String,
    pub ledger_receipts: u64,
    pub ledger_cycles: u64,
    /// Key id of the signer (hex SHA-256 of the raw public key).
    pub key_id: String,
    /// Signed with the development key: not for a reviewer's trust.
    pub development_key: bool,
    /// Regressions against a baseline certificate, as sentences.
    pub regressions: Vec<String>,
    /// Every policy setting that differs from docs/certification.md 8.1's defaults.
    pub policy_changes: Vec<PolicyChange>,
}

/// A policy setting that differs from the defaults, as the certificate states it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyChange {
    pub invariant: String,
    /// `threshold`, `warn`, `weight` or `window`.
    pub setting: String,
    pub default: String,
    pub value: String,
    /// `loosened`, `tightened`, `reweighted` or `changed`.
    pub effect: String,
}

impl PolicyChange {
    /// The certificate's form of a change.
    pub fn from_change(change: &seedcore_sim::policy::Change) -> PolicyChange {
        PolicyChange {
            invariant: change.invariant.as_str().to_string(),
            setting: change.setting.to_string(),
            default: change.from.to_string(),
            value: change.to.to_string(),
            effect: change.effect.as_str().to_string(),
        }
    }

    /// Whether a reviewer must be told: anything but a tightening.
    pub fn weakens(&self) -> bool {
        self.effect != "tightened"
    }

    /// One line for a banner or a list.
    pub fn sentence(&self) -> String {
        format!("{} {} {} (default {}): {}", self.invariant, self.setting, self.value, self.default, self.effect)
    }
}
