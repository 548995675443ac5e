//! No input can crash or hang the harness (ISSUE 8): a property-test corpus of bad
//! scenarios and damaged traces. Scenarios are generated from the schema (a template that
//! sets every key) by mutations: huge, zero, negative, NaN, infinite, wrong type, missing
//! and duplicated values, one to three keys at a time. Traces are damaged row by row. Each
//! case is loaded, and a scenario that loads is run under the simulator.
//!
//! The only results allowed are a scenario that loads and runs to its end, or a load error
//! that names the file (exit 2 on the command line). A panic fails the property; an abort
//! (an allocation that cannot be made) kills the test binary, which fails too. A run
//! without end cannot pass either: a loaded scenario must be within the load-time bounds on
//! duration and arrivals, and is then run; one larger than 50,000 arrivals or an hour runs
//! its first part only, to keep the corpus within a unit of CI time.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use seedcore_sim::scenario::{MAX_ARRIVALS, MAX_DURATION_MS};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use toml::Value;

/// Every key of the schema, with values that make a 20-second run.
const TEMPLATE: &str = r#"
name = "corpus"
description = "every key of the schema"
duration = "20s"
seed = 11
start_utc = "2025-11-24T00:00:00Z"

[workload]
source = "generated"
rate_per_s = 5.0
diurnal = 0.2
tokens_in = { median = 400.0, p99 = 4000.0 }
tokens_out = { median = 100.0, p99 = 900.0 }

[[workload.burst]]
at = "5s"
for = "5s"
factor = 3.0

[workload.enrich]
mix = { chat = 0.5, query = 0.3, summary = 0.2 }
drift_base = 0.02
drift_context = 0.1
drift_noise = 0.05
planning_rate = 0.05
low_authority_rate = 0.1
repeat_rate = 0.2
domains = ["guest", "facility"]

[[workload.enrich.drift_episode]]
at = "10s"
for = "4s"
drift = 0.2

[engine.valve]
nu = 0.1
h = 2.5

[engine.router]
weights = [0.2, 0.2, 0.2, 0.2, 0.1, 0.1]
tau_deep = 0.7
fast_target = 0.9
window = 200
fast_slo_ms = 200.0

[engine.governor]
ceiling_micro_usd = 50000
daily_budget_micro_usd = 500000000
rate_limits = { summary = 1000 }
clamp_overrun = true
enforce_daily_budget = true
enforce_rate_limits = true

[engine.prices]
fast_in = 1
fast_out = 2
deep_in = 10
deep_out = 30

[engine.tokens]
max_tokens = 8192
alpha = 1.0
beta = 1.2
ema_smoothing = 0.1

[engine.dispatch]
fast_timeout = "2s"
deep_timeout = "30s"
retries = 2
backoff = "50ms"
max_in_flight = 256
fast_concurrency = 32
deep_concurrency = 8
state_timeout = "1s"

[engine.organism]
agents = 16
organs = 4
dim = 8
eta = 0.1
l_max = 0.95
graph_mask = true
init_gain = 0.3
promotion_every = 50
promotion_step = 0.05
edge_growth = 0.01
shadow = true

[engine.memory]
mw_capacity = 512
mw_ttl = { chat = "3s" }
mw_latency = "5ms"

[engine.ledger]
cycle_receipts = 50
cycle = "10s"
segment_receipts = 500

[topology]
fast = 2
deep = 1

[backend.fast]
ttft_base_ms = 60.0
tpot_ms = 0.0
noise_p99 = 3.0
error_rate = 0.01
token_inflation = 1.0

[backend.deep]
ttft_base_ms = 2000.0
tpot_ms = 0.0
noise_p99 = 4.5
error_rate = 0.01
token_inflation = 1.1

[network]
latency_ms = [1, 5]
loss = 0.0

[[chaos.fault]]
at = "8s"
kind = "crash"
node = "fast-1"
for = "3s"

[[chaos.fault]]
at = "12s"
kind = "backend_errors"
path = "deep"
rate = 0.5
for = "2s"

[harness]
drain = "60s"
replays = 1

[policy]
window = 100

[policy.fast_latency_p99]
threshold = 200.0
warn = 50.0
weight = 1.0
"#;

/// What a mutation puts in place of a value.
#[derive(Clone, Debug)]
enum Mutation {
    Set(Value),
    /// A number times this factor (other values unchanged): plausible but unusual values.
    Scale(f64),
    Remove,
    /// The key written twice in its table: a TOML error.
    Duplicate,
}

