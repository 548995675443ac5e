//! Workloads (docs/harness.md 5.2): trace replay, with each format read as published
//! (canonical, azure, mooncake, burstgpt), and generated arrivals, both enriched
//! deterministically.
//!
//! Guarantees: the task list is a pure function of the scenario and the seed; every
//! enrichment draw depends only on (seed, row), or (seed, prompt) for a row whose trace
//! identifies its prompt, so looping or time-scaling a trace does not shift the draws of
//! other rows; a bad trace row is an error naming the file, the 1-based line and the
//! column (the key, in JSONL); rows are in arrival order, span at most
//! `MAX_TRACE_SPAN_MS`, and a trace has at least one.

mod azure;
mod burstgpt;
mod canonical;
mod enrich;
mod fields;
mod generate;
pub mod inspect;
mod mooncake;

pub use azure::utc_micros;
pub use canonical::{canonical_task, csv_reader, write_canonical, CANONICAL_HEADER};
pub use enrich::{blocks_signature, Enrichment, Given};
pub use inspect::{guess_format, inspect, TraceStats};

use seedcore_engine::Task;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A trace that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("{file}: cannot read trace: {message}")]
    Read { file: String, message: String },
    #[error("{file}: line {line}, column {column}: {message}")]
    Row { file: String, line: u64, column: String, message: String },
    #[error("{file}: {message}")]
    Format { file: String, message: String },
}

/// Trace file formats (docs/harness.md 5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TraceFormat {
    /// The columns of docs/engine.md 3.1, in order, with a header; optionally `failed`.
    Canonical,
    /// `TIMESTAMP, ContextTokens, GeneratedTokens` (Azure LLM inference traces 2023, 2024).
    Azure,
    /// JSONL: `timestamp` (ms), `input_length`, `output_length`, `hash_ids`.
    Mooncake,
    /// `Timestamp` (s), `Model`, `Request tokens`, `Response tokens`, `Total tokens`,
    /// `Log Type` (BurstGPT).
    Burstgpt,
}

impl TraceFormat {
    pub const ALL: [TraceFormat; 4] =
        [TraceFormat::Canonical, TraceFormat::Azure, TraceFormat::Mooncake, TraceFormat::Burstgpt];

    /// The name a scenario's `format` and `--format` take.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceFormat::Canonical => "canonical",
            TraceFormat::Azure => "azure",
            TraceFormat::Mooncake => "mooncake",
            TraceFormat::Burstgpt => "burstgpt",
        }
    }

    pub fn parse(name: &str) -> Option<TraceFormat> {
        TraceFormat::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// `canonical, azure, mooncake, burstgpt`, for error messages.
    pub fn names() -> String {
        TraceFormat::ALL.map(TraceFormat::as_str).join(", ")
    }

    /// The task fields no row of this format carries: the enrichment fills them (a
    /// mooncake row without `hash_ids` also gets the enrichment's signature).
    pub fn lacks(self) -> &'static [&'static str] {
        const PROMPT: [&str; 6] = ["kind", "domain", "drift", "priority", "authority", "needs_planning"];
        const EVERY: [&str; 7] = ["kind", "domain", "drift", "priority", "authority", "needs_planning", "signature"];
        match self {
            TraceFormat::Canonical => &[],
            TraceFormat::Mooncake => &PROMPT,
            TraceFormat::Azure | TraceFormat::Burstgpt => &EVERY,
        }
    }
}

/// One request of a foreign trace, whatever its format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceRow {
    /// Time since the trace's first row.
    pub offset_ms: u64,
    pub tokens_in: u32,
    pub tokens_out: u32,
    /// The prompt's identity when the trace carries one (mooncake's `hash_ids`): equal
    /// prompts, equal signatures.
    pub signature: Option<u64>,
    /// The request failed when it was recorded (BurstGPT's `Response tokens` 0).
    pub failed: bool,
}

/// The rows of a trace, in arrival order.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceRows {
    /// Complete tasks, and per row whether its `failed` column is set (all false without
    /// that column).
    Canonical {
        tasks: Vec<Task>,
        failed: Vec<bool>,
    },
    Foreign(Vec<TraceRow>),
}

