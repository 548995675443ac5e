//! The oldest cache entry served lately: the status's `served_age_max_ms`, which
//! `/metrics` serves as `seedcore_cache_served_age_max_seconds` for the freshness rollback
//! alert (deploy/prometheus/alerts.yml). A rolling figure, not a maximum since start: an
//! old entry served once must stop counting, or one stale hit would hold the alert up for
//! good.
//!
//! One slot per second of the coordinator's clock, in a ring of a minute's worth: memory
//! stays the same whatever the traffic, and a hit costs a compare and a store.

/// Seconds remembered: the span of "the last minute".
const SECONDS: u64 = 60;

/// The oldest age served in one second of the coordinator's clock.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    second: u64,
    max_age_ms: u64,
}

/// The oldest age served per second, over the last `SECONDS` seconds.
#[derive(Clone, Debug)]
pub(super) struct ServedAges {
    /// Second `s` lives in slot `s % SECONDS`. A never-written slot (second 0, age 0)
    /// weighs nothing in a maximum, so needs no mark of its own.
    slots: [Slot; SECONDS as usize],
}

impl ServedAges {
    pub(super) fn new() -> ServedAges {
        ServedAges { slots: [Slot::default(); SECONDS as usize] }
    }

    /// An entry `age_ms` old was served at `now_ms` on the coordinator's clock.
    pub(super) fn record(&mut self, now_ms: u64, age_ms: u64) {
        let second = now_ms / 1000;
        let slot = &mut self.slots[(second % SECONDS) as usize];
        // The slot held a second a minute (or more) ago: its maximum is not this second's.
        if slot.second != second {
            *slot = Slot { second, max_age_ms: 0 };
        }
        slot.max_age_ms = slot.max_age_ms.max(age_ms);
    }

    /// The oldest age served in the `SECONDS` seconds up to `now_ms` (the current second
    /// and the 59 before it); 0 when nothing was served in them.
    pub(super) fn max_ms(&self, now_ms: u64) -> u64 {
        let second = now_ms / 1000;
        // A second after `now_ms` (a reader whose clock reading lags the recorder's) is
        // recent, not forgotten: `saturating_sub` keeps it.
        self.slots
            .iter()
            .filter(|slot| second.saturating_sub(slot.second) < SECONDS)
            .map(|slot| slot.max_age_ms)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_served_reads_zero() {
        let ages = ServedAges::new();
        assert_eq!(ages.max_ms(0), 0);
        assert_eq!(ages.max_ms(3_600_000), 0);
    }

    #[test]
    fn the_oldest_age_served_in_the_last_minute_is_reported() {
        let mut ages = ServedAges::new();
        ages.record(1_000, 2_000);
        ages.record(1_500, 7_000);
        ages.record(1_900, 3_000);
        ages.record(30_000, 4_000);
        assert_eq!(ages.max_ms(30_000), 7_000, "the oldest of the same second and of the others");
        assert_eq!(ages.max_ms(60_999), 7_000, "second 1 is the 60th second back from second 60");
    }

    #[test]
    fn seconds_older_than_a_minute_are_forgotten() {
        let mut ages = ServedAges::new();
        ages.record(1_000, 9_000);
        ages.record(30_000, 4_000);
        assert_eq!(ages.max_ms(61_000), 4_000, "second 1 is out of the minute up to second 61");
        assert_eq!(ages.max_ms(89_999), 4_000);
        assert_eq!(ages.max_ms(90_000), 0, "second 30 is out too");
        assert_eq!(ages.max_ms(10_000_000), 0);
    }

    #[test]
    fn a_slot_reused_a_minute_later_starts_from_its_new_second() {
        let mut ages = ServedAges::new();
        ages.record(5_000, 9_000);
        // Second 65 takes second 5's slot, with a younger entry.
        ages.record(65_000, 1_000);
        assert_eq!(ages.max_ms(65_000), 1_000, "second 5's 9 s left with its second");
        // Two minutes on, same slot again.
        ages.record(125_500, 500);
        assert_eq!(ages.max_ms(125_500), 500);
    }

    #[test]
    fn a_hit_recorded_just_after_the_reading_counts() {
        let mut ages = ServedAges::new();
        ages.record(60_000, 6_000);
        assert_eq!(ages.max_ms(59_999), 6_000, "a second ahead of the reader is recent, not old");
    }
}
