//! The registrar (RFC 3261 §10.3): bindings from addresses of record to
//! contacts, shared by every worker thread, with a log format that lets
//! them survive a restart.
//!
//! # Overview
//!
//! A REGISTER, once authenticated, is decoded by [`request::decode`] into an
//! [`Update`] and applied by [`Registrar::update`], which returns the
//! AoR's bindings for the 200 OK ([`contact_values`]) and a log record. The
//! shell writes the record to disk (`shell::persist`) and answers 200 only
//! once it is there. Calls to an AoR read its bindings with
//! [`Registrar::with_bindings`] (no copy) or [`Registrar::lookup`]; requests
//! to a binding go to its `source`, the address the REGISTER came from
//! (RFC 3581: behind NAT, that is the only address that reaches the phone).
//!
//! Like the rest of the core this module is sans-IO: no files, no clock.
//! Time comes in as `now`, Unix seconds, and expiries are absolute Unix
//! seconds, so they mean the same thing after a restart.
//!
//! # Structure
//!
//! Every worker reads bindings on every call to a registered user, and any
//! worker may receive a REGISTER for any AoR, so the map is shared. It is
//! split into [`SHARDS`] shards, each an `RwLock<HashMap>`:
//!
//! - a lookup takes one shard's read lock (an uncontended atomic on Linux's
//!   futex `RwLock`) and one hash probe; lookups of different AoRs on
//!   different shards never touch the same cache line;
//! - a REGISTER takes one shard's write lock, blocking only the readers of
//!   1/64th of the AoRs, for the microsecond it takes to edit a short list.
//!
//! Alternatives considered: one global lock (every REGISTER stalls every
//! call); copy-on-write publication through `arc-swap`, as the routing
//! table does (a copy of a million AoRs per REGISTER); a copy per worker
//! fed by messages (memory times the core count, and a call routed on one
//! worker right after a REGISTER on another would miss it).
//!
//! The map hashes with `FxHasher`, which is not collision-resistant. That
//! is safe here because keys are only ever *authenticated* AoRs: the shell
//! calls [`Registrar::update`] after digest authentication of a configured
//! user, so the key set is the operator's user list, not attacker-chosen.
//!
//! # Identity, ordering and limits
//!
//! - A binding is identified by its contact URI, compared as an **exact
//!   string**, not with the full RFC 3261 §19.1.4 equivalence (case-
//!   insensitive host, unordered parameters, escapes). Phones refresh with
//!   the URI they registered, byte for byte, so in practice this only
//!   matters for hand-written clients; an equivalent-but-different URI makes
//!   a second binding that expires on its own.
//! - Per contact, the lifetime is its `expires` parameter, else the Expires
//!   header, else [`RegistrarConfig::default_expires`]; 0 removes; a
//!   nonzero value under `min_expires` rejects the whole request (423); one
//!   above `max_expires` is shortened.
//! - At most [`RegistrarConfig::max_bindings`] per AoR: a new binding
//!   beyond it *replaces* the one that expires soonest, because a phone
//!   behind NAT that reboots comes back from a new port with a new contact
//!   while its old binding lingers, and must not be locked out. Only older
//!   bindings are replaced: a REGISTER that itself names more live
//!   contacts than the cap is refused whole (403).
//! - Bindings are kept highest q first (no q ranks as 1.0).
//!
//! # Persistence
//!
//! Every change yields a [`record`] with the *whole* resulting state of the
//! AoR and a global sequence number taken under the shard's write lock, so
//! for one AoR the numbers follow the order in which updates happened even
//! if their records reach the disk in another order. Replaying keeps the
//! highest-numbered state of each AoR: idempotent and order-independent,
//! and a snapshot is simply one record per live AoR.
//!
//! # Memory and speed
//!
//! A lookup among a million AoRs is bound by cache misses, so the common
//! case lives in the hash table's bucket: a short AoR key inline and, for
//! an AoR with one binding, the binding itself (see `store.rs`). Measured by
//! `cargo bench --bench registrar` (2-core KVM guest, mimalloc): a lookup
//! through [`Registrar::with_bindings`] takes ~90 ns, and a million AoRs
//! with one binding each (AoR 27 bytes, contact 50, Call-ID 36) take
//! ~440 MiB of RSS. The plain `HashMap<Box<str>, Vec<Binding>>` layout took
//! ~335 MiB but ~230 ns: one more dependent miss per lookup.
//!
//! # Example
//!
//! ```
//! use tandem::proxy::Transport;
//! use tandem::registrar::{contact_values, ContactSpec, Registrar, RegistrarConfig, Update};
//!
//! let reg = Registrar::new(RegistrarConfig {
//!     min_expires: 60, max_expires: 3600, default_expires: 3600, max_bindings: 10,
//! });
//! let now = 1_700_000_000;
//! let u = Update {
//!     aor: "alice@example.com",
//!     contacts: vec![ContactSpec::Uri { uri: "sip:alice@192.0.2.5:5062", expires: None, q: None }],
//!     expires: Some(600),
//!     call_id: "a84b4c76e66710", cseq: 1,
//!     source: "198.51.100.7:40123".parse().unwrap(), transport: Transport::Udp,
//!     conn: None, worker: 0,
//! };
//! let done = reg.update(now, &u).unwrap();
//! assert!(done.record.is_some());
//! assert_eq!(contact_values(&done.bindings, now + 100), ["<sip:alice@192.0.2.5:5062>;expires=500"]);
//! let to = reg.with_bindings("alice@example.com", now, |b| b[0].source);
//! assert_eq!(to.port(), 40123);
//! ```

