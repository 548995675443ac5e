//! The engine's configuration, defined once: every setting of docs/engine.md 3 and 4 with
//! its default (each struct's `Default`), its unit and its file name (the serde
//! attributes: `file.rs` reads `[topology]`, `[engine.*]` and `[backend.*]`), and its bounds
//! (`validate.rs`). A scenario's tables and `serve --config FILE` are read by the same code.

mod file;
mod validate;

pub use file::{locate, DurationMs, FileError, KindTable};
pub use validate::{
    ConfigError, MAX_AGENTS, MAX_COMPLETE_BATCH_MS, MAX_CONCURRENCY, MAX_DIM, MAX_IN_FLIGHT, MAX_MEMORY_MS,
    MAX_REPLICAS, MAX_TIER_CAPACITY, MAX_TIMEOUT_MS, MAX_TOPOLOGY, MAX_WINDOW,
};

use crate::task::{Kind, Path};
use serde::{Deserialize, Serialize};

/// OCPS valve parameters (docs/engine.md 4.1).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValveConfig {
    /// Allowed drift per task before S grows.
    pub nu: f64,
    /// Breach threshold.
    pub h: f64,
    /// S after a breach, as a fraction of `h` (anti-flapping).
    pub reset_fraction: f64,
}

impl Default for ValveConfig {
    fn default() -> Self {
        ValveConfig { nu: 0.2, h: 2.5, reset_fraction: 0.8 }
    }
}

/// Surprise router parameters (docs/engine.md 4.2).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// Weights of x1..x6.
    pub weights: [f64; 6],
    /// Surprise at or above which a task escalates softly.
    pub tau_deep: f64,
    /// Target share of the fast path; soft escalations keep the deep share at most 1 - this.
    pub fast_target: f64,
    /// Number of recent decisions the escalation budget looks at.
    pub window: usize,
    /// Fast-path latency objective that the pressure input x6 is measured against.
    pub fast_slo_ms: f64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            weights: [0.25, 0.20, 0.15, 0.20, 0.10, 0.10],
            tau_deep: 0.60,
            fast_target: 0.90,
            window: 1000,
            fast_slo_ms: 200.0,
        }
    }
}

/// Prices per 1,000 tokens in micro-USD (docs/engine.md 4.4).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prices {
    pub fast_in: u64,
    pub fast_out: u64,
    pub deep_in: u64,
    pub deep_out: u64,
}

impl Default for Prices {
    fn default() -> Self {
        Prices { fast_in: 500, fast_out: 1_500, deep_in: 10_000, deep_out: 30_000 }
    }
}

impl Prices {
    /// (input, output) price per 1,000 tokens for a path.
    pub fn of(&self, path: Path) -> (u64, u64) {
        match path {
            Path::Fast => (self.fast_in, self.fast_out),
            Path::Deep => (self.deep_in, self.deep_out),
        }
    }
}

/// Cost governor parameters (docs/engine.md 4.4).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GovernorConfig {
    /// Per-task ceiling.
    pub ceiling_micro_usd: u64,
    /// Budget per simulated UTC day.
    pub daily_budget_micro_usd: u64,
    /// Daily admission limit per kind (`None`: unlimited), indexed by `Kind::index`. A
    /// file's `rate_limits = { summary = 100 }` replaces the whole table.
    #[serde(rename = "rate_limits", deserialize_with = "file::rate_limits")]
    pub rate_limits_per_day: [Option<u32>; Kind::COUNT],
    /// Token prices (a file's `[engine.prices]`).
    #[serde(skip)]
    pub prices: Prices,
    /// Clamp a backend's token overrun so that no charge exceeds the ceiling. Only a canary
    /// scenario turns this off, to prove that the `cost_ceiling` invariant can fail.
    pub clamp_overrun: bool,
    /// Enforce the daily budget (off only in the `daily_budget` canary).
    pub enforce_daily_budget: bool,
    /// Enforce the rate limits (off only in the `rate_limits` canary).
    pub enforce_rate_limits: bool,
}

impl Default for GovernorConfig {
    fn default() -> Self {
        let mut rate_limits_per_day = [None; Kind::COUNT];
        rate_limits_per_day[Kind::Summary.index()] = Some(100);
        GovernorConfig {
            ceiling_micro_usd: 50_000,
            daily_budget_micro_usd: 500_000_000,
            rate_limits_per_day,
            prices: Prices::default(),
            clamp_overrun: true,
            enforce_daily_budget: true,
            enforce_rate_limits: true,
        }
    }
}

