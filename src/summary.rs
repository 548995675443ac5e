//! The human-readable run banner, summary and invariant table of `replay` (simulation
//! build only).

use seedcore_engine::memory::Tier;
use seedcore_engine::router::Reason;
use seedcore_engine::Path;
use seedcore_sim::invariants::{Stats, Verdict};
use seedcore_sim::run::RunReport;
use seedcore_sim::Scenario;
use std::time::Duration;

/// Prints the run banner: the seed, the scenario digest and the derived parameters.
pub fn banner(command: &str, scenario: &Scenario, seed: u64, replays: u32) {
    let e = &scenario.engine;
    println!(
        "seedcore {command}  scenario {} ({})  seed {seed}  replays {replays}",
        scenario.name,
        &scenario.sha256[..16]
    );
    println!(
        "  duration {} s, drain {} s, topology fast {} / deep {}, network {}-{} ms, loss {}",
        scenario.duration_ms / 1000,
        scenario.harness.drain_ms / 1000,
        e.topology.fast,
        e.topology.deep,
        scenario.network.latency_ms.0,
        scenario.network.latency_ms.1,
        scenario.network.loss
    );
    println!(
        "  valve nu {} h {} reset {}; tau_deep {} fast_target {}; ceiling {} µUSD, daily budget {} µUSD; explicit faults {}",
        e.valve.nu,
        e.valve.h,
        e.valve.reset_fraction,
        e.router.tau_deep,
        e.router.fast_target,
        e.governor.ceiling_micro_usd,
        e.governor.daily_budget_micro_usd,
        scenario.faults.faults().len()
    );
    let plan = scenario.fault_plan(seed);
    if !plan.is_empty() {
        println!(
            "  fault plan {} ({} fault(s){}):",
            &plan.digest()[..16],
            plan.faults().len(),
            if scenario.swarm.is_some() { ", swarm draw of this seed" } else { "" }
        );
        for (i, fault) in plan.faults().iter().enumerate() {
            println!("    {:>2}. {}", i + 1, fault.describe());
        }
    }
}

