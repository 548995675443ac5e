//! Time to first token against prompt size (plots/ttft_vs_tokens_in.svg): the completed
//! uncached tasks of each path, bucketed by `tokens_in` in powers of two, with the median and
//! the 99th percentile of their `ttft_ms` per bucket.
//!
//! Guarantees: only rows with status `completed`, `cache_hit` not `true` (a cached answer
//! comes whole: its TTFT is its latency, not a prefill), a path, and both `ttft_ms` and
//! `tokens_in` are counted; a bucket of fewer than [`MIN_BUCKET_TASKS`] such tasks is left
//! out; percentiles are nearest-rank over the bucket's exact values; buckets come in
//! prompt-size order. A `tasks.csv` without a `ttft_ms` column (a run from before it was
//! recorded) gives `None`, never an error; one with it but without `tokens_in` is an
//! [`AnalyticsError::MissingColumn`], and a value of either that is not an integer an
//! [`AnalyticsError::BadValue`] naming its row.

use std::collections::BTreeMap;

use polars::prelude::*;
use seedcore_engine::task::PerPath;

use super::{is, nearest_rank, partition, AnalyticsError, Ctx, Presence};

/// A bucket with fewer completed uncached tasks than this is left out: its percentiles
/// would be one or two tasks' values.
pub const MIN_BUCKET_TASKS: usize = 5;

/// The time to first token of one path's completed uncached tasks whose prompt falls in one
/// power-of-two bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TtftBucket {
    /// The bucket: prompts of `2^log2` to `2^(log2 + 1) - 1` tokens (bucket 0 also holds
    /// empty prompts), see [`tokens_in_log2`].
    pub log2: u64,
    /// Tasks in the bucket, at least [`MIN_BUCKET_TASKS`].
    pub tasks: u64,
    /// Nearest-rank median of their time to first token, ms.
    pub p50_ms: u64,
    /// Nearest-rank 99th percentile of their time to first token, ms.
    pub p99_ms: u64,
}

impl TtftBucket {
    /// The bucket `log2` of the time-to-first-token values `ttft_ms` (in any order; sorted
    /// here), or `None` when it holds fewer than [`MIN_BUCKET_TASKS`].
    pub fn of(log2: u64, ttft_ms: &mut [u64]) -> Option<TtftBucket> {
        if ttft_ms.len() < MIN_BUCKET_TASKS {
            return None;
        }
        ttft_ms.sort_unstable();
        Some(TtftBucket {
            log2,
            tasks: ttft_ms.len() as u64,
            p50_ms: nearest_rank(ttft_ms, 50)?,
            p99_ms: nearest_rank(ttft_ms, 99)?,
        })
    }
}

/// The power-of-two bucket of a prompt of `tokens_in` tokens: `floor(log2(tokens_in))`, and
/// 0 for an empty prompt (bucket 0 holds prompts of 0 and 1 token).
pub fn tokens_in_log2(tokens_in: u64) -> u64 {
    u64::from(tokens_in.max(1).ilog2())
}

