//! Scenario files (docs/harness.md 5.1): the raw `ScenarioSpec` read strictly from TOML, and the
//! resolved `Scenario` with every default and derived value filled in. Nothing downstream
//! reads TOML.
//!
//! Guarantees: an unknown key, a value of the wrong type and a value out of range are
//! errors that name the file, the line and the key; a scenario that loads is complete and
//! consistent (engine formulas validated, fault nodes exist).

use crate::invariant_id::InvariantId;
use crate::shadow::catalogue;
use crate::shadow::rules::{CanaryRules, CanarySpec, MeasureRule, DEFAULT_TOLERANCE};
use crate::workload::{self, Enrichment, GeneratedSpec, TraceFormat, Workload};
use seedcore_chaos::{Fault, FaultKind, FaultName, FaultPlan, PlanError, SwarmBounds, Topology as SwarmTopology};
pub use seedcore_engine::config::{locate, DurationMs, FileError};
use seedcore_engine::config::{BackendConfig, DispatchConfig, EngineConfig, EngineTables, Topology};
use seedcore_engine::node::NodeName;
use seedcore_engine::Kind;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A scenario that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file, or one of its keys (the engine's tables are read by the engine's own code).
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0}")]
    Workload(#[from] workload::WorkloadError),
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

/// One `[[chaos.fault]]`: `at` and `kind`, and the fields of that kind (docs/harness.md 7).
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

/// `[policy]`: thresholds, warning bands and weights (docs/certification.md 8.1, 8.2).
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
    pub ttft_p99: Option<InvariantSpec>,
    pub rollback_fast_path: Option<InvariantSpec>,
    pub rollback_freshness: Option<InvariantSpec>,
    pub rollback_safety: Option<InvariantSpec>,
}

/// `[workload]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// `trace` or `generated`.
    pub source: String,
    /// Trace file, relative to the scenario file.
    pub trace: Option<String>,
    /// `canonical` (the default), `azure`, `mooncake` or `burstgpt`.
    pub format: Option<String>,
    /// Slice of a trace: where it starts, measured from the trace's first row (applied
    /// before `speed` and `loops`).
    pub start: Option<DurationMs>,
    /// Slice of a trace: how long it lasts from `start` (default: to the end).
    #[serde(rename = "for")]
    pub length: Option<DurationMs>,
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
    /// The engine's tables, as the engine reads them (`serve --config` reads the same).
    #[serde(default)]
    pub topology: Topology,
    #[serde(default)]
    pub network: NetworkSpec,
    #[serde(default)]
    pub engine: EngineTables,
    #[serde(default)]
    pub backend: BackendConfig,
    pub workload: WorkloadSpec,
    #[serde(default)]
    pub chaos: ChaosSpec,
    #[serde(default)]
    pub harness: HarnessSpec,
    #[serde(default)]
    pub policy: PolicySpec,
    /// How a canary judges this scenario as the candidate (docs/certification.md 8.9).
    pub canary: Option<CanarySpec>,
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
    /// The rules a canary judges this scenario by, as its candidate.
    pub canary: CanaryRules,
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

/// The longest run a scenario may ask for.
pub const MAX_DURATION_MS: u64 = 30 * 86_400_000;
/// The most arrivals a generated workload may ask for in one run (a simulated day at 10
/// tasks a second is 864,000; twenty times that still fits in memory and finishes).
pub const MAX_ARRIVALS: u64 = 20_000_000;

/// Resolution context: the file and its text, for errors with lines.
struct Resolver<'a> {
    file: &'a str,
    source: &'a str,
}

impl Resolver<'_> {
    fn invalid(&self, key: &str, message: impl Into<String>) -> ScenarioError {
        ScenarioError::File(FileError::invalid(self.file, self.source, key, message))
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
    let source =
        std::fs::read_to_string(path).map_err(|e| FileError::Read { file: file.clone(), message: e.to_string() })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    from_source(&source, path, &base)
}

/// A frozen policy (`certify --frozen-policy FILE`): a TOML file whose `[policy]` table is
/// read as a scenario's is, against the engine whose window it defaults to. Any other key
/// is an error naming it.
pub fn load_policy(path: &Path, engine: &EngineConfig) -> Result<Policy, ScenarioError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PolicyFile {
        policy: PolicySpec,
    }
    let file = path.display().to_string();
    let source =
        std::fs::read_to_string(path).map_err(|e| FileError::Read { file: file.clone(), message: e.to_string() })?;
    let spec: PolicyFile =
        toml::from_str(&source).map_err(|e| FileError::Parse { file: file.clone(), message: e.to_string() })?;
    resolve_policy(&Resolver { file: &file, source: &source }, &spec.policy, engine)
}

