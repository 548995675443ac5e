//! `/metrics` (docs/live.md 4.11): the Prometheus text format through `prometheus-client`.
//!
//! Two sources. The gateway's own requests are counted as they happen (requests and
//! latency per endpoint and status, task latency per path). The engine's figures are read
//! at scrape time from the coordinator's and the state node's status RPCs, so that one
//! process or one role per process give the same series, with one truth per figure: the
//! engine's own counters.

use super::limits::Api;
use crate::memory::Tier;
use crate::router::Reason;
use crate::rpc::{CoordinatorStatus, StateSnapshot};
use crate::task::{Path, RejectReason};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabel {
    path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabel {
    tier: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 16 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 17))
}

fn per_token_histogram() -> Histogram {
    // 0.05 ms to about 3.3 s per output token.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

/// Everything `/metrics` serves.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RequestLabels, Histogram, fn() -> Histogram>,
    task_seconds: PerPathHistograms,
    ttft_seconds: PerPathHistograms,
    tpot_seconds: PerPathHistograms,
    engine: EngineSeries,
    /// Scrapes render one at a time: the engine series are set, then encoded.
    scrape: Mutex<()>,
}

/// The engine's figures, refreshed from its status at each scrape.
#[derive(Default)]
struct EngineSeries {
    up: FloatGauge,
    halted: FloatGauge,
    draining: FloatGauge,
    fast_path_ratio: FloatGauge,
    cusum_s: FloatGauge,
    cusum_h: FloatGauge,
    breaches: Counter,
    decisions: Family<ReasonLabel, Counter>,
    rejections: Family<ReasonLabel, Counter>,
    completed: Family<PathLabel, Counter>,
    failed: Family<PathLabel, Counter>,
    in_flight: FloatGauge,
    spend_today: FloatGauge,
    daily_budget: FloatGauge,
    fast_slo: FloatGauge,
    cache_hit_ratio: Family<TierLabel, FloatGauge>,
    cache_served_age_max: FloatGauge,
    autoscale_target: Family<PathLabel, FloatGauge>,
    autoscale_demand: Family<PathLabel, FloatGauge>,
    autoscale_replicas: Family<PathLabel, FloatGauge>,
    l_tot: FloatGauge,
    l_max: FloatGauge,
    energy: FloatGauge,
    ledger_receipts: Counter,
    ledger_cycles: Counter,
    capture_rows: Counter,
    capture_dropped: Counter,
}

/// Moves a counter up to `value` (the engine's count since it started); a restarted
/// engine's smaller count leaves the series where it was until it passes it.
fn raise(counter: &Counter, value: u64) {
    let now = counter.get();
    if value > now {
        counter.inc_by(value - now);
    }
}

/// Histograms, one per path.
type PerPathHistograms = Family<PathLabel, Histogram, fn() -> Histogram>;

/// Registers a histogram per path with `buckets`.
fn per_path(registry: &mut Registry, name: &str, help: &str, buckets: fn() -> Histogram) -> PerPathHistograms {
    let family: PerPathHistograms = Family::new_with_constructor(buckets);
    registry.register(name, help, family.clone());
    family
}

