//! Scenario files (SPEC 5.1): the raw `ScenarioSpec` read strictly from TOML, and the
//! resolved `Scenario` with every default and derived value filled in. Nothing downstream
//! reads TOML.
//!
//! Guarantees: an unknown key, a value of the wrong type and a value out of range are
//! errors that name the file, the line and the key; a scenario that loads is complete and
//! consistent (engine formulas validated, fault nodes exist).

use crate::invariant_id::InvariantId;
use crate::workload::{self, Enrichment, GeneratedSpec, TraceFormat, Workload};
use seedcore_chaos::{Fault, FaultKind, FaultPlan, PlanError, SwarmBounds, Topology as SwarmTopology, KINDS};
use seedcore_engine::config::{
    AutoscaleConfig, BackendConfig, DispatchConfig, EngineConfig, GovernorConfig, LedgerConfig, MemoryConfig,
    OrganismConfig, PathModel, Prices, RouterConfig, TierConfig, TokenConfig, Topology, ValveConfig,
};
use seedcore_engine::Kind;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A scenario that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: cannot read: {message}")]
    Read { file: String, message: String },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}:{line}: {key}: {message}", line = line.map_or("?".to_string(), |l| l.to_string()))]
    Invalid { file: String, line: Option<usize>, key: String, message: String },
    #[error("{0}")]
    Workload(#[from] workload::WorkloadError),
}

/// A duration written as `"90s"`, `"250ms"`, `"10m"`, `"1h"`, `"2d"` or an integer of ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationMs(pub u64);

impl DurationMs {
    /// Parses the string form.
    pub fn parse(text: &str) -> Option<DurationMs> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (number, unit) = text.split_at(split);
        let number: f64 = number.parse().ok()?;
        let scale = match unit {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            _ => return None,
        };
        let ms = number * scale;
        (0.0..1e15).contains(&ms).then_some(DurationMs(ms.round() as u64))
    }
}

impl<'de> Deserialize<'de> for DurationMs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Ms(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Ms(ms) => Ok(DurationMs(ms)),
            Raw::Text(text) => DurationMs::parse(&text).ok_or_else(|| {
                serde::de::Error::custom(format!("invalid duration {text:?}: use a number with ms, s, m, h or d"))
            }),
        }
    }
}

/// `[topology]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    pub fast: Option<u32>,
    pub deep: Option<u32>,
}

/// `[network]`: the simulated network.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// `[min, max]` one-way latency in ms.
    pub latency_ms: Option<[u64; 2]>,
    /// Packet loss probability.
    pub loss: Option<f64>,
}

/// `[engine.valve]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValveSpec {
    pub nu: Option<f64>,
    pub h: Option<f64>,
    pub reset_fraction: Option<f64>,
}

/// `[engine.router]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    pub weights: Option<[f64; 6]>,
    pub tau_deep: Option<f64>,
    pub fast_target: Option<f64>,
    pub window: Option<usize>,
    pub fast_slo_ms: Option<f64>,
}

/// `[engine.governor]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernorSpec {
    pub ceiling_micro_usd: Option<u64>,
    pub daily_budget_micro_usd: Option<u64>,
    /// Daily limits per kind; replaces the default table when given.
    pub rate_limits: Option<BTreeMap<String, u32>>,
    pub clamp_overrun: Option<bool>,
    pub enforce_daily_budget: Option<bool>,
    pub enforce_rate_limits: Option<bool>,
}

/// `[engine.prices]`, micro-USD per 1,000 tokens.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricesSpec {
    pub fast_in: Option<u64>,
    pub fast_out: Option<u64>,
    pub deep_in: Option<u64>,
    pub deep_out: Option<u64>,
}

/// `[engine.tokens]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensSpec {
    pub max_tokens: Option<u32>,
    pub alpha: Option<f64>,
    pub beta: Option<f64>,
    pub ema_smoothing: Option<f64>,
}

/// `[engine.dispatch]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchSpec {
    pub fast_timeout: Option<DurationMs>,
    pub deep_timeout: Option<DurationMs>,
    pub retries: Option<u32>,
    pub backoff: Option<DurationMs>,
    pub max_in_flight: Option<u32>,
    pub fast_concurrency: Option<u32>,
    pub deep_concurrency: Option<u32>,
    pub state_timeout: Option<DurationMs>,
    pub complete_batch: Option<DurationMs>,
}

/// `[engine.organism]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganismSpec {
    pub agents: Option<usize>,
    pub organs: Option<usize>,
    pub dim: Option<usize>,
    pub eta: Option<f64>,
    pub l_max: Option<f64>,
    pub graph_mask: Option<bool>,
    pub init_gain: Option<f64>,
    pub promotion_every: Option<u64>,
    pub promotion_step: Option<f64>,
    pub edge_growth: Option<f64>,
    pub shadow: Option<bool>,
}

/// `[engine.memory]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySpec {
    pub mw_capacity: Option<CapacitySpec>,
    /// TTL per kind; replaces the default table when given (0: not held).
    pub mw_ttl: Option<BTreeMap<String, DurationMs>>,
    pub mw_latency: Option<DurationMs>,
    pub m25_capacity: Option<CapacitySpec>,
    pub m25_ttl: Option<BTreeMap<String, DurationMs>>,
    pub m25_latency: Option<DurationMs>,
    pub mlt_capacity: Option<CapacitySpec>,
    pub mlt_ttl: Option<BTreeMap<String, DurationMs>>,
    pub mlt_latency: Option<DurationMs>,
    pub max_freshness: Option<DurationMs>,
    pub mfb_latency: Option<DurationMs>,
}

/// A tier's capacity: one number for every kind, or a table of the kinds to change.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum CapacitySpec {
    Each(usize),
    PerKind(BTreeMap<String, usize>),
}

/// `[engine.ledger]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSpec {
    pub cycle_receipts: Option<u64>,
    pub cycle: Option<DurationMs>,
    pub segment_receipts: Option<u64>,
}

/// `[engine]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSpec {
    #[serde(default)]
    pub valve: ValveSpec,
    #[serde(default)]
    pub router: RouterSpec,
    #[serde(default)]
    pub governor: GovernorSpec,
    #[serde(default)]
    pub prices: PricesSpec,
    #[serde(default)]
    pub tokens: TokensSpec,
    #[serde(default)]
    pub dispatch: DispatchSpec,
    #[serde(default)]
    pub organism: OrganismSpec,
    #[serde(default)]
    pub memory: MemorySpec,
    #[serde(default)]
    pub ledger: LedgerSpec,
    #[serde(default)]
    pub autoscale: AutoscaleSpec,
}

/// `[engine.autoscale]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscaleSpec {
    pub enabled: Option<bool>,
    pub fast_min: Option<u32>,
    pub fast_max: Option<u32>,
    pub deep_min: Option<u32>,
    pub deep_max: Option<u32>,
    pub utilisation: Option<f64>,
    pub interval: Option<DurationMs>,
    pub window: Option<DurationMs>,
    pub startup_delay: Option<DurationMs>,
}

/// `[backend.fast]` or `[backend.deep]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathModelSpec {
    pub median_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub error_rate: Option<f64>,
    pub token_inflation: Option<f64>,
}

/// `[backend]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    #[serde(default)]
    pub fast: PathModelSpec,
    #[serde(default)]
    pub deep: PathModelSpec,
}

