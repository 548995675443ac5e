//! What two scenarios of a shadow must share: the arrivals of the seed, the faults of the
//! seed, the network and the run's length. They may differ in the engine's settings, its
//! topology and backends, and the policy. A difference in the world is a usage error that
//! names the scenario keys that differ, so the user sees what to align.

use seedcore_sim::Scenario;

/// The top-level tables and keys that make up the world a run plays in.
const WORLD_KEYS: [&str; 5] = ["duration", "start_utc", "workload", "chaos", "network"];

/// The dotted keys under `WORLD_KEYS` whose values differ between two scenario sources.
fn differing_keys(base: &str, candidate: &str) -> Vec<String> {
    let parse = |text: &str| text.parse::<toml::Table>().unwrap_or_default();
    let (b, c) = (parse(base), parse(candidate));
    let mut out = Vec::new();
    for key in WORLD_KEYS {
        walk(key, b.get(key), c.get(key), &mut out);
    }
    out
}

fn walk(key: &str, b: Option<&toml::Value>, c: Option<&toml::Value>, out: &mut Vec<String>) {
    match (b, c) {
        (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                walk(&format!("{key}.{k}"), x.get(k), y.get(k), out);
            }
        }
        (x, y) if x != y => out.push(key.to_string()),
        _ => {}
    }
}

/// Checks that `base` and `candidate` run the same world with `seed`: the same arrivals,
/// the same fault plan, network and length. The error says what differs.
pub fn same_world(base: &Scenario, candidate: &Scenario, seed: u64) -> Result<(), String> {
    let keys = differing_keys(&base.source, &candidate.source);
    let named = if keys.is_empty() { String::new() } else { format!("; the scenarios differ in {}", keys.join(", ")) };
    let mut problems = Vec::new();
    if base.duration_ms != candidate.duration_ms {
        problems.push(format!("the run's length ({} ms against {} ms)", base.duration_ms, candidate.duration_ms));
    }
    if base.engine.epoch_utc_ms != candidate.engine.epoch_utc_ms {
        problems.push("the start time (budget days would differ)".to_string());
    }
    if base.network != candidate.network {
        problems.push("the network".to_string());
    }
    if base.fault_plan(seed) != candidate.fault_plan(seed) {
        problems.push(format!("the fault plan of seed {seed}"));
    }
    if problems.is_empty() {
        let (b, c) =
            (base.workload.tasks(seed, base.duration_ms), candidate.workload.tasks(seed, candidate.duration_ms));
        if b.len() != c.len() {
            problems.push(format!("the arrivals of seed {seed} ({} tasks against {})", b.len(), c.len()));
        } else if let Some((x, _)) = b.iter().zip(&c).find(|(x, y)| x != y) {
            problems.push(format!("the arrivals of seed {seed} (first at task {})", x.task_id));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} and {} do not run the same world: {} differ{named}. A shadow compares engine settings and policy on the same arrivals and faults",
        base.path.display(),
        candidate.path.display(),
        problems.join(", "),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_differing_world_keys_are_named() {
        let base = "name = \"a\"\nduration = \"5m\"\n[workload]\nsource = \"generated\"\nrate_per_s = 10.0\n[engine.router]\ntau_deep = 0.6\n";
        let candidate = "name = \"b\"\nduration = \"5m\"\n[workload]\nsource = \"generated\"\nrate_per_s = 12.0\n[engine.router]\ntau_deep = 0.45\n";
        assert_eq!(differing_keys(base, candidate), ["workload.rate_per_s"]);
        assert!(differing_keys(base, base).is_empty());
    }
}
