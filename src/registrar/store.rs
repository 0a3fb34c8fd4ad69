//! The sharded binding map and the RFC 3261 §10.3 update of one AoR.
//!
//! [`Store`] is [`SHARDS`] independent `RwLock<FxHashMap<Key, Aor>>`. An
//! AoR's shard comes from its hash remixed by a multiplication, so the
//! keys of one shard still spread over all buckets and control bytes of
//! that shard's table (taking plain high or low bits of the same Fx hash
//! would leave hashbrown a few bits of entropy to work with).
//!
//! # Layout: two cache misses per lookup
//!
//! Among a million AoRs a lookup misses the caches at every pointer it
//! follows, and the read lock's atomic keeps the CPU from overlapping one
//! lookup with the next, so its cost is the number of *dependent* misses.
//! A `HashMap<Box<str>, Vec<Binding>>` has three: the control bytes, the
//! bucket, then the key and the binding on the heap. Here the common case
//! lives in the bucket itself: a [`Key`] of up to [`INLINE_KEY`] bytes is
//! stored inline, and an AoR with one binding keeps it inline
//! ([`Aor`]), so a lookup touches the control bytes and one bucket (on the
//! bench machine: ~230 ns down to ~90 ns). The price is a fatter bucket
//! (144 bytes) paid also by the table's empty slots (a table is 44–87 %
//! full): a million AoRs with one binding take ~440 MiB instead of ~335
//! (see `benches/registrar.rs`).

use std::borrow::Borrow;
use std::cmp::Reverse;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use rustc_hash::{FxBuildHasher, FxHashMap};

use super::{Binding, ContactSpec, RegistrarConfig, Update, UpdateError};

/// Number of shards: a power of two, several times the core count of the
/// machines Tandem runs on, so two REGISTERs rarely meet on one lock.
pub const SHARDS: usize = 64;

/// The most bindings an AoR holds whatever the configuration says: each
/// binding's contact and Call-ID come from one REGISTER of at most 64 KiB,
/// so this keeps every record under [`super::record::MAX_RECORD_LEN`].
pub const MAX_BINDINGS: usize = 256;

/// The longest AoR stored inside the bucket (longer ones go to the heap):
/// `1001@company042.example.com` is 27 bytes.
pub const INLINE_KEY: usize = 30;

/// The map one shard holds.
pub type Map = FxHashMap<Key, Aor>;

/// An AoR as a map key: its bytes inline when short, else boxed. Hashes
/// and compares as the `[u8]` it holds, so maps look it up by
/// `aor.as_bytes()`.
#[derive(Debug, Clone)]
pub enum Key {
    /// Up to [`INLINE_KEY`] bytes.
    Inline {
        /// Bytes used.
        len: u8,
        /// The bytes, zero-padded.
        bytes: [u8; INLINE_KEY],
    },
    /// A longer key.
    Heap(Box<[u8]>),
}

impl Key {
    /// The key of `aor`.
    pub fn new(aor: &str) -> Key {
        let b = aor.as_bytes();
        if b.len() <= INLINE_KEY {
            let mut bytes = [0; INLINE_KEY];
            bytes[..b.len()].copy_from_slice(b);
            Key::Inline {
                len: b.len() as u8,
                bytes,
            }
        } else {
            Key::Heap(b.into())
        }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Key::Heap(b) => b,
        }
    }

    /// The AoR text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("keys are made from str")
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must hash exactly as `[u8]` does, for `Borrow<[u8]>` lookups.
        self.as_bytes().hash(state);
    }
}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// One address of record.
#[derive(Debug)]
pub struct Aor {
    /// Sequence number of the update that produced this state (what a log
    /// record of it carries).
    pub seq: u64,
    bindings: Bindings,
}

/// The bindings of an AoR: most have one, kept inline.
#[derive(Debug)]
enum Bindings {
    One(Binding),
    /// Zero (transiently) or several.
    Many(Vec<Binding>),
}

impl Aor {
    /// An AoR at `seq` with `bindings` (sorted by the caller).
    pub fn new(seq: u64, bindings: Vec<Binding>) -> Aor {
        let mut a = Aor {
            seq,
            bindings: Bindings::Many(Vec::new()),
        };
        a.set(bindings);
        a
    }

    /// Bindings, highest q first; may hold expired ones until the next
    /// update or purge.
    pub fn bindings(&self) -> &[Binding] {
        match &self.bindings {
            Bindings::One(b) => std::slice::from_ref(b),
            Bindings::Many(v) => v,
        }
    }

    /// Takes the bindings out to edit them; put them back with
    /// [`Aor::set`].
    pub fn take(&mut self) -> Vec<Binding> {
        match std::mem::replace(&mut self.bindings, Bindings::Many(Vec::new())) {
            Bindings::One(b) => vec![b],
            Bindings::Many(v) => v,
        }
    }