/// Token budget and forecast (docs/engine.md 4.5).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Largest output any task may ask for.
    pub max_tokens: u32,
    /// Weight of the input EMA in the forecast.
    pub alpha: f64,
    /// Weight of the expected output in the forecast.
    pub beta: f64,
    /// Smoothing of the input EMA.
    pub ema_smoothing: f64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig { max_tokens: 4096, alpha: 0.7, beta: 0.3, ema_smoothing: 0.05 }
    }
}

/// The simulated model backend of one path (docs/engine.md 4.8): a serving engine's latency,
/// prefill then decode. A call's time to first token is
/// `noise * (ttft_base_ms + tokens_in / prefill_tokens_per_s)`, and its decode takes
/// `noise' * tokens_out * tpot_ms * (1 + batch_slope * (running - 1))`, where `running` is
/// the calls the worker runs at once, this one included, and each noise is lognormal with
/// median 1 and 99th percentile `noise_p99`. Queueing comes on top, from the worker's slots.
#[derive(Clone, Debug, PartialEq)]
pub struct PathModel {
    /// Time to first token with no prompt: scheduling and the first decode step.
    pub ttft_base_ms: f64,
    /// Prefill speed: prompt tokens a call processes per second.
    pub prefill_tokens_per_s: f64,
    /// Time per output token when the worker runs one call.
    pub tpot_ms: f64,
    /// Growth of the time per output token with each further call the worker runs at once.
    pub batch_slope: f64,
    /// 99th percentile of each noise factor (median 1); 1 means no noise.
    pub noise_p99: f64,
    /// Probability that a call fails.
    pub error_rate: f64,
    /// Factor applied to the tokens the backend returns; above 1 the backend returns more
    /// than it was asked for (docs/harness.md 7 `token_inflation`).
    pub token_inflation: f64,
}

impl PathModel {
    /// A backend whose latency ignores the tokens: each whole answer comes after
    /// `latency_ms` times a noise of 99th percentile `noise_p99` (tests and small demos).
    pub fn flat(latency_ms: f64, noise_p99: f64) -> PathModel {
        PathModel {
            ttft_base_ms: latency_ms,
            prefill_tokens_per_s: 1e12,
            tpot_ms: 0.0,
            batch_slope: 0.0,
            noise_p99,
            error_rate: 0.0,
            token_inflation: 1.0,
        }
    }

    /// The median latency of a call of `tokens_in` and `tokens_out` on an idle worker.
    pub fn median_ms(&self, tokens_in: u32, tokens_out: u32) -> f64 {
        self.ttft_base_ms
            + f64::from(tokens_in) / self.prefill_tokens_per_s * 1000.0
            + f64::from(tokens_out) * self.tpot_ms
    }
}

/// Both simulated backends.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(from = "file::BackendFile")]
pub struct BackendConfig {
    pub fast: PathModel,
    pub deep: PathModel,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            // Calibration and sources: ARCHITECTURE.md, "The simulated backend's latency".
            fast: PathModel {
                ttft_base_ms: 40.0,
                prefill_tokens_per_s: 80_000.0,
                tpot_ms: 0.15,
                batch_slope: 0.015,
                noise_p99: 1.6,
                error_rate: 0.002,
                token_inflation: 1.0,
            },
            deep: PathModel {
                ttft_base_ms: 3_500.0,
                prefill_tokens_per_s: 4_000.0,
                tpot_ms: 18.0,
                batch_slope: 0.02,
                noise_p99: 1.6,
                error_rate: 0.005,
                token_inflation: 1.0,
            },
        }
    }
}

impl BackendConfig {
    /// The model of a path.
    pub fn of(&self, path: Path) -> &PathModel {
        match path {
            Path::Fast => &self.fast,
            Path::Deep => &self.deep,
        }
    }
}

