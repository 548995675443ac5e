//! The ledger (docs/engine.md 4.9): an append-only, hash-chained log of receipts, one per terminal
//! outcome, with an Ed25519 signature over the chain head every cycle.
//!
//! Layout: a directory of segments `000000.log`, `000001.log`, ...; each start of the
//! coordinator verifies every segment and then appends to a new one, so no byte that was
//! written is ever rewritten. A line is committed once its newline is written; a segment
//! may end in a torn, uncommitted line (a crash mid-write), which recovery skips. Anything
//! else that fails to parse, chain or verify is corruption, and the coordinator halts.
//!
//! Receipts and cycle records are written in canonical form (RFC 8785: sorted keys, no
//! floats), and `hash = SHA-256(JCS(receipt))`.

use crate::conditions::Conditions;
use crate::config::LedgerConfig;
use crate::probe::OutcomeSignal;
use crate::task::{Kind, Path, Status};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// `prev_hash` of the first receipt.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One terminal outcome. Fields are declared in JCS order, so serde's bytes are canonical.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub cost_micro_usd: u64,
    /// UTC day the task was admitted in (the governor's budget day).
    pub day: u64,
    pub kind: Kind,
    pub latency_ms: u64,
    pub outcome: Status,
    pub path: Option<Path>,
    pub prev_hash: String,
    /// Reject reason, error, and flags such as `cache_hit`, `overrun_clamped`, `truncated`.
    pub reasons: Vec<String>,
    pub seq: u64,
    /// Arrival time of the task.
    pub t_ms: u64,
    pub task_id: u64,
    pub tokens_in: u32,
    pub tokens_out: u32,
}

impl Receipt {
    /// The canonical bytes (JCS) of the receipt.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a receipt always serialises")
    }

    /// `SHA-256(JCS(receipt))`.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.canonical()).into()
    }

    /// Whether the task was admitted (and so counts against rate limits).
    pub fn admitted(&self) -> bool {
        self.outcome != Status::Rejected
    }

    /// The receipt of an outcome, before the ledger gives it `seq` and `prev_hash`. The
    /// coordinator writes exactly this, and a verifier rebuilds the hash chain with it from
    /// the event log: one function, so the two cannot drift apart.
    pub fn of_outcome(outcome: &OutcomeSignal) -> Receipt {
        let mut reasons: Vec<String> = match outcome.status {
            Status::Completed => [
                (outcome.cache_hit, "cache_hit"),
                (outcome.overrun_clamped, "overrun_clamped"),
                (outcome.truncated, "truncated"),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| name.to_string())
            .collect(),
            Status::Rejected => outcome.reason.iter().map(|r| r.as_str().to_string()).collect(),
            Status::Failed => outcome.error.iter().cloned().collect(),
        };
        reasons.sort();
        Receipt {
            cost_micro_usd: outcome.cost_micro_usd,
            day: outcome.day,
            kind: outcome.kind,
            latency_ms: outcome.latency_ms,
            outcome: outcome.status,
            path: outcome.path,
            prev_hash: String::new(),
            reasons,
            seq: 0,
            t_ms: outcome.arrived_ms,
            task_id: outcome.task_id,
            tokens_in: outcome.tokens_in,
            tokens_out: outcome.tokens_out,
        }
    }
}

/// A signed cycle: the chain head after `last_seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CycleRecord {
    pub cycle: u64,
    pub first_seq: u64,
    pub head: String,
    pub last_seq: u64,
    /// Hex Ed25519 signature over `cycle_message`.
    pub signature: String,
}

/// A digest in lower-case hex, as `hex::encode` writes it, without its one `char` at a
/// time (the ledger writes one per receipt, and verifiers rebuild one per receipt).
pub fn hex_digest(digest: &[u8; 32]) -> String {
    let mut text = [0u8; 64];
    hex::encode_to_slice(digest, &mut text).expect("64 bytes hold 32 in hex");
    String::from_utf8(text.to_vec()).expect("hex is ASCII")
}

