//! Aggregations over a bundle's `tasks.csv` (docs/certification.md 9): per-window series for the
//! plots, the cumulative spend of each simulated day, latencies per path, the time to first
//! token against prompt size per path ([`ttft`]), and the cost table per task kind. The per-day
//! money figures are not computed here: they come from the event log's fold
//! (`seedcore_sim::money`), and [`agrees_with_the_event_log`] refuses a `tasks.csv` whose spend
//! differs from them, so the plots and the tables cannot tell two stories.
//!
//! Guarantees: the file is read with polars' eager CSV reader with every column as text,
//! and each column used here is then cast to an explicit type, so nothing depends on schema
//! inference; a missing column or a value that does not parse is an [`AnalyticsError`]
//! naming the file, the column and the row. The result depends only on the file's bytes and
//! the [`ReportData`] given (no clocks, no hash-ordered maps), so the reports built from it
//! are byte-for-byte reproducible.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::model::ReportData;
use seedcore_engine::task::PerPath;

pub mod ttft;

/// Milliseconds in a UTC day.
pub(crate) const DAY_MS: u64 = 86_400_000;

/// Window widths a run may be cut into, ms, smallest first: round values a reader can take
/// in at a glance (seconds, minutes, hours).
const WINDOW_WIDTHS_MS: [u64; 25] = [
    1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 10_000, 12_000, 15_000, 20_000, 30_000, 60_000, 120_000, 180_000,
    240_000, 300_000, 360_000, 600_000, 720_000, 900_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000,
];

/// A run is cut into at least this many windows when a listed width allows it.
const WINDOWS_TARGET_MIN: u64 = 60;

/// Upper bound on the number of windows, drain after the last arrival included. An outcome
/// later than this many windows is not a plausible drain: the file is rejected rather than
/// allocating a series of unbounded length.
const WINDOWS_MAX: u64 = 10_000;

/// The columns of `tasks.csv` read here. `day`, `cache_tier` and `ttft_ms` are optional (older
/// bundles lack them): without `day` it is derived from the run's epoch and the outcome time,
/// without `cache_tier` no hit is attributed to a tier, without `ttft_ms` there is no time to
/// first token (and `tokens_in`, read only beside it, is not read).
const COLUMNS_REQUIRED: [&str; 9] =
    ["at_ms", "kind", "path", "cusum_s", "status", "latency_ms", "cost_micro_usd", "cache_hit", "done_ms"];

/// The numeric columns, parsed while reading.
const NUMBER_COLUMNS: [(&str, DataType); 8] = [
    ("at_ms", DataType::UInt64),
    ("cusum_s", DataType::Float64),
    ("latency_ms", DataType::UInt64),
    ("cost_micro_usd", DataType::UInt64),
    ("done_ms", DataType::UInt64),
    ("day", DataType::UInt64),
    ("ttft_ms", DataType::UInt64),
    ("tokens_in", DataType::UInt64),
];

/// Why `tasks.csv` could not be analysed. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("{}: cannot read: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("{}: no column `{column}` in the header", path.display())]
    MissingColumn { path: PathBuf, column: String },
    #[error("{}: column `{column}`: {message}", path.display())]
    BadValue { path: PathBuf, column: String, message: String },
}

/// One fixed window of simulated time. Arrivals and the CUSUM statistic are counted at
/// arrival (`at_ms`), outcomes and spend at the outcome (`done_ms`).
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Start of the window, simulated ms since the run started.
    pub start_ms: u64,
    /// Tasks that arrived in the window.
    pub arrived: u64,
    /// Tasks completed in the window (either path).
    pub completed: u64,
    /// Tasks failed in the window.
    pub failed: u64,
    /// Tasks completed on the fast path in the window.
    pub fast_completed: u64,
    /// Fast completions served from the memory fabric's cache.
    pub cache_hits: u64,
    /// Charged micro-USD of the outcomes in the window.
    pub spend_micro_usd: u64,
    /// Largest CUSUM statistic `S` of the tasks that arrived in the window.
    pub cusum_max: Option<f64>,
    /// `fast_completed / (completed + failed)`; `None` when the window holds no outcome.
    pub fast_ratio: Option<f64>,
    /// `cache_hits / fast_completed`; `None` when nothing completed on the fast path.
    pub cache_hit_rate: Option<f64>,
    /// Fast completions served by each tier (Mw, M2.5, Mlt), and the share of fast
    /// completions each served.
    pub tier_hits: [u64; 3],
    pub tier_hit_rates: [Option<f64>; 3],
    /// 99th percentile of the fast completions' latency in the window (nearest rank).
    pub fast_p99_ms: Option<u64>,
}

/// The day's cumulative spend just after one charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpendPoint {
    /// Outcome time of the charge, simulated ms since the run started.
    pub t_ms: u64,
    /// Simulated UTC day of the charge (days since 1970-01-01).
    pub day: u64,
    /// Charged micro-USD so far that day, this charge included.
    pub spent_micro_usd: u64,
}

/// Cost of one task kind over the whole run.
#[derive(Clone, Debug, PartialEq)]
pub struct KindCost {
    /// Rows of this kind, lost tasks included.
    pub tasks: u64,
    pub completed: u64,
    pub rejected: u64,
    /// Charged micro-USD of every task of this kind.
    pub cost_micro_usd: u64,
    /// Mean charge of a completed task; `None` when none completed.
    pub cost_micro_usd_mean: Option<f64>,
    /// Largest charge of a completed task.
    pub cost_micro_usd_max: Option<u64>,
}