    /// Replaces the bindings.
    pub fn set(&mut self, mut bindings: Vec<Binding>) {
        self.bindings = if bindings.len() == 1 {
            Bindings::One(bindings.pop().expect("one binding"))
        } else {
            // Most AoRs keep their list for months: no growth slack.
            bindings.shrink_to_fit();
            Bindings::Many(bindings)
        };
    }

    /// Drops bindings that expire at or before `now`; returns how many.
    pub fn retain_live(&mut self, now: u64) -> usize {
        match &mut self.bindings {
            Bindings::One(b) if b.expires > now => 0,
            Bindings::One(_) => {
                self.bindings = Bindings::Many(Vec::new());
                1
            }
            Bindings::Many(v) => {
                let before = v.len();
                v.retain(|b| b.expires > now);
                let removed = before - v.len();
                if removed > 0 {
                    let v = std::mem::take(v);
                    self.set(v);
                }
                removed
            }
        }
    }
}

/// A shard on its own cache line, so readers of neighbouring shards do not
/// invalidate each other's lock word.
#[derive(Debug)]
#[repr(align(64))]
struct Shard(RwLock<Map>);

/// The sharded map.
#[derive(Debug)]
pub struct Store {
    shards: Box<[Shard]>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            shards: (0..SHARDS)
                .map(|_| Shard(RwLock::new(Map::default())))
                .collect(),
        }
    }
}

impl Store {
    fn shard(&self, aor: &[u8]) -> &RwLock<Map> {
        let h = FxBuildHasher.hash_one(aor);
        let mixed = (h ^ (h >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        &self.shards[(mixed >> (64 - SHARDS.trailing_zeros())) as usize].0
    }

    /// The shard holding `aor`, for reading. A poisoned lock is taken
    /// anyway: every write leaves the map structurally valid.
    pub fn read(&self, aor: &[u8]) -> RwLockReadGuard<'_, Map> {
        self.shard(aor)
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The shard holding `aor`, for writing.
    pub fn write(&self, aor: &[u8]) -> RwLockWriteGuard<'_, Map> {
        self.shard(aor)
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Shard `i` of [`SHARDS`], for reading.
    pub fn read_shard(&self, i: usize) -> RwLockReadGuard<'_, Map> {
        self.shards[i]
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every shard in turn, read-locked one at a time.
    pub fn each_read(&self, mut f: impl FnMut(&Map)) {
        for s in self.shards.iter() {
            f(&s.0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner));
        }
    }

    /// Every shard in turn, write-locked one at a time.
    pub fn each_write(&self, mut f: impl FnMut(&mut Map)) {
        for s in self.shards.iter() {
            f(&mut s
                .0
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner));
        }
    }
}

/// The order of bindings: highest q first; a binding without q ranks as
/// q=1.0 (RFC 3261 gives no default; a phone that sets none expects to
/// ring). Ties keep registration order (the sort is stable).
pub fn sort_by_q(bindings: &mut [Binding]) {
    bindings.sort_by_key(|b| Reverse(b.q.unwrap_or(1000)));
}