/// How a receipt's line begins: `Record::Receipt`'s canonical form is this, the receipt's
/// JCS, and `}`.
const RECEIPT_PREFIX: &[u8] = b"{\"receipt\":";

/// One line of a segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Record {
    Receipt(Receipt),
    Cycle(CycleRecord),
}

/// The bytes a cycle signature covers.
pub fn cycle_message(cycle: u64, first_seq: u64, last_seq: u64, head: &[u8; 32]) -> Vec<u8> {
    let mut message = b"seedcore/ledger-cycle/v1\n".to_vec();
    message.extend_from_slice(&cycle.to_be_bytes());
    message.extend_from_slice(&first_seq.to_be_bytes());
    message.extend_from_slice(&last_seq.to_be_bytes());
    message.extend_from_slice(head);
    message
}

/// Why a ledger cannot be trusted or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger I/O error on {path}: {message}")]
    Io { path: String, message: String },
    #[error("ledger segment {segment} line {line}: {reason}")]
    Corrupt { segment: u32, line: u64, reason: String },
    #[error("no ledger signing key: the simulator derives one from the seed, and serve takes --ledger-key")]
    NoKey,
}

/// What verification of a whole ledger found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Committed receipts.
    pub receipts: u64,
    /// Signed cycles.
    pub cycles: u64,
    /// Receipts covered by the signed cycles (`receipts - unsigned`).
    pub signed: u64,
    /// Chain head after the last receipt.
    pub head: [u8; 32],
    /// Segments read.
    pub segments: u32,
    /// Bytes of torn tails skipped.
    pub torn_bytes: u64,
    /// Every signed cycle, in order: the per-cycle signature log of a report.
    pub cycle_log: Vec<CycleRecord>,
}

impl Verified {
    /// Receipts after the last signed cycle.
    pub fn unsigned(&self) -> u64 {
        self.receipts - self.signed
    }
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok()?.try_into().ok()
}

/// Verifies a ledger segment by segment, in order, handing each committed receipt to the
/// caller. A segment can come whole (`segment`) or in pieces split anywhere (`begin`,
/// `feed`, `end`): memory stays at the piece and the longest line, however long the ledger.
pub struct Verifier<'k> {
    key: &'k VerifyingKey,
    verified: Verified,
    head_hex: String,
    /// The segment being read and the lines of it read so far.
    segment: u32,
    line_no: u64,
    /// The start of a line that the last piece cut.
    partial: Vec<u8>,
}

impl<'k> Verifier<'k> {
    /// A verifier at the genesis of a ledger signed by `key`.
    pub fn new(key: &'k VerifyingKey) -> Verifier<'k> {
        Verifier {
            key,
            verified: Verified::default(),
            head_hex: GENESIS.to_string(),
            segment: 0,
            line_no: 0,
            partial: Vec::new(),
        }
    }

    /// Verifies the next segment; calls `on_receipt` with every committed receipt in it.
    pub fn segment(&mut self, bytes: &[u8], on_receipt: impl FnMut(&Receipt)) -> Result<(), LedgerError> {
        self.begin();
        self.feed(bytes, on_receipt)?;
        self.end();
        Ok(())
    }

    /// Starts the next segment.
    pub fn begin(&mut self) {
        self.segment = self.verified.segments;
        self.verified.segments += 1;
        self.line_no = 0;
        self.partial.clear();
    }

    /// Verifies the next piece of the segment: every line it completes, the line the last
    /// piece cut first.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_receipt: impl FnMut(&Receipt)) -> Result<(), LedgerError> {
        while let Some(end) = bytes.iter().position(|b| *b == b'\n') {
            let (line, tail) = bytes.split_at(end);
            bytes = &tail[1..];
            if self.partial.is_empty() {
                self.line(line, &mut on_receipt)?;
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.line(&whole, &mut on_receipt)?;
                whole.clear();
                self.partial = whole;
            }
        }
        self.partial.extend_from_slice(bytes);
        Ok(())
    }

