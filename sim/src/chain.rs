//! The ledger's hash chain, rebuilt from the event log (ISSUE 8 / docs/engine.md 4.9).
//!
//! Every outcome event carries the fields of its receipt and the receipt's `seq`, so the
//! chain the coordinator wrote can be recomputed without the ledger: receipt `s` is
//! `Receipt::of_outcome(outcome)` with `seq = s` and `prev_hash` the head after `s - 1`.
//! Each signed cycle the harness lists must then sign exactly the recomputed head, under
//! the key the run's seed gives. An event log whose outcomes were edited after the run no
//! longer matches the cycles the engine signed, so `ledger_integrity` fails on it.

use crate::event::LedgerCycle;
use ed25519_dalek::{Signature, VerifyingKey};
use seedcore_engine::ledger::{cycle_message, hex_digest, Receipt, GENESIS};
use seedcore_engine::probe::OutcomeSignal;
use std::collections::BTreeMap;

/// Whether `cycle`'s signature verifies under `key` for `head` (the engine's
/// `cycle_message`, `verify_strict`). The signature log checks it against the head the
/// cycle states; the chain check against the head the outcome events give.
pub fn signs(key: &VerifyingKey, cycle: &LedgerCycle, head: &[u8; 32]) -> bool {
    let signature = hex::decode(&cycle.signature).ok().and_then(|b| Signature::from_slice(&b).ok());
    let message = cycle_message(cycle.cycle, cycle.first_seq, cycle.last_seq, head);
    signature.is_some_and(|s| key.verify_strict(&message, &s).is_ok())
}

/// The chain as the outcome events give it.
#[derive(Clone, Debug, Default)]
pub struct ChainRebuild {
    /// Receipts that arrived ahead of a predecessor, by seq.
    pending: BTreeMap<u64, Receipt>,
    /// The head after each seq, from seq 0 without a gap.
    heads: Vec<[u8; 32]>,
    /// Outcomes that claimed a seq another outcome already had.
    pub duplicate_seqs: u64,
}

impl ChainRebuild {
    /// Folds in one outcome; outcomes without a receipt (a halted ledger) are skipped.
    pub fn observe(&mut self, outcome: &OutcomeSignal) {
        let Some(seq) = outcome.ledger_seq else { return };
        if seq < self.heads.len() as u64 || self.pending.contains_key(&seq) {
            self.duplicate_seqs += 1;
            return;
        }
        if seq == self.heads.len() as u64 {
            // In order, as outcomes nearly always are: no detour through `pending`.
            self.chain(Receipt::of_outcome(outcome));
        } else {
            self.pending.insert(seq, Receipt::of_outcome(outcome));
        }
        while let Some(receipt) = self.pending.remove(&(self.heads.len() as u64)) {
            self.chain(receipt);
        }
    }

    /// Chains `receipt` as the next seq.
    fn chain(&mut self, mut receipt: Receipt) {
        receipt.seq = self.heads.len() as u64;
        receipt.prev_hash = self.heads.last().map_or_else(|| GENESIS.to_string(), hex_digest);
        self.heads.push(receipt.hash());
    }

    /// Receipts chained so far (seq 0 up to the first gap).
    pub fn receipts(&self) -> u64 {
        self.heads.len() as u64
    }