/// Applies a REGISTER with contacts to the bindings of its AoR (RFC 3261
/// §10.3 steps 6–7), `expiries[i]` being the granted lifetime of
/// `u.contacts[i]` (0 = remove). Returns whether anything a record would
/// show changed.
///
/// The Call-ID/CSeq rule is checked for every contact before anything is
/// touched, so an out-of-order request changes nothing.
pub fn apply(
    cfg: &RegistrarConfig,
    now: u64,
    u: &Update<'_>,
    expiries: &[u32],
    bindings: &mut Vec<Binding>,
) -> Result<bool, UpdateError> {
    let stale = |b: &Binding| b.call_id.as_ref() == u.call_id && u.cseq <= b.cseq;
    let live = |b: &&Binding| b.expires > now;
    for c in &u.contacts {
        let out_of_order = match *c {
            ContactSpec::Wildcard => bindings.iter().filter(live).any(stale),
            ContactSpec::Uri { uri, .. } => bindings
                .iter()
                .filter(live)
                .any(|b| b.contact.as_ref() == uri && stale(b)),
        };
        if out_of_order {
            return Err(UpdateError::OutOfOrder);
        }
    }

    // The request's own live contacts must fit: the cap replaces older
    // bindings, never one this request sets.
    let max = cfg.max_bindings.clamp(1, MAX_BINDINGS);
    let mut wanted: Vec<&str> = u
        .contacts
        .iter()
        .zip(expiries)
        .filter_map(|(c, &exp)| match *c {
            ContactSpec::Uri { uri, .. } if exp != 0 => Some(uri),
            _ => None,
        })
        .collect();
    if wanted.len() > max {
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.len() > max {
            return Err(UpdateError::TooManyContacts { max });
        }
    }

    bindings.retain(|b| b.expires > now);
    // The contacts this request has set so far (never replaced by it).
    let mut set: Vec<&str> = Vec::new();
    let mut changed = false;
    for (c, &exp) in u.contacts.iter().zip(expiries) {
        let (uri, q) = match *c {
            ContactSpec::Wildcard => {
                changed |= !bindings.is_empty();
                bindings.clear();
                continue;
            }
            ContactSpec::Uri { uri, q, .. } => (uri, q),
        };
        // Binding identity is the URI text, compared exactly (see the
        // module doc of `registrar`).
        let found = bindings.iter().position(|b| b.contact.as_ref() == uri);
        if exp == 0 {
            if let Some(i) = found {
                bindings.remove(i);
                changed = true;
            }
            continue;
        }
        changed = true;
        let expires = now + u64::from(exp);
        set.push(uri);
        if let Some(i) = found {
            let b = &mut bindings[i];
            b.source = u.source;
            b.transport = u.transport;
            b.conn = u.conn;
            b.worker = u.worker;
            b.expires = expires;
            if b.call_id.as_ref() != u.call_id {
                b.call_id = u.call_id.into();
            }
            b.cseq = u.cseq;
            b.q = q;
            continue;
        }
        let fresh = Binding {
            contact: uri.into(),
            source: u.source,
            transport: u.transport,
            conn: u.conn,
            worker: u.worker,
            expires,
            call_id: u.call_id.into(),
            cseq: u.cseq,
            q,
        };
        if bindings.len() < max {
            bindings.push(fresh);
        } else if let Some(i) = (0..bindings.len())
            .filter(|&i| !set.contains(&bindings[i].contact.as_ref()))
            .min_by_key(|&i| bindings[i].expires)
        {
            // The cap replaces rather than refuses: a phone behind NAT that
            // reboots registers a new contact (new port) while its old one
            // lingers, and must not be locked out until that expires. One
            // not set by this request is always there (checked above).
            bindings[i] = fresh;
        }
    }
    sort_by_q(bindings);
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout the module doc describes.
    #[test]
    fn a_bucket_holds_a_short_key_and_one_binding() {
        assert_eq!(size_of::<(Key, Aor)>(), 144);
    }

    /// `Borrow<[u8]>` requires `Key` to hash and compare as its bytes.
    #[test]
    fn keys_hash_as_their_bytes() {
        for s in ["", "a@b", "u0000001@company001.example", &"x".repeat(100)] {
            let k = Key::new(s);
            assert_eq!(k.as_str(), s);
            assert_eq!(
                FxBuildHasher.hash_one(&k),
                FxBuildHasher.hash_one(s.as_bytes())
            );
            assert_eq!(matches!(k, Key::Inline { .. }), s.len() <= INLINE_KEY);
        }
    }

    /// Keys spread over the shards, and within one shard their hashes still
    /// vary in the top 7 bits hashbrown keeps as control bytes.
    #[test]
    fn shards_spread_and_keep_hash_entropy() {
        let store = Store::default();
        let mut per_shard = vec![0usize; SHARDS];
        let mut tags = std::collections::HashSet::new();
        for i in 0..64_000 {
            let aor = format!("u{i:07}@company{:03}.example", i % 1000);
            let shard = store.shard(aor.as_bytes()) as *const _;
            let n = store
                .shards
                .iter()
                .position(|s| std::ptr::eq(&s.0, shard))
                .unwrap();
            per_shard[n] += 1;
            if n == 0 {
                tags.insert(FxBuildHasher.hash_one(aor.as_bytes()) >> 57);
            }
        }
        assert!(
            per_shard.iter().all(|&n| (800..1200).contains(&n)),
            "{per_shard:?}"
        );
        assert!(tags.len() > 120, "{}", tags.len());
    }

    #[test]
    fn one_binding_inline_several_in_a_list() {
        let b = |i: u64| Binding {
            contact: format!("sip:{i}@h").into(),
            source: ([192, 0, 2, 1], 5060).into(),
            transport: crate::proxy::Transport::Udp,
            conn: None,
            worker: 0,
            expires: 100 + i,
            call_id: "c".into(),
            cseq: 1,
            q: None,
        };
        let mut a = Aor::new(1, vec![b(1)]);
        assert!(matches!(a.bindings, Bindings::One(_)));
        let mut v = a.take();
        v.push(b(2));
        a.set(v);
        assert_eq!(a.bindings(), [b(1), b(2)]);
        assert_eq!(a.retain_live(101), 1);
        assert!(matches!(a.bindings, Bindings::One(_)));
        assert_eq!(a.retain_live(102), 1);
        assert!(a.bindings().is_empty());
    }
}
