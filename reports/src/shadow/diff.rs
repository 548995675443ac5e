//! The per-task diff of two runs (docs/certification.md 8.9): both runs' `tasks.csv` joined on
//! the task id, every task whose path, router reason, status, cost, latency or cache hit
//! differs written to `diff.csv`, the counts by (base decision, candidate decision), and the
//! first task whose decision differs with the events that led to it in both event logs.
//!
//! Guarantees: `diff.csv` is sorted by arrival time then task id, so two diffs of the same
//! runs are the same bytes; a task in one run only is a differing task, never dropped.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

/// The columns of a task that a diff compares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskRow {
    /// Arrival, ms of simulated time.
    pub at_ms: u64,
    /// `fast`, `deep` or `rejected:<reason>` (the same key `compare` uses).
    pub decision: String,
    pub path: String,
    /// The router's reason (`fast`, `surprise`, ...).
    pub reason: String,
    pub status: String,
    pub cost_micro_usd: u64,
    pub latency_ms: u64,
    pub cache_hit: bool,
}

/// The compared fields, in `diff.csv`'s order.
pub const FIELDS: [&str; 6] = ["path", "reason", "status", "cost_micro_usd", "latency_ms", "cache_hit"];

impl TaskRow {
    /// The names of the fields that differ.
    pub fn differing(&self, other: &TaskRow) -> Vec<&'static str> {
        let same = [
            self.path == other.path,
            self.reason == other.reason,
            self.status == other.status,
            self.cost_micro_usd == other.cost_micro_usd,
            self.latency_ms == other.latency_ms,
            self.cache_hit == other.cache_hit,
        ];
        FIELDS.iter().zip(same).filter(|(_, same)| !same).map(|(f, _)| *f).collect()
    }
}

/// Where two event logs part: the first line that differs, with the identical lines just
/// before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parted {
    /// 1-based line of the first difference.
    pub line: u64,
    /// Up to `CONTEXT` identical lines before it.
    pub before: Vec<String>,
    /// The differing lines (`None`: that log ended first).
    pub base: Option<String>,
    pub candidate: Option<String>,
}

/// Lines of context kept before the parting line, and of a task's own events.
pub const CONTEXT: usize = 5;
/// The most event lines of one task shown (a task has an arrival, a decision, attempts and
/// an outcome; retries add attempts).
pub const TASK_EVENTS: usize = 12;

/// The first task decided differently, with its events in both runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    pub task_id: u64,
    pub base: Option<TaskRow>,
    pub candidate: Option<TaskRow>,
    /// The task's event lines in each log, in order.
    pub base_events: Vec<String>,
    pub candidate_events: Vec<String>,
}

/// The diff of two runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Tasks in either run.
    pub tasks: u64,
    /// Tasks with any compared field different, or in one run only.
    pub differing: u64,
    /// Of those, the tasks whose decision differs.
    pub decisions_differing: u64,
    /// (base decision, candidate decision) -> tasks; `none` for a task a run does not have.
    pub pairs: BTreeMap<(String, String), u64>,
    /// Compared field -> tasks in both runs on which it differs.
    pub by_field: BTreeMap<&'static str, u64>,
    /// Minute of arrival -> (differing tasks, differing decisions).
    pub by_minute: BTreeMap<u64, (u64, u64)>,
    pub first: Option<Divergence>,
    /// Where the event logs part; `None` when they are the same bytes.
    pub parted: Option<Parted>,
}

/// A diff that cannot be made: a file that cannot be read or parsed.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct DiffError {
    pub file: String,
    pub message: String,
}

fn error(path: &Path, message: impl Into<String>) -> DiffError {
    DiffError { file: path.display().to_string(), message: message.into() }
}

/// `diff.csv`'s header.
pub const HEADER: [&str; 17] = [
    "task_id",
    "at_ms",
    "fields",
    "base_decision",
    "candidate_decision",
    "base_reason",
    "candidate_reason",
    "base_status",
    "candidate_status",
    "base_cost_micro_usd",
    "candidate_cost_micro_usd",
    "base_latency_ms",
    "candidate_latency_ms",
    "base_cache_hit",
    "candidate_cache_hit",
    "base_path",
    "candidate_path",
];

