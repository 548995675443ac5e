//! `seedcore compare`: a capture of the live gateway (`serve --capture`) replayed in the simulator,
//! and the share of tasks whose replayed decision (path, or rejection and its reason) equals the
//! live one: the live half of `determinism` (docs/certification.md 8.1, >= 0.95).
//!
//! The replay is made as close to the live run as the capture allows:
//! - the engine settings are the ones `serve` ran with (its `--scenario`, or the
//!   defaults), and the organism starts from the same seed;
//! - tasks arrive in the order the live valve saw them (`valve_seq`), at their live
//!   arrival times rebased to the first (the budget day stays the live UTC day);
//! - the network is loopback-like: no latency, no loss, so no reordering on the way in.
//!
//! What still differs is what the capture does not hold: the backend's latencies (drawn
//! again by the simulated backend, so the tasks in flight, the `pressure` input, and the
//! cache's state at each arrival can differ), and, live, time that passes inside the
//! gateway and the RPCs. ARCHITECTURE.md lists them.

#[cfg(madsim)]
use crate::run::RunError;
use crate::workload::{canonical_task, csv_reader, WorkloadError, CANONICAL_HEADER};
use seedcore_engine::task::{Task, CAPTURE_DECISION_COLUMNS};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One captured task and what the live engine decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Captured {
    /// The task; `at_ms` is the live arrival, Unix ms.
    pub task: Task,
    /// `fast`, `deep`, or `rejected:<reason>`.
    pub decision: String,
    /// Place in the live valve's order.
    pub valve_seq: Option<u64>,
}

/// The decision of a task as compared: the path it ran on, or its rejection and reason.
fn decision_key(status: &str, path: &str, reject_reason: &str) -> String {
    if status == "rejected" {
        format!("rejected:{reject_reason}")
    } else {
        path.to_string()
    }
}

/// Reads a capture; errors name the file, the line and the column.
pub fn read_capture(path: &Path) -> Result<Vec<Captured>, WorkloadError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| WorkloadError::Read { file: file.clone(), message: e.to_string() })?;
    let (mut reader, header) = csv_reader(&bytes, &file)?;
    let expected: Vec<&str> = CANONICAL_HEADER.iter().chain(CAPTURE_DECISION_COLUMNS.iter()).copied().collect();
    // Captures written before the `client` column (the caller's token name) read as well.
    if header != expected && header[..] != expected[..expected.len() - 1] {
        return Err(WorkloadError::Format {
            file,
            message: format!("is not a capture of serve --capture: header is {header:?}, expected {expected:?}"),
        });
    }
    let row_error = |line: u64, column: &str, message: String| WorkloadError::Row {
        file: file.clone(),
        line,
        column: column.to_string(),
        message,
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| row_error(e.position().map_or(0, |p| p.line()), "-", e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let task = canonical_task(&record, &file, line)?;
        let field = |name: &str| {
            let index = expected.iter().position(|c| *c == name).expect("a capture column");
            record.get(index).unwrap_or("")
        };
        let (status, path, reason) = (field("status"), field("path"), field("reason"));
        let decision = match (status, path) {
            ("rejected", "") if !reason.is_empty() => decision_key(status, path, reason),
            ("completed" | "failed", "fast" | "deep") => path.to_string(),
            _ => {
                return Err(row_error(
                    line,
                    "status",
                    format!("{status:?} with path {path:?} and reason {reason:?} is not a decision"),
                ))
            }
        };
        let valve_seq = match field("valve_seq") {
            "" => None,
            text => Some(text.parse::<u64>().map_err(|e| row_error(line, "valve_seq", format!("{text:?}: {e}")))?),
        };
        rows.push(Captured { task, decision, valve_seq });
    }
    if rows.is_empty() {
        return Err(WorkloadError::Format { file, message: "has a header and no rows: nothing to compare".into() });
    }
    // Rows come in answer order, not arrival order; the span is bounded as a trace's is.
    let first = rows.iter().map(|r| r.task.at_ms).min().expect("rows");
    if let Some(far) = rows.iter().find(|r| r.task.at_ms - first > crate::workload::MAX_TRACE_SPAN_MS) {
        return Err(WorkloadError::Format {
            file,
            message: format!(
                "task {} arrived {} days after the first; a capture spans at most 366 days",
                far.task.task_id,
                (far.task.at_ms - first) / 86_400_000
            ),
        });
    }
    let mut ids = std::collections::BTreeSet::new();
    if let Some(twice) = rows.iter().find(|r| !ids.insert(r.task.task_id)) {
        return Err(WorkloadError::Format {
            file,
            message: format!("task_id {} appears twice; a capture has one row per task", twice.task.task_id),
        });
    }
    Ok(rows)
}

