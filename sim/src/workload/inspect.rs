//! What a trace holds, before it is replayed (`seedcore trace inspect`): rows, span, arrival
//! rates, token percentiles, repeats, failed rows, labels and the fields the enrichment
//! fills; and the format of a file, guessed from its name and first line.
//!
//! Guarantees: `inspect` is a pure function of the loaded trace and its format; it holds
//! one number per row per measure (no per-row strings); maps are ordered (BTreeMap).

use super::{azure, burstgpt, LoadedTrace, TraceFormat, TraceRows, WorkloadError, CANONICAL_HEADER};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read};
use std::path::Path;

/// Percentiles (nearest rank), maximum and mean of a token count.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub p50: u32,
    pub p90: u32,
    pub p99: u32,
    pub max: u32,
    pub mean: f64,
}

/// The most arrivals in any window of `window_ms` (windows start at an arrival).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Peak {
    pub window_ms: u64,
    pub arrivals: u64,
    /// The earliest such window's start, since the first row.
    pub at_ms: u64,
    /// That start in UTC (RFC 3339, ms), when the trace has wall-clock times.
    pub at_utc: Option<String>,
}

/// What a trace holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceStats {
    pub format: &'static str,
    pub rows: u64,
    /// First arrival to last.
    pub span_ms: u64,
    /// The first arrival in Unix ms and RFC 3339, when the trace has wall-clock times.
    pub start_utc_ms: Option<u64>,
    pub start_utc: Option<String>,
    /// Rows per second of span; `None` when the span is 0.
    pub mean_rate_per_s: Option<f64>,
    pub peak_second: Peak,
    pub peak_minute: Peak,
    pub tokens_in: Spread,
    pub tokens_out: Spread,
    /// Rows whose signature equals an earlier row's; `None` when the format carries no
    /// signature (the enrichment then draws repeats with `repeat_rate`).
    pub repeats: Option<u64>,
    /// Rows marked failed (BurstGPT's `Response tokens` 0, canonical `failed`).
    pub failed: u64,
    /// BurstGPT: rows per `Model` and per `Log Type` (empty otherwise).
    pub models: BTreeMap<String, u64>,
    pub log_types: BTreeMap<String, u64>,
    /// The task fields the enrichment fills for this trace.
    pub enrichment_fills: Vec<&'static str>,
}