    /// Ends the segment: a line its last piece left open is a torn write, skipped.
    pub fn end(&mut self) {
        self.verified.torn_bytes += self.partial.len() as u64;
        self.partial.clear();
    }

    /// Verifies one committed line (without its newline).
    fn line(&mut self, line: &[u8], on_receipt: &mut impl FnMut(&Receipt)) -> Result<(), LedgerError> {
        self.line_no += 1;
        let (segment, line_no) = (self.segment, self.line_no);
        let verified = &mut self.verified;
        let corrupt = |reason: String| LedgerError::Corrupt { segment, line: line_no, reason };
        let record: Record = serde_json::from_slice(line).map_err(|e| corrupt(format!("unreadable record: {e}")))?;
        if serde_json::to_vec(&record).expect("a record always serialises") != line {
            return Err(corrupt("record is not in canonical form".into()));
        }
        match record {
            Record::Receipt(receipt) => {
                let seq = verified.receipts;
                if receipt.seq != seq {
                    return Err(corrupt(format!("seq {} where {seq} was expected", receipt.seq)));
                }
                if receipt.prev_hash != self.head_hex {
                    return Err(corrupt(format!("receipt {seq} does not chain to the previous head")));
                }
                // The line is canonical (checked above), so it is `{"receipt":` +
                // JCS(receipt) + `}`: the hashed bytes without serialising again.
                let canonical = &line[RECEIPT_PREFIX.len()..line.len() - 1];
                debug_assert_eq!(canonical, receipt.canonical().as_slice());
                verified.head = Sha256::digest(canonical).into();
                self.head_hex = hex_digest(&verified.head);
                verified.receipts += 1;
                on_receipt(&receipt);
            }
            Record::Cycle(cycle) => {
                let last = verified.receipts.checked_sub(1);
                if cycle.cycle != verified.cycles || cycle.first_seq != verified.signed || Some(cycle.last_seq) != last
                {
                    return Err(corrupt(format!(
                        "cycle {} does not cover the receipts since the previous cycle",
                        cycle.cycle
                    )));
                }
                if cycle.head != self.head_hex {
                    return Err(corrupt(format!("cycle {} signs a head that is not the chain's", cycle.cycle)));
                }
                let signature = hex::decode(&cycle.signature)
                    .ok()
                    .and_then(|bytes| Signature::from_slice(&bytes).ok())
                    .ok_or_else(|| corrupt(format!("cycle {} has a malformed signature", cycle.cycle)))?;
                let head = decode_hex32(&cycle.head).expect("head equals a hex digest");
                self.key
                    .verify_strict(&cycle_message(cycle.cycle, cycle.first_seq, cycle.last_seq, &head), &signature)
                    .map_err(|_| corrupt(format!("cycle {} signature does not verify", cycle.cycle)))?;
                verified.cycles += 1;
                verified.signed = cycle.last_seq + 1;
                verified.cycle_log.push(cycle);
            }
        }
        Ok(())
    }

    /// What the segments so far hold.
    pub fn finish(self) -> Verified {
        self.verified
    }
}

/// Verifies the chain and every cycle signature of a ledger given as its segments' bytes.
pub fn verify(segments: &[Vec<u8>], key: &VerifyingKey) -> Result<Verified, LedgerError> {
    let mut verifier = Verifier::new(key);
    for bytes in segments {
        verifier.segment(bytes, |_| {})?;
    }
    Ok(verifier.finish())
}

/// The open segment. In the simulator, madsim's file. Live, a `std::fs::File` written with
/// `pwrite`: tokio's file (which madsim's live build wraps) reports a write done once it
/// has copied the bytes into its own buffer, before the kernel has them, so a receipt
/// reported to a client could still be lost to a SIGKILL. `pwrite` returns once the kernel
/// holds the bytes, which survive any crash of the process; `sync_all` (fsync) makes them
/// survive a power loss too, off the async threads.
#[cfg(madsim)]
struct SegmentFile(madsim::fs::File);