pub mod record;
pub mod request;
mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub use record::{Replay, ReplayStats};
pub use store::{MAX_BINDINGS, SHARDS};

use crate::proxy::Transport;
use store::{Aor, Key, Store};

/// One registered contact of an AoR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI as registered, without `<>` and without header
    /// parameters (`sip:alice@192.168.1.5:5062;transport=udp`): the
    /// Request-URI of requests to the binding.
    pub contact: Box<str>,
    /// Where requests to it go: the REGISTER's packet source (RFC 3581
    /// `received`/`rport`).
    pub source: SocketAddr,
    /// The transport the REGISTER came on.
    pub transport: Transport,
    /// The shell's TCP connection id; `None` for UDP and after a restart.
    pub conn: Option<u64>,
    /// The worker that received the REGISTER (it sends the keep-alives).
    pub worker: u16,
    /// Absolute expiry, Unix seconds.
    pub expires: u64,
    /// The Call-ID of the last REGISTER that touched the binding.
    pub call_id: Box<str>,
    /// Its CSeq.
    pub cseq: u32,
    /// The `q` parameter in thousandths.
    pub q: Option<u16>,
}

/// Registrar limits, from `[registrar]`.
#[derive(Debug, Clone, Copy)]
pub struct RegistrarConfig {
    /// Shortest lifetime accepted (shorter, nonzero: 423).
    pub min_expires: u32,
    /// Longest lifetime granted (longer is shortened).
    pub max_expires: u32,
    /// Lifetime when the REGISTER names none.
    pub default_expires: u32,
    /// Most bindings per AoR (taken as at least 1 and at most
    /// [`MAX_BINDINGS`]).
    pub max_bindings: usize,
}

impl RegistrarConfig {
    /// The limits of a `[registrar]` table.
    pub fn from_config(r: &crate::config::Registrar) -> Self {
        RegistrarConfig {
            min_expires: r.min_expires_s,
            max_expires: r.max_expires_s,
            default_expires: r.default_expires_s,
            max_bindings: r.max_bindings as usize,
        }
    }
}

/// One Contact of a REGISTER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactSpec<'a> {
    /// `Contact: *`: remove every binding (only alone, with `Expires: 0`).
    Wildcard,
    /// A contact address.
    Uri {
        /// The URI without `<>` or header parameters, as sent.
        uri: &'a str,
        /// Its `expires` parameter.
        expires: Option<u32>,
        /// Its `q` parameter, in thousandths.
        q: Option<u16>,
    },
}

/// A REGISTER, decoded.
#[derive(Debug, Clone)]
pub struct Update<'a> {
    /// `user@domain`, the domain lowercased by the caller.
    pub aor: &'a str,
    /// The contacts; empty means fetch the bindings only.
    pub contacts: Vec<ContactSpec<'a>>,
    /// The Expires header.
    pub expires: Option<u32>,
    /// The Call-ID.
    pub call_id: &'a str,
    /// The CSeq number.
    pub cseq: u32,
    /// The packet source.
    pub source: SocketAddr,
    /// The transport it came on.
    pub transport: Transport,
    /// The TCP connection id, if any.
    pub conn: Option<u64>,
    /// The receiving worker.
    pub worker: u16,
}