/// One `[[chaos.fault]]`: `at` and `kind`, and the fields of that kind (SPEC 7).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub at: DurationMs,
    pub kind: String,
    /// The node acted on (crash, restart, pause, isolate, partition, torn_write,
    /// ledger_corrupt).
    pub node: Option<String>,
    /// The other side of a partition.
    pub peer: Option<String>,
    /// How long the fault lasts; for `crash` and `torn_write`, until the restart.
    #[serde(rename = "for")]
    pub down: Option<DurationMs>,
    /// `packet_loss` and `backend_errors`: a probability.
    pub rate: Option<f64>,
    /// `backend_slow` and `token_inflation`: a multiplier above 1.
    pub factor: Option<f64>,
    /// `latency`: `[min, max]` per message.
    pub latency_ms: Option<[u64; 2]>,
    /// `backend_errors`, `backend_slow`, `token_inflation`: `fast` or `deep`.
    pub path: Option<String>,
    /// `bad_promotion`: the certified spectral bound of the pushed `W` update.
    pub norm: Option<f64>,
}

/// `[chaos.swarm]`: draw the fault plan from the seed, within these bounds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwarmSpec {
    /// Kinds the swarm may switch on (default: every kind but `ledger_corrupt`).
    pub kinds: Option<Vec<String>>,
    /// The most faults in a plan (default 8).
    pub max_faults: Option<u32>,
    /// The most nodes down at once (default 1).
    pub max_down: Option<u32>,
    /// The longest a fault lasts (default 5m).
    pub max_for: Option<DurationMs>,
    /// Faults end by this fraction of the run (default 0.8).
    pub end_by: Option<f64>,
}

/// `[chaos]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosSpec {
    #[serde(default)]
    pub fault: Vec<FaultSpec>,
    pub swarm: Option<SwarmSpec>,
}

/// `[harness]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HarnessSpec {
    /// Bounded drain after arrivals stop.
    pub drain: Option<DurationMs>,
    /// Runs of the same seed for the determinism check.
    pub replays: Option<u32>,
    /// Canary only: leak process-global state into arrival times, which breaks replay.
    pub inject_nondeterminism: Option<bool>,
}

/// One invariant's policy override.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvariantSpec {
    pub threshold: Option<f64>,
    pub warn: Option<f64>,
    pub weight: Option<f64>,
}

/// `[policy]`: thresholds, warning bands and weights (SPEC 8.1, 8.2).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Rolling window (tasks) of the fast-path ratio.
    pub window: Option<usize>,
    pub fast_path_ratio: Option<InvariantSpec>,
    pub lipschitz_bound: Option<InvariantSpec>,
    pub cost_ceiling: Option<InvariantSpec>,
    pub daily_budget: Option<InvariantSpec>,
    pub rate_limits: Option<InvariantSpec>,
    pub determinism: Option<InvariantSpec>,
    pub no_lost_tasks: Option<InvariantSpec>,
    pub ledger_integrity: Option<InvariantSpec>,
    pub fast_latency_p99: Option<InvariantSpec>,
    pub deep_latency_p99: Option<InvariantSpec>,
    pub fast_success_rate: Option<InvariantSpec>,
    pub deep_success_rate: Option<InvariantSpec>,
    pub memory_freshness: Option<InvariantSpec>,
    pub recovery_time: Option<InvariantSpec>,
}

/// `[workload]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// `trace` or `generated`.
    pub source: String,
    /// Trace file, relative to the scenario file.
    pub trace: Option<String>,
    /// `azure` or `canonical`.
    pub format: Option<String>,
    /// Time scale of a trace: 2.0 replays twice as fast.
    pub speed: Option<f64>,
    /// Times a trace is played back to back.
    pub loops: Option<u32>,
    /// Generated workloads: arrivals per second.
    pub rate_per_s: Option<f64>,
    /// Generated workloads: daily swing of the rate, 0..1.
    pub diurnal: Option<f64>,
    /// Generated workloads: the period of that swing (default one day).
    pub diurnal_period: Option<DurationMs>,
    /// Generated workloads: lognormal context tokens.
    pub tokens_in: Option<TokenDistSpec>,
    /// Generated workloads: lognormal output tokens.
    pub tokens_out: Option<TokenDistSpec>,
    #[serde(default)]
    pub burst: Vec<BurstSpec>,
    #[serde(default)]
    pub enrich: EnrichSpec,
}

/// A lognormal token count by median and p99.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenDistSpec {
    pub median: f64,
    pub p99: f64,
}

/// `[[workload.burst]]`: the arrival rate times `factor` for a while.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurstSpec {
    pub at: DurationMs,
    #[serde(rename = "for")]
    pub length: DurationMs,
    pub factor: f64,
}

/// `[[workload.enrich.drift_episode]]`: extra drift for a while.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftEpisodeSpec {
    pub at: DurationMs,
    #[serde(rename = "for")]
    pub length: DurationMs,
    pub drift: f64,
}

/// `[workload.enrich]`: how task fields are drawn, deterministically from seed and row.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichSpec {
    /// Share of each kind.
    pub mix: Option<BTreeMap<String, f64>>,
    pub drift_base: Option<f64>,
    /// Drift added per unit of `ln(1 + tokens_in) / ln(8192)`: larger contexts drift more.
    pub drift_context: Option<f64>,
    pub drift_noise: Option<f64>,
    #[serde(default)]
    pub drift_episode: Vec<DriftEpisodeSpec>,
    pub planning_rate: Option<f64>,
    pub low_authority_rate: Option<f64>,
    /// Probability that a task repeats one of the last few requests (same signature).
    pub repeat_rate: Option<f64>,
    pub domains: Option<Vec<String>>,
}

/// A scenario file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub duration: Option<DurationMs>,
    pub seed: Option<u64>,
    /// RFC 3339 time of scenario start; days of the budget are UTC days from it.
    pub start_utc: Option<String>,
    #[serde(default)]
    pub topology: TopologySpec,
    #[serde(default)]
    pub network: NetworkSpec,
    #[serde(default)]
    pub engine: EngineSpec,
    #[serde(default)]
    pub backend: BackendSpec,
    pub workload: WorkloadSpec,
    #[serde(default)]
    pub chaos: ChaosSpec,
    #[serde(default)]
    pub harness: HarnessSpec,
    #[serde(default)]
    pub policy: PolicySpec,
}

/// One invariant's resolved policy.
#[derive(Clone, Debug, PartialEq)]
pub struct InvariantPolicy {
    pub threshold: f64,
    /// Width of the warning band beyond the threshold, in the invariant's unit.
    pub warn: f64,
    pub weight: f64,
}

/// The certification policy: per invariant id.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub window: usize,
    pub invariants: BTreeMap<InvariantId, InvariantPolicy>,
}

/// The simulated network.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub latency_ms: (u64, u64),
    pub loss: f64,
}

/// The harness settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Harness {
    pub drain_ms: u64,
    pub replays: u32,
    pub inject_nondeterminism: bool,
}