/// Dispatch, timeouts, retries and worker capacity (docs/engine.md 4.8).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatchConfig {
    #[serde(rename = "fast_timeout", deserialize_with = "file::ms")]
    pub fast_timeout_ms: u64,
    #[serde(rename = "deep_timeout", deserialize_with = "file::ms")]
    pub deep_timeout_ms: u64,
    /// Retries after the first attempt, each on the next replica.
    pub retries: u32,
    /// Backoff before retry `n` is `backoff_ms * 2^(n-1)`.
    #[serde(rename = "backoff", deserialize_with = "file::ms")]
    pub backoff_ms: u64,
    /// Tasks in flight above which new work is rejected `overload`.
    pub max_in_flight: u32,
    /// Concurrent backend calls per fast worker; more wait in the worker's queue.
    pub fast_concurrency: u32,
    /// Concurrent backend calls per deep worker.
    pub deep_concurrency: u32,
    /// Timeout of a call to the state node.
    #[serde(rename = "state_timeout", deserialize_with = "file::ms")]
    pub state_timeout_ms: u64,
    /// Completions wait up to this long to go to the state node together, in one call;
    /// a lookup takes the waiting ones with it. 0: each goes as soon as the last call is
    /// answered.
    #[serde(rename = "complete_batch", deserialize_with = "file::ms")]
    pub complete_batch_ms: u64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            fast_timeout_ms: 1_000,
            deep_timeout_ms: 30_000,
            retries: 2,
            backoff_ms: 50,
            max_in_flight: 10_000,
            fast_concurrency: 64,
            deep_concurrency: 64,
            state_timeout_ms: 500,
            complete_batch_ms: 1_000,
        }
    }
}

impl DispatchConfig {
    /// Timeout of one backend attempt on a path.
    pub fn timeout_ms(&self, path: Path) -> u64 {
        match path {
            Path::Fast => self.fast_timeout_ms,
            Path::Deep => self.deep_timeout_ms,
        }
    }

    /// The longest a task can spend in dispatch: every attempt timing out, plus backoffs.
    pub fn worst_case_ms(&self) -> u64 {
        // Saturating: a scenario bounds each term, and a live configuration might not.
        let attempts = u64::from(self.retries) + 1;
        let backoff =
            (0..self.retries).fold(0u64, |sum, n| sum.saturating_add(self.backoff_ms.saturating_mul(1 << n.min(16))));
        attempts
            .saturating_mul(self.deep_timeout_ms.saturating_add(self.state_timeout_ms))
            .saturating_add(backoff)
            .saturating_add(self.state_timeout_ms.saturating_mul(2))
    }
}

/// Organism, GraphMask and L_tot (docs/engine.md 4.6).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrganismConfig {
    /// Number of agents.
    pub agents: usize,
    /// Number of organs; agents are split evenly.
    pub organs: usize,
    /// Dimension of each agent's state vector (Ma).
    pub dim: usize,
    /// Update rate.
    pub eta: f64,
    /// GraphMask keeps the certified L_tot below this.
    pub l_max: f64,
    /// Whether GraphMask acts. Only the `lipschitz_bound` canary turns it off.
    pub graph_mask: bool,
    /// Certified `||A||_inf * ||W||_2` at start; must be below `(l_max - (1 - eta)) / eta`.
    pub init_gain: f64,
    /// Completed tasks between promotions (edge reweighting and a W update).
    pub promotion_every: u64,
    /// Relative size of a W update, as a fraction of `||W||_F`.
    pub promotion_step: f64,
    /// Weight added to a collaboration edge at each promotion.
    pub edge_growth: f64,
    /// Keep a shadow copy from a perturbed start and check contraction empirically.
    pub shadow: bool,
    /// Seed of the organism's initial state and of its promotions (the run's, never a file's).
    #[serde(skip)]
    pub seed: u64,
}

impl Default for OrganismConfig {
    fn default() -> Self {
        OrganismConfig {
            agents: 24,
            organs: 4,
            dim: 128,
            eta: 0.5,
            l_max: 0.9,
            graph_mask: true,
            init_gain: 0.5,
            promotion_every: 250,
            promotion_step: 0.05,
            edge_growth: 0.1,
            shadow: true,
            seed: 0,
        }
    }
}

/// One tier of the memory fabric (docs/engine.md 4.3): per kind, indexed by `Kind::index`.
#[derive(Clone, Debug, PartialEq)]
pub struct TierConfig {
    /// Entries of each kind the tier holds.
    pub capacity: [usize; Kind::COUNT],
    /// Time to live of each kind; 0 means the tier does not hold the kind.
    pub ttl_ms: [u64; Kind::COUNT],
    /// Latency of asking this tier.
    pub latency_ms: u64,
}

impl TierConfig {
    /// The same capacity and time to live for the cacheable kinds (chat, query, summary,
    /// graph); the others are never cached.
    pub fn cacheable(capacity: usize, ttl_ms: u64, latency_ms: u64) -> TierConfig {
        let mut tier = TierConfig { capacity: [capacity; Kind::COUNT], ttl_ms: [0; Kind::COUNT], latency_ms };
        for kind in [Kind::Chat, Kind::Query, Kind::Summary, Kind::Graph] {
            tier.ttl_ms[kind.index()] = ttl_ms;
        }
        tier
    }
}

