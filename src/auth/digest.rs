//! The digest computation of RFC 7616 §3.4.1 (`qop=auth` only) and the
//! parsing of one `Digest` credentials value into its parts.
//!
//! ```text
//! HA1      = H(username ":" realm ":" password)
//! HA2      = H(method ":" digest-uri)
//! response = H(HA1 ":" nonce ":" nc ":" cnonce ":" "auth" ":" HA2)
//! ```
//!
//! `H` is MD5 (RFC 2617, RFC 3261 §22.4) or SHA-256 (RFC 7616, RFC 8760),
//! written as lowercase hex. The `-sess` variants and `qop=auth-int` are not
//! offered, so credentials that use them are refused.

use std::borrow::Cow;
use std::fmt;

use sha2::Digest;

use super::Reason;
use crate::sip::AuthValue;

/// A digest algorithm offered in challenges and accepted in credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `MD5`: the RFC 2617 default, still the only one most phones speak.
    Md5,
    /// `SHA-256` (RFC 7616 §3.3, RFC 8760 for SIP).
    Sha256,
}

impl Algorithm {
    /// The algorithm named by an `algorithm=` value, case-insensitively:
    /// `MD5` or `SHA-256`; anything else (including `-sess`) is `None`.
    pub fn parse(s: &str) -> Option<Algorithm> {
        Self::parse_bytes(s.as_bytes())
    }

    pub(crate) fn parse_bytes(s: &[u8]) -> Option<Algorithm> {
        if s.eq_ignore_ascii_case(b"MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case(b"SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// The name as written in challenges: `MD5` or `SHA-256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }
}

/// A digest as lowercase hex, on the stack (32 or 64 characters).
#[derive(Clone, Copy)]
pub(crate) struct Hex {
    buf: [u8; 64],
    len: usize,
}

impl Hex {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// `H(parts[0] ":" parts[1] ":" ...)` as lowercase hex.
pub(crate) fn hash_hex(alg: Algorithm, parts: &[&[u8]]) -> Hex {
    match alg {
        Algorithm::Md5 => hash_with::<md5::Md5>(parts),
        Algorithm::Sha256 => hash_with::<sha2::Sha256>(parts),
    }
}

fn hash_with<D: Digest>(parts: &[&[u8]]) -> Hex {
    let mut h = D::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p);
    }
    let out = h.finalize();
    let mut hex = Hex {
        buf: [0; 64],
        len: out.len() * 2,
    };
    hex_encode(&out, &mut hex.buf);
    hex
}

fn hex_encode(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// The inputs of one response computation, borrowed from the request.
pub(crate) struct Inputs<'a> {
    pub alg: Algorithm,
    pub username: &'a [u8],
    pub realm: &'a [u8],
    pub password: &'a [u8],
    pub method: &'a [u8],
    pub uri: &'a [u8],
    pub nonce: &'a [u8],
    pub nc: &'a [u8],
    pub cnonce: &'a [u8],
}

/// The `response` value of RFC 7616 §3.4.1 with `qop=auth`.
pub(crate) fn response(i: &Inputs<'_>) -> Hex {
    let ha1 = hash_hex(i.alg, &[i.username, i.realm, i.password]);
    let ha2 = hash_hex(i.alg, &[i.method, i.uri]);
    hash_hex(
        i.alg,
        &[
            ha1.as_bytes(),
            i.nonce,
            i.nc,
            i.cnonce,
            b"auth",
            ha2.as_bytes(),
        ],
    )
}

/// Equality that takes the same time wherever the first difference is.
/// Lengths are public (they follow from the algorithm), so unequal lengths
/// may return early.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The parameters of one `Digest` credentials value that the check needs,
/// unquoted and unescaped (RFC 3261 §25.1 `quoted-pair`).
#[derive(Debug)]
pub(crate) struct Credentials<'a> {
    pub username: Cow<'a, [u8]>,
    pub realm: Cow<'a, [u8]>,
    pub nonce: Cow<'a, [u8]>,
    pub uri: Cow<'a, [u8]>,
    pub response: Cow<'a, [u8]>,
    pub cnonce: Cow<'a, [u8]>,
    /// `MD5` when the parameter is absent (RFC 7616 §3.4).
    pub algorithm: Algorithm,
    /// The `nc` value as sent (eight hex digits; it is hashed as text).
    pub nc_text: &'a [u8],
    /// The same value as a number, for the replay table.
    pub nc: u32,
}

/// The realm of a credentials value, unescaped; `None` if it has none.
fn realm_of<'a>(v: &AuthValue<'a>) -> Option<Cow<'a, [u8]>> {
    v.get(b"realm").map(unescape)
}

