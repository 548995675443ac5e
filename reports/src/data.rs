//! Builds a report's `ReportData` from a folded event log, the scenario and the replay
//! digests: the one place both certification and verification turn events into verdicts,
//! so that a verifier recomputes exactly what a certificate states.

use crate::fold::EventFold;
use crate::model::{Determinism, FaultRow, InvariantRow, Limits, OrganismReport, PathLatency, ReportData, Toolchain};
use crate::score::{critical_failures, outcome, score};
use seedcore_engine::Path;
use seedcore_sim::event::RunStart;
use seedcore_sim::invariant_id::InvariantId;
use seedcore_sim::invariants::{evaluate, InvariantResult, Replays, Stats};
use seedcore_sim::Scenario;

/// What the event log does not say: who ran and signed it, and against what baseline.
#[derive(Clone, Debug)]
pub struct Provenance {
    pub build_sha256: String,
    pub toolchain: Toolchain,
    pub key_id: String,
    pub development_key: bool,
    pub regressions: Vec<String>,
}

/// Evaluates the run and gathers what the report shows.
pub fn report_data(
    scenario: &Scenario,
    seed: u64,
    fold: &EventFold,
    replays: &Replays,
    provenance: Provenance,
) -> (ReportData, Vec<InvariantResult>) {
    let stats = &fold.stats;
    let results = evaluate(stats, &scenario.policy, Some(replays));
    let score = score(&results, &scenario.policy);
    let outcome = outcome(&results, score);
    let invariants = invariant_rows(scenario, &results);
    let latency = path_latency(stats);
    let start = stats.run_start.as_ref();
    let data = ReportData {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        scenario_sha256: scenario.sha256.clone(),
        seed,
        engine_version: start.map_or_else(String::new, |s| s.engine_version.clone()),
        build_sha256: provenance.build_sha256,
        toolchain: provenance.toolchain,
        epoch_utc_ms: scenario.engine.epoch_utc_ms,
        duration_ms: scenario.duration_ms,
        outcome,
        score,
        critical_failures: critical_failures(&results).iter().map(|s| s.to_string()).collect(),
        invariants,
        latency,
        arrivals: stats.arrivals,
        lost: stats.lost(),
        // By name, as the report has always listed them.
        rejections: stats.rejected.iter().map(|(r, n)| (r.as_str().to_string(), *n)).collect(),
        decisions: stats.decisions.iter().map(|(r, n)| (r.as_str().to_string(), *n)).collect(),
        alerts: stats.alerts.clone(),
        total_cost_micro_usd: stats.total_cost_micro_usd,
        days: stats.days.clone(),
        limits: limits(scenario, start),
        determinism: determinism(replays),
        faults: faults(fold),
        recovery_ms: stats.recovery_ms(),
        l_tot: fold.l_tot.clone(),
        organism: organism(fold),
        events: fold.size,
        merkle_root: hex::encode(fold.root),
        ledger_public_key: stats.ledger_check.as_ref().map_or_else(String::new, |c| c.public_key.clone()),
        ledger_receipts: stats.ledger_check.as_ref().map_or(0, |c| c.receipts),
        ledger_cycles: stats.ledger_cycles.len() as u64,
        key_id: provenance.key_id,
        development_key: provenance.development_key,
        regressions: provenance.regressions,
        policy_changes: policy_changes(scenario),
    };
    (data, results)
}

/// The scenario's policy against the defaults of docs/certification.md 8.1.
pub fn policy_changes(scenario: &Scenario) -> Vec<crate::model::PolicyChange> {
    let defaults = seedcore_sim::scenario::Policy::defaults(scenario.engine.router.window);
    scenario.policy.changes_from(&defaults).iter().map(crate::model::PolicyChange::from_change).collect()
}