/// The memory fabric (docs/engine.md 4.3).
///
/// The defaults keep every tier busy on a real trace: a small, hot Mw (4 entries of a kind,
/// served for 1 s), a small compressed M2.5 (4 entries of a kind, up to `max_freshness`),
/// and a large Mlt behind them. No default serves an entry older than 3 s,
/// `memory_freshness`'s default limit.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(from = "file::MemoryFile")]
pub struct MemoryConfig {
    pub mw: TierConfig,
    pub m25: TierConfig,
    pub mlt: TierConfig,
    /// docs/engine.md 4.3's `max_freshness`: M2.5 never serves an entry older than this.
    pub max_freshness_ms: u64,
    /// Latency of writing an event into Mfb.
    pub mfb_latency_ms: u64,
}

impl MemoryConfig {
    /// The oldest entry of a kind any tier may serve (0: the kind is never cached).
    pub fn served_limit_ms(&self, kind: Kind) -> u64 {
        let k = kind.index();
        let held = |t: &TierConfig| if t.capacity[k] > 0 { t.ttl_ms[k] } else { 0 };
        held(&self.mw).max(held(&self.m25).min(self.max_freshness_ms)).max(held(&self.mlt))
    }

    /// Whether results of a kind are stored at all (in Mw or Mlt, where writes go).
    pub fn caches(&self, kind: Kind) -> bool {
        let k = kind.index();
        (self.mw.ttl_ms[k] > 0 && self.mw.capacity[k] > 0) || (self.mlt.ttl_ms[k] > 0 && self.mlt.capacity[k] > 0)
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            mw: TierConfig::cacheable(4, 1_000, 5),
            m25: TierConfig::cacheable(4, 3_000, 20),
            mlt: TierConfig::cacheable(65_536, 3_000, 50),
            max_freshness_ms: 3_000,
            mfb_latency_ms: 10,
        }
    }
}

/// The ledger (docs/engine.md 4.9).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// A cycle is signed after this many receipts...
    pub cycle_receipts: u64,
    /// ...or after this much time with receipts pending, whichever first.
    #[serde(rename = "cycle", deserialize_with = "file::ms")]
    pub cycle_ms: u64,
    /// Receipts per segment file; the writer starts a new segment after this many.
    pub segment_receipts: u64,
    /// Directory of the ledger segments (`serve --data-dir`).
    #[serde(skip)]
    pub dir: String,
    /// Seed of the Ed25519 ledger key. There is no default: the simulator derives it from
    /// the run's seed ([`simulation_key_seed`]) and a live engine reads it from a key file.
    /// Without one the ledger does not open.
    #[serde(skip)]
    pub key_seed: Option<[u8; 32]>,
    /// fsync after every receipt (live `serve --fsync receipt`); otherwise after every
    /// cycle. A process crash loses nothing either way (written bytes are in the page
    /// cache); this guards against a power loss.
    #[serde(skip)]
    pub fsync_every_receipt: bool,
}

/// The ledger key of a simulated run: SHA-256 of a domain tag and the run seed. Anyone who
/// knows the seed can derive it, which is the point: a certificate states the public key,
/// a verifier recomputes it from the seed, and `verify --rerun` recomputes every signature.
pub fn simulation_key_seed(run_seed: u64) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"seedcore/ledger-key/simulation/v1\n");
    hasher.update(run_seed.to_be_bytes());
    hasher.finalize().into()
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            cycle_receipts: 1_000,
            cycle_ms: 60_000,
            segment_receipts: 100_000,
            dir: "ledger".to_string(),
            key_seed: None,
            fsync_every_receipt: false,
        }
    }
}

/// Replica counts (docs/engine.md 2.3).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topology {
    pub fast: u32,
    pub deep: u32,
}

impl Default for Topology {
    fn default() -> Self {
        Topology { fast: 2, deep: 1 }
    }
}