/// A resolved scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// Where the scenario was read from.
    pub path: PathBuf,
    /// The exact bytes of the file.
    pub source: String,
    /// SHA-256 of `source`, hex.
    pub sha256: String,
    pub duration_ms: u64,
    pub seed: u64,
    /// Engine configuration without the per-run seed (see `engine_config`).
    pub engine: EngineConfig,
    pub network: Network,
    pub workload: Workload,
    /// The explicit `[[chaos.fault]]` plan.
    pub faults: FaultPlan,
    /// Swarm mode: when set, each seed draws more faults within these bounds.
    pub swarm: Option<SwarmBounds>,
    /// Swarm mode was turned on by `--swarm`, not by the file (repro lines repeat the flag).
    pub swarm_by_flag: bool,
    pub harness: Harness,
    pub policy: Policy,
}

impl Scenario {
    /// The fault plan of a run with `seed`: the explicit faults, plus the swarm's draw.
    pub fn fault_plan(&self, seed: u64) -> FaultPlan {
        let mut faults = self.faults.faults().to_vec();
        if let Some(bounds) = &self.swarm {
            let topology = SwarmTopology { fast: self.engine.topology.fast, deep: self.engine.topology.deep };
            faults.extend(seedcore_chaos::draw(seed, bounds, &topology, self.duration_ms));
        }
        FaultPlan::new(faults).expect("explicit faults are validated, drawn faults are in bounds")
    }

    /// Turns swarm mode on (`--swarm`), with the scenario's bounds or the defaults.
    pub fn enable_swarm(&mut self) {
        if self.swarm.is_none() {
            self.swarm = Some(SwarmBounds::default());
            self.swarm_by_flag = true;
        }
    }

    /// The engine configuration of a run with `seed`: the organism's seed follows it.
    pub fn engine_config(&self, seed: u64) -> EngineConfig {
        let mut engine = self.engine.clone();
        engine.organism.seed = seed ^ ORGANISM_SEED_SALT;
        engine.ledger.key_seed = Some(seedcore_engine::config::simulation_key_seed(seed));
        engine
    }
}

/// A run's organism seed is its seed XOR this.
pub const ORGANISM_SEED_SALT: u64 = 0x6f72_6761_6e69_736d;

/// The longest backend or state timeout, and backoff step, a scenario may set.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// The longest `engine.dispatch.complete_batch`: the organism and the router's x4 lag the
/// completions by up to this much.
pub const MAX_COMPLETE_BATCH_MS: u64 = 10_000;
/// The most concurrent calls per worker.
pub const MAX_CONCURRENCY: u32 = 4_096;
/// The most tasks in flight at the coordinator.
pub const MAX_IN_FLIGHT: u32 = 1_000_000;

/// The longest run a scenario may ask for.
pub const MAX_DURATION_MS: u64 = 30 * 86_400_000;
/// The most arrivals a generated workload may ask for in one run (a simulated day at 10
/// tasks a second is 864,000; twenty times that still fits in memory and finishes).
pub const MAX_ARRIVALS: u64 = 20_000_000;

/// The node names of a topology.
pub fn node_names(topology: &Topology) -> Vec<String> {
    SwarmTopology { fast: topology.fast, deep: topology.deep }.nodes()
}

/// The 1-based line of a dotted key (`engine.valve.h`, `workload.speed`) in TOML text,
/// found by a plain scan of table headers and `key =` lines.
pub fn locate(source: &str, key: &str) -> Option<usize> {
    // `table[n].field`: the field in the n-th `[[table]]` (from 1), or its header.
    if let Some((array, rest)) = key.split_once('[') {
        let (n, field) = rest.split_once("].")?;
        let n: usize = n.parse().ok()?;
        let mut seen = 0;
        let mut header = None;
        for (index, raw) in source.lines().enumerate() {
            let line = raw.trim();
            if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
                if header.is_some() {
                    break;
                }
                seen += usize::from(name.trim() == array);
                if seen == n && name.trim() == array {
                    header = Some(index + 1);
                }
            } else if line.starts_with('[') && header.is_some() {
                break;
            } else if let (Some(_), Some((name, _))) = (header, line.split_once('=')) {
                if name.trim().trim_matches('"') == field {
                    return Some(index + 1);
                }
            }
        }
        return header;
    }
    let mut table = String::new();
    for (index, raw) in source.lines().enumerate() {
        let line = raw.trim();
        if let Some(header) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            table = header.trim().to_string();
            if table == key {
                return Some(index + 1);
            }
        } else if let Some(header) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            table = header.trim().to_string();
            if table == key {
                return Some(index + 1);
            }
        } else if let Some((name, _)) = line.split_once('=') {
            let name = name.trim().trim_matches('"');
            let full = if table.is_empty() { name.to_string() } else { format!("{table}.{name}") };
            if full == key {
                return Some(index + 1);
            }
        }
    }
    None
}

/// Resolution context: the file and its text, for errors with lines.
struct Resolver<'a> {
    file: &'a str,
    source: &'a str,
}

impl Resolver<'_> {
    fn invalid(&self, key: &str, message: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid {
            file: self.file.to_string(),
            line: locate(self.source, key),
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn fraction(&self, key: &str, value: Option<f64>, default: f64) -> Result<f64, ScenarioError> {
        let value = value.unwrap_or(default);
        if (0.0..=1.0).contains(&value) {
            Ok(value)
        } else {
            Err(self.invalid(key, format!("{value} is not in [0, 1]")))
        }
    }

    fn positive(&self, key: &str, value: Option<f64>, default: f64) -> Result<f64, ScenarioError> {
        let value = value.unwrap_or(default);
        if value > 0.0 && value.is_finite() {
            Ok(value)
        } else {
            Err(self.invalid(key, format!("{value} must be a positive number")))
        }
    }

    fn non_negative(&self, key: &str, value: Option<f64>, default: f64) -> Result<f64, ScenarioError> {
        let value = value.unwrap_or(default);
        if value >= 0.0 && value.is_finite() {
            Ok(value)
        } else {
            Err(self.invalid(key, format!("{value} must be >= 0")))
        }
    }

    fn kind(&self, key: &str, name: &str) -> Result<Kind, ScenarioError> {
        Kind::parse(name).ok_or_else(|| {
            let names: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            self.invalid(
                &format!("{key}.{name}"),
                format!("unknown task kind {name:?}; kinds are {}", names.join(", ")),
            )
        })
    }
}

/// Reads, parses and resolves a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path)
        .map_err(|e| ScenarioError::Read { file: file.clone(), message: e.to_string() })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    from_source(&source, path, &base)
}

/// Parses and resolves a scenario from its text: `path` names it in errors and results,
/// `base` is where its relative trace paths start.
pub fn from_source(source: &str, path: &Path, base: &Path) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let spec: ScenarioSpec =
        toml::from_str(source).map_err(|e| ScenarioError::Parse { file: file.clone(), message: e.to_string() })?;
    resolve(spec, &file, source, base, path)
}

