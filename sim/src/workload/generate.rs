//! Generated arrivals: a thinned Poisson process with a daily swing and bursts, lognormal
//! token counts, enriched as trace rows are.
//!
//! Guarantees: the arrivals are a pure function of the spec, the enrichment, the seed and
//! the duration, in arrival order, all before the duration.

use super::enrich::{Enrichment, Given, REPEAT_HISTORY};
use super::GeneratedSpec;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use seedcore_engine::Task;

/// Every generated task of a run with `seed` arriving before `duration_ms`.
pub(super) fn tasks(spec: &GeneratedSpec, enrichment: &Enrichment, seed: u64, duration_ms: u64) -> Vec<Task> {
    let mut tasks = Vec::new();
    let mut history = Vec::with_capacity(REPEAT_HISTORY);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6172_7269_7661_6c73);
    let sigma = |(median, p99): (f64, f64)| (p99 / median).ln() / 2.326_347_874;
    let tokens_in = LogNormal::new(spec.tokens_in.0.ln(), sigma(spec.tokens_in)).expect("validated");
    let tokens_out = LogNormal::new(spec.tokens_out.0.ln(), sigma(spec.tokens_out)).expect("validated");
    let peak = spec.rate_per_s * (1.0 + spec.diurnal) * spec.bursts.iter().map(|b| b.2).fold(1.0, f64::max);
    let rate_at = |t_ms: f64| {
        let day = 2.0 * std::f64::consts::PI * t_ms / spec.diurnal_period_ms.max(1) as f64;
        let burst: f64 = spec.bursts.iter().filter(|b| (b.0 as f64..b.1 as f64).contains(&t_ms)).map(|b| b.2).product();
        spec.rate_per_s * (1.0 + spec.diurnal * day.sin()) * burst
    };
    // Thinning of a Poisson process at the peak rate.
    let mut t_ms = 0.0;
    let mut row = 0;
    loop {
        let gap: f64 = -(1.0 - rng.gen::<f64>()).ln() / peak * 1000.0;
        t_ms += gap;
        if t_ms >= duration_ms as f64 {
            return tasks;
        }
        if rng.gen::<f64>() * peak > rate_at(t_ms) {
            continue;
        }
        let tin = tokens_in.sample(&mut rng).clamp(1.0, 1e6) as u32;
        let tout = tokens_out.sample(&mut rng).clamp(0.0, 1e6) as u32;
        let given = Given { row, at_ms: t_ms as u64, tokens_in: tin, tokens_out: tout, signature: None, failed: false };
        tasks.push(enrichment.task(seed, given, &mut history));
        row += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_arrivals_follow_the_rate() {
        let spec = GeneratedSpec {
            rate_per_s: 10.0,
            diurnal: 0.0,
            diurnal_period_ms: 86_400_000,
            tokens_in: (800.0, 6000.0),
            tokens_out: (200.0, 1200.0),
            bursts: vec![],
        };
        let enrichment = Enrichment::default();
        let generated = tasks(&spec, &enrichment, 1, 600_000);
        assert!((5_700..6_300).contains(&generated.len()), "{}", generated.len());
        assert!(generated.windows(2).all(|p| p[0].at_ms <= p[1].at_ms));
        assert_eq!(generated, tasks(&spec, &enrichment, 1, 600_000));
    }
}
