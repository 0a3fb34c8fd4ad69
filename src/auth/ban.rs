//! Failures: their reasons, their log lines (`Reason`, `LogSafe`), and
//! the counting and bans per source address.
//!
//! # The window
//!
//! A **fixed window that opens at the first failure**: an address's first
//! failure starts a window of `failure_window` seconds; failures inside it
//! are counted; the `max_failures`-th bans the address for `ban` seconds.
//! Once the window has passed, the next failure opens a new window at
//! count one. This needs two integers per address (a sliding log would
//! need `max_failures` timestamps) and bounds a guesser to fewer than
//! `max_failures` tries per window; across the edge of two windows it can
//! get up to `2 × (max_failures − 1)` tries within one window length, which
//! is still a fixed rate. Failures spaced further apart than the window
//! never add up.
//!
//! # Who is an address
//!
//! IPv4 addresses (and IPv4-mapped IPv6) are counted one by one. IPv6
//! addresses are counted per **/64**: one host usually owns a whole /64
//! (SLAAC, privacy addresses), so per-address counting would let it rotate
//! addresses forever and fill the table.
//!
//! # Memory
//!
//! At most `capacity` addresses, split over 16 locked shards by a keyed
//! hash (the keys come from the network). When a shard is full it first
//! drops entries whose window and ban are both over, then the oldest eighth
//! of the rest, non-banned entries first (oldest window first), and bans
//! that end soonest only if every entry is banned.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};

/// Seeded fast hashing (as the transaction indexes): the keys are source
/// addresses, which the network chooses, so the seed matters; SipHash
/// cost two hashes per out-of-dialog request for a table that is nearly
/// always empty.
type RandomState = foldhash::fast::RandomState;
type Map = HashMap<IpAddr, Entry, RandomState>;

const SHARDS: usize = 16;

/// Why an attempt failed; the `reason=` token of the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Wrong password or unknown user (deliberately one reason).
    WrongCredentials,
    /// The nonce was not issued by this switch for this realm.
    ForgedNonce,
    /// Digest credentials, but none for the company's realm.
    WrongRealm,
    /// `username` is not the identity the request claims.
    UserMismatch,
    /// A required parameter is missing, repeated or malformed.
    Malformed,
    /// An algorithm that is not configured (or not known).
    UnsupportedAlgorithm,
    /// The digest `uri` names another user than the Request-URI.
    UriMismatch,
    /// An algorithm Tandem does not implement, found while parsing (before
    /// the nonce is checked, so not counted; logged as
    /// `unsupported-algorithm` too).
    UnknownAlgorithm,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::WrongCredentials => "wrong-credentials",
            Reason::ForgedNonce => "forged-nonce",
            Reason::WrongRealm => "wrong-realm",
            Reason::UserMismatch => "user-mismatch",
            Reason::Malformed => "malformed",
            Reason::UnsupportedAlgorithm | Reason::UnknownAlgorithm => "unsupported-algorithm",
            Reason::UriMismatch => "uri-mismatch",
        }
    }

    /// Whether the failure counts towards a ban: only those found after
    /// the nonce proved a round trip with the source (see `mod.rs`). A
    /// malformed value, another realm, a forged nonce, or an algorithm
    /// Tandem does not implement come before that.
    pub(crate) fn counted(self) -> bool {
        match self {
            Reason::WrongCredentials
            | Reason::UserMismatch
            | Reason::UriMismatch
            | Reason::UnsupportedAlgorithm => true,
            Reason::ForgedNonce
            | Reason::WrongRealm
            | Reason::Malformed
            | Reason::UnknownAlgorithm => false,
        }
    }
}

/// A name from the network, written so it cannot break a log line.
pub(crate) struct LogSafe<'a>(pub &'a str);

impl fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 128;
        for (i, c) in self.0.chars().enumerate() {
            if i == MAX {
                return f.write_str("...");
            }
            match c {
                '"' | '\\' => write!(f, "\\x{:02x}", u32::from(c))?,
                ' '..='~' => fmt::Write::write_char(f, c)?,
                _ if c.is_ascii() => write!(f, "\\x{:02x}", u32::from(c))?,
                _ => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            }
        }
        Ok(())
    }
}

/// The ban policy (from [`super::AuthConfig`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub max_failures: u32,
    pub window: u64,
    pub ban: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: u64,
    failures: u32,
    banned_until: u64,
}

impl Entry {
    fn banned(&self, now: u64) -> bool {
        now < self.banned_until
    }

    fn window_open(&self, now: u64, window: u64) -> bool {
        self.failures > 0 && now < self.window_start.saturating_add(window)
    }
}