impl TraceRows {
    pub fn len(&self) -> usize {
        match self {
            TraceRows::Canonical { tasks, .. } => tasks.len(),
            TraceRows::Foreign(rows) => rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `index`'s time since the first row (`index < len()`).
    pub fn offset_ms(&self, index: usize) -> u64 {
        match self {
            TraceRows::Canonical { tasks, .. } => tasks[index].at_ms.saturating_sub(tasks[0].at_ms),
            TraceRows::Foreign(rows) => rows[index].offset_ms,
        }
    }

    /// Whether row `index` is marked failed in the trace (false out of range).
    pub fn failed(&self, index: usize) -> bool {
        match self {
            TraceRows::Canonical { failed, .. } => failed.get(index).copied().unwrap_or(false),
            TraceRows::Foreign(rows) => rows.get(index).is_some_and(|r| r.failed),
        }
    }

    /// How many rows are marked failed.
    pub fn failed_count(&self) -> usize {
        (0..self.len()).filter(|i| self.failed(*i)).count()
    }

    /// Row `index`'s (tokens in, tokens out) and the signature the trace gives it, if any.
    pub fn request(&self, index: usize) -> (u32, u32, Option<u64>) {
        match self {
            TraceRows::Canonical { tasks, .. } => {
                let t = &tasks[index];
                (t.tokens_in, t.tokens_out, Some(t.signature))
            }
            TraceRows::Foreign(rows) => (rows[index].tokens_in, rows[index].tokens_out, rows[index].signature),
        }
    }

    /// The arrival time of the last row as replayed unscaled (a canonical row's `at_ms`).
    fn last_at_ms(&self) -> u64 {
        match self {
            TraceRows::Canonical { tasks, .. } => tasks.last().map_or(0, |t| t.at_ms),
            TraceRows::Foreign(rows) => rows.last().map_or(0, |r| r.offset_ms),
        }
    }
}

/// A loaded trace.
#[derive(Clone, Debug)]
pub struct LoadedTrace {
    pub rows: TraceRows,
    /// Unix ms of the first request, when the trace has wall-clock times (azure).
    pub start_utc_ms: Option<u64>,
    /// BurstGPT: rows of the whole file per `Model` (empty for other formats); counts only,
    /// for `trace inspect`.
    pub models: BTreeMap<String, u64>,
    /// BurstGPT: rows of the whole file per `Log Type`.
    pub log_types: BTreeMap<String, u64>,
}

/// A slice (`workload.start`, `workload.for`) that holds no row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmptySlice {
    /// The trace's span, first row to last.
    pub span_ms: u64,
}

impl LoadedTrace {
    fn new(rows: TraceRows, start_utc_ms: Option<u64>) -> LoadedTrace {
        LoadedTrace { rows, start_utc_ms, models: BTreeMap::new(), log_types: BTreeMap::new() }
    }

    /// First row to last.
    pub fn span_ms(&self) -> u64 {
        self.rows.len().checked_sub(1).map_or(0, |last| self.rows.offset_ms(last))
    }

