//! `cost_report.json`: one daily cost report per simulated UTC day of the run's outcomes,
//! from the event log's money fold (`seedcore_sim::money`, the figures the invariants
//! judge), in the shape of the seeds' daily cost report (`003_ce37427b2eae73bd.txt`, section 2.3).
//!
//! Mapping: a "summary" is a completed task, a "cycle" an admitted task (completed or
//! failed); `daily_rate_limit` is the tightest per-kind limit, with every kind's limit,
//! admitted count and utilisation beside it in `rate_limits_per_kind`.
//!
//! Guarantees: fields are written in declaration order, maps are `BTreeMap`s, money is
//! rounded to 6 decimals (micro-USD) and percentages to 2, so the bytes are reproducible.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Limits, ReportData};
use seedcore_sim::money::DayMoney;

#[derive(Serialize)]
struct CostReport<'a> {
    scenario: &'a str,
    /// Decimal string: a `u64` seed does not fit every JSON reader's numbers.
    seed: String,
    days: Vec<DailyReport>,
}

#[derive(Serialize)]
struct DailyReport {
    report_date: String,
    daily_summary: DailySummary,
    adr012_compliance: Compliance,
    budget_utilization: BudgetUtilization,
    cost_trajectory: CostTrajectory,
    alerts: Vec<Alert>,
}

#[derive(Serialize)]
struct DailySummary {
    total_cycles: u64,
    total_summaries_generated: u64,
    total_cost_usd: f64,
    average_cost_per_summary_usd: f64,
    max_cost_per_summary_usd: f64,
    min_cost_per_summary_usd: f64,
}

#[derive(Serialize)]
struct Compliance {
    per_summary_ceiling_usd: f64,
    daily_budget_cap_usd: f64,
    /// The tightest per-kind daily limit; `null` when no kind is limited.
    daily_rate_limit: Option<u32>,
    /// The kind `daily_rate_limit` belongs to.
    daily_rate_limit_kind: Option<String>,
    rate_limits_per_kind: BTreeMap<String, KindLimit>,
    ceiling_breaches: u64,
    budget_breaches: u64,
    rate_limit_breaches: u64,
    compliance_status: &'static str,
}

#[derive(Serialize)]
struct KindLimit {
    limit: u32,
    admitted: u64,
    used_pct: f64,
}

#[derive(Serialize)]
struct BudgetUtilization {
    daily_budget_used_pct: f64,
    /// Utilisation of the tightest limit (`daily_rate_limit`).
    daily_rate_used_pct: f64,
    budget_headroom_usd: f64,
}

#[derive(Serialize)]
struct CostTrajectory {
    /// Mean daily spend over the days of the last 7 (this one included) present in the run.
    #[serde(rename = "7day_average_cost_usd")]
    average_7day_cost_usd: f64,
    #[serde(rename = "30day_average_cost_usd")]
    average_30day_cost_usd: f64,
    /// This day against the mean of the previous (up to 7) days: `increasing` above 110 %,
    /// `decreasing` below 90 %, otherwise (or without a previous day) `stable`.
    trend: &'static str,
}

#[derive(Serialize)]
struct Alert {
    trigger: &'static str,
    /// `warning` (approaching a limit) or `critical` (a limit breached).
    severity: &'static str,
    message: String,
}

/// The pretty-printed JSON document, with a trailing newline.
pub(super) fn cost_report(data: &ReportData) -> Result<String, serde_json::Error> {
    let totals: BTreeMap<u64, u64> = data.days.iter().map(|(day, d)| (*day, d.spend_micro_usd)).collect();
    let days = data.days.iter().map(|(day, stats)| daily(data, *day, stats, &totals)).collect();
    let report = CostReport { scenario: &data.scenario, seed: data.seed.to_string(), days };
    let mut text = serde_json::to_string_pretty(&report)?;
    text.push('\n');
    Ok(text)
}