fn resolve(spec: ScenarioSpec, file: &str, source: &str, base: &Path, path: &Path) -> Result<Scenario, ScenarioError> {
    let r = Resolver { file, source };
    if spec.name.is_empty() || !spec.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(r.invalid("name", "must be non-empty and use only letters, digits, '-' and '_'"));
    }
    let epoch_utc_ms = match &spec.start_utc {
        None => None,
        Some(text) => {
            let time = chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| r.invalid("start_utc", format!("{text:?} is not RFC 3339: {e}")))?;
            Some(u64::try_from(time.timestamp_millis()).map_err(|_| r.invalid("start_utc", "must be after 1970"))?)
        }
    };

    let e = &spec.engine;
    let defaults = EngineConfig::default();
    let topology = resolve_topology(&r, &spec.topology, &defaults)?;
    let valve = resolve_valve(&r, e, &defaults)?;
    let router = resolve_router(&r, e, &defaults)?;
    let governor = resolve_governor(&r, e, &defaults)?;
    let tokens = resolve_tokens(&r, e, &defaults)?;
    let dispatch = resolve_dispatch(&r, e, &defaults)?;
    let organism = resolve_organism(&r, e, &defaults)?;
    let memory = resolve_memory(&r, e, &defaults)?;
    let ledger = resolve_ledger(e, &defaults);
    let backend = resolve_backend(&r, &spec.backend, &defaults)?;
    let network = resolve_network(&r, &spec.network)?;

    let (workload, trace_start) = resolve_workload(&r, &spec.workload, base)?;
    let duration_ms = match (spec.duration, workload.span_ms()) {
        (Some(d), _) => d.0,
        (None, Some(span)) => span + 1,
        (None, None) => return Err(r.invalid("duration", "a generated workload needs a duration")),
    };
    if duration_ms == 0 || duration_ms > MAX_DURATION_MS {
        return Err(r.invalid("duration", format!("must be positive and at most 30 days ({MAX_DURATION_MS} ms)")));
    }
    if let Some(expected) = workload.expected_arrivals(duration_ms).filter(|n| *n > MAX_ARRIVALS as f64) {
        return Err(r.invalid(
            "workload.rate_per_s",
            format!("asks for about {expected:.0} arrivals over the run; a run takes at most {MAX_ARRIVALS}"),
        ));
    }
    let a = &spec.engine.autoscale;
    let d = AutoscaleConfig::default();
    let autoscale = AutoscaleConfig {
        enabled: a.enabled.unwrap_or(d.enabled),
        min: [a.fast_min.unwrap_or(d.min[0]), a.deep_min.unwrap_or(d.min[1])],
        max: [a.fast_max.unwrap_or(d.max[0]), a.deep_max.unwrap_or(d.max[1])],
        utilisation: a.utilisation.unwrap_or(d.utilisation),
        interval_ms: a.interval.map_or(d.interval_ms, |i| i.0),
        window_ms: a.window.map_or(d.window_ms, |w| w.0),
        startup_ms: a.startup_delay.map_or(d.startup_ms, |s| s.0),
    };
    let mut engine = EngineConfig {
        topology,
        autoscale,
        valve,
        router,
        governor,
        tokens,
        backend,
        dispatch,
        organism,
        memory,
        ledger,
        epoch_utc_ms: epoch_utc_ms.or(trace_start).unwrap_or(1_767_225_600_000),
        openai: None,
    };
    engine.validate().map_err(|e| r.invalid(e.field, e.message))?;
    engine.organism.seed = 0;

    let (faults, swarm) = resolve_chaos(&r, &spec.chaos, &engine.topology, duration_ms)?;
    let harness = resolve_harness(&r, &spec.harness, &engine.dispatch)?;
    let policy = resolve_policy(&r, &spec.policy, &engine)?;

    Ok(Scenario {
        name: spec.name,
        description: spec.description,
        path: path.to_path_buf(),
        sha256: hex::encode(Sha256::digest(source.as_bytes())),
        source: source.to_string(),
        duration_ms,
        seed: spec.seed.unwrap_or(1),
        engine,
        network,
        workload,
        faults,
        swarm,
        swarm_by_flag: false,
        harness,
        policy,
    })
}

/// `[topology]`.
fn resolve_topology(r: &Resolver<'_>, spec: &TopologySpec, defaults: &EngineConfig) -> Result<Topology, ScenarioError> {
    let topology = Topology {
        fast: spec.fast.unwrap_or(defaults.topology.fast),
        deep: spec.deep.unwrap_or(defaults.topology.deep),
    };
    if !(1..=16).contains(&topology.fast) {
        return Err(r.invalid("topology.fast", "must be in 1..=16"));
    }
    if !(1..=16).contains(&topology.deep) {
        return Err(r.invalid("topology.deep", "must be in 1..=16"));
    }
    Ok(topology)
}

/// `[engine.valve]`.
fn resolve_valve(r: &Resolver<'_>, e: &EngineSpec, defaults: &EngineConfig) -> Result<ValveConfig, ScenarioError> {
    let valve = ValveConfig {
        nu: r.non_negative("engine.valve.nu", e.valve.nu, defaults.valve.nu)?,
        h: r.positive("engine.valve.h", e.valve.h, defaults.valve.h)?,
        reset_fraction: r.fraction(
            "engine.valve.reset_fraction",
            e.valve.reset_fraction,
            defaults.valve.reset_fraction,
        )?,
    };
    if valve.reset_fraction >= 1.0 {
        return Err(r.invalid("engine.valve.reset_fraction", "must be below 1"));
    }
    Ok(valve)
}

/// `[engine.router]`.
fn resolve_router(r: &Resolver<'_>, e: &EngineSpec, defaults: &EngineConfig) -> Result<RouterConfig, ScenarioError> {
    let router = RouterConfig {
        weights: e.router.weights.unwrap_or(defaults.router.weights),
        tau_deep: r.non_negative("engine.router.tau_deep", e.router.tau_deep, defaults.router.tau_deep)?,
        fast_target: r.fraction("engine.router.fast_target", e.router.fast_target, defaults.router.fast_target)?,
        window: e.router.window.unwrap_or(defaults.router.window),
        fast_slo_ms: r.positive("engine.router.fast_slo_ms", e.router.fast_slo_ms, defaults.router.fast_slo_ms)?,
    };
    if router.weights.iter().any(|w| !(0.0..=1.0).contains(w)) {
        return Err(r.invalid("engine.router.weights", "every weight must be in [0, 1]"));
    }
    Ok(router)
}

/// `[engine.governor]` and `[engine.prices]`.
fn resolve_governor(
    r: &Resolver<'_>,
    e: &EngineSpec,
    defaults: &EngineConfig,
) -> Result<GovernorConfig, ScenarioError> {
    let mut rate_limits_per_day = defaults.governor.rate_limits_per_day;
    if let Some(limits) = &e.governor.rate_limits {
        rate_limits_per_day = [None; Kind::COUNT];
        for (name, limit) in limits {
            rate_limits_per_day[r.kind("engine.governor.rate_limits", name)?.index()] = Some(*limit);
        }
    }
    let d = &defaults.governor;
    let governor = GovernorConfig {
        ceiling_micro_usd: e.governor.ceiling_micro_usd.unwrap_or(d.ceiling_micro_usd),
        daily_budget_micro_usd: e.governor.daily_budget_micro_usd.unwrap_or(d.daily_budget_micro_usd),
        rate_limits_per_day,
        prices: Prices {
            fast_in: e.prices.fast_in.unwrap_or(d.prices.fast_in),
            fast_out: e.prices.fast_out.unwrap_or(d.prices.fast_out),
            deep_in: e.prices.deep_in.unwrap_or(d.prices.deep_in),
            deep_out: e.prices.deep_out.unwrap_or(d.prices.deep_out),
        },
        clamp_overrun: e.governor.clamp_overrun.unwrap_or(d.clamp_overrun),
        enforce_daily_budget: e.governor.enforce_daily_budget.unwrap_or(d.enforce_daily_budget),
        enforce_rate_limits: e.governor.enforce_rate_limits.unwrap_or(d.enforce_rate_limits),
    };
    Ok(governor)
}

