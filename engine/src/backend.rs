//! Model backends (docs/engine.md 4.8). The simulated backend answers as a serving engine does:
//! prefill first (its time to first token grows with the prompt), then decode (its time per
//! output token grows with the calls the worker runs at once), each with lognormal noise; it
//! fails with a configured probability and returns the task's output tokens, capped by
//! `max_tokens_out` (times the inflation factor, which models a backend that overruns).
//! It runs in both builds: live it sleeps in real time, so the engine needs no model.

use crate::conditions::BackendWeather;
use crate::config::{BackendConfig, PathModel};
use crate::task::Path;
use rand::Rng;
use rand_distr::{Distribution, LogNormal};

/// The z-score of the 99th percentile of a standard normal.
const Z_99: f64 = 2.326_347_874;
/// The longest a call takes, whatever its tokens and faults: an hour.
const MAX_CALL_MS: f64 = 3_600_000.0;

/// One call as drawn: its latency, the part of it before the first output token, and
/// either the output tokens or an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub latency_ms: u64,
    /// At most `latency_ms`.
    pub ttft_ms: u64,
    pub result: Result<u32, String>,
}

/// What a call asks of the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallShape {
    /// Prompt tokens (after any truncation).
    pub tokens_in: u32,
    pub tokens_out: u32,
    pub max_tokens_out: u32,
    /// Calls the worker runs at once, this one included.
    pub running: u32,
}

/// The simulated backend of one path.
#[derive(Clone, Debug)]
pub struct SimulatedBackend {
    model: PathModel,
    noise: LogNormal<f64>,
}

impl SimulatedBackend {
    /// The backend of a path.
    pub fn new(config: &BackendConfig, path: Path) -> SimulatedBackend {
        let model = config.of(path).clone();
        let noise = LogNormal::new(0.0, model.noise_p99.ln() / Z_99).expect("validated noise_p99 >= 1");
        SimulatedBackend { model, noise }
    }

    /// A noise factor, bounded at three times its 99th percentile (a tail without bound
    /// would let one draw hold a worker for hours).
    fn noise<R: Rng>(&self, rng: &mut R) -> f64 {
        self.noise.sample(rng).min(self.model.noise_p99 * 3.0)
    }

