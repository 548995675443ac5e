//! The memory fabric (docs/engine.md 4.3): the working cache Mw, the compressed tier M2.5, the
//! long-term store Mlt, and the flashbulb tier Mfb, with a capacity and a time to live per
//! task kind in each tier.
//!
//! Writes go to Mw and, write-through, to Mlt. An entry leaving Mw (pushed out by its
//! kind's capacity, or past Mw's time to live) moves to M2.5 with its original store time;
//! M2.5 drops its oldest entry when full. A lookup asks Mw, then M2.5, then Mlt, and costs
//! the latency of every tier it asked. Mfb keeps high-salience events (valve breaches) and
//! never evicts within a run; it is a record, not a cache, so lookups do not read it.
//!
//! Guarantees: no tier serves an entry older than its kind's time to live in that tier,
//! M2.5 never serves one older than `max_freshness_ms` whatever its TTL says, and no tier
//! holds more entries of a kind than that kind's capacity.

use crate::config::{MemoryConfig, TierConfig};
use crate::task::Kind;
use std::collections::{BTreeMap, BTreeSet};

/// A tier that answers lookups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Mw,
    M25,
    Mlt,
}

impl Tier {
    /// Every looked-up tier, in lookup order.
    pub const ALL: [Tier; 3] = [Tier::Mw, Tier::M25, Tier::Mlt];

    /// Dense index, for per-tier arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in events, `tasks.csv` and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Mw => "mw",
            Tier::M25 => "m25",
            Tier::Mlt => "mlt",
        }
    }

    /// The name people read (docs/engine.md 4.3's).
    pub fn label(self) -> &'static str {
        match self {
            Tier::Mw => "Mw",
            Tier::M25 => "M2.5",
            Tier::Mlt => "Mlt",
        }
    }

    /// Parses `as_str`.
    pub fn parse(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// One cached result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    kind: Kind,
    stored_ms: u64,
    tokens_out: u32,
    /// Order stamp: LRU use for Mw and Mlt, store order for M2.5; the key in `order`.
    stamp: u64,
}

/// What a tier found for a signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    Fresh {
        age_ms: u64,
        tokens_out: u32,
    },
    /// Older than the limit: taken out of the tier.
    Expired(Entry),
    Miss,
}

/// One tier: entries by signature, and per kind the eviction order.
#[derive(Clone, Debug)]
struct CacheTier {
    config: TierConfig,
    /// Refreshed on use (LRU) when true; store order (oldest first) when false.
    lru: bool,
    entries: BTreeMap<u64, Entry>,
    /// Per kind: stamp to signature, first out first.
    order: Vec<BTreeMap<u64, u64>>,
    clock: u64,
}

impl CacheTier {
    fn new(config: TierConfig, lru: bool) -> CacheTier {
        CacheTier { config, lru, entries: BTreeMap::new(), order: vec![BTreeMap::new(); Kind::COUNT], clock: 0 }
    }

