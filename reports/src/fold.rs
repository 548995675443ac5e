//! Reads a bundle's `events.jsonl` back: every line must parse into a known event in
//! canonical form, with `seq` counting up from 0 without gap or duplicate. The fold
//! recomputes the RFC 6962 Merkle root and size, the invariant totals, and the series the
//! report and the signature log need. Certification and verification both use it, so a
//! certificate states exactly what a verifier will recompute.

use crate::model::{FaultRow, ScalePoint};
use seedcore_engine::probe::Signal;
use seedcore_sim::event::{Body, Event, Harness};
use seedcore_sim::invariants::Stats;
use seedcore_sim::merkle::MerkleBuilder;
use std::io::BufRead;
use std::path::Path;

/// What an event log holds.
#[derive(Clone, Debug)]
pub struct EventFold {
    pub root: [u8; 32],
    pub size: u64,
    pub stats: Stats,
    /// Certified `L_tot` changes: (t_ms, ppm).
    pub l_tot: Vec<(u64, i64)>,
    /// Energy totals: (t_ms, ppm).
    pub energy: Vec<(u64, i64)>,
    /// Autoscaler events.
    pub scale: Vec<ScalePoint>,
    pub faults: Vec<FaultRow>,
}

/// An event log that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct FoldError {
    pub file: String,
    /// 1-based line number (0 for the file as a whole).
    pub line: u64,
    pub message: String,
}

/// Folds the event log at `path` with a fast-ratio window of `window` tasks.
pub fn fold_events(path: &Path, window: usize) -> Result<EventFold, FoldError> {
    let file = path.display().to_string();
    let error = |line: u64, message: String| FoldError { file: file.clone(), line, message };
    let reader = std::fs::File::open(path).map_err(|e| error(0, format!("cannot read: {e}")))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, reader);
    let mut fold = EventFold {
        root: [0; 32],
        size: 0,
        stats: Stats::new(window.max(1)),
        l_tot: Vec::new(),
        energy: Vec::new(),
        scale: Vec::new(),
        faults: Vec::new(),
    };
    let mut merkle = MerkleBuilder::new();
    let mut line = Vec::with_capacity(1024);
    let mut line_no = 0u64;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).map_err(|e| error(line_no + 1, format!("cannot read: {e}")))?;
        if read == 0 {
            break;
        }
        line_no += 1;
        if line.pop() != Some(b'\n') {
            return Err(error(line_no, "truncated: the last line has no newline".into()));
        }
        let text = std::str::from_utf8(&line).map_err(|_| error(line_no, "not UTF-8".into()))?;
        let event = Event::parse(text).map_err(|e| error(line_no, e.to_string()))?;
        let expected = line_no - 1;
        if event.seq != expected {
            let what = if event.seq < expected { "duplicate or reordered" } else { "gap" };
            return Err(error(line_no, format!("seq {} where {expected} was expected ({what})", event.seq)));
        }
        merkle.push(&line);
        fold.stats.observe(event.t_ms, &event.body);
        let l_tot_ppm = match &event.body {
            Body::Engine(Signal::LTot(l)) => Some(l.l_tot_ppm),
            Body::Engine(Signal::Mask(m)) => Some(m.l_tot_ppm),
            _ => None,
        };
        if let Some(ppm) = l_tot_ppm.filter(|ppm| fold.l_tot.last().is_none_or(|(_, last)| last != ppm)) {
            fold.l_tot.push((event.t_ms, ppm));
        }
        match &event.body {
            Body::Engine(Signal::Energy(e)) => fold.energy.push((event.t_ms, e.total_ppm)),
            Body::Engine(Signal::Scale(s)) => {
                fold.scale.push(ScalePoint { t_ms: event.t_ms, path: s.path, replicas: s.replicas, target: s.target })
            }
            _ => {}
        }
        match event.body {
            Body::Harness(Harness::Fault(f)) => fold.faults.push(FaultRow {
                t_ms: event.t_ms,
                end_ms: None,
                id: f.id,
                fault: f.fault,
                node: f.node,
                magnitude: f.magnitude,
                recovery_ms: None,
            }),
            Body::Harness(Harness::FaultEnd(end)) => {
                if let Some(row) = fold.faults.iter_mut().rev().find(|r| r.id == end.id && r.end_ms.is_none()) {
                    row.end_ms = Some(event.t_ms);
                }
            }
            _ => {}
        }
    }
    if line_no == 0 {
        return Err(error(0, "the event log is empty".into()));
    }
    fold.root = merkle.root();
    fold.size = merkle.size();
    Ok(fold)
}
