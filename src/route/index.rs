//! Platform-wide indexes (company by domain or name, DDI owner) that are
//! cheap to copy, so changing one company does not rebuild them.
//!
//! Keys are stored as 64-bit hashes (names) or packed integers (DDIs), not
//! as strings: cloning an index is then a flat copy of a hash table of
//! integers (tens of microseconds for 10,000 companies) instead of
//! thousands of string allocations. A string index verifies each hit
//! against the company itself, and keeps the rare 64-bit hash collision in
//! a side list, so lookups stay exact.

use std::hash::BuildHasher;

use rustc_hash::{FxBuildHasher, FxHashMap};

/// Index from a string (a domain or a name) to a company index.
#[derive(Debug, Clone, Default)]
pub(crate) struct StrIndex {
    map: FxHashMap<u64, u32>,
    /// Entries whose hash is already taken by another key.
    collisions: Vec<(u64, u32)>,
}

fn hash(s: &str) -> u64 {
    FxBuildHasher.hash_one(s.as_bytes())
}

impl StrIndex {
    /// An empty index with room for `n` keys.
    pub(crate) fn with_capacity(n: usize) -> StrIndex {
        StrIndex {
            map: FxHashMap::with_capacity_and_hasher(n, Default::default()),
            collisions: Vec::new(),
        }
    }

    /// The index of `s`, where `key(i)` is the string of index `i`.
    #[inline]
    pub(crate) fn get<'k>(&self, s: &str, key: impl Fn(u32) -> &'k str) -> Option<u32> {
        let h = hash(s);
        let i = *self.map.get(&h)?;
        if key(i) == s {
            return Some(i);
        }
        self.collisions
            .iter()
            .find(|&&(ch, ci)| ch == h && key(ci) == s)
            .map(|&(_, ci)| ci)
    }

    /// Adds `s` → `i` (the caller guarantees `s` is not present).
    pub(crate) fn insert(&mut self, s: &str, i: u32) {
        let h = hash(s);
        match self.map.entry(h) {
            std::collections::hash_map::Entry::Occupied(_) => self.collisions.push((h, i)),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(i);
            }
        }
    }

    /// Removes `s` → `i`.
    pub(crate) fn remove(&mut self, s: &str, i: u32) {
        let h = hash(s);
        if self.map.get(&h) == Some(&i) {
            self.map.remove(&h);
            if let Some(pos) = self.collisions.iter().position(|&(ch, _)| ch == h) {
                let (_, ci) = self.collisions.swap_remove(pos);
                self.map.insert(h, ci);
            }
        } else {
            self.collisions.retain(|&(ch, ci)| !(ch == h && ci == i));
        }
    }

    /// Moves the entry of `s` from index `from` to index `to`.
    pub(crate) fn renumber(&mut self, s: &str, from: u32, to: u32) {
        self.remove(s, from);
        self.insert(s, to);
    }
}

/// An E.164 number packed into an integer: the digits' value times 16
/// plus their count (1 to 15 digits: below 10^15 · 16 < 2^64), so
/// `+0123` and `+123` stay distinct. `None` if `s` is not `+` and digits.
#[inline]
pub(crate) fn ddi_key(s: &str) -> Option<u64> {
    let digits = s.strip_prefix('+')?.as_bytes();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(d - b'0');
    }
    Some(v * 16 + digits.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_index_survives_collisions() {
        let keys = ["a.example", "b.example", "c.example"];
        let mut idx = StrIndex::default();
        for (i, k) in keys.iter().enumerate() {
            idx.insert(k, i as u32);
        }
        // Force a collision by hand: same hash slot, different key.
        idx.collisions.push((hash("x.example"), 3));
        let all = ["a.example", "b.example", "c.example", "x.example"];
        let key = |i: u32| all[i as usize];
        assert_eq!(idx.get("b.example", key), Some(1));
        assert_eq!(
            idx.get("x.example", key),
            None,
            "x's hash is not in the map"
        );
        idx.remove("b.example", 1);
        assert_eq!(idx.get("b.example", key), None);
        idx.renumber("c.example", 2, 1);
        let moved = ["a.example", "c.example"];
        assert_eq!(idx.get("c.example", |i| moved[i as usize]), Some(1));
    }

    #[test]
    fn ddi_keys_are_distinct() {
        assert_eq!(ddi_key("+34944000100"), Some(34944000100 * 16 + 11));
        assert_ne!(ddi_key("+0123"), ddi_key("+123"));
        assert_eq!(
            ddi_key("+999999999999999"),
            Some(999_999_999_999_999 * 16 + 15)
        );
        assert_eq!(ddi_key("+1234567890123456"), None);
        assert_eq!(ddi_key("34944000100"), None);
        assert_eq!(ddi_key("+34a"), None);
    }
}