/// `[engine.tokens]`.
fn resolve_tokens(r: &Resolver<'_>, e: &EngineSpec, defaults: &EngineConfig) -> Result<TokenConfig, ScenarioError> {
    let t = &defaults.tokens;
    let tokens = TokenConfig {
        max_tokens: e.tokens.max_tokens.unwrap_or(t.max_tokens),
        alpha: r.non_negative("engine.tokens.alpha", e.tokens.alpha, t.alpha)?,
        beta: r.non_negative("engine.tokens.beta", e.tokens.beta, t.beta)?,
        ema_smoothing: r.fraction("engine.tokens.ema_smoothing", e.tokens.ema_smoothing, t.ema_smoothing)?,
    };
    Ok(tokens)
}

/// `[engine.dispatch]`, with its bounds.
fn resolve_dispatch(
    r: &Resolver<'_>,
    e: &EngineSpec,
    defaults: &EngineConfig,
) -> Result<DispatchConfig, ScenarioError> {
    let dd = &defaults.dispatch;
    let dispatch = DispatchConfig {
        fast_timeout_ms: e.dispatch.fast_timeout.map_or(dd.fast_timeout_ms, |d| d.0),
        deep_timeout_ms: e.dispatch.deep_timeout.map_or(dd.deep_timeout_ms, |d| d.0),
        retries: e.dispatch.retries.unwrap_or(dd.retries),
        backoff_ms: e.dispatch.backoff.map_or(dd.backoff_ms, |d| d.0),
        max_in_flight: e.dispatch.max_in_flight.unwrap_or(dd.max_in_flight),
        fast_concurrency: e.dispatch.fast_concurrency.unwrap_or(dd.fast_concurrency),
        deep_concurrency: e.dispatch.deep_concurrency.unwrap_or(dd.deep_concurrency),
        state_timeout_ms: e.dispatch.state_timeout.map_or(dd.state_timeout_ms, |d| d.0),
        complete_batch_ms: e.dispatch.complete_batch.map_or(dd.complete_batch_ms, |d| d.0),
    };
    if dispatch.complete_batch_ms > MAX_COMPLETE_BATCH_MS {
        return Err(r.invalid(
            "engine.dispatch.complete_batch",
            format!(
                "{} ms: at most {MAX_COMPLETE_BATCH_MS} ms (0 sends each completion at once)",
                dispatch.complete_batch_ms
            ),
        ));
    }
    if dispatch.retries > 10 {
        return Err(r.invalid("engine.dispatch.retries", "at most 10 retries"));
    }
    for (key, ms) in [
        ("engine.dispatch.fast_timeout", dispatch.fast_timeout_ms),
        ("engine.dispatch.deep_timeout", dispatch.deep_timeout_ms),
        ("engine.dispatch.state_timeout", dispatch.state_timeout_ms),
        ("engine.dispatch.backoff", dispatch.backoff_ms.max(1)),
    ] {
        if !(1..=MAX_TIMEOUT_MS).contains(&ms) {
            return Err(r.invalid(key, format!("{ms} ms: must be positive and at most 1h")));
        }
    }
    for (key, n) in [
        ("engine.dispatch.fast_concurrency", dispatch.fast_concurrency),
        ("engine.dispatch.deep_concurrency", dispatch.deep_concurrency),
    ] {
        if !(1..=MAX_CONCURRENCY).contains(&n) {
            return Err(r.invalid(key, format!("{n}: must be in 1..={MAX_CONCURRENCY}")));
        }
    }
    if !(1..=MAX_IN_FLIGHT).contains(&dispatch.max_in_flight) {
        return Err(r.invalid("engine.dispatch.max_in_flight", format!("must be in 1..={MAX_IN_FLIGHT}")));
    }
    Ok(dispatch)
}

/// `[engine.organism]` (its cross-field rules are `EngineConfig::validate`).
fn resolve_organism(
    r: &Resolver<'_>,
    e: &EngineSpec,
    defaults: &EngineConfig,
) -> Result<OrganismConfig, ScenarioError> {
    let o = &defaults.organism;
    let organism = OrganismConfig {
        agents: e.organism.agents.unwrap_or(o.agents),
        organs: e.organism.organs.unwrap_or(o.organs),
        dim: e.organism.dim.unwrap_or(o.dim),
        eta: r.fraction("engine.organism.eta", e.organism.eta, o.eta)?,
        l_max: r.fraction("engine.organism.l_max", e.organism.l_max, o.l_max)?,
        graph_mask: e.organism.graph_mask.unwrap_or(o.graph_mask),
        init_gain: r.positive("engine.organism.init_gain", e.organism.init_gain, o.init_gain)?,
        promotion_every: e.organism.promotion_every.unwrap_or(o.promotion_every),
        promotion_step: r.non_negative(
            "engine.organism.promotion_step",
            e.organism.promotion_step,
            o.promotion_step,
        )?,
        edge_growth: r.non_negative("engine.organism.edge_growth", e.organism.edge_growth, o.edge_growth)?,
        shadow: e.organism.shadow.unwrap_or(o.shadow),
        seed: 0,
    };
    Ok(organism)
}

/// `[engine.memory]`.
fn resolve_memory(r: &Resolver<'_>, e: &EngineSpec, defaults: &EngineConfig) -> Result<MemoryConfig, ScenarioError> {
    let m = &e.memory;
    let tier = |default: &TierConfig,
                keys: [&str; 2],
                capacity: &Option<CapacitySpec>,
                ttl: &Option<BTreeMap<String, DurationMs>>,
                latency: Option<DurationMs>|
     -> Result<TierConfig, ScenarioError> {
        let mut tier = default.clone();
        match capacity {
            None => {}
            Some(CapacitySpec::Each(n)) => tier.capacity = [*n; Kind::COUNT],
            Some(CapacitySpec::PerKind(table)) => {
                for (name, n) in table {
                    tier.capacity[r.kind(keys[0], name)?.index()] = *n;
                }
            }
        }
        if let Some(ttls) = ttl {
            tier.ttl_ms = [0; Kind::COUNT];
            for (name, ttl) in ttls {
                tier.ttl_ms[r.kind(keys[1], name)?.index()] = ttl.0;
            }
        }
        if let Some(latency) = latency {
            tier.latency_ms = latency.0;
        }
        Ok(tier)
    };
    let d = &defaults.memory;
    Ok(MemoryConfig {
        mw: tier(
            &d.mw,
            ["engine.memory.mw_capacity", "engine.memory.mw_ttl"],
            &m.mw_capacity,
            &m.mw_ttl,
            m.mw_latency,
        )?,
        m25: tier(
            &d.m25,
            ["engine.memory.m25_capacity", "engine.memory.m25_ttl"],
            &m.m25_capacity,
            &m.m25_ttl,
            m.m25_latency,
        )?,
        mlt: tier(
            &d.mlt,
            ["engine.memory.mlt_capacity", "engine.memory.mlt_ttl"],
            &m.mlt_capacity,
            &m.mlt_ttl,
            m.mlt_latency,
        )?,
        max_freshness_ms: m.max_freshness.map_or(d.max_freshness_ms, |f| f.0),
        mfb_latency_ms: m.mfb_latency.map_or(d.mfb_latency_ms, |f| f.0),
    })
}

