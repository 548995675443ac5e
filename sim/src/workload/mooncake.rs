//! Mooncake traces: JSONL, one object per line, `{"timestamp": 27482, "input_length": 6955,
//! "output_length": 52, "hash_ids": [46, 47, 48]}`, `timestamp` in ms from the trace's
//! start, `hash_ids` the prompt's 512-token prefix blocks.
//!
//! Guarantees: the signature of a row is a function of its whole `hash_ids` list only
//! (`blocks_signature`), so equal prompts give equal signatures in every run; a row
//! without `hash_ids` (or with an empty list) gets the enrichment's; other keys are
//! ignored, blank lines skipped; an error names the line and the key.

use super::enrich::blocks_signature;
use super::fields::{decimal_micros, row_error, Clock};
use super::{LoadedTrace, TraceRow, TraceRows, WorkloadError};
use serde_json::{Map, Value};
use std::io::BufRead;

/// A mooncake trace: one row per non-blank line.
pub(super) fn read(mut input: impl BufRead, file: &str) -> Result<LoadedTrace, WorkloadError> {
    let mut clock = Clock::new(file, "timestamp");
    let mut rows = Vec::new();
    let mut text = String::new();
    let mut line = 0;
    loop {
        text.clear();
        let read = input.read_line(&mut text).map_err(|e| row_error(file, line + 1, "-", e.to_string()))?;
        if read == 0 {
            break;
        }
        line += 1;
        let body = text.trim_start_matches('\u{feff}').trim();
        if !body.is_empty() {
            rows.push(row(body, file, line, &mut clock)?);
        }
    }
    Ok(LoadedTrace::new(TraceRows::Foreign(rows), None))
}

/// The row of one line.
fn row(body: &str, file: &str, line: u64, clock: &mut Clock<'_>) -> Result<TraceRow, WorkloadError> {
    let object: Map<String, Value> = serde_json::from_str(body).map_err(|e| {
        let message = e.to_string();
        let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m);
        row_error(file, line, "-", format!("not a JSON object ({message}, at character {})", e.column()))
    })?;
    let timestamp = required(&object, "timestamp", file, line)?;
    let micros = decimal_micros(&timestamp.to_string(), 3)
        .ok()
        .filter(|_| timestamp.is_number())
        .ok_or_else(|| row_error(file, line, "timestamp", format!("{timestamp} is not a time in ms at or after 0")))?;
    let offset_ms = clock.offset_ms(line, micros)?;
    Ok(TraceRow {
        offset_ms,
        tokens_in: tokens(required(&object, "input_length", file, line)?, "input_length", file, line)?,
        tokens_out: tokens(required(&object, "output_length", file, line)?, "output_length", file, line)?,
        signature: signature(object.get("hash_ids"), file, line)?,
        failed: false,
    })
}

/// The value of `key`, which must be there.
fn required<'v>(object: &'v Map<String, Value>, key: &str, file: &str, line: u64) -> Result<&'v Value, WorkloadError> {
    object.get(key).filter(|v| !v.is_null()).ok_or_else(|| row_error(file, line, key, "is missing"))
}

/// A token count: a whole number from 0 to `u32::MAX` (`52.0` is 52).
fn tokens(value: &Value, key: &str, file: &str, line: u64) -> Result<u32, WorkloadError> {
    let whole = match value {
        Value::Number(n) => {
            n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e19).map(|f| f as u64))
        }
        _ => None,
    };
    let Some(whole) = whole else {
        return Err(row_error(file, line, key, format!("{value} is not a token count (a whole number at least 0)")));
    };
    u32::try_from(whole).map_err(|_| row_error(file, line, key, format!("{whole} is more than {} tokens", u32::MAX)))
}

