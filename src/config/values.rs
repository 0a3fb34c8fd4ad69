//! Syntax of the configuration's string values: addresses, networks,
//! numbers, names, codecs and regexes.
//!
//! These are shared by validation (which reports errors) and by the route
//! compiler (which parses values that validation already accepted).

use std::net::{IpAddr, SocketAddr};

/// Digest algorithms the switch implements (DOMAIN.md §6).
pub const DIGEST_ALGORITHMS: &[&str] = &["SHA-256", "MD5"];

/// SDP encoding names (RFC 3551 and the IANA "RTP Payload Format media
/// types" registry) accepted in `allowed_codecs`, compared case-insensitively.
pub const CODECS: &[&str] = &[
    "PCMU",
    "PCMA",
    "G722",
    "G723",
    "G728",
    "G729",
    "G729D",
    "G729E",
    "G726-16",
    "G726-24",
    "G726-32",
    "G726-40",
    "G7221",
    "G719",
    "GSM",
    "GSM-EFR",
    "GSM-HR-08",
    "iLBC",
    "opus",
    "speex",
    "AMR",
    "AMR-WB",
    "EVS",
    "SILK",
    "iSAC",
    "DVI4",
    "L8",
    "L16",
    "LPC",
    "QCELP",
    "MPA",
    "CN",
    "red",
    "telephone-event",
    "t140",
    "H261",
    "H263",
    "H263-1998",
    "H263-2000",
    "H264",
    "H265",
    "VP8",
    "VP9",
    "AV1",
    "MP4V-ES",
    "JPEG",
];

/// A SIP transport named in an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// Parses a listen address `udp:IP:PORT` or `tcp:IP:PORT` (IPv6 as `[::1]`).
pub fn parse_listen(s: &str) -> Result<(Proto, SocketAddr), String> {
    let (proto, rest) = split_proto(s)?;
    let addr: SocketAddr = rest
        .parse()
        .map_err(|_| format!("{s:?}: expected udp:IP:PORT or tcp:IP:PORT"))?;
    if addr.port() == 0 {
        return Err(format!("{s:?}: port 0"));
    }
    Ok((proto, addr))
}

/// Parses a carrier address `udp:IP:PORT` or `tcp:IP:PORT` (IPv6 in
/// brackets). A DNS name is refused with a message saying so: the switch
/// resolves no names (none on its call path, none at load), so a name
/// would only fail each call.
pub fn parse_address(s: &str) -> Result<(Proto, String, u16), String> {
    let bad = || format!("{s:?}: expected udp:IP:PORT or tcp:IP:PORT");
    let (proto, rest) = split_proto(s)?;
    if let Ok(addr) = rest.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(format!("{s:?}: port 0"));
        }
        return Ok((proto, addr.ip().to_string(), addr.port()));
    }
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    if literal.parse::<std::net::IpAddr>().is_ok() {
        return Err(if port_ok {
            format!("{s:?}: expected udp:IP:PORT or tcp:IP:PORT (an IPv6 address in brackets, an IPv4 one without)")
        } else {
            format!("{s:?}: the port must be 1 to 65535")
        });
    }
    if is_host(host) && !host.contains(':') {
        return Err(format!("{s:?}: {}", NOT_RESOLVED));
    }
    Err(bad())
}

/// Why a host name is refused where an address is needed.
pub const NOT_RESOLVED: &str =
    "a host name, not an IP address (the switch resolves no names: write the address)";

fn split_proto(s: &str) -> Result<(Proto, &str), String> {
    if let Some(rest) = s.strip_prefix("udp:") {
        Ok((Proto::Udp, rest))
    } else if let Some(rest) = s.strip_prefix("tcp:") {
        Ok((Proto::Tcp, rest))
    } else {
        Err(format!("{s:?}: must start with udp: or tcp:"))
    }
}

/// An IP network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The network address (host bits are zero).
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub len: u8,
}

impl Cidr {
    /// True when `ip` lies in this network (an IPv4 address never lies in
    /// an IPv6 network, except through its IPv4-mapped form).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask32(u32::from(ip), self.len) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask128(u128::from(ip), self.len) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask32(v: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        v & (u32::MAX << (32 - u32::from(len)))
    }
}

fn mask128(v: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        v & (u128::MAX << (128 - u32::from(len)))
    }
}

/// Parses `IP/LEN` (or a bare IP, meaning a single host). Host bits must be
/// zero: `10.0.0.1/24` is refused because it is usually a typo.
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (s, None),
    };
    let addr: IpAddr = ip
        .parse()
        .map_err(|_| format!("{s:?} is not a network (expected IP/LEN)"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("{s:?}: prefix length must be 0 to {max}"))?,
    };
    let net = match addr {
        IpAddr::V4(v4) => IpAddr::V4(mask32(u32::from(v4), len).into()),
        IpAddr::V6(v6) => IpAddr::V6(mask128(u128::from(v6), len).into()),
    };
    if net != addr {
        return Err(format!(
            "{s:?} has host bits set (did you mean {net}/{len}?)"
        ));
    }
    Ok(Cidr { addr, len })
}