/// `[engine.ledger]` (the key is not a setting: it derives from the seed).
fn resolve_ledger(e: &EngineSpec, defaults: &EngineConfig) -> LedgerConfig {
    LedgerConfig {
        cycle_receipts: e.ledger.cycle_receipts.unwrap_or(defaults.ledger.cycle_receipts),
        segment_receipts: e.ledger.segment_receipts.unwrap_or(defaults.ledger.segment_receipts),
        cycle_ms: e.ledger.cycle.map_or(defaults.ledger.cycle_ms, |d| d.0),
        ..LedgerConfig::default()
    }
}

/// `[backend.fast]` and `[backend.deep]`.
fn resolve_backend(
    r: &Resolver<'_>,
    spec: &BackendSpec,
    defaults: &EngineConfig,
) -> Result<BackendConfig, ScenarioError> {
    let path_model = |name: &str, spec: &PathModelSpec, d: &PathModel| -> Result<PathModel, ScenarioError> {
        Ok(PathModel {
            median_ms: r.positive(&format!("backend.{name}.median_ms"), spec.median_ms, d.median_ms)?,
            p99_ms: r.positive(&format!("backend.{name}.p99_ms"), spec.p99_ms, d.p99_ms)?,
            error_rate: r.fraction(&format!("backend.{name}.error_rate"), spec.error_rate, d.error_rate)?,
            token_inflation: r.positive(
                &format!("backend.{name}.token_inflation"),
                spec.token_inflation,
                d.token_inflation,
            )?,
        })
    };
    let backend = BackendConfig {
        fast: path_model("fast", &spec.fast, &defaults.backend.fast)?,
        deep: path_model("deep", &spec.deep, &defaults.backend.deep)?,
    };
    Ok(backend)
}

/// `[network]`: the run's baseline latency and loss.
fn resolve_network(r: &Resolver<'_>, spec: &NetworkSpec) -> Result<Network, ScenarioError> {
    let network = Network {
        latency_ms: spec.latency_ms.map_or((1, 5), |[a, b]| (a, b)),
        loss: r.fraction("network.loss", spec.loss, 0.0)?,
    };
    if network.latency_ms.0 > network.latency_ms.1 || network.latency_ms.1 > 10_000 {
        return Err(r.invalid("network.latency_ms", "needs min <= max <= 10000"));
    }
    Ok(network)
}

/// `[[chaos.fault]]` and `[chaos.swarm]`.
fn resolve_chaos(
    r: &Resolver<'_>,
    spec: &ChaosSpec,
    topology: &Topology,
    duration_ms: u64,
) -> Result<(FaultPlan, Option<SwarmBounds>), ScenarioError> {
    let names = node_names(topology);
    let mut faults = Vec::new();
    for (index, fault) in spec.fault.iter().enumerate() {
        faults.push(resolve_fault(r, index, fault, &names, duration_ms)?);
    }
    let faults = FaultPlan::new(faults).map_err(|e| {
        let (index, field) = match e {
            PlanError::ZeroDuration { index } | PlanError::Overflow { index } => (index, "for"),
        };
        r.invalid(&format!("chaos.fault[{index}].{field}"), e.to_string())
    })?;
    let swarm = spec.swarm.as_ref().map(|s| resolve_swarm(r, s)).transpose()?;
    Ok((faults, swarm))
}

/// The longest drain a scenario may ask for.
pub const MAX_DRAIN_MS: u64 = 86_400_000;

/// `[harness]`.
fn resolve_harness(r: &Resolver<'_>, spec: &HarnessSpec, dispatch: &DispatchConfig) -> Result<Harness, ScenarioError> {
    let harness = Harness {
        drain_ms: spec.drain.map_or(dispatch.worst_case_ms().saturating_add(10_000), |d| d.0),
        replays: spec.replays.unwrap_or(2),
        inject_nondeterminism: spec.inject_nondeterminism.unwrap_or(false),
    };
    if !(1..=100).contains(&harness.replays) {
        return Err(r.invalid("harness.replays", "must be in 1..=100"));
    }
    if harness.drain_ms > MAX_DRAIN_MS {
        return Err(r.invalid("harness.drain", format!("{} ms: at most a day", harness.drain_ms)));
    }
    Ok(harness)
}

