//! Score and outcome (SPEC 8.2): score = 100 * sum(weight * points) / sum(weight), points
//! 1 / 0.5 / 0 for pass / warn / fail; invariants with nothing to judge (`skipped`) count
//! for nothing either way. PASS needs every critical invariant passing and score >= 90;
//! PASS WITH CONDITIONS every critical passing and 75 <= score < 90; anything else FAILs,
//! including a critical invariant that could not be judged: it did not pass.

use crate::model::{Outcome, Score};
use seedcore_sim::invariants::{InvariantResult, Verdict};
use seedcore_sim::scenario::Policy;

/// Score of PASS, in hundredths.
pub const PASS_SCORE: u32 = 9_000;
/// Lowest score of PASS WITH CONDITIONS, in hundredths.
pub const CONDITIONS_SCORE: u32 = 7_500;

/// The score of `results` under the weights of `policy`, rounded to hundredths.
/// With nothing judged at all the score is 0.
pub fn score(results: &[InvariantResult], policy: &Policy) -> Score {
    let (mut earned, mut total) = (0.0, 0.0);
    for result in results {
        let weight = policy.invariants.get(result.id).map_or(0.0, |p| p.weight);
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

/// The critical invariants that did not pass (failed, or had nothing to judge).
pub fn critical_not_passed(results: &[InvariantResult]) -> Vec<&'static str> {
    results.iter().filter(|r| r.critical && r.verdict != Verdict::Pass).map(|r| r.id).collect()
}

/// The outcome of `results` with `score`.
pub fn outcome(results: &[InvariantResult], score: Score) -> Outcome {
    let critical_failed = !critical_not_passed(results).is_empty();
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
    use proptest::prelude::*;
    use seedcore_sim::scenario::{InvariantPolicy, INVARIANTS};
    use std::collections::BTreeMap;

    fn policy(weights: &[f64]) -> Policy {
        let invariants: BTreeMap<_, _> = INVARIANTS
            .iter()
            .zip(weights.iter().chain(std::iter::repeat(&1.0)))
            .map(|((id, _, threshold, warn, _), w)| {
                (*id, InvariantPolicy { threshold: *threshold, warn: *warn, weight: *w })
            })
            .collect();
        Policy { window: 10, invariants }
    }

    fn results(verdicts: &[Verdict]) -> Vec<InvariantResult> {
        INVARIANTS
            .iter()
            .zip(verdicts)
            .map(|((id, critical, ..), verdict)| InvariantResult {
                id,
                critical: *critical,
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
        v[5] = Skipped; // determinism with a single run
        assert_eq!(critical_not_passed(&results(&v)), vec!["determinism"]);
        assert_eq!(outcome(&results(&v), score(&results(&v), &policy(&[]))), Outcome::Fail);
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
            let critical_failed = results.iter().any(|r| r.critical && r.verdict != Verdict::Pass);
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