fn mutations() -> Vec<Mutation> {
    let values = [
        Value::Integer(0),
        Value::Integer(-1),
        Value::Integer(i64::MAX),
        Value::Integer(i64::MIN),
        Value::Integer(1 << 40),
        Value::Float(f64::NAN),
        Value::Float(f64::INFINITY),
        Value::Float(f64::NEG_INFINITY),
        Value::Float(-0.5),
        Value::Float(1e300),
        Value::Float(0.0),
        Value::String(String::new()),
        Value::String("x".into()),
        Value::String("0ms".into()),
        Value::String("-5s".into()),
        Value::String("99999999d".into()),
        Value::String("18446744073709551615ms".into()),
        Value::String("1e9h".into()),
        Value::String("5 parsecs".into()),
        Value::Boolean(true),
        Value::Array(Vec::new()),
        Value::Array(vec![Value::Integer(i64::MAX); 7]),
        Value::Table(toml::map::Map::new()),
    ];
    let mut out: Vec<Mutation> = values.into_iter().map(Mutation::Set).collect();
    out.extend([0.0, 0.5, 2.0, 10.0, 1000.0].map(Mutation::Scale));
    out.extend(
        [Value::Integer(1), Value::Integer(2), Value::Float(0.5), Value::Float(1.0), Value::String("1s".into())]
            .map(Mutation::Set),
    );
    out.push(Mutation::Remove);
    out.push(Mutation::Duplicate);
    out
}

