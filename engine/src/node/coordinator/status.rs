//! What the coordinator reports: its status (the gateway's `/ocps/status` and `/metrics`)
//! and, from the autoscaler (docs/engine.md 4.10), the targets and the replicas it starts
//! and drains.

use super::{Coordinator, Core};
use crate::config::EngineConfig;
use crate::node::autoscale::Action;
use crate::probe::{ppm, ScaleEvent, ScaleSignal, Signal};
use crate::rpc::{CoordinatorStatus, PathScale};
use crate::task::{Path, PerPath};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Poll period of a draining replica's calls in flight.
const DRAIN_POLL_MS: u64 = 100;

impl Core {
    /// Counters and state now; `at_ms` picks the budget day, `now_ms` (the coordinator's
    /// clock, `Coordinator::uptime_ms`) ends the minute of served ages.
    pub(super) fn status(&self, config: &EngineConfig, at_ms: u64, now_ms: u64) -> CoordinatorStatus {
        let day = config.day_of(at_ms);
        CoordinatorStatus {
            halted: self.halted.clone(),
            draining: self.draining,
            cusum_s: self.valve.s(),
            cusum_h: self.valve.h(),
            valve_tasks: self.valve.tasks(),
            breaches: self.valve.breaches(),
            fast_ratio_window: 1.0 - self.router.deep_share(),
            decisions: self.counters.decisions,
            rejections: self.counters.rejections,
            completed: self.counters.completed,
            failed: self.counters.failed,
            cache_hits: self.counters.cache_hits,
            tier_hits: self.counters.tier_hits,
            served_age_max_ms: self.served_ages.max_ms(now_ms),
            autoscale: Path::ALL.map(|path| {
                let (target, demand) = self.fleet.target(path);
                PathScale { target, demand, active: self.fleet.active(path) }
            }),
            mw_hit_rate: self.hit_rate,
            in_flight: self.in_flight(),
            day,
            spent_today_micro_usd: self.governor.day_state(day).spent_micro_usd,
            daily_budget_micro_usd: config.governor.daily_budget_micro_usd,
            fast_slo_ms: config.router.fast_slo_ms,
            ledger_receipts: self.counters.ledger_receipts,
            ledger_cycles: self.counters.ledger_cycles,
            next_task_id: self.next_task_id,
        }
    }
}

impl Coordinator {
    /// The autoscaler: every interval, the demand and the target per path; with a scaler,
    /// starts replicas (ready after the start-up delay) and drains surplus ones (stopped
    /// once their calls have returned).
    ///
    /// The loop holds the coordinator only between its waits (a `Weak` across them), so a
    /// parked or sleeping autoscaler never keeps a killed coordinator's state alive.
    pub(super) async fn autoscale(me: Weak<Self>, wake: Arc<tokio::sync::Notify>) {
        let Some(this) = me.upgrade() else { return };
        let config = this.context.config.clone();
        let interval = Duration::from_millis(config.autoscale.interval_ms);
        let concurrency = PerPath { fast: config.dispatch.fast_concurrency, deep: config.dispatch.deep_concurrency };
        // The starting target (the topology), so that every run records one per path.
        for path in Path::ALL {
            this.emit_scale(path, ScaleEvent::Target, None);
        }
        drop(this);
        loop {
            madsim::time::sleep(interval).await;
            let Some(this) = me.upgrade() else { return };
            if this.autoscale_tick(concurrency) {
                drop(this);
                // Nothing can change before a call: wait for one instead of ticking
                // through idle simulated time.
                wake.notified().await;
                let Some(this) = me.upgrade() else { return };
                let now = this.uptime_ms();
                this.lock().fleet.resume(now);
            }
        }
    }

    /// One tick of the autoscaler: the targets, and the starts and drains they ask for.
    /// Returns whether the autoscaler should park until the next call.
    fn autoscale_tick(self: &Arc<Self>, concurrency: PerPath<u32>) -> bool {
        let (actions, changed) = self.lock().fleet.tick(self.uptime_ms(), concurrency);
        let parked = {
            let mut core = self.lock();
            core.scaler_parked = actions.is_empty() && core.fleet.quiet();
            core.scaler_parked
        };
        for path in Path::ALL {
            if changed[path] {
                self.emit_scale(path, ScaleEvent::Target, None);
            }
        }
        for action in actions {
            match action {
                Action::Start(path, replica) => self.start_replica(path, replica),
                Action::Drain(path, replica) => self.drain_replica(path, replica),
            }
        }
        parked
    }

