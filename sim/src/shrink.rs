//! The shrinker (docs/harness.md 7): from a failing seed's fault plan to a minimal plan that still
//! fails the same invariant, written as a runnable scenario.
//!
//! Stages, each keeping the failure: delta debugging over the list of faults (`ddmin`),
//! then shorter durations, later start times and smaller magnitudes (each a bisection
//! between the value that fails and the mildest one allowed). The oracle is a whole run of
//! the scenario with the same seed and the candidate plan; the plan is data to the run, so
//! each candidate is as deterministic as the original.

use crate::scenario::Scenario;
use seedcore_chaos::{ddmin, Fault};
use std::path::{Component, Path, PathBuf};

/// Durations are not shortened below this, nor start times moved by less.
const RESOLUTION_MS: u64 = 500;

/// What the shrinker did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shrunk {
    pub before: Vec<Fault>,
    pub after: Vec<Fault>,
    /// Runs of the oracle, the first (the original plan) not counted.
    pub runs: u32,
    /// The run budget ran out before the last stage finished.
    pub exhausted: bool,
}

/// Shrinks `plan` (which fails) in a run of `duration_ms`, calling `fails` at most
/// `max_runs` times.
pub fn shrink_plan(plan: &[Fault], duration_ms: u64, max_runs: u32, fails: impl FnMut(&[Fault]) -> bool) -> Shrunk {
    let mut budget = Budget { fails, runs: 0, max_runs };
    let before = plan.to_vec();
    if budget.test(&[]) {
        // The failure needs no fault at all.
        return Shrunk { before, after: Vec::new(), runs: budget.runs, exhausted: false };
    }
    let (mut current, _) = ddmin(plan, |subset| budget.test(subset));
    // Shorter durations.
    for i in 0..current.len() {
        let Some(duration) = current[i].kind.duration_ms().filter(|d| *d > 0) else { continue };
        let shortest = bisect(RESOLUTION_MS.min(duration), duration, true, |d| {
            let mut candidate = current.clone();
            *candidate[i].kind.duration_mut().expect("a lasting fault") = d;
            budget.test(&candidate)
        });
        *current[i].kind.duration_mut().expect("a lasting fault") = shortest;
    }
    // Later start times: as late as the fault still fits in the run and still fails.
    for i in 0..current.len() {
        let lasts = current[i].kind.duration_ms().unwrap_or(0);
        let latest = duration_ms.saturating_sub(lasts.max(1));
        if latest <= current[i].at_ms {
            continue;
        }
        let at = bisect(current[i].at_ms, latest, false, |at| {
            let mut candidate = current.clone();
            candidate[i].at_ms = at;
            budget.test(&candidate)
        });
        current[i].at_ms = at;
    }
    // Smaller magnitudes.
    for i in 0..current.len() {
        let Some((value, mildest)) = current[i].kind.clone().magnitude_mut().map(|(v, m)| (*v, m)) else { continue };
        if value <= mildest {
            continue;
        }
        let step = ((value - mildest) / 64).max(1);
        let smallest = bisect_step(mildest, value, step, |m| {
            let mut candidate = current.clone();
            *candidate[i].kind.magnitude_mut().expect("has a magnitude").0 = m;
            budget.test(&candidate)
        });
        *current[i].kind.magnitude_mut().expect("has a magnitude").0 = smallest;
    }
    current.sort_by_key(|f| f.at_ms);
    Shrunk { before, after: current, runs: budget.runs, exhausted: budget.runs >= budget.max_runs }
}

/// The oracle with a budget: once spent, every candidate counts as passing, so each stage
/// keeps the last plan known to fail.
struct Budget<F> {
    fails: F,
    runs: u32,
    max_runs: u32,
}

impl<F: FnMut(&[Fault]) -> bool> Budget<F> {
    fn test(&mut self, plan: &[Fault]) -> bool {
        if self.runs >= self.max_runs {
            return false;
        }
        self.runs += 1;
        (self.fails)(plan)
    }
}

/// Bisects between `mild` (may pass) and `known` (fails) for the mildest value that fails,
/// to `RESOLUTION_MS`; `lower` when smaller is milder. Returns a value known to fail.
fn bisect(mild: u64, known: u64, lower: bool, mut fails: impl FnMut(u64) -> bool) -> u64 {
    let (mut pass, mut fail) = (mild, known);
    if pass == fail || fails(pass) {
        return pass;
    }
    while pass.abs_diff(fail) > RESOLUTION_MS {
        let mid = if lower { pass + (fail - pass) / 2 } else { fail + (pass - fail) / 2 };
        if fails(mid) {
            fail = mid;
        } else {
            pass = mid;
        }
    }
    fail
}

