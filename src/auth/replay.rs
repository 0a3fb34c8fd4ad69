//! The replay table: per nonce, the highest `nc` already accepted.
//!
//! A stateless nonce (see [`super::nonce`]) could be used any number of
//! times; RFC 7616 §3.3 makes the client count its uses in `nc`, and this
//! table refuses an `nc` that is not above the last one accepted, so a
//! captured request cannot be played again while its nonce is fresh.
//!
//! # The bound, and why eviction cannot let a replay through
//!
//! The table holds at most `capacity` nonces, split over [`SHARDS`] mutexes
//! by the nonce's uniqueness bytes (keyed and pseudo-random, so the split is
//! even and an attacker cannot aim at one shard; besides, only requests
//! with a correct response ever insert). When a shard is full it first drops
//! the nonces older than the lifetime (those are answered `stale` before
//! they reach the table), then, if still full, the oldest eighth of its
//! entries by issue time, and raises its **floor** to the newest issue time
//! it dropped. A nonce that is not in the table is accepted only if it was
//! issued *after* the floor; at or before the floor it may have been
//! evicted, so it is answered `stale=true` and the client retries with a
//! fresh nonce. A dropped nonce therefore can never be accepted again; the
//! cost of a full table is an extra round trip for nonces issued before the
//! floor and not yet used.
//!
//! The same reasoning covers a restart: the table is not persisted, so a
//! nonce issued by a previous run (same secret) may have been used already;
//! the nonce itself tells that it is not this process's (see
//! [`super::nonce`]), and it is answered stale too.

use std::sync::{Mutex, PoisonError};

use rustc_hash::FxHashMap;

use super::nonce::NonceKey;

/// Number of independently locked shards.
pub(crate) const SHARDS: usize = 16;

/// What the table says about one use of a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// First use of this `nc`: accepted and remembered.
    Fresh,
    /// `nc` not above the last accepted one: a replay.
    Replay,
    /// The nonce may have been forgotten: ask for a new one.
    Stale,
}

#[derive(Debug, Default)]
struct Shard {
    /// Nonce key → highest `nc` accepted. Keys carry a MAC-checked random
    /// part, so the fast unkeyed hash is safe here.
    seen: FxHashMap<NonceKey, u32>,
    /// Nonces issued at or before this time and not in `seen` may have
    /// been evicted.
    floor: u64,
}

/// Highest `nc` per nonce, bounded in memory.
#[derive(Debug)]
pub(crate) struct ReplayTable {
    shards: Box<[Mutex<Shard>]>,
    shard_capacity: usize,
}

fn issued_at(key: &NonceKey) -> u64 {
    u64::from_be_bytes(key[..8].try_into().expect("8 bytes"))
}

impl ReplayTable {
    /// A table of at most `capacity` nonces (at least one per shard).
    pub(crate) fn new(capacity: usize) -> ReplayTable {
        ReplayTable {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_capacity: (capacity / SHARDS).max(1),
        }
    }

    /// Records use `nc` of the nonce `key`, whose response was correct and
    /// whose age is within `lifetime`. `own` says whether this process
    /// issued the nonce; others are stale.
    pub(crate) fn check(
        &self,
        now: u64,
        lifetime: u64,
        own: bool,
        key: &NonceKey,
        nc: u32,
    ) -> Verdict {
        if !own {
            return Verdict::Stale;
        }
        let shard = &self.shards[usize::from(key[15]) % SHARDS];
        let mut s = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(highest) = s.seen.get_mut(key) {
            if nc <= *highest {
                return Verdict::Replay;
            }
            *highest = nc;
            return Verdict::Fresh;
        }
        let t = issued_at(key);
        if t <= s.floor {
            return Verdict::Stale;
        }
        if s.seen.len() >= self.shard_capacity {
            s.make_room(now, lifetime, self.shard_capacity);
            if t <= s.floor {
                return Verdict::Stale;
            }
        }
        s.seen.insert(*key, nc);
        Verdict::Fresh
    }

    /// Number of nonces remembered (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).seen.len())
            .sum()
    }
}

impl Shard {
    fn make_room(&mut self, now: u64, lifetime: u64, capacity: usize) {
        // Expired nonces never get this far (they are stale by age), so
        // dropping them needs no floor.
        self.seen
            .retain(|k, _| now.saturating_sub(issued_at(k)) <= lifetime);
        if self.seen.len() < capacity {
            return;
        }
        // Evict an eighth at once so the O(n) pass is paid once per
        // capacity/8 insertions, not on every one.
        let batch = (capacity / 8).max(1);
        let mut times: Vec<(u64, NonceKey)> =
            self.seen.keys().map(|k| (issued_at(k), *k)).collect();
        let (oldest, nth, _) = times.select_nth_unstable(batch - 1);
        self.floor = self.floor.max(nth.0);
        self.seen.remove(&nth.1);
        for (_, k) in oldest.iter() {
            self.seen.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: u64, u: u8) -> NonceKey {
        let mut k = [u; 16];
        k[..8].copy_from_slice(&t.to_be_bytes());
        k[15] = 0; // all in shard 0
        k[14] = u;
        k
    }

    #[test]
    fn nc_must_grow() {
        let t = ReplayTable::new(1024);
        let k = key(100, 1);
        assert_eq!(t.check(100, 300, true, &k, 1), Verdict::Fresh);
        assert_eq!(t.check(100, 300, true, &k, 1), Verdict::Replay);
        assert_eq!(t.check(100, 300, true, &k, 3), Verdict::Fresh);
        assert_eq!(t.check(100, 300, true, &k, 2), Verdict::Replay);
        assert_eq!(t.check(100, 300, false, &key(100, 2), 1), Verdict::Stale);
    }

    #[test]
    fn eviction_raises_the_floor() {
        // 16 per shard, batches of 2.
        let t = ReplayTable::new(16 * SHARDS);
        for i in 0..16 {
            assert_eq!(
                t.check(200, 300, true, &key(100 + i, i as u8), 1),
                Verdict::Fresh
            );
        }
        assert_eq!(t.check(200, 300, true, &key(150, 99), 1), Verdict::Fresh);
        assert_eq!(t.len(), 15);
        // The two oldest went; they, and unseen nonces as old, are stale.
        assert_eq!(t.check(200, 300, true, &key(100, 0), 2), Verdict::Stale);
        assert_eq!(t.check(200, 300, true, &key(101, 1), 1), Verdict::Stale);
        assert_eq!(t.check(200, 300, true, &key(101, 77), 1), Verdict::Stale);
        assert_eq!(t.check(200, 300, true, &key(102, 2), 1), Verdict::Replay);
        // Expired entries are purged before anything fresh is evicted.
        assert_eq!(t.check(500, 300, true, &key(400, 1), 1), Verdict::Fresh);
        assert_eq!(t.len(), 16);
        assert_eq!(t.check(500, 300, true, &key(401, 2), 1), Verdict::Fresh);
        assert_eq!(t.len(), 2);
    }
}