/// Everything the renderers need from `tasks.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct Analytics {
    /// Width of every window, ms.
    pub window_ms: u64,
    /// Consecutive windows from 0 until the last arrival or outcome (at least to the run's
    /// duration), empty ones included.
    pub windows: Vec<Window>,
    /// Cumulative spend per day after each non-zero charge, in outcome order.
    pub spend: Vec<SpendPoint>,
    /// Latencies of the tasks completed on the fast path, ms, in file order.
    pub latency_fast_ms: Vec<u64>,
    /// Latencies of the tasks completed on the deep path, ms, in file order.
    pub latency_deep_ms: Vec<u64>,
    /// Per task kind.
    pub kinds: BTreeMap<String, KindCost>,
    /// Time to first token of completed uncached tasks per power-of-two bucket of prompt
    /// tokens, per path, buckets in prompt-size order (only those of at least
    /// [`ttft::MIN_BUCKET_TASKS`] tasks); `None` when `tasks.csv` has no `ttft_ms` column (a
    /// run from before it was recorded).
    pub ttft_by_tokens_in: Option<PerPath<Vec<ttft::TtftBucket>>>,
}

/// Whether `tasks.csv`'s money agrees with the event log's fold in `data`: the same total,
/// and the same spend on every simulated day. The message names the first difference.
pub fn agrees_with_the_event_log(analytics: &Analytics, data: &ReportData) -> Result<(), String> {
    let by_kind: u64 = analytics.kinds.values().map(|k| k.cost_micro_usd).fold(0, u64::saturating_add);
    if by_kind != data.total_cost_micro_usd {
        return Err(format!(
            "charges total {by_kind} micro-USD, the event log {} micro-USD",
            data.total_cost_micro_usd
        ));
    }
    let mut from_csv: BTreeMap<u64, u64> = BTreeMap::new();
    for point in &analytics.spend {
        from_csv.insert(point.day, point.spent_micro_usd);
    }
    let from_events: BTreeMap<u64, u64> =
        data.days.iter().filter(|(_, d)| d.spend_micro_usd > 0).map(|(day, d)| (*day, d.spend_micro_usd)).collect();
    if from_csv != from_events {
        let day = from_csv
            .keys()
            .chain(from_events.keys())
            .find(|day| from_csv.get(day) != from_events.get(day))
            .copied()
            .unwrap_or(0);
        return Err(format!(
            "day {day} (days since 1970-01-01 UTC) charges {} micro-USD, the event log {} micro-USD",
            from_csv.get(&day).copied().unwrap_or(0),
            from_events.get(&day).copied().unwrap_or(0)
        ));
    }
    Ok(())
}

/// Reads `tasks_csv` and computes every aggregate. `data` supplies the run's duration (for
/// the window width), its epoch (for days) and its limits (for breaches).
pub fn analyse(tasks_csv: &Path, data: &ReportData) -> Result<Analytics, AnalyticsError> {
    let ctx = Ctx { path: tasks_csv };
    let window_ms = window_width_ms(data.duration_ms);
    // Numbers are parsed as they are read, which keeps a day of tasks small; only when that
    // fails is the file read again as text, to name the row and column at fault.
    let tasks = match ctx.read(true).and_then(|raw| ctx.typed(&raw, data, window_ms)) {
        Ok(tasks) => tasks,
        Err(_) => ctx.typed(&ctx.read(false)?, data, window_ms)?,
    };
    ctx.aggregate(&tasks, data, window_ms)
}

/// The width that cuts `duration_ms` into about 60 to 120 windows: the widest listed width
/// that still gives at least [`WINDOWS_TARGET_MIN`] windows (the narrowest for short runs).
pub fn window_width_ms(duration_ms: u64) -> u64 {
    WINDOW_WIDTHS_MS
        .iter()
        .rev()
        .copied()
        .find(|width| duration_ms.div_ceil(*width) >= WINDOWS_TARGET_MIN)
        .unwrap_or(WINDOW_WIDTHS_MS[0])
}

/// The file being analysed, for error messages.
struct Ctx<'a> {
    path: &'a Path,
}

/// Whether a column may hold empty fields.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Presence {
    Required,
    Optional,
}