/// One `[[chaos.fault]]` (numbered from 1 in errors), checked against its kind.
fn resolve_fault(
    r: &Resolver<'_>,
    index: usize,
    fault: &FaultSpec,
    names: &[String],
    duration_ms: u64,
) -> Result<Fault, ScenarioError> {
    let n = index + 1;
    let key = |field: &str| format!("chaos.fault[{n}].{field}");
    let kind = fault.kind.as_str();
    if !KINDS.contains(&kind) {
        return Err(r.invalid(&key("kind"), format!("unknown kind {kind:?}; kinds are {}", KINDS.join(", "))));
    }
    // Which fields each kind takes; anything else given is an error, not ignored.
    let (fields, required): (&[&str], &[&str]) = match kind {
        "crash" | "torn_write" => (&["node", "for"], &["node"]),
        "restart" | "ledger_corrupt" => (&["node"], &["node"]),
        "pause" | "isolate" => (&["node", "for"], &["node", "for"]),
        "partition" => (&["node", "peer", "for"], &["node", "peer", "for"]),
        "packet_loss" => (&["rate", "for"], &["rate", "for"]),
        "latency" => (&["latency_ms", "for"], &["latency_ms", "for"]),
        "backend_errors" => (&["path", "rate", "for"], &["path", "rate", "for"]),
        "backend_slow" | "token_inflation" => (&["path", "factor", "for"], &["path", "factor", "for"]),
        "bad_promotion" => (&["norm"], &["norm"]),
        "ledger_io_error" => (&["for"], &["for"]),
        _ => unreachable!("every kind is listed"),
    };
    let given = [
        ("node", fault.node.is_some()),
        ("peer", fault.peer.is_some()),
        ("for", fault.down.is_some()),
        ("rate", fault.rate.is_some()),
        ("factor", fault.factor.is_some()),
        ("latency_ms", fault.latency_ms.is_some()),
        ("path", fault.path.is_some()),
        ("norm", fault.norm.is_some()),
    ];
    for (field, present) in given {
        if present && !fields.contains(&field) {
            return Err(
                r.invalid(&key(field), format!("`{field}` does not apply to {kind}; it takes {}", fields.join(", ")))
            );
        }
        if !present && required.contains(&field) {
            return Err(r.invalid(&key(field), format!("{kind} needs `{field}`")));
        }
    }
    let at_ms = fault.at.0;
    if at_ms >= duration_ms {
        return Err(r.invalid(&key("at"), format!("{at_ms} ms is at or after the end of the run ({duration_ms} ms)")));
    }
    let node = |field: &str, value: &Option<String>| -> Result<String, ScenarioError> {
        let value = value.clone().unwrap_or_default();
        if names.contains(&value) {
            Ok(value)
        } else {
            Err(r.invalid(&key(field), format!("unknown node {value:?}; nodes are {}", names.join(", "))))
        }
    };
    let for_ms = fault.down.map(|d| d.0);
    if let Some(d) = for_ms {
        if d == 0 {
            return Err(r.invalid(&key("for"), "must be at least 1ms (omit it on a crash that lasts until a restart)"));
        }
        match at_ms.checked_add(d) {
            Some(end) if end <= duration_ms => {}
            _ => {
                return Err(r.invalid(
                    &key("for"),
                    format!("the fault must end by the end of the run ({duration_ms} ms), so recovery can be judged"),
                ))
            }
        }
    }
    let lasting = for_ms.unwrap_or(0);
    let ppm = |field: &str, value: Option<f64>, low: f64, high: f64| -> Result<u64, ScenarioError> {
        let value = value.unwrap_or_default();
        if value.is_finite() && (low..=high).contains(&value) {
            Ok((value * 1e6).round() as u64)
        } else {
            Err(r.invalid(&key(field), format!("{value} is not in [{low}, {high}]")))
        }
    };
    let path = || -> Result<String, ScenarioError> {
        match fault.path.as_deref() {
            Some(p @ ("fast" | "deep")) => Ok(p.to_string()),
            other => Err(r.invalid(&key("path"), format!("{other:?} is not a path; paths are fast, deep"))),
        }
    };
    let kind = match kind {
        "crash" => FaultKind::Crash { node: node("node", &fault.node)?, down_ms: for_ms },
        "restart" => FaultKind::Restart { node: node("node", &fault.node)? },
        "pause" => FaultKind::Pause { node: node("node", &fault.node)?, for_ms: lasting },
        "isolate" => FaultKind::Isolate { node: node("node", &fault.node)?, for_ms: lasting },
        "partition" => {
            let (a, b) = (node("node", &fault.node)?, node("peer", &fault.peer)?);
            if a == b {
                return Err(r.invalid(&key("peer"), "a partition needs two different nodes"));
            }
            FaultKind::Partition { node: a, peer: b, for_ms: lasting }
        }
        "packet_loss" => FaultKind::PacketLoss { rate_ppm: ppm("rate", fault.rate, 0.0, 1.0)?, for_ms: lasting },
        "latency" => {
            let [min_ms, max_ms] = fault.latency_ms.unwrap_or_default();
            if min_ms > max_ms || max_ms > 60_000 {
                return Err(r.invalid(&key("latency_ms"), "needs min <= max <= 60000"));
            }
            FaultKind::Latency { min_ms, max_ms, for_ms: lasting }
        }
        "backend_errors" => {
            FaultKind::BackendErrors { path: path()?, rate_ppm: ppm("rate", fault.rate, 0.0, 1.0)?, for_ms: lasting }
        }
        "backend_slow" => FaultKind::BackendSlow {
            path: path()?,
            factor_ppm: ppm("factor", fault.factor, 1.0, 1_000.0)?,
            for_ms: lasting,
        },
        "token_inflation" => FaultKind::TokenInflation {
            path: path()?,
            factor_ppm: ppm("factor", fault.factor, 1.0, 1_000.0)?,
            for_ms: lasting,
        },
        "bad_promotion" => FaultKind::BadPromotion { norm_ppm: ppm("norm", fault.norm, 0.0, 1e6)? },
        "ledger_io_error" => FaultKind::LedgerIoError { for_ms: lasting },
        "ledger_corrupt" | "torn_write" => {
            let node = node("node", &fault.node)?;
            if node != "coordinator" {
                return Err(r.invalid(&key("node"), format!("{kind} acts on the coordinator only")));
            }
            if kind == "torn_write" {
                FaultKind::TornWrite { node, down_ms: for_ms }
            } else {
                FaultKind::LedgerCorrupt { node }
            }
        }
        _ => unreachable!("every kind is listed"),
    };
    Ok(Fault { at_ms, kind })
}

/// `[chaos.swarm]`.
fn resolve_swarm(r: &Resolver<'_>, spec: &SwarmSpec) -> Result<SwarmBounds, ScenarioError> {
    let defaults = SwarmBounds::default();
    let kinds = spec.kinds.clone().unwrap_or(defaults.kinds);
    if kinds.is_empty() {
        return Err(r.invalid("chaos.swarm.kinds", "needs at least one kind (remove [chaos.swarm] for no swarm)"));
    }
    if let Some(unknown) = kinds.iter().find(|k| !KINDS.contains(&k.as_str())) {
        return Err(r.invalid("chaos.swarm.kinds", format!("unknown kind {unknown:?}; kinds are {}", KINDS.join(", "))));
    }
    let max_faults = spec.max_faults.unwrap_or(defaults.max_faults);
    if !(1..=1_000).contains(&max_faults) {
        return Err(r.invalid("chaos.swarm.max_faults", "must be in 1..=1000"));
    }
    let max_for_ms = spec.max_for.map_or(defaults.max_for_ms, |d| d.0);
    if max_for_ms < 1_000 {
        return Err(r.invalid("chaos.swarm.max_for", "must be at least 1s"));
    }
    let end_by = r.fraction("chaos.swarm.end_by", spec.end_by, defaults.end_by_ppm as f64 / 1e6)?;
    Ok(SwarmBounds {
        kinds,
        max_faults,
        max_down: spec.max_down.unwrap_or(defaults.max_down),
        max_for_ms,
        end_by_ppm: (end_by * 1e6).round() as u64,
    })
}