/// Reads a run's `tasks.csv` into task id -> row.
pub fn read_tasks(path: &Path) -> Result<BTreeMap<u64, TaskRow>, DiffError> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| error(path, e.to_string()))?;
    let header = reader.headers().map_err(|e| error(path, e.to_string()))?.clone();
    let column =
        |name: &str| header.iter().position(|c| c == name).ok_or_else(|| error(path, format!("no {name} column")));
    let [id, at, p, reason, status, reject, cost, latency, hit] =
        ["task_id", "at_ms", "path", "reason", "status", "reject_reason", "cost_micro_usd", "latency_ms", "cache_hit"]
            .map(column);
    let (id, at, p, reason, status, reject, cost, latency, hit) =
        (id?, at?, p?, reason?, status?, reject?, cost?, latency?, hit?);
    let mut rows = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| error(path, e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).unwrap_or("");
        let number = |i: usize, name: &str| -> Result<u64, DiffError> {
            let text = field(i);
            if text.is_empty() {
                return Ok(0);
            }
            text.parse().map_err(|e| error(path, format!("line {line}: {name} {text:?}: {e}")))
        };
        let task_id = number(id, "task_id")?;
        let row = TaskRow {
            at_ms: number(at, "at_ms")?,
            decision: if field(status) == "rejected" {
                format!("rejected:{}", field(reject))
            } else if field(p).is_empty() {
                field(status).to_string()
            } else {
                field(p).to_string()
            },
            path: field(p).to_string(),
            reason: field(reason).to_string(),
            status: field(status).to_string(),
            cost_micro_usd: number(cost, "cost_micro_usd")?,
            latency_ms: number(latency, "latency_ms")?,
            cache_hit: field(hit) == "true",
        };
        if rows.insert(task_id, row).is_some() {
            return Err(error(path, format!("line {line}: task {task_id} appears twice")));
        }
    }
    Ok(rows)
}

