//! Score and outcome (docs/certification.md 8.2): score = 100 * sum(weight * points) / sum(weight),
//! points 1 / 0.5 / 0 for pass / warn / fail; invariants with nothing to judge (`skipped`) count
//! for nothing either way. PASS needs every critical invariant passing and score >= 90; PASS WITH
//! CONDITIONS every critical passing and 75 <= score < 90; anything else FAILs, including a
//! critical invariant that could not be judged: it did not pass.
//!
//! This is the one definition `replay`, `certify`, `verify` and `campaign` share, exit codes
//! included. The one exception to "not passed": `determinism` with no replay to compare
//! (a command that ran the seed once by design, `replay --replays 1` or a campaign seed)
//! is skipped, and is neither a pass nor a failure; `certify` always runs two or more.

use crate::invariant_id::InvariantId;
use crate::invariants::{InvariantResult, Verdict};
use crate::scenario::Policy;

/// The certification outcome of docs/certification.md 8.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Pass,
    PassWithConditions,
    Fail,
}

impl Outcome {
    /// The name written in certificates and printed in banners.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::PassWithConditions => "PASS WITH CONDITIONS",
            Outcome::Fail => "FAIL",
        }
    }

    /// Reads a stated outcome back.
    pub fn parse(text: &str) -> Option<Outcome> {
        [Outcome::Pass, Outcome::PassWithConditions, Outcome::Fail].into_iter().find(|o| o.as_str() == text)
    }
}

/// A score out of 100, held in hundredths so that it is written exactly: `9750` is 97.50.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Score(pub u32);

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// Score of PASS, in hundredths.
pub const PASS_SCORE: u32 = 9_000;
/// Lowest score of PASS WITH CONDITIONS, in hundredths.
pub const CONDITIONS_SCORE: u32 = 7_500;

/// The score of `results` under the weights of `policy`, rounded to hundredths.
/// With nothing judged at all the score is 0.
pub fn score(results: &[InvariantResult], policy: &Policy) -> Score {
    let (mut earned, mut total) = (0.0, 0.0);
    for result in results {
        let weight = policy.invariants.get(&result.id).map_or(0.0, |p| p.weight);
        let points = match result.verdict {
            Verdict::Pass => 1.0,
            Verdict::Warn => 0.5,
            Verdict::Fail => 0.0,
            Verdict::Skipped => continue,
        };
        earned += weight * points;
        total += weight;
    }
    if total <= 0.0 {
        return Score(0);
    }
    Score((10_000.0 * earned / total).round().clamp(0.0, 10_000.0) as u32)
}

/// Whether `result` fails the run: a critical invariant that did not pass (failed, warned,
/// or had nothing to judge), except `determinism` skipped for want of a replay.
pub fn fails_the_run(result: &InvariantResult) -> bool {
    let single_run = result.id == InvariantId::Determinism && result.verdict == Verdict::Skipped;
    result.critical && result.verdict != Verdict::Pass && !single_run
}

/// The critical invariants that fail the run, in table order.
pub fn critical_failures(results: &[InvariantResult]) -> Vec<&'static str> {
    results.iter().filter(|r| fails_the_run(r)).map(|r| r.id.as_str()).collect()
}

