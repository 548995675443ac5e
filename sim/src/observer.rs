//! The observer (docs/harness.md 6): the oracle outside the simulated network. It receives the
//! engine's signals (as its `Probe`) and the harness's records, numbers them, streams them
//! to `events.jsonl`, folds them into the Merkle root, the invariant totals and
//! `tasks.csv`. Engine code never reads anything back from it.
//!
//! The numbering and the timestamps happen in the simulation, in the order of the calls;
//! everything after them (the line, its Merkle leaf, the files, the folds) is a function
//! of that numbered stream alone, so it runs on a thread of its own beside the simulation:
//! the same bytes in the same order, on the machine's second core. The stream goes in
//! batches through a bounded queue, so the thread never falls more than a few thousand
//! events behind and the simulation waits when it would.

use crate::event::{write_line, Body, Harness};
use crate::invariants::Stats;
use crate::merkle::MerkleBuilder;
use crate::tasks::TaskTable;
use madsim::time::Instant;
use seedcore_engine::probe::{Probe, Signal};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Events in one batch to the folding thread.
const BATCH: usize = 512;
/// Batches queued before the simulation waits for the folding thread.
const QUEUED_BATCHES: usize = 8;

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

/// What a finished observer hands back.
pub struct Observed {
    pub root: [u8; 32],
    pub events: u64,
    pub stats: Option<Stats>,
}

/// One numbered event, as the simulation recorded it.
struct Record {
    seq: u64,
    t_ms: u64,
    node: Arc<str>,
    body: Body,
}

/// The folding thread's state: everything after the numbering.
struct Folds {
    line: Vec<u8>,
    merkle: MerkleBuilder,
    events: Option<BufWriter<File>>,
    tasks: Option<TaskTable<BufWriter<File>>>,
    stats: Option<Stats>,
    /// The first write error; reported by `finish`, since `emit` cannot fail.
    error: Option<std::io::Error>,
}

impl Folds {
    fn fold(&mut self, record: &Record) {
        self.line.clear();
        write_line(&mut self.line, record.seq, record.t_ms, &record.node, &record.body);
        self.merkle.push(&self.line);
        if let Some(events) = &mut self.events {
            self.line.push(b'\n');
            if let Err(e) = events.write_all(&self.line) {
                self.error.get_or_insert(e);
            }
        }
        if let Some(tasks) = &mut self.tasks {
            if let Err(e) = tasks.observe(record.t_ms, &record.body) {
                self.error.get_or_insert(std::io::Error::other(e));
            }
        }
        if let Some(stats) = &mut self.stats {
            stats.observe(record.t_ms, &record.body);
        }
    }

    fn new(sinks: Sinks) -> std::io::Result<Folds> {
        let tasks = match sinks.tasks {
            Some(file) => Some(TaskTable::new(BufWriter::with_capacity(1 << 16, file)).map_err(std::io::Error::other)?),
            None => None,
        };
        Ok(Folds {
            line: Vec::with_capacity(1024),
            merkle: MerkleBuilder::new(),
            events: sinks.events.map(|f| BufWriter::with_capacity(1 << 20, f)),
            tasks,
            stats: sinks.stats_window.map(Stats::new),
            error: None,
        })
    }

    /// Folds every batch until the observer finishes (or is dropped), then flushes.
    fn run(mut self, batches: Receiver<Vec<Record>>) -> std::io::Result<Observed> {
        for batch in batches {
            batch.iter().for_each(|record| self.fold(record));
        }
        self.flush()
    }

    /// Flushes the files and hands back the digest and totals.
    fn flush(mut self) -> std::io::Result<Observed> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if let Some(mut events) = self.events.take() {
            events.flush()?;
            events.get_ref().sync_all()?;
        }
        if let Some(tasks) = self.tasks.take() {
            let mut out = tasks.finish()?;
            out.flush()?;
        }
        Ok(Observed { root: self.merkle.root(), events: self.merkle.size(), stats: self.stats.take() })
    }
}

/// The folds of a run on a thread of their own, started outside any simulation (madsim
/// refuses OS threads inside one) and handed to `Observer::beside` inside it.
pub struct Folding {
    sender: SyncSender<Vec<Record>>,
    thread: JoinHandle<std::io::Result<Observed>>,
}

