//! What every trace reader shares: errors naming the row, the arrival-order and span
//! check, token counts, exact decimal times, and CSV records read into one buffer.
//!
//! Guarantees: every error names the file, the 1-based line and the column (or key); no
//! function here panics on file input.

use super::{WorkloadError, MAX_TRACE_SPAN_MS};
use std::io::Read;

/// The error of a bad value in the row on `line`, in `column` (or key).
pub(super) fn row_error(file: &str, line: u64, column: &str, message: impl Into<String>) -> WorkloadError {
    WorkloadError::Row { file: file.to_string(), line, column: column.to_string(), message: message.into() }
}

/// Arrival order and span, checked row by row so that an error names the row.
pub(super) struct Clock<'a> {
    file: &'a str,
    /// The time column (or key).
    column: &'static str,
    first: Option<i128>,
    previous: Option<i128>,
}

impl<'a> Clock<'a> {
    pub(super) fn new(file: &'a str, column: &'static str) -> Clock<'a> {
        Clock { file, column, first: None, previous: None }
    }

    /// The time since the first row, in ms, of the row on `line` at `micros` (any epoch):
    /// an error when it is earlier than the row above or more than `MAX_TRACE_SPAN_MS`
    /// after the first.
    pub(super) fn offset_ms(&mut self, line: u64, micros: i128) -> Result<u64, WorkloadError> {
        if let Some(back) = self.previous.map(|p| p - micros).filter(|back| *back > 0) {
            let back = if back % 1000 == 0 { format!("{}", back / 1000) } else { format!("{:.3}", back as f64 / 1e3) };
            return Err(row_error(
                self.file,
                line,
                self.column,
                format!("goes back in time, {back} ms before the row above; a trace is in arrival order"),
            ));
        }
        let first = *self.first.get_or_insert(micros);
        let offset = (micros - first) / 1000;
        if offset > i128::from(MAX_TRACE_SPAN_MS) {
            return Err(row_error(
                self.file,
                line,
                self.column,
                format!("is {} days after the first row; a trace spans at most 366 days", offset / 86_400_000),
            ));
        }
        self.previous = Some(micros);
        Ok(offset as u64)
    }
}

/// A token count: a non-negative integer that fits 32 bits.
pub(super) fn token_count(text: &str, file: &str, line: u64, column: &str) -> Result<u32, WorkloadError> {
    if text.starts_with('-') {
        return Err(row_error(file, line, column, format!("{text:?} is negative; a token count is at least 0")));
    }
    let n = text.parse::<u64>().map_err(|e| row_error(file, line, column, format!("{text:?}: {e}")))?;
    u32::try_from(n).map_err(|_| row_error(file, line, column, format!("{n} is more than {} tokens", u32::MAX)))
}

/// Whole microseconds of a non-negative decimal number of a unit with `places` decimal
/// places to the microsecond (6 for seconds, 3 for ms): exact for plain decimals (`5`,
/// `5.25`; digits beyond the microsecond are dropped), rounded for other float forms
/// (`1.5e3`). The error says what is wrong.
pub(super) fn decimal_micros(text: &str, places: u32) -> Result<i128, String> {
    if text.starts_with('-') {
        return Err("is negative".into());
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (1..=18).contains(&whole.len()) && digits(whole) && digits(fraction) {
        let kept: String = fraction.chars().chain(std::iter::repeat('0')).take(places as usize).collect();
        let whole: i128 = whole.parse().map_err(|_| "is not a number".to_string())?;
        let kept: i128 = if kept.is_empty() { 0 } else { kept.parse().map_err(|_| "is not a number".to_string())? };
        return Ok(whole * 10i128.pow(places) + kept);
    }
    let value: f64 = text.parse().map_err(|_| "is not a number".to_string())?;
    let scaled = value * 10f64.powi(places as i32);
    if !(scaled.is_finite() && (0.0..1e30).contains(&scaled)) {
        return Err("is not a time a trace can have".into());
    }
    Ok(scaled.round() as i128)
}

/// A CSV reader over `input` (fields trimmed) and its header; an unreadable header is an
/// error naming the file.
pub(super) fn csv_stream<R: Read>(input: R, file: &str) -> Result<(csv::Reader<R>, Vec<String>), WorkloadError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(input);
    let header = reader
        .headers()
        .map_err(|e| WorkloadError::Format { file: file.to_string(), message: format!("unreadable header: {e}") })?
        .iter()
        .map(str::to_string)
        .collect();
    Ok((reader, header))
}

/// Reads the next record into `record` (one buffer for the whole file); `false` at the
/// end; an unreadable record is an error naming its line.
pub(super) fn next_record<R: Read>(
    reader: &mut csv::Reader<R>,
    record: &mut csv::StringRecord,
    file: &str,
) -> Result<bool, WorkloadError> {
    reader.read_record(record).map_err(|e| {
        let line = e.position().map_or(0, |p| p.line());
        row_error(file, line, "-", e.to_string())
    })
}

/// The 1-based line a record starts on.
pub(super) fn line_of(record: &csv::StringRecord) -> u64 {
    record.position().map_or(0, |p| p.line())
}

/// An error unless `header` is `expected`.
pub(super) fn expect_header(header: &[String], expected: &[&str], file: &str) -> Result<(), WorkloadError> {
    if header == expected {
        return Ok(());
    }
    Err(WorkloadError::Format {
        file: file.to_string(),
        message: format!("header is {header:?}, expected {expected:?}"),
    })
}