    fn holds(&self, kind: Kind) -> bool {
        self.config.ttl_ms[kind.index()] > 0 && self.config.capacity[kind.index()] > 0
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn capacity(&self) -> usize {
        Kind::ALL.iter().filter(|k| self.holds(**k)).map(|k| self.config.capacity[k.index()]).sum()
    }

    fn take(&mut self, signature: u64) -> Option<Entry> {
        let entry = self.entries.remove(&signature)?;
        self.order[entry.kind.index()].remove(&entry.stamp);
        Some(entry)
    }

    /// Looks `signature` up for `kind` (any kind when `None`), serving it only up to
    /// `limit_ms` old.
    fn probe(&mut self, signature: u64, kind: Option<Kind>, now_ms: u64, limit_ms: u64) -> Probe {
        let Some(entry) = self.entries.get(&signature).copied() else { return Probe::Miss };
        if kind.is_some_and(|k| k != entry.kind) {
            self.take(signature);
            return Probe::Miss;
        }
        let age_ms = now_ms.saturating_sub(entry.stored_ms);
        if age_ms > limit_ms.min(self.config.ttl_ms[entry.kind.index()]) {
            self.take(signature);
            return Probe::Expired(entry);
        }
        if self.lru {
            let order = &mut self.order[entry.kind.index()];
            order.remove(&entry.stamp);
            self.clock += 1;
            order.insert(self.clock, signature);
            self.entries.get_mut(&signature).expect("probed entry exists").stamp = self.clock;
        }
        Probe::Fresh { age_ms, tokens_out: entry.tokens_out }
    }

    /// Stores an entry (replacing one with the same signature); returns the entry its
    /// kind's capacity pushed out, if any.
    fn put(&mut self, signature: u64, kind: Kind, tokens_out: u32, stored_ms: u64) -> Option<(u64, Entry)> {
        if !self.holds(kind) {
            return None;
        }
        self.take(signature);
        let order = &mut self.order[kind.index()];
        let evicted = if order.len() >= self.config.capacity[kind.index()] {
            let (_, oldest) = order.pop_first().expect("a full kind has entries");
            self.entries.remove(&oldest).map(|e| (oldest, e))
        } else {
            None
        };
        self.clock += 1;
        order.insert(self.clock, signature);
        self.entries.insert(signature, Entry { kind, stored_ms, tokens_out, stamp: self.clock });
        debug_assert!(order.len() <= self.config.capacity[kind.index()]);
        evicted
    }
}

/// An entry served by a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    pub tier: Tier,
    /// Age of the served entry (now minus its first store).
    pub age_ms: u64,
    /// Output tokens of the cached answer.
    pub tokens_out: u32,
}

/// What a lookup did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Looked {
    pub served: Option<Served>,
    /// Sum of the latencies of the tiers asked.
    pub latency_ms: u64,
    /// Entries found past their limit and dropped on the way (never served).
    pub stale: u32,
}

/// What an M2.5 lookup of the gateway found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier25Lookup {
    /// A fresh entry.
    Hit {
        kind: Kind,
        tokens_out: u32,
        age_ms: u64,
    },
    /// An entry older than `max_freshness`: refused, and dropped.
    Stale {
        age_ms: u64,
    },
    Miss,
}

/// A high-salience event kept in Mfb.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flashbulb {
    pub task_id: u64,
    pub kind: Kind,
    pub at_ms: u64,
    pub cause: FlashbulbCause,
}

crate::names! {
    /// Why an event went into the flashbulb tier.
    FlashbulbCause {
        /// The task escalated because the valve breached.
        Breach = "breach",
    }
}

/// Entries held and capacity per tier, for snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TierFill {
    pub entries: usize,
    pub capacity: usize,
}

/// The memory fabric.
#[derive(Clone, Debug)]
pub struct MemoryFabric {
    config: MemoryConfig,
    mw: CacheTier,
    m25: CacheTier,
    mlt: CacheTier,
    mfb: Vec<Flashbulb>,
}

