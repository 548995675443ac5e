//! The Azure LLM inference trace (`TIMESTAMP,ContextTokens,GeneratedTokens`), in both
//! published timestamp forms: 2023 `2023-11-16 18:15:46.6805900` and 2024
//! `2024-05-10 00:00:00.009930+00:00`.
//!
//! Guarantees: a timestamp is read exactly (to the microsecond, no float), converted to
//! UTC; the 2023 form gives the offsets it always gave (the microseconds since the first
//! row, divided down to ms).

use super::fields::{csv_stream, expect_header, line_of, next_record, row_error, token_count, Clock};
use super::{LoadedTrace, TraceRow, TraceRows, WorkloadError};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use std::io::Read;

/// The header of an Azure trace.
pub(super) const HEADER: [&str; 3] = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"];

/// The shape of a timestamp, for errors.
const SHAPE: &str = "is not a timestamp YYYY-MM-DD HH:MM:SS[.fraction][Z|+HH:MM|-HH:MM|+HHMM]";

/// Unix microseconds of an Azure timestamp: `YYYY-MM-DD HH:MM:SS` (`T` instead of the space
/// is accepted), an optional fraction of a second of 1 to 9 digits (truncated to the
/// microsecond), and an optional UTC offset `Z`, `+HH:MM`, `-HH:MM`, `+HHMM` or `-HHMM`
/// (without one, the time is UTC). The error says what is wrong.
pub fn utc_micros(text: &str) -> Result<i64, String> {
    let bytes = text.as_bytes();
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if bytes.len() < 19 || separators.iter().any(|(at, c)| bytes[*at] != *c) || !matches!(bytes[10], b' ' | b'T') {
        return Err(SHAPE.into());
    }
    let number = |from: usize, len: usize| -> Result<u32, String> {
        let digits = text.get(from..from + len).filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
        digits.and_then(|d| d.parse().ok()).ok_or_else(|| SHAPE.to_string())
    };
    let date = NaiveDate::from_ymd_opt(number(0, 4)? as i32, number(5, 2)?, number(8, 2)?)
        .ok_or_else(|| "is not a date of the calendar".to_string())?;
    let (hour, minute, second) = (number(11, 2)?, number(14, 2)?, number(17, 2)?);
    // Bytes 0 to 18 are ASCII now: 19 is a character boundary.
    let (nanos, rest) = fraction(&text[19..])?;
    let time =
        NaiveTime::from_hms_nano_opt(hour, minute, second, nanos).ok_or_else(|| "is not a time of day".to_string())?;
    let offset_s = utc_offset_s(rest)?;
    let utc = NaiveDateTime::new(date, time).and_utc();
    Ok((utc.timestamp() - offset_s) * 1_000_000 + i64::from(nanos / 1_000))
}

/// The fraction of a second at the start of `text` (`.` and 1 to 9 digits, or nothing), in
/// nanoseconds, and the text after it.
fn fraction(text: &str) -> Result<(u32, &str), String> {
    let Some(after) = text.strip_prefix('.') else { return Ok((0, text)) };
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    if !(1..=9).contains(&digits) {
        return Err(format!("has a fraction of a second of {digits} digits; 1 to 9 are read"));
    }
    let value: u32 = after[..digits].parse().map_err(|_| SHAPE.to_string())?;
    Ok((value * 10u32.pow(9 - digits as u32), &after[digits..]))
}

/// Seconds east of UTC of an offset: empty or `Z` (0), `+HH:MM`, `-HH:MM`, `+HHMM`, `-HHMM`.
fn utc_offset_s(text: &str) -> Result<i64, String> {
    if text.is_empty() || text == "Z" {
        return Ok(0);
    }
    let unknown = || format!("has the UTC offset {text:?}; offsets are Z, +HH:MM, -HH:MM, +HHMM, -HHMM");
    let b = text.as_bytes();
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return Err(unknown()),
    };
    let digits: [u8; 4] = match b.len() {
        6 if b[3] == b':' => [b[1], b[2], b[4], b[5]],
        5 => [b[1], b[2], b[3], b[4]],
        _ => return Err(unknown()),
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(unknown());
    }
    let two = |i: usize| i64::from(digits[i] - b'0') * 10 + i64::from(digits[i + 1] - b'0');
    let (hours, minutes) = (two(0), two(2));
    if hours > 23 || minutes > 59 {
        return Err(unknown());
    }
    Ok(sign * (hours * 3_600 + minutes * 60))
}

/// An Azure trace: offsets since the first row, the first row's Unix ms as the UTC start.
pub(super) fn read(input: impl Read, file: &str) -> Result<LoadedTrace, WorkloadError> {
    let (mut reader, header) = csv_stream(input, file)?;
    expect_header(&header, &HEADER, file)?;
    let mut clock = Clock::new(file, HEADER[0]);
    let mut rows = Vec::new();
    let mut first_micros = None;
    let mut record = csv::StringRecord::new();
    while next_record(&mut reader, &mut record, file)? {
        let line = line_of(&record);
        let field = |index: usize| record.get(index).unwrap_or("");
        let micros =
            utc_micros(field(0)).map_err(|m| row_error(file, line, HEADER[0], format!("{:?} {m}", field(0))))?;
        let offset_ms = clock.offset_ms(line, i128::from(micros))?;
        first_micros.get_or_insert(micros);
        rows.push(TraceRow {
            offset_ms,
            tokens_in: token_count(field(1), file, line, HEADER[1])?,
            tokens_out: token_count(field(2), file, line, HEADER[2])?,
            signature: None,
            failed: false,
        });
    }
    let start_utc_ms = first_micros.and_then(|m| u64::try_from(m / 1000).ok());
    Ok(LoadedTrace::new(TraceRows::Foreign(rows), start_utc_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_published_forms_and_their_variants_read() {
        let base = utc_micros("2023-11-16 18:15:46.6805900").unwrap();
        assert_eq!(base % 1_000_000, 680_590);
        for same in [
            "2023-11-16 18:15:46.680590",
            "2023-11-16 18:15:46.680590+00:00",
            "2023-11-16T18:15:46.680590Z",
            "2023-11-16 19:15:46.680590+0100",
            "2023-11-16 17:15:46.680590-01:00",
            "2023-11-16 18:15:46.680590999",
        ] {
            assert_eq!(utc_micros(same), Ok(base), "{same}");
        }
        assert_eq!(utc_micros("2023-11-16 18:15:46").unwrap() + 680_590, base);
        assert_eq!(utc_micros("2024-05-10 00:00:00.009930+00:00").unwrap() % 1_000_000, 9_930);
    }

    #[test]
    fn malformed_timestamps_say_why() {
        for (bad, why) in [
            ("2023-11-16", "is not a timestamp"),
            ("2023-02-30 00:00:00", "date of the calendar"),
            ("2023-11-16 25:00:00", "time of day"),
            ("2023-11-16 18:15:46.", "0 digits"),
            ("2023-11-16 18:15:46.1234567890", "10 digits"),
            ("2023-11-16 18:15:46+01", "UTC offset"),
            ("2023-11-16 18:15:46 UTC", "UTC offset"),
            ("2023-11-16 18:15:46+24:00", "UTC offset"),
            ("2023-1x-16 18:15:46", "is not a timestamp"),
            ("2023-11-16 18:15:46.5é", "UTC offset"),
        ] {
            let error = utc_micros(bad).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }
}
