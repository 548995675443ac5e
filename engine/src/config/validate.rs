//! Every bound on the engine's settings, and the relations between them that the formulas
//! rely on (docs/engine.md 4). One place: a scenario, `serve --config` and `serve
//! --scenario` are all checked here, and each error names the setting by its file key.

use super::{EngineConfig, TierConfig};
use crate::task::Path;

/// A setting whose value is out of its bounds or contradicts the formulas it feeds.
#[derive(Debug, thiserror::Error)]
#[error("invalid engine configuration: {field}: {message}")]
pub struct ConfigError {
    /// The offending setting, as its dotted key in a settings file.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// Upper bounds on sizes the engine allocates by (a `dim` of a billion once aborted the
/// process on allocation): far above any sensible setting, far below what a machine holds.
/// The organism keeps two `dim x dim` matrices of f64 (16 MB at the bound).
pub const MAX_DIM: usize = 1_024;
pub const MAX_AGENTS: usize = 4_096;
pub const MAX_WINDOW: usize = 1_000_000;
/// Workers of one path the autoscaler may reach (the simulator's addresses hold up to 250).
pub const MAX_REPLICAS: u32 = 64;
/// Workers of one path at start.
pub const MAX_TOPOLOGY: u32 = 16;
/// Entries of one kind in one memory tier.
pub const MAX_TIER_CAPACITY: usize = 10_000_000;
/// Memory times to live and latencies (a year).
pub const MAX_MEMORY_MS: u64 = 366 * 86_400_000;
/// The longest backend or state timeout, and backoff step.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// The longest `engine.dispatch.complete_batch`: the organism and the router's x4 lag the
/// completions by up to this much.
pub const MAX_COMPLETE_BATCH_MS: u64 = 10_000;
/// The most concurrent calls per worker.
pub const MAX_CONCURRENCY: u32 = 4_096;
/// The most tasks in flight at the coordinator.
pub const MAX_IN_FLIGHT: u32 = 1_000_000;
/// The most retries after a first attempt.
pub const MAX_RETRIES: u32 = 10;

fn check(ok: bool, field: &str, message: impl Into<String>) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError { field: field.to_string(), message: message.into() })
    }
}

fn fraction(field: &str, value: f64) -> Result<(), ConfigError> {
    check((0.0..=1.0).contains(&value), field, format!("{value} is not in [0, 1]"))
}

fn positive(field: &str, value: f64) -> Result<(), ConfigError> {
    check(value > 0.0 && value.is_finite(), field, format!("{value} must be a positive number"))
}

fn non_negative(field: &str, value: f64) -> Result<(), ConfigError> {
    check(value >= 0.0 && value.is_finite(), field, format!("{value} must be >= 0"))
}

