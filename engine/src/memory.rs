//! The working cache Mw of the memory fabric (SPEC 4.3): results keyed by task signature,
//! LRU with a capacity, and a time to live per task kind.
//!
//! Guarantees: an entry older than its kind's TTL is never served; the cache never holds
//! more than `capacity` entries. The other tiers (M2.5, Mlt, Mfb) plug in behind `lookup`.

use crate::config::MemoryConfig;
use crate::task::Kind;
use std::collections::{BTreeMap, BTreeSet};

/// One cached result.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    kind: Kind,
    stored_ms: u64,
    tokens_out: u32,
    /// LRU stamp; the key of this entry in `by_use`.
    used: u64,
}

/// A cache hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Age of the served entry.
    pub age_ms: u64,
    /// Output tokens of the cached answer.
    pub tokens_out: u32,
}

/// The working cache.
#[derive(Clone, Debug)]
pub struct WorkingCache {
    config: MemoryConfig,
    entries: BTreeMap<u64, Entry>,
    /// LRU order: stamp to signature, oldest first.
    by_use: BTreeMap<u64, u64>,
    /// Next LRU stamp.
    clock: u64,
}

impl WorkingCache {
    /// An empty cache.
    pub fn new(config: MemoryConfig) -> WorkingCache {
        assert!(config.mw_capacity >= 1);
        WorkingCache { config, entries: BTreeMap::new(), by_use: BTreeMap::new(), clock: 0 }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.config.mw_capacity
    }

    /// Whether results of a kind are cached at all.
    pub fn caches(&self, kind: Kind) -> bool {
        self.config.mw_ttl_ms[kind.index()] > 0
    }

    fn touch(&mut self, signature: u64) {
        let entry = self.entries.get_mut(&signature).expect("touched entry exists");
        self.by_use.remove(&entry.used);
        self.clock += 1;
        entry.used = self.clock;
        self.by_use.insert(self.clock, signature);
    }

    fn remove(&mut self, signature: u64) {
        if let Some(entry) = self.entries.remove(&signature) {
            self.by_use.remove(&entry.used);
        }
    }

    /// Looks a signature up at time `now_ms`. Expired entries are dropped, never served.
    pub fn lookup(&mut self, signature: u64, kind: Kind, now_ms: u64) -> Option<Hit> {
        let ttl = self.config.mw_ttl_ms[kind.index()];
        let found = self.entries.get(&signature).map(|e| (e.kind, now_ms.saturating_sub(e.stored_ms), e.tokens_out));
        match found {
            Some((stored_kind, age_ms, tokens_out)) if stored_kind == kind && age_ms <= ttl => {
                self.touch(signature);
                assert!(age_ms <= ttl);
                Some(Hit { age_ms, tokens_out })
            }
            Some(_) => {
                self.remove(signature);
                None
            }
            None => None,
        }
    }

    /// Stores a result, evicting the least recently used entry when full.
    pub fn insert(&mut self, signature: u64, kind: Kind, tokens_out: u32, now_ms: u64) {
        if !self.caches(kind) {
            return;
        }
        self.remove(signature);
        if self.entries.len() == self.config.mw_capacity {
            let (_, oldest) = self.by_use.pop_first().expect("a full cache has entries");
            self.entries.remove(&oldest);
        }
        self.clock += 1;
        self.entries.insert(signature, Entry { kind, stored_ms: now_ms, tokens_out, used: self.clock });
        self.by_use.insert(self.clock, signature);
        assert!(self.entries.len() <= self.config.mw_capacity);
        assert_eq!(self.entries.len(), self.by_use.len());
    }
}

/// The coordinator's record of what it asked Mw to store, and when: a lookup for a
/// signature that was not stored within its TTL must miss, so the coordinator skips the
/// round trip. The filter only ever says "may hit" too often (after a state node restart,
/// say), never "miss" for an entry Mw would serve, except after pruning by a clock that
/// ran ahead, which costs a hit, never a stale answer.
#[derive(Clone, Debug, Default)]
pub struct StoreIndex {
    /// Longest TTL of any kind.
    ttl_max_ms: u64,
    /// Signature to the time of its latest store.
    latest: BTreeMap<u64, u64>,
    /// (time, signature) of every store still in `latest`, oldest first.
    by_time: BTreeSet<(u64, u64)>,
}

impl StoreIndex {
    /// An empty index for a cache configuration.
    pub fn new(config: &MemoryConfig) -> StoreIndex {
        StoreIndex { ttl_max_ms: config.mw_ttl_ms.iter().copied().max().unwrap_or(0), ..StoreIndex::default() }
    }

    /// Records that `signature` was sent to Mw at `now_ms`.
    pub fn record(&mut self, signature: u64, now_ms: u64) {
        if let Some(previous) = self.latest.insert(signature, now_ms) {
            self.by_time.remove(&(previous, signature));
        }
        self.by_time.insert((now_ms, signature));
        self.prune(now_ms);
    }

    /// Whether a lookup of `signature` with time to live `ttl_ms` at `now_ms` can hit.
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

/// Default capacity of M2.5 (entries).
pub const TIER25_CAPACITY: usize = 100_000;
/// SPEC 4.3's `max_freshness`: an M2.5 entry older than this is stale and never served.
pub const TIER25_MAX_FRESHNESS_MS: u64 = 3_000;

/// One M2.5 entry: a compressed result (its kind and output size, not the text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tier25Entry {
    kind: Kind,
    tokens_out: u32,
    stored_ms: u64,
}