#[cfg(madsim)]
impl SegmentFile {
    async fn create(path: &str) -> std::io::Result<SegmentFile> {
        madsim::fs::File::create(path).await.map(SegmentFile)
    }

    async fn write_all_at(&mut self, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        self.0.write_all_at(bytes, offset).await
    }

    async fn sync_all(&self) -> std::io::Result<()> {
        self.0.sync_all().await
    }
}

#[cfg(not(madsim))]
struct SegmentFile(Arc<std::fs::File>);

#[cfg(not(madsim))]
impl SegmentFile {
    async fn create(path: &str) -> std::io::Result<SegmentFile> {
        let path = path.to_string();
        let file =
            tokio::task::spawn_blocking(move || std::fs::File::create(path)).await.map_err(std::io::Error::other)??;
        Ok(SegmentFile(Arc::new(file)))
    }

    /// One `pwrite` of a line of a few hundred bytes into the page cache: microseconds,
    /// done in place rather than handed to a blocking thread.
    async fn write_all_at(&mut self, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&*self.0, bytes, offset)
    }

    async fn sync_all(&self) -> std::io::Result<()> {
        let file = self.0.clone();
        tokio::task::spawn_blocking(move || file.sync_all()).await.map_err(std::io::Error::other)?
    }
}

/// Path of a segment.
pub fn segment_path(dir: &str, index: u32) -> String {
    format!("{dir}/{index:06}.log")
}

/// Reads one segment; `None` past the last.
pub async fn read_segment(dir: &str, index: u32) -> Result<Option<Vec<u8>>, LedgerError> {
    let path = segment_path(dir, index);
    match madsim::fs::read(&path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LedgerError::Io { path, message: e.to_string() }),
    }
}

/// The piece of a segment `verify_dir` reads at a time.
const READ_PIECE: usize = 1 << 20;

/// Verifies the ledger in `dir` one segment at a time, each read in pieces, handing every
/// committed receipt to `on_receipt`.
pub async fn verify_dir(
    dir: &str,
    key: &VerifyingKey,
    on_receipt: impl FnMut(&Receipt),
) -> Result<Verified, LedgerError> {
    verify_dir_in_pieces(dir, key, READ_PIECE, on_receipt).await
}

async fn verify_dir_in_pieces(
    dir: &str,
    key: &VerifyingKey,
    piece: usize,
    mut on_receipt: impl FnMut(&Receipt),
) -> Result<Verified, LedgerError> {
    let mut verifier = Verifier::new(key);
    let mut buf = vec![0; piece];
    for index in 0.. {
        let path = segment_path(dir, index);
        let io = |e: std::io::Error| LedgerError::Io { path: path.clone(), message: e.to_string() };
        let mut file = match madsim::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(io(e)),
        };
        verifier.begin();
        let mut offset = 0;
        loop {
            let read = read_at(&mut file, &mut buf, offset).await.map_err(io)?;
            if read == 0 {
                break;
            }
            verifier.feed(&buf[..read], &mut on_receipt)?;
            offset += read as u64;
        }
        verifier.end();
    }
    Ok(verifier.finish())
}

/// madsim's `read_at` takes `&self` in the simulator and `&mut self` live.
async fn read_at(file: &mut madsim::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    file.read_at(buf, offset).await
}

/// The appending side of the ledger.
pub struct LedgerWriter {
    /// The ledger's directory.
    dir: String,
    /// Index of the segment being written.
    segment: u32,
    /// Receipts in the segment being written.
    segment_len: u64,
    /// Receipts after which the writer moves to a new segment.
    segment_receipts: u64,
    /// Path of the segment being written.
    path: String,
    file: SegmentFile,
    /// Bytes written to the current segment.
    offset: u64,
    head: [u8; 32],
    next_seq: u64,
    next_cycle: u64,
    /// First seq of the open cycle.
    cycle_first_seq: u64,
    cycle_receipts: u64,
    key: SigningKey,
    /// Whether the disk accepts writes (the `ledger_io_error` fault).
    conditions: Option<Arc<Conditions>>,
    /// fsync after every receipt, not only after every cycle.
    sync_appends: bool,
}