/// One day's report: its spend against the run's limits, the alerts those raise, and the
/// trend of the spend over the days before it.
fn daily(data: &ReportData, day: u64, stats: &DayMoney, totals: &BTreeMap<u64, u64>) -> DailyReport {
    let limits = &data.limits;
    let per_kind = per_kind(limits, stats);
    // Tightest limit; among equal limits the first kind by name.
    let tightest = limits.rate_limits.iter().min_by_key(|(_, limit)| **limit);
    let rate_limit_breaches = per_kind.values().filter(|k| k.admitted > u64::from(k.limit)).count() as u64;
    let budget_used = pct(stats.spend_micro_usd, limits.daily_budget_micro_usd);
    let alerts = alerts(limits, stats, &per_kind, budget_used);
    let budget_breaches = stats.budget_breaches.max(u64::from(stats.spend_micro_usd > limits.daily_budget_micro_usd));
    let compliance_status = if stats.ceiling_breaches > 0 || budget_breaches > 0 || rate_limit_breaches > 0 {
        "FAIL"
    } else if alerts.is_empty() {
        "PASS"
    } else {
        "PASS WITH CONDITIONS"
    };

    let rate_used = tightest.and_then(|(kind, _)| per_kind.get(kind)).map_or(0.0, |k| k.used_pct);
    DailyReport {
        report_date: date(day),
        daily_summary: summary(stats),
        adr012_compliance: Compliance {
            per_summary_ceiling_usd: usd(limits.ceiling_micro_usd),
            daily_budget_cap_usd: usd(limits.daily_budget_micro_usd),
            daily_rate_limit: tightest.map(|(_, limit)| *limit),
            daily_rate_limit_kind: tightest.map(|(kind, _)| kind.clone()),
            ceiling_breaches: stats.ceiling_breaches,
            budget_breaches,
            rate_limit_breaches,
            compliance_status,
            rate_limits_per_kind: per_kind,
        },
        budget_utilization: BudgetUtilization {
            daily_budget_used_pct: budget_used,
            daily_rate_used_pct: rate_used,
            budget_headroom_usd: usd(limits.daily_budget_micro_usd.saturating_sub(stats.spend_micro_usd)),
        },
        cost_trajectory: trajectory(day, totals),
        alerts,
    }
}

/// Every limited kind's daily limit, the tasks of that kind the day admitted, and the share
/// of the limit they used.
fn per_kind(limits: &Limits, stats: &DayMoney) -> BTreeMap<String, KindLimit> {
    limits
        .rate_limits
        .iter()
        .map(|(kind, limit)| {
            let admitted = stats.admitted_per_kind.get(kind).copied().unwrap_or(0);
            (kind.clone(), KindLimit { limit: *limit, admitted, used_pct: pct(admitted, u64::from(*limit)) })
        })
        .collect()
}