/// Reads a scenario with swarm mode on when `swarm` (`--swarm`).
pub fn load_with_swarm(path: &Path, swarm: bool) -> Result<Scenario, ScenarioError> {
    let mut scenario = load(path)?;
    if swarm {
        scenario.enable_swarm();
    }
    Ok(scenario)
}

/// Parses and resolves a scenario from its text: `path` names it in errors and results,
/// `base` is where its relative trace paths start.
pub fn from_source(source: &str, path: &Path, base: &Path) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let spec: ScenarioSpec =
        toml::from_str(source).map_err(|e| FileError::Parse { file: file.clone(), message: e.to_string() })?;
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

    let mut engine = EngineConfig::from_tables(spec.topology, spec.engine, spec.backend);
    engine.validate().map_err(|e| r.invalid(&e.field, e.message))?;
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
    engine.epoch_utc_ms = epoch_utc_ms.or(trace_start).unwrap_or(1_767_225_600_000);

    let (faults, swarm) = resolve_chaos(&r, &spec.chaos, &engine.topology, duration_ms)?;
    let harness = resolve_harness(&r, &spec.harness, &engine.dispatch)?;
    let policy = resolve_policy(&r, &spec.policy, &engine)?;
    let canary = resolve_canary(&r, spec.canary.as_ref())?;

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
        canary,
    })
}

/// What judges a run without running it: the scenario's name, its policy and its canary
/// rules, read from a scenario file without loading its trace (a canary bundle keeps the
/// scenarios, not their traces).
pub fn load_judgement(path: &Path) -> Result<(String, Policy, CanaryRules), ScenarioError> {
    let file = path.display().to_string();
    let source =
        std::fs::read_to_string(path).map_err(|e| FileError::Read { file: file.clone(), message: e.to_string() })?;
    let spec: ScenarioSpec =
        toml::from_str(&source).map_err(|e| FileError::Parse { file: file.clone(), message: e.to_string() })?;
    let r = Resolver { file: &file, source: &source };
    let engine = EngineConfig::from_tables(spec.topology, spec.engine, spec.backend);
    engine.validate().map_err(|e| r.invalid(&e.field, e.message))?;
    let policy = resolve_policy(&r, &spec.policy, &engine)?;
    let canary = resolve_canary(&r, spec.canary.as_ref())?;
    Ok((spec.name, policy, canary))
}

/// `[canary]`: the measures judged, their direction, tolerance and warning level.
fn resolve_canary(r: &Resolver<'_>, spec: Option<&CanarySpec>) -> Result<CanaryRules, ScenarioError> {
    let Some(spec) = spec else { return Ok(CanaryRules::default()) };
    let tolerance = r.non_negative("canary.tolerance", spec.tolerance, DEFAULT_TOLERANCE)?;
    let warn = r.non_negative("canary.warn", spec.warn, tolerance / 2.0)?;
    if warn > tolerance {
        return Err(r.invalid("canary.warn", format!("{warn} is above the tolerance {tolerance}")));
    }
    if spec.measure.is_empty() {
        let mut rules = CanaryRules::default();
        for rule in &mut rules.measures {
            rule.tolerance = tolerance;
            rule.warn = warn;
        }
        return Ok(rules);
    }
    let mut measures = Vec::new();
    for (name, m) in &spec.measure {
        let key = format!("canary.measure.{name}");
        let Some((_, natural)) = catalogue::describe(name) else {
            return Err(
                r.invalid(&key, format!("unknown measure {name:?}; measures are {}", catalogue::names().join(", ")))
            );
        };
        let better = match &m.better {
            None => natural,
            Some(text) => catalogue::Better::parse(text)
                .ok_or_else(|| r.invalid(&format!("{key}.better"), format!("{text:?} is neither higher nor lower")))?,
        };
        let measure_tolerance = r.non_negative(&format!("{key}.tolerance"), m.tolerance, tolerance)?;
        let measure_warn = r.non_negative(&format!("{key}.warn"), m.warn, warn.min(measure_tolerance))?;
        if measure_warn > measure_tolerance {
            return Err(r.invalid(
                &format!("{key}.warn"),
                format!("{measure_warn} is above the tolerance {measure_tolerance}"),
            ));
        }
        measures.push(MeasureRule { measure: name.clone(), better, tolerance: measure_tolerance, warn: measure_warn });
    }
    Ok(CanaryRules { measures })
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
    let names = NodeName::all(topology.fast, topology.deep);
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

/// The fields each fault kind takes, and those it needs; any other field given is an
/// error, not ignored.
fn fault_fields(kind: FaultName) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        FaultName::Crash | FaultName::TornWrite => (&["node", "for"], &["node"]),
        FaultName::Restart | FaultName::LedgerCorrupt => (&["node"], &["node"]),
        FaultName::Pause | FaultName::Isolate => (&["node", "for"], &["node", "for"]),
        FaultName::Partition => (&["node", "peer", "for"], &["node", "peer", "for"]),
        FaultName::PacketLoss => (&["rate", "for"], &["rate", "for"]),
        FaultName::Latency => (&["latency_ms", "for"], &["latency_ms", "for"]),
        FaultName::BackendErrors => (&["path", "rate", "for"], &["path", "rate", "for"]),
        FaultName::BackendSlow | FaultName::TokenInflation => (&["path", "factor", "for"], &["path", "factor", "for"]),
        FaultName::BadPromotion => (&["norm"], &["norm"]),
        FaultName::LedgerIoError => (&["for"], &["for"]),
    }
}

