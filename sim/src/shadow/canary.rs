//! A canary's judgement (docs/certification.md 8.9): the candidate against the base, seed by
//! seed, by explicit rules: seed 000's rollback criteria on each candidate run, a verdict
//! the candidate makes worse, and seed 001's "performance drop > 10 % vs baseline" per
//! measure, with the direction and tolerance the candidate's `[canary]` table sets.
//!
//! Guarantees: `judge_seed` reads only the two runs' totals and verdicts (both folded from
//! their event logs) and the rules, so `seedcore verify` recomputes the same findings from
//! a bundle.

use super::measures::{self, Better};
pub use super::rules::{
    CanaryRules, CanarySpec, MeasureRule, MeasureSpec, DEFAULT_MEASURES, DEFAULT_TOLERANCE, ROLLBACK_CRITERIA,
};
use crate::invariant_id::InvariantId;
use crate::invariants::{InvariantResult, Stats, Verdict};

/// What a finding does to the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effect {
    Promote,
    Condition,
    Rollback,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Promote => "promote",
            Effect::Condition => "condition",
            Effect::Rollback => "rollback",
        }
    }
}

/// The verdict of a canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CanaryVerdict {
    Promote,
    PromoteWithConditions,
    Rollback,
}

impl CanaryVerdict {
    pub fn of(effect: Effect) -> CanaryVerdict {
        match effect {
            Effect::Promote => CanaryVerdict::Promote,
            Effect::Condition => CanaryVerdict::PromoteWithConditions,
            Effect::Rollback => CanaryVerdict::Rollback,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CanaryVerdict::Promote => "PROMOTE",
            CanaryVerdict::PromoteWithConditions => "PROMOTE WITH CONDITIONS",
            CanaryVerdict::Rollback => "ROLLBACK",
        }
    }

    pub fn parse(text: &str) -> Option<CanaryVerdict> {
        [CanaryVerdict::Promote, CanaryVerdict::PromoteWithConditions, CanaryVerdict::Rollback]
            .into_iter()
            .find(|v| v.as_str() == text)
    }
}

/// Which rule a finding comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Seed 000's rollback criteria (and `lipschitz_bound`: `L_tot` at or above 1.0).
    RollbackCriterion,
    /// An invariant whose verdict the candidate makes worse than the base's.
    Invariant,
    /// A measure against its tolerance (seed 001).
    Measure,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::RollbackCriterion => "rollback criterion",
            Rule::Invariant => "invariant",
            Rule::Measure => "measure",
        }
    }
}

/// One rule applied to one seed's pair of runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub rule: Rule,
    /// The invariant id or the measure's name.
    pub subject: String,
    pub base: String,
    pub candidate: String,
    /// The limit, e.g. `<= +10.0 %` or `pass`.
    pub limit: String,
    pub effect: Effect,
    /// One line a person reads.
    pub why: String,
}

/// The relative worsening of `candidate` against `base` in the measure's bad direction:
/// 0 when equal or better; infinite when the base is 0 and the candidate worse.
pub fn worsening(better: Better, base: f64, candidate: f64) -> f64 {
    let worse_by = match better {
        Better::Higher => base - candidate,
        Better::Lower => candidate - base,
    };
    if worse_by <= 0.0 {
        0.0
    } else if base == 0.0 {
        f64::INFINITY
    } else {
        worse_by / base.abs()
    }
}

/// A signed relative change as people read it: `+12.5 %`, `-3.0 %`, `new` from 0.
pub fn change_text(base: Option<f64>, candidate: Option<f64>) -> String {
    match (base, candidate) {
        (Some(b), Some(c)) if b == c => "0.0 %".to_string(),
        (Some(0.0), Some(c)) => format!("{c:+} from 0"),
        (Some(b), Some(c)) => format!("{:+.1} %", 100.0 * (c - b) / b.abs()),
        _ => String::new(),
    }
}

fn verdict_of(results: &[InvariantResult], id: InvariantId) -> Option<&InvariantResult> {
    results.iter().find(|r| r.id == id)
}