    /// Checks every listed cycle against the rebuilt chain and `key`: the first problem, if
    /// any, in words.
    pub fn check(&self, cycles: &[LedgerCycle], key: &VerifyingKey) -> Result<(), String> {
        if self.duplicate_seqs > 0 {
            return Err(format!("{} outcomes claim a receipt seq already taken", self.duplicate_seqs));
        }
        for cycle in cycles {
            let Some(head) = usize::try_from(cycle.last_seq).ok().and_then(|s| self.heads.get(s)) else {
                return Err(format!(
                    "cycle {} signs receipts up to seq {}, but the outcome events chain only {} receipts",
                    cycle.cycle,
                    cycle.last_seq,
                    self.heads.len()
                ));
            };
            if cycle.head != hex::encode(head) {
                return Err(format!(
                    "cycle {} signs head {}…, but the outcome events give {}…",
                    cycle.cycle,
                    cycle.head.get(..12).unwrap_or(&cycle.head),
                    &hex::encode(head)[..12]
                ));
            }
            if !signs(key, cycle, head) {
                return Err(format!("cycle {}'s signature does not verify under the run's ledger key", cycle.cycle));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use seedcore_engine::task::{Kind, Path, Status};

    fn outcome(task_id: u64, seq: u64) -> OutcomeSignal {
        OutcomeSignal {
            arrived_ms: task_id * 10,
            attempts: 1,
            cache_age_ms: None,
            cache_hit: false,
            cache_tier: None,
            cost_micro_usd: 100 + task_id,
            day: 0,
            error: None,
            kind: Kind::Chat,
            latency_ms: 80,
            ledger_seq: Some(seq),
            overrun_clamped: false,
            path: Some(Path::Fast),
            reason: None,
            status: Status::Completed,
            task_id,
            tokens_in: 10,
            tokens_out: 5,
            truncated: task_id.is_multiple_of(2),
            ttft_ms: None,
            worker: Some("fast-1".into()),
        }
    }

    /// The chain a ledger writer would produce, and a signed cycle over its head.
    fn signed(outcomes: &[OutcomeSignal], key: &SigningKey) -> LedgerCycle {
        let mut head_hex = GENESIS.to_string();
        let mut head = [0u8; 32];
        for (seq, o) in outcomes.iter().enumerate() {
            let mut r = Receipt::of_outcome(o);
            r.seq = seq as u64;
            r.prev_hash = head_hex;
            head = r.hash();
            head_hex = hex::encode(head);
        }
        let last_seq = outcomes.len() as u64 - 1;
        LedgerCycle {
            cycle: 0,
            first_seq: 0,
            head: head_hex,
            last_seq,
            signature: hex::encode(key.sign(&cycle_message(0, 0, last_seq, &head)).to_bytes()),
        }
    }

    #[test]
    fn a_faithful_log_binds_and_order_does_not_matter() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let outcomes: Vec<_> = (0..5).map(|i| outcome(i, i)).collect();
        let cycle = signed(&outcomes, &key);
        let mut chain = ChainRebuild::default();
        for i in [1, 0, 4, 2, 3] {
            chain.observe(&outcomes[i]);
        }
        assert_eq!(chain.receipts(), 5);
        assert_eq!(chain.check(&[cycle], &key.verifying_key()), Ok(()));
    }

    /// Canary: one outcome's latency edited by 1 ms after the run.
    #[test]
    fn an_edited_outcome_breaks_the_signed_head() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let mut outcomes: Vec<_> = (0..5).map(|i| outcome(i, i)).collect();
        let cycle = signed(&outcomes, &key);
        outcomes[2].latency_ms += 1;
        let mut chain = ChainRebuild::default();
        outcomes.iter().for_each(|o| chain.observe(o));
        let error = chain.check(&[cycle], &key.verifying_key()).unwrap_err();
        assert!(error.contains("cycle 0 signs head"), "{error}");
    }

    /// Canary: a cycle re-signed over the edited chain by a key other than the run's.
    #[test]
    fn a_cycle_signed_by_another_key_fails() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let forger = SigningKey::from_bytes(&[4; 32]);
        let outcomes: Vec<_> = (0..3).map(|i| outcome(i, i)).collect();
        let cycle = signed(&outcomes, &forger);
        let mut chain = ChainRebuild::default();
        outcomes.iter().for_each(|o| chain.observe(o));
        let error = chain.check(&[cycle], &key.verifying_key()).unwrap_err();
        assert!(error.contains("does not verify"), "{error}");
    }

    #[test]
    fn a_missing_receipt_or_a_doubled_seq_fails() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let outcomes: Vec<_> = (0..3).map(|i| outcome(i, i)).collect();
        let cycle = signed(&outcomes, &key);
        let mut gap = ChainRebuild::default();
        gap.observe(&outcomes[0]);
        gap.observe(&outcomes[2]);
        assert!(gap.check(std::slice::from_ref(&cycle), &key.verifying_key()).unwrap_err().contains("chain only 1"));
        let mut doubled = ChainRebuild::default();
        outcomes.iter().for_each(|o| doubled.observe(o));
        doubled.observe(&outcome(9, 1));
        assert!(doubled.check(&[cycle], &key.verifying_key()).unwrap_err().contains("already taken"));
    }
}
