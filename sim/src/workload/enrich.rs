//! The enrichment rules: the task fields a trace (or the generator) does not give, drawn
//! deterministically from the seed and the row.
//!
//! Guarantees: every draw of a row depends only on (seed, row), except the kind and the
//! domain of a row whose trace identifies its prompt (mooncake's `hash_ids`), which depend
//! only on (seed, prompt), so that equal prompts are the same kind of request in the same
//! domain (the memory tiers are keyed by signature and kind). Rows without a trace
//! signature are drawn exactly as before trace signatures existed.

use seedcore_engine::{Authority, Kind, Task};

/// How task fields not present in a trace are drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct Enrichment {
    /// Share of each kind, indexed by `Kind::index` (need not add up to 1).
    pub mix: [f64; Kind::COUNT],
    pub drift_base: f64,
    pub drift_context: f64,
    pub drift_noise: f64,
    /// (from_ms, to_ms, extra drift).
    pub drift_episodes: Vec<(u64, u64, f64)>,
    pub planning_rate: f64,
    pub low_authority_rate: f64,
    pub repeat_rate: f64,
    pub domains: Vec<String>,
}

impl Default for Enrichment {
    fn default() -> Self {
        let mut mix = [0.0; Kind::COUNT];
        for (kind, share) in [
            (Kind::Chat, 0.60),
            (Kind::Query, 0.20),
            (Kind::Action, 0.08),
            (Kind::Graph, 0.05),
            (Kind::Maintenance, 0.03),
            (Kind::Anomaly, 0.035),
            (Kind::Summary, 0.005),
        ] {
            mix[kind.index()] = share;
        }
        Enrichment {
            mix,
            drift_base: 0.02,
            drift_context: 0.12,
            drift_noise: 0.08,
            drift_episodes: Vec::new(),
            planning_rate: 0.01,
            low_authority_rate: 0.1,
            repeat_rate: 0.15,
            domains: vec!["guest".into(), "facility".into(), "security".into()],
        }
    }
}

/// What a trace row or a generated arrival gives the enrichment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Given {
    /// The row's number in the run (`pass * rows + index` for traces): the task id.
    pub row: u64,
    pub at_ms: u64,
    pub tokens_in: u32,
    pub tokens_out: u32,
    /// The prompt's identity when the trace carries one; `None`: the enrichment draws the
    /// signature, and repeats with probability `repeat_rate`.
    pub signature: Option<u64>,
    /// The trace marks the request failed: it is never drawn as a repeat (a repeat could be
    /// served from the memory tiers without the backend call that must fail it).
    pub failed: bool,
}

pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A uniform draw in [0, 1) that depends only on (seed, row, stream).
fn unit(seed: u64, row: u64, stream: u64) -> f64 {
    let bits = splitmix64(seed ^ splitmix64(row.wrapping_mul(64).wrapping_add(stream)));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Separates the draws of a prompt (kind, domain) from the draws of a row.
const PROMPT_SALT: u64 = 0x7072_6f6d_7074_0001;
/// Separates signatures of prefix-block lists from other hashes.
const BLOCKS_SALT: u64 = 0x6861_7368_5f69_6473;

/// The signature of a prompt given by its prefix blocks (mooncake's `hash_ids`, in order):
/// the same list gives the same signature in every run, seed and build (splitmix64
/// folding, not `std`'s hashers, whose output may change between releases).
pub fn blocks_signature(ids: &[u64]) -> u64 {
    ids.iter().fold(splitmix64(BLOCKS_SALT ^ ids.len() as u64), |h, id| splitmix64(h ^ splitmix64(*id)))
}

/// The last few requests, for repeats.
pub(crate) const REPEAT_HISTORY: usize = 8;

impl Enrichment {
    fn pick_kind(&self, u: f64) -> Kind {
        let total: f64 = self.mix.iter().sum();
        let mut acc = 0.0;
        for kind in Kind::ALL {
            acc += self.mix[kind.index()] / total;
            if u < acc {
                return kind;
            }
        }
        *Kind::ALL.iter().rev().find(|k| self.mix[k.index()] > 0.0).expect("the mix is not empty")
    }

    /// The task of `given`. `history` holds the last requests, for repeats; a row with a
    /// trace signature never repeats by draw (the trace says what repeats) and draws its
    /// kind and domain from its prompt; a failed row never repeats by draw.
    pub(crate) fn task(&self, seed: u64, given: Given, history: &mut Vec<Task>) -> Task {
        let row = given.row;
        let draw = |stream| unit(seed, row, stream);
        let (kind_draw, domain_draw) = match given.signature {
            None => (draw(0), draw(5)),
            Some(prompt) => (unit(seed ^ PROMPT_SALT, prompt, 0), unit(seed ^ PROMPT_SALT, prompt, 5)),
        };
        let at_ms = given.at_ms;
        let episode: f64 =
            self.drift_episodes.iter().filter(|(from, to, _)| (*from..*to).contains(&at_ms)).map(|e| e.2).sum();
        let context = (f64::from(given.tokens_in) + 1.0).ln() / 8192f64.ln();
        let drift =
            (self.drift_base + self.drift_context * context + self.drift_noise * (2.0 * draw(1) - 1.0) + episode)
                .clamp(0.0, 1.0);
        let authority = match draw(3) {
            u if u < self.low_authority_rate => Authority::Low,
            u if u < self.low_authority_rate + 0.5 * (1.0 - self.low_authority_rate) => Authority::Medium,
            _ => Authority::High,
        };
        let mut task = Task {
            task_id: row,
            at_ms,
            kind: self.pick_kind(kind_draw),
            domain: self.domains[(domain_draw * self.domains.len() as f64) as usize % self.domains.len()].clone(),
            drift,
            priority: (draw(4) * 11.0) as u8 % 11,
            authority,
            needs_planning: draw(2) < self.planning_rate,
            tokens_in: given.tokens_in,
            tokens_out: given.tokens_out,
            signature: given.signature.unwrap_or_else(|| splitmix64(seed ^ splitmix64(row ^ 0x5167_6e61_7475_7265))),
        };
        if given.signature.is_none() && !given.failed && draw(6) < self.repeat_rate && !history.is_empty() {
            let back = (draw(7) * history.len() as f64) as usize % history.len();
            let earlier = &history[history.len() - 1 - back];
            task.kind = earlier.kind;
            task.signature = earlier.signature;
            task.domain = earlier.domain.clone();
            task.tokens_in = earlier.tokens_in;
            task.tokens_out = earlier.tokens_out;
        }
        if history.len() == REPEAT_HISTORY {
            history.remove(0);
        }
        history.push(task.clone());
        task
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(row: u64, signature: Option<u64>) -> Given {
        Given { row, at_ms: 1_000, tokens_in: 500, tokens_out: 100, signature, failed: false }
    }

    #[test]
    fn enrichment_is_a_function_of_seed_and_row() {
        let e = Enrichment::default();
        let a = e.task(7, given(42, None), &mut Vec::new());
        let b = e.task(7, given(42, None), &mut Vec::new());
        let c = e.task(8, given(42, None), &mut Vec::new());
        assert_eq!(a, b);
        assert_ne!(a.signature, c.signature);
    }

    /// Equal prompts are the same request: same signature, kind and domain, whatever the
    /// row; and a row with a trace signature never takes an earlier row's by draw.
    #[test]
    fn a_trace_signature_decides_kind_and_domain_and_is_never_replaced() {
        let e = Enrichment { repeat_rate: 1.0, ..Enrichment::default() };
        let mut history = Vec::new();
        let first = e.task(7, given(0, Some(99)), &mut history);
        let kinds: Vec<_> = (1..50).map(|row| e.task(7, given(row, Some(99)), &mut history)).collect();
        assert!(kinds.iter().all(|t| (t.kind, &t.domain, t.signature) == (first.kind, &first.domain, 99)));
        let other = e.task(7, given(50, Some(100)), &mut history);
        assert_eq!(other.signature, 100, "repeat_rate 1.0 draws no repeat for a row with a signature");
        let failed = e.task(7, Given { failed: true, ..given(51, None) }, &mut history);
        assert!(
            history[..history.len() - 1].iter().all(|t| t.signature != failed.signature),
            "no repeat of a failed row"
        );
    }

    #[test]
    fn block_lists_hash_by_content_and_order() {
        assert_eq!(blocks_signature(&[46, 47, 48]), blocks_signature(&[46, 47, 48]));
        assert_ne!(blocks_signature(&[46, 47, 48]), blocks_signature(&[46, 47]));
        assert_ne!(blocks_signature(&[46, 47]), blocks_signature(&[47, 46]));
        assert_ne!(blocks_signature(&[0]), blocks_signature(&[]));
    }
}