impl LedgerWriter {
    /// Verifies the existing ledger, handing every committed receipt to `on_receipt`, and
    /// opens a new segment after it.
    pub async fn open(
        config: &LedgerConfig,
        on_receipt: impl FnMut(&Receipt),
    ) -> Result<(LedgerWriter, Verified), LedgerError> {
        assert!(config.cycle_receipts >= 1 && config.segment_receipts >= 1);
        let dir = config.dir.as_str();
        let key = SigningKey::from_bytes(&config.key_seed.ok_or(LedgerError::NoKey)?);
        #[cfg(not(madsim))]
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| LedgerError::Io { path: dir.to_string(), message: e.to_string() })?;
        let verified = verify_dir(dir, &key.verifying_key(), on_receipt).await?;
        // Live, an operator is told; in the simulator the event log says it (a `recovered`
        // event), and campaigns would drown in the lines.
        #[cfg(not(madsim))]
        if verified.torn_bytes > 0 {
            tracing::warn!(
                dir,
                torn_bytes = verified.torn_bytes,
                receipts = verified.receipts,
                "the ledger ends in a torn write (a crash mid-append): those bytes are skipped, every committed \
                 receipt before them is kept"
            );
        }
        #[cfg(not(madsim))]
        tracing::info!(dir, receipts = verified.receipts, cycles = verified.cycles, "ledger verified");
        let path = segment_path(dir, verified.segments);
        let file = SegmentFile::create(&path)
            .await
            .map_err(|e| LedgerError::Io { path: path.clone(), message: e.to_string() })?;
        let writer = LedgerWriter {
            dir: dir.to_string(),
            segment: verified.segments,
            segment_len: 0,
            segment_receipts: config.segment_receipts,
            path,
            file,
            offset: 0,
            head: verified.head,
            next_seq: verified.receipts,
            next_cycle: verified.cycles,
            cycle_first_seq: verified.signed,
            cycle_receipts: config.cycle_receipts,
            key,
            conditions: None,
            sync_appends: false,
        };
        Ok((writer, verified))
    }

    /// Receipts committed so far.
    pub fn receipts(&self) -> u64 {
        self.next_seq
    }

    /// Makes every append durable (fsync) before it returns, not only every cycle.
    pub fn set_sync_appends(&mut self, sync: bool) {
        self.sync_appends = sync;
    }

    /// fsyncs the segment. A failure is logged, not returned: the bytes are written, and
    /// reporting the write as failed would invite a second copy of them.
    async fn sync(&self) {
        if let Err(error) = self.file.sync_all().await {
            tracing::error!(path = %self.path, %error, "ledger fsync failed; the last writes may not survive a power loss");
        }
    }

    /// Writes fail while `conditions` says the disk fails (before any byte is written).
    pub fn set_conditions(&mut self, conditions: Arc<Conditions>) {
        self.conditions = Some(conditions);
    }

    /// Moves to a fresh segment, so that no single file (nor, in the simulator, any single
    /// buffer) grows without bound. Nothing changes when the new segment cannot be made.
    async fn rotate(&mut self) -> Result<(), LedgerError> {
        self.fail_if_disk_fails()?;
        let path = segment_path(&self.dir, self.segment + 1);
        let file = SegmentFile::create(&path)
            .await
            .map_err(|e| LedgerError::Io { path: path.clone(), message: e.to_string() })?;
        self.segment += 1;
        self.path = path;
        self.file = file;
        self.offset = 0;
        self.segment_len = 0;
        Ok(())
    }

    fn fail_if_disk_fails(&self) -> Result<(), LedgerError> {
        match &self.conditions {
            Some(c) if c.disk_failing() => {
                Err(LedgerError::Io { path: self.path.clone(), message: "injected I/O error".into() })
            }
            _ => Ok(()),
        }
    }

    async fn write_line(&mut self, record: &Record) -> Result<(), LedgerError> {
        let mut line = serde_json::to_vec(record).expect("a record always serialises");
        line.push(b'\n');
        self.write_bytes(&line).await
    }

    async fn write_bytes(&mut self, line: &[u8]) -> Result<(), LedgerError> {
        self.fail_if_disk_fails()?;
        self.file
            .write_all_at(line, self.offset)
            .await
            .map_err(|e| LedgerError::Io { path: self.path.clone(), message: e.to_string() })?;
        self.offset += line.len() as u64;
        Ok(())
    }

    /// Appends a receipt, filling in its `seq` and `prev_hash` and chaining it to the head;
    /// closes the cycle when it is full. Returns the committed receipt and, if a cycle
    /// closed, its record.
    ///
    /// An error means the receipt was not committed, and the writer is as before: the call
    /// can be retried. Once the receipt is written, a cycle or a segment that cannot be
    /// written is left for later (the next append or `close_cycle`), never reported as a
    /// failed append, which would invite a second copy of the receipt.
    pub async fn append(&mut self, mut entry: Receipt) -> Result<(Receipt, Option<CycleRecord>), LedgerError> {
        entry.seq = self.next_seq;
        entry.prev_hash = hex_digest(&self.head);
        // One serialisation gives both the hashed bytes and the line: the canonical form
        // of `Record::Receipt(r)` is `{"receipt":` + JCS(r) + `}`.
        let canonical = entry.canonical();
        let mut line = Vec::with_capacity(canonical.len() + RECEIPT_PREFIX.len() + 2);
        line.extend_from_slice(RECEIPT_PREFIX);
        line.extend_from_slice(&canonical);
        line.extend_from_slice(b"}\n");
        debug_assert_eq!(
            &line[..line.len() - 1],
            serde_json::to_vec(&Record::Receipt(entry.clone())).unwrap().as_slice()
        );
        self.write_bytes(&line).await?;
        if self.sync_appends {
            self.sync().await;
        }
        self.head = Sha256::digest(&canonical).into();
        self.next_seq += 1;
        self.segment_len += 1;
        let cycle = if self.next_seq - self.cycle_first_seq >= self.cycle_receipts {
            self.close_cycle().await.unwrap_or(None)
        } else {
            None
        };
        if self.segment_len >= self.segment_receipts {
            // A failed rotation keeps writing the current segment and tries again next time.
            let _ = self.rotate().await;
        }
        Ok((entry, cycle))
    }

    /// Signs the chain head if receipts are pending since the last cycle.
    pub async fn close_cycle(&mut self) -> Result<Option<CycleRecord>, LedgerError> {
        if self.next_seq == self.cycle_first_seq {
            return Ok(None);
        }
        let last_seq = self.next_seq - 1;
        let message = cycle_message(self.next_cycle, self.cycle_first_seq, last_seq, &self.head);
        let record = CycleRecord {
            cycle: self.next_cycle,
            first_seq: self.cycle_first_seq,
            head: hex::encode(self.head),
            last_seq,
            signature: hex::encode(self.key.sign(&message).to_bytes()),
        };
        self.write_line(&Record::Cycle(record.clone())).await?;
        self.next_cycle += 1;
        self.cycle_first_seq = self.next_seq;
        // Durable at least per cycle: the cycle line and every receipt before it.
        self.sync().await;
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hex_digest_is_hexs_encoding() {
        let counting: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        for digest in [[0u8; 32], [0xff; 32], Sha256::digest(b"seedcore").into(), counting] {
            assert_eq!(hex_digest(&digest), hex::encode(digest));
        }
    }

    fn receipt(task_id: u64) -> Receipt {
        Receipt {
            cost_micro_usd: 812,
            day: 19_677,
            kind: Kind::Chat,
            latency_ms: 93,
            outcome: Status::Completed,
            path: Some(Path::Fast),
            prev_hash: String::new(),
            reasons: vec!["cache_hit".into()],
            seq: 0,
            t_ms: 1_000,
            task_id,
            tokens_in: 374,
            tokens_out: 44,
        }
    }

    /// Builds a ledger in memory the way the writer does.
    fn build(receipts: u64, cycle_every: u64) -> (Vec<u8>, VerifyingKey) {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut bytes = Vec::new();
        let mut head = [0u8; 32];
        let mut first = 0;
        let mut cycle = 0;
        for seq in 0..receipts {
            let mut r = receipt(seq);
            r.seq = seq;
            r.prev_hash = hex::encode(head);
            bytes.extend(serde_json::to_vec(&Record::Receipt(r.clone())).unwrap());
            bytes.push(b'\n');
            head = r.hash();
            if (seq + 1 - first) == cycle_every {
                let signature = key.sign(&cycle_message(cycle, first, seq, &head));
                let record = CycleRecord {
                    cycle,
                    first_seq: first,
                    head: hex::encode(head),
                    last_seq: seq,
                    signature: hex::encode(signature.to_bytes()),
                };
                bytes.extend(serde_json::to_vec(&Record::Cycle(record)).unwrap());
                bytes.push(b'\n');
                cycle += 1;
                first = seq + 1;
            }
        }
        (bytes, key.verifying_key())
    }

    #[test]
    fn receipt_bytes_are_jcs() {
        let r = receipt(3);
        assert_eq!(r.canonical(), serde_json_canonicalizer::to_vec(&r).unwrap());
        let line = serde_json::to_vec(&Record::Receipt(r.clone())).unwrap();
        assert_eq!(line, serde_json_canonicalizer::to_vec(&Record::Receipt(r)).unwrap());
    }

    #[test]
    fn a_good_ledger_verifies_and_a_torn_tail_is_skipped() {
        let (mut bytes, key) = build(10, 4);
        let verified = verify(&[bytes.clone()], &key).unwrap();
        assert_eq!((verified.receipts, verified.cycles, verified.unsigned()), (10, 2, 2));
        bytes.extend_from_slice(b"{\"receipt\":{\"cost_mi");
        let verified = verify(&[bytes], &key).unwrap();
        assert_eq!((verified.receipts, verified.torn_bytes), (10, 20));
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let (bytes, key) = build(9, 3);
        // Flip every byte position once, except newlines whose loss merges two lines.
        for at in 0..bytes.len() {
            if bytes[at] == b'\n' {
                continue;
            }
            let mut tampered = bytes.clone();
            tampered[at] ^= 0x01;
            match verify(&[tampered], &key) {
                Err(LedgerError::Corrupt { .. }) => {}
                other => panic!("flip at {at} not detected: {other:?}"),
            }
        }
    }

    #[test]
    fn verification_flows_across_segments() {
        let (bytes, key) = build(9, 3);
        // Split the ledger at every line boundary into two segments: same result.
        let whole = verify(std::slice::from_ref(&bytes), &key).unwrap();
        for (at, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'\n') {
            let (first, second) = bytes.split_at(at + 1);
            let mut seen = Vec::new();
            let mut verifier = Verifier::new(&key);
            verifier.segment(first, |r| seen.push(r.seq)).unwrap();
            verifier.segment(second, |r| seen.push(r.seq)).unwrap();
            let split = verifier.finish();
            assert_eq!(
                (split.receipts, split.cycles, split.head, split.segments),
                (whole.receipts, whole.cycles, whole.head, 2)
            );
            assert_eq!(seen, (0..9).collect::<Vec<u64>>());
        }
    }

    #[test]
    fn a_segment_fed_in_pieces_verifies_as_a_whole_one() {
        let (mut bytes, key) = build(9, 3);
        bytes.extend_from_slice(b"{\"receipt\":{\"cost_mi");
        let whole = verify(std::slice::from_ref(&bytes), &key).unwrap();
        assert_eq!((whole.receipts, whole.cycles, whole.torn_bytes), (9, 3, 20));
        let in_pieces = |bytes: &[u8], piece: usize| {
            let mut seen = Vec::new();
            let mut verifier = Verifier::new(&key);
            verifier.begin();
            for chunk in bytes.chunks(piece) {
                verifier.feed(chunk, |r| seen.push(r.seq))?;
            }
            verifier.end();
            Ok::<_, LedgerError>((verifier.finish(), seen))
        };
        for piece in [1, 2, 7, 64, 333, bytes.len()] {
            let (verified, seen) = in_pieces(&bytes, piece).unwrap();
            assert_eq!(verified, whole, "pieces of {piece}");
            assert_eq!(seen, (0..9).collect::<Vec<u64>>());
        }
        // A flipped byte is found on the same line, however the segment is cut.
        let at = bytes.len() / 2 + usize::from(bytes[bytes.len() / 2] == b'\n');
        let mut tampered = bytes.clone();
        tampered[at] ^= 0x01;
        let expected = verify(&[tampered.clone()], &key).unwrap_err().to_string();
        assert!(expected.contains("segment 0 line "), "{expected}");
        for piece in [1, 7, 333] {
            assert_eq!(in_pieces(&tampered, piece).unwrap_err().to_string(), expected, "pieces of {piece}");
        }
    }

    #[test]
    fn a_foreign_key_fails() {
        let (bytes, _) = build(4, 2);
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(matches!(verify(&[bytes], &other), Err(LedgerError::Corrupt { .. })));
    }
}

