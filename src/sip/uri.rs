//! URIs: `sip:`, `sips:` and `tel:` decoded into borrowed parts; any other
//! scheme kept opaque so a proxy can answer `416 Unsupported URI Scheme`.
//!
//! ```text
//! SIP-URI  = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
//! userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
//! hostport = host [ ":" port ]
//! host     = hostname / IPv4address / IPv6reference
//! ```
//!
//! The user part is kept escaped; [`unescape`] decodes `%HH` once, never
//! recursively (`value%2541` is `value%41`, RFC 4475 `esc01`), and an escaped
//! NUL is an ordinary byte that truncates nothing (`escnull`).

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::params::Params;
use super::scan::parse_u16;

/// The longest URI Tandem accepts (a `414` beyond it).
pub const MAX_URI_LEN: usize = 2048;

/// A decoded URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uri<'a> {
    /// `sip:` or `sips:`.
    Sip(SipUri<'a>),
    /// `tel:` (RFC 3966).
    Tel(TelUri<'a>),
    /// Any other scheme, undecoded.
    Other {
        /// The scheme, as written.
        scheme: &'a [u8],
        /// Everything after the `:`.
        rest: &'a [u8],
    },
}

/// A `sip:` / `sips:` URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// `sips:`.
    pub secure: bool,
    /// The user part, still escaped.
    pub user: Option<&'a [u8]>,
    /// The password, still escaped.
    pub password: Option<&'a [u8]>,
    /// The host.
    pub host: Host<'a>,
    /// The port, if written.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`).
    pub params: Params<'a>,
    /// Escaped headers after `?`, if any.
    pub headers: Option<&'a [u8]>,
}

/// A `tel:` URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelUri<'a> {
    /// The number, as written (`+1-201-555-0123`).
    pub number: &'a [u8],
    /// Parameters (`;phone-context=...`).
    pub params: Params<'a>,
}

/// A host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// A domain name.
    Domain(&'a [u8]),
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 reference (`[...]` in the text).
    V6(Ipv6Addr),
}

impl Host<'_> {
    /// The host as an IP address, if it is one.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match *self {
            Host::V4(a) => Some(a.into()),
            Host::V6(a) => Some(a.into()),
            Host::Domain(_) => None,
        }
    }
}

/// Why a URI did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriError {
    /// No `scheme:` prefix, or a scheme with illegal characters.
    Scheme,
    /// The user or password contains a character not allowed there, or a
    /// bad `%` escape.
    User,
    /// The host is empty or malformed.
    Host,
    /// The port is not a number in 0..=65535.
    Port,
    /// A URI parameter is malformed.
    Params,
    /// Longer than [`MAX_URI_LEN`].
    TooLong,
}