/// Like `bisect` downwards, for magnitudes, to `step`.
fn bisect_step(mild: u64, known: u64, step: u64, mut fails: impl FnMut(u64) -> bool) -> u64 {
    let (mut pass, mut fail) = (mild, known);
    if fails(pass) {
        return pass;
    }
    while fail - pass > step {
        let mid = pass + (fail - pass) / 2;
        if fails(mid) {
            fail = mid;
        } else {
            pass = mid;
        }
    }
    fail
}

/// The text of `shrunk.toml`: the scenario with its `[chaos]` replaced by the explicit
/// plan `faults` (no swarm), `seed` set, and a trace path that still resolves from `dir`,
/// where the file will be written.
pub fn shrunk_toml(
    scenario: &Scenario,
    faults: &[Fault],
    seed: u64,
    invariant: &str,
    dir: &Path,
) -> Result<String, String> {
    let mut table: toml::Table = scenario.source.parse().map_err(|e| format!("{}: {e}", scenario.path.display()))?;
    table.remove("chaos");
    table.insert("seed".into(), toml::Value::Integer(seed as i64));
    table.insert("name".into(), toml::Value::String(format!("{}-shrunk", scenario.name)));
    if let Some(toml::Value::Table(workload)) = table.get_mut("workload") {
        if let Some(toml::Value::String(trace)) = workload.get_mut("trace") {
            let base = scenario.path.parent().unwrap_or(Path::new("."));
            let absolute = absolute(&base.join(&*trace)).map_err(|e| format!("{trace}: {e}"))?;
            let dir = absolute_dir(dir)?;
            *trace = relative(&dir, &absolute).display().to_string();
        }
    }
    let mut fault_tables = Vec::new();
    for fault in faults {
        fault_tables.push(toml::Value::Table(fault_table(fault)));
    }
    let mut chaos = toml::Table::new();
    chaos.insert("fault".into(), toml::Value::Array(fault_tables));
    table.insert("chaos".into(), toml::Value::Table(chaos));
    let body = toml::to_string(&table).map_err(|e| e.to_string())?;
    Ok(format!(
        "# Shrunk by `seedcore shrink` from {} with seed {seed}: {} fault(s) that still fail {invariant}.\n\
         # Reproduce: cargo sim replay <this file> --seed {seed}\n\n{body}",
        scenario.path.display(),
        faults.len()
    ))
}

