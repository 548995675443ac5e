//! The gateway's endpoints and their rate limits (docs/live.md 4.11).
//!
//! One limiter per endpoint, shared by every client (the limits are the engine's capacity
//! per endpoint, not a per-user quota). A limit of N per minute is a token bucket of N
//! that refills one token every 60/N seconds (the `governor` crate's GCRA).

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;

/// Every route of the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Api {
    Tasks,
    Route,
    Status,
    State,
    Energy,
    Tier25Store,
    Tier25Retrieve,
    Validate,
    Metrics,
    Healthz,
    Readyz,
}

impl Api {
    /// Every endpoint, in the order of `index`.
    pub const ALL: [Api; 11] = [
        Api::Tasks,
        Api::Route,
        Api::Status,
        Api::State,
        Api::Energy,
        Api::Tier25Store,
        Api::Tier25Retrieve,
        Api::Validate,
        Api::Metrics,
        Api::Healthz,
        Api::Readyz,
    ];

    /// The URL path.
    pub fn path(self) -> &'static str {
        match self {
            Api::Tasks => "/v1/tasks",
            Api::Route => "/ocps/route",
            Api::Status => "/ocps/status",
            Api::State => "/state/unified",
            Api::Energy => "/energy/gradient",
            Api::Tier25Store => "/memory/tier25/store",
            Api::Tier25Retrieve => "/memory/tier25/retrieve",
            Api::Validate => "/safety/validate",
            Api::Metrics => "/metrics",
            Api::Healthz => "/healthz",
            Api::Readyz => "/readyz",
        }
    }

    /// The name in `--rate-limit NAME=N` and in metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Api::Tasks => "tasks",
            Api::Route => "route",
            Api::Status => "status",
            Api::State => "state",
            Api::Energy => "energy",
            Api::Tier25Store => "tier25_store",
            Api::Tier25Retrieve => "tier25_retrieve",
            Api::Validate => "validate",
            Api::Metrics => "metrics",
            Api::Healthz => "healthz",
            Api::Readyz => "readyz",
        }
    }

    /// The endpoint of a URL path.
    pub fn of_path(path: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|api| api.path() == path)
    }

    /// docs/live.md 4.11's limit, requests per minute; `None` for the operational endpoints, which
    /// are never limited (a probe or a scrape must not be turned away).
    pub fn default_per_minute(self) -> Option<u32> {
        match self {
            Api::Tasks | Api::Route => Some(500),
            Api::Status | Api::State | Api::Validate => Some(1_000),
            Api::Energy => Some(2_000),
            Api::Tier25Store => Some(5_000),
            Api::Tier25Retrieve => Some(10_000),
            Api::Metrics | Api::Healthz | Api::Readyz => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Requests per minute per endpoint; `None` is unlimited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    per_minute: [Option<u32>; Api::ALL.len()],
}

impl Default for Limits {
    fn default() -> Self {
        Limits { per_minute: Api::ALL.map(Api::default_per_minute) }
    }
}

impl Limits {
    /// The limit of an endpoint.
    pub fn get(&self, api: Api) -> Option<u32> {
        self.per_minute[api.index()]
    }

    /// Applies `NAME=N` (N requests per minute; `0` or `off`: unlimited). The error names
    /// what is wrong.
    pub fn set(&mut self, setting: &str) -> Result<(), String> {
        let (name, value) =
            setting.split_once('=').ok_or_else(|| format!("--rate-limit {setting:?}: expected NAME=N (per minute)"))?;
        let api = Api::ALL
            .into_iter()
            .find(|api| api.name() == name && api.default_per_minute().is_some())
            .ok_or_else(|| {
                let names: Vec<_> =
                    Api::ALL.iter().filter(|a| a.default_per_minute().is_some()).map(|a| a.name()).collect();
                format!("--rate-limit: unknown endpoint {name:?}; endpoints are {}", names.join(", "))
            })?;
        let limit = match value {
            "0" | "off" => None,
            n => Some(n.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("--rate-limit {name}={n}: N must be a whole number of requests per minute, or off")
            })?),
        };
        self.per_minute[api.index()] = limit;
        Ok(())
    }
}

/// The limiters of the running gateway.
pub struct Limiters {
    limiters: Vec<Option<DefaultDirectRateLimiter>>,
}

impl Limiters {
    /// One limiter per limited endpoint.
    pub fn new(limits: &Limits) -> Limiters {
        let limiters = Api::ALL
            .iter()
            .map(|api| limits.get(*api).and_then(NonZeroU32::new).map(|n| RateLimiter::direct(Quota::per_minute(n))))
            .collect();
        Limiters { limiters }
    }

    /// Takes one request's token; `Err(wait)` when the endpoint is over its limit, with
    /// the time until the next token.
    pub fn check(&self, api: Api) -> Result<(), Duration> {
        match &self.limiters[api.index()] {
            None => Ok(()),
            Some(limiter) => {
                limiter.check().map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_to_the_spec_and_can_be_set_or_lifted() {
        let mut limits = Limits::default();
        assert_eq!(limits.get(Api::Tasks), Some(500));
        assert_eq!(limits.get(Api::Tier25Retrieve), Some(10_000));
        assert_eq!(limits.get(Api::Metrics), None);
        limits.set("route=off").unwrap();
        limits.set("tasks=20").unwrap();
        assert_eq!((limits.get(Api::Route), limits.get(Api::Tasks)), (None, Some(20)));
        assert!(limits.set("metrics=5").unwrap_err().contains("unknown endpoint"));
        assert!(limits.set("tasks=-1").unwrap_err().contains("whole number"));
        assert!(limits.set("tasks").unwrap_err().contains("NAME=N"));
    }

    #[test]
    fn a_limiter_refuses_the_request_over_its_burst_and_says_how_long_to_wait() {
        let mut limits = Limits::default();
        limits.set("tasks=3").unwrap();
        let limiters = Limiters::new(&limits);
        for _ in 0..3 {
            assert_eq!(limiters.check(Api::Tasks), Ok(()));
        }
        let wait = limiters.check(Api::Tasks).unwrap_err();
        assert!(wait > Duration::from_secs(15) && wait <= Duration::from_secs(20), "{wait:?}");
        assert_eq!(limiters.check(Api::Healthz), Ok(()));
    }
}
