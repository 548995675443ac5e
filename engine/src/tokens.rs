//! The token forecast of docs/engine.md 4.5: `EMA(tokens_in) * alpha + expected_out * beta`, which
//! feeds admission when the coordinator is under pressure.

use crate::config::TokenConfig;

/// Exponential moving average of requested context, and the forecast built on it.
#[derive(Clone, Debug)]
pub struct TokenForecast {
    config: TokenConfig,
    /// EMA of `tokens_in`; `None` before the first task.
    ema_in: Option<f64>,
}

impl TokenForecast {
    /// A forecast with no history.
    pub fn new(config: TokenConfig) -> TokenForecast {
        assert!((0.0..=1.0).contains(&config.ema_smoothing));
        TokenForecast { config, ema_in: None }
    }

    /// Folds one task's context into the EMA.
    pub fn observe(&mut self, tokens_in: u32) {
        let x = f64::from(tokens_in);
        let k = self.config.ema_smoothing;
        self.ema_in = Some(match self.ema_in {
            None => x,
            Some(ema) => ema + k * (x - ema),
        });
    }

    /// Forecast token load of a task expecting `expected_out` output tokens.
    pub fn forecast(&self, expected_out: u32) -> f64 {
        self.ema_in.unwrap_or(0.0) * self.config.alpha + f64::from(expected_out) * self.config.beta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forecast_follows_the_ema() {
        let mut forecast = TokenForecast::new(TokenConfig { ema_smoothing: 0.5, ..TokenConfig::default() });
        forecast.observe(100);
        forecast.observe(300);
        // EMA = 200; 200 * 0.7 + 100 * 0.3 = 170.
        assert!((forecast.forecast(100) - 170.0).abs() < 1e-9);
    }
}