/// Failure counts and bans, bounded in memory.
#[derive(Debug)]
pub(crate) struct BanTable {
    shards: Box<[Mutex<Map>]>,
    pick: RandomState,
    shard_capacity: usize,
}

/// The unit that is counted and banned: the address, or its /64 for IPv6.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !0u128 << 64)),
        v4 => v4,
    }
}

impl BanTable {
    /// A table of at most `capacity` addresses (at least one per shard).
    pub(crate) fn new(capacity: usize) -> BanTable {
        BanTable {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            pick: RandomState::default(),
            shard_capacity: (capacity / SHARDS).max(1),
        }
    }

    fn shard(&self, k: &IpAddr) -> &Mutex<Map> {
        &self.shards[self.pick.hash_one(k) as usize % SHARDS]
    }

    /// Whether `ip` is banned at `now`.
    pub(crate) fn is_banned(&self, now: u64, ip: IpAddr) -> bool {
        let k = key(ip);
        let s = self
            .shard(&k)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        s.get(&k).is_some_and(|e| e.banned(now))
    }

    /// Counts one failure from `ip`. Returns the number of failures that
    /// led to a ban when this one starts it.
    pub(crate) fn fail(&self, now: u64, ip: IpAddr, p: &Policy) -> Option<u32> {
        if p.max_failures == 0 {
            return None;
        }
        let k = key(ip);
        let mut s = self
            .shard(&k)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !s.contains_key(&k) && s.len() >= self.shard_capacity {
            make_room(&mut s, now, p.window, self.shard_capacity);
        }
        let e = s.entry(k).or_insert(Entry {
            window_start: now,
            failures: 0,
            banned_until: 0,
        });
        if e.banned(now) {
            // Another worker banned it between `is_banned` and here.
            return None;
        }
        if !e.window_open(now, p.window) {
            e.window_start = now;
            e.failures = 0;
        }
        e.failures += 1;
        if e.failures < p.max_failures {
            return None;
        }
        let n = e.failures;
        e.failures = 0;
        // `now` is whole seconds: one more makes a ban last at least
        // `ban` seconds whenever within the second it started.
        e.banned_until = now.saturating_add(p.ban).saturating_add(1);
        Some(n)
    }
}

fn make_room(s: &mut Map, now: u64, window: u64, capacity: usize) {
    s.retain(|_, e| e.banned(now) || e.window_open(now, window));
    if s.len() < capacity {
        return;
    }
    let batch = (capacity / 8).max(1);
    // Non-banned (false) sort first, oldest window first; then bans ending
    // soonest.
    let mut order: Vec<((bool, u64), IpAddr)> = s
        .iter()
        .map(|(k, e)| {
            let banned = e.banned(now);
            let t = if banned {
                e.banned_until
            } else {
                e.window_start
            };
            ((banned, t), *k)
        })
        .collect();
    let (first, nth, _) = order.select_nth_unstable(batch - 1);
    s.remove(&nth.1);
    for (_, k) in first.iter() {
        s.remove(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_names_cannot_forge_lines() {
        let s = LogSafe("x\" source=1.2.3.4\r\nauth ban: \\é").to_string();
        assert_eq!(s, "x\\x22 source=1.2.3.4\\x0d\\x0aauth ban: \\x5c\\u{e9}");
        assert_eq!(LogSafe(&"a".repeat(200)).to_string().len(), 131);
    }

    const P: Policy = Policy {
        max_failures: 3,
        window: 60,
        ban: 900,
    };

    #[test]
    fn ipv6_counts_per_64() {
        let t = BanTable::new(1024);
        for (i, ip) in ["2001:db8::1", "2001:db8::2:0:0:7", "2001:db8::ffff"]
            .iter()
            .enumerate()
        {
            let r = t.fail(10, ip.parse().unwrap(), &P);
            assert_eq!(r, (i == 2).then_some(3));
        }
        assert!(t.is_banned(11, "2001:db8::9".parse().unwrap()));
        assert!(!t.is_banned(11, "2001:db8:0:1::9".parse().unwrap()));
        assert_eq!(
            key("::ffff:192.0.2.1".parse().unwrap()),
            key("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn full_shard_keeps_bans_over_counts() {
        // One entry per shard: put a ban and a count in the same shard.
        let t = BanTable::new(SHARDS);
        let banned: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            t.fail(10, banned, &P);
        }
        let mut s = t.shard(&banned).lock().unwrap();
        s.insert(
            "192.0.2.2".parse().unwrap(),
            Entry {
                window_start: 5,
                failures: 1,
                banned_until: 0,
            },
        );
        make_room(&mut s, 20, 60, 2);
        assert_eq!(s.len(), 1);
        assert!(s[&banned].banned(20));
    }
}