/// One table row per invariant result, with the weight the scenario's policy gives it.
fn invariant_rows(scenario: &Scenario, results: &[InvariantResult]) -> Vec<InvariantRow> {
    results
        .iter()
        .map(|r| InvariantRow {
            id: r.id.to_string(),
            critical: r.critical,
            verdict: r.verdict.as_str().to_string(),
            observed: r.observed.clone(),
            threshold: r.threshold.clone(),
            value: r.measure.value.clone(),
            rule: r.measure.rule.to_string(),
            limit: r.measure.limit.clone(),
            unit: r.measure.unit.to_string(),
            weight: scenario.policy.invariants.get(&r.id).map_or(0.0, |p| p.weight).to_string(),
            detail: r.detail.clone(),
        })
        .collect()
}

/// Latency percentiles of the fast path, then the deep path (zeros for a path that
/// completed nothing), with their time to first token and time per output token (`None`
/// where the fold recorded none).
fn path_latency(stats: &Stats) -> Vec<PathLatency> {
    Path::ALL
        .iter()
        .map(|&path| {
            let h = &stats.latency_ms[path];
            let q = |q: f64| if h.is_empty() { 0 } else { h.value_at_quantile(q) };
            let ttft = &stats.ttft_ms[path];
            let ttft_q = |q: f64| (!ttft.is_empty()).then(|| ttft.value_at_quantile(q));
            let tpot = &stats.tpot_us[path];
            let tpot_q = |q: f64| (!tpot.is_empty()).then(|| tpot.value_at_quantile(q));
            PathLatency {
                path: path.as_str().to_string(),
                completed: stats.completed[path],
                failed: stats.failed[path],
                p50_ms: q(0.50),
                p95_ms: q(0.95),
                p99_ms: q(0.99),
                max_ms: if h.is_empty() { 0 } else { h.max() },
                ttft_p50_ms: ttft_q(0.50),
                ttft_p99_ms: ttft_q(0.99),
                tpot_p50_us: tpot_q(0.50),
                tpot_p99_us: tpot_q(0.99),
            }
        })
        .collect()
}

/// The limits the run was checked against: the `run_start` record's where the log has one,
/// the scenario's otherwise.
fn limits(scenario: &Scenario, start: Option<&RunStart>) -> Limits {
    Limits {
        ceiling_micro_usd: start.map_or(scenario.engine.governor.ceiling_micro_usd, |s| s.ceiling_micro_usd),
        daily_budget_micro_usd: start
            .map_or(scenario.engine.governor.daily_budget_micro_usd, |s| s.daily_budget_micro_usd),
        rate_limits: start.map(|s| s.rate_limits.clone()).unwrap_or_default(),
        fast_target_ppm: start.map_or(900_000, |s| s.fast_target_ppm),
        cusum_h: scenario.engine.valve.h,
        window: scenario.policy.window,
        ttft_p99_threshold_ms: scenario
            .policy
            .invariants
            .get(&InvariantId::TtftP99)
            .map_or(InvariantId::TtftP99.defaults().threshold, |p| p.threshold),
    }
}

/// The replays' roots as hex, and the live half if there was one.
fn determinism(replays: &Replays) -> Determinism {
    Determinism {
        reference: hex::encode(replays.reference),
        replays: replays.replays.iter().map(hex::encode).collect(),
        live: replays.live,
    }
}

/// The faults the log records, each with its recovery time if the engine recovered.
fn faults(fold: &EventFold) -> Vec<FaultRow> {
    let stats = &fold.stats;
    fold.faults
        .iter()
        .map(|f| FaultRow { recovery_ms: stats.fault_recovery.get(&f.id).copied(), ..f.clone() })
        .collect()
}

/// The memory fabric, the energy and the autoscaler, from the fold's totals and series.
fn organism(fold: &EventFold) -> OrganismReport {
    let stats = &fold.stats;
    OrganismReport {
        fast_completed: stats.completed.fast,
        tier_hits: stats.tier_hits,
        tier_max_age_ms: stats.tier_max_age_ms,
        flashbulbs: stats.flashbulbs,
        energy: fold.energy.clone(),
        energy_first: stats.energy_first.clone(),
        energy_last: stats.energy_last.clone(),
        energy_min_ppm: stats.energy_min_ppm,
        energy_max_ppm: stats.energy_max_ppm,
        promotions_refused: stats.promotions_refused,
        scale: stats.scale.clone(),
        scale_points: fold.scale.clone(),
    }
}
