//! Stateless nonces: the switch keeps nothing per challenge; a nonce proves
//! by itself when, for which realm and to which source this switch issued
//! it.
//!
//! ```text
//! raw   = issued_at (u64, big-endian, Unix seconds)      8 bytes
//!      || uniqueness                                     8 bytes
//!      || HMAC-SHA256(K_mac, issued_at || uniqueness || source || realm)[..16]
//! nonce = base64url(raw), no padding                     43 characters
//! source = 4 || IPv4 address  |  6 || the IPv6 address's /64
//! ```
//!
//! Binding the source means a nonce proves a round trip: whoever answers
//! with it received the challenge at that address. Only failures with such
//! a nonce count towards a ban (`mod.rs`), so packets with a forged source
//! address can neither ban their victim nor flood the ban table. IPv6 is
//! bound per /64, the unit bans count (privacy addresses rotate inside
//! it). A client whose address changes between challenge and answer gets
//! one more challenge.
//!
//! `uniqueness` is a per-process counter, started at a random value and
//! passed through a keyed bijection, so no two nonces of one process are
//! equal (for 2^64 challenges) and the counter does not reveal how many
//! challenges were sent. Because the mapping is invertible, verification
//! also tells whether *this process* issued the nonce (its counter value
//! lies between the random start and the current count): a nonce of a
//! previous run of the switch (same secret) cannot be in the replay table,
//! which is not persisted, so it is answered `stale` instead of trusted.
//! `issued_at || uniqueness` is the nonce's key in the replay table. Binding the realm into the MAC stops a nonce issued for one
//! company from being used with another. The 128-bit truncated tag is the
//! usual truncation (RFC 2104 §5 allows down to half the output).
//!
//! base64url needs no escaping inside the `quoted-string` and keeps the
//! nonce short; decoding is strict (canonical final character), so one raw
//! nonce has exactly one spelling.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of a nonce on the wire.
pub(crate) const NONCE_LEN: usize = 43;
const RAW_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// Clock skew tolerated between workers before a nonce "from the future"
/// is taken as forged.
const FUTURE_SKEW: u64 = 5;

/// The key of a nonce in the replay table: `issued_at || uniqueness`.
pub(crate) type NonceKey = [u8; 16];

/// A nonce whose MAC verified.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verified {
    pub key: NonceKey,
    pub issued_at: u64,
    /// Issued by this process (not by an earlier run with the same secret).
    pub own: bool,
}

/// Issues and verifies nonces.
pub(crate) struct Nonces {
    /// HMAC keyed with the nonce subkey; cloned per use to skip the key
    /// schedule.
    mac: Hmac<Sha256>,
    mix: u64,
    /// Random start of `counter`.
    seed: u64,
    counter: AtomicU64,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces").finish_non_exhaustive()
    }
}

/// `HMAC-SHA256(secret, label)`: one independent subkey per use of the
/// secret.
pub(crate) fn derive(secret: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(label);
    m.finalize().into_bytes().into()
}

impl Nonces {
    pub(crate) fn new(secret: &[u8; 32]) -> Nonces {
        let mac_key = derive(secret, b"tandem auth nonce mac");
        let mix = derive(secret, b"tandem auth nonce mix");
        // A random start, so that a restarted process does not reissue the
        // nonces of its previous run (std's RandomState is seeded from the OS).
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x7a6e_u32);
        Nonces {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(&mac_key)
                .expect("HMAC takes any key length"),
            mix: u64::from_be_bytes(mix[..8].try_into().expect("8 bytes")),
            seed,
            counter: AtomicU64::new(seed),
        }
    }

    fn tag(&self, head: &[u8; 16], source: IpAddr, realm: &str) -> Hmac<Sha256> {
        let mut m = self.mac.clone();
        m.update(head);
        match source.to_canonical() {
            IpAddr::V4(v4) => {
                m.update(&[4]);
                m.update(&v4.octets());
            }
            IpAddr::V6(v6) => {
                m.update(&[6]);
                m.update(&v6.octets()[..8]);
            }
        }
        m.update(realm.as_bytes());
        m
    }

    /// A fresh nonce for `realm`, issued at `now` to `source`.
    pub(crate) fn issue(&self, now: u64, realm: &str, source: IpAddr) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let unique = mix64(n ^ self.mix);
        let mut raw = [0u8; RAW_LEN];
        raw[..8].copy_from_slice(&now.to_be_bytes());
        raw[8..16].copy_from_slice(&unique.to_be_bytes());
        let head: [u8; 16] = raw[..16].try_into().expect("16 bytes");
        let tag = self.tag(&head, source, realm).finalize().into_bytes();
        raw[16..].copy_from_slice(&tag[..TAG_LEN]);
        base64url_encode(&raw)
    }

    /// Checks that `nonce` was issued by this switch (same secret) for
    /// `realm` to `source` (its /64 for IPv6) and not after `now` (plus a
    /// little skew). The age is for the caller to judge.
    pub(crate) fn verify(
        &self,
        now: u64,
        realm: &str,
        source: IpAddr,
        nonce: &[u8],
    ) -> Option<Verified> {
        let raw = base64url_decode(nonce)?;
        let head: [u8; 16] = raw[..16].try_into().expect("16 bytes");
        self.tag(&head, source, realm)
            .verify_truncated_left(&raw[16..])
            .ok()?;
        let issued_at = u64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
        let unique = u64::from_be_bytes(raw[8..16].try_into().expect("8 bytes"));
        let n = unmix64(unique) ^ self.mix;
        let issued = self.counter.load(Ordering::Relaxed).wrapping_sub(self.seed);
        (issued_at <= now.saturating_add(FUTURE_SKEW)).then_some(Verified {
            key: head,
            issued_at,
            own: n.wrapping_sub(self.seed) < issued,
        })
    }
}