    /// The rows whose time since the first row is in `[start_ms, start_ms + for_ms)`
    /// (`for_ms` `None`: to the end), re-based to `start_ms` (a canonical row's `at_ms`
    /// becomes its time since the first row minus `start_ms`); the UTC start moves by
    /// `start_ms`. The per-label counts stay the whole file's.
    pub fn slice(self, start_ms: u64, for_ms: Option<u64>) -> Result<LoadedTrace, EmptySlice> {
        let span_ms = self.span_ms();
        let end = for_ms.map_or(u64::MAX, |f| start_ms.saturating_add(f));
        let keep = |offset: u64| (start_ms..end).contains(&offset);
        let rows = match self.rows {
            TraceRows::Canonical { tasks, failed } => {
                let first = tasks.first().map_or(0, |t| t.at_ms);
                let (tasks, failed) = tasks
                    .into_iter()
                    .zip(failed)
                    .filter(|(t, _)| keep(t.at_ms.saturating_sub(first)))
                    .map(|(t, f)| (Task { at_ms: t.at_ms.saturating_sub(first) - start_ms, ..t }, f))
                    .unzip();
                TraceRows::Canonical { tasks, failed }
            }
            TraceRows::Foreign(rows) => TraceRows::Foreign(
                rows.into_iter()
                    .filter(|r| keep(r.offset_ms))
                    .map(|r| TraceRow { offset_ms: r.offset_ms - start_ms, ..r })
                    .collect(),
            ),
        };
        if rows.is_empty() {
            return Err(EmptySlice { span_ms });
        }
        let start_utc_ms = self.start_utc_ms.map(|s| s.saturating_add(start_ms));
        Ok(LoadedTrace { rows, start_utc_ms, models: self.models, log_types: self.log_types })
    }
}

/// Arrival process of a generated workload.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedSpec {
    pub rate_per_s: f64,
    /// Amplitude of a daily sine swing of the rate.
    pub diurnal: f64,
    /// Period of that swing (a day unless the scenario compresses it).
    pub diurnal_period_ms: u64,
    /// (median, p99) of context tokens.
    pub tokens_in: (f64, f64),
    /// (median, p99) of output tokens.
    pub tokens_out: (f64, f64),
    /// (from_ms, to_ms, factor) rate multipliers.
    pub bursts: Vec<(u64, u64, f64)>,
}

/// A resolved workload. A trace's rows are already sliced (`workload.start`, `for`).
#[derive(Clone, Debug)]
pub enum Workload {
    Trace { path: PathBuf, format: TraceFormat, rows: TraceRows, speed: f64, loops: u32, enrichment: Enrichment },
    Generated { spec: GeneratedSpec, enrichment: Enrichment },
}

/// One loop of a trace at `speed`: its last arrival plus one ms, scaled, rounded up.
fn loop_span_ms(rows: &TraceRows, speed: f64) -> u64 {
    ((rows.last_at_ms() as f64 + 1.0) / speed).ceil() as u64
}

impl Workload {
    /// Time of the last arrival plus one loop, for traces.
    pub fn span_ms(&self) -> Option<u64> {
        match self {
            Workload::Trace { rows, speed, loops, .. } => Some(loop_span_ms(rows, *speed) * u64::from(*loops)),
            Workload::Generated { .. } => None,
        }
    }

    /// About how many arrivals a run of `duration_ms` has (an upper estimate), to refuse
    /// absurd workloads before generating them.
    pub fn expected_arrivals(&self, duration_ms: u64) -> Option<f64> {
        match self {
            Workload::Trace { rows, loops, .. } => Some(rows.len() as f64 * f64::from(*loops)),
            Workload::Generated { spec, .. } => {
                let seconds = duration_ms as f64 / 1e3;
                let bursts: f64 = spec
                    .bursts
                    .iter()
                    .map(|(from, to, factor)| {
                        (factor - 1.0).max(0.0) * (to.min(&duration_ms).saturating_sub(*from)) as f64 / 1e3
                    })
                    .sum();
                Some(spec.rate_per_s * (1.0 + spec.diurnal) * seconds + spec.rate_per_s * bursts)
            }
        }
    }

    /// Every task of a run with `seed`, in arrival order, arriving before `duration_ms`.
    /// A trace's task ids are `pass * rows + index`.
    pub fn tasks(&self, seed: u64, duration_ms: u64) -> Vec<Task> {
        match self {
            Workload::Trace { rows, speed, loops, enrichment, .. } => {
                trace_tasks(rows, (*speed, *loops), enrichment, seed, duration_ms)
            }
            Workload::Generated { spec, enrichment } => generate::tasks(spec, enrichment, seed, duration_ms),
        }
    }

    /// The same workload with no row marked failed: for replays whose arrivals are not
    /// this trace's (a live capture's), whose ids do not name its rows.
    pub fn without_trace_failures(mut self) -> Workload {
        if let Workload::Trace { rows, .. } = &mut self {
            match rows {
                TraceRows::Canonical { failed, .. } => failed.iter_mut().for_each(|f| *f = false),
                TraceRows::Foreign(rows) => rows.iter_mut().for_each(|r| r.failed = false),
            }
        }
        self
    }