impl Ctx<'_> {
    fn read_error(&self, message: impl std::fmt::Display) -> AnalyticsError {
        AnalyticsError::Read { path: self.path.to_path_buf(), message: message.to_string() }
    }

    fn bad(&self, column: &str, message: impl std::fmt::Display) -> AnalyticsError {
        AnalyticsError::BadValue {
            path: self.path.to_path_buf(),
            column: column.to_string(),
            message: message.to_string(),
        }
    }

    /// An error of polars while working on already validated columns: reported against the
    /// file, since the file is all this module reads.
    fn polars(&self, error: PolarsError) -> AnalyticsError {
        self.read_error(error)
    }

    /// The columns used here (and only those: a day of tasks holds hundreds of thousands of
    /// rows of 36 columns), every one as text; the header must hold them.
    fn read(&self, numbers: bool) -> Result<DataFrame, AnalyticsError> {
        let mut header = String::new();
        let file = std::fs::File::open(self.path).map_err(|e| self.read_error(e))?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(file), &mut header).map_err(|e| self.read_error(e))?;
        let header: Vec<&str> = header.trim_end_matches(['\r', '\n']).split(',').collect();
        for column in COLUMNS_REQUIRED {
            self.require(&header, column)?;
        }
        let mut used: Vec<PlSmallStr> = COLUMNS_REQUIRED.iter().map(|c| PlSmallStr::from(*c)).collect();
        if header.contains(&"cache_tier") {
            used.push("cache_tier".into());
        }
        if header.contains(&"day") {
            used.push("day".into());
        }
        if header.contains(&"ttft_ms") {
            self.require(&header, "tokens_in")?;
            used.push("ttft_ms".into());
            used.push("tokens_in".into());
        }
        let number_columns: &[(&str, DataType)] = if numbers { &NUMBER_COLUMNS } else { &[] };
        let numbers: Schema = number_columns
            .iter()
            .filter(|(name, _)| used.iter().any(|u| u == name))
            .map(|(name, dtype)| Field::new((*name).into(), dtype.clone()))
            .collect();
        CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .with_n_threads(Some(1))
            .with_columns(Some(used.into()))
            .with_schema_overwrite(Some(Arc::new(numbers)))
            .try_into_reader_with_file_path(Some(self.path.to_path_buf()))
            .and_then(|reader| reader.finish())
            .map_err(|e| self.read_error(e))
    }

    /// A [`AnalyticsError::MissingColumn`] unless `header` names `column`.
    fn require(&self, header: &[&str], column: &str) -> Result<(), AnalyticsError> {
        if header.contains(&column) {
            return Ok(());
        }
        Err(AnalyticsError::MissingColumn { path: self.path.to_path_buf(), column: column.to_string() })
    }

    fn text<'d>(&self, raw: &'d DataFrame, name: &str) -> Result<&'d StringChunked, AnalyticsError> {
        let column = raw
            .column(name)
            .map_err(|_| AnalyticsError::MissingColumn { path: self.path.to_path_buf(), column: name.to_string() })?;
        column.str().map_err(|e| self.bad(name, e))
    }

    /// Casts a text column to `dtype`, naming the first row (1-based, header excluded) whose
    /// field does not parse, or is empty when the column is required. A column read as
    /// `dtype` already is only checked for emptiness.
    fn cast(
        &self,
        raw: &DataFrame,
        name: &str,
        dtype: &DataType,
        presence: Presence,
    ) -> Result<Column, AnalyticsError> {
        if let Some(column) = raw.column(name).ok().filter(|c| c.dtype() == dtype) {
            if presence == Presence::Required {
                if let Some(row) = column.is_null().iter().position(|null| null == Some(true)) {
                    return Err(self.bad(name, format!("row {}: empty", row + 1)));
                }
            }
            return Ok(column.clone());
        }
        let text = self.text(raw, name)?;
        let cast = text.clone().into_series().cast(dtype).map_err(|e| self.bad(name, e))?;
        if cast.null_count() > 0 {
            for (row, (field, value)) in text.iter().zip(cast.is_null().iter()).enumerate() {
                match (field, value) {
                    (Some(field), Some(true)) => {
                        return Err(self.bad(name, format!("row {}: `{field}` is not a valid {dtype}", row + 1)));
                    }
                    (None, _) if presence == Presence::Required => {
                        return Err(self.bad(name, format!("row {}: empty", row + 1)));
                    }
                    _ => {}
                }
            }
        }
        Ok(cast.into_column())
    }

    /// A text column whose fields must be one of `allowed` (or empty when optional).
    fn one_of(
        &self,
        raw: &DataFrame,
        name: &str,
        allowed: &[&str],
        presence: Presence,
    ) -> Result<StringChunked, AnalyticsError> {
        let text = self.text(raw, name)?;
        for (row, field) in text.iter().enumerate() {
            match field {
                Some(field) if !allowed.contains(&field) => {
                    return Err(
                        self.bad(name, format!("row {}: `{field}` is not one of {}", row + 1, allowed.join(", ")))
                    );
                }
                None if presence == Presence::Required => {
                    return Err(self.bad(name, format!("row {}: empty", row + 1)));
                }
                _ => {}
            }
        }
        Ok(text.clone())
    }

    /// The typed frame every aggregate reads: the used columns with explicit types, status
    /// masks, each row's day, and the window of its arrival and of its outcome.
    fn typed(&self, raw: &DataFrame, data: &ReportData, window_ms: u64) -> Result<DataFrame, AnalyticsError> {
        let at_ms = self.cast(raw, "at_ms", &DataType::UInt64, Presence::Required)?;
        // Any kind name is allowed; only emptiness is checked.
        let kind = self.text(raw, "kind")?.clone();
        if let Some(row) = kind.iter().position(|k| k.is_none_or(str::is_empty)) {
            return Err(self.bad("kind", format!("row {}: empty", row + 1)));
        }
        let status = self.one_of(raw, "status", &["completed", "failed", "rejected", "lost"], Presence::Required)?;
        let path = self.one_of(raw, "path", &["fast", "deep"], Presence::Optional)?;
        let cusum_s = self.cast(raw, "cusum_s", &DataType::Float64, Presence::Optional)?;
        let latency_ms = self.cast(raw, "latency_ms", &DataType::UInt64, Presence::Optional)?;
        let cost = self.cast(raw, "cost_micro_usd", &DataType::UInt64, Presence::Optional)?;
        let cache_hit = self.one_of(raw, "cache_hit", &["true", "false"], Presence::Optional)?;
        let done_ms = self.cast(raw, "done_ms", &DataType::UInt64, Presence::Optional)?;
        let day_given = match raw.column("day") {
            Ok(_) => Some(self.cast(raw, "day", &DataType::UInt64, Presence::Optional)?),
            Err(_) => None,
        };

        let at = at_ms.u64().map_err(|e| self.polars(e))?;
        let done = done_ms.u64().map_err(|e| self.polars(e))?;
        if let Some(cusum) = cusum_s.f64().map_err(|e| self.polars(e))?.iter().flatten().find(|s| !s.is_finite()) {
            return Err(self.bad("cusum_s", format!("`{cusum}` is not a finite number")));
        }

        let day = self.days(at, done, day_given.as_ref(), data.epoch_utc_ms)?;
        self.check_windows(at, done, data, window_ms)?;
        let window_arrived = (at / window_ms).with_name("window_arrived".into());
        let window_done = (done / window_ms).with_name("window_done".into());

        let completed = status.equal("completed");
        let fast = path.equal("fast").fill_null_with_values(false).map_err(|e| self.polars(e))?;
        let deep = path.equal("deep").fill_null_with_values(false).map_err(|e| self.polars(e))?;
        let hit = cache_hit.equal("true").fill_null_with_values(false).map_err(|e| self.polars(e))?;
        let fast_completed = &completed & &fast;
        let tier_columns = self.tier_columns(raw, &fast_completed)?;
        let ttft_columns = self.ttft_columns(raw, &completed, [&fast, &deep], &hit)?;
        let columns = vec![
            at_ms,
            kind.with_name("kind".into()).into_column(),
            cusum_s,
            latency_ms,
            cost,
            done_ms,
            Column::new("day".into(), day),
            window_arrived.into_column(),
            window_done.into_column(),
            is("is_failed", status.equal("failed")),
            is("is_rejected", status.equal("rejected")),
            is("is_lost", status.equal("lost")),
            is("is_deep_completed", &completed & &deep),
            is("is_fast_hit", &fast_completed & &hit),
            is("is_fast_completed", fast_completed),
            is("is_completed", completed),
        ];
        let columns = columns.into_iter().chain(tier_columns).chain(ttft_columns).collect();
        DataFrame::new(raw.height(), columns).map_err(|e| self.polars(e))
    }

    /// Each row's simulated UTC day: the `day` column's where it has one, else the day of
    /// the outcome (days since 1970-01-01, from the run's epoch).
    fn days(
        &self,
        at: &UInt64Chunked,
        done: &UInt64Chunked,
        day_given: Option<&Column>,
        epoch_ms: u64,
    ) -> Result<Vec<u64>, AnalyticsError> {
        // Lost tasks have no outcome: their day is the day of their arrival.
        let day_derived: Vec<u64> = at
            .iter()
            .zip(done.iter())
            .map(|(at, done)| epoch_ms.saturating_add(done.or(at).unwrap_or(0)) / DAY_MS)
            .collect();
        Ok(match day_given {
            Some(given) => {
                let given = given.u64().map_err(|e| self.polars(e))?;
                given.iter().zip(day_derived).map(|(given, derived)| given.unwrap_or(derived)).collect()
            }
            None => day_derived,
        })
    }

    /// Refuses a file whose last arrival or outcome lies more than [`WINDOWS_MAX`] windows
    /// of `window_ms` after the start, naming the column that holds it.
    fn check_windows(
        &self,
        at: &UInt64Chunked,
        done: &UInt64Chunked,
        data: &ReportData,
        window_ms: u64,
    ) -> Result<(), AnalyticsError> {
        let last_ms = at.max().unwrap_or(0).max(done.max().unwrap_or(0));
        let windows = last_ms / window_ms + 1;
        if windows > WINDOWS_MAX {
            let column = if done.max().unwrap_or(0) > at.max().unwrap_or(0) { "done_ms" } else { "at_ms" };
            return Err(self.bad(
                column,
                format!(
                    "{last_ms} ms needs {windows} windows of {window_ms} ms (at most {WINDOWS_MAX}): far beyond the \
                     run's duration of {} ms",
                    data.duration_ms
                ),
            ));
        }
        Ok(())
    }

    /// The masks of the fast completions each tier (Mw, M2.5, Mlt) served, from
    /// `cache_tier`; all false without that column.
    fn tier_columns(&self, raw: &DataFrame, fast_completed: &BooleanChunked) -> Result<[Column; 3], AnalyticsError> {
        // `cache_tier` is absent from bundles older than the memory tiers.
        let tier = match raw.column("cache_tier") {
            Ok(_) => Some(self.one_of(raw, "cache_tier", &["mw", "m25", "mlt"], Presence::Optional)?),
            Err(_) => None,
        };
        let tier_hit = |name: &str| -> Result<BooleanChunked, AnalyticsError> {
            let mask = match &tier {
                Some(tier) => tier.equal(name).fill_null_with_values(false).map_err(|e| self.polars(e))?,
                None => BooleanChunked::full("".into(), false, raw.height()),
            };
            Ok(fast_completed & &mask)
        };
        Ok([is("is_hit_mw", tier_hit("mw")?), is("is_hit_m25", tier_hit("m25")?), is("is_hit_mlt", tier_hit("mlt")?)])
    }

    /// Every aggregate of the typed frame: the windows, the costs per kind, the spend over
    /// time, the latencies per path and the time to first token against prompt size.
    fn aggregate(&self, tasks: &DataFrame, data: &ReportData, window_ms: u64) -> Result<Analytics, AnalyticsError> {
        let p = |e| self.polars(e);
        let windows = self.windows(tasks, data, window_ms)?;
        let kinds = self.kinds(tasks)?;
        let spend = self.spend(tasks)?;
        let latencies = |mask: &str| -> Result<Vec<u64>, AnalyticsError> {
            let rows = tasks.filter(tasks.column(mask).map_err(p)?.bool().map_err(p)?).map_err(p)?;
            Ok(rows.column("latency_ms").map_err(p)?.u64().map_err(p)?.iter().flatten().collect())
        };
        Ok(Analytics {
            window_ms,
            windows,
            spend,
            latency_fast_ms: latencies("is_fast_completed")?,
            latency_deep_ms: latencies("is_deep_completed")?,
            kinds,
            ttft_by_tokens_in: self.ttft_by_tokens_in(tasks)?,
        })
    }

    /// Consecutive windows of `window_ms` from 0 until the last arrival or outcome, at least
    /// to the run's duration, empty ones included: arrivals by arrival, outcomes and spend by
    /// outcome.
    fn windows(&self, tasks: &DataFrame, data: &ReportData, window_ms: u64) -> Result<Vec<Window>, AnalyticsError> {
        let p = |e| self.polars(e);
        let duration_windows = data.duration_ms.div_ceil(window_ms).max(1);
        let mut windows: BTreeMap<u64, Window> = BTreeMap::new();
        let window = |windows: &mut BTreeMap<u64, Window>, index: u64| -> Window {
            windows.remove(&index).unwrap_or(Window {
                start_ms: index * window_ms,
                arrived: 0,
                completed: 0,
                failed: 0,
                fast_completed: 0,
                cache_hits: 0,
                spend_micro_usd: 0,
                cusum_max: None,
                fast_ratio: None,
                cache_hit_rate: None,
                tier_hits: [0; 3],
                tier_hit_rates: [None; 3],
                fast_p99_ms: None,
            })
        };
        for (key, group) in partition(tasks, "window_arrived").map_err(p)? {
            let Some(index) = key.extract::<u64>() else { continue };
            let tally = Tally::of(&group).map_err(p)?;
            let mut w = window(&mut windows, index);
            w.arrived = tally.tasks;
            w.cusum_max = tally.cusum_max;
            windows.insert(index, w);
        }
        for (key, group) in partition(tasks, "window_done").map_err(p)? {
            let Some(index) = key.extract::<u64>() else { continue };
            let tally = Tally::of(&group).map_err(p)?;
            let mut w = window(&mut windows, index);
            w.completed = tally.completed;
            w.failed = tally.failed;
            w.fast_completed = tally.fast_completed;
            w.cache_hits = tally.fast_hits;
            w.tier_hits = tally.tier_hits;
            w.fast_p99_ms = fast_p99(&group).map_err(p)?;
            w.spend_micro_usd = tally.cost;
            windows.insert(index, w);
        }
        let last = windows.keys().next_back().copied().unwrap_or(0).max(duration_windows - 1);
        Ok((0..=last)
            .map(|index| {
                let mut w = window(&mut windows, index);
                w.fast_ratio = ratio(w.fast_completed, w.completed + w.failed);
                w.cache_hit_rate = ratio(w.cache_hits, w.fast_completed);
                w.tier_hit_rates = w.tier_hits.map(|hits| ratio(hits, w.fast_completed));
                w
            })
            .collect())
    }

    /// The tasks and charges of each task kind.
    fn kinds(&self, tasks: &DataFrame) -> Result<BTreeMap<String, KindCost>, AnalyticsError> {
        let p = |e| self.polars(e);
        let mut kinds = BTreeMap::new();
        for (key, group) in partition(tasks, "kind").map_err(p)? {
            let Some(kind) = key.get_str().map(str::to_string) else { continue };
            let tally = Tally::of(&group).map_err(p)?;
            kinds.insert(
                kind,
                KindCost {
                    tasks: tally.tasks,
                    completed: tally.completed,
                    rejected: tally.rejected,
                    cost_micro_usd: tally.cost,
                    cost_micro_usd_mean: tally.completed_cost_mean(),
                    cost_micro_usd_max: tally.completed_cost_max,
                },
            );
        }
        Ok(kinds)
    }

    /// The day's cumulative spend after each non-zero charge, in outcome order.
    fn spend(&self, tasks: &DataFrame) -> Result<Vec<SpendPoint>, AnalyticsError> {
        let p = |e| self.polars(e);
        // Cumulative spend by outcome time; ties keep file order.
        let cost = tasks.column("cost_micro_usd").map_err(p)?.u64().map_err(p)?;
        let charged = tasks.filter(&cost.gt(0).fill_null_with_values(false).map_err(p)?).map_err(p)?;
        let charged = charged
            .sort(["done_ms"], SortMultipleOptions::default().with_maintain_order(true).with_nulls_last(true))
            .map_err(p)?;
        let mut spend = Vec::with_capacity(charged.height());
        let mut spent_by_day: BTreeMap<u64, u64> = BTreeMap::new();
        let charged_cost = charged.column("cost_micro_usd").map_err(p)?.u64().map_err(p)?;
        let charged_done = charged.column("done_ms").map_err(p)?.u64().map_err(p)?;
        let charged_at = charged.column("at_ms").map_err(p)?.u64().map_err(p)?;
        let charged_day = charged.column("day").map_err(p)?.u64().map_err(p)?;
        for (((cost, done), at), day) in
            charged_cost.iter().zip(charged_done.iter()).zip(charged_at.iter()).zip(charged_day.iter())
        {
            let (Some(cost), Some(day)) = (cost, day) else { continue };
            let spent = spent_by_day.entry(day).or_insert(0);
            *spent = spent.saturating_add(cost);
            spend.push(SpendPoint { t_ms: done.or(at).unwrap_or(0), day, spent_micro_usd: *spent });
        }
        Ok(spend)
    }
}