/// RFC 3339 UTC time of Unix ms, with ms.
pub fn utc_text(unix_ms: u64) -> Option<String> {
    let time = chrono::DateTime::from_timestamp_millis(i64::try_from(unix_ms).ok()?)?;
    Some(time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The spread of `values` (all zero when empty).
fn spread(mut values: Vec<u32>) -> Spread {
    values.sort_unstable();
    let n = values.len();
    if n == 0 {
        return Spread { p50: 0, p90: 0, p99: 0, max: 0, mean: 0.0 };
    }
    let rank = |p: f64| values[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    let sum: u64 = values.iter().map(|v| u64::from(*v)).sum();
    Spread { p50: rank(0.50), p90: rank(0.90), p99: rank(0.99), max: values[n - 1], mean: sum as f64 / n as f64 }
}

/// The peak of `offsets` (in arrival order) over windows of `window_ms`.
fn peak(offsets: &[u64], window_ms: u64, start_utc_ms: Option<u64>) -> Peak {
    let (mut arrivals, mut at_ms, mut end) = (0, 0, 0);
    for (i, start) in offsets.iter().enumerate() {
        let until = start.saturating_add(window_ms);
        end = end.max(i);
        while end < offsets.len() && offsets[end] < until {
            end += 1;
        }
        if end - i > arrivals {
            (arrivals, at_ms) = (end - i, *start);
        }
    }
    let at_utc = start_utc_ms.and_then(|s| utc_text(s.saturating_add(at_ms)));
    Peak { window_ms, arrivals: arrivals as u64, at_ms, at_utc }
}

/// Rows whose signature equals an earlier row's, when the format carries signatures.
fn repeats(rows: &TraceRows, format: TraceFormat) -> Option<u64> {
    if !matches!(format, TraceFormat::Canonical | TraceFormat::Mooncake) {
        return None;
    }
    let mut seen = BTreeSet::new();
    let signatures = (0..rows.len()).filter_map(|i| rows.request(i).2);
    Some(signatures.filter(|s| !seen.insert(*s)).count() as u64)
}

/// What `trace` (read in `format`) holds.
pub fn inspect(trace: &LoadedTrace, format: TraceFormat) -> TraceStats {
    let rows = &trace.rows;
    let offsets: Vec<u64> = (0..rows.len()).map(|i| rows.offset_ms(i)).collect();
    let span_ms = trace.span_ms();
    let mut fills = format.lacks().to_vec();
    if format == TraceFormat::Mooncake && (0..rows.len()).any(|i| rows.request(i).2.is_none()) {
        fills.push("signature");
    }
    TraceStats {
        format: format.as_str(),
        rows: rows.len() as u64,
        span_ms,
        start_utc_ms: trace.start_utc_ms,
        start_utc: trace.start_utc_ms.and_then(utc_text),
        mean_rate_per_s: (span_ms > 0).then(|| rows.len() as f64 / (span_ms as f64 / 1e3)),
        peak_second: peak(&offsets, 1_000, trace.start_utc_ms),
        peak_minute: peak(&offsets, 60_000, trace.start_utc_ms),
        tokens_in: spread((0..rows.len()).map(|i| rows.request(i).0).collect()),
        tokens_out: spread((0..rows.len()).map(|i| rows.request(i).1).collect()),
        repeats: repeats(rows, format),
        failed: rows.failed_count() as u64,
        models: trace.models.clone(),
        log_types: trace.log_types.clone(),
        enrichment_fills: fills,
    }
}

/// The fields of a CSV header line, trimmed and unquoted.
fn header_fields(line: &str) -> Vec<&str> {
    line.split(',').map(|f| f.trim().trim_matches('"')).collect()
}

/// The format of the trace at `path` and how it was told: a `.jsonl` file is mooncake;
/// otherwise the first line decides (the Azure, BurstGPT or canonical header, or a JSON
/// object for mooncake). An unreadable file or an unknown first line is an error naming
/// the file.
pub fn guess_format(path: &Path) -> Result<(TraceFormat, &'static str), WorkloadError> {
    let file = path.display().to_string();
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("jsonl")) {
        return Ok((TraceFormat::Mooncake, "from the .jsonl extension"));
    }
    let read_error = |message: String| WorkloadError::Read { file: file.clone(), message };
    let opened = std::fs::File::open(path).map_err(|e| read_error(e.to_string()))?;
    let mut first = String::new();
    std::io::BufReader::new(opened.take(1 << 20)).read_line(&mut first).map_err(|e| read_error(e.to_string()))?;
    let first = first.trim_start_matches('\u{feff}').trim();
    let fields = header_fields(first);
    let with_failed: Vec<&str> = CANONICAL_HEADER.iter().copied().chain(["failed"]).collect();
    let format = if fields == azure::HEADER {
        TraceFormat::Azure
    } else if fields == burstgpt::HEADER {
        TraceFormat::Burstgpt
    } else if fields == CANONICAL_HEADER || fields == with_failed {
        TraceFormat::Canonical
    } else if first.starts_with('{') {
        return Ok((TraceFormat::Mooncake, "from the first line, a JSON object"));
    } else {
        return Err(WorkloadError::Format {
            file,
            message: format!(
                "cannot tell the format from the first line {:?}; give --format ({})",
                first.chars().take(200).collect::<String>(),
                TraceFormat::names()
            ),
        });
    };
    Ok((format, "from the header"))
}

#[cfg(test)]
mod tests {
    use super::super::read_trace;
    use super::*;

    #[test]
    fn a_burstgpt_sample_is_measured() {
        let text = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n\
                    5,ChatGPT,100,20,120,Conversation log\n\
                    5.5,GPT-4,300,0,300,API log\n\
                    6,ChatGPT,200,40,240,Conversation log\n\
                    65,ChatGPT,400,80,480,Conversation log\n";
        let trace = read_trace(text.as_bytes(), "b.csv", TraceFormat::Burstgpt).unwrap();
        let stats = inspect(&trace, TraceFormat::Burstgpt);
        assert_eq!((stats.rows, stats.span_ms, stats.failed), (4, 60_000, 1));
        assert_eq!(stats.mean_rate_per_s, Some(4.0 / 60.0));
        assert_eq!((stats.peak_second.arrivals, stats.peak_second.at_ms), (2, 0));
        assert_eq!((stats.peak_minute.arrivals, stats.peak_minute.at_ms), (3, 0));
        assert_eq!((stats.tokens_in.p50, stats.tokens_in.p99, stats.tokens_in.max), (200, 400, 400));
        assert_eq!(stats.tokens_out.mean, 35.0);
        assert_eq!(stats.repeats, None);
        assert_eq!(stats.models, BTreeMap::from([("ChatGPT".to_string(), 3), ("GPT-4".to_string(), 1)]));
        assert_eq!(stats.log_types.get("API log"), Some(&1));
        assert_eq!(stats.enrichment_fills.len(), 7);
        assert_eq!(stats.start_utc, None);
    }

    #[test]
    fn mooncake_repeats_are_counted_by_prompt() {
        let text = concat!(
            "{\"timestamp\": 0, \"input_length\": 600, \"output_length\": 5, \"hash_ids\": [1, 2]}\n",
            "{\"timestamp\": 10, \"input_length\": 600, \"output_length\": 7, \"hash_ids\": [1, 2]}\n",
            "{\"timestamp\": 20, \"input_length\": 600, \"output_length\": 7, \"hash_ids\": [1, 3]}\n",
            "{\"timestamp\": 30, \"input_length\": 9, \"output_length\": 7}\n",
        );
        let trace = read_trace(text.as_bytes(), "m.jsonl", TraceFormat::Mooncake).unwrap();
        let stats = inspect(&trace, TraceFormat::Mooncake);
        assert_eq!(stats.repeats, Some(1));
        assert_eq!(stats.enrichment_fills.last(), Some(&"signature"), "a row lacks hash_ids");
        assert_eq!(stats.peak_second.arrivals, 4);
    }

    #[test]
    fn an_azure_sample_has_a_utc_start() {
        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
                    2024-05-10 00:00:00.009930+00:00,10,1\n\
                    2024-05-10 00:00:01.509930+00:00,10,1\n";
        let trace = read_trace(text.as_bytes(), "a.csv", TraceFormat::Azure).unwrap();
        let stats = inspect(&trace, TraceFormat::Azure);
        assert_eq!(stats.start_utc.as_deref(), Some("2024-05-10T00:00:00.009Z"));
        assert_eq!(stats.peak_second.at_utc.as_deref(), Some("2024-05-10T00:00:00.009Z"));
        assert_eq!(stats.mean_rate_per_s, Some(2.0 / 1.5));
    }

    #[test]
    fn formats_are_guessed_from_name_and_first_line() {
        let dir = std::env::temp_dir().join(format!("seedcore-guess-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let canonical = CANONICAL_HEADER.join(",");
        let cases: [(&str, String, Option<TraceFormat>); 7] = [
            ("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n".into(), Some(TraceFormat::Azure)),
            ("b.csv", format!("{}\n", burstgpt::HEADER.join(",")), Some(TraceFormat::Burstgpt)),
            ("c.csv", format!("{canonical}\n"), Some(TraceFormat::Canonical)),
            ("d.csv", format!("{canonical},failed\n"), Some(TraceFormat::Canonical)),
            ("e.jsonl", String::new(), Some(TraceFormat::Mooncake)),
            ("f.txt", "{\"timestamp\": 0}\n".into(), Some(TraceFormat::Mooncake)),
            ("g.csv", "time,tokens\n".into(), None),
        ];
        for (name, text, expected) in cases {
            std::fs::write(dir.join(name), text).unwrap();
            let guessed = guess_format(&dir.join(name)).map(|(f, _)| f).map_err(|e| e.to_string());
            match expected {
                Some(format) => assert_eq!(guessed, Ok(format), "{name}"),
                None => assert!(guessed.unwrap_err().contains("cannot tell the format"), "{name}"),
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