impl Ctx<'_> {
    /// The typed frame's time-to-first-token columns, when `raw` has a `ttft_ms` column
    /// (none otherwise): `ttft_ms`, the bucket of `tokens_in` (`tokens_in_log2`), and per path
    /// the mask of the completed uncached tasks that have both (`is_ttft_fast`,
    /// `is_ttft_deep`). `paths` are the fast and the deep path's row masks.
    pub(super) fn ttft_columns(
        &self,
        raw: &DataFrame,
        completed: &BooleanChunked,
        paths: [&BooleanChunked; 2],
        hit: &BooleanChunked,
    ) -> Result<Vec<Column>, AnalyticsError> {
        if raw.column("ttft_ms").is_err() {
            return Ok(Vec::new());
        }
        let ttft = self.cast(raw, "ttft_ms", &DataType::UInt64, Presence::Optional)?;
        let tokens_in = self.cast(raw, "tokens_in", &DataType::UInt64, Presence::Optional)?;
        let measured = &ttft.is_not_null() & &tokens_in.is_not_null();
        let uncached = &(completed & &measured) & &!hit;
        let log2: UInt64Chunked =
            tokens_in.u64().map_err(|e| self.polars(e))?.iter().map(|t| t.map(tokens_in_log2)).collect();
        let [fast, deep] = paths;
        Ok(vec![
            ttft,
            log2.with_name("tokens_in_log2".into()).into_column(),
            is("is_ttft_fast", &uncached & fast),
            is("is_ttft_deep", &uncached & deep),
        ])
    }

    /// Per path, the buckets of at least [`MIN_BUCKET_TASKS`] completed uncached tasks, in
    /// prompt-size order; `None` when the typed frame has no time-to-first-token columns.
    pub(super) fn ttft_by_tokens_in(
        &self,
        tasks: &DataFrame,
    ) -> Result<Option<PerPath<Vec<TtftBucket>>>, AnalyticsError> {
        if tasks.column("ttft_ms").is_err() {
            return Ok(None);
        }
        let p = |e| self.polars(e);
        let buckets = |mask: &str| -> Result<Vec<TtftBucket>, AnalyticsError> {
            let rows = tasks.filter(tasks.column(mask).map_err(p)?.bool().map_err(p)?).map_err(p)?;
            let mut buckets: BTreeMap<u64, TtftBucket> = BTreeMap::new();
            for (key, group) in partition(&rows, "tokens_in_log2").map_err(p)? {
                let Some(log2) = key.extract::<u64>() else { continue };
                let column = group.column("ttft_ms").map_err(p)?;
                let mut ttft_ms: Vec<u64> = column.u64().map_err(p)?.iter().flatten().collect();
                if let Some(bucket) = TtftBucket::of(log2, &mut ttft_ms) {
                    buckets.insert(log2, bucket);
                }
            }
            Ok(buckets.into_values().collect())
        };
        Ok(Some(PerPath { fast: buckets("is_ttft_fast")?, deep: buckets("is_ttft_deep")? }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::analyse;
    use super::super::tests::report_data;
    use super::*;
    use std::path::PathBuf;

    /// One row of a current `tasks.csv` (the simulator's columns), with the fields the
    /// time-to-first-token aggregation reads and every other field empty.
    pub(crate) struct Task<'a> {
        pub path: &'a str,
        pub status: &'a str,
        pub ttft_ms: Option<u64>,
        pub tokens_in: u64,
        pub cache_hit: bool,
    }

    /// `tasks.csv` with the simulator's header and one row per task, arriving 100 ms apart
    /// and done 50 ms after arriving (all within the first minute: no charge, no day
    /// column value).
    pub(crate) fn csv(tasks: &[Task<'_>]) -> String {
        let columns = seedcore_sim::tasks::COLUMNS;
        let mut out = columns.join(",");
        out.push('\n');
        for (i, task) in tasks.iter().enumerate() {
            let at_ms = 100 * i as u64;
            let field = |name: &str| -> String {
                match name {
                    "task_id" => i.to_string(),
                    "at_ms" => at_ms.to_string(),
                    "kind" => "chat".into(),
                    "path" => task.path.into(),
                    "status" => task.status.into(),
                    "latency_ms" => task.ttft_ms.map_or_else(String::new, |ttft| (ttft + 40).to_string()),
                    "ttft_ms" => task.ttft_ms.map_or_else(String::new, |ttft| ttft.to_string()),
                    "tokens_in" => task.tokens_in.to_string(),
                    "cache_hit" => task.cache_hit.to_string(),
                    "done_ms" => (at_ms + 50).to_string(),
                    _ => String::new(),
                }
            };
            let row: Vec<String> = columns.iter().map(|&name| field(name)).collect();
            out.push_str(&row.join(","));
            out.push('\n');
        }
        out
    }

    /// `count` completed uncached tasks on `path` with prompts of `tokens_in` tokens and a
    /// time to first token of `ttft_ms(i)` for the `i`th.
    pub(crate) fn completed<'a>(
        path: &'a str,
        tokens_in: u64,
        count: u64,
        ttft_ms: impl Fn(u64) -> u64,
    ) -> Vec<Task<'a>> {
        (0..count)
            .map(|i| Task { path, status: "completed", ttft_ms: Some(ttft_ms(i)), tokens_in, cache_hit: false })
            .collect()
    }

    fn analysed(text: &str) -> Result<Option<PerPath<Vec<TtftBucket>>>, AnalyticsError> {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let path: PathBuf = dir.path().join("tasks.csv");
        std::fs::write(&path, text).expect("temp dir is writable");
        analyse(&path, &report_data()).map(|a| a.ttft_by_tokens_in)
    }

    #[test]
    fn prompts_are_bucketed_by_powers_of_two() {
        assert_eq!([0, 1, 2, 3, 4, 127, 128, 255, 256].map(tokens_in_log2), [0, 0, 1, 1, 2, 6, 7, 7, 8]);
        assert_eq!(tokens_in_log2(u64::MAX), 63);
    }

    #[test]
    fn percentiles_are_nearest_rank_and_small_buckets_are_left_out() {
        let bucket = TtftBucket::of(3, &mut [60, 10, 50, 20, 40, 30]).expect("six tasks");
        assert_eq!(bucket, TtftBucket { log2: 3, tasks: 6, p50_ms: 30, p99_ms: 60 });
        let mut hundred: Vec<u64> = (1..=100).rev().collect();
        let bucket = TtftBucket::of(0, &mut hundred).expect("a hundred tasks");
        assert_eq!((bucket.p50_ms, bucket.p99_ms), (50, 99));
        assert_eq!(TtftBucket::of(3, &mut [1, 2, 3, 4]), None, "four tasks are too few");
        assert_eq!(nearest_rank(&[], 50), None);
    }

    /// The fast path's prompts of 64 to 127 tokens (six tasks, with a cached answer and a
    /// failure that do not count) and of 512 to 1023 (five), the deep path's of 1024 to 2047
    /// (five); the fast bucket of 128 to 255 tokens holds four and is left out.
    #[test]
    fn a_small_tasks_csv_gives_exact_buckets_per_path() {
        let mut tasks = completed("fast", 64, 3, |i| 10 * (i + 1));
        tasks.extend(completed("fast", 127, 3, |i| 10 * (i + 4)));
        tasks.push(Task { path: "fast", status: "completed", ttft_ms: Some(1), tokens_in: 100, cache_hit: true });
        tasks.push(Task { path: "fast", status: "failed", ttft_ms: None, tokens_in: 100, cache_hit: false });
        tasks.extend(completed("fast", 200, 4, |_| 70));
        tasks.extend(completed("fast", 700, 5, |i| 100 * (5 - i)));
        tasks.extend(completed("deep", 1_500, 5, |i| 3_000 + i));
        tasks.push(Task { path: "", status: "rejected", ttft_ms: None, tokens_in: 0, cache_hit: false });
        let buckets = analysed(&csv(&tasks)).expect("analyses").expect("a ttft_ms column");
        assert_eq!(
            buckets.fast,
            [
                TtftBucket { log2: 6, tasks: 6, p50_ms: 30, p99_ms: 60 },
                TtftBucket { log2: 9, tasks: 5, p50_ms: 300, p99_ms: 500 },
            ]
        );
        assert_eq!(buckets.deep, [TtftBucket { log2: 10, tasks: 5, p50_ms: 3_002, p99_ms: 3_004 }]);
    }

    /// Numbers parsed while reading and the text read with its casts give the same frame.
    #[test]
    fn both_reads_give_the_same_ttft_columns() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let path = dir.path().join("tasks.csv");
        std::fs::write(&path, csv(&completed("deep", 3_000, 5, |i| 2_900 + i))).expect("temp dir is writable");
        let ctx = Ctx { path: &path };
        let data = report_data();
        let window_ms = super::super::window_width_ms(data.duration_ms);
        let typed = ctx.typed(&ctx.read(true).expect("typed read"), &data, window_ms).expect("typed frame");
        let text = ctx.typed(&ctx.read(false).expect("text read"), &data, window_ms).expect("typed frame");
        assert_eq!(typed.column("ttft_ms").expect("a ttft_ms column").dtype(), &DataType::UInt64);
        assert!(typed.equals_missing(&text), "both reads give the same frame");
    }

    #[test]
    fn a_tasks_csv_without_ttft_has_none_and_still_analyses() {
        assert_eq!(analysed(&super::super::tests::sample_csv()).expect("an older tasks.csv analyses"), None);
        let empty = analysed(&csv(&[])).expect("a header alone analyses").expect("a ttft_ms column");
        assert!(empty.fast.is_empty() && empty.deep.is_empty());
    }

    #[test]
    fn bad_ttft_values_name_the_column_and_row() {
        let mut tasks = completed("fast", 64, 5, |_| 10);
        tasks[2].ttft_ms = Some(12);
        let text = csv(&tasks).replacen(",12,", ",soon,", 1);
        let message = analysed(&text).expect_err("not a number").to_string();
        assert!(message.contains("column `ttft_ms`: row 3: `soon`"), "{message}");
        let text = csv(&tasks).replacen("tokens_in,", "prompt,", 1);
        let error = analysed(&text).expect_err("no tokens_in beside ttft_ms");
        assert!(matches!(&error, AnalyticsError::MissingColumn { column, .. } if column == "tokens_in"), "{error}");
    }
}