/// The autoscaler (docs/engine.md 4.10): per path, `target = clamp(ceil(demand / utilisation), min,
/// max)` replicas, from the rolling demand in replicas' worth of work (the time-averaged
/// backend calls in flight on the path over `window_ms`, divided by one worker's
/// concurrency). `topology` gives the replicas at start.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoscaleConfig {
    pub enabled: bool,
    /// Replicas per path.
    pub fast_min: u32,
    pub fast_max: u32,
    pub deep_min: u32,
    pub deep_max: u32,
    /// Target utilisation of a replica (SPEC: 0.8).
    pub utilisation: f64,
    /// How often the target is recomputed.
    #[serde(rename = "interval", deserialize_with = "file::ms")]
    pub interval_ms: u64,
    /// The rolling window of the demand.
    #[serde(rename = "window", deserialize_with = "file::ms")]
    pub window_ms: u64,
    /// From a worker's start until it takes work.
    #[serde(rename = "startup_delay", deserialize_with = "file::ms")]
    pub startup_ms: u64,
}

impl Default for AutoscaleConfig {
    fn default() -> Self {
        AutoscaleConfig {
            enabled: true,
            fast_min: 2,
            fast_max: 10,
            deep_min: 1,
            deep_max: 5,
            utilisation: 0.8,
            interval_ms: 10_000,
            window_ms: 60_000,
            startup_ms: 5_000,
        }
    }
}

impl AutoscaleConfig {
    /// The fewest replicas of a path.
    pub fn min(&self, path: Path) -> u32 {
        match path {
            Path::Fast => self.fast_min,
            Path::Deep => self.deep_min,
        }
    }

    /// The most replicas of a path.
    pub fn max(&self, path: Path) -> u32 {
        match path {
            Path::Fast => self.fast_max,
            Path::Deep => self.deep_max,
        }
    }

    /// The target for a demand (in replicas) on a path.
    pub fn target(&self, path: Path, demand: f64) -> u32 {
        let wanted = (demand.max(0.0) / self.utilisation).ceil();
        let wanted = if wanted.is_finite() { wanted.min(f64::from(u32::MAX)) as u32 } else { u32::MAX };
        wanted.clamp(self.min(path), self.max(path))
    }
}

/// Everything the engine's nodes read.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct EngineConfig {
    pub topology: Topology,
    pub autoscale: AutoscaleConfig,
    pub valve: ValveConfig,
    pub router: RouterConfig,
    pub governor: GovernorConfig,
    pub tokens: TokenConfig,
    pub backend: BackendConfig,
    pub dispatch: DispatchConfig,
    pub organism: OrganismConfig,
    pub memory: MemoryConfig,
    pub ledger: LedgerConfig,
    /// Unix time in ms of `at_ms = 0`; days of the budget are UTC days of `epoch + at_ms`.
    pub epoch_utc_ms: u64,
    /// The live build's OpenAI-compatible backend (`serve --backend openai`); `None`: the
    /// simulated backend (the only one the simulator has).
    pub openai: Option<OpenAiConfig>,
}

/// An OpenAI-compatible HTTP endpoint for the workers (docs/engine.md 4.8, live only).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAiConfig {
    /// Up to the API version, e.g. `http://127.0.0.1:8000/v1`; `/chat/completions` is added.
    pub base_url: String,
    /// The model the fast workers ask for.
    pub fast_model: String,
    /// The model the deep workers ask for.
    pub deep_model: String,
    /// The key itself, sent as a bearer token; never serialised or printed.
    #[serde(skip)]
    pub api_key: Option<String>,
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("fast_model", &self.fast_model)
            .field("deep_model", &self.deep_model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The `[engine]` table of a settings file: each sub-table starts from its defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineTables {
    pub valve: ValveConfig,
    pub router: RouterConfig,
    pub governor: GovernorConfig,
    pub prices: Prices,
    pub tokens: TokenConfig,
    pub dispatch: DispatchConfig,
    pub organism: OrganismConfig,
    pub memory: MemoryConfig,
    pub ledger: LedgerConfig,
    pub autoscale: AutoscaleConfig,
}

impl EngineConfig {
    /// The configuration of a settings file's `[topology]`, `[engine]` and `[backend]`
    /// tables (not validated; the epoch is 0).
    pub fn from_tables(topology: Topology, engine: EngineTables, backend: BackendConfig) -> EngineConfig {
        let EngineTables { valve, router, mut governor, prices, tokens, dispatch, organism, memory, ledger, autoscale } =
            engine;
        governor.prices = prices;
        EngineConfig {
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
            epoch_utc_ms: 0,
            openai: None,
        }
    }

    /// The UTC day index of an arrival time.
    pub fn day_of(&self, at_ms: u64) -> u64 {
        (self.epoch_utc_ms + at_ms) / 86_400_000
    }
}