impl Folding {
    /// Opens the sinks and starts the thread. Outside any simulation only: inside one it
    /// is an error (`Observer::new` folds there).
    pub fn start(sinks: Sinks) -> std::io::Result<Folding> {
        #[cfg(madsim)]
        if madsim::runtime::Handle::try_current().is_ok() {
            return Err(std::io::Error::other("the observer's folding thread starts outside the simulation"));
        }
        let folds = Folds::new(sinks)?;
        let (sender, batches) = sync_channel(QUEUED_BATCHES);
        #[allow(
            clippy::disallowed_methods,
            reason = "outside the simulation: the folds see only the numbered stream and the files, and nothing in the \
                      simulation waits on them"
        )]
        let thread = std::thread::Builder::new().name("seedcore-observer".into()).spawn(move || folds.run(batches))?;
        Ok(Folding { sender, thread })
    }
}

/// Where the numbered events go.
enum Folder {
    /// Folded as they are recorded, on the simulation's thread.
    Here(Box<Folds>),
    /// Batched to the folding thread.
    Beside {
        batch: Vec<Record>,
        folding: Folding,
    },
    Finished,
}

/// The simulation's side: the numbering and where the events go.
struct Numbering {
    seq: u64,
    /// The names of the nodes seen so far (a run has a few): an event shares its node's
    /// name instead of copying it.
    nodes: Vec<Arc<str>>,
    folder: Folder,
}

impl Numbering {
    fn node(&mut self, name: &str) -> Arc<str> {
        if let Some(node) = self.nodes.iter().find(|node| ***node == *name) {
            return node.clone();
        }
        let node: Arc<str> = name.into();
        self.nodes.push(node.clone());
        node
    }
}

/// The observer of one run.
pub struct Observer {
    start: Instant,
    numbering: Mutex<Numbering>,
}

impl Observer {
    /// An observer whose clock starts now (call it inside the simulation), folding on the
    /// simulation's thread.
    pub fn new(sinks: Sinks) -> std::io::Result<Observer> {
        Ok(Observer::with(Folder::Here(Box::new(Folds::new(sinks)?))))
    }

    /// An observer whose clock starts now (call it inside the simulation), folding on
    /// `folding`'s thread.
    pub fn beside(folding: Folding) -> Observer {
        Observer::with(Folder::Beside { batch: Vec::with_capacity(BATCH), folding })
    }

    fn with(folder: Folder) -> Observer {
        Observer { start: Instant::now(), numbering: Mutex::new(Numbering { seq: 0, nodes: Vec::new(), folder }) }
    }

    /// Records one event from `node`.
    pub fn record(&self, node: &str, body: Body) {
        let mut numbering = self.numbering.lock().expect("observer lock is never poisoned");
        let numbering = &mut *numbering;
        let t_ms = self.start.elapsed().as_millis() as u64;
        let record = Record { seq: numbering.seq, t_ms, node: numbering.node(node), body };
        match &mut numbering.folder {
            Folder::Here(folds) => folds.fold(&record),
            Folder::Beside { batch, folding } => {
                batch.push(record);
                if batch.len() == BATCH {
                    let full = std::mem::replace(batch, Vec::with_capacity(BATCH));
                    // A send fails only when the folding thread has panicked; `finish`
                    // passes the panic on.
                    let _ = folding.sender.send(full);
                }
            }
            Folder::Finished => return,
        }
        numbering.seq += 1;
    }

    /// Records a harness record from `node`.
    pub fn harness(&self, node: &str, record: Harness) {
        self.record(node, Body::Harness(record));
    }

    /// Simulated time since the observer started.
    pub fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Folds what is left, flushes the files and returns the digest and totals. Records
    /// after it are dropped: the digest is given.
    pub fn finish(&self) -> std::io::Result<Observed> {
        let mut numbering = self.numbering.lock().expect("observer lock is never poisoned");
        match std::mem::replace(&mut numbering.folder, Folder::Finished) {
            Folder::Here(folds) => folds.flush(),
            Folder::Beside { batch, folding } => {
                if !batch.is_empty() {
                    let _ = folding.sender.send(batch);
                }
                drop(folding.sender);
                folding.thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }
            Folder::Finished => Err(std::io::Error::other("the observer has already finished")),
        }
    }
}

impl Drop for Observer {
    /// An observer dropped unfinished (a run that failed or panicked) hands its thread
    /// what it has and lets it write it: the event log keeps every event up to the
    /// failure, as it does when the folds are on the simulation's thread.
    fn drop(&mut self) {
        let numbering = self.numbering.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Folder::Beside { batch, folding } = std::mem::replace(&mut numbering.folder, Folder::Finished) {
            if !batch.is_empty() {
                let _ = folding.sender.send(batch);
            }
            drop(folding.sender);
            let _ = folding.thread.join();
        }
    }
}

impl Probe for Observer {
    fn emit(&self, node: &str, signal: Signal) {
        self.record(node, Body::Engine(signal));
    }
}