/// Every rule on one seed's pair of runs: rollback criteria and invariants that did not
/// hold (only those), and every measure the rules name.
pub fn judge_seed(
    rules: &CanaryRules,
    base: (&Stats, &[InvariantResult]),
    candidate: (&Stats, &[InvariantResult]),
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for id in InvariantId::ALL {
        let (Some(b), Some(c)) = (verdict_of(base.1, id), verdict_of(candidate.1, id)) else { continue };
        let criterion = id.is_rollback() || id == InvariantId::LipschitzBound;
        let finding = |rule: Rule, effect: Effect, why: String| Finding {
            rule,
            subject: id.as_str().to_string(),
            base: format!("{} ({})", b.verdict.as_str(), b.observed),
            candidate: format!("{} ({})", c.verdict.as_str(), c.observed),
            limit: c.threshold.clone(),
            effect,
            why,
        };
        if criterion && c.verdict == Verdict::Fail {
            findings.push(finding(
                Rule::RollbackCriterion,
                Effect::Rollback,
                format!("the candidate breaks the rollback criterion {id}: {}", c.observed),
            ));
        } else if rank(c.verdict) > rank(b.verdict) {
            let effect = if id.critical() && c.verdict == Verdict::Fail { Effect::Rollback } else { Effect::Condition };
            findings.push(finding(
                Rule::Invariant,
                effect,
                format!("{id} is {} in the candidate, {} in the base", c.verdict.as_str(), b.verdict.as_str()),
            ));
        } else if c.verdict == Verdict::Fail {
            findings.push(finding(
                Rule::Invariant,
                Effect::Condition,
                format!("{id} fails in the candidate as in the base: not caused by the change, not cleared by it"),
            ));
        }
    }
    let (base_values, candidate_values) = (measures::all(base.0), measures::all(candidate.0));
    for rule in &rules.measures {
        let find = |values: &[measures::Value]| values.iter().find(|v| v.name == rule.measure).cloned();
        let (Some(b), Some(c)) = (find(&base_values), find(&candidate_values)) else { continue };
        let limit = format!(
            "{} better; rollback beyond {:.1} % worse, condition beyond {:.1} %",
            rule.better.as_str(),
            100.0 * rule.tolerance,
            100.0 * rule.warn
        );
        let (effect, why) = match (b.value, c.value) {
            (Some(bv), Some(cv)) => {
                let worse = worsening(rule.better, bv, cv);
                let effect = if worse > rule.tolerance {
                    Effect::Rollback
                } else if worse > rule.warn {
                    Effect::Condition
                } else {
                    Effect::Promote
                };
                (effect, format!("{} {} -> {} ({})", rule.measure, b.text(), c.text(), change_text(b.value, c.value)))
            }
            (None, None) => (Effect::Promote, format!("{}: nothing to measure in either run", rule.measure)),
            _ => (Effect::Condition, format!("{}: measured in one run only", rule.measure)),
        };
        findings.push(Finding {
            rule: Rule::Measure,
            subject: rule.measure.clone(),
            base: b.text(),
            candidate: c.text(),
            limit,
            effect,
            why,
        });
    }
    findings
}

/// Pass before warn before fail; a skipped verdict ranks with pass (nothing judged).
fn rank(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Pass | Verdict::Skipped => 0,
        Verdict::Warn => 1,
        Verdict::Fail => 2,
    }
}

/// The effect of a seed: its worst finding's.
pub fn seed_effect(findings: &[Finding]) -> Effect {
    findings.iter().map(|f| f.effect).max().unwrap_or(Effect::Promote)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worsening_follows_the_direction_and_the_base() {
        assert_eq!(worsening(Better::Lower, 100.0, 120.0), 0.2);
        assert_eq!(worsening(Better::Lower, 100.0, 80.0), 0.0);
        assert!((worsening(Better::Higher, 0.9, 0.81) - 0.1).abs() < 1e-12);
        assert_eq!(worsening(Better::Higher, 0.9, 0.95), 0.0);
        assert_eq!(worsening(Better::Lower, 0.0, 1.0), f64::INFINITY);
        assert_eq!(worsening(Better::Lower, 0.0, 0.0), 0.0);
        assert_eq!(change_text(Some(200.0), Some(250.0)), "+25.0 %");
        assert_eq!(change_text(Some(3.0), Some(3.0)), "0.0 %");
    }

    #[test]
    fn verdicts_read_back() {
        for v in [CanaryVerdict::Promote, CanaryVerdict::PromoteWithConditions, CanaryVerdict::Rollback] {
            assert_eq!(CanaryVerdict::parse(v.as_str()), Some(v));
        }
        assert_eq!(CanaryVerdict::of(Effect::Condition), CanaryVerdict::PromoteWithConditions);
    }
}
