//! Model backends (docs/engine.md 4.8). The simulated backend draws latency from a lognormal per
//! path, fails with a configured probability and returns the task's output tokens, capped
//! by `max_tokens_out` (times the inflation factor, which models a backend that overruns).
//! It runs in both builds: live it sleeps in real time, so the engine needs no model.

use crate::conditions::BackendWeather;
use crate::config::{BackendConfig, PathModel};
use crate::task::Path;
use rand::Rng;
use rand_distr::{Distribution, LogNormal};

/// The z-score of the 99th percentile of a standard normal.
const Z_99: f64 = 2.326_347_874;

/// A successful backend call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generation {
    pub latency_ms: u64,
    pub tokens_out: u32,
}

/// The simulated backend of one path.
#[derive(Clone, Debug)]
pub struct SimulatedBackend {
    model: PathModel,
    latency: LogNormal<f64>,
}

impl SimulatedBackend {
    /// The backend of a path.
    pub fn new(config: &BackendConfig, path: Path) -> SimulatedBackend {
        let model = config.of(path).clone();
        let sigma = (model.p99_ms / model.median_ms).ln() / Z_99;
        let latency = LogNormal::new(model.median_ms.ln(), sigma).expect("validated median and p99");
        SimulatedBackend { model, latency }
    }

    /// Draws one call under `weather`: its latency and either the generation or an error.
    /// The draws from `rng` are the same whatever the weather, so a fault changes what a
    /// call returns, not the random stream of the calls after it.
    pub fn draw<R: Rng>(
        &self,
        rng: &mut R,
        tokens_out: u32,
        max_tokens_out: u32,
        weather: BackendWeather,
    ) -> (u64, Result<u32, String>) {
        // Bound the tail: a call never takes longer than ten times the p99 (times the
        // slowdown of a `backend_slow` fault).
        let bounded = self.latency.sample(rng).min(self.model.p99_ms * 10.0);
        let latency_ms = (bounded * weather.slowdown).clamp(1.0, 3_600_000.0).round() as u64;
        // One uniform draw whatever the rate (`gen_bool` draws nothing at 0 or 1).
        if rng.gen::<f64>() < self.model.error_rate.max(weather.error_rate) {
            return (latency_ms, Err("backend error".to_string()));
        }
        let asked = tokens_out.min(max_tokens_out);
        let inflation = self.model.token_inflation * weather.token_inflation;
        let returned = (f64::from(asked) * inflation).ceil().min(f64::from(u32::MAX)) as u32;
        (latency_ms, Ok(returned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn fast_latency_matches_its_median_and_p99() {
        let backend = SimulatedBackend::new(&BackendConfig::default(), Path::Fast);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut latencies: Vec<u64> =
            (0..20_000).map(|_| backend.draw(&mut rng, 10, 10, BackendWeather::default()).0).collect();
        latencies.sort_unstable();
        let median = latencies[10_000] as f64;
        let p99 = latencies[19_800] as f64;
        assert!((median - 80.0).abs() < 5.0, "median {median}");
        assert!((p99 - 180.0).abs() < 20.0, "p99 {p99}");
    }

    #[test]
    fn inflation_returns_more_than_asked() {
        let mut config = BackendConfig::default();
        config.deep.token_inflation = 3.0;
        config.deep.error_rate = 0.0;
        let backend = SimulatedBackend::new(&config, Path::Deep);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        assert_eq!(backend.draw(&mut rng, 500, 100, BackendWeather::default()).1, Ok(300));
        let weather = BackendWeather { token_inflation: 2.0, ..BackendWeather::default() };
        assert_eq!(backend.draw(&mut rng, 500, 100, weather).1, Ok(600));
    }

    #[test]
    fn weather_slows_and_fails_calls_without_changing_the_stream() {
        let backend = SimulatedBackend::new(&BackendConfig::default(), Path::Fast);
        let stormy = BackendWeather { error_rate: 1.0, slowdown: 4.0, token_inflation: 1.0 };
        let mut calm_rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut stormy_rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for _ in 0..100 {
            let calm = backend.draw(&mut calm_rng, 10, 10, BackendWeather::default());
            let storm = backend.draw(&mut stormy_rng, 10, 10, stormy);
            assert!(storm.1.is_err());
            assert!(storm.0 >= calm.0 * 4 - 2 && storm.0 <= calm.0 * 4 + 2, "{storm:?} vs {calm:?}");
        }
        // Both streams are still in step.
        assert_eq!(calm_rng.gen::<u64>(), stormy_rng.gen::<u64>());
    }
}