    /// Draws one call under `weather`. The draws from `rng` are the same whatever the
    /// weather and the shape, so a fault changes what a call returns, not the random stream
    /// of the calls after it.
    pub fn draw<R: Rng>(&self, rng: &mut R, shape: CallShape, weather: BackendWeather) -> Call {
        let model = &self.model;
        let (prefill_noise, decode_noise) = (self.noise(rng), self.noise(rng));
        // One uniform draw whatever the rate (`gen_bool` draws nothing at 0 or 1).
        let fails = rng.gen::<f64>() < model.error_rate.max(weather.error_rate);
        let asked = shape.tokens_out.min(shape.max_tokens_out);
        let inflation = model.token_inflation * weather.token_inflation;
        let returned = (f64::from(asked) * inflation).ceil().min(f64::from(u32::MAX)) as u32;
        let prefill_ms = model.ttft_base_ms + f64::from(shape.tokens_in) / model.prefill_tokens_per_s * 1000.0;
        let batch = 1.0 + model.batch_slope * f64::from(shape.running.max(1) - 1);
        let decode_ms = f64::from(returned) * model.tpot_ms * batch;
        let ttft = (prefill_ms * prefill_noise * weather.slowdown).clamp(1.0, MAX_CALL_MS);
        let latency = (ttft + decode_ms * decode_noise * weather.slowdown).min(MAX_CALL_MS);
        let (latency_ms, ttft_ms) = (latency.round() as u64, ttft.round() as u64);
        if fails {
            // A failed call ends where its answer would have begun.
            return Call { latency_ms: ttft_ms, ttft_ms, result: Err("backend error".to_string()) };
        }
        Call { latency_ms, ttft_ms, result: Ok(returned) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn shape(tokens_in: u32, tokens_out: u32, running: u32) -> CallShape {
        CallShape { tokens_in, tokens_out, max_tokens_out: 4096, running }
    }

    fn median_and_p99(backend: &SimulatedBackend, shape: CallShape, pick: fn(&Call) -> u64) -> (f64, f64) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut values: Vec<u64> =
            (0..20_000).map(|_| pick(&backend.draw(&mut rng, shape, BackendWeather::default()))).collect();
        values.sort_unstable();
        (values[10_000] as f64, values[19_800] as f64)
    }

    #[test]
    fn fast_latency_at_the_azure_hours_median_sizes_is_near_80_ms() {
        let backend = SimulatedBackend::new(&BackendConfig::default(), Path::Fast);
        // The Azure conversation hour's median request: 1,020 tokens in, 129 out.
        let (median, _) = median_and_p99(&backend, shape(1_020, 129, 1), |c| c.latency_ms);
        assert!((70.0..90.0).contains(&median), "median {median}");
    }

    #[test]
    fn ttft_grows_with_the_prompt_and_decode_with_the_batch() {
        let backend = SimulatedBackend::new(&BackendConfig::default(), Path::Fast);
        let ttft = |tokens_in| median_and_p99(&backend, shape(tokens_in, 100, 1), |c| c.ttft_ms).0;
        assert!(ttft(64_000) > 10.0 * ttft(1_000), "{} vs {}", ttft(64_000), ttft(1_000));
        let decode = |running| median_and_p99(&backend, shape(1_000, 2_000, running), |c| c.latency_ms - c.ttft_ms).0;
        assert!(decode(64) > 1.8 * decode(1), "{} vs {}", decode(64), decode(1));
        let (median, p99) = median_and_p99(&backend, shape(1_000, 100, 1), |c| c.ttft_ms);
        assert!(p99 > median * 1.3 && p99 < median * 2.0, "noise: median {median}, p99 {p99}");
    }

    #[test]
    fn deep_latency_at_the_azure_hours_median_sizes_is_near_6_s() {
        let backend = SimulatedBackend::new(&BackendConfig::default(), Path::Deep);
        let (median, _) = median_and_p99(&backend, shape(1_020, 129, 1), |c| c.latency_ms);
        assert!((5_000.0..7_000.0).contains(&median), "median {median}");
    }

    #[test]
    fn inflation_returns_more_than_asked() {
        let mut config = BackendConfig::default();
        config.deep.token_inflation = 3.0;
        config.deep.error_rate = 0.0;
        let backend = SimulatedBackend::new(&config, Path::Deep);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let asked = CallShape { tokens_in: 10, tokens_out: 500, max_tokens_out: 100, running: 1 };
        assert_eq!(backend.draw(&mut rng, asked, BackendWeather::default()).result, Ok(300));
        let weather = BackendWeather { token_inflation: 2.0, ..BackendWeather::default() };
        assert_eq!(backend.draw(&mut rng, asked, weather).result, Ok(600));
    }

    #[test]
    fn weather_slows_and_fails_calls_without_changing_the_stream() {
        let backend = SimulatedBackend::new(&BackendConfig::default(), Path::Fast);
        let stormy = BackendWeather { error_rate: 1.0, slowdown: 4.0, token_inflation: 1.0 };
        let mut calm_rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut stormy_rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for _ in 0..100 {
            let calm = backend.draw(&mut calm_rng, shape(500, 10, 1), BackendWeather::default());
            let storm = backend.draw(&mut stormy_rng, shape(500, 10, 1), stormy);
            assert!(storm.result.is_err());
            assert!(
                storm.ttft_ms >= calm.ttft_ms * 4 - 2 && storm.ttft_ms <= calm.ttft_ms * 4 + 2,
                "{storm:?} vs {calm:?}"
            );
        }
        // Both streams are still in step.
        assert_eq!(calm_rng.gen::<u64>(), stormy_rng.gen::<u64>());
    }
}