impl<'a> Uri<'a> {
    /// Decodes a URI, checking the whole grammar.
    pub fn parse(s: &'a [u8]) -> Result<Uri<'a>, UriError> {
        Self::parse_as(s, true)
    }

    /// Decodes a URI that validation has already accepted (in a message
    /// that passed [`crate::sip::validate`]): the same result as
    /// [`Uri::parse`], without checking its parameters and headers again
    /// (a Route of this switch carries ~150 bytes of them). On any other
    /// text it may accept what `parse` refuses.
    pub fn decode(s: &'a [u8]) -> Result<Uri<'a>, UriError> {
        Self::parse_as(s, false)
    }

    fn parse_as(s: &'a [u8], check: bool) -> Result<Uri<'a>, UriError> {
        if s.len() > MAX_URI_LEN {
            return Err(UriError::TooLong);
        }
        let colon = s.iter().position(|&c| c == b':').ok_or(UriError::Scheme)?;
        let (scheme, rest) = (&s[..colon], &s[colon + 1..]);
        let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
            && scheme
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return Err(UriError::Scheme);
        }
        if scheme.eq_ignore_ascii_case(b"sip") {
            SipUri::parse_rest(rest, false, check).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case(b"sips") {
            SipUri::parse_rest(rest, true, check).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case(b"tel") {
            TelUri::parse_rest(rest).map(Uri::Tel)
        } else {
            if rest.iter().any(|&c| c <= b' ' || c == 0x7f) {
                return Err(UriError::Scheme);
            }
            Ok(Uri::Other { scheme, rest })
        }
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// The dialled number or user: a SIP URI's user part or a tel number,
    /// still escaped.
    pub fn user(&self) -> Option<&'a [u8]> {
        match self {
            Uri::Sip(u) => u.user,
            Uri::Tel(t) => Some(t.number),
            Uri::Other { .. } => None,
        }
    }
}

impl<'a> SipUri<'a> {
    /// Decodes what follows `sip:` in about one pass over the text: the
    /// `@` is found with `memchr`, and the userinfo, the host, the port and
    /// the parameters are each checked as they are scanned, with the
    /// character classes of [`CLASS`].
    fn parse_rest(rest: &'a [u8], secure: bool, check: bool) -> Result<SipUri<'a>, UriError> {
        // '@' cannot appear unescaped after the userinfo (not in hostport,
        // uri-parameters or headers), so the first one ends the userinfo.
        let (user, password, hostpart) = match memchr::memchr(b'@', rest) {
            Some(at) => {
                let (u, p) = userinfo(&rest[..at])?;
                (Some(u), p, &rest[at + 1..])
            }
            None => (None, None, rest),
        };
        let end = memchr::memchr2(b';', b'?', hostpart).unwrap_or(hostpart.len());
        let (host, port) = parse_hostport(&hostpart[..end])?;
        let tail = &hostpart[end..];
        let (params, headers) = match tail.first() {
            None => (Params(b""), None),
            Some(b'?') => (Params(b""), Some(&tail[1..])),
            Some(_) => {
                let tail = &tail[1..];
                match memchr::memchr(b'?', tail) {
                    Some(q) => (Params(&tail[..q]), Some(&tail[q + 1..])),
                    None => (Params(tail), None),
                }
            }
        };
        if check {
            params.check_uri().map_err(|_| UriError::Params)?;
        }
        if let Some(h) = headers.filter(|_| check) {
            if h.is_empty()
                || !valid_escaped(h, |c| {
                    is_user_char(c) || c == b'[' || c == b']' || c == b':' || c == b'@'
                })
            {
                return Err(UriError::Params);
            }
        }
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// The user part decoded (`%HH` once).
    pub fn user_unescaped(&self) -> Option<Cow<'a, [u8]>> {
        self.user.map(unescape)
    }
}

impl<'a> TelUri<'a> {
    fn parse_rest(rest: &'a [u8]) -> Result<TelUri<'a>, UriError> {
        let (number, params) = match rest.iter().position(|&c| c == b';') {
            Some(i) => (&rest[..i], Params(&rest[i + 1..])),
            None => (rest, Params(b"")),
        };
        let ok = !number.is_empty()
            && number.iter().all(|&c| {
                c.is_ascii_hexdigit() || matches!(c, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#')
            });
        if !ok {
            return Err(UriError::User);
        }
        params.check_uri().map_err(|_| UriError::Params)?;
        Ok(TelUri { number, params })
    }
}

/// `user [":" password]`: the user non-empty, both well escaped, in one
/// scan.
fn userinfo(info: &[u8]) -> Result<(&[u8], Option<&[u8]>), UriError> {
    let mut i = 0;
    let mut class = USER;
    let mut colon = None;
    while i < info.len() {
        let c = info[i];
        if c == b'%' {
            match (info.get(i + 1), info.get(i + 2)) {
                (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
                _ => return Err(UriError::User),
            }
            continue;
        }
        if c == b':' && colon.is_none() {
            colon = Some(i);
            class = PASSWORD;
        } else if CLASS[usize::from(c)] & class == 0 {
            return Err(UriError::User);
        }
        i += 1;
    }
    let (u, p) = match colon {
        Some(i) => (&info[..i], Some(&info[i + 1..])),
        None => (info, None),
    };
    if u.is_empty() {
        return Err(UriError::User);
    }
    Ok((u, p))
}

/// Decodes `host [":" port]`.
pub fn parse_hostport(s: &[u8]) -> Result<(Host<'_>, Option<u16>), UriError> {
    if s.first() == Some(&b'[') {
        let close = s.iter().position(|&c| c == b']').ok_or(UriError::Host)?;
        let ip = std::str::from_utf8(&s[1..close])
            .ok()
            .and_then(|t| t.parse::<Ipv6Addr>().ok())
            .ok_or(UriError::Host)?;
        let port = match &s[close + 1..] {
            [] => None,
            [b':', p @ ..] => Some(parse_u16(p).ok_or(UriError::Port)?),
            _ => return Err(UriError::Host),
        };
        return Ok((Host::V6(ip), port));
    }
    // One pass to the colon, classifying the host's bytes on the way.
    let (mut i, mut hostname, mut numeric) = (0, true, true);
    while let Some(&c) = s.get(i) {
        if c == b':' {
            break;
        }
        hostname &= CLASS[usize::from(c)] & HOST != 0;
        numeric &= c.is_ascii_digit() || c == b'.';
        i += 1;
    }
    let port = match s.get(i + 1..) {
        Some(p) => Some(parse_u16(p).ok_or(UriError::Port)?),
        None => None,
    };
    Ok((host_of(&s[..i], hostname, numeric)?, port))
}

/// The host `h`, given whether all its bytes are hostname characters and
/// whether all are digits and dots.
fn host_of(h: &[u8], hostname: bool, numeric: bool) -> Result<Host<'_>, UriError> {
    match h.last() {
        _ if !hostname => Err(UriError::Host),
        None => Err(UriError::Host),
        // All digits and dots: it must be a dotted quad (a hostname's top
        // label starts with a letter, RFC 3261 §25.1).
        Some(l) if numeric && l.is_ascii_digit() => {
            parse_ipv4(h).map(Host::V4).ok_or(UriError::Host)
        }
        Some(_) => Ok(Host::Domain(h)),
    }
}

/// A dotted quad, each part 0..=255 without leading zeros beyond one
/// digit's worth of ambiguity (`01` is refused, as `std` does).
/// `h` holds only digits and dots.
fn parse_ipv4(h: &[u8]) -> Option<Ipv4Addr> {
    let (mut octets, mut k) = ([0u8; 4], 0);
    let (mut value, mut len, mut first) = (0u16, 0, 0u8);
    for &c in h {
        if c == b'.' {
            if len == 0 || k == 3 {
                return None;
            }
            octets[k] = u8::try_from(value).ok()?;
            (k, value, len) = (k + 1, 0, 0);
        } else {
            if len == 3 || (len == 1 && first == b'0') {
                return None;
            }
            if len == 0 {
                first = c;
            }
            value = value * 10 + u16::from(c - b'0');
            len += 1;
        }
    }
    if len == 0 || k != 3 {
        return None;
    }
    octets[3] = u8::try_from(value).ok()?;
    Some(Ipv4Addr::from(octets))
}

/// Character classes of the URI grammar, one bit each, looked up in
/// [`CLASS`] (one load per byte instead of a chain of comparisons).
const USER: u8 = 1;
const PASSWORD: u8 = 2;
const HOST: u8 = 4;

const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let alnum = c.is_ascii_alphanumeric();
        let mark = matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        );
        let mut bits = 0;
        // user = 1*( unreserved / escaped / user-unreserved )
        if alnum || mark || matches!(c, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/') {
            bits |= USER;
        }
        // password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
        if alnum || mark || matches!(c, b'&' | b'=' | b'+' | b'$' | b',') {
            bits |= PASSWORD;
        }
        // hostname characters (labels of alphanum and "-", dots between)
        if alnum || c == b'-' || c == b'.' {
            bits |= HOST;
        }
        t[i] = bits;
        i += 1;
    }
    t
};

/// `user = 1*( unreserved / escaped / user-unreserved )`.
#[inline]
fn is_user_char(c: u8) -> bool {
    CLASS[usize::from(c)] & USER != 0
}

/// `password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )`.
#[cfg(test)]
#[inline]
fn is_password_char(c: u8) -> bool {
    CLASS[usize::from(c)] & PASSWORD != 0
}

/// Whether `s` consists of `allowed` characters and well-formed `%HH`.
fn valid_escaped(s: &[u8], allowed: impl Fn(u8) -> bool) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            match (s.get(i + 1), s.get(i + 2)) {
                (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else if allowed(s[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Escapes a user part for writing into a URI: every byte that is not a
/// `user` character (RFC 3261 §25.1) becomes `%HH`, `%` included, so a
/// decoded number can never inject a space, a CRLF or a `@`.
pub fn escape_user(user: &[u8]) -> String {
    let mut out = String::with_capacity(user.len());
    for &c in user {
        if c != b'%' && is_user_char(c) {
            out.push(char::from(c));
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%HH` escapes once. Borrows when there is nothing to decode;
/// a `%` not followed by two hex digits is kept as written.
pub fn unescape(s: &[u8]) -> Cow<'_, [u8]> {
    if !s.contains(&b'%') {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if let (Some(a), Some(b)) = (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            ) {
                out.push(a << 4 | b);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri<'_> {
        match Uri::parse(s.as_bytes()).unwrap() {
            Uri::Sip(u) => u,
            other => panic!("not sip: {other:?}"),
        }
    }

    /// The plain parser this module had before its one-scan version: each
    /// part split off with `position` and checked on its own.
    mod reference {
        use super::super::*;

        fn ipv4(h: &[u8]) -> Option<Ipv4Addr> {
            let mut octets = [0u8; 4];
            let mut parts = h.split(|&c| c == b'.');
            for o in &mut octets {
                let p = parts.next()?;
                if p.is_empty() || p.len() > 3 || (p.len() > 1 && p[0] == b'0') {
                    return None;
                }
                let v = p.iter().fold(0u16, |a, &c| a * 10 + u16::from(c - b'0'));
                *o = u8::try_from(v).ok()?;
            }
            parts.next().is_none().then_some(Ipv4Addr::from(octets))
        }

        pub fn parse(s: &[u8]) -> Result<Uri<'_>, UriError> {
            let colon = s.iter().position(|&c| c == b':').ok_or(UriError::Scheme)?;
            let (scheme, rest) = (&s[..colon], &s[colon + 1..]);
            if !scheme.eq_ignore_ascii_case(b"sip") || s.len() > MAX_URI_LEN {
                return Uri::parse(s); // only `sip:` is compared
            }
            let (user, password, hostpart) = match rest.iter().position(|&c| c == b'@') {
                Some(at) => {
                    let info = &rest[..at];
                    let (u, p) = match info.iter().position(|&c| c == b':') {
                        Some(i) => (&info[..i], Some(&info[i + 1..])),
                        None => (info, None),
                    };
                    if u.is_empty() || !valid_escaped(u, is_user_char) {
                        return Err(UriError::User);
                    }
                    if p.is_some_and(|p| !valid_escaped(p, is_password_char)) {
                        return Err(UriError::User);
                    }
                    (Some(u), p, &rest[at + 1..])
                }
                None => (None, None, rest),
            };
            let (before_q, headers) = match hostpart.iter().position(|&c| c == b'?') {
                Some(q) => (&hostpart[..q], Some(&hostpart[q + 1..])),
                None => (hostpart, None),
            };
            let (hostport, params) = match before_q.iter().position(|&c| c == b';') {
                Some(i) => (&before_q[..i], Params(&before_q[i + 1..])),
                None => (before_q, Params(b"")),
            };
            let (h, port) = match hostport.iter().position(|&c| c == b':') {
                Some(i) if hostport.first() != Some(&b'[') => (
                    &hostport[..i],
                    Some(parse_u16(&hostport[i + 1..]).ok_or(UriError::Port)?),
                ),
                _ => (hostport, None),
            };
            let (host, port) = if h.first() == Some(&b'[') {
                parse_hostport(h)?
            } else {
                if h.is_empty() || !h.iter().all(|&c| CLASS[usize::from(c)] & HOST != 0) {
                    return Err(UriError::Host);
                }
                let numeric = h.iter().all(|&c| c.is_ascii_digit() || c == b'.');
                let host = if h[h.len() - 1].is_ascii_digit() && numeric {
                    Host::V4(ipv4(h).ok_or(UriError::Host)?)
                } else {
                    Host::Domain(h)
                };
                (host, port)
            };
            for part in params
                .0
                .split(|&c| c == b';')
                .filter(|_| !params.0.is_empty())
            {
                let (name, value) = match part.iter().position(|&c| c == b'=') {
                    Some(i) => (&part[..i], Some(&part[i + 1..])),
                    None => (part, None),
                };
                let pc = |s: &[u8]| {
                    !s.is_empty()
                        && s.iter().all(|&c| {
                            c.is_ascii_alphanumeric() || b"[]/:&+$-_.!~*'()%".contains(&c)
                        })
                };
                if !pc(name) || value.is_some_and(|v| !pc(v)) {
                    return Err(UriError::Params);
                }
            }
            if let Some(h) = headers {
                if h.is_empty()
                    || !valid_escaped(h, |c| {
                        is_user_char(c) || c == b'[' || c == b']' || c == b':' || c == b'@'
                    })
                {
                    return Err(UriError::Params);
                }
            }
            Ok(Uri::Sip(SipUri {
                secure: false,
                user,
                password,
                host,
                port,
                params,
                headers,
            }))
        }
    }

    #[test]
    fn the_one_scan_parser_agrees_with_the_plain_one() {
        // Random strings over the bytes that matter to the grammar, and
        // mutations of real URIs.
        const ALPHABET: &[u8] = b"sip:@;?=%[]:.-_aZ09+/&$,!~*'()\" <>\r\x00\xff#3Af";
        let seeds: [&[u8]; 6] = [
            b"sip:alice:pw@[2001:db8::10]:5070;transport=tcp;lr?Subject=x",
            b"sip:+34944000200@127.0.0.1:5060;user=phone",
            b"sip:user;par=u%40example.net@example.com",
            b"sip:192.0.2.4",
            b"sip:branch@127.0.0.1:5070;tfo=YWJj;tfn=ZGVm;tcs=8.0;tpa;tfd",
            b"sip:%61lice@a.example.com?h=%20&x=y",
        ];
        let mut next = crate::sip::test_rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..200_000 {
            let mut s: Vec<u8> = if round % 2 == 0 {
                let mut v = b"sip:".to_vec();
                for _ in 0..next(24) {
                    v.push(ALPHABET[next(ALPHABET.len())]);
                }
                v
            } else {
                let mut v = seeds[next(seeds.len())].to_vec();
                for _ in 0..1 + next(3) {
                    let i = 4 + next(v.len() - 4);
                    match next(3) {
                        0 => v[i] = ALPHABET[next(ALPHABET.len())],
                        1 => v.insert(i, ALPHABET[next(ALPHABET.len())]),
                        _ => {
                            v.remove(i);
                        }
                    }
                    if v.len() <= 4 {
                        break;
                    }
                }
                v
            };
            s.truncate(MAX_URI_LEN);
            let parsed = Uri::parse(&s);
            assert_eq!(
                parsed,
                reference::parse(&s),
                "{}",
                String::from_utf8_lossy(&s)
            );
            // What validation accepted, `decode` reads the same way.
            if parsed.is_ok() {
                assert_eq!(Uri::decode(&s), parsed, "{}", String::from_utf8_lossy(&s));
            }
        }
    }

    #[test]
    fn decodes_parts() {
        let u = sip("sip:alice:pw@[2001:db8::10]:5070;transport=tcp;lr?Subject=x");
        assert_eq!(u.user, Some(&b"alice"[..]));
        assert_eq!(u.password, Some(&b"pw"[..]));
        assert_eq!(u.host, Host::V6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.params.get(b"transport"), Some(Some(&b"tcp"[..])));
        assert!(u.params.has(b"lr"));
        assert_eq!(u.headers, Some(&b"Subject=x"[..]));
        let u = sip("sips:192.0.2.4");
        assert!(u.secure);
        assert_eq!(u.host, Host::V4(Ipv4Addr::new(192, 0, 2, 4)));
    }

    #[test]
    fn escapes_decode_once_and_keep_nul() {
        let u = sip("sip:sips%3Auser%40example.com@example.net");
        assert_eq!(&*u.user_unescaped().unwrap(), b"sips:user@example.com");
        assert_eq!(&*unescape(b"value%2541"), b"value%41");
        assert_eq!(&*unescape(b"null-%00-null"), b"null-\0-null");
    }

    #[test]
    fn escaping_round_trips_and_neutralises() {
        for raw in [
            &b"+34944000100"[..],
            b"9 x",
            b"a\r\nVia: x",
            b"user@host",
            b"100%",
            b"null-\0",
        ] {
            let e = escape_user(raw);
            assert!(e.bytes().all(|c| c > b' ' && c != b'@'), "{e}");
            assert_eq!(&*unescape(e.as_bytes()), raw);
            assert!(Uri::parse(format!("sip:{e}@h").as_bytes()).is_ok(), "{e}");
        }
    }

    #[test]
    fn semicolons_belong_to_the_user_before_at() {
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host, Host::Domain(b"example.com"));
    }

    #[test]
    fn other_schemes_are_opaque_and_bad_ones_rejected() {
        assert!(matches!(
            Uri::parse(b"nobodyKnowsThisScheme:totallyopaquecontent"),
            Ok(Uri::Other { .. })
        ));
        assert!(matches!(
            Uri::parse(b"tel:+1-201-555-0123"),
            Ok(Uri::Tel(_))
        ));
        for bad in [
            "<sip:a@b>",
            "sip:",
            "sip:a@",
            "sip:a@b:99999",
            "sip:a b@c",
            "sip:%zz@h",
            "sip:h;;x",
            "1sip:x",
        ] {
            assert!(Uri::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