/// The outcome of `results` with `score`.
pub fn outcome(results: &[InvariantResult], score: Score) -> Outcome {
    let critical_failed = results.iter().any(fails_the_run);
    if critical_failed || score.0 < CONDITIONS_SCORE {
        Outcome::Fail
    } else if score.0 < PASS_SCORE {
        Outcome::PassWithConditions
    } else {
        Outcome::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::InvariantPolicy;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn policy(weights: &[f64]) -> Policy {
        let invariants: BTreeMap<_, _> = InvariantId::ALL
            .into_iter()
            .zip(weights.iter().chain(std::iter::repeat(&1.0)))
            .map(|(id, w)| {
                let d = id.defaults();
                (id, InvariantPolicy { threshold: d.threshold, warn: d.warn, weight: *w })
            })
            .collect();
        Policy { window: 10, invariants }
    }

    fn results(verdicts: &[Verdict]) -> Vec<InvariantResult> {
        InvariantId::ALL
            .into_iter()
            .zip(verdicts)
            .map(|(id, verdict)| InvariantResult {
                id,
                critical: id.critical(),
                verdict: *verdict,
                observed: String::new(),
                threshold: String::new(),
                detail: String::new(),
                measure: Default::default(),
            })
            .collect()
    }

    fn verdict() -> impl Strategy<Value = Verdict> {
        prop_oneof![Just(Verdict::Pass), Just(Verdict::Warn), Just(Verdict::Fail), Just(Verdict::Skipped)]
    }

    #[test]
    fn worked_examples() {
        use Verdict::*;
        let all_pass = results(&[Pass; 14]);
        assert_eq!(score(&all_pass, &policy(&[])), Score(10_000));
        assert_eq!(outcome(&all_pass, Score(10_000)), Outcome::Pass);
        // Equal weights: 12 pass, 2 warn -> 13 / 14 = 92.857...
        let mut v = [Pass; 14];
        v[8] = Warn;
        v[9] = Warn;
        let s = score(&results(&v), &policy(&[]));
        assert_eq!(s, Score(9_286));
        assert_eq!(s.to_string(), "92.86");
        // 9 of 14 pass, 5 non-critical fail -> 64.29: FAIL on the score alone.
        let mut v = [Pass; 14];
        v[9..].fill(Fail);
        assert_eq!(outcome(&results(&v), score(&results(&v), &policy(&[]))), Outcome::Fail);
        // 11 of 14 pass, 3 non-critical fail -> 78.57: conditions.
        let mut v = [Pass; 14];
        v[11..].fill(Fail);
        let s = score(&results(&v), &policy(&[]));
        assert_eq!(outcome(&results(&v), s), Outcome::PassWithConditions);
        // Skipped invariants do not count in the score: all skipped but one pass is 100,
        // but a critical invariant that was not judged did not pass: FAIL.
        let mut v = [Skipped; 14];
        v[0] = Pass;
        assert_eq!(score(&results(&v), &policy(&[])), Score(10_000));
        assert_eq!(outcome(&results(&v), Score(10_000)), Outcome::Fail);
        let mut v = [Pass; 14];
        v[5] = Skipped; // determinism with a single run: neither a pass nor a failure
        assert!(critical_failures(&results(&v)).is_empty());
        assert_eq!(outcome(&results(&v), score(&results(&v), &policy(&[]))), Outcome::Pass);
        v[6] = Skipped; // no_lost_tasks with nothing to judge did not pass
        assert_eq!(critical_failures(&results(&v)), vec!["no_lost_tasks"]);
        assert_eq!(outcome(&results(&v), score(&results(&v), &policy(&[]))), Outcome::Fail);
        v[6] = Pass;
        v[5] = Pass;
        v[13] = Skipped; // recovery_time without a fault
        assert_eq!(outcome(&results(&v), score(&results(&v), &policy(&[]))), Outcome::Pass);
    }

    proptest! {
        /// The score stays in [0, 100]; any critical failure forces FAIL; otherwise the
        /// outcome follows the score bands.
        #[test]
        fn outcome_follows_the_rules(
            verdicts in prop::collection::vec(verdict(), 14),
            weights in prop::collection::vec(0.0f64..10.0, 14),
        ) {
            let results = results(&verdicts);
            let s = score(&results, &policy(&weights));
            prop_assert!(s.0 <= 10_000);
            let o = outcome(&results, s);
            let critical_failed = results.iter().any(|r| {
                r.critical
                    && r.verdict != Verdict::Pass
                    && !(r.id == InvariantId::Determinism && r.verdict == Verdict::Skipped)
            });
            if critical_failed {
                prop_assert_eq!(o, Outcome::Fail);
            } else {
                let expected = if s.0 >= PASS_SCORE { Outcome::Pass } else if s.0 >= CONDITIONS_SCORE { Outcome::PassWithConditions } else { Outcome::Fail };
                prop_assert_eq!(o, expected);
            }
        }

        /// Turning any verdict from pass to warn or fail never raises the score.
        #[test]
        fn worse_verdicts_never_score_higher(
            verdicts in prop::collection::vec(verdict(), 14),
            weights in prop::collection::vec(0.0f64..10.0, 14),
            index in 0usize..14,
            worse in prop_oneof![Just(Verdict::Warn), Just(Verdict::Fail)],
        ) {
            let mut better = verdicts.clone();
            better[index] = Verdict::Pass;
            let mut worsened = verdicts;
            worsened[index] = worse;
            let p = policy(&weights);
            prop_assert!(score(&results(&worsened), &p) <= score(&results(&better), &p));
        }
    }
}