    /// The ids of the tasks among `tasks` whose trace row is marked failed (every call of
    /// such a task fails in the simulation, as it did when recorded); empty for generated
    /// workloads and traces without failed rows.
    pub fn failed_in_trace(&self, tasks: &[Task]) -> BTreeSet<u64> {
        let Workload::Trace { rows, loops, .. } = self else { return BTreeSet::new() };
        let count = rows.len() as u64;
        if count == 0 || rows.failed_count() == 0 {
            return BTreeSet::new();
        }
        tasks
            .iter()
            .filter(|t| t.task_id / count < u64::from(*loops) && rows.failed((t.task_id % count) as usize))
            .map(|t| t.task_id)
            .collect()
    }
}

/// The tasks of a trace played `(speed, loops)`, before `duration_ms`.
fn trace_tasks(rows: &TraceRows, play: (f64, u32), enrichment: &Enrichment, seed: u64, duration_ms: u64) -> Vec<Task> {
    let (speed, loops) = play;
    let mut tasks = Vec::new();
    let mut history = Vec::with_capacity(enrich::REPEAT_HISTORY);
    let span = loop_span_ms(rows, speed);
    let count = rows.len() as u64;
    for pass in 0..u64::from(loops) {
        for index in 0..count {
            let row = pass * count + index;
            let task = match rows {
                TraceRows::Canonical { tasks: t, .. } => {
                    let original = &t[index as usize];
                    Task {
                        task_id: row,
                        at_ms: (original.at_ms as f64 / speed) as u64 + pass * span,
                        ..original.clone()
                    }
                }
                TraceRows::Foreign(r) => {
                    let a = r[index as usize];
                    let at_ms = (a.offset_ms as f64 / speed) as u64 + pass * span;
                    let given = Given {
                        row,
                        at_ms,
                        tokens_in: a.tokens_in,
                        tokens_out: a.tokens_out,
                        signature: a.signature,
                        failed: a.failed,
                    };
                    enrichment.task(seed, given, &mut history)
                }
            };
            if task.at_ms >= duration_ms {
                return tasks;
            }
            tasks.push(task);
        }
    }
    tasks
}

/// The longest a trace may span, first row to last: a year and a day. A longer span is
/// almost always a bad timestamp (one row from 1970 made a trace simulate 53 years).
pub const MAX_TRACE_SPAN_MS: u64 = 366 * 86_400_000;

/// Reads a trace file (see `read_trace`).
pub fn load_trace(path: &Path, format: TraceFormat) -> Result<LoadedTrace, WorkloadError> {
    let file = path.display().to_string();
    let opened =
        std::fs::File::open(path).map_err(|e| WorkloadError::Read { file: file.clone(), message: e.to_string() })?;
    read_trace(opened, &file, format)
}

/// Reads a trace in `format` from `input`, streaming (no per-row strings are kept), `file`
/// naming it in errors. Rows must be in arrival order and span at most
/// `MAX_TRACE_SPAN_MS`, and there must be at least one; errors name the file, the line
/// and the column (the key, in JSONL).
pub fn read_trace(input: impl Read, file: &str, format: TraceFormat) -> Result<LoadedTrace, WorkloadError> {
    let trace = match format {
        TraceFormat::Canonical => canonical::read(input, file)?,
        TraceFormat::Azure => azure::read(input, file)?,
        TraceFormat::Mooncake => mooncake::read(std::io::BufReader::new(input), file)?,
        TraceFormat::Burstgpt => burstgpt::read(input, file)?,
    };
    if trace.rows.is_empty() {
        let what = if format == TraceFormat::Mooncake { "has no rows" } else { "has a header and no rows" };
        return Err(WorkloadError::Format { file: file.to_string(), message: format!("{what}: nothing to replay") });
    }
    Ok(trace)
}

#[cfg(test)]
mod tests;