/// The splitmix64 finaliser: a bijection on u64 that scatters bits.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The inverse of [`mix64`].
fn unmix64(mut z: u64) -> u64 {
    z = unxorshift(z, 31).wrapping_mul(inverse(0x94d0_49bb_1331_11eb));
    z = unxorshift(z, 27).wrapping_mul(inverse(0xbf58_476d_1ce4_e5b9));
    unxorshift(z, 30)
}

/// The inverse of `z ^ (z >> s)`.
fn unxorshift(z: u64, s: u32) -> u64 {
    let mut x = z;
    for _ in 0..64 / s {
        x = z ^ (x >> s);
    }
    x
}

/// The inverse of odd `a` modulo 2^64 (Newton: each step doubles the
/// correct low bits, from 3 bits to 96).
const fn inverse(a: u64) -> u64 {
    let mut x = a;
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
        i += 1;
    }
    x
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64url_encode(raw: &[u8; RAW_LEN]) -> String {
    let mut out = String::with_capacity(NONCE_LEN);
    for chunk in raw.chunks(3) {
        let mut b = [0u8; 3];
        b[..chunk.len()].copy_from_slice(chunk);
        let n = u32::from_be_bytes([0, b[0], b[1], b[2]]);
        for i in 0..=chunk.len() {
            out.push(char::from(B64[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

fn base64url_decode(s: &[u8]) -> Option<[u8; RAW_LEN]> {
    if s.len() != NONCE_LEN {
        return None;
    }
    let mut raw = [0u8; RAW_LEN];
    let mut acc = 0u32;
    let mut bits = 0;
    let mut o = 0;
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            raw[o] = (acc >> bits) as u8;
            o += 1;
        }
    }
    // 43 characters carry 258 bits: the last 2 must be zero (canonical form).
    (acc & ((1 << bits) - 1) == 0).then_some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trip_is_canonical() {
        let raw: [u8; 32] = std::array::from_fn(|i| (i * 37 + 11) as u8);
        let s = base64url_encode(&raw);
        assert_eq!(s.len(), NONCE_LEN);
        assert_eq!(base64url_decode(s.as_bytes()), Some(raw));
        // Same leading 256 bits, non-zero trailing bits: refused.
        let mut t = s.into_bytes();
        let last = B64.iter().position(|&c| c == t[42]).unwrap();
        t[42] = B64[last | 1];
        assert_eq!(base64url_decode(&t), None);
        assert_eq!(base64url_decode(b"="), None);
    }

    #[test]
    fn mix_is_a_bijection() {
        for x in [0, 1, 0x7a6e, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(unmix64(mix64(x)), x);
        }
    }

    #[test]
    fn issue_verify() {
        let src: IpAddr = "192.0.2.7".parse().unwrap();
        let n = Nonces::new(&[7; 32]);
        let a = n.issue(1000, "a.example.com", src);
        let b = n.issue(1000, "a.example.com", src);
        assert_ne!(a, b);
        let v = n.verify(1000, "a.example.com", src, a.as_bytes()).unwrap();
        assert_eq!((v.issued_at, v.own), (1000, true));
        // Same secret, another process: valid, but not ours.
        let v = Nonces::new(&[7; 32])
            .verify(1000, "a.example.com", src, a.as_bytes())
            .unwrap();
        assert!(!v.own);
        // Other realm, other secret, issued in the future: refused.
        assert!(n.verify(1000, "b.example.com", src, a.as_bytes()).is_none());
        assert!(Nonces::new(&[8; 32])
            .verify(1000, "a.example.com", src, a.as_bytes())
            .is_none());
        assert!(n.verify(994, "a.example.com", src, a.as_bytes()).is_none());
        assert!(n.verify(995, "a.example.com", src, a.as_bytes()).is_some());
        // Another source: refused; its IPv4-mapped form is the same source.
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert!(n
            .verify(1000, "a.example.com", other, a.as_bytes())
            .is_none());
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert!(n
            .verify(1000, "a.example.com", mapped, a.as_bytes())
            .is_some());
        // IPv6: bound to the /64.
        let v6: IpAddr = "2001:db8:1:2::10".parse().unwrap();
        let c = n.issue(1000, "a.example.com", v6);
        let same64: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let other64: IpAddr = "2001:db8:1:3::10".parse().unwrap();
        assert!(n
            .verify(1000, "a.example.com", same64, c.as_bytes())
            .is_some());
        assert!(n
            .verify(1000, "a.example.com", other64, c.as_bytes())
            .is_none());
    }
}