impl MemoryFabric {
    /// An empty fabric.
    pub fn new(config: MemoryConfig) -> MemoryFabric {
        MemoryFabric {
            mw: CacheTier::new(config.mw.clone(), true),
            m25: CacheTier::new(config.m25.clone(), false),
            mlt: CacheTier::new(config.mlt.clone(), true),
            mfb: Vec::new(),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }

    /// Fill of each looked-up tier, in `Tier::ALL` order.
    pub fn fill(&self) -> [TierFill; 3] {
        [&self.mw, &self.m25, &self.mlt].map(|t| TierFill { entries: t.len(), capacity: t.capacity() })
    }

    /// Events held in Mfb.
    pub fn flashbulbs(&self) -> &[Flashbulb] {
        &self.mfb
    }

    /// The energy's memory pressure: the fill of Mw, in [0, 1].
    pub fn pressure(&self) -> f64 {
        self.mw.len() as f64 / self.mw.capacity().max(1) as f64
    }

    /// Looks a signature up: Mw, then M2.5, then Mlt. An Mw entry past Mw's TTL moves to
    /// M2.5 on the way; any entry past its tier's limit is dropped, never served.
    pub fn lookup(&mut self, signature: u64, kind: Kind, now_ms: u64) -> Looked {
        let mut looked = Looked { served: None, latency_ms: self.config.mw.latency_ms, stale: 0 };
        let serve = |tier, probe| match probe {
            Probe::Fresh { age_ms, tokens_out } => Some(Served { tier, age_ms, tokens_out }),
            _ => None,
        };
        let probe = self.mw.probe(signature, Some(kind), now_ms, u64::MAX);
        if let Probe::Expired(e) = probe {
            self.demote(signature, e, now_ms);
        }
        looked.served = serve(Tier::Mw, probe);
        for (tier, limit) in [(Tier::M25, self.config.max_freshness_ms), (Tier::Mlt, u64::MAX)] {
            if looked.served.is_some() {
                break;
            }
            let store = if tier == Tier::M25 { &mut self.m25 } else { &mut self.mlt };
            looked.latency_ms += store.config.latency_ms;
            let probe = store.probe(signature, Some(kind), now_ms, limit);
            looked.stale += u32::from(matches!(probe, Probe::Expired(_)));
            looked.served = serve(tier, probe);
        }
        if let Some(served) = looked.served {
            let limit = self.limit_ms(served.tier, kind);
            assert!(served.age_ms <= limit, "a tier served an entry past its limit");
        }
        looked
    }

    /// The oldest age a tier may serve for a kind (0: the tier does not hold it).
    pub fn limit_ms(&self, tier: Tier, kind: Kind) -> u64 {
        let k = kind.index();
        match tier {
            Tier::Mw => self.config.mw.ttl_ms[k],
            Tier::M25 => self.config.m25.ttl_ms[k].min(self.config.max_freshness_ms),
            Tier::Mlt => self.config.mlt.ttl_ms[k],
        }
    }

    /// Moves an entry leaving Mw into M2.5, unless it is already too old for M2.5 to serve.
    /// Whatever M2.5 pushes out is still in Mlt (write-through) or gone for good.
    fn demote(&mut self, signature: u64, entry: Entry, now_ms: u64) {
        if now_ms.saturating_sub(entry.stored_ms) <= self.limit_ms(Tier::M25, entry.kind) {
            self.m25.put(signature, entry.kind, entry.tokens_out, entry.stored_ms);
        }
    }

    /// Stores a result in Mw and Mlt; what Mw pushes out moves to M2.5.
    pub fn store(&mut self, signature: u64, kind: Kind, tokens_out: u32, now_ms: u64) {
        if let Some((evicted, entry)) = self.mw.put(signature, kind, tokens_out, now_ms) {
            self.demote(evicted, entry, now_ms);
        }
        self.mlt.put(signature, kind, tokens_out, now_ms);
    }

    /// The gateway's M2.5 store: straight into the compressed tier.
    pub fn store_m25(&mut self, signature: u64, kind: Kind, tokens_out: u32, now_ms: u64) {
        self.m25.put(signature, kind, tokens_out, now_ms);
    }

    /// The gateway's M2.5 retrieve, of any kind; a stale entry is refused and dropped.
    pub fn retrieve_m25(&mut self, signature: u64, now_ms: u64) -> Tier25Lookup {
        let kind = self.m25.entries.get(&signature).map(|e| e.kind);
        match (kind, self.m25.probe(signature, None, now_ms, self.config.max_freshness_ms)) {
            (Some(kind), Probe::Fresh { age_ms, tokens_out }) => Tier25Lookup::Hit { kind, tokens_out, age_ms },
            (_, Probe::Expired(e)) => Tier25Lookup::Stale { age_ms: now_ms.saturating_sub(e.stored_ms) },
            _ => Tier25Lookup::Miss,
        }
    }

    /// Keeps a high-salience event in Mfb for the rest of the run.
    pub fn remember(&mut self, event: Flashbulb) {
        self.mfb.push(event);
    }
}

/// The coordinator's record of what it asked the fabric to store, and when: a lookup for a
/// signature that was not stored within the longest limit of any tier must miss, so the
/// coordinator skips the round trip. The filter only ever says "may hit" too often (after a
/// state node restart, say), never "miss" for an entry a tier would serve, except after
/// pruning by a clock that ran ahead, which costs a hit, never a stale answer.
#[derive(Clone, Debug, Default)]
pub struct StoreIndex {
    /// Longest limit of any tier and kind.
    ttl_max_ms: u64,
    /// Signature to the time of its latest store.
    latest: BTreeMap<u64, u64>,
    /// (time, signature) of every store still in `latest`, oldest first.
    by_time: BTreeSet<(u64, u64)>,
}

impl StoreIndex {
    /// An empty index for a fabric configuration.
    pub fn new(config: &MemoryConfig) -> StoreIndex {
        let ttl_max_ms = Kind::ALL.iter().map(|k| config.served_limit_ms(*k)).max().unwrap_or(0);
        StoreIndex { ttl_max_ms, ..StoreIndex::default() }
    }

