//! The observer (SPEC 6): the oracle outside the simulated network. It receives the
//! engine's signals (as its `Probe`) and the harness's records, numbers them, streams them
//! to `events.jsonl`, folds them into the Merkle root, the invariant totals and
//! `tasks.csv`. Engine code never reads anything back from it.

use crate::event::{write_line, Body, Harness};
use crate::invariants::Stats;
use crate::merkle::MerkleBuilder;
use crate::tasks::TaskTable;
use madsim::time::Instant;
use seedcore_engine::probe::{Probe, Signal};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::Mutex;

/// Where a run's observations go.
#[derive(Default)]
pub struct Sinks {
    /// `events.jsonl`.
    pub events: Option<File>,
    /// `tasks.csv`.
    pub tasks: Option<File>,
    /// Fold invariant totals with this rolling window (`None`: digest only).
    pub stats_window: Option<usize>,
}

struct Inner {
    start: Instant,
    seq: u64,
    line: Vec<u8>,
    merkle: MerkleBuilder,
    events: Option<BufWriter<File>>,
    tasks: Option<TaskTable<BufWriter<File>>>,
    stats: Option<Stats>,
    /// The first write error; reported by `finish`, since `emit` cannot fail.
    error: Option<std::io::Error>,
}

/// What a finished observer hands back.
pub struct Observed {
    pub root: [u8; 32],
    pub events: u64,
    pub stats: Option<Stats>,
}

/// The observer of one run.
pub struct Observer {
    inner: Mutex<Inner>,
}

impl Observer {
    /// An observer whose clock starts now (call it inside the simulation).
    pub fn new(sinks: Sinks) -> std::io::Result<Observer> {
        let tasks = match sinks.tasks {
            Some(file) => Some(TaskTable::new(BufWriter::with_capacity(1 << 16, file)).map_err(std::io::Error::other)?),
            None => None,
        };
        Ok(Observer {
            inner: Mutex::new(Inner {
                start: Instant::now(),
                seq: 0,
                line: Vec::with_capacity(1024),
                merkle: MerkleBuilder::new(),
                events: sinks.events.map(|f| BufWriter::with_capacity(1 << 20, f)),
                tasks,
                stats: sinks.stats_window.map(Stats::new),
                error: None,
            }),
        })
    }

    /// Records one event from `node`.
    pub fn record(&self, node: &str, body: Body) {
        let mut inner = self.inner.lock().expect("observer lock is never poisoned");
        let inner = &mut *inner;
        let t_ms = inner.start.elapsed().as_millis() as u64;
        inner.line.clear();
        write_line(&mut inner.line, inner.seq, t_ms, node, &body);
        inner.seq += 1;
        inner.merkle.push(&inner.line);
        if let Some(events) = &mut inner.events {
            inner.line.push(b'\n');
            if let Err(e) = events.write_all(&inner.line) {
                inner.error.get_or_insert(e);
            }
        }
        if let Some(tasks) = &mut inner.tasks {
            if let Err(e) = tasks.observe(t_ms, &body) {
                inner.error.get_or_insert(std::io::Error::other(e));
            }
        }
        if let Some(stats) = &mut inner.stats {
            stats.observe(t_ms, &body);
        }
    }

    /// Records a harness record from `node`.
    pub fn harness(&self, node: &str, record: Harness) {
        self.record(node, Body::Harness(record));
    }

    /// Simulated time since the observer started.
    pub fn elapsed_ms(&self) -> u64 {
        self.inner.lock().expect("observer lock is never poisoned").start.elapsed().as_millis() as u64
    }

    /// Flushes the files and returns the digest and totals. Later records are still
    /// digested but no longer written or folded.
    pub fn finish(&self) -> std::io::Result<Observed> {
        let mut inner = self.inner.lock().expect("observer lock is never poisoned");
        if let Some(e) = inner.error.take() {
            return Err(e);
        }
        if let Some(mut events) = inner.events.take() {
            events.flush()?;
            events.get_ref().sync_all()?;
        }
        if let Some(tasks) = inner.tasks.take() {
            let mut out = tasks.finish()?;
            out.flush()?;
        }
        Ok(Observed { root: inner.merkle.root(), events: inner.merkle.size(), stats: inner.stats.take() })
    }
}

impl Probe for Observer {
    fn emit(&self, node: &str, signal: Signal) {
        self.record(node, Body::Engine(signal));
    }
}