/// What an M2.5 lookup found.
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

/// The compressed tier M2.5 (SPEC 4.3), between Mw and Mlt.
///
/// Guarantees: an entry older than `max_freshness_ms` is never served; the tier never holds
/// more than `capacity` entries (the oldest store is evicted first).
#[derive(Clone, Debug)]
pub struct Tier25 {
    capacity: usize,
    max_freshness_ms: u64,
    entries: BTreeMap<u64, Tier25Entry>,
    /// Store order: (stored_ms, signature), oldest first.
    by_age: BTreeSet<(u64, u64)>,
}

impl Tier25 {
    /// An empty tier.
    pub fn new(capacity: usize, max_freshness_ms: u64) -> Tier25 {
        assert!(capacity >= 1);
        Tier25 { capacity, max_freshness_ms, entries: BTreeMap::new(), by_age: BTreeSet::new() }
    }

    /// Entries held, and the capacity.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the tier is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The freshness limit.
    pub fn max_freshness_ms(&self) -> u64 {
        self.max_freshness_ms
    }

    /// Stores (or refreshes) an entry; evicts the oldest when full.
    pub fn store(&mut self, signature: u64, kind: Kind, tokens_out: u32, now_ms: u64) {
        if let Some(old) = self.entries.remove(&signature) {
            self.by_age.remove(&(old.stored_ms, signature));
        }
        while self.entries.len() >= self.capacity {
            let (stored_ms, oldest) = self.by_age.pop_first().expect("a full tier has entries");
            let removed = self.entries.remove(&oldest);
            debug_assert_eq!(removed.map(|e| e.stored_ms), Some(stored_ms));
        }
        self.entries.insert(signature, Tier25Entry { kind, tokens_out, stored_ms: now_ms });
        self.by_age.insert((now_ms, signature));
    }

    /// Looks an entry up; a stale one is refused and dropped.
    pub fn retrieve(&mut self, signature: u64, now_ms: u64) -> Tier25Lookup {
        let Some(entry) = self.entries.get(&signature).copied() else { return Tier25Lookup::Miss };
        let age_ms = now_ms.saturating_sub(entry.stored_ms);
        if age_ms > self.max_freshness_ms {
            self.entries.remove(&signature);
            self.by_age.remove(&(entry.stored_ms, signature));
            return Tier25Lookup::Stale { age_ms };
        }
        Tier25Lookup::Hit { kind: entry.kind, tokens_out: entry.tokens_out, age_ms }
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

    fn config(capacity: usize) -> MemoryConfig {
        MemoryConfig { mw_capacity: capacity, ..MemoryConfig::default() }
    }

    #[test]
    fn expired_entries_are_never_served() {
        let mut cache = WorkingCache::new(config(4));
        cache.insert(7, Kind::Chat, 10, 1_000);
        assert_eq!(cache.lookup(7, Kind::Chat, 4_000), Some(Hit { age_ms: 3_000, tokens_out: 10 }));
        assert_eq!(cache.lookup(7, Kind::Chat, 4_001), None);
        assert_eq!(cache.lookup(7, Kind::Chat, 4_002), None);
    }

    #[test]
    fn least_recently_used_is_evicted() {
        let mut cache = WorkingCache::new(config(2));
        cache.insert(1, Kind::Chat, 1, 0);
        cache.insert(2, Kind::Chat, 2, 0);
        assert!(cache.lookup(1, Kind::Chat, 1).is_some());
        cache.insert(3, Kind::Chat, 3, 2);
        assert!(cache.lookup(2, Kind::Chat, 3).is_none());
        assert!(cache.lookup(1, Kind::Chat, 3).is_some());
        assert!(cache.lookup(3, Kind::Chat, 3).is_some());
    }

    #[test]
    fn uncacheable_kinds_are_not_stored() {
        let mut cache = WorkingCache::new(config(2));
        cache.insert(1, Kind::Action, 1, 0);
        assert!(cache.lookup(1, Kind::Action, 0).is_none());
    }

    #[test]
    fn tier25_never_serves_a_stale_entry_and_stays_within_capacity() {
        let mut tier = Tier25::new(2, 3_000);
        tier.store(1, Kind::Chat, 10, 0);
        assert_eq!(tier.retrieve(1, 3_000), Tier25Lookup::Hit { kind: Kind::Chat, tokens_out: 10, age_ms: 3_000 });
        assert_eq!(tier.retrieve(1, 3_001), Tier25Lookup::Stale { age_ms: 3_001 });
        assert_eq!(tier.retrieve(1, 3_001), Tier25Lookup::Miss, "a stale entry is dropped");
        tier.store(2, Kind::Query, 20, 10);
        tier.store(3, Kind::Query, 30, 20);
        tier.store(2, Kind::Query, 21, 30);
        tier.store(4, Kind::Query, 40, 40);
        assert_eq!(tier.len(), 2);
        assert_eq!(tier.retrieve(3, 40), Tier25Lookup::Miss, "the oldest store is evicted first");
        assert_eq!(tier.retrieve(2, 40), Tier25Lookup::Hit { kind: Kind::Query, tokens_out: 21, age_ms: 10 });
    }
}