impl EngineSeries {
    /// Registers every engine series.
    fn register(&self, registry: &mut Registry) {
        let e = self;
        let gauges: [(&str, &str, &FloatGauge); 14] = [
            ("engine_up", "1 when the coordinator and the state node answered this scrape", &e.up),
            (
                "ledger_halted",
                "1 when the coordinator is halted (its ledger failed verification or kept refusing writes)",
                &e.halted,
            ),
            ("draining", "1 while the coordinator drains for shutdown", &e.draining),
            ("fast_path_ratio", "Fast share of the router's window of recent decisions", &e.fast_path_ratio),
            ("cusum_statistic", "The OCPS valve's CUSUM statistic S", &e.cusum_s),
            ("cusum_threshold", "The OCPS valve's CUSUM threshold h", &e.cusum_h),
            ("in_flight", "Tasks in dispatch or being recorded", &e.in_flight),
            ("spend_today_micro_usd", "Spend of the current UTC day, micro-USD", &e.spend_today),
            ("daily_budget_micro_usd", "The daily budget, micro-USD", &e.daily_budget),
            ("fast_slo_seconds", "The fast path's latency objective", &e.fast_slo),
            (
                "cache_served_age_max_seconds",
                "Oldest cache entry served in the last minute, seconds",
                &e.cache_served_age_max,
            ),
            ("l_tot", "Certified Lipschitz bound L_tot of the organism update", &e.l_tot),
            ("l_max", "The limit L_tot must stay below", &e.l_max),
            ("energy", "The organism's energy E (docs/engine.md 4.7)", &e.energy),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        registry.register("valve_breaches", "Breaches of the OCPS valve", e.breaches.clone());
        registry.register("decisions", "Routing decisions by reason", e.decisions.clone());
        registry.register("rejections", "Rejected tasks by reason", e.rejections.clone());
        registry.register("tasks_completed", "Completed tasks by path", e.completed.clone());
        registry.register("tasks_failed", "Failed tasks by path", e.failed.clone());
        registry.register("cache_hit_ratio", "Rolling cache hit rate by memory tier", e.cache_hit_ratio.clone());
        registry.register(
            "autoscale_target_replicas",
            "The autoscaler's target replicas by path (docs/engine.md 4.10): clamp(ceil(demand / 0.8), min, max)",
            e.autoscale_target.clone(),
        );
        registry.register(
            "autoscale_demand_replicas",
            "Rolling demand by path, in replicas' worth of backend calls in flight",
            e.autoscale_demand.clone(),
        );
        registry.register("autoscale_replicas", "Worker replicas taking work by path", e.autoscale_replicas.clone());
        registry.register("ledger_receipts", "Receipts committed to the ledger", e.ledger_receipts.clone());
        registry.register("ledger_cycles", "Ledger cycles signed", e.ledger_cycles.clone());
        registry.register("capture_rows", "Rows written by serve --capture", e.capture_rows.clone());
        registry.register(
            "capture_dropped",
            "Rows serve --capture dropped (file at its size bound, or the writer behind)",
            e.capture_dropped.clone(),
        );
    }
}

impl Metrics {
    /// A registry with every series.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("seedcore");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds: Family<RequestLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register("http_requests", "HTTP requests by endpoint and status", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by endpoint and status",
            request_seconds.clone(),
        );
        let task_seconds = per_path(
            &mut registry,
            "task_latency_seconds",
            "Latency of completed tasks submitted through the gateway, by path (the engine's own measure)",
            latency_histogram,
        );
        let ttft_seconds = per_path(
            &mut registry,
            "task_ttft_seconds",
            "Time to first token of completed tasks submitted through the gateway, by path (a cached answer's whole latency)",
            latency_histogram,
        );
        let tpot_seconds = per_path(
            &mut registry,
            "task_tpot_seconds",
            "Time per output token after the first, of completed uncached tasks with two tokens or more, by path",
            per_token_histogram,
        );
        let engine = EngineSeries::default();
        engine.register(&mut registry);
        Metrics {
            registry,
            requests,
            request_seconds,
            task_seconds,
            ttft_seconds,
            tpot_seconds,
            engine,
            scrape: Mutex::new(()),
        }
    }

    /// Counts one answered request.
    pub fn request(&self, api: Option<Api>, status: u16, elapsed: Duration) {
        let labels = RequestLabels { endpoint: api.map_or("other", Api::name), status };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Records a completed task's latency, time to first token and time per output token.
    pub fn task(&self, path: Path, latency_ms: u64, ttft_ms: u64, tpot_ms: Option<f64>) {
        let label = PathLabel { path: path.as_str() };
        self.task_seconds.get_or_create(&label).observe(latency_ms as f64 / 1000.0);
        self.ttft_seconds.get_or_create(&label).observe(ttft_ms as f64 / 1000.0);
        if let Some(tpot_ms) = tpot_ms {
            self.tpot_seconds.get_or_create(&label).observe(tpot_ms / 1000.0);
        }
    }

    /// Renders the text format from the engine's status (`None`: it did not answer) and
    /// the capture's counts.
    pub fn render(
        &self,
        coordinator: Option<&CoordinatorStatus>,
        state: Option<&StateSnapshot>,
        capture: Option<(u64, u64)>,
    ) -> String {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let e = &self.engine;
        e.up.set(if coordinator.is_some() && state.is_some() { 1.0 } else { 0.0 });
        if let Some(c) = coordinator {
            e.halted.set(if c.halted.is_some() { 1.0 } else { 0.0 });
            e.draining.set(if c.draining { 1.0 } else { 0.0 });
            e.fast_path_ratio.set(c.fast_ratio_window);
            e.cusum_s.set(c.cusum_s);
            e.cusum_h.set(c.cusum_h);
            raise(&e.breaches, c.breaches);
            for (reason, count) in Reason::ALL.iter().zip(c.decisions) {
                raise(&e.decisions.get_or_create(&ReasonLabel { reason: reason.as_str() }), count);
            }
            for (reason, count) in RejectReason::ALL.iter().zip(c.rejections) {
                raise(&e.rejections.get_or_create(&ReasonLabel { reason: reason.as_str() }), count);
            }
            for path in [Path::Fast, Path::Deep] {
                let label = PathLabel { path: path.as_str() };
                raise(&e.completed.get_or_create(&label), c.completed[path]);
                raise(&e.failed.get_or_create(&label), c.failed[path]);
                let scale = &c.autoscale[path.index()];
                e.autoscale_target.get_or_create(&label).set(f64::from(scale.target));
                e.autoscale_demand.get_or_create(&label).set(scale.demand);
                e.autoscale_replicas.get_or_create(&label).set(f64::from(scale.active));
            }
            e.in_flight.set(f64::from(c.in_flight));
            e.spend_today.set(c.spent_today_micro_usd as f64);
            e.daily_budget.set(c.daily_budget_micro_usd as f64);
            e.fast_slo.set(c.fast_slo_ms / 1000.0);
            e.cache_hit_ratio.get_or_create(&TierLabel { tier: "mw" }).set(c.mw_hit_rate);
            // The lower tiers' share of fast completions, since the coordinator started.
            for tier in [Tier::M25, Tier::Mlt] {
                let share = c.tier_hits[tier.index()] as f64 / c.completed.fast.max(1) as f64;
                e.cache_hit_ratio.get_or_create(&TierLabel { tier: tier.as_str() }).set(share);
            }
            e.cache_served_age_max.set(c.served_age_max_ms as f64 / 1000.0);
            raise(&e.ledger_receipts, c.ledger_receipts);
            raise(&e.ledger_cycles, c.ledger_cycles);
        }
        if let Some(s) = state {
            e.l_tot.set(s.l_tot);
            e.l_max.set(s.l_max);
            e.energy.set(s.energy.total);
        }
        if let Some((rows, dropped)) = capture {
            raise(&e.capture_rows, rows);
            raise(&e.capture_dropped, dropped);
        }
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