/// One `[[chaos.fault]]` in the scenario's own spelling.
fn fault_table(fault: &Fault) -> toml::Table {
    use seedcore_chaos::FaultKind as K;
    let mut t = toml::Table::new();
    let ms = |v: u64| toml::Value::String(format!("{v}ms"));
    let ratio = |ppm: u64| toml::Value::Float(ppm as f64 / 1e6);
    let text = |s: &dyn std::fmt::Display| toml::Value::String(s.to_string());
    t.insert("at".into(), ms(fault.at_ms));
    t.insert("kind".into(), text(&fault.kind.name()));
    match &fault.kind {
        K::Crash { node, down_ms } | K::TornWrite { node, down_ms } => {
            t.insert("node".into(), text(node));
            if let Some(d) = down_ms {
                t.insert("for".into(), ms(*d));
            }
        }
        K::Restart { node } | K::LedgerCorrupt { node } => {
            t.insert("node".into(), text(node));
        }
        K::Pause { node, for_ms } | K::Isolate { node, for_ms } => {
            t.insert("node".into(), text(node));
            t.insert("for".into(), ms(*for_ms));
        }
        K::Partition { node, peer, for_ms } => {
            t.insert("node".into(), text(node));
            t.insert("peer".into(), text(peer));
            t.insert("for".into(), ms(*for_ms));
        }
        K::PacketLoss { rate_ppm, for_ms } => {
            t.insert("rate".into(), ratio(*rate_ppm));
            t.insert("for".into(), ms(*for_ms));
        }
        K::Latency { min_ms, max_ms, for_ms } => {
            let range = vec![toml::Value::Integer(*min_ms as i64), toml::Value::Integer(*max_ms as i64)];
            t.insert("latency_ms".into(), toml::Value::Array(range));
            t.insert("for".into(), ms(*for_ms));
        }
        K::BackendErrors { path, rate_ppm, for_ms } => {
            t.insert("path".into(), text(&path.as_str()));
            t.insert("rate".into(), ratio(*rate_ppm));
            t.insert("for".into(), ms(*for_ms));
        }
        K::BackendSlow { path, factor_ppm, for_ms } | K::TokenInflation { path, factor_ppm, for_ms } => {
            t.insert("path".into(), text(&path.as_str()));
            t.insert("factor".into(), ratio(*factor_ppm));
            t.insert("for".into(), ms(*for_ms));
        }
        K::BadPromotion { norm_ppm } => {
            t.insert("norm".into(), ratio(*norm_ppm));
        }
        K::LedgerIoError { for_ms } => {
            t.insert("for".into(), ms(*for_ms));
        }
    }
    t
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The absolute form of a directory that may not exist yet.
fn absolute_dir(dir: &Path) -> Result<PathBuf, String> {
    if let Ok(path) = std::fs::canonicalize(dir) {
        return Ok(path);
    }
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    let mut path = std::fs::canonicalize(&cwd).map_err(|e| e.to_string())?;
    for component in dir.components() {
        match component {
            Component::ParentDir => {
                path.pop();
            }
            Component::Normal(name) => path.push(name),
            Component::RootDir => path = PathBuf::from("/"),
            _ => {}
        }
    }
    Ok(path)
}

/// `to` relative to the directory `from` (both absolute).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to_parts: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to_parts).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for part in &to_parts[common..] {
        path.push(part);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use seedcore_chaos::FaultKind;
    use seedcore_engine::node::NodeName;

    fn crash(at_ms: u64, node: &str, for_ms: u64) -> Fault {
        Fault { at_ms, kind: FaultKind::Crash { node: NodeName::parse(node).unwrap(), down_ms: Some(for_ms) } }
    }

    #[test]
    fn an_oracle_shrinks_to_the_planted_pair_then_shortens_delays_and_softens() {
        // Fails when fast-1 and fast-2 are both down for 5 s or more at once, and the
        // backend error rate fault is at least 0.3.
        let mut plan: Vec<Fault> = (0..18).map(|i| crash(i * 10_000, "deep-1", 2_000)).collect();
        plan.push(crash(50_000, "fast-1", 40_000));
        plan.push(crash(60_000, "fast-2", 40_000));
        plan.push(Fault {
            at_ms: 1_000,
            kind: FaultKind::BackendErrors { path: seedcore_engine::Path::Fast, rate_ppm: 900_000, for_ms: 100_000 },
        });
        let fails = |p: &[Fault]| {
            let span = |node: &str| {
                p.iter().find(|f| f.kind.downs() == NodeName::parse(node)).map(|f| (f.at_ms, f.end_ms().unwrap()))
            };
            let errors =
                p.iter().any(|f| matches!(&f.kind, FaultKind::BackendErrors { rate_ppm, .. } if *rate_ppm >= 300_000));
            match (span("fast-1"), span("fast-2")) {
                (Some((a0, a1)), Some((b0, b1))) => errors && a1.min(b1).saturating_sub(a0.max(b0)) >= 5_000,
                _ => false,
            }
        };
        let shrunk = shrink_plan(&plan, 200_000, 500, fails);
        assert_eq!(shrunk.after.len(), 3, "{:#?}", shrunk.after);
        assert!(fails(&shrunk.after));
        let mut names: Vec<String> = shrunk.after.iter().map(|f| f.kind.target()).collect();
        names.sort();
        assert_eq!(names, ["fast", "fast-1", "fast-2"]);
        let errors = shrunk.after.iter().find(|f| f.kind.name() == "backend_errors").unwrap();
        match &errors.kind {
            FaultKind::BackendErrors { rate_ppm, .. } => assert!((300_000..320_000).contains(rate_ppm), "{rate_ppm}"),
            _ => unreachable!(),
        }
        let overlap = {
            let f1 = shrunk.after.iter().find(|f| f.kind.downs() == NodeName::parse("fast-1")).unwrap();
            let f2 = shrunk.after.iter().find(|f| f.kind.downs() == NodeName::parse("fast-2")).unwrap();
            f1.end_ms().unwrap().min(f2.end_ms().unwrap()) - f1.at_ms.max(f2.at_ms)
        };
        assert!((5_000..5_000 + 2 * RESOLUTION_MS).contains(&overlap), "overlap {overlap}");
        assert!(shrunk.runs < 150, "{} runs", shrunk.runs);
    }

    #[test]
    fn a_failure_without_faults_shrinks_to_none() {
        let shrunk = shrink_plan(&[crash(0, "fast-1", 1_000)], 10_000, 10, |_| true);
        assert_eq!((shrunk.after.len(), shrunk.runs), (0, 1));
    }

    #[test]
    fn relative_paths_climb_out_of_the_directory() {
        assert_eq!(relative(Path::new("/a/b/out"), Path::new("/a/b/traces/t.csv")), PathBuf::from("../traces/t.csv"));
        assert_eq!(relative(Path::new("/a"), Path::new("/a/t.csv")), PathBuf::from("t.csv"));
    }
}