/// The signature of `hash_ids`: a list of whole numbers; `None` when absent, null or
/// empty.
fn signature(value: Option<&Value>, file: &str, line: u64) -> Result<Option<u64>, WorkloadError> {
    let list = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(other) => return Err(row_error(file, line, "hash_ids", format!("{other} is not a list of block ids"))),
    };
    let mut ids = Vec::with_capacity(list.len());
    for (at, id) in list.iter().enumerate() {
        let Some(id) = id.as_u64() else {
            return Err(row_error(
                file,
                line,
                "hash_ids",
                format!("item {at}, {id}, is not a block id (a whole number)"),
            ));
        };
        ids.push(id);
    }
    Ok((!ids.is_empty()).then(|| blocks_signature(&ids)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Vec<TraceRow>, String> {
        match read(text.as_bytes(), "t.jsonl").map_err(|e| e.to_string())?.rows {
            TraceRows::Foreign(rows) => Ok(rows),
            TraceRows::Canonical { .. } => Err("canonical".into()),
        }
    }

    #[test]
    fn rows_read_as_published() {
        let rows = load(concat!(
            "{\"timestamp\": 0, \"input_length\": 6955, \"output_length\": 52, \"hash_ids\": [46, 47, 48]}\n",
            "\n",
            "{\"timestamp\": 27482.5, \"input_length\": 10, \"output_length\": 52.0, \"hash_ids\": [46, 47, 48], \"x\": 1}\n",
            "{\"timestamp\": 30000, \"input_length\": 1, \"output_length\": 2}\n",
        ))
        .unwrap();
        assert_eq!(rows.iter().map(|r| r.offset_ms).collect::<Vec<_>>(), [0, 27_482, 30_000]);
        assert_eq!((rows[1].tokens_in, rows[1].tokens_out), (10, 52));
        assert_eq!(rows[0].signature, Some(blocks_signature(&[46, 47, 48])));
        assert_eq!(rows[0].signature, rows[1].signature, "the same blocks, the same prompt");
        assert_eq!(rows[2].signature, None);
    }

    #[test]
    fn a_bad_line_names_its_line_and_key() {
        let good = "{\"timestamp\": 0, \"input_length\": 1, \"output_length\": 2}\n";
        for (bad, expected) in [
            ("{\"timestamp\": 5, \"input_length\": -1, \"output_length\": 2}", "line 2, column input_length"),
            ("{\"timestamp\": 5, \"input_length\": 1e12, \"output_length\": 2}", "line 2, column input_length"),
            ("{\"timestamp\": 5, \"input_length\": 1}", "line 2, column output_length: is missing"),
            ("{\"timestamp\": \"5\", \"input_length\": 1, \"output_length\": 2}", "line 2, column timestamp"),
            ("{\"timestamp\": -5, \"input_length\": 1, \"output_length\": 2}", "line 2, column timestamp"),
            (
                "{\"timestamp\": 5, \"input_length\": 1, \"output_length\": 2, \"hash_ids\": [1, \"a\"]}",
                "column hash_ids",
            ),
            ("{\"timestamp\": 5, \"input_length\": 1, \"output_length\": 2", "line 2, column -: not a JSON object"),
            ("[1, 2]", "line 2, column -: not a JSON object"),
        ] {
            let error = load(&format!("{good}{bad}\n")).unwrap_err();
            assert!(error.starts_with("t.jsonl: ") && error.contains(expected), "{bad}: {error}");
        }
        let error = load(&format!("{good}{}", good.replace("\"timestamp\": 0", "\"timestamp\": -0.5"))).unwrap_err();
        assert!(error.contains("line 2, column timestamp"), "{error}");
    }

    #[test]
    fn a_row_back_in_time_is_refused() {
        let error = load(concat!(
            "{\"timestamp\": 10, \"input_length\": 1, \"output_length\": 2}\n",
            "{\"timestamp\": 9.5, \"input_length\": 1, \"output_length\": 2}\n",
        ))
        .unwrap_err();
        assert!(error.contains("line 2, column timestamp: goes back in time, 0.500 ms"), "{error}");
    }
}