impl<'a> Credentials<'a> {
    /// Reads the parameters of a `Digest` value. Every required parameter
    /// must be present exactly once; `qop` must be `auth`; `nc` must be
    /// eight hex digits and not zero (the first request carries 1).
    pub(crate) fn parse(v: &AuthValue<'a>) -> Result<Credentials<'a>, Reason> {
        let mut f: [Option<&'a [u8]>; 9] = [None; 9];
        const NAMES: [&[u8]; 9] = [
            b"username",
            b"realm",
            b"nonce",
            b"uri",
            b"response",
            b"cnonce",
            b"algorithm",
            b"nc",
            b"qop",
        ];
        for p in v.iter() {
            let (name, value) = p.map_err(|_| Reason::Malformed)?;
            if name.eq_ignore_ascii_case(b"userhash") && !value.eq_ignore_ascii_case(b"false") {
                // RFC 7616 §3.4.4: we never offer userhash, so cannot look it up.
                return Err(Reason::Malformed);
            }
            if let Some(i) = NAMES.iter().position(|n| name.eq_ignore_ascii_case(n)) {
                if f[i].replace(value).is_some() {
                    return Err(Reason::Malformed);
                }
            }
        }
        let [Some(username), Some(realm), Some(nonce), Some(uri), Some(response), Some(cnonce), algorithm, Some(nc_text), Some(qop)] =
            f
        else {
            return Err(Reason::Malformed);
        };
        let algorithm = match algorithm {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse_bytes(a).ok_or(Reason::UnknownAlgorithm)?,
        };
        if qop != b"auth" || nc_text.len() != 8 || cnonce.is_empty() || uri.is_empty() {
            return Err(Reason::Malformed);
        }
        let nc = std::str::from_utf8(nc_text)
            .ok()
            .filter(|s| s.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|s| u32::from_str_radix(s, 16).ok())
            .filter(|&n| n > 0)
            .ok_or(Reason::Malformed)?;
        Ok(Credentials {
            username: unescape(username),
            realm: unescape(realm),
            nonce: unescape(nonce),
            uri: unescape(uri),
            response: unescape(response),
            cnonce: unescape(cnonce),
            algorithm,
            nc_text,
            nc,
        })
    }
}

/// The Digest credentials value for `realm` among `credentials`, `None` when there are
/// no Digest credentials at all, or the failure when there are some but
/// none usable for this realm.
pub(crate) fn select<'a>(
    credentials: &[&'a [u8]],
    realm: &str,
) -> Result<Option<AuthValue<'a>>, Reason> {
    let mut failure = None;
    for &v in credentials {
        let Ok(a) = AuthValue::parse(v) else {
            failure = Some(Reason::Malformed);
            continue;
        };
        if !a.is_digest() {
            continue;
        }
        match realm_of(&a) {
            Some(r) if *r == *realm.as_bytes() => return Ok(Some(a)),
            Some(_) => {
                failure.get_or_insert(Reason::WrongRealm);
            }
            None => failure = Some(Reason::Malformed),
        }
    }
    failure.map_or(Ok(None), Err)
}

/// Text inside a `quoted-string`, with `"` and `\` escaped.
pub(crate) struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if matches!(c, '"' | '\\') {
                f.write_str("\\")?;
            }
            fmt::Write::write_char(f, c)?;
        }
        Ok(())
    }
}

/// Removes the backslashes of `quoted-pair`s; borrows when there are none.
fn unescape(v: &[u8]) -> Cow<'_, [u8]> {
    if !v.contains(&b'\\') {
        return Cow::Borrowed(v);
    }
    let mut out = Vec::with_capacity(v.len());
    let mut it = v.iter();
    while let Some(&c) = it.next() {
        match c {
            b'\\' => out.extend(it.next()),
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(v: &[u8]) -> Result<Credentials<'_>, Reason> {
        Credentials::parse(&AuthValue::parse(v).unwrap())
    }

    #[test]
    fn parses_and_unescapes() {
        let c = creds(
            b"Digest username=\"a\\\"b\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", \
              response=\"00\", cnonce=\"c\", nc=0000000a, qop=auth, algorithm=sha-256",
        )
        .unwrap();
        assert_eq!(&*c.username, b"a\"b");
        assert_eq!((c.nc, c.algorithm), (10, Algorithm::Sha256));
    }

    #[test]
    fn refuses_what_we_cannot_check() {
        let base =
            "username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"0\", cnonce=\"c\"";
        for (extra, reason) in [
            ("nc=00000001", Reason::Malformed),               // no qop
            ("qop=auth-int, nc=00000001", Reason::Malformed), // auth-int
            ("qop=auth, nc=1", Reason::Malformed),            // short nc
            ("qop=auth, nc=00000000", Reason::Malformed),     // nc zero
            ("qop=auth, nc=0000000g", Reason::Malformed),     // not hex
            ("qop=auth, nc=00000001, nc=00000002", Reason::Malformed), // twice
            ("qop=auth, nc=00000001, userhash=true", Reason::Malformed), // RFC 7616 §3.4.4
            (
                "qop=auth, nc=00000001, algorithm=MD5-sess",
                Reason::UnknownAlgorithm,
            ),
        ] {
            let v = format!("Digest {base}, {extra}");
            assert_eq!(creds(v.as_bytes()).unwrap_err(), reason, "{extra}");
        }
        assert!(creds(b"Digest username=\"u\", qop=auth").is_err());
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