/// The dotted paths of every leaf of `value` (array elements by index).
fn leaves(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        Value::Table(table) => {
            for (key, child) in table {
                prefix.push(key.clone());
                leaves(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) if items.iter().any(|i| i.is_table() || i.is_array()) => {
            for (index, child) in items.iter().enumerate() {
                prefix.push(index.to_string());
                leaves(child, prefix, out);
                prefix.pop();
            }
            out.push(prefix.clone());
        }
        _ => out.push(prefix.clone()),
    }
}

/// Applies `mutation` at `path` in the template; returns the scenario's text.
fn mutate(root: &mut Value, path: &[String], mutation: &Mutation) -> Option<String> {
    let (last, parents) = path.split_last()?;
    let mut node = &mut *root;
    for key in parents {
        node = match node {
            Value::Table(t) => t.get_mut(key)?,
            Value::Array(a) => a.get_mut(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    let scaled = |value: &Value, factor: f64| match value {
        Value::Integer(i) => Value::Integer((*i as f64 * factor) as i64),
        Value::Float(f) => Value::Float(f * factor),
        other => other.clone(),
    };
    match (node, mutation) {
        (Value::Table(t), Mutation::Scale(factor)) => {
            let value = scaled(t.get(last)?, *factor);
            t.insert(last.clone(), value);
        }
        (Value::Array(a), Mutation::Scale(factor)) => {
            let slot = a.get_mut(last.parse::<usize>().ok()?)?;
            *slot = scaled(slot, *factor);
        }
        (Value::Table(t), Mutation::Set(v)) => {
            t.insert(last.clone(), v.clone());
        }
        (Value::Table(t), Mutation::Remove) => {
            t.remove(last);
        }
        (Value::Array(a), Mutation::Set(v)) => *a.get_mut(last.parse::<usize>().ok()?)? = v.clone(),
        (Value::Array(a), Mutation::Remove) => {
            let index = last.parse::<usize>().ok()?;
            (index < a.len()).then(|| a.remove(index))?;
        }
        (_, Mutation::Duplicate) => {
            // Text-level: the first `last = ...` line appears twice.
            let text = toml::to_string(root).ok()?;
            let line = text.lines().find(|l| l.starts_with(&format!("{last} =")))?.to_string();
            return Some(text.replacen(&line, &format!("{line}\n{line}"), 1));
        }
        _ => return None,
    }
    toml::to_string(root).ok()
}

/// A runner with a fixed seed: the corpus is the same on every run, so CI is repeatable
/// (widen it by raising the case counts, or change the seed to explore).
fn runner(cases: u32) -> TestRunner {
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

/// What became of a case.
enum Case {
    Ran,
    /// Refused at load, with this message.
    Refused(String),
}

/// Loads the scenario at `path` and runs it when it loads: the property of this module. A
/// refusal must name the scenario file or the trace it reads (`trace`).
fn load_and_run(path: &Path, trace: Option<&Path>) -> Result<Case, TestCaseError> {
    let file = path.display().to_string();
    let trace_file = trace.map(|t| t.display().to_string());
    let loaded = std::panic::catch_unwind(|| seedcore_sim::load(path));
    let scenario = match loaded {
        Err(_) => return Err(TestCaseError::fail(format!("loading {file} panicked"))),
        Ok(Err(error)) => {
            let message = error.to_string();
            let named = message.contains(&file) || trace_file.as_ref().is_some_and(|t| message.contains(t));
            prop_assert!(named, "the error names the file: {message}");
            return Ok(Case::Refused(message));
        }
        Ok(Ok(s)) => s,
    };
    prop_assert!(scenario.duration_ms <= MAX_DURATION_MS, "{file}: loaded a run of {} ms", scenario.duration_ms);
    let arrivals = scenario.workload.expected_arrivals(scenario.duration_ms).unwrap_or(0.0);
    prop_assert!(arrivals <= MAX_ARRIVALS as f64, "{file}: loaded {arrivals} arrivals");
    // A large but bounded run (a burst factor times 1000, say) runs its first part only:
    // its settings are exercised, in a unit of CI time.
    let mut scenario = scenario;
    if arrivals > 50_000.0 || scenario.duration_ms > 3_600_000 {
        let share = (50_000.0 / arrivals.max(1.0)).min(1.0);
        scenario.duration_ms = ((scenario.duration_ms as f64 * share) as u64).clamp(1_000, 3_600_000);
    }
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        seedcore_sim::run::replay(&scenario, scenario.seed, 1, None)
    }));
    match run {
        Ok(Ok(_)) => Ok(Case::Ran),
        Ok(Err(error)) => Err(TestCaseError::fail(format!("{file}: the run failed: {error}"))),
        Err(_) => Err(TestCaseError::fail(format!("{file}: the simulation panicked"))),
    }
}

#[test]
fn mutated_scenarios_load_and_run_or_are_refused() {
    let template: Value = toml::from_str(TEMPLATE).expect("the template parses");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("template.toml");
    std::fs::write(&path, TEMPLATE).unwrap();
    if let Err(error) = seedcore_sim::load(&path) {
        panic!("the template itself loads: {error}");
    }
    let mut paths = Vec::new();
    leaves(&template, &mut Vec::new(), &mut paths);
    assert!(paths.len() > 100, "the template covers the schema: {} keys", paths.len());
    let mutations = mutations();
    let (runs, refused) = (AtomicU64::new(0), AtomicU64::new(0));
    let edit = (0..paths.len(), 0..mutations.len());
    let strategy = prop::collection::vec(edit, 1..=3);
    let mut runner = runner(3_000);
    let cases = AtomicU64::new(0);
    runner
        .run(&strategy, |edits| {
            let mut value = template.clone();
            let mut text = None;
            for (key, mutation) in &edits {
                text = mutate(&mut value, &paths[*key], &mutations[*mutation]);
                if matches!(mutations[*mutation], Mutation::Duplicate) {
                    break;
                }
            }
            let Some(text) = text else { return Ok(()) };
            let n = cases.fetch_add(1, Ordering::Relaxed);
            let path = dir.path().join(format!("case-{n}.toml"));
            std::fs::write(&path, text).unwrap();
            match load_and_run(&path, None)? {
                Case::Ran => runs.fetch_add(1, Ordering::Relaxed),
                Case::Refused(_) => refused.fetch_add(1, Ordering::Relaxed),
            };
            Ok(())
        })
        .unwrap();
    let (runs, refused) = (runs.into_inner(), refused.into_inner());
    println!("scenario corpus: {} cases, {runs} ran to the end, {refused} refused with an error", cases.into_inner());
    assert!(runs > 20 && refused > 100, "both outcomes are exercised: {runs} ran, {refused} refused");
}

/// One way to damage a trace.
#[derive(Clone, Copy, Debug)]
enum Damage {
    Field(&'static str),
    DropField,
    ExtraField,
    BlankLine,
    NotUtf8,
    TruncateLine,
    Header,
    OnlyHeader,
    Empty,
}

const DAMAGES: [Damage; 22] = [
    Damage::Field(""),
    Damage::Field("x"),
    Damage::Field("-1"),
    Damage::Field("NaN"),
    Damage::Field("inf"),
    Damage::Field("1e309"),
    Damage::Field("99999999999999999999"),
    Damage::Field("4294967296"),
    Damage::Field("18446744073709551615"),
    Damage::Field("0"),
    Damage::Field("\"quoted, with comma\""),
    Damage::Field("1900-01-01 00:00:00.0"),
    Damage::Field("2999-12-31 23:59:59.9999999"),
    Damage::Field("2023-11-16 18:15:40.0000000"),
    Damage::DropField,
    Damage::ExtraField,
    Damage::BlankLine,
    Damage::NotUtf8,
    Damage::TruncateLine,
    Damage::Header,
    Damage::OnlyHeader,
    Damage::Empty,
];

/// Thirty rows of each trace format.
fn trace(canonical: bool) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    if canonical {
        rows.push(seedcore_sim::workload::CANONICAL_HEADER.iter().map(|s| s.to_string()).collect());
        for i in 0..30u64 {
            let row = format!("{i},{},chat,guest,0.1,3,low,false,100,20,{}", i * 400, i % 5);
            rows.push(row.split(',').map(String::from).collect());
        }
    } else {
        rows.push(vec!["TIMESTAMP".into(), "ContextTokens".into(), "GeneratedTokens".into()]);
        for i in 0..30u64 {
            rows.push(vec![
                format!("2023-11-16 18:15:{:02}.{:07}", 40 + i / 2, (i % 2) * 5_000_000),
                "374".into(),
                "44".into(),
            ]);
        }
    }
    rows
}

fn damaged(canonical: bool, damage: Damage, row: usize, column: usize) -> Vec<u8> {
    let mut rows = trace(canonical);
    let row = 1 + row % (rows.len() - 1);
    let columns = rows[row].len();
    match damage {
        Damage::Field(value) => rows[row][column % columns] = value.to_string(),
        Damage::DropField => {
            rows[row].remove(column % columns);
        }
        Damage::ExtraField => rows[row].push("7".into()),
        Damage::Header => rows[0][column % columns] = "Surprise".into(),
        Damage::OnlyHeader => rows.truncate(1),
        Damage::Empty => return Vec::new(),
        Damage::BlankLine | Damage::NotUtf8 | Damage::TruncateLine => {}
    }
    let mut bytes = Vec::new();
    for (index, fields) in rows.iter().enumerate() {
        let mut line = fields.join(",").into_bytes();
        if index == row {
            match damage {
                Damage::BlankLine => bytes.push(b'\n'),
                Damage::NotUtf8 => line.extend_from_slice(&[0xff, 0xfe]),
                Damage::TruncateLine => {
                    line.truncate(line.len() / 2);
                    bytes.extend_from_slice(&line);
                    return bytes;
                }
                _ => {}
            }
        }
        bytes.extend_from_slice(&line);
        bytes.push(b'\n');
    }
    bytes
}

#[test]
fn damaged_traces_load_and_run_or_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let strategy = (any::<bool>(), 0..DAMAGES.len(), 0..64usize, 0..16usize, 0..3u32);
    let mut runner = runner(600);
    let (cases, runs, refused) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    runner
        .run(&strategy, |(canonical, damage, row, column, loops)| {
            let n = cases.fetch_add(1, Ordering::Relaxed);
            let trace = dir.path().join(format!("trace-{n}.csv"));
            std::fs::write(&trace, damaged(canonical, DAMAGES[damage], row, column)).unwrap();
            let format = if canonical { "canonical" } else { "azure" };
            let scenario = format!(
                "name = \"damaged\"\nduration = \"1m\"\nseed = 5\n\n[workload]\nsource = \"trace\"\n\
                 trace = \"trace-{n}.csv\"\nformat = \"{format}\"\nloops = {}\n\n[harness]\nreplays = 1\n",
                loops + 1
            );
            let path = dir.path().join(format!("trace-{n}.toml"));
            std::fs::write(&path, scenario).unwrap();
            match load_and_run(&path, Some(&trace))? {
                Case::Ran => runs.fetch_add(1, Ordering::Relaxed),
                Case::Refused(error) => {
                    // Damage in the trace is reported against the trace file.
                    prop_assert!(error.contains(&format!("trace-{n}.csv")), "{error}");
                    refused.fetch_add(1, Ordering::Relaxed)
                }
            };
            Ok(())
        })
        .unwrap();
    let (runs, refused) = (runs.into_inner(), refused.into_inner());
    println!("trace corpus: {} cases, {runs} ran to the end, {refused} refused with an error", cases.into_inner());
    assert!(runs > 10 && refused > 50, "both outcomes are exercised: {runs} ran, {refused} refused");
}
