//! The canonical trace format: the columns of docs/engine.md 3.1 (a task's fields), in
//! order, with a header, and optionally a 12th column `failed` (so a converted BurstGPT
//! trace keeps its failures). Read and written here.
//!
//! Guarantees: a file written by `write_canonical` reads back as the same tasks and the
//! same failed rows; every field of a row is checked, errors naming the file, the line and
//! the column.

use super::fields::{csv_stream, expect_header, line_of, next_record, row_error, Clock};
use super::{LoadedTrace, TraceRows, WorkloadError};
use seedcore_engine::{Authority, Kind, Task};
use std::collections::BTreeSet;
use std::io::{Read, Write};

/// The header of the canonical format.
pub const CANONICAL_HEADER: [&str; 11] = seedcore_engine::task::TASK_COLUMNS;

/// The optional 12th column: the request failed when it was recorded.
const FAILED: &str = "failed";

/// A CSV reader over a file's bytes (fields trimmed) and the file's header; an unreadable
/// header is an error naming the file.
pub fn csv_reader<'b>(bytes: &'b [u8], file: &str) -> Result<(csv::Reader<&'b [u8]>, Vec<String>), WorkloadError> {
    csv_stream(bytes, file)
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
        needs_planning: boolean(field(7), file, line, "needs_planning")?,
        tokens_in: tokens(8)?,
        tokens_out: tokens(9)?,
        signature: number(10)?,
    })
}

/// `true`/`1` or `false`/`0`.
fn boolean(text: &str, file: &str, line: u64, column: &str) -> Result<bool, WorkloadError> {
    match text {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(row_error(file, line, column, format!("{other:?} is not a boolean (true, false, 1, 0)"))),
    }
}

/// A canonical trace: the 11 columns, or the 11 and `failed`.
pub(super) fn read(input: impl Read, file: &str) -> Result<LoadedTrace, WorkloadError> {
    let (mut reader, header) = csv_stream(input, file)?;
    let with_failed = header.len() == CANONICAL_HEADER.len() + 1;
    let mut expected = CANONICAL_HEADER.to_vec();
    if with_failed {
        expected.push(FAILED);
    }
    expect_header(&header, &expected, file)?;
    let mut clock = Clock::new(file, "at_ms");
    let (mut tasks, mut failed) = (Vec::new(), Vec::new());
    let mut record = csv::StringRecord::new();
    while next_record(&mut reader, &mut record, file)? {
        let line = line_of(&record);
        let task = canonical_task(&record, file, line)?;
        clock.offset_ms(line, i128::from(task.at_ms) * 1000)?;
        failed.push(with_failed && boolean(record.get(11).unwrap_or(""), file, line, FAILED)?);
        tasks.push(task);
    }
    Ok(LoadedTrace::new(TraceRows::Canonical { tasks, failed }, None))
}

/// Writes `tasks` as a canonical trace: the header, then one row per task; with the
/// `failed` column (`true` for the ids in `failed`) only when `failed` is not empty.
pub fn write_canonical(mut out: impl Write, tasks: &[Task], failed: &BTreeSet<u64>) -> std::io::Result<()> {
    let with_failed = !failed.is_empty();
    let mut header = CANONICAL_HEADER.join(",");
    if with_failed {
        header.push(',');
        header.push_str(FAILED);
    }
    writeln!(out, "{header}")?;
    for task in tasks {
        if with_failed {
            writeln!(out, "{},{}", task.csv_row(), failed.contains(&task.task_id))?;
        } else {
            writeln!(out, "{}", task.csv_row())?;
        }
    }
    out.flush()
}