impl EngineConfig {
    /// Checks every setting's bounds and the relations the engine's formulas rely on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_topology()?;
        self.validate_formulas()?;
        self.validate_dispatch()?;
        self.validate_organism()?;
        self.validate_memory()?;
        self.validate_backend()
    }

    /// `[topology]` and `[engine.autoscale]`.
    fn validate_topology(&self) -> Result<(), ConfigError> {
        for (field, n) in [("topology.fast", self.topology.fast), ("topology.deep", self.topology.deep)] {
            check((1..=MAX_TOPOLOGY).contains(&n), field, format!("must be in 1..={MAX_TOPOLOGY}"))?;
        }
        let a = &self.autoscale;
        for path in [Path::Fast, Path::Deep] {
            let (min, max) = (a.min(path), a.max(path));
            let name = path.as_str();
            check(min >= 1, &format!("engine.autoscale.{name}_min"), "at least one replica is needed")?;
            check(
                max >= min && max <= MAX_REPLICAS,
                &format!("engine.autoscale.{name}_max"),
                format!("must be in [{min}, {MAX_REPLICAS}]"),
            )?;
        }
        check(
            !a.enabled || (self.topology.fast <= a.fast_max && self.topology.deep <= a.deep_max),
            "topology",
            "the workers at start cannot exceed the autoscaler's max",
        )?;
        check(a.utilisation > 0.0 && a.utilisation <= 1.0, "engine.autoscale.utilisation", "must be in (0, 1]")?;
        check(a.interval_ms >= 1, "engine.autoscale.interval", "must be at least 1 ms")?;
        check(a.window_ms >= a.interval_ms, "engine.autoscale.window", "must be at least the interval")
    }

    /// The valve, the router, the tokens, the governor and the ledger.
    fn validate_formulas(&self) -> Result<(), ConfigError> {
        let v = &self.valve;
        non_negative("engine.valve.nu", v.nu)?;
        positive("engine.valve.h", v.h)?;
        fraction("engine.valve.reset_fraction", v.reset_fraction)?;
        check(v.reset_fraction < 1.0, "engine.valve.reset_fraction", "must be below 1")?;
        let r = &self.router;
        non_negative("engine.router.tau_deep", r.tau_deep)?;
        fraction("engine.router.fast_target", r.fast_target)?;
        positive("engine.router.fast_slo_ms", r.fast_slo_ms)?;
        check(
            r.weights.iter().all(|w| (0.0..=1.0).contains(w)),
            "engine.router.weights",
            "every weight must be in [0, 1]",
        )?;
        check((1..=MAX_WINDOW).contains(&r.window), "engine.router.window", format!("must be in 1..={MAX_WINDOW}"))?;
        let t = &self.tokens;
        non_negative("engine.tokens.alpha", t.alpha)?;
        non_negative("engine.tokens.beta", t.beta)?;
        fraction("engine.tokens.ema_smoothing", t.ema_smoothing)?;
        check(t.max_tokens >= 1, "engine.tokens.max_tokens", "must be >= 1")?;
        check(self.governor.ceiling_micro_usd >= 1, "engine.governor.ceiling_micro_usd", "must be >= 1")?;
        let l = &self.ledger;
        check(l.cycle_receipts >= 1, "engine.ledger.cycle_receipts", "must be >= 1")?;
        check(l.cycle_ms >= 1, "engine.ledger.cycle", "must be >= 1")?;
        check(l.segment_receipts >= 1, "engine.ledger.segment_receipts", "must be >= 1")
    }

    /// `[engine.dispatch]`.
    fn validate_dispatch(&self) -> Result<(), ConfigError> {
        let d = &self.dispatch;
        check(
            d.complete_batch_ms <= MAX_COMPLETE_BATCH_MS,
            "engine.dispatch.complete_batch",
            format!("{} ms: at most {MAX_COMPLETE_BATCH_MS} ms (0 sends each completion at once)", d.complete_batch_ms),
        )?;
        check(d.retries <= MAX_RETRIES, "engine.dispatch.retries", format!("at most {MAX_RETRIES} retries"))?;
        for (key, ms) in [
            ("engine.dispatch.fast_timeout", d.fast_timeout_ms),
            ("engine.dispatch.deep_timeout", d.deep_timeout_ms),
            ("engine.dispatch.state_timeout", d.state_timeout_ms),
            ("engine.dispatch.backoff", d.backoff_ms.max(1)),
        ] {
            check((1..=MAX_TIMEOUT_MS).contains(&ms), key, format!("{ms} ms: must be positive and at most 1h"))?;
        }
        for (key, n) in [
            ("engine.dispatch.fast_concurrency", d.fast_concurrency),
            ("engine.dispatch.deep_concurrency", d.deep_concurrency),
        ] {
            check((1..=MAX_CONCURRENCY).contains(&n), key, format!("{n}: must be in 1..={MAX_CONCURRENCY}"))?;
        }
        check(
            (1..=MAX_IN_FLIGHT).contains(&d.max_in_flight),
            "engine.dispatch.max_in_flight",
            format!("must be in 1..={MAX_IN_FLIGHT}"),
        )
    }

    /// `[engine.organism]`: GraphMask's certificate needs `init_gain` below
    /// `(l_max - (1 - eta)) / eta` (docs/engine.md 4.6).
    fn validate_organism(&self) -> Result<(), ConfigError> {
        let o = &self.organism;
        fraction("engine.organism.eta", o.eta)?;
        fraction("engine.organism.l_max", o.l_max)?;
        positive("engine.organism.init_gain", o.init_gain)?;
        non_negative("engine.organism.promotion_step", o.promotion_step)?;
        non_negative("engine.organism.edge_growth", o.edge_growth)?;
        check((2..=MAX_AGENTS).contains(&o.agents), "engine.organism.agents", format!("must be in 2..={MAX_AGENTS}"))?;
        check(o.organs >= 1 && o.organs <= o.agents, "engine.organism.organs", "must be in [1, agents]")?;
        check((2..=MAX_DIM).contains(&o.dim), "engine.organism.dim", format!("must be in 2..={MAX_DIM}"))?;
        check(o.eta > 0.0 && o.eta <= 1.0, "engine.organism.eta", "must be in (0, 1]")?;
        check(
            o.l_max > 1.0 - o.eta && o.l_max <= 1.0,
            "engine.organism.l_max",
            format!("must be in (1 - eta, 1] = ({}, 1]", 1.0 - o.eta),
        )?;
        let limit = (o.l_max - (1.0 - o.eta)) / o.eta;
        check(
            o.init_gain > 0.0 && o.init_gain < limit,
            "engine.organism.init_gain",
            format!("must be in (0, (l_max - (1 - eta)) / eta) = (0, {limit})"),
        )?;
        check(o.promotion_every >= 1, "engine.organism.promotion_every", "must be >= 1")
    }

    /// `[engine.memory]`.
    fn validate_memory(&self) -> Result<(), ConfigError> {
        let m = &self.memory;
        let tiers: [(&str, &TierConfig); 3] = [("mw", &m.mw), ("m25", &m.m25), ("mlt", &m.mlt)];
        for (name, tier) in tiers {
            check(
                tier.capacity.iter().all(|c| *c <= MAX_TIER_CAPACITY),
                &format!("engine.memory.{name}_capacity"),
                format!("must be in 0..={MAX_TIER_CAPACITY} per kind"),
            )?;
            check(
                tier.ttl_ms.iter().all(|t| *t <= MAX_MEMORY_MS) && tier.latency_ms <= MAX_MEMORY_MS,
                &format!("engine.memory.{name}_ttl"),
                format!("times must be at most {MAX_MEMORY_MS} ms"),
            )?;
        }
        check(
            (1..=MAX_MEMORY_MS).contains(&m.max_freshness_ms),
            "engine.memory.max_freshness",
            format!("must be in 1..={MAX_MEMORY_MS} ms"),
        )?;
        check(
            m.mfb_latency_ms <= MAX_MEMORY_MS,
            "engine.memory.mfb_latency",
            format!("must be at most {MAX_MEMORY_MS} ms"),
        )
    }

    /// `[backend.fast]` and `[backend.deep]`.
    fn validate_backend(&self) -> Result<(), ConfigError> {
        for path in [Path::Fast, Path::Deep] {
            let model = self.backend.of(path);
            let key = |field: &str| format!("backend.{}.{field}", path.as_str());
            positive(&key("ttft_base_ms"), model.ttft_base_ms)?;
            positive(&key("prefill_tokens_per_s"), model.prefill_tokens_per_s)?;
            non_negative(&key("tpot_ms"), model.tpot_ms)?;
            non_negative(&key("batch_slope"), model.batch_slope)?;
            positive(&key("noise_p99"), model.noise_p99)?;
            fraction(&key("error_rate"), model.error_rate)?;
            positive(&key("token_inflation"), model.token_inflation)?;
            let table = format!("backend.{}", path.as_str());
            check(model.noise_p99 >= 1.0 && model.noise_p99 <= 100.0, &table, "noise_p99 must be in [1, 100]")?;
            check(
                model.ttft_base_ms <= 600_000.0 && model.tpot_ms <= 60_000.0,
                &table,
                "ttft_base_ms and tpot_ms: at most 10 minutes and 1 minute",
            )?;
            check(model.token_inflation >= 1.0, &table, "token_inflation must be >= 1")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(change: impl FnOnce(&mut EngineConfig)) -> String {
        let mut config = EngineConfig::default();
        change(&mut config);
        config.validate().expect_err("the change must be refused").field
    }

    #[test]
    fn the_defaults_are_valid() {
        EngineConfig::default().validate().unwrap();
    }

    #[test]
    fn each_bound_names_its_key() {
        assert_eq!(field_of(|c| c.topology.fast = 17), "topology.fast");
        assert_eq!(field_of(|c| c.autoscale.deep_max = 65), "engine.autoscale.deep_max");
        assert_eq!(field_of(|c| c.valve.h = f64::NAN), "engine.valve.h");
        assert_eq!(field_of(|c| c.router.weights[2] = 1.5), "engine.router.weights");
        assert_eq!(field_of(|c| c.dispatch.retries = 11), "engine.dispatch.retries");
        assert_eq!(field_of(|c| c.dispatch.deep_timeout_ms = MAX_TIMEOUT_MS + 1), "engine.dispatch.deep_timeout");
        assert_eq!(field_of(|c| c.organism.init_gain = 0.9), "engine.organism.init_gain");
        assert_eq!(field_of(|c| c.memory.mlt.capacity[0] = MAX_TIER_CAPACITY + 1), "engine.memory.mlt_capacity");
        assert_eq!(field_of(|c| c.backend.deep.noise_p99 = 0.5), "backend.deep");
        assert_eq!(field_of(|c| c.backend.fast.error_rate = -0.1), "backend.fast.error_rate");
        assert_eq!(field_of(|c| c.ledger.cycle_ms = 0), "engine.ledger.cycle");
    }
}