/// True for an E.164 number: `+` and 8 to 15 digits.
pub fn is_e164(s: &str) -> bool {
    s.strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// True for an extension: 1 to 15 characters of `0-9 * #`.
pub fn is_extension(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
}

/// True for a name usable as a digest username and in error places:
/// letters, digits, `.`, `_`, `-`.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// True for an IP address or a DNS host name.
pub fn is_host(s: &str) -> bool {
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// True for a known SDP encoding name (case-insensitive).
pub fn is_codec(s: &str) -> bool {
    CODECS.iter().any(|c| c.eq_ignore_ascii_case(s))
}

/// The regex dialect of patterns and ACL rules: ASCII classes (`\d` is
/// `[0-9]`, `.` is any byte but `\n`), because dialled numbers are ASCII and
/// Unicode classes would multiply DFA sizes for nothing.
pub fn regex_syntax() -> regex_automata::util::syntax::Config {
    regex_automata::util::syntax::Config::new()
        .unicode(false)
        .utf8(false)
}

/// A pattern of the common shape `LITERAL TAIL`: a literal of digits, `#`
/// and `\+`, then digits only (`[0-9]` or `\d` items, each optionally
/// repeated), e.g. `\+34944[0-9]{6}`, `2\d\d\d`, `0034[0-9]+`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimplePattern {
    /// The literal the input must start with.
    pub literal: Vec<u8>,
    /// Fewest digits after the literal.
    pub min: u32,
    /// Most digits after the literal (`None`: unbounded).
    pub max: Option<u32>,
}

/// Recognises a [`SimplePattern`] with a strict hand-written grammar, so
/// the common case needs neither the regex parser nor a DFA (see
/// `route::matcher`). Anything outside the grammar returns `None` and goes
/// through the full regex engine, which gives the same whole-string
/// meaning. Every string accepted here is also a valid regex.
pub fn simple_pattern(pattern: &str) -> Option<SimplePattern> {
    let b = pattern.as_bytes();
    let mut i = 0;
    let mut literal = Vec::new();
    loop {
        match b.get(i) {
            Some(&c @ (b'0'..=b'9' | b'#')) => {
                literal.push(c);
                i += 1;
            }
            Some(b'\\') if b.get(i + 1) == Some(&b'+') => {
                literal.push(b'+');
                i += 2;
            }
            _ => break,
        }
    }
    let (mut min, mut max) = (0u32, Some(0u32));
    while i < b.len() {
        if b[i..].starts_with(b"[0-9]") {
            i += 5;
        } else if b[i..].starts_with(b"\\d") {
            i += 2;
        } else {
            return None;
        }
        let (lo, hi) = quantifier(b, &mut i)?;
        min = min.checked_add(lo)?;
        max = match (max, hi) {
            (Some(a), Some(b)) => Some(a.checked_add(b)?),
            _ => None,
        };
    }
    Some(SimplePattern { literal, min, max })
}

/// Parses an optional greedy quantifier at `b[*i..]`: `{n}`, `{n,}`,
/// `{n,m}`, `?`, `*`, `+`. `None` for anything unusual (lazy `??`, n > m,
/// huge counts), which then takes the regex engine's path.
fn quantifier(b: &[u8], i: &mut usize) -> Option<(u32, Option<u32>)> {
    let q = match b.get(*i) {
        Some(b'?') => (0, Some(1)),
        Some(b'*') => (0, None),
        Some(b'+') => (1, None),
        Some(b'{') => {
            let close = b[*i..].iter().position(|&c| c == b'}')? + *i;
            let body = std::str::from_utf8(&b[*i + 1..close]).ok()?;
            let num = |s: &str| -> Option<u32> {
                (!s.is_empty() && s.len() <= 3 && s.bytes().all(|c| c.is_ascii_digit()))
                    .then(|| s.parse().ok())?
            };
            let q = match body.split_once(',') {
                None => (num(body)?, Some(num(body)?)),
                Some((lo, "")) => (num(lo)?, None),
                Some((lo, hi)) => (num(lo)?, Some(num(hi)?)),
            };
            if q.1.is_some_and(|hi| hi < q.0) {
                return None;
            }
            *i = close;
            q
        }
        _ => return Some((1, Some(1))),
    };
    *i += 1;
    if matches!(b.get(*i), Some(b'?' | b'+' | b'*' | b'{')) {
        return None;
    }
    Some(q)
}

/// Parses `pattern` in the dialect of [`regex_syntax()`]; the error is the
/// engine's message on one line, with the column of the problem.
pub fn check_regex(pattern: &str) -> Result<(), String> {
    if simple_pattern(pattern).is_some() {
        return Ok(());
    }
    let result = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern);
    match result {
        // The patterns are compiled to a DFA, which has no Unicode word
        // boundary (`\b` under `(?u)`): refused here, with its place,
        // rather than when the whole set is built.
        Ok(hir) if hir.properties().look_set().contains_word_unicode() => Err(format!(
            "a Unicode word boundary (\\b, \\B under (?u)) cannot be compiled to a DFA; \
             use (?-u:\\b) in {pattern:?}"
        )),
        Ok(_) => Ok(()),
        Err(regex_syntax::Error::Parse(e)) => Err(format!(
            "{} at column {} of {pattern:?}",
            e.kind(),
            e.span().start.column
        )),
        Err(regex_syntax::Error::Translate(e)) => Err(format!(
            "{} at column {} of {pattern:?}",
            e.kind(),
            e.span().start.column
        )),
        Err(e) => Err(e.to_string().replace('\n', " ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_table() {
        for (net, ip, inside) in [
            ("127.0.0.2/32", "127.0.0.2", true),
            ("127.0.0.2/32", "127.0.0.3", false),
            ("10.0.0.0/8", "10.200.1.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("2001:db8::/32", "2001:db8::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("192.0.2.0/24", "::ffff:192.0.2.7", true),
            ("192.0.2.0/24", "2001:db8::1", false),
        ] {
            let cidr = parse_cidr(net).unwrap();
            assert_eq!(cidr.contains(ip.parse().unwrap()), inside, "{net} {ip}");
        }
        for bad in ["10.0.0.1/24", "10.0.0.0/33", "nope/8", "10.0.0.0/x"] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn syntax_table() {
        assert!(is_e164("+34944000100"));
        assert!(!is_e164("34944000100"));
        assert!(!is_e164("+3494"));
        assert!(!is_e164("+1234567890123456"));
        assert!(is_codec("pcma") && is_codec("telephone-event") && !is_codec("mp3"));
        assert!(parse_listen("udp:127.0.0.1:5060").is_ok());
        assert!(parse_listen("tcp:[::1]:5060").is_ok());
        assert!(parse_listen("sctp:127.0.0.1:5060").is_err());
        assert!(parse_listen("udp:127.0.0.1").is_err());
        assert_eq!(
            parse_address("udp:192.0.2.7:5060").unwrap(),
            (Proto::Udp, "192.0.2.7".into(), 5060)
        );
        assert!(parse_address("udp:sip.carrier.example:5060")
            .unwrap_err()
            .contains("resolves no names"));
        for bad_port in ["udp:127.0.0.2:70000", "udp:127.0.0.2:abc", "tcp:[::1]:-1"] {
            assert!(parse_address(bad_port)
                .unwrap_err()
                .contains("port must be"));
        }
        for brackets in ["udp:2001:db8::10:5060", "udp:[127.0.0.2]:5060"] {
            assert!(parse_address(brackets).unwrap_err().contains("in brackets"));
        }
        assert!(parse_address("udp:bad host:5060").is_err());
        assert!(check_regex("2[0-9]{3}").is_ok());
        assert!(check_regex("2[0-9").unwrap_err().contains("column"));
        assert!(check_regex("(?u)2\\b")
            .unwrap_err()
            .contains("Unicode word boundary"));
        assert!(check_regex("(?-u:\\b)2").is_ok());
    }

    #[test]
    fn simple_pattern_table() {
        let s = |lit: &str, min, max| {
            Some(SimplePattern {
                literal: lit.into(),
                min,
                max,
            })
        };
        for (pattern, want) in [
            ("2[0-9]{3}", s("2", 3, Some(3))),
            ("\\+34944[0-9]{6}", s("+34944", 6, Some(6))),
            ("0034[0-9]{9}", s("0034", 9, Some(9))),
            ("2\\d\\d\\d", s("2", 3, Some(3))),
            ("9[0-9]{2,4}[0-9]", s("9", 3, Some(5))),
            ("00[0-9]+", s("00", 1, None)),
            ("1[0-9]*", s("1", 0, None)),
            ("1[0-9]?", s("1", 0, Some(1))),
            ("1[0-9]{2,}", s("1", 2, None)),
            ("#31#", s("#31#", 0, Some(0))),
            ("", s("", 0, Some(0))),
            ("2[0-9]{3}5", None),
            ("2{3}", None),
            ("2[0-9]{3}?", None),
            ("2[0-9]{4,3}", None),
            ("2[0-9]{1000}", None),
            ("[2-9][0-9]{8}", None),
            ("^2[0-9]{3}$", None),
            ("2[0-9", None),
            ("+34", None),
            ("(2|3)[0-9]{3}", None),
        ] {
            assert_eq!(simple_pattern(pattern), want, "{pattern}");
            if want.is_some() {
                // Every simple pattern is also a regex of the same meaning.
                assert!(regex_syntax::ParserBuilder::new()
                    .unicode(false)
                    .utf8(false)
                    .build()
                    .parse(pattern)
                    .is_ok());
            }
        }
    }
}