/// Diffs the runs whose files are in `base` and `candidate` (each with `tasks.csv` and
/// `events.jsonl`) and writes `diff.csv` to `out`.
pub fn diff_runs(base: &Path, candidate: &Path, out: &Path) -> Result<Diff, DiffError> {
    let base_rows = read_tasks(&base.join("tasks.csv"))?;
    let candidate_rows = read_tasks(&candidate.join("tasks.csv"))?;
    let mut diff = Diff::default();
    let ids: std::collections::BTreeSet<u64> = base_rows.keys().chain(candidate_rows.keys()).copied().collect();
    diff.tasks = ids.len() as u64;
    let mut differing: Vec<(u64, u64, Vec<&'static str>)> = Vec::new();
    let mut first: Option<(u64, u64)> = None;
    for id in ids {
        let (b, c) = (base_rows.get(&id), candidate_rows.get(&id));
        let decision = |row: Option<&TaskRow>| row.map_or_else(|| "none".to_string(), |r| r.decision.clone());
        *diff.pairs.entry((decision(b), decision(c))).or_default() += 1;
        let fields = match (b, c) {
            (Some(b), Some(c)) => b.differing(c),
            _ => FIELDS.to_vec(),
        };
        if b.is_some() && c.is_some() {
            for field in &fields {
                *diff.by_field.entry(field).or_default() += 1;
            }
        }
        if fields.is_empty() {
            continue;
        }
        let at_ms = b.or(c).map_or(0, |r| r.at_ms);
        let decided_differently = decision(b) != decision(c);
        diff.differing += 1;
        diff.decisions_differing += u64::from(decided_differently);
        let minute = diff.by_minute.entry(at_ms / seedcore_sim::invariants::MINUTE_MS).or_default();
        minute.0 += 1;
        minute.1 += u64::from(decided_differently);
        if decided_differently && first.is_none_or(|f| (at_ms, id) < f) {
            first = Some((at_ms, id));
        }
        differing.push((at_ms, id, fields));
    }
    differing.sort();
    write_csv(out, &differing, &base_rows, &candidate_rows).map_err(|e| error(out, e.to_string()))?;
    if let Some((_, id)) = first {
        diff.first = Some(Divergence {
            task_id: id,
            base: base_rows.get(&id).cloned(),
            candidate: candidate_rows.get(&id).cloned(),
            base_events: task_events(&base.join("events.jsonl"), id)?,
            candidate_events: task_events(&candidate.join("events.jsonl"), id)?,
        });
    }
    diff.parted = parting(&base.join("events.jsonl"), &candidate.join("events.jsonl"))?;
    Ok(diff)
}

fn write_csv(
    out: &Path,
    differing: &[(u64, u64, Vec<&'static str>)],
    base: &BTreeMap<u64, TaskRow>,
    candidate: &BTreeMap<u64, TaskRow>,
) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(std::io::BufWriter::new(std::fs::File::create(out)?));
    w.write_record(HEADER)?;
    let none = TaskRow { decision: "none".into(), ..TaskRow::default() };
    for (at_ms, id, fields) in differing {
        let b = base.get(id).unwrap_or(&none);
        let c = candidate.get(id).unwrap_or(&none);
        w.write_record([
            id.to_string(),
            at_ms.to_string(),
            fields.join(";"),
            b.decision.clone(),
            c.decision.clone(),
            b.reason.clone(),
            c.reason.clone(),
            b.status.clone(),
            c.status.clone(),
            b.cost_micro_usd.to_string(),
            c.cost_micro_usd.to_string(),
            b.latency_ms.to_string(),
            c.latency_ms.to_string(),
            b.cache_hit.to_string(),
            c.cache_hit.to_string(),
            b.path.clone(),
            c.path.clone(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// Whether an event line is about task `id` (its payload's `task_id`).
fn about_task(line: &str, id: u64) -> bool {
    let needle = format!("\"task_id\":{id}");
    line.match_indices(&needle).any(|(at, m)| matches!(line.as_bytes().get(at + m.len()), Some(b',' | b'}')))
}

/// The event lines of task `id`, in order (at most `TASK_EVENTS`).
fn task_events(path: &Path, id: u64) -> Result<Vec<String>, DiffError> {
    let file = std::fs::File::open(path).map_err(|e| error(path, e.to_string()))?;
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(|e| error(path, e.to_string()))?;
        if about_task(&line, id) {
            lines.push(line);
            if lines.len() == TASK_EVENTS {
                break;
            }
        }
    }
    Ok(lines)
}

fn is_run_start(line: &str) -> bool {
    line.contains("\"kind\":\"run_start\"")
}

/// The first line where two event logs differ (their `run_start` records aside), with the
/// identical lines before it.
fn parting(base: &Path, candidate: &Path) -> Result<Option<Parted>, DiffError> {
    let open =
        |path: &Path| std::fs::File::open(path).map(std::io::BufReader::new).map_err(|e| error(path, e.to_string()));
    let (mut b, mut c) = (open(base)?.lines(), open(candidate)?.lines());
    let mut before: std::collections::VecDeque<String> = std::collections::VecDeque::with_capacity(CONTEXT);
    let mut line = 0u64;
    loop {
        line += 1;
        let bl = b.next().transpose().map_err(|e| error(base, e.to_string()))?;
        let cl = c.next().transpose().map_err(|e| error(candidate, e.to_string()))?;
        match (bl, cl) {
            (None, None) => return Ok(None),
            // The run_start records name each scenario's digest: different by construction.
            (Some(x), Some(y)) if x == y || (is_run_start(&x) && is_run_start(&y)) => {
                if before.len() == CONTEXT {
                    before.pop_front();
                }
                before.push_back(x);
            }
            (x, y) => return Ok(Some(Parted { line, before: before.into_iter().collect(), base: x, candidate: y })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_line_is_found_by_its_own_id_only() {
        assert!(about_task(r#"{"data":{"task_id":12,"x":1},"kind":"arrival"}"#, 12));
        assert!(about_task(r#"{"data":{"a":1,"task_id":12},"kind":"arrival"}"#, 12));
        assert!(!about_task(r#"{"data":{"task_id":123},"kind":"arrival"}"#, 12));
        assert!(!about_task(r#"{"data":{"task_id":1},"kind":"arrival"}"#, 12));
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    const HEAD: &str = "task_id,at_ms,path,reason,status,reject_reason,cost_micro_usd,latency_ms,cache_hit\n";

    #[test]
    fn differing_tasks_are_listed_counted_and_the_first_decision_found() {
        let root = tempfile::tempdir().unwrap();
        let (b, c) = (root.path().join("b"), root.path().join("c"));
        std::fs::create_dir_all(&b).unwrap();
        std::fs::create_dir_all(&c).unwrap();
        // Task 1 alike; task 2 slower in the candidate; task 3 deep instead of fast;
        // task 4 rejected in the candidate; task 5 in the base only.
        write(&b, "tasks.csv", &format!("{HEAD}1,10,fast,fast,completed,,5,80,false\n2,20,fast,fast,completed,,5,80,false\n3,30,fast,fast,completed,,5,80,true\n4,70000,fast,fast,completed,,5,80,false\n5,80000,fast,fast,completed,,5,80,false\n"));
        write(&c, "tasks.csv", &format!("{HEAD}1,10,fast,fast,completed,,5,80,false\n2,20,fast,fast,completed,,5,95,false\n3,30,deep,surprise,completed,,900,4000,false\n4,70000,,,rejected,daily_budget,0,0,false\n"));
        let line = |seq: u64, id: u64, kind: &str| {
            format!("{{\"data\":{{\"task_id\":{id}}},\"kind\":\"{kind}\",\"seq\":{seq}}}\n")
        };
        write(&b, "events.jsonl", &(line(0, 1, "arrival") + &line(1, 3, "arrival") + &line(2, 3, "decision")));
        write(&c, "events.jsonl", &(line(0, 1, "arrival") + &line(1, 3, "arrival") + &line(2, 3, "decision_x")));
        let out = root.path().join("diff.csv");
        let diff = diff_runs(&b, &c, &out).unwrap();
        assert_eq!((diff.tasks, diff.differing, diff.decisions_differing), (5, 4, 3));
        assert_eq!(diff.pairs[&("fast".to_string(), "fast".to_string())], 2);
        assert_eq!(diff.pairs[&("fast".to_string(), "deep".to_string())], 1);
        assert_eq!(diff.pairs[&("fast".to_string(), "rejected:daily_budget".to_string())], 1);
        assert_eq!(diff.pairs[&("fast".to_string(), "none".to_string())], 1);
        assert_eq!(diff.by_minute[&0], (2, 1));
        assert_eq!(diff.by_field["latency_ms"], 3);
        assert_eq!(diff.by_field["path"], 2, "tasks 3 and 4; task 5 is in one run only, no field compared");
        assert_eq!(diff.by_minute[&1], (2, 2));
        let first = diff.first.unwrap();
        assert_eq!(first.task_id, 3);
        assert_eq!(first.base_events.len(), 2);
        assert!(first.candidate_events[1].contains("decision_x"));
        let parted = diff.parted.unwrap();
        assert_eq!((parted.line, parted.before.len()), (3, 2));
        let csv = std::fs::read_to_string(&out).unwrap();
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows.len(), 5, "{csv}");
        assert!(rows[1].starts_with("2,20,latency_ms,fast,fast,"), "{csv}");
        assert!(rows[2].starts_with("3,30,path;reason;cost_micro_usd;latency_ms;cache_hit,fast,deep,"), "{csv}");
    }

    #[test]
    fn identical_runs_have_no_difference() {
        let root = tempfile::tempdir().unwrap();
        let (b, c) = (root.path().join("b"), root.path().join("c"));
        for dir in [&b, &c] {
            std::fs::create_dir_all(dir).unwrap();
            write(dir, "tasks.csv", &format!("{HEAD}1,10,fast,fast,completed,,5,80,false\n"));
            write(dir, "events.jsonl", "{\"seq\":0}\n");
        }
        let diff = diff_runs(&b, &c, &root.path().join("diff.csv")).unwrap();
        assert_eq!((diff.tasks, diff.differing, diff.first.is_none(), diff.parted.is_none()), (1, 0, true, true));
    }
}