/// The day's alerts: warnings for limits approached (90 % of the ceiling, 80 % of the budget
/// or of a rate limit), then the limits breached; `budget_used` is the budget's use in percent.
fn alerts(limits: &Limits, stats: &DayMoney, per_kind: &BTreeMap<String, KindLimit>, budget_used: f64) -> Vec<Alert> {
    let mut alerts = Vec::new();
    if stats.near_ceiling > 0 {
        alerts.push(Alert {
            trigger: "cost_approaching_ceiling",
            severity: "warning",
            message: format!(
                "{} completed task(s) charged at or above 90% of the ${:.6} ceiling",
                stats.near_ceiling,
                usd(limits.ceiling_micro_usd)
            ),
        });
    }
    if u128::from(stats.spend_micro_usd) * 10 >= u128::from(limits.daily_budget_micro_usd) * 8 {
        alerts.push(Alert {
            trigger: "daily_budget_80pct",
            severity: "warning",
            message: format!("daily budget {budget_used:.2}% utilized"),
        });
    }
    for (kind, k) in per_kind {
        if u128::from(k.admitted) * 10 >= u128::from(k.limit) * 8 {
            alerts.push(Alert {
                trigger: "rate_limit_80pct",
                severity: "warning",
                message: format!("rate limit of `{kind}` {:.2}% utilized ({} of {})", k.used_pct, k.admitted, k.limit),
            });
        }
    }
    if stats.ceiling_breaches > 0 {
        alerts.push(Alert {
            trigger: "cost_ceiling_breach",
            severity: "critical",
            message: format!("{} completed task(s) charged above the per-task ceiling", stats.ceiling_breaches),
        });
    }
    if stats.budget_breaches > 0 || stats.spend_micro_usd > limits.daily_budget_micro_usd {
        alerts.push(Alert {
            trigger: "budget_cap_breach",
            severity: "critical",
            message: format!(
                "spend ${:.6} above the ${:.6} daily budget ({} charge(s) past the cap)",
                usd(stats.spend_micro_usd),
                usd(limits.daily_budget_micro_usd),
                stats.budget_breaches
            ),
        });
    }
    for (kind, k) in per_kind.iter().filter(|(_, k)| k.admitted > u64::from(k.limit)) {
        alerts.push(Alert {
            trigger: "rate_limit_breach",
            severity: "critical",
            message: format!("`{kind}` admitted {} times against a limit of {}", k.admitted, k.limit),
        });
    }
    alerts
}

/// The day's completed tasks ("summaries") and admitted ones ("cycles"), and what the
/// completed ones cost.
fn summary(stats: &DayMoney) -> DailySummary {
    DailySummary {
        total_cycles: stats.admitted(),
        total_summaries_generated: stats.completed,
        total_cost_usd: usd(stats.spend_micro_usd),
        average_cost_per_summary_usd: stats.completed_cost_mean().map_or(0.0, usd_f64),
        max_cost_per_summary_usd: stats.completed_cost_max.map_or(0.0, usd),
        min_cost_per_summary_usd: stats.completed_cost_min.map_or(0.0, usd),
    }
}

fn trajectory(day: u64, totals: &BTreeMap<u64, u64>) -> CostTrajectory {
    let mean = |first: u64, last: u64| -> Option<f64> {
        let days: Vec<u64> = totals.range(first..=last).map(|(_, total)| *total).collect();
        let sum: u128 = days.iter().map(|t| u128::from(*t)).sum();
        (!days.is_empty()).then(|| sum as f64 / days.len() as f64)
    };
    let today = totals.get(&day).copied().unwrap_or(0) as f64;
    let trend = match (day > 0).then(|| mean(day.saturating_sub(7), day - 1)).flatten() {
        Some(previous) if today > previous * 1.1 => "increasing",
        Some(previous) if today < previous * 0.9 => "decreasing",
        _ => "stable",
    };
    CostTrajectory {
        average_7day_cost_usd: mean(day.saturating_sub(6), day).map_or(0.0, usd_f64),
        average_30day_cost_usd: mean(day.saturating_sub(29), day).map_or(0.0, usd_f64),
        trend,
    }
}

/// Days since 1970-01-01 as an ISO date.
pub(super) fn date(day: u64) -> String {
    i64::try_from(day)
        .ok()
        .and_then(|day| day.checked_mul(86_400))
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map_or_else(|| format!("day {day}"), |t| t.format("%Y-%m-%d").to_string())
}

/// Micro-USD as dollars: exact to the micro-dollar (the nearest double to a 6-decimal value).
fn usd(micro: u64) -> f64 {
    micro as f64 / 1e6
}

/// A fractional micro-USD amount as dollars, rounded to 6 decimals.
fn usd_f64(micro: f64) -> f64 {
    micro.round() / 1e6
}

/// `part / whole` in percent, rounded to 2 decimals; 0 for an empty whole.
fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 10_000.0 / whole as f64).round() / 100.0
}
