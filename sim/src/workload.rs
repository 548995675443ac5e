//! Workloads (docs/harness.md 5.2): trace replay (the canonical task CSV, and the Azure LLM
//! inference trace through its adapter) and generated arrivals, both enriched deterministically.
//!
//! Guarantees: the task list is a pure function of the scenario and the seed; every
//! enrichment draw depends only on (seed, row), so looping or time-scaling a trace does not
//! shift the draws of other rows; a bad trace row is an error naming file, line and column.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use seedcore_engine::{Authority, Kind, Task};
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

/// Trace file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceFormat {
    /// The columns of docs/engine.md 3.1, in order, with a header.
    Canonical,
    /// `TIMESTAMP, ContextTokens, GeneratedTokens` (Azure LLM inference trace 2023).
    Azure,
}

/// One request of an Azure trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AzureRow {
    /// Time since the first request.
    pub offset_ms: u64,
    pub context_tokens: u32,
    pub generated_tokens: u32,
}

/// The rows of a trace.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceRows {
    Canonical(Vec<Task>),
    Azure(Vec<AzureRow>),
}

/// A loaded trace.
#[derive(Clone, Debug)]
pub struct LoadedTrace {
    pub rows: TraceRows,
    /// Unix ms of the first request, when the trace has wall-clock times.
    pub start_utc_ms: Option<u64>,
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

/// How task fields not present in a trace are drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct Enrichment {
    /// Share of each kind, indexed by `Kind::index` (need not add up to 1).
    pub mix: [f64; Kind::COUNT],
    pub drift_base: f64,
    pub drift_context: f64,
    pub drift_noise: f64,
    /// (from_ms, to_ms, extra drift).
    pub drift_episodes: Vec<(u64, u64, f64)>,
    pub planning_rate: f64,
    pub low_authority_rate: f64,
    pub repeat_rate: f64,
    pub domains: Vec<String>,
}

impl Default for Enrichment {
    fn default() -> Self {
        let mut mix = [0.0; Kind::COUNT];
        for (kind, share) in [
            (Kind::Chat, 0.60),
            (Kind::Query, 0.20),
            (Kind::Action, 0.08),
            (Kind::Graph, 0.05),
            (Kind::Maintenance, 0.03),
            (Kind::Anomaly, 0.035),
            (Kind::Summary, 0.005),
        ] {
            mix[kind.index()] = share;
        }
        Enrichment {
            mix,
            drift_base: 0.02,
            drift_context: 0.12,
            drift_noise: 0.08,
            drift_episodes: Vec::new(),
            planning_rate: 0.01,
            low_authority_rate: 0.1,
            repeat_rate: 0.15,
            domains: vec!["guest".into(), "facility".into(), "security".into()],
        }
    }
}