    /// Records that `signature` was sent to the fabric at `now_ms`.
    pub fn record(&mut self, signature: u64, now_ms: u64) {
        if let Some(previous) = self.latest.insert(signature, now_ms) {
            self.by_time.remove(&(previous, signature));
        }
        self.by_time.insert((now_ms, signature));
        self.prune(now_ms);
    }

    /// Whether a lookup of `signature` with limit `ttl_ms` at `now_ms` can hit.
    pub fn may_hit(&mut self, signature: u64, ttl_ms: u64, now_ms: u64) -> bool {
        self.prune(now_ms);
        self.latest.get(&signature).is_some_and(|stored| now_ms.saturating_sub(*stored) <= ttl_ms)
    }

    fn prune(&mut self, now_ms: u64) {
        while let Some(&(stored, signature)) = self.by_time.first() {
            if now_ms.saturating_sub(stored) <= self.ttl_max_ms {
                break;
            }
            self.by_time.pop_first();
            self.latest.remove(&signature);
        }
        debug_assert_eq!(self.latest.len(), self.by_time.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_index_skips_only_certain_misses() {
        let mut index = StoreIndex::new(&MemoryConfig::default());
        assert!(!index.may_hit(1, 3_000, 0));
        index.record(1, 1_000);
        assert!(index.may_hit(1, 3_000, 4_000));
        assert!(!index.may_hit(1, 3_000, 4_001));
        index.record(2, 10_000);
        assert!(!index.may_hit(1, 3_000, 10_000));
        assert!(index.may_hit(2, 3_000, 10_500));
        assert_eq!(index.latest.len(), 1);
    }

    /// A fabric holding chat only: Mw 2 entries for 1 s, M2.5 2 entries, Mlt 8, 3 s each.
    fn fabric() -> MemoryFabric {
        let tier = |capacity: usize, ttl_ms: u64, latency_ms: u64| {
            let mut t = TierConfig { capacity: [0; Kind::COUNT], ttl_ms: [0; Kind::COUNT], latency_ms };
            t.capacity[Kind::Chat.index()] = capacity;
            t.ttl_ms[Kind::Chat.index()] = ttl_ms;
            t
        };
        MemoryFabric::new(MemoryConfig {
            mw: tier(2, 1_000, 5),
            m25: tier(2, 10_000, 20),
            mlt: tier(8, 3_000, 50),
            max_freshness_ms: 3_000,
            mfb_latency_ms: 10,
        })
    }

    fn served(looked: Looked) -> Option<(Tier, u64)> {
        looked.served.map(|s| (s.tier, s.age_ms))
    }

    #[test]
    fn lookups_go_down_the_tiers_and_pay_each_latency() {
        let mut f = fabric();
        f.store(1, Kind::Chat, 10, 0);
        let hit = f.lookup(1, Kind::Chat, 500);
        assert_eq!((served(hit), hit.latency_ms), (Some((Tier::Mw, 500)), 5));
        // Past Mw's TTL: the entry moves to M2.5, which serves it.
        let hit = f.lookup(1, Kind::Chat, 1_500);
        assert_eq!((served(hit), hit.latency_ms), (Some((Tier::M25, 1_500)), 25));
        assert_eq!(f.fill()[0].entries, 0);
        // Past M2.5's freshness (its TTL says 10 s, max_freshness wins): dropped, and
        // Mlt has no fresh copy either.
        let miss = f.lookup(1, Kind::Chat, 3_001);
        assert_eq!((miss.served, miss.latency_ms, miss.stale), (None, 75, 2));
        assert_eq!(f.lookup(2, Kind::Chat, 0).served, None, "never stored");
    }

    #[test]
    fn capacity_pushes_mw_into_m25_and_m25_leaves_mlt_serving() {
        let mut f = fabric();
        for signature in 1..=5 {
            f.store(signature, Kind::Chat, signature as u32, signature * 10);
        }
        let fill = f.fill();
        assert_eq!((fill[0].entries, fill[1].entries, fill[2].entries), (2, 2, 5));
        assert_eq!(served(f.lookup(5, Kind::Chat, 100)), Some((Tier::Mw, 50)));
        assert_eq!(served(f.lookup(3, Kind::Chat, 100)), Some((Tier::M25, 70)));
        assert_eq!(served(f.lookup(1, Kind::Chat, 100)), Some((Tier::Mlt, 90)), "M2.5 pushed 1 out");
        assert_eq!(f.lookup(1, Kind::Chat, 3_011).served, None, "Mlt's TTL holds too");
    }

    #[test]
    fn an_entry_too_old_for_m25_is_not_demoted() {
        let mut f = fabric();
        f.store(1, Kind::Chat, 1, 0);
        f.store(2, Kind::Chat, 1, 0);
        // Pushes 1 (5 s old, past M2.5's 3 s) out of Mw: dropped, not moved.
        f.store(3, Kind::Chat, 1, 5_000);
        assert_eq!(f.fill()[1].entries, 0);
    }

    #[test]
    fn kinds_a_tier_does_not_hold_are_not_stored_and_a_kind_mismatch_misses() {
        let mut f = fabric();
        f.store(1, Kind::Action, 1, 0);
        assert_eq!(f.lookup(1, Kind::Action, 0).served, None);
        f.store(2, Kind::Chat, 1, 0);
        assert_eq!(f.lookup(2, Kind::Query, 0).served, None);
    }

    #[test]
    fn the_gateways_m25_never_serves_a_stale_entry() {
        let mut f = fabric();
        f.store_m25(1, Kind::Chat, 10, 0);
        assert_eq!(f.retrieve_m25(1, 3_000), Tier25Lookup::Hit { kind: Kind::Chat, tokens_out: 10, age_ms: 3_000 });
        assert_eq!(f.retrieve_m25(1, 3_001), Tier25Lookup::Stale { age_ms: 3_001 });
        assert_eq!(f.retrieve_m25(1, 3_001), Tier25Lookup::Miss, "a stale entry is dropped");
        for signature in 2..=4 {
            f.store_m25(signature, Kind::Chat, 1, signature);
        }
        assert_eq!(f.retrieve_m25(2, 5), Tier25Lookup::Miss, "the oldest store is evicted first");
        assert_eq!(f.fill()[1].entries, 2);
    }

    #[test]
    fn flashbulbs_are_never_evicted() {
        let mut f = fabric();
        for task_id in 0..10_000 {
            f.remember(Flashbulb { task_id, kind: Kind::Chat, at_ms: task_id, cause: FlashbulbCause::Breach });
        }
        assert_eq!(f.flashbulbs().len(), 10_000);
        assert_eq!(f.flashbulbs()[0].task_id, 0);
    }

    proptest::proptest! {
        /// Whatever the stores and lookups, nothing is served past its tier's limit and no
        /// tier holds more of a kind than its capacity.
        #[test]
        fn no_tier_serves_past_its_limit(ops in proptest::collection::vec((0u64..12, 0u64..400, proptest::bool::ANY), 1..300)) {
            let mut f = fabric();
            let mut now = 0;
            for (signature, step, store) in ops {
                now += step;
                if store {
                    f.store(signature, Kind::Chat, 1, now);
                } else if let Some(s) = f.lookup(signature, Kind::Chat, now).served {
                    proptest::prop_assert!(s.age_ms <= f.limit_ms(s.tier, Kind::Chat));
                    proptest::prop_assert!(s.age_ms <= 3_000);
                }
                let fill = f.fill();
                proptest::prop_assert!(fill[0].entries <= 2 && fill[1].entries <= 2 && fill[2].entries <= 8);
            }
        }
    }
}
