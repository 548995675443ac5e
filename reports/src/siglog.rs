//! `signature_log.json`: per ledger cycle, the receipts it covers, the chain head, the
//! signature and whether it verifies against the ledger's public key. It is a pure
//! function of the event log (the harness lists every verified cycle as a `ledger_cycle`
//! event), so a verifier regenerates it byte for byte.

use crate::fold::EventFold;
use ed25519_dalek::VerifyingKey;
use seedcore_sim::chain::signs;
use serde_json::json;

/// Whether the cycle's signature verifies for the head it states.
fn verifies(key: Option<&VerifyingKey>, cycle: &seedcore_sim::event::LedgerCycle) -> bool {
    let head: Option<[u8; 32]> = hex::decode(&cycle.head).ok().and_then(|b| b.try_into().ok());
    matches!((key, head), (Some(key), Some(head)) if signs(key, cycle, &head))
}

/// The signature log of a run, and how many cycles failed to verify.
pub fn signature_log(fold: &EventFold) -> (Vec<u8>, u64) {
    let check = fold.stats.ledger_check.as_ref();
    let public_key = check.map(|c| c.public_key.clone()).unwrap_or_default();
    let key = hex::decode(&public_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok());
    let mut failed = 0;
    let cycles: Vec<_> = fold
        .stats
        .ledger_cycles
        .iter()
        .map(|c| {
            let verified = verifies(key.as_ref(), c);
            failed += u64::from(!verified);
            json!({
                "cycle_id": c.cycle,
                "first_seq": c.first_seq,
                "last_seq": c.last_seq,
                "receipts": c.last_seq.saturating_add(1).saturating_sub(c.first_seq),
                "chain_head": c.head,
                "signature": c.signature,
                "verified": verified,
            })
        })
        .collect();
    let total = cycles.len() as u64;
    let log = json!({
        "ledger_public_key": public_key,
        "signature_verification_summary": {
            "total_cycles": total,
            "signatures_verified": total - failed,
            "signatures_failed": failed,
            "receipts_committed": check.map_or(0, |c| c.receipts),
            "receipts_unsigned": check.map_or(0, |c| c.unsigned),
            "ledger_checked": check.is_some_and(|c| c.checked),
            "verification_status": if failed == 0 && check.is_some_and(|c| c.ok) { "PASS" } else { "FAIL" },
        },
        "cycles": cycles,
    });
    let mut bytes = serde_json::to_vec_pretty(&log).expect("a serde_json::Value always serialises");
    bytes.push(b'\n');
    (bytes, failed)
}