/// Why a REGISTER was refused; nothing changed in any case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateError {
    /// A contact asked for a nonzero lifetime under the minimum: answer
    /// `423 Interval Too Brief` with `Min-Expires: min_expires`.
    IntervalTooBrief {
        /// The minimum to advertise.
        min_expires: u32,
    },
    /// The request is malformed for a registrar: answer `400` with this
    /// reason phrase.
    Invalid(&'static str),
    /// A contact has the Call-ID of its binding and a CSeq not higher than
    /// the stored one (RFC 3261 §10.3 step 7): a reordered or replayed
    /// request; answer `500 Out of order`.
    OutOfOrder,
    /// The request itself asks for more live bindings than an AoR keeps
    /// ([`RegistrarConfig::max_bindings`]): none of it is applied (the cap
    /// replaces older bindings, never the request's own); answer `403`.
    TooManyContacts {
        /// The cap in force.
        max: usize,
    },
}

/// The result of a successful [`Registrar::update`].
#[derive(Debug, Clone)]
pub struct Updated {
    /// The AoR's live bindings after the update, for the 200's Contacts.
    pub bindings: Vec<Binding>,
    /// The log record to persist before answering; `None` if nothing
    /// changed (a fetch, or removing a binding that did not exist).
    pub record: Option<Vec<u8>>,
}

/// The most AoRs one TCP connection is remembered to carry (each needs the
/// credentials of its account); past it the first one bound is forgotten.
const AORS_PER_CONNECTION: usize = 64;

/// The bindings of every AoR; `Send + Sync`, shared through an `Arc`.
#[derive(Debug)]
pub struct Registrar {
    /// Replaced whole on a reload (SIGHUP); bindings are kept as they
    /// are and meet the new limits at their next REGISTER.
    cfg: arc_swap::ArcSwap<RegistrarConfig>,
    store: Store,
    /// The next record's sequence number.
    seq: AtomicU64,
    /// TCP connection id → the AoRs bound over it (a PBX or a multi-line
    /// phone registers several accounts over one connection): lets the
    /// shell keep a connection open while a binding needs it
    /// ([`Registrar::holds_connection`]). At most one entry per open
    /// connection (the shell removes it when its connection closes), and at
    /// most [`AORS_PER_CONNECTION`] AoRs in it.
    connections: Mutex<HashMap<u64, Vec<Box<str>>, foldhash::fast::RandomState>>,
}