/// A row mask as a column named `name`.
fn is(name: &str, mask: BooleanChunked) -> Column {
    mask.with_name(name.into()).into_column()
}

/// `part / whole`, `None` for an empty whole.
fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The rows of `df` grouped by the value of `key`, each group with its key, groups in order
/// of first appearance (the caller sorts by collecting into a `BTreeMap`).
fn partition(df: &DataFrame, key: &str) -> PolarsResult<Vec<(AnyValue<'static>, DataFrame)>> {
    if df.height() == 0 {
        return Ok(Vec::new());
    }
    let keys = df.column(key)?;
    let by = df.group_by_stable([key])?;
    let mut parts = Vec::with_capacity(by.get_groups().len());
    for group in by.get_groups().iter() {
        let (first, part) = match group {
            GroupsIndicator::Idx((first, rows)) => {
                (first, df.take(&IdxCa::from_vec(PlSmallStr::EMPTY, rows.iter().copied().collect()))?)
            }
            GroupsIndicator::Slice([first, len]) => (first, df.slice(i64::from(first), len as usize)),
        };
        parts.push((keys.get(first as usize)?.into_static(), part));
    }
    Ok(parts)
}

/// Counts and sums over a group of typed rows.
struct Tally {
    tasks: u64,
    completed: u64,
    failed: u64,
    rejected: u64,
    fast_completed: u64,
    fast_hits: u64,
    tier_hits: [u64; 3],
    cost: u64,
    completed_cost: u64,
    completed_cost_max: Option<u64>,
    cusum_max: Option<f64>,
}