/// The tasks to replay, in the live valve's order, arrival times rebased to the first
/// arrival (returned too: the replay's epoch, so budget days stay the live ones).
pub fn replay_tasks(rows: &[Captured]) -> (Vec<Task>, u64) {
    let mut order: Vec<&Captured> = rows.iter().collect();
    order.sort_by_key(|r| (r.task.at_ms, r.task.task_id));
    // The rows the valve saw go into the places they hold in arrival order, sorted by the
    // valve's own count: arrival order, except where the live valve saw two tasks the
    // other way round (they crossed inside the gateway).
    let places: Vec<usize> = (0..order.len()).filter(|i| order[*i].valve_seq.is_some()).collect();
    let mut valved: Vec<&Captured> = places.iter().map(|i| order[*i]).collect();
    valved.sort_by_key(|r| r.valve_seq);
    for (place, row) in places.into_iter().zip(valved) {
        order[place] = row;
    }
    let first = order.iter().map(|r| r.task.at_ms).min().expect("a capture has rows");
    let mut last = 0;
    let tasks = order
        .into_iter()
        .map(|r| {
            // Never earlier than the task before it: the replay keeps this order.
            last = last.max(r.task.at_ms - first);
            Task { at_ms: last, ..r.task.clone() }
        })
        .collect();
    (tasks, first)
}

/// A task decided differently in the replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disagreement {
    pub task_id: u64,
    /// Live arrival, Unix ms.
    pub at_ms: u64,
    pub live: String,
    pub replayed: String,
}

/// The file of a comparison that lists its disagreements.
pub const DISAGREEMENTS: &str = "disagreements.csv";
/// Its header.
const DISAGREEMENTS_HEADER: [&str; 4] = ["task_id", "at_ms", "live", "replayed"];

/// Reads a `disagreements.csv` back (what `compare` wrote); errors name the file and line.
pub fn read_disagreements(path: &Path) -> Result<Vec<Disagreement>, WorkloadError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| WorkloadError::Read { file: file.clone(), message: e.to_string() })?;
    let (mut reader, header) = csv_reader(&bytes, &file)?;
    if header != DISAGREEMENTS_HEADER {
        return Err(WorkloadError::Format {
            file,
            message: format!("header is {header:?}, expected {DISAGREEMENTS_HEADER:?}"),
        });
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let bad = |line: u64, column: &str, message: String| WorkloadError::Row {
            file: file.clone(),
            line,
            column: column.to_string(),
            message,
        };
        let record = record.map_err(|e| bad(e.position().map_or(0, |p| p.line()), "-", e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).unwrap_or("");
        let number = |i: usize| {
            field(i).parse::<u64>().map_err(|e| bad(line, DISAGREEMENTS_HEADER[i], format!("{:?}: {e}", field(i))))
        };
        rows.push(Disagreement {
            task_id: number(0)?,
            at_ms: number(1)?,
            live: field(2).to_string(),
            replayed: field(3).to_string(),
        });
    }
    Ok(rows)
}

/// The organism seed `serve --scenario FILE` runs with: the one the scenario's own seed
/// gives (not a `--seed` given to another command).
pub fn live_organism_seed(scenario: &crate::scenario::Scenario) -> u64 {
    scenario.engine_config(scenario.seed).organism.seed
}

/// The result of a comparison.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub tasks: u64,
    pub agreed: u64,
    /// Live decision -> replayed decision -> tasks.
    pub matrix: BTreeMap<String, BTreeMap<String, u64>>,
    pub disagreements: Vec<Disagreement>,
    /// The run seed of the replay (the organism's seed is the live one).
    pub seed: u64,
    /// Where `tasks.csv`, `disagreements.csv` and `agreement.json` were written.
    pub out: PathBuf,
}

impl Comparison {
    /// Share of the tasks whose replayed decision equals the live one.
    pub fn agreement(&self) -> f64 {
        self.agreed as f64 / self.tasks.max(1) as f64
    }
}

/// The run seed whose engine configuration starts the organism from `organism_seed`
/// (`Scenario::engine_config` derives the organism's seed from the run's).
pub fn seed_for_organism(organism_seed: u64) -> u64 {
    organism_seed ^ crate::scenario::ORGANISM_SEED_SALT
}

/// The world a capture replays in: the capture's arrivals on the live clock's days, on a
/// network without delay or loss and without faults (the live run had its own, and the
/// trace's failed rows name rows, not the capture's tasks), with the engine settings of
/// `scenario`.
pub fn capture_world(
    scenario: &crate::scenario::Scenario,
    rows: &[Captured],
) -> (crate::scenario::Scenario, Vec<Task>) {
    let (tasks, epoch) = replay_tasks(rows);
    let mut scenario = scenario.clone();
    scenario.engine.epoch_utc_ms = epoch;
    scenario.network.latency_ms = (0, 0);
    scenario.network.loss = 0.0;
    scenario.faults = seedcore_chaos::FaultPlan::new(Vec::new()).expect("an empty plan is valid");
    scenario.swarm = None;
    scenario.workload = scenario.workload.without_trace_failures();
    scenario.duration_ms = tasks.last().map_or(0, |t| t.at_ms) + 1;
    (scenario, tasks)
}