fn resolve_workload(
    r: &Resolver<'_>,
    spec: &WorkloadSpec,
    base: &Path,
) -> Result<(Workload, Option<u64>), ScenarioError> {
    let enrich = &spec.enrich;
    let mut mix = [0.0; Kind::COUNT];
    match &enrich.mix {
        None => mix = Enrichment::default().mix,
        Some(table) => {
            for (name, share) in table {
                let kind = r.kind("workload.enrich.mix", name)?;
                mix[kind.index()] = r.non_negative(&format!("workload.enrich.mix.{name}"), Some(*share), 0.0)?;
            }
        }
    }
    if mix.iter().sum::<f64>() <= 0.0 {
        return Err(r.invalid("workload.enrich.mix", "the shares must add up to more than 0"));
    }
    let defaults = Enrichment::default();
    let enrichment = Enrichment {
        mix,
        drift_base: r.fraction("workload.enrich.drift_base", enrich.drift_base, defaults.drift_base)?,
        drift_context: r.fraction("workload.enrich.drift_context", enrich.drift_context, defaults.drift_context)?,
        drift_noise: r.fraction("workload.enrich.drift_noise", enrich.drift_noise, defaults.drift_noise)?,
        drift_episodes: enrich.drift_episode.iter().map(|e| (e.at.0, e.at.0 + e.length.0, e.drift)).collect(),
        planning_rate: r.fraction("workload.enrich.planning_rate", enrich.planning_rate, defaults.planning_rate)?,
        low_authority_rate: r.fraction(
            "workload.enrich.low_authority_rate",
            enrich.low_authority_rate,
            defaults.low_authority_rate,
        )?,
        repeat_rate: r.fraction("workload.enrich.repeat_rate", enrich.repeat_rate, defaults.repeat_rate)?,
        domains: enrich.domains.clone().unwrap_or(defaults.domains),
    };
    if enrichment.domains.is_empty() {
        return Err(r.invalid("workload.enrich.domains", "needs at least one domain"));
    }
    if let Some(e) = enrich.drift_episode.iter().find(|e| !(-1.0..=1.0).contains(&e.drift)) {
        return Err(r.invalid("workload.enrich.drift_episode", format!("drift {} is not in [-1, 1]", e.drift)));
    }
    match spec.source.as_str() {
        "trace" => {
            let Some(trace) = &spec.trace else {
                return Err(r.invalid("workload.trace", "a trace workload needs a trace file"));
            };
            let format = match spec.format.as_deref().unwrap_or("canonical") {
                "azure" => TraceFormat::Azure,
                "canonical" => TraceFormat::Canonical,
                other => {
                    return Err(
                        r.invalid("workload.format", format!("unknown format {other:?}; formats are azure, canonical"))
                    )
                }
            };
            let speed = r.positive("workload.speed", spec.speed, 1.0)?;
            let loops = spec.loops.unwrap_or(1);
            if !(1..=1000).contains(&loops) {
                return Err(r.invalid("workload.loops", "must be in 1..=1000"));
            }
            let path = base.join(trace);
            let loaded = workload::load_trace(&path, format)?;
            let start = loaded.start_utc_ms;
            Ok((Workload::Trace { path, format, rows: loaded.rows, speed, loops, enrichment }, start))
        }
        "generated" => {
            let rate = r.positive("workload.rate_per_s", spec.rate_per_s, 1.0)?;
            let tokens_in = spec.tokens_in.unwrap_or(TokenDistSpec { median: 800.0, p99: 6_000.0 });
            let tokens_out = spec.tokens_out.unwrap_or(TokenDistSpec { median: 200.0, p99: 1_200.0 });
            for (key, dist) in [("workload.tokens_in", tokens_in), ("workload.tokens_out", tokens_out)] {
                if !(dist.median >= 1.0 && dist.p99 >= dist.median && dist.p99 < 1e7) {
                    return Err(r.invalid(key, "needs 1 <= median <= p99 < 10000000"));
                }
            }
            let bursts: Vec<(u64, u64, f64)> =
                spec.burst.iter().map(|b| (b.at.0, b.at.0.saturating_add(b.length.0), b.factor)).collect();
            if bursts.iter().any(|b| !(b.2 > 0.0 && b.2 <= 1000.0)) {
                return Err(r.invalid("workload.burst", "factor must be in (0, 1000]"));
            }
            let generated = GeneratedSpec {
                rate_per_s: rate,
                diurnal: r.fraction("workload.diurnal", spec.diurnal, 0.0)?,
                diurnal_period_ms: match spec.diurnal_period {
                    None => 86_400_000,
                    Some(p) if p.0 >= 1_000 => p.0,
                    Some(_) => return Err(r.invalid("workload.diurnal_period", "must be at least 1s")),
                },
                tokens_in: (tokens_in.median, tokens_in.p99),
                tokens_out: (tokens_out.median, tokens_out.p99),
                bursts,
            };
            Ok((Workload::Generated { spec: generated, enrichment }, None))
        }
        other => Err(r.invalid("workload.source", format!("unknown source {other:?}; sources are trace, generated"))),
    }
}

impl PolicySpec {
    /// The scenario's override of one invariant's policy.
    fn of(&self, id: InvariantId) -> &Option<InvariantSpec> {
        match id {
            InvariantId::FastPathRatio => &self.fast_path_ratio,
            InvariantId::LipschitzBound => &self.lipschitz_bound,
            InvariantId::CostCeiling => &self.cost_ceiling,
            InvariantId::DailyBudget => &self.daily_budget,
            InvariantId::RateLimits => &self.rate_limits,
            InvariantId::Determinism => &self.determinism,
            InvariantId::NoLostTasks => &self.no_lost_tasks,
            InvariantId::LedgerIntegrity => &self.ledger_integrity,
            InvariantId::FastLatencyP99 => &self.fast_latency_p99,
            InvariantId::DeepLatencyP99 => &self.deep_latency_p99,
            InvariantId::FastSuccessRate => &self.fast_success_rate,
            InvariantId::DeepSuccessRate => &self.deep_success_rate,
            InvariantId::MemoryFreshness => &self.memory_freshness,
            InvariantId::RecoveryTime => &self.recovery_time,
        }
    }
}

/// `[policy]`: every invariant's threshold, warning band and weight, defaults filled in.
fn resolve_policy(r: &Resolver<'_>, spec: &PolicySpec, engine: &EngineConfig) -> Result<Policy, ScenarioError> {
    let mut invariants = BTreeMap::new();
    for id in InvariantId::ALL {
        let given = spec.of(id).clone().unwrap_or_default();
        let defaults = id.defaults();
        let key = format!("policy.{id}");
        // The money limits are the engine's own: the policy cannot loosen them.
        if id.fixed_by_the_engine() && given.threshold.is_some() {
            return Err(r.invalid(
                &format!("{key}.threshold"),
                "this invariant's threshold is fixed by the engine configuration",
            ));
        }
        if id.critical() && given.warn.is_some() {
            return Err(r.invalid(&format!("{key}.warn"), "critical invariants have no warning band"));
        }
        let threshold = r.non_negative(&format!("{key}.threshold"), given.threshold, defaults.threshold)?;
        if id.is_ratio() && threshold > 1.0 {
            return Err(r.invalid(&format!("{key}.threshold"), "a ratio threshold must be in [0, 1]"));
        }
        invariants.insert(
            id,
            InvariantPolicy {
                threshold,
                warn: r.non_negative(&format!("{key}.warn"), given.warn, defaults.warn)?,
                weight: r.non_negative(&format!("{key}.weight"), given.weight, defaults.weight)?,
            },
        );
    }
    let window = spec.window.unwrap_or(engine.router.window);
    if window == 0 || window > seedcore_engine::config::MAX_WINDOW {
        return Err(r.invalid("policy.window", format!("must be in 1..={}", seedcore_engine::config::MAX_WINDOW)));
    }
    Ok(Policy { window, invariants })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(DurationMs::parse("250ms"), Some(DurationMs(250)));
        assert_eq!(DurationMs::parse("1.5s"), Some(DurationMs(1_500)));
        assert_eq!(DurationMs::parse("10m"), Some(DurationMs(600_000)));
        assert_eq!(DurationMs::parse("1h"), Some(DurationMs(3_600_000)));
        assert_eq!(DurationMs::parse("10 parsecs"), None);
        assert_eq!(DurationMs::parse("s"), None);
    }

    #[test]
    fn locate_finds_dotted_keys() {
        let text = "name = \"x\"\n[engine.valve]\nh = 3\n[[chaos.fault]]\nat = \"1s\"\n";
        assert_eq!(locate(text, "name"), Some(1));
        assert_eq!(locate(text, "engine.valve.h"), Some(3));
        assert_eq!(locate(text, "chaos.fault"), Some(4));
        assert_eq!(locate(text, "engine.valve.nu"), None);
        let faults = "[[chaos.fault]]\nat = \"1s\"\n[[chaos.fault]]\nkind = \"crash\"\nfor = \"0ms\"\n[x]\nfor = 1\n";
        assert_eq!(locate(faults, "chaos.fault[2].for"), Some(5));
        assert_eq!(locate(faults, "chaos.fault[2].node"), Some(3));
        assert_eq!(locate(faults, "chaos.fault[1].at"), Some(2));
        assert_eq!(locate(faults, "chaos.fault[3].at"), None);
    }
}