impl Registrar {
    /// An empty registrar.
    pub fn new(cfg: RegistrarConfig) -> Self {
        Registrar {
            cfg: arc_swap::ArcSwap::from_pointee(cfg),
            store: Store::default(),
            seq: AtomicU64::new(1),
            connections: Mutex::default(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> std::sync::Arc<RegistrarConfig> {
        self.cfg.load_full()
    }

    /// Puts new limits in force (a configuration reload), from the next
    /// REGISTER on.
    pub fn set_config(&self, cfg: RegistrarConfig) {
        self.cfg.store(std::sync::Arc::new(cfg));
    }

    /// Applies a REGISTER (RFC 3261 §10.3 steps 5–8) at time `now`.
    ///
    /// With no contacts it only reads. Otherwise the whole request is
    /// checked first (wildcard rules, lifetimes, Call-ID/CSeq order) and
    /// applied only if every part is acceptable.
    pub fn update(&self, now: u64, u: &Update<'_>) -> Result<Updated, UpdateError> {
        if u.aor.len() > usize::from(u16::MAX) {
            return Err(UpdateError::Invalid("Address of record too long"));
        }
        if u.contacts.is_empty() {
            return Ok(Updated {
                bindings: self.lookup(u.aor, now),
                record: None,
            });
        }
        if u.call_id.len() > usize::from(u16::MAX) {
            return Err(UpdateError::Invalid("Call-ID too long"));
        }
        let cfg = self.cfg.load();
        let mut expiries = Vec::with_capacity(u.contacts.len());
        for c in &u.contacts {
            let exp = match *c {
                ContactSpec::Wildcard if u.contacts.len() > 1 => {
                    return Err(UpdateError::Invalid("Contact * with other contacts"));
                }
                ContactSpec::Wildcard if u.expires != Some(0) => {
                    return Err(UpdateError::Invalid("Contact * needs Expires: 0"));
                }
                ContactSpec::Wildcard => 0,
                ContactSpec::Uri { uri, .. } if uri.len() > usize::from(u16::MAX) => {
                    return Err(UpdateError::Invalid("Contact URI too long"));
                }
                ContactSpec::Uri { expires, .. } => {
                    expires.or(u.expires).unwrap_or(cfg.default_expires)
                }
            };
            if exp != 0 && exp < cfg.min_expires {
                return Err(UpdateError::IntervalTooBrief {
                    min_expires: cfg.min_expires,
                });
            }
            expiries.push(exp.min(cfg.max_expires));
        }

        let key = u.aor.as_bytes();
        let mut map = self.store.write(key);
        let existing = map.get_mut(key);
        let mut list = match existing {
            Some(aor) => aor.take(),
            None => Vec::with_capacity(u.contacts.len().min(store::MAX_BINDINGS)),
        };
        let changed = match store::apply(&cfg, now, u, &expiries, &mut list) {
            Ok(changed) => changed,
            Err(e) => {
                // `apply` checks the whole request before it edits
                // anything: put the list back as it was.
                if let Some(aor) = map.get_mut(key) {
                    aor.set(list);
                }
                return Err(e);
            }
        };
        let record = changed.then(|| {
            // Taken under the write lock: for one AoR, sequence numbers
            // follow the order of the updates.
            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
            let mut out = Vec::with_capacity(64 + list.len() * 128);
            record::encode(seq, u.aor, &list, &mut out);
            (seq, out)
        });
        let seq = record.as_ref().map(|r| r.0);
        let live = list.clone();
        match map.get_mut(key) {
            Some(_) if list.is_empty() => {
                map.remove(key);
            }
            Some(aor) => {
                aor.seq = seq.unwrap_or(aor.seq);
                aor.set(list);
            }
            None if list.is_empty() => {}
            None => {
                map.insert(Key::new(u.aor), Aor::new(seq.unwrap_or(0), list));
            }
        }
        drop(map);
        if let Some(conn) = u.conn {
            if live.iter().any(|b| b.conn == Some(conn)) {
                let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
                let aors = connections.entry(conn).or_default();
                if !aors.iter().any(|a| **a == *u.aor) {
                    if aors.len() == AORS_PER_CONNECTION {
                        aors.remove(0);
                    }
                    aors.push(u.aor.into());
                }
            }
        }
        Ok(Updated {
            bindings: live,
            record: record.map(|r| r.1),
        })
    }

    /// The live bindings of `aor`, highest q first.
    pub fn lookup(&self, aor: &str, now: u64) -> Vec<Binding> {
        self.with_bindings(aor, now, |b| {
            b.iter().filter(|b| b.expires > now).cloned().collect()
        })
    }

    /// Calls `f` with the bindings of `aor` (empty if none), highest q
    /// first, without copying them: the hot path of routing a call.
    ///
    /// The slice **may include expired bindings** (they linger until the
    /// next update of the AoR or [`Registrar::purge`]); skip those with
    /// `expires <= now`. `f` runs under the shard's read lock: keep it short
    /// and do not update the registrar from it.
    pub fn with_bindings<R>(&self, aor: &str, now: u64, f: impl FnOnce(&[Binding]) -> R) -> R {
        // `now` is not needed to find the slice; filtering it would cost a
        // copy, which is what this method exists to avoid.
        let _ = now;
        let key = aor.as_bytes();
        let map = self.store.read(key);
        f(map.get(key).map_or(&[][..], Aor::bindings))
    }

    /// Whether TCP connection `conn` carries a live binding: the only
    /// way to reach a device behind NAT, so the shell keeps such a
    /// connection open however long it stays silent. Checks the AoRs
    /// bound over the connection, forgetting those with no live binding on
    /// it any more, and the connection once none is left.
    pub fn holds_connection(&self, conn: u64, now: u64) -> bool {
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let Some(aors) = connections.get_mut(&conn) else {
            return false;
        };
        aors.retain(|aor| {
            self.with_bindings(aor, now, |b| {
                b.iter().any(|b| b.conn == Some(conn) && b.expires > now)
            })
        });
        let held = !aors.is_empty();
        if !held {
            connections.remove(&conn);
        }
        held
    }

    /// Forgets TCP connection `conn` (the shell closed it).
    pub fn connection_closed(&self, conn: u64) {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conn);
    }

    /// The number of AoRs with bindings (expired ones included until
    /// purged).
    pub fn len(&self) -> usize {
        let mut n = 0;
        self.store.each_read(|m| n += m.len());
        n
    }

    /// Whether there are no AoRs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The total number of bindings (expired ones included until purged);
    /// walks the whole map.
    pub fn bindings(&self) -> usize {
        let mut n = 0;
        self.store
            .each_read(|m| n += m.values().map(|a| a.bindings().len()).sum::<usize>());
        n
    }

    /// Drops expired bindings and AoRs left empty; returns how many
    /// bindings were dropped. Needs no log record: replay skips expired
    /// bindings by itself.
    pub fn purge(&self, now: u64) -> usize {
        let mut removed = 0;
        self.store.each_write(|m| {
            m.retain(|_, a| {
                removed += a.retain_live(now);
                !a.bindings().is_empty()
            });
        });
        removed
    }

    /// Calls `f` for every live binding (the keep-alive sweep). It runs
    /// under one shard's read lock at a time: do not update from it.
    pub fn for_each_binding(&self, now: u64, mut f: impl FnMut(&str, &Binding)) {
        self.store.each_read(|m| {
            for (aor, a) in m {
                for b in a.bindings().iter().filter(|b| b.expires > now) {
                    f(aor.as_str(), b);
                }
            }
        });
    }

    /// Appends one record per AoR with live bindings: a compacted log.
    pub fn snapshot(&self, now: u64, out: &mut Vec<u8>) {
        self.snapshot_chunks(now, |chunk| out.extend_from_slice(chunk));
    }

    /// Like [`Registrar::snapshot`], handing the records to `f` one shard
    /// at a time, so a writer can stream a large snapshot without holding
    /// it all in memory. No lock is held while `f` runs.
    pub fn snapshot_chunks(&self, now: u64, mut f: impl FnMut(&[u8])) {
        let mut buf = Vec::new();
        for i in 0..store::SHARDS {
            buf.clear();
            {
                let map = self.store.read_shard(i);
                for (aor, a) in map.iter() {
                    if a.bindings().iter().any(|b| b.expires > now) {
                        let live = a.bindings().iter().filter(|b| b.expires > now);
                        record::encode(a.seq, aor.as_str(), live, &mut buf);
                    }
                }
            }
            if !buf.is_empty() {
                f(&buf);
            }
        }
    }

    /// Applies the records of `log`, stopping at the first torn or corrupt
    /// one. Records older than the state already applied for their AoR are
    /// ignored, expired bindings skipped, and an AoR whose newest record is
    /// empty (or wholly expired) removed.
    pub fn replay(&self, log: &[u8], now: u64) -> ReplayStats {
        let mut r = Replay::new(self, now);
        let used = r.feed(log);
        r.finish(log.len() - used)
    }

    /// Installs `bindings` as the state of `aor` at `seq` unless a state
    /// at least as new is there; an empty state removes the AoR. Returns
    /// whether it was applied. Used by [`Replay`].
    fn restore(&self, seq: u64, aor: &str, bindings: impl Iterator<Item = Binding>) -> bool {
        let key = aor.as_bytes();
        let mut map = self.store.write(key);
        self.seq.fetch_max(seq.saturating_add(1), Ordering::Relaxed);
        if map.get(key).is_some_and(|a| a.seq >= seq) {
            return false;
        }
        let mut bindings: Vec<Binding> = bindings.collect();
        if bindings.is_empty() {
            map.remove(key);
        } else {
            store::sort_by_q(&mut bindings);
            match map.get_mut(key) {
                Some(a) => {
                    a.seq = seq;
                    a.set(bindings);
                }
                None => {
                    map.insert(Key::new(aor), Aor::new(seq, bindings));
                }
            }
        }
        true
    }
}

/// The Contact values of a 200 OK to a REGISTER: `<uri>;expires=N` per
/// live binding, N the seconds left (RFC 3261 §10.3 step 8).
pub fn contact_values(bindings: &[Binding], now: u64) -> Vec<String> {
    bindings
        .iter()
        .filter(|b| b.expires > now)
        .map(|b| {
            let mut v = String::with_capacity(b.contact.len() + 20);
            v.push('<');
            v.push_str(&b.contact);
            v.push_str(">;expires=");
            v.push_str(crate::sip::scan::itoa(b.expires - now).as_str());
            v
        })
        .collect()
}