/// Replays `rows` with the engine settings of `scenario` and an organism seeded with
/// `organism_seed` (the live one), writes the replay's `tasks.csv`, the disagreements and
/// the agreement into `out`, and compares.
#[cfg(madsim)]
pub fn compare(
    scenario: &crate::scenario::Scenario,
    organism_seed: u64,
    rows: &[Captured],
    out: &Path,
) -> Result<Comparison, RunError> {
    use crate::observer::Sinks;
    use crate::run::Staging;
    use crate::world::run_once;
    use std::sync::Arc;

    let (scenario, tasks) = capture_world(scenario, rows);
    let seed = seed_for_organism(organism_seed);
    let staging = Staging::new(out, crate::run::Existing::Replace)?;
    let tasks_path = staging.path().join("tasks.csv");
    let io =
        |path: &Path, e: std::io::Error| RunError::Output { path: path.display().to_string(), message: e.to_string() };
    let file = std::fs::File::create(&tasks_path).map_err(|e| io(&tasks_path, e))?;
    let sinks = Sinks { events: None, tasks: Some(file), stats_window: None };
    run_once(&scenario, Arc::new(tasks), seed, sinks)?;
    let replayed = read_replayed(&tasks_path)?;
    let mut comparison = Comparison {
        tasks: rows.len() as u64,
        agreed: 0,
        matrix: BTreeMap::new(),
        disagreements: Vec::new(),
        seed,
        out: out.to_path_buf(),
    };
    let mut by_time: Vec<&Captured> = rows.iter().collect();
    by_time.sort_by_key(|r| (r.task.at_ms, r.task.task_id));
    for row in by_time {
        let replay = replayed.get(&row.task.task_id).cloned().unwrap_or_else(|| "no outcome".to_string());
        *comparison.matrix.entry(row.decision.clone()).or_default().entry(replay.clone()).or_default() += 1;
        if replay == row.decision {
            comparison.agreed += 1;
        } else {
            comparison.disagreements.push(Disagreement {
                task_id: row.task.task_id,
                at_ms: row.task.at_ms,
                live: row.decision.clone(),
                replayed: replay,
            });
        }
    }
    write_results(&comparison, staging.path()).map_err(|e| io(staging.path(), e))?;
    staging.commit()?;
    Ok(comparison)
}

/// Task id -> decision, from a replay's `tasks.csv`.
#[cfg(madsim)]
fn read_replayed(path: &Path) -> Result<BTreeMap<u64, String>, RunError> {
    let bad = |message: String| RunError::Output { path: path.display().to_string(), message };
    let mut reader = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
    let header = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
    let column = |name: &str| header.iter().position(|c| c == name).ok_or_else(|| bad(format!("no {name} column")));
    let (id, status, path_column, reject) =
        (column("task_id")?, column("status")?, column("path")?, column("reject_reason")?);
    let mut decisions = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| bad(e.to_string()))?;
        let field = |i: usize| record.get(i).unwrap_or("");
        let task_id = field(id).parse::<u64>().map_err(|e| bad(format!("task_id {:?}: {e}", field(id))))?;
        decisions.insert(task_id, decision_key(field(status), field(path_column), field(reject)));
    }
    Ok(decisions)
}

#[cfg(madsim)]
fn write_results(comparison: &Comparison, dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut csv = std::io::BufWriter::new(std::fs::File::create(dir.join(DISAGREEMENTS))?);
    writeln!(csv, "{}", DISAGREEMENTS_HEADER.join(","))?;
    for d in &comparison.disagreements {
        writeln!(csv, "{},{},{},{}", d.task_id, d.at_ms, d.live, d.replayed)?;
    }
    csv.flush()?;
    let json = serde_json::json!({
        "tasks": comparison.tasks,
        "agreed": comparison.agreed,
        "agreement": comparison.agreement(),
        "seed": comparison.seed,
        "matrix": comparison.matrix,
    });
    std::fs::write(dir.join("agreement.json"), serde_json::to_string_pretty(&json)? + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use seedcore_engine::task::{Authority, Kind};

    fn row(task_id: u64, at_ms: u64, valve_seq: Option<u64>) -> Captured {
        let task = Task {
            task_id,
            at_ms,
            kind: Kind::Chat,
            domain: "d".into(),
            drift: 0.1,
            priority: 5,
            authority: Authority::Medium,
            needs_planning: false,
            tokens_in: 10,
            tokens_out: 10,
            signature: task_id,
        };
        Captured { task, decision: "fast".into(), valve_seq }
    }

    #[test]
    fn the_replay_keeps_the_valve_order_and_the_live_day() {
        // Task 2 arrived first but the valve saw task 1 first; task 3 never reached it.
        let rows = [row(2, 1_000_010, Some(2)), row(1, 1_000_012, Some(1)), row(3, 1_000_011, None)];
        let (tasks, epoch) = replay_tasks(&rows);
        assert_eq!(epoch, 1_000_010);
        let order: Vec<_> = tasks.iter().map(|t| (t.task_id, t.at_ms)).collect();
        assert_eq!(order, [(1, 2), (3, 2), (2, 2)], "valve order, times never going back");
    }
}