impl Tally {
    fn of(df: &DataFrame) -> PolarsResult<Tally> {
        let count = |mask: &str| -> PolarsResult<u64> { Ok(u64::from(df.column(mask)?.bool()?.sum().unwrap_or(0))) };
        let completed = df.filter(df.column("is_completed")?.bool()?)?;
        let completed_costs = completed.column("cost_micro_usd")?.u64()?;
        Ok(Tally {
            tasks: df.height() as u64,
            completed: count("is_completed")?,
            failed: count("is_failed")?,
            rejected: count("is_rejected")?,
            fast_completed: count("is_fast_completed")?,
            fast_hits: count("is_fast_hit")?,
            tier_hits: [count("is_hit_mw")?, count("is_hit_m25")?, count("is_hit_mlt")?],
            cost: df.column("cost_micro_usd")?.u64()?.iter().flatten().fold(0u64, u64::saturating_add),
            completed_cost: completed_costs.iter().flatten().fold(0u64, u64::saturating_add),
            completed_cost_max: completed_costs.max(),
            cusum_max: df.column("cusum_s")?.f64()?.max(),
        })
    }

    fn completed_cost_mean(&self) -> Option<f64> {
        ratio(self.completed_cost, self.completed)
    }
}

/// Nearest-rank 99th percentile of the fast completions' latency in a group.
fn fast_p99(group: &DataFrame) -> PolarsResult<Option<u64>> {
    let fast = group.filter(group.column("is_fast_completed")?.bool()?)?;
    let mut latencies: Vec<u64> = fast.column("latency_ms")?.u64()?.iter().flatten().collect();
    latencies.sort_unstable();
    Ok(nearest_rank(&latencies, 99))
}