/// A resolved workload.
#[derive(Clone, Debug)]
pub enum Workload {
    Trace { path: PathBuf, format: TraceFormat, rows: TraceRows, speed: f64, loops: u32, enrichment: Enrichment },
    Generated { spec: GeneratedSpec, enrichment: Enrichment },
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A uniform draw in [0, 1) that depends only on (seed, row, stream).
fn unit(seed: u64, row: u64, stream: u64) -> f64 {
    let bits = splitmix64(seed ^ splitmix64(row.wrapping_mul(64).wrapping_add(stream)));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The last few requests, for repeats.
const REPEAT_HISTORY: usize = 8;

impl Enrichment {
    fn pick_kind(&self, u: f64) -> Kind {
        let total: f64 = self.mix.iter().sum();
        let mut acc = 0.0;
        for kind in Kind::ALL {
            acc += self.mix[kind.index()] / total;
            if u < acc {
                return kind;
            }
        }
        *Kind::ALL.iter().rev().find(|k| self.mix[k.index()] > 0.0).expect("the mix is not empty")
    }

    /// The task of trace row `row` arriving at `at_ms`.
    fn task(&self, seed: u64, row: u64, at_ms: u64, tokens_in: u32, tokens_out: u32, history: &mut Vec<Task>) -> Task {
        let draw = |stream| unit(seed, row, stream);
        let episode: f64 =
            self.drift_episodes.iter().filter(|(from, to, _)| (*from..*to).contains(&at_ms)).map(|e| e.2).sum();
        let context = (f64::from(tokens_in) + 1.0).ln() / 8192f64.ln();
        let drift =
            (self.drift_base + self.drift_context * context + self.drift_noise * (2.0 * draw(1) - 1.0) + episode)
                .clamp(0.0, 1.0);
        let authority = match draw(3) {
            u if u < self.low_authority_rate => Authority::Low,
            u if u < self.low_authority_rate + 0.5 * (1.0 - self.low_authority_rate) => Authority::Medium,
            _ => Authority::High,
        };
        let mut task = Task {
            task_id: row,
            at_ms,
            kind: self.pick_kind(draw(0)),
            domain: self.domains[(draw(5) * self.domains.len() as f64) as usize % self.domains.len()].clone(),
            drift,
            priority: (draw(4) * 11.0) as u8 % 11,
            authority,
            needs_planning: draw(2) < self.planning_rate,
            tokens_in,
            tokens_out,
            signature: splitmix64(seed ^ splitmix64(row ^ 0x5167_6e61_7475_7265)),
        };
        if draw(6) < self.repeat_rate && !history.is_empty() {
            let back = (draw(7) * history.len() as f64) as usize % history.len();
            let earlier = &history[history.len() - 1 - back];
            task.kind = earlier.kind;
            task.signature = earlier.signature;
            task.domain = earlier.domain.clone();
            task.tokens_in = earlier.tokens_in;
            task.tokens_out = earlier.tokens_out;
        }
        if history.len() == REPEAT_HISTORY {
            history.remove(0);
        }
        history.push(task.clone());
        task
    }
}

impl Workload {
    /// Time of the last arrival plus one loop, for traces.
    pub fn span_ms(&self) -> Option<u64> {
        match self {
            Workload::Trace { rows, speed, loops, .. } => {
                let last = match rows {
                    TraceRows::Canonical(tasks) => tasks.last().map_or(0, |t| t.at_ms),
                    TraceRows::Azure(rows) => rows.last().map_or(0, |r| r.offset_ms),
                };
                Some(((last as f64 + 1.0) / speed).ceil() as u64 * u64::from(*loops))
            }
            Workload::Generated { .. } => None,
        }
    }

    /// About how many arrivals a run of `duration_ms` has (an upper estimate), to refuse
    /// absurd workloads before generating them.
    pub fn expected_arrivals(&self, duration_ms: u64) -> Option<f64> {
        match self {
            Workload::Trace { rows, loops, .. } => {
                let n = match rows {
                    TraceRows::Canonical(tasks) => tasks.len(),
                    TraceRows::Azure(rows) => rows.len(),
                };
                Some(n as f64 * f64::from(*loops))
            }
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
    pub fn tasks(&self, seed: u64, duration_ms: u64) -> Vec<Task> {
        let mut tasks = Vec::new();
        let mut history = Vec::with_capacity(REPEAT_HISTORY);
        match self {
            Workload::Trace { rows, speed, loops, enrichment, .. } => {
                let span = self.span_ms().expect("traces have a span") / u64::from(*loops);
                for pass in 0..u64::from(*loops) {
                    let count = match rows {
                        TraceRows::Canonical(t) => t.len(),
                        TraceRows::Azure(r) => r.len(),
                    } as u64;
                    for index in 0..count {
                        let row = pass * count + index;
                        let task = match rows {
                            TraceRows::Canonical(t) => {
                                let original = &t[index as usize];
                                Task {
                                    task_id: row,
                                    at_ms: (original.at_ms as f64 / speed) as u64 + pass * span,
                                    ..original.clone()
                                }
                            }
                            TraceRows::Azure(r) => {
                                let a = r[index as usize];
                                let at_ms = (a.offset_ms as f64 / speed) as u64 + pass * span;
                                enrichment.task(seed, row, at_ms, a.context_tokens, a.generated_tokens, &mut history)
                            }
                        };
                        if task.at_ms >= duration_ms {
                            return tasks;
                        }
                        tasks.push(task);
                    }
                }
            }
            Workload::Generated { spec, enrichment } => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6172_7269_7661_6c73);
                let sigma = |(median, p99): (f64, f64)| (p99 / median).ln() / 2.326_347_874;
                let tokens_in = LogNormal::new(spec.tokens_in.0.ln(), sigma(spec.tokens_in)).expect("validated");
                let tokens_out = LogNormal::new(spec.tokens_out.0.ln(), sigma(spec.tokens_out)).expect("validated");
                let peak = spec.rate_per_s * (1.0 + spec.diurnal) * spec.bursts.iter().map(|b| b.2).fold(1.0, f64::max);
                let rate_at = |t_ms: f64| {
                    let day = 2.0 * std::f64::consts::PI * t_ms / spec.diurnal_period_ms.max(1) as f64;
                    let burst: f64 =
                        spec.bursts.iter().filter(|b| (b.0 as f64..b.1 as f64).contains(&t_ms)).map(|b| b.2).product();
                    spec.rate_per_s * (1.0 + spec.diurnal * day.sin()) * burst
                };
                // Thinning of a Poisson process at the peak rate.
                let mut t_ms = 0.0;
                let mut row = 0;
                loop {
                    let gap: f64 = -(1.0 - rng.gen::<f64>()).ln() / peak * 1000.0;
                    t_ms += gap;
                    if t_ms >= duration_ms as f64 {
                        return tasks;
                    }
                    if rng.gen::<f64>() * peak > rate_at(t_ms) {
                        continue;
                    }
                    let tin = tokens_in.sample(&mut rng).clamp(1.0, 1e6) as u32;
                    let tout = tokens_out.sample(&mut rng).clamp(0.0, 1e6) as u32;
                    tasks.push(enrichment.task(seed, row, t_ms as u64, tin, tout, &mut history));
                    row += 1;
                }
            }
        }
        tasks
    }
}

fn row_error(file: &str, line: u64, column: &str, message: impl Into<String>) -> WorkloadError {
    WorkloadError::Row { file: file.to_string(), line, column: column.to_string(), message: message.into() }
}

/// The header of the canonical format.
pub const CANONICAL_HEADER: [&str; 11] = seedcore_engine::task::TASK_COLUMNS;

/// The longest a trace may span, first row to last: a year and a day. A longer span is
/// almost always a bad timestamp (one row from 1970 made a trace simulate 53 years).
pub const MAX_TRACE_SPAN_MS: u64 = 366 * 86_400_000;

/// A CSV reader over a file's bytes (fields trimmed) and the file's header; an unreadable
/// header is an error naming the file.
pub fn csv_reader<'b>(bytes: &'b [u8], file: &str) -> Result<(csv::Reader<&'b [u8]>, Vec<String>), WorkloadError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| WorkloadError::Format { file: file.to_string(), message: format!("unreadable header: {e}") })?
        .iter()
        .map(str::to_string)
        .collect();
    Ok((reader, header))
}

/// The task of a canonical row (docs/harness.md 5.2's first 11 columns; later columns are not
/// read): every field checked, errors naming the file, the line and the column.
pub fn canonical_task(record: &csv::StringRecord, file: &str, line: u64) -> Result<Task, WorkloadError> {
    let field = |index: usize| record.get(index).unwrap_or("");
    let column = |index: usize| CANONICAL_HEADER[index];
    let number = |index: usize| -> Result<u64, WorkloadError> {
        field(index)
            .parse::<u64>()
            .map_err(|e| row_error(file, line, column(index), format!("{:?}: {e}", field(index))))
    };
    let tokens = |index: usize| -> Result<u32, WorkloadError> {
        field(index)
            .parse::<u32>()
            .map_err(|e| row_error(file, line, column(index), format!("{:?}: {e}", field(index))))
    };
    let drift: f64 = field(4).parse().map_err(|e| row_error(file, line, "drift", format!("{:?}: {e}", field(4))))?;
    if !(0.0..=1.0).contains(&drift) {
        return Err(row_error(file, line, "drift", format!("{drift} is not in [0, 1]")));
    }
    let priority = number(5)?;
    if priority > 10 {
        return Err(row_error(file, line, "priority", format!("{priority} is not in 0..=10")));
    }
    let needs_planning = match field(7) {
        "true" | "1" => true,
        "false" | "0" => false,
        other => return Err(row_error(file, line, "needs_planning", format!("{other:?} is not a boolean"))),
    };
    Ok(Task {
        task_id: number(0)?,
        at_ms: number(1)?,
        kind: Kind::parse(field(2))
            .ok_or_else(|| row_error(file, line, "kind", format!("unknown kind {:?}", field(2))))?,
        domain: field(3).to_string(),
        drift,
        priority: priority as u8,
        authority: Authority::parse(field(6))
            .ok_or_else(|| row_error(file, line, "authority", format!("unknown authority {:?}", field(6))))?,
        needs_planning,
        tokens_in: tokens(8)?,
        tokens_out: tokens(9)?,
        signature: number(10)?,
    })
}

/// Reads a trace file. Rows must be in arrival order and span at most
/// `MAX_TRACE_SPAN_MS`, and there must be at least one; errors name the file, the line
/// and the column.
pub fn load_trace(path: &Path, format: TraceFormat) -> Result<LoadedTrace, WorkloadError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| WorkloadError::Read { file: file.clone(), message: e.to_string() })?;
    let (mut reader, header) = csv_reader(&bytes, &file)?;
    let expected: Vec<&str> = match format {
        TraceFormat::Canonical => CANONICAL_HEADER.to_vec(),
        TraceFormat::Azure => vec!["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
    };
    if header != expected {
        return Err(WorkloadError::Format { file, message: format!("header is {header:?}, expected {expected:?}") });
    }
    let mut canonical: Vec<Task> = Vec::new();
    let mut azure: Vec<(i64, u32, u32)> = Vec::new();
    // Arrival order and span, checked row by row so the error names the row.
    let in_order = |line: u64, column: &str, at_ms: i64, previous: Option<i64>, first: Option<i64>| {
        if let Some(previous) = previous.filter(|p| at_ms < *p) {
            return Err(row_error(
                &file,
                line,
                column,
                format!("goes back in time, {} ms before the row above; a trace is in arrival order", previous - at_ms),
            ));
        }
        match first {
            Some(first) if at_ms.saturating_sub(first) > MAX_TRACE_SPAN_MS as i64 => Err(row_error(
                &file,
                line,
                column,
                format!("is {} days after the first row; a trace spans at most 366 days", (at_ms - first) / 86_400_000),
            )),
            _ => Ok(()),
        }
    };
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            row_error(&file, line, "-", e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |index: usize| record.get(index).unwrap_or("");
        let tokens = |index: usize| -> Result<u32, WorkloadError> {
            field(index)
                .parse::<u32>()
                .map_err(|e| row_error(&file, line, expected[index], format!("{:?}: {e}", field(index))))
        };
        match format {
            TraceFormat::Azure => {
                let stamp = chrono::NaiveDateTime::parse_from_str(field(0), "%Y-%m-%d %H:%M:%S%.f")
                    .map_err(|e| row_error(&file, line, "TIMESTAMP", format!("{:?}: {e}", field(0))))?;
                let micros = stamp.and_utc().timestamp_micros();
                let ms = |r: &(i64, u32, u32)| r.0 / 1000;
                in_order(line, "TIMESTAMP", micros / 1000, azure.last().map(ms), azure.first().map(ms))?;
                azure.push((micros, tokens(1)?, tokens(2)?));
            }
            TraceFormat::Canonical => {
                let task = canonical_task(&record, &file, line)?;
                let as_i64 = |ms: u64| i64::try_from(ms).unwrap_or(i64::MAX);
                let at = |t: &Task| as_i64(t.at_ms);
                in_order(line, "at_ms", as_i64(task.at_ms), canonical.last().map(at), canonical.first().map(at))?;
                canonical.push(task);
            }
        }
    }
    if canonical.is_empty() && azure.is_empty() {
        return Err(WorkloadError::Format { file, message: "has a header and no rows: nothing to replay".into() });
    }
    match format {
        TraceFormat::Canonical => Ok(LoadedTrace { rows: TraceRows::Canonical(canonical), start_utc_ms: None }),
        TraceFormat::Azure => {
            let first = azure.first().map_or(0, |r| r.0);
            let rows = azure
                .iter()
                .map(|(micros, context, generated)| AzureRow {
                    offset_ms: ((micros - first) / 1000) as u64,
                    context_tokens: *context,
                    generated_tokens: *generated,
                })
                .collect();
            let start = u64::try_from(first / 1000).ok();
            Ok(LoadedTrace { rows: TraceRows::Azure(rows), start_utc_ms: start })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrichment_is_a_function_of_seed_and_row() {
        let e = Enrichment::default();
        let a = e.task(7, 42, 1_000, 500, 100, &mut Vec::new());
        let b = e.task(7, 42, 1_000, 500, 100, &mut Vec::new());
        let c = e.task(8, 42, 1_000, 500, 100, &mut Vec::new());
        assert_eq!(a, b);
        assert_ne!(a.signature, c.signature);
    }

    #[test]
    fn generated_arrivals_follow_the_rate() {
        let w = Workload::Generated {
            spec: GeneratedSpec {
                rate_per_s: 10.0,
                diurnal: 0.0,
                diurnal_period_ms: 86_400_000,
                tokens_in: (800.0, 6000.0),
                tokens_out: (200.0, 1200.0),
                bursts: vec![],
            },
            enrichment: Enrichment::default(),
        };
        let tasks = w.tasks(1, 600_000);
        assert!((5_700..6_300).contains(&tasks.len()), "{}", tasks.len());
        assert!(tasks.windows(2).all(|p| p[0].at_ms <= p[1].at_ms));
        assert_eq!(tasks, w.tasks(1, 600_000));
    }

    #[test]
    fn canonical_traces_loop_and_scale() {
        let dir = std::env::temp_dir().join(format!("seedcore-canonical-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trace.csv");
        let header = CANONICAL_HEADER.join(",");
        std::fs::write(
            &path,
            format!(
                "{header}\n7,0,chat,guest,0.1,3,low,false,100,20,42\n8,2000,summary,facility,0.9,10,high,true,5,6,43\n"
            ),
        )
        .unwrap();
        let loaded = load_trace(&path, TraceFormat::Canonical).unwrap();
        let workload = Workload::Trace {
            path: path.clone(),
            format: TraceFormat::Canonical,
            rows: loaded.rows,
            speed: 2.0,
            loops: 2,
            enrichment: Enrichment::default(),
        };
        // One loop spans (2000 + 1) / 2 rounded up = 1001 ms; the second loop follows it.
        assert_eq!(workload.span_ms(), Some(2_002));
        let tasks = workload.tasks(1, 10_000);
        let summary: Vec<(u64, u64, Kind, bool)> =
            tasks.iter().map(|t| (t.task_id, t.at_ms, t.kind, t.needs_planning)).collect();
        assert_eq!(
            summary,
            vec![
                (0, 0, Kind::Chat, false),
                (1, 1_000, Kind::Summary, true),
                (2, 1_001, Kind::Chat, false),
                (3, 2_001, Kind::Summary, true)
            ]
        );
        assert_eq!(workload.tasks(1, 1_001).len(), 2, "arrivals stop at the duration");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_row_names_line_and_column() {
        let dir = std::env::temp_dir().join(format!("seedcore-trace-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.csv");
        std::fs::write(
            &path,
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:50.99,lots,109\n",
        )
        .unwrap();
        let error = load_trace(&path, TraceFormat::Azure).unwrap_err().to_string();
        assert!(error.contains("line 3, column ContextTokens"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