    /// Starts a replica; it takes work after the start-up delay.
    fn start_replica(self: &Arc<Self>, path: Path, replica: usize) {
        if let Some(scaler) = &self.context.scaler {
            scaler.start(path, replica);
        }
        self.emit_scale(path, ScaleEvent::Starting, Some(replica));
        let startup = Duration::from_millis(self.context.config.autoscale.startup_ms);
        let me = self.clone();
        madsim::task::spawn(async move {
            madsim::time::sleep(startup).await;
            me.lock().fleet.ready(path, replica);
            me.emit_scale(path, ScaleEvent::Ready, Some(replica));
        });
    }

    /// Drains a replica: it takes no new work, and stops once its calls have returned.
    fn drain_replica(self: &Arc<Self>, path: Path, replica: usize) {
        self.emit_scale(path, ScaleEvent::Draining, Some(replica));
        let me = self.clone();
        madsim::task::spawn(async move {
            while me.lock().fleet.in_flight(path, replica) > 0 {
                madsim::time::sleep(Duration::from_millis(DRAIN_POLL_MS)).await;
            }
            if let Some(scaler) = &me.context.scaler {
                scaler.stop(path, replica);
            }
            me.lock().fleet.stopped(path, replica);
            me.emit_scale(path, ScaleEvent::Stopped, Some(replica));
        });
    }

    fn emit_scale(&self, path: Path, event: ScaleEvent, replica: Option<usize>) {
        let (target, demand, replicas) = {
            let core = self.lock();
            let (target, demand) = core.fleet.target(path);
            (target, demand, core.fleet.active(path))
        };
        self.emit(Signal::Scale(ScaleSignal {
            demand_ppm: ppm(demand),
            event,
            path,
            replicas,
            target,
            worker: replica.map(|r| format!("{}-{}", path.as_str(), r + 1)),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Outcome, PerPath, RejectReason};

    #[test]
    fn a_fresh_coordinator_reports_its_topology_and_nothing_done() {
        let config = EngineConfig::default();
        let core = Core::new(&config, [2, 1].into(), false);
        let status = core.status(&config, 0, 0);
        assert_eq!(status.completed, PerPath::default());
        assert_eq!(status.in_flight, 0);
        assert_eq!(status.autoscale.map(|a| a.active), [config.topology.fast, config.topology.deep]);
        assert_eq!(status.daily_budget_micro_usd, config.governor.daily_budget_micro_usd);
        assert!(status.halted.is_none() && !status.draining);
        assert_eq!(status.served_age_max_ms, 0, "no cache entry served");
    }

    #[test]
    fn the_status_counts_what_is_in_flight_and_done() {
        let config = EngineConfig::default();
        let mut core = Core::new(&config, [2, 1].into(), false);
        core.in_flight = PerPath { fast: 3, deep: 1 };
        core.recording = 2;
        core.counters.count(&Outcome::Rejected { reason: RejectReason::Overload });
        core.halted = Some("ledger".into());
        let status = core.status(&config, 86_400_000, 0);
        assert_eq!(status.in_flight, 6, "in dispatch on both paths, and waiting for the ledger");
        assert_eq!(status.rejections.iter().sum::<u64>(), 1);
        assert_eq!(status.day, config.day_of(86_400_000));
        assert_eq!(status.halted.as_deref(), Some("ledger"));
    }

    #[test]
    fn the_status_reports_the_oldest_entry_served_in_the_last_minute_of_its_clock() {
        let config = EngineConfig::default();
        let mut core = Core::new(&config, [2, 1].into(), false);
        core.served_ages.record(10_000, 7_500);
        core.served_ages.record(40_000, 2_000);
        assert_eq!(core.status(&config, 0, 40_000).served_age_max_ms, 7_500);
        assert_eq!(core.status(&config, 0, 70_000).served_age_max_ms, 2_000, "second 10 is over a minute old");
    }
}