/// One `[[chaos.fault]]` being resolved: the file, the fault's number (from 1) and text.
struct FaultResolver<'a> {
    r: &'a Resolver<'a>,
    n: usize,
    fault: &'a FaultSpec,
    names: &'a [NodeName],
}

impl FaultResolver<'_> {
    fn invalid(&self, field: &str, message: impl Into<String>) -> ScenarioError {
        self.r.invalid(&format!("chaos.fault[{}].{field}", self.n), message)
    }

    fn node(&self, field: &str, value: &Option<String>) -> Result<NodeName, ScenarioError> {
        let value = value.as_deref().unwrap_or_default();
        NodeName::parse(value).filter(|node| self.names.contains(node)).ok_or_else(|| {
            let names: Vec<String> = self.names.iter().map(NodeName::to_string).collect();
            self.invalid(field, format!("unknown node {value:?}; nodes are {}", names.join(", ")))
        })
    }

    fn ppm(&self, field: &str, value: Option<f64>, low: f64, high: f64) -> Result<u64, ScenarioError> {
        let value = value.unwrap_or_default();
        if value.is_finite() && (low..=high).contains(&value) {
            Ok((value * 1e6).round() as u64)
        } else {
            Err(self.invalid(field, format!("{value} is not in [{low}, {high}]")))
        }
    }

    fn path(&self) -> Result<seedcore_engine::Path, ScenarioError> {
        let given = self.fault.path.as_deref();
        given
            .and_then(seedcore_engine::Path::parse)
            .ok_or_else(|| self.invalid("path", format!("{given:?} is not a path; paths are fast, deep")))
    }

    /// The fault's fields against its kind: none that it does not take, all it needs.
    fn check_fields(&self, kind: FaultName) -> Result<(), ScenarioError> {
        let (fields, required) = fault_fields(kind);
        let f = self.fault;
        let given = [
            ("node", f.node.is_some()),
            ("peer", f.peer.is_some()),
            ("for", f.down.is_some()),
            ("rate", f.rate.is_some()),
            ("factor", f.factor.is_some()),
            ("latency_ms", f.latency_ms.is_some()),
            ("path", f.path.is_some()),
            ("norm", f.norm.is_some()),
        ];
        let kind = kind.as_str();
        for (field, present) in given {
            if present && !fields.contains(&field) {
                let takes = fields.join(", ");
                return Err(self.invalid(field, format!("`{field}` does not apply to {kind}; it takes {takes}")));
            }
            if !present && required.contains(&field) {
                return Err(self.invalid(field, format!("{kind} needs `{field}`")));
            }
        }
        Ok(())
    }

    /// `at` and `for`: within the run, and ending by its end, so recovery can be judged.
    fn timing(&self, duration_ms: u64) -> Result<(u64, Option<u64>), ScenarioError> {
        let at_ms = self.fault.at.0;
        if at_ms >= duration_ms {
            return Err(self.invalid("at", format!("{at_ms} ms is at or after the end of the run ({duration_ms} ms)")));
        }
        let for_ms = self.fault.down.map(|d| d.0);
        if let Some(d) = for_ms {
            if d == 0 {
                return Err(self.invalid("for", "must be at least 1ms (omit it on a crash that lasts until a restart)"));
            }
            if at_ms.checked_add(d).is_none_or(|end| end > duration_ms) {
                return Err(self.invalid(
                    "for",
                    format!("the fault must end by the end of the run ({duration_ms} ms), so recovery can be judged"),
                ));
            }
        }
        Ok((at_ms, for_ms))
    }

    /// The fault of a kind whose fields have been checked.
    fn kind(&self, kind: FaultName, for_ms: Option<u64>) -> Result<FaultKind, ScenarioError> {
        let f = self.fault;
        let lasting = for_ms.unwrap_or(0);
        Ok(match kind {
            FaultName::Crash => FaultKind::Crash { node: self.node("node", &f.node)?, down_ms: for_ms },
            FaultName::Restart => FaultKind::Restart { node: self.node("node", &f.node)? },
            FaultName::Pause => FaultKind::Pause { node: self.node("node", &f.node)?, for_ms: lasting },
            FaultName::Isolate => FaultKind::Isolate { node: self.node("node", &f.node)?, for_ms: lasting },
            FaultName::Partition => {
                let (node, peer) = (self.node("node", &f.node)?, self.node("peer", &f.peer)?);
                if node == peer {
                    return Err(self.invalid("peer", "a partition needs two different nodes"));
                }
                FaultKind::Partition { node, peer, for_ms: lasting }
            }
            FaultName::PacketLoss => {
                FaultKind::PacketLoss { rate_ppm: self.ppm("rate", f.rate, 0.0, 1.0)?, for_ms: lasting }
            }
            FaultName::Latency => {
                let [min_ms, max_ms] = f.latency_ms.unwrap_or_default();
                if min_ms > max_ms || max_ms > 60_000 {
                    return Err(self.invalid("latency_ms", "needs min <= max <= 60000"));
                }
                FaultKind::Latency { min_ms, max_ms, for_ms: lasting }
            }
            FaultName::BackendErrors => FaultKind::BackendErrors {
                path: self.path()?,
                rate_ppm: self.ppm("rate", f.rate, 0.0, 1.0)?,
                for_ms: lasting,
            },
            FaultName::BackendSlow => FaultKind::BackendSlow {
                path: self.path()?,
                factor_ppm: self.ppm("factor", f.factor, 1.0, 1_000.0)?,
                for_ms: lasting,
            },
            FaultName::TokenInflation => FaultKind::TokenInflation {
                path: self.path()?,
                factor_ppm: self.ppm("factor", f.factor, 1.0, 1_000.0)?,
                for_ms: lasting,
            },
            FaultName::BadPromotion => FaultKind::BadPromotion { norm_ppm: self.ppm("norm", f.norm, 0.0, 1e6)? },
            FaultName::LedgerIoError => FaultKind::LedgerIoError { for_ms: lasting },
            FaultName::LedgerCorrupt | FaultName::TornWrite => {
                let node = self.node("node", &f.node)?;
                if node != NodeName::Coordinator {
                    return Err(self.invalid("node", format!("{} acts on the coordinator only", kind.as_str())));
                }
                if kind == FaultName::TornWrite {
                    FaultKind::TornWrite { node, down_ms: for_ms }
                } else {
                    FaultKind::LedgerCorrupt { node }
                }
            }
        })
    }
}

