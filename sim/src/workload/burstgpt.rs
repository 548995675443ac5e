//! BurstGPT (`Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`, as in
//! the published `BurstGPT_1.csv`): `Timestamp` in seconds from the trace's start.
//!
//! Guarantees: a row with `Response tokens` 0 (a request that failed when it was recorded)
//! is kept as an arrival and marked failed; `Total tokens` is checked to be a number and
//! not compared with the others; `Model` and `Log Type` are kept as counts, never per row.

use super::fields::{csv_stream, decimal_micros, expect_header, line_of, next_record, row_error, token_count, Clock};
use super::{LoadedTrace, TraceRow, TraceRows, WorkloadError};
use std::collections::BTreeMap;
use std::io::Read;

/// The header of a BurstGPT trace.
pub(super) const HEADER: [&str; 6] =
    ["Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type"];

/// The most distinct `Model` or `Log Type` values counted; later ones count as `(other)`
/// (a damaged file cannot make the counts grow with its rows).
const MAX_LABELS: usize = 1_000;

/// Counts one more row of `label`.
fn tally(counts: &mut BTreeMap<String, u64>, label: &str) {
    if let Some(n) = counts.get_mut(label) {
        *n += 1;
    } else if counts.len() < MAX_LABELS {
        counts.insert(label.to_string(), 1);
    } else {
        *counts.entry("(other)".to_string()).or_insert(0) += 1;
    }
}

/// A BurstGPT trace: offsets since the first row, failed rows marked, labels counted.
pub(super) fn read(input: impl Read, file: &str) -> Result<LoadedTrace, WorkloadError> {
    let (mut reader, header) = csv_stream(input, file)?;
    expect_header(&header, &HEADER, file)?;
    let mut clock = Clock::new(file, HEADER[0]);
    let (mut rows, mut models, mut log_types) = (Vec::new(), BTreeMap::new(), BTreeMap::new());
    let mut record = csv::StringRecord::new();
    while next_record(&mut reader, &mut record, file)? {
        let line = line_of(&record);
        let field = |index: usize| record.get(index).unwrap_or("");
        let micros = decimal_micros(field(0), 6).map_err(|m| {
            row_error(file, line, HEADER[0], format!("{:?} {m}; it is seconds from the start", field(0)))
        })?;
        let offset_ms = clock.offset_ms(line, micros)?;
        let tokens_in = token_count(field(2), file, line, HEADER[2])?;
        let tokens_out = token_count(field(3), file, line, HEADER[3])?;
        if !field(4).parse::<f64>().is_ok_and(f64::is_finite) {
            return Err(row_error(file, line, HEADER[4], format!("{:?} is not a number", field(4))));
        }
        tally(&mut models, field(1));
        tally(&mut log_types, field(5));
        rows.push(TraceRow { offset_ms, tokens_in, tokens_out, signature: None, failed: tokens_out == 0 });
    }
    let mut trace = LoadedTrace::new(TraceRows::Foreign(rows), None);
    trace.models = models;
    trace.log_types = log_types;
    Ok(trace)
}