fn usd(micro: u64) -> String {
    format!("${}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

/// Where a run's files go by default: `out/<scenario>-<seed>`.
pub fn default_out(scenario: &Scenario, seed: u64) -> std::path::PathBuf {
    std::path::PathBuf::from("out").join(format!("{}-{seed}", scenario.name))
}

/// Where `replay` writes by default: `out/replay/<scenario>-<seed>`, apart from the
/// certification bundles, which nothing overwrites.
pub fn default_replay_out(scenario: &Scenario, seed: u64) -> std::path::PathBuf {
    std::path::PathBuf::from("out").join("replay").join(format!("{}-{seed}", scenario.name))
}

/// Prints the run summary and the invariant table.
pub fn print(scenario: &Scenario, report: &RunReport, wall: Duration) {
    let s = &report.stats;
    println!();
    println!("Run summary");
    print_tasks(scenario, s);
    print_spend_and_latency(s);
    print_organism(s);
    print_fleet(s);
    print_log(report);
    print_invariants(report);
    print_wall(report, wall);
}

/// Tasks, the fast-path ratio, escalations and rejections.
fn print_tasks(scenario: &Scenario, s: &Stats) {
    let (completed, failed) = (s.completed.total(), s.failed.total());
    let rejected: u64 = s.rejected.values().sum();
    println!("  tasks            {} arrived: {completed} completed, {rejected} rejected, {failed} failed", s.arrivals);
    println!(
        "  fast-path ratio  {}   (worst window of {}: {})",
        s.fast_ratio().map_or("-".into(), |r| format!("{r:.4}")),
        scenario.policy.window,
        s.worst_window_fast_ppm.map_or("-".into(), |w| format!("{:.4}", w as f64 / 1e6))
    );
    let reason = |r: Reason| s.decisions.get(&r).copied().unwrap_or(0);
    println!(
        "  escalations      breach {} · planning {} · surprise {} · deferred {}",
        reason(Reason::Breach),
        reason(Reason::Planning),
        reason(Reason::Surprise),
        reason(Reason::Deferred)
    );
    let mut rejections: Vec<String> = s.rejected.iter().map(|(r, n)| format!("{} {n}", r.as_str())).collect();
    rejections.sort();
    println!("  rejections       {}", if rejections.is_empty() { "none".into() } else { rejections.join(" · ") });
}

/// Spend against the ceiling and the budget, and latency per path.
fn print_spend_and_latency(s: &Stats) {
    let start = s.run_start.as_ref();
    let ceiling = start.map_or(0, |r| r.ceiling_micro_usd);
    let budget = start.map_or(0, |r| r.daily_budget_micro_usd);
    let top_day = s.days.values().map(|d| d.spend_micro_usd).max().unwrap_or(0);
    println!(
        "  spend            {} total; costliest task {} of ceiling {}; highest day {} of budget {} ({:.2} %)",
        usd(s.total_cost_micro_usd),
        usd(s.max_cost_micro_usd),
        usd(ceiling),
        usd(top_day),
        usd(budget),
        if budget > 0 { top_day as f64 / budget as f64 * 100.0 } else { 0.0 }
    );
    for path in Path::ALL {
        let h = &s.latency_ms[path];
        let name = path.as_str();
        if h.is_empty() {
            println!("  latency {name}     no completed task");
        } else {
            println!(
                "  latency {name}     p50 {} ms · p95 {} ms · p99 {} ms · max {} ms ({} tasks)",
                h.value_at_quantile(0.50),
                h.value_at_quantile(0.95),
                h.value_at_quantile(0.99),
                h.max(),
                h.len()
            );
        }
    }
    for path in Path::ALL {
        let (ttft, tpot) = (&s.ttft_ms[path], &s.tpot_us[path]);
        if ttft.is_empty() {
            continue;
        }
        let tpot = if tpot.is_empty() {
            String::from("no decoding measured")
        } else {
            let ms = |q: f64| tpot.value_at_quantile(q) as f64 / 1000.0;
            format!("TPOT p50 {:.2} ms · p99 {:.2} ms", ms(0.50), ms(0.99))
        };
        println!(
            "  first token {:<5}TTFT p50 {} ms · p99 {} ms · {tpot}",
            path.as_str(),
            ttft.value_at_quantile(0.50),
            ttft.value_at_quantile(0.99),
        );
    }
}

/// `L_tot`, the memory fabric and the energy.
fn print_organism(s: &Stats) {
    println!(
        "  L_tot            max certified {} (must stay below 1); {} promotions, {} masks, {} sweeps checked, {} contraction failures",
        s.l_tot_max_ppm.map_or("-".into(), |l| format!("{:.6}", l as f64 / 1e6)),
        s.l_tot_updates.saturating_sub(1),
        s.masks,
        s.sweeps,
        s.contraction_failures
    );
    let share = |hits: u64| {
        if s.completed.fast == 0 {
            "-".to_string()
        } else {
            format!("{:.4}", hits as f64 / s.completed.fast as f64)
        }
    };
    let tiers: Vec<String> = Tier::ALL
        .iter()
        .map(|t| {
            let hits = s.tier_hits[t.index()];
            format!("{} {} ({hits}, oldest {} ms)", t.label(), share(hits), s.tier_max_age_ms[t.index()])
        })
        .collect();
    println!(
        "  memory           hit rate {} of {} fast completions: {}; Mfb {} events; max served age {} ms",
        share(s.cache_hits),
        s.completed.fast,
        tiers.join(" · "),
        s.flashbulbs,
        s.max_cache_age_ms
    );
    let e = |ppm: i64| format!("{:.4}", ppm as f64 / 1e6);
    match (&s.energy_first, &s.energy_last) {
        (Some(first), Some(last)) => println!(
            "  energy           E {} -> {} (pair {}, reg {}, ent {}, mem {}); {} samples, range {}..{}; {} promotions refused",
            e(first.total_ppm),
            e(last.total_ppm),
            e(last.pair_ppm),
            e(last.reg_ppm),
            e(last.ent_ppm),
            e(last.mem_ppm),
            s.energy_samples,
            s.energy_min_ppm.map_or("-".into(), e),
            s.energy_max_ppm.map_or("-".into(), e),
            s.promotions_refused
        ),
        _ => println!("  energy           not recorded"),
    }
}

/// The autoscaler, the alerts and lost tasks.
fn print_fleet(s: &Stats) {
    if s.scale.iter().all(|(_, p)| p.events == 0) {
        println!("  autoscaler       off");
    } else {
        let paths: Vec<String> = s
            .scale
            .iter()
            .map(|(path, p)| {
                format!(
                    "{} target up to {} ({} targets set), replicas {}..{}, {} started, {} stopped",
                    path.as_str(),
                    p.max_target,
                    p.targets,
                    p.min_replicas.unwrap_or(0),
                    p.max_replicas,
                    p.started,
                    p.stopped
                )
            })
            .collect();
        println!("  autoscaler       {}", paths.join(" · "));
    }
    let alerts: Vec<String> = s.alerts.iter().map(|(a, n)| format!("{a} {n}")).collect();
    println!("  alerts           {}", if alerts.is_empty() { "none".into() } else { alerts.join(" · ") });
    println!("  lost tasks       {}", s.lost());
}

/// The event log, the determinism replays and the live capture's agreement.
fn print_log(report: &RunReport) {
    println!("  event log        {} events, Merkle root {}", report.events, hex(&report.root));
    let replays = &report.replays.replays;
    let same = replays.iter().filter(|r| **r == report.replays.reference).count();
    println!("  determinism      {same}/{} replays gave the same root", replays.len());
    if let Some(live) = report.replays.live {
        println!(
            "  live capture     {} of {} decisions replayed alike ({:.2} %)",
            live.agreed,
            live.tasks,
            100.0 * live.agreed as f64 / live.tasks.max(1) as f64
        );
    }
}

/// One line per invariant: criticality, verdict, observed value, threshold, detail.
fn print_invariants(report: &RunReport) {
    println!();
    println!("Invariants");
    println!("  {:<20} {:<5} {:<8} {:<24} {:<40} detail", "invariant", "crit", "verdict", "observed", "threshold");
    for r in &report.results {
        let verdict = match r.verdict {
            Verdict::Fail => "FAIL".to_string(),
            v => v.as_str().to_string(),
        };
        println!(
            "  {:<20} {:<5} {:<8} {:<24} {:<40} {}",
            r.id,
            if r.critical { "yes" } else { "no" },
            verdict,
            r.observed,
            r.threshold,
            r.detail
        );
    }
    println!();
}

/// The wall time of the runs, and the simulator's speed for a single run.
fn print_wall(report: &RunReport, wall: Duration) {
    let runs = report.replays.replays.len() + 1;
    let simulated_s = report.stats.last_t_ms as f64 / 1000.0;
    if runs == 1 {
        println!(
            "wall {:.3} s for one run: {:.0} simulated tasks per wall-second, time compression {:.0}x",
            wall.as_secs_f64(),
            report.tasks as f64 / wall.as_secs_f64(),
            simulated_s / wall.as_secs_f64()
        );
    } else if report.replays_after {
        println!(
            "wall {:.3} s for {runs} runs, one after another: two runs of {} tasks would not fit in {} MiB together \
             (--replays 1 times one run)",
            wall.as_secs_f64(),
            report.tasks,
            seedcore_sim::run::MEMORY_BUDGET >> 20
        );
    } else {
        println!(
            "wall {:.3} s for {runs} runs (the determinism replays run on a second thread; --replays 1 times one run)",
            wall.as_secs_f64()
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
