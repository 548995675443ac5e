//! `serve --capture FILE` (docs/live.md 4.11): every task the gateway answers, as a row of the
//! canonical trace format (docs/harness.md 5.2) followed by the decision columns, so that
//! `seedcore compare` can replay the arrivals in the simulator and compare the decisions.
//!
//! Guarantees: the request path never waits on the disk (rows go through a bounded queue to
//! a writer thread; a full queue drops the row and counts it); rows reach the file within
//! `flush` of being queued; the file never grows beyond `max_bytes` (rows past the bound
//! are dropped and counted, with one warning); on close every queued row is written and
//! flushed.

use crate::task::{Outcome, Task, TASK_COLUMNS};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::task::CAPTURE_DECISION_COLUMNS as DECISION_COLUMNS;

/// Rows the queue holds before new rows are dropped.
const QUEUE_ROWS: usize = 65_536;

/// Where and how to capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureConfig {
    pub path: PathBuf,
    /// The file's size bound, header included.
    pub max_bytes: u64,
    /// The longest a queued row waits for the disk.
    pub flush: Duration,
}

/// The decision columns of a row: status, path, the router's reason (or the rejection's),
/// the valve's sequence number (empty when the valve did not see the task), latency, and
/// the caller's token name (empty without authentication; names need no quoting).
pub fn decision_fields(
    outcome: &Outcome,
    reason: Option<&str>,
    valve_seq: Option<u64>,
    client: Option<&str>,
) -> String {
    let (status, path, reason, latency) = match outcome {
        Outcome::Completed { path, latency_ms, .. } => {
            ("completed", path.as_str(), reason.unwrap_or(""), latency_ms.to_string())
        }
        Outcome::Failed { path, .. } => ("failed", path.as_str(), reason.unwrap_or(""), String::new()),
        Outcome::Rejected { reason } => ("rejected", "", reason.as_str(), String::new()),
    };
    let seq = valve_seq.map(|s| s.to_string()).unwrap_or_default();
    format!("{status},{path},{reason},{seq},{latency},{}", client.unwrap_or(""))
}

/// The header line of a capture file.
pub fn header() -> String {
    let mut columns: Vec<&str> = TASK_COLUMNS.to_vec();
    columns.extend(DECISION_COLUMNS);
    columns.join(",")
}

/// A running capture.
pub struct Capture {
    sender: Mutex<Option<SyncSender<String>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    written: AtomicU64,
    dropped: AtomicU64,
}

impl Capture {
    /// Creates the file (never overwriting one) and starts its writer.
    pub fn start(config: CaptureConfig) -> std::io::Result<Capture> {
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&config.path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot create the capture {}: {e}", config.path.display()))
        })?;
        let header = format!("{}\n", header());
        if header.len() as u64 > config.max_bytes {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("--capture-max-bytes {} is smaller than the header", config.max_bytes),
            ));
        }
        let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
        out.write_all(header.as_bytes())?;
        out.flush()?;
        let (sender, receiver) = sync_channel::<String>(QUEUE_ROWS);
        let counts = Arc::new(Counts::default());
        let thread_counts = counts.clone();
        #[allow(clippy::disallowed_methods, reason = "live only: the capture's disk writes stay off the async runtime")]
        let writer = std::thread::Builder::new()
            .name("seedcore-capture".into())
            .spawn(move || write_rows(out, header.len() as u64, &config, &receiver, &thread_counts))?;
        Ok(Capture { sender: Mutex::new(Some(sender)), writer: Mutex::new(Some(writer)), counts })
    }

    /// Queues one row (task and decision); never blocks.
    pub fn record(&self, task: &Task, decision: &str) {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sender) = sender.as_ref() else { return };
        let row = format!("{},{decision}\n", task.csv_row());
        match sender.try_send(row) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Rows written and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.counts.written.load(Ordering::Relaxed), self.counts.dropped.load(Ordering::Relaxed))
    }

    /// Writes every queued row, flushes and closes the file.
    pub fn close(&self) -> (u64, u64) {
        drop(self.sender.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(writer) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = writer.join();
        }
        self.counts()
    }
}

fn write_rows(
    mut out: std::io::BufWriter<std::fs::File>,
    mut size: u64,
    config: &CaptureConfig,
    receiver: &std::sync::mpsc::Receiver<String>,
    counts: &Counts,
) {
    let mut warned = false;
    let mut dirty = false;
    loop {
        match receiver.recv_timeout(config.flush) {
            Ok(row) => {
                if size + row.len() as u64 > config.max_bytes {
                    counts.dropped.fetch_add(1, Ordering::Relaxed);
                    if !warned {
                        warned = true;
                        tracing::warn!(
                            path = %config.path.display(),
                            max_bytes = config.max_bytes,
                            "the capture reached its size bound; further rows are dropped and counted"
                        );
                    }
                    continue;
                }
                if let Err(error) = out.write_all(row.as_bytes()) {
                    tracing::error!(path = %config.path.display(), %error, "capture write failed");
                    counts.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                size += row.len() as u64;
                counts.written.fetch_add(1, Ordering::Relaxed);
                dirty = true;
            }
            Err(RecvTimeoutError::Timeout) => {
                if dirty {
                    let _ = out.flush();
                    dirty = false;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Err(error) = out.flush() {
        tracing::error!(path = %config.path.display(), %error, "capture flush failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Authority, Kind, Path, RejectReason};

    fn task(task_id: u64) -> Task {
        Task {
            task_id,
            at_ms: 1_700_000_000_000 + task_id,
            kind: Kind::Chat,
            domain: "guest".into(),
            drift: 0.125,
            priority: 5,
            authority: Authority::Medium,
            needs_planning: false,
            tokens_in: 100,
            tokens_out: 20,
            signature: 9,
        }
    }

    #[test]
    fn rows_are_written_in_the_canonical_format_and_the_file_stays_within_its_bound() {
        let dir = tempdir();
        let path = dir.join("capture.csv");
        let header_len = header().len() as u64 + 1;
        let completed = Outcome::Completed {
            path: Path::Fast,
            latency_ms: 81,
            ttft_ms: 40,
            cost_micro_usd: 5,
            tokens_in: 100,
            tokens_out: 20,
            cache_hit: false,
        };
        let row_len =
            format!("{},{}\n", task(1).csv_row(), decision_fields(&completed, Some("fast"), Some(1), Some("loader")))
                .len();
        let config = CaptureConfig {
            path: path.clone(),
            max_bytes: header_len + 2 * row_len as u64,
            flush: Duration::from_millis(10),
        };
        let capture = Capture::start(config.clone()).unwrap();
        capture.record(&task(1), &decision_fields(&completed, Some("fast"), Some(1), Some("loader")));
        capture.record(&task(2), &decision_fields(&completed, Some("fast"), Some(2), None));
        capture.record(
            &task(3),
            &decision_fields(&Outcome::Rejected { reason: RejectReason::DailyBudget }, None, None, None),
        );
        assert_eq!(capture.close(), (2, 1), "the third row is past the bound");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], header());
        assert_eq!(
            lines[1],
            "1,1700000000001,chat,guest,0.125,5,medium,false,100,20,9,completed,fast,fast,1,81,loader"
        );
        assert_eq!(lines.len(), 3);
        assert!(Capture::start(config).is_err(), "an existing capture is never overwritten");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("seedcore-capture-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