#[cfg(all(test, madsim))]
mod dir_tests {
    use super::*;

    fn entry(task_id: u64) -> Receipt {
        Receipt {
            cost_micro_usd: 100 + task_id,
            day: 0,
            kind: Kind::Chat,
            latency_ms: 40,
            outcome: Status::Completed,
            path: Some(Path::Fast),
            prev_hash: String::new(),
            reasons: Vec::new(),
            seq: 0,
            t_ms: task_id * 10,
            task_id,
            tokens_in: 10,
            tokens_out: 5,
        }
    }

    #[madsim::test]
    async fn a_ledger_read_in_pieces_verifies_as_one_read_whole() {
        let config = LedgerConfig {
            cycle_receipts: 4,
            segment_receipts: 10,
            dir: "ledger".into(),
            key_seed: Some([3; 32]),
            ..LedgerConfig::default()
        };
        let (mut writer, _) = LedgerWriter::open(&config, |_| {}).await.unwrap();
        for task_id in 0..25 {
            writer.append(entry(task_id)).await.unwrap();
        }
        writer.close_cycle().await.unwrap();
        drop(writer);
        // A torn write at the end of the last segment.
        let last = segment_path("ledger", 2);
        let mut bytes = read_segment("ledger", 2).await.unwrap().unwrap();
        bytes.extend_from_slice(b"{\"receipt\":{\"co");
        madsim::fs::File::create(&last).await.unwrap().write_all_at(&bytes, 0).await.unwrap();
        let key = SigningKey::from_bytes(&[3; 32]).verifying_key();
        let mut segments = Vec::new();
        while let Some(segment) = read_segment("ledger", segments.len() as u32).await.unwrap() {
            segments.push(segment);
        }
        let whole = verify(&segments, &key).unwrap();
        assert_eq!((whole.receipts, whole.segments, whole.torn_bytes), (25, 3, 15));
        for piece in [1, 5, 64, 1 << 20] {
            let mut seen = Vec::new();
            let verified = verify_dir_in_pieces("ledger", &key, piece, |r| seen.push(r.task_id)).await.unwrap();
            assert_eq!(verified, whole, "pieces of {piece}");
            assert_eq!(seen, (0..25).collect::<Vec<u64>>());
        }
        assert_eq!(verify_dir("ledger", &key, |_| {}).await.unwrap(), whole);
    }
}