/// One `[[chaos.fault]]` (numbered from 1 in errors), checked against its kind.
fn resolve_fault(
    r: &Resolver<'_>,
    index: usize,
    fault: &FaultSpec,
    names: &[NodeName],
    duration_ms: u64,
) -> Result<Fault, ScenarioError> {
    let f = FaultResolver { r, n: index + 1, fault, names };
    let Some(kind) = FaultName::parse(&fault.kind) else {
        return Err(f.invalid("kind", format!("unknown kind {:?}; kinds are {}", fault.kind, FaultName::list())));
    };
    f.check_fields(kind)?;
    let (at_ms, for_ms) = f.timing(duration_ms)?;
    Ok(Fault { at_ms, kind: f.kind(kind, for_ms)? })
}

/// `[chaos.swarm]`.
fn resolve_swarm(r: &Resolver<'_>, spec: &SwarmSpec) -> Result<SwarmBounds, ScenarioError> {
    let defaults = SwarmBounds::default();
    let kinds = match &spec.kinds {
        None => defaults.kinds,
        Some(names) => {
            if let Some(unknown) = names.iter().find(|name| FaultName::parse(name).is_none()) {
                let message = format!("unknown kind {unknown:?}; kinds are {}", FaultName::list());
                return Err(r.invalid("chaos.swarm.kinds", message));
            }
            names.iter().filter_map(|name| FaultName::parse(name)).collect()
        }
    };
    if kinds.is_empty() {
        return Err(r.invalid("chaos.swarm.kinds", "needs at least one kind (remove [chaos.swarm] for no swarm)"));
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

/// `[workload.enrich]`: how task fields are drawn.
fn resolve_enrichment(r: &Resolver<'_>, enrich: &EnrichSpec) -> Result<Enrichment, ScenarioError> {
    let defaults = Enrichment::default();
    let mut mix = [0.0; Kind::COUNT];
    match &enrich.mix {
        None => mix = defaults.mix,
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
    Ok(enrichment)
}

/// `[workload]`: a trace or a generated workload, and the trace's start time if it has one.
fn resolve_workload(
    r: &Resolver<'_>,
    spec: &WorkloadSpec,
    base: &Path,
) -> Result<(Workload, Option<u64>), ScenarioError> {
    let enrichment = resolve_enrichment(r, &spec.enrich)?;
    match spec.source.as_str() {
        "trace" => resolve_trace(r, spec, base, enrichment),
        "generated" => {
            if let Some(key) = [("workload.start", spec.start), ("workload.for", spec.length)]
                .into_iter()
                .find_map(|(key, value)| value.map(|_| key))
            {
                return Err(r.invalid(key, "slices a trace; a generated workload has none (use duration)"));
            }
            Ok((Workload::Generated { spec: resolve_generated(r, spec)?, enrichment }, None))
        }
        other => Err(r.invalid("workload.source", format!("unknown source {other:?}; sources are trace, generated"))),
    }
}

/// A trace workload: the file (relative to the scenario), its format, the slice replayed
/// (`start`, `for`, before `speed` and `loops`), speed and loops.
fn resolve_trace(
    r: &Resolver<'_>,
    spec: &WorkloadSpec,
    base: &Path,
    enrichment: Enrichment,
) -> Result<(Workload, Option<u64>), ScenarioError> {
    let Some(trace) = &spec.trace else {
        return Err(r.invalid("workload.trace", "a trace workload needs a trace file"));
    };
    let name = spec.format.as_deref().unwrap_or("canonical");
    let Some(format) = TraceFormat::parse(name) else {
        let message = format!("unknown format {name:?}; formats are {}", TraceFormat::names());
        return Err(r.invalid("workload.format", message));
    };
    let speed = r.positive("workload.speed", spec.speed, 1.0)?;
    let loops = spec.loops.unwrap_or(1);
    if !(1..=1000).contains(&loops) {
        return Err(r.invalid("workload.loops", "must be in 1..=1000"));
    }
    let (start_ms, for_ms) = (spec.start.map_or(0, |d| d.0), spec.length.map(|d| d.0));
    if for_ms == Some(0) {
        return Err(r.invalid("workload.for", "must be at least 1ms (omit it to replay to the end of the trace)"));
    }
    let path = base.join(trace);
    let mut loaded = workload::load_trace(&path, format)?;
    if spec.start.is_some() || spec.length.is_some() {
        loaded = loaded.slice(start_ms, for_ms).map_err(|empty| {
            let key = if for_ms.is_none() || start_ms > empty.span_ms { "workload.start" } else { "workload.for" };
            let end = for_ms.map_or("the end".to_string(), |f| format!("{} ms", start_ms.saturating_add(f)));
            let span = empty.span_ms;
            r.invalid(key, format!("the slice from {start_ms} ms to {end} holds no row: the trace spans {span} ms"))
        })?;
    }
    let start = loaded.start_utc_ms;
    Ok((Workload::Trace { path, format, rows: loaded.rows, speed, loops, enrichment }, start))
}

/// A generated workload: rate, daily swing, token distributions and bursts.
fn resolve_generated(r: &Resolver<'_>, spec: &WorkloadSpec) -> Result<GeneratedSpec, ScenarioError> {
    let rate = r.positive("workload.rate_per_s", spec.rate_per_s, 1.0)?;
    // The Azure conversation hour's sizes by default: the simulated backend's latency
    // follows the tokens, and its defaults are calibrated on that hour.
    let tokens_in = spec.tokens_in.unwrap_or(TokenDistSpec { median: 1_020.0, p99: 4_142.0 });
    let tokens_out = spec.tokens_out.unwrap_or(TokenDistSpec { median: 129.0, p99: 601.0 });
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
    Ok(GeneratedSpec {
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
    })
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
            InvariantId::TtftP99 => &self.ttft_p99,
            InvariantId::RollbackFastPath => &self.rollback_fast_path,
            InvariantId::RollbackFreshness => &self.rollback_freshness,
            InvariantId::RollbackSafety => &self.rollback_safety,
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
        if id.is_rollback() && given.warn.is_some() {
            return Err(r.invalid(
                &format!("{key}.warn"),
                "rollback criteria have no warning band: a breach may last their stretch, not longer",
            ));
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