/// The nearest-rank `percent`th percentile of ascending `sorted` (the value at rank
/// `ceil(n * percent / 100)`, at least the first); `None` when it is empty.
pub fn nearest_rank(sorted: &[u64], percent: usize) -> Option<u64> {
    let rank = sorted.len().saturating_mul(percent.min(100)).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{Determinism, Limits, Outcome, Score};

    pub(crate) const HEADER: &str = "task_id,at_ms,kind,domain,drift,priority,authority,needs_planning,\
        tokens_in_requested,tokens_out_requested,path,reason,cusum_s,surprise,x1_cache_miss,x2_valve,x3_drift,\
        x4_state_change,x5_uncertainty,x6_pressure,max_tokens_out,truncated_tokens,status,reject_reason,error,\
        latency_ms,cost_micro_usd,tokens_in,tokens_out,cache_hit,done_ms,day";

    /// One row of `tasks.csv` from the fields analytics reads; the others get plausible
    /// values (or stay empty for lost tasks, as the simulator writes them).
    #[expect(clippy::too_many_arguments, reason = "one task per line of a test table reads best")]
    pub(crate) fn row(
        id: u64,
        at_ms: u64,
        kind: &str,
        path: &str,
        cusum_s: &str,
        status: &str,
        latency_ms: u64,
        cost: u64,
        cache_hit: bool,
        done_ms: u64,
        day: u64,
    ) -> String {
        if status == "lost" {
            let line = format!("{id},{at_ms},{kind},facility,0.1,1,high,false,100,10,,,,,,,,,,,,,lost,,,,,,,,,");
            assert_eq!(line.split(',').count(), HEADER.split(',').count());
            return line;
        }
        let reason = if path.is_empty() { "" } else { path };
        let reject = if status == "rejected" { "halted" } else { "" };
        let line = format!(
            "{id},{at_ms},{kind},facility,0.1,1,high,false,100,10,{path},{reason},{cusum_s},0.4,1,0,0.1,0.5,0.1,0.1,\
             4096,0,{status},{reject},,{latency_ms},{cost},100,10,{cache_hit},{done_ms},{day}"
        );
        assert_eq!(line.split(',').count(), HEADER.split(',').count());
        line
    }

    /// A report for a two-minute run starting at 2025-11-24T23:59:00Z: its second minute
    /// falls on the next UTC day. Windows are 2 s wide (60 windows).
    pub(crate) fn report_data() -> ReportData {
        ReportData {
            scenario: "synthetic".into(),
            description: "two minutes across midnight <UTC>".into(),
            scenario_sha256: "ab".repeat(32),
            seed: 42,
            engine_version: "0.1.0".into(),
            build_sha256: "cd".repeat(32),
            toolchain: crate::model::Toolchain::default(),
            epoch_utc_ms: EPOCH_MS,
            duration_ms: 120_000,
            outcome: Outcome::PassWithConditions,
            score: Score(8250),
            critical_failures: vec![],
            invariants: vec![],
            latency: vec![],
            arrivals: 0,
            lost: 0,
            rejections: BTreeMap::new(),
            decisions: BTreeMap::new(),
            alerts: BTreeMap::new(),
            total_cost_micro_usd: 0,
            days: BTreeMap::new(),
            limits: Limits {
                ceiling_micro_usd: 50_000,
                daily_budget_micro_usd: 100_000,
                rate_limits: BTreeMap::from([("summary".to_string(), 2)]),
                fast_target_ppm: 900_000,
                cusum_h: 5.0,
                window: 100,
                ttft_p99_threshold_ms: 800.0,
            },
            determinism: Determinism { reference: "00".repeat(32), replays: vec![], live: None },
            faults: vec![],
            recovery_ms: None,
            l_tot: vec![],
            organism: crate::model::OrganismReport::default(),
            events: 0,
            merkle_root: "ee".repeat(32),
            ledger_public_key: "ff".repeat(32),
            ledger_receipts: 0,
            ledger_cycles: 0,
            key_id: "ff".repeat(32),
            development_key: false,
            regressions: vec![],
            policy_changes: vec![],
        }
    }

    /// 2025-11-24T23:59:00Z; day 20416 is 2025-11-24.
    pub(crate) const EPOCH_MS: u64 = 20_416 * DAY_MS + DAY_MS - 60_000;
    pub(crate) const DAY_1: u64 = 20_416;
    pub(crate) const DAY_2: u64 = 20_417;

    /// Ten tasks: window 0 (0-2 s) holds three fast completions (one a cache hit), one deep
    /// completion and one failure; window 1 one rejection; a summary completes on day 2
    /// above 90 % of the ceiling, another summary fails there; one task is lost.
    pub(crate) fn sample_csv() -> String {
        let rows = [
            row(0, 0, "chat", "fast", "0.5", "completed", 100, 1_000, false, 150, DAY_1),
            row(1, 100, "chat", "fast", "1.5", "completed", 20, 0, true, 120, DAY_1),
            row(2, 200, "query", "fast", "0.25", "completed", 300, 2_000, false, 500, DAY_1),
            row(3, 300, "query", "deep", "2.0", "completed", 1_500, 30_000, false, 1_800, DAY_1),
            row(4, 400, "chat", "fast", "0.0", "failed", 50, 0, false, 450, DAY_1),
            row(5, 2_500, "chat", "", "", "rejected", 0, 0, false, 2_505, DAY_1),
            row(6, 61_000, "summary", "deep", "6.5", "completed", 5_000, 46_000, false, 66_000, DAY_2),
            row(7, 61_500, "summary", "deep", "3.0", "failed", 4_000, 0, false, 65_500, DAY_2),
            row(8, 62_000, "chat", "fast", "1.0", "completed", 80, 60_000, false, 62_080, DAY_2),
            row(9, 63_000, "chat", "", "", "lost", 0, 0, false, 0, 0),
        ];
        let mut csv = String::from(HEADER);
        csv.push('\n');
        for r in rows {
            csv.push_str(&r);
            csv.push('\n');
        }
        csv
    }

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("tasks.csv");
        std::fs::write(&path, text).expect("temp dir is writable");
        path
    }

    #[test]
    fn window_width_gives_60_to_120_windows_for_hours_and_days() {
        assert_eq!(window_width_ms(3_600_000), 60_000, "one hour: one-minute windows");
        assert_eq!(window_width_ms(86_400_000), 1_200_000, "one day: 20-minute windows (72)");
        assert_eq!(window_width_ms(120_000), 2_000);
        for duration_ms in [180_000, 600_000, 3 * 3_600_000, 7 * 86_400_000] {
            let windows = duration_ms / window_width_ms(duration_ms);
            assert!((60..=150).contains(&windows), "{duration_ms} ms gives {windows} windows");
        }
        assert_eq!(window_width_ms(5_000), 1_000, "short runs take the narrowest width");
    }

    #[test]
    fn numbers_are_parsed_while_reading_a_well_formed_file() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let path = write(&dir, &sample_csv());
        let ctx = Ctx { path: &path };
        let raw = ctx.read(true).expect("the typed read succeeds");
        assert_eq!(raw.column("at_ms").unwrap().dtype(), &DataType::UInt64);
        assert_eq!(raw.column("cusum_s").unwrap().dtype(), &DataType::Float64);
        assert_eq!(raw.column("status").unwrap().dtype(), &DataType::String);
        let data = report_data();
        let typed = ctx.typed(&raw, &data, window_width_ms(data.duration_ms)).expect("no fallback needed");
        let text = ctx.typed(&ctx.read(false).unwrap(), &data, window_width_ms(data.duration_ms)).unwrap();
        assert!(typed.equals_missing(&text), "both reads give the same frame");
    }

    /// With a `cache_tier` column, each hit counts for its tier; without one (the sample),
    /// none does. The window's fast p99 is the nearest-rank one of its fast completions.
    #[test]
    fn hits_are_attributed_to_their_tier() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let plain = analyse(&write(&dir, &sample_csv()), &report_data()).expect("sample analyses");
        assert_eq!(plain.windows[0].tier_hits, [0, 0, 0]);
        let mut lines = sample_csv().lines().map(str::to_string).collect::<Vec<_>>();
        lines[0].push_str(",cache_tier");
        for line in &mut lines[1..] {
            let hit = line.split(',').nth(29) == Some("true");
            line.push_str(if hit { ",m25" } else { "," });
        }
        let tiered = analyse(&write(&dir, &(lines.join("\n") + "\n")), &report_data()).expect("tiered analyses");
        let w0 = &tiered.windows[0];
        assert_eq!(w0.tier_hits, [0, 1, 0]);
        assert_eq!(w0.tier_hit_rates, [Some(0.0), Some(1.0 / 3.0), Some(0.0)]);
        assert!(w0.fast_p99_ms.is_some());
        assert_eq!(plain.windows[0].fast_p99_ms, w0.fast_p99_ms);
    }

    #[test]
    fn sample_gives_exact_window_kind_and_day_figures() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let path = write(&dir, &sample_csv());
        let a = analyse(&path, &report_data()).expect("sample analyses");
        assert_eq!(a.window_ms, 2_000);
        assert_eq!(a.windows.len(), 60, "two minutes of 2 s windows; the last outcome is inside them");

        let w0 = &a.windows[0];
        assert_eq!((w0.arrived, w0.completed, w0.failed, w0.fast_completed, w0.cache_hits), (5, 4, 1, 3, 1));
        assert_eq!(w0.fast_ratio, Some(0.6), "3 fast completions of 5 outcomes (4 completed, 1 failed)");
        assert_eq!(w0.cache_hit_rate, Some(1.0 / 3.0));
        assert_eq!(w0.spend_micro_usd, 33_000, "the deep completion at 1.8 s is in window 0");
        assert_eq!(w0.cusum_max, Some(2.0));

        let w1 = &a.windows[1];
        assert_eq!((w1.arrived, w1.completed, w1.failed), (1, 0, 0));
        assert_eq!(w1.fast_ratio, None, "a window without outcomes has no ratio");
        assert_eq!(w1.cusum_max, None);

        let w30 = &a.windows[30];
        assert_eq!((w30.arrived, w30.cusum_max, w30.fast_ratio), (2, Some(6.5), None));
        let w31 = &a.windows[31];
        assert_eq!((w31.arrived, w31.cusum_max), (2, Some(1.0)), "the lost task has no CUSUM value");
        assert_eq!((w31.completed, w31.fast_ratio), (1, Some(1.0)), "task 8 completes at 62.08 s");
        let w32 = &a.windows[32];
        assert_eq!((w32.completed, w32.failed, w32.fast_ratio), (0, 1, Some(0.0)));
        let w33 = &a.windows[33];
        assert_eq!((w33.completed, w33.fast_ratio, w33.spend_micro_usd), (1, Some(0.0), 46_000));

        let chat = &a.kinds["chat"];
        assert_eq!((chat.tasks, chat.completed, chat.rejected, chat.cost_micro_usd), (6, 3, 1, 61_000));
        assert_eq!(chat.cost_micro_usd_max, Some(60_000));
        assert_eq!(chat.cost_micro_usd_mean, Some(61_000.0 / 3.0));
        let summary = &a.kinds["summary"];
        assert_eq!((summary.tasks, summary.completed, summary.cost_micro_usd), (2, 1, 46_000));

        let spend: Vec<(u64, u64)> = a.spend.iter().map(|s| (s.t_ms, s.spent_micro_usd)).collect();
        assert_eq!(spend, [(150, 1_000), (500, 3_000), (1_800, 33_000), (62_080, 60_000), (66_000, 106_000)]);
        assert_eq!(a.latency_fast_ms, [100, 20, 300, 80]);
        assert_eq!(a.latency_deep_ms, [1_500, 5_000]);
    }

    #[test]
    fn missing_day_column_is_derived_from_the_epoch() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let csv: String =
            sample_csv().lines().map(|l| format!("{}\n", &l[..l.rfind(',').unwrap_or(l.len())])).collect();
        let path = write(&dir, &csv);
        let a = analyse(&path, &report_data()).expect("analyses without `day`");
        let days: Vec<u64> = a.spend.iter().map(|s| s.day).collect();
        assert_eq!(days, [DAY_1, DAY_1, DAY_1, DAY_2, DAY_2]);
    }

    #[test]
    fn missing_column_is_named() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let csv = sample_csv().replace("cost_micro_usd", "cost");
        let path = write(&dir, &csv);
        let error = analyse(&path, &report_data()).expect_err("no cost column");
        assert!(matches!(&error, AnalyticsError::MissingColumn { column, .. } if column == "cost_micro_usd"));
        let message = error.to_string();
        assert!(message.contains("cost_micro_usd") && message.contains("tasks.csv"), "{message}");
    }

    #[test]
    fn bad_value_names_column_and_row() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let csv = sample_csv().replacen(",1500,30000,", ",1500,lots,", 1);
        let path = write(&dir, &csv);
        let message = analyse(&path, &report_data()).expect_err("bad cost").to_string();
        assert!(message.contains("column `cost_micro_usd`: row 4: `lots`"), "{message}");

        let csv = sample_csv().replacen(",completed,", ",finished,", 1);
        let path = write(&dir, &csv);
        let message = analyse(&path, &report_data()).expect_err("bad status").to_string();
        assert!(message.contains("column `status`: row 1: `finished`"), "{message}");
    }

    #[test]
    fn outcome_far_beyond_the_run_is_an_error_not_an_allocation() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let mut csv = String::from(HEADER);
        csv.push('\n');
        csv.push_str(&row(0, 0, "chat", "fast", "0", "completed", 1, 1, false, u64::MAX / 2, DAY_1));
        let path = write(&dir, &csv);
        let message = analyse(&path, &report_data()).expect_err("absurd done_ms").to_string();
        assert!(message.contains("column `done_ms`"), "{message}");
    }

    #[test]
    fn unreadable_file_is_named() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let path = dir.path().join("absent.csv");
        let message = analyse(&path, &report_data()).expect_err("no file").to_string();
        assert!(message.starts_with(&path.display().to_string()), "{message}");
    }
}
