//! Typed views of single header values: Via, CSeq, Max-Forwards, Expires,
//! Call-ID, Content-Type, option-tag lists, and the parameters of the
//! authentication headers. Each decoder borrows the value span and
//! allocates nothing.

use super::method::Method;
use super::params::{unquote, Params};
use super::scan::{self, find_unquoted, is_lws, is_token, parse_u32, quoted_end, trim, trim_start};
use super::uri::{parse_hostport, Host};

/// One Via value.
///
/// ```text
/// via-parm      = sent-protocol LWS sent-by *( SEMI via-params )
/// sent-protocol = protocol-name SLASH protocol-version SLASH transport
/// sent-by       = host [ COLON port ]
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// `SIP`.
    pub protocol: &'a [u8],
    /// `2.0`.
    pub version: &'a [u8],
    /// `UDP`, `TCP`, `TLS`, `SCTP`, `WS`, or any other token.
    pub transport: &'a [u8],
    /// The sent-by host.
    pub host: Host<'a>,
    /// The sent-by host as written.
    pub host_text: &'a [u8],
    /// The sent-by port, if written.
    pub port: Option<u16>,
    /// The via-params.
    pub params: Params<'a>,
}

/// Why a Via value did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViaError;

impl<'a> Via<'a> {
    /// This Via as the server that received its request from `source`
    /// must leave it, or `None` when it needs no change:
    ///
    /// - RFC 3261 §18.2.1: `received=` the packet's source address when the
    ///   sent-by host is a name or another address;
    /// - RFC 3581 §4: with `rport`, `received=` in any case and `rport=` the
    ///   packet's source port.
    ///
    /// Values already there (a sender may write its own) are replaced.
    pub fn stamped(&self, source: std::net::SocketAddr) -> Option<Vec<u8>> {
        let rport = self.params.has(b"rport");
        if !rport && self.host.ip() == Some(source.ip()) {
            return None;
        }
        let mut out = Vec::with_capacity(self.host_text.len() + self.params.0.len() + 64);
        for part in [
            self.protocol,
            b"/",
            self.version,
            b"/",
            self.transport,
            b" ",
        ] {
            out.extend_from_slice(part);
        }
        out.extend_from_slice(self.host_text);
        if let Some(port) = self.port {
            out.push(b':');
            out.extend_from_slice(scan::itoa(u64::from(port)).as_str().as_bytes());
        }
        for (name, value) in self.params.iter() {
            if name.eq_ignore_ascii_case(b"received") || name.eq_ignore_ascii_case(b"rport") {
                continue;
            }
            out.push(b';');
            out.extend_from_slice(name);
            if let Some(v) = value {
                out.push(b'=');
                out.extend_from_slice(v);
            }
        }
        out.extend_from_slice(b";received=");
        match source.ip() {
            std::net::IpAddr::V4(ip) => {
                for (i, o) in ip.octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    out.extend_from_slice(scan::itoa(u64::from(o)).as_str().as_bytes());
                }
            }
            std::net::IpAddr::V6(ip) => out.extend_from_slice(ip.to_string().as_bytes()),
        }
        if rport {
            out.extend_from_slice(b";rport=");
            out.extend_from_slice(scan::itoa(u64::from(source.port())).as_str().as_bytes());
        }
        Some(out)
    }

    /// Decodes one Via value (one comma-separated element).
    pub fn parse(v: &'a [u8]) -> Result<Via<'a>, ViaError> {
        match Self::parse_plain(v) {
            Some(via) => Ok(via),
            None => Self::parse_general(v),
        }
    }

    /// Any spelling the grammar allows: whitespace around `/`, `:` and
    /// `;`, folded lines.
    fn parse_general(v: &'a [u8]) -> Result<Via<'a>, ViaError> {
        let v = trim(v);
        let (protocol, rest) = split_slash(v)?;
        let (version, rest) = split_slash(rest)?;
        let rest = trim_start(rest);
        let t_len = rest.iter().take_while(|&&c| is_token(c)).count();
        let (transport, rest) = rest.split_at(t_len);
        if transport.is_empty() || rest.first().is_some_and(|&c| !is_lws(c)) {
            return Err(ViaError);
        }
        let rest = trim_start(rest);
        let (sent_by, params) = match find_unquoted(rest, b';').map_err(|_| ViaError)? {
            Some(i) => (trim(&rest[..i]), Params(&rest[i + 1..])),
            None => (trim(rest), Params(b"")),
        };
        if !scan::is_token_str(protocol) || !scan::is_token_str(version) {
            return Err(ViaError);
        }
        // COLON = SWS ":" SWS: tolerate whitespace around the port colon.
        let (host, port, host_text) = if sent_by.iter().any(|&c| is_lws(c)) {
            let c = sent_by.iter().rposition(|&c| c == b':').ok_or(ViaError)?;
            let h = trim(&sent_by[..c]);
            let p = scan::parse_u16(trim(&sent_by[c + 1..])).ok_or(ViaError)?;
            let (host, _) = parse_hostport(h).map_err(|_| ViaError)?;
            (host, Some(p), h)
        } else {
            let (host, port) = parse_hostport(sent_by).map_err(|_| ViaError)?;
            let text = match sent_by.iter().rposition(|&c| c == b':') {
                Some(i) if port.is_some() => &sent_by[..i],
                _ => sent_by,
            };
            (host, port, text)
        };
        Ok(Via {
            protocol,
            version,
            transport,
            host,
            host_text,
            port,
            params,
        })
    }

    /// The common spelling, `SIP/2.0/UDP host[:port][;params]` with one
    /// space and no other whitespace, quotes or brackets before the
    /// parameters, decoded in one pass; `None` sends anything else (or
    /// anything wrong) to the general parser, which gives the same result
    /// for what this accepts.
    fn parse_plain(v: &'a [u8]) -> Option<Via<'a>> {
        let rest = v.strip_prefix(b"SIP/2.0/")?;
        let sp = memchr::memchr(b' ', rest)?;
        let transport = &rest[..sp];
        if transport.is_empty() || !transport.iter().all(|&c| is_token(c)) {
            return None;
        }
        let rest = &rest[sp + 1..];
        if v.last().is_some_and(|&c| is_lws(c)) {
            return None;
        }
        let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
        let sent_by = &rest[..end];
        if sent_by.iter().any(|&c| is_lws(c) || c == b'"' || c == b'<') {
            return None;
        }
        let (host, port) = parse_hostport(sent_by).ok()?;
        let host_text = match memchr::memrchr(b':', sent_by) {
            Some(i) if port.is_some() => &sent_by[..i],
            _ => sent_by,
        };
        Some(Via {
            protocol: &v[..3],
            version: &v[4..7],
            transport,
            host,
            host_text,
            port,
            params: Params(rest.get(end + 1..).unwrap_or(b"")),
        })
    }

    /// Decodes a Via value and checks its parameter list (what validation
    /// uses; [`Via::parse`] leaves the parameters undecoded).
    pub fn parse_strict(v: &'a [u8]) -> Result<Via<'a>, ViaError> {
        let via = Self::parse(v)?;
        via.params.check_generic().map_err(|_| ViaError)?;
        Ok(via)
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.params.get(b"branch").flatten()
    }

    /// The `received` parameter.
    pub fn received(&self) -> Option<&'a [u8]> {
        self.params.get(b"received").flatten()
    }

    /// The `rport` parameter: `None` if absent, `Some(None)` if present
    /// without a value (a request asking for it, RFC 3581), `Some(Some(p))`
    /// once filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get(b"rport")
            .map(|v| v.and_then(scan::parse_u16))
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.params.get(b"maddr").flatten()
    }

    /// Whether the branch carries the RFC 3261 magic cookie.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(b"z9hG4bK"))
    }
}

/// `token SWS "/" SWS rest`.
fn split_slash(v: &[u8]) -> Result<(&[u8], &[u8]), ViaError> {
    let i = v.iter().position(|&c| c == b'/').ok_or(ViaError)?;
    Ok((trim(&v[..i]), trim_start(&v[i + 1..])))
}

/// `CSeq = 1*DIGIT LWS Method`, the number at most 2^32 − 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number.
    pub seq: u32,
    /// The method.
    pub method: Method<'a>,
}

impl<'a> CSeq<'a> {
    /// Decodes a CSeq value; `None` if malformed or the number overflows
    /// (RFC 4475 `scalar02`, `scalarlg`).
    pub fn parse(v: &'a [u8]) -> Option<CSeq<'a>> {
        let v = trim(v);
        let n = v.iter().take_while(|c| c.is_ascii_digit()).count();
        let seq = parse_u32(&v[..n])?;
        let rest = &v[n..];
        if !rest.first().is_some_and(|&c| is_lws(c)) {
            return None;
        }
        let method = trim_start(rest);
        scan::is_token_str(method).then_some(CSeq {
            seq,
            method: Method::new(method),
        })
    }
}

/// Decodes Max-Forwards (`1*DIGIT`). Values above 255 are clamped to 255
/// rather than rejected (RFC 4475 `scalar02`: an overlarge Max-Forwards may
/// be treated as the maximum), but a value that is not a number is `None`.
pub fn parse_max_forwards(v: &[u8]) -> Option<u8> {
    let v = trim(v);
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(parse_u32(v).map_or(255, |n| n.min(255) as u8))
}

/// Decodes an Expires header (`delta-seconds`), saturating at `u32::MAX`.
pub fn parse_expires(v: &[u8]) -> Option<u32> {
    super::addr::parse_delta(trim(v))
}

/// Checks a Call-ID: `word [ "@" word ]`, where `word` is a wide set of
/// printable characters (RFC 4475 `intmeth`); any visible ASCII without
/// whitespace is accepted.
pub fn is_valid_call_id(v: &[u8]) -> bool {
    !v.is_empty() && v.iter().all(|&c| c > b' ' && c < 0x7f)
}

/// `Content-Type = m-type SLASH m-subtype *(SEMI m-parameter)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentType<'a> {
    /// `application`.
    pub mtype: &'a [u8],
    /// `sdp`.
    pub subtype: &'a [u8],
    /// Media type parameters.
    pub params: Params<'a>,
}

impl<'a> ContentType<'a> {
    /// Decodes a Content-Type value.
    pub fn parse(v: &'a [u8]) -> Option<ContentType<'a>> {
        let v = trim(v);
        let (media, params) = match find_unquoted(v, b';').ok()? {
            Some(i) => (&v[..i], Params(&v[i + 1..])),
            None => (v, Params(b"")),
        };
        let slash = media.iter().position(|&c| c == b'/')?;
        let mtype = trim(&media[..slash]);
        let subtype = trim(&media[slash + 1..]);
        (scan::is_token_str(mtype) && scan::is_token_str(subtype) && params.check_generic().is_ok())
            .then_some(ContentType {
                mtype,
                subtype,
                params,
            })
    }

    /// Whether this is `type/subtype`, case-insensitively.
    pub fn is(&self, mtype: &str, subtype: &str) -> bool {
        self.mtype.eq_ignore_ascii_case(mtype.as_bytes())
            && self.subtype.eq_ignore_ascii_case(subtype.as_bytes())
    }
}

/// The option tags of a Require, Proxy-Require, Supported or Unsupported
/// value; empty elements are skipped, non-tokens are yielded so the caller
/// can reject them.
pub fn option_tags(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&c| c == b',').map(trim).filter(|t| !t.is_empty())
}

/// The parameters of an Authorization, Proxy-Authorization,
/// WWW-Authenticate or Proxy-Authenticate value.
///
/// ```text
/// credentials = ("Digest" LWS digest-response) / other-response
/// auth-param  = auth-param-name EQUAL ( token / quoted-string )
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthValue<'a> {
    /// `Digest`, or any other scheme (RFC 4475 `regaut01`).
    pub scheme: &'a [u8],
    /// The comma-separated parameters after the scheme.
    pub params: &'a [u8],
}

/// Why an authentication header did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthError;

impl<'a> AuthValue<'a> {
    /// Splits the scheme from the parameter list and checks the list.
    pub fn parse(v: &'a [u8]) -> Result<AuthValue<'a>, AuthError> {
        let v = trim(v);
        let n = v.iter().take_while(|&&c| is_token(c)).count();
        if n == 0 || v.get(n).is_some_and(|&c| !is_lws(c)) {
            return Err(AuthError);
        }
        let a = AuthValue {
            scheme: &v[..n],
            params: trim_start(&v[n..]),
        };
        for p in a.iter() {
            p?;
        }
        Ok(a)
    }

    /// Whether the scheme is `Digest`.
    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case(b"Digest")
    }

    /// The parameters as `(name, value)` with quotes removed from quoted
    /// values (escapes kept).
    pub fn iter(&self) -> impl Iterator<Item = Result<(&'a [u8], &'a [u8]), AuthError>> {
        let mut rest = if self.params.is_empty() {
            None
        } else {
            Some(self.params)
        };
        std::iter::from_fn(move || {
            let r = rest?;
            let (item, next) = match find_unquoted(r, b',') {
                Ok(Some(i)) => (&r[..i], Some(&r[i + 1..])),
                Ok(None) => (r, None),
                Err(_) => {
                    rest = None;
                    return Some(Err(AuthError));
                }
            };
            rest = next;
            Some(auth_param(item))
        })
    }

    /// The value of parameter `name` (case-insensitive), unquoted.
    pub fn get(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.iter()
            .filter_map(Result::ok)
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

fn auth_param(item: &[u8]) -> Result<(&[u8], &[u8]), AuthError> {
    let item = trim(item);
    let eq = item.iter().position(|&c| c == b'=').ok_or(AuthError)?;
    let name = trim(&item[..eq]);
    let value = trim(&item[eq + 1..]);
    if !scan::is_token_str(name) || value.is_empty() {
        return Err(AuthError);
    }
    if value[0] == b'"' {
        if quoted_end(value) != Some(value.len()) {
            return Err(AuthError);
        }
    } else if !value.iter().all(|&c| is_token(c) || c == b'/' || c == b':') {
        return Err(AuthError);
    }
    Ok((name, unquote(value)))
}

/// `unix` (seconds since 1970, UTC) as a Date header writes it (RFC 3261
/// §20.17, the RFC 1123 form, always GMT): `Sat, 13 Nov 2010 23:29:00 GMT`.
pub fn sip_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // The civil date of a day count (Howard Hinnant's days_from_civil,
    // inverted), in eras of 400 years from 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    // Written by hand: this is on every REGISTER's 200.
    let two = |out: &mut String, n: u64| {
        out.push(char::from(b'0' + (n / 10 % 10) as u8));
        out.push(char::from(b'0' + (n % 10) as u8));
    };
    let mut out = String::with_capacity(29);
    out.push_str(DAYS[(days % 7) as usize]);
    out.push_str(", ");
    two(&mut out, day);
    out.push(' ');
    out.push_str(MONTHS[(month - 1) as usize]);
    out.push(' ');
    out.push_str(scan::itoa(year).as_str());
    out.push(' ');
    two(&mut out, secs / 3600);
    out.push(':');
    two(&mut out, secs / 60 % 60);
    out.push(':');
    two(&mut out, secs % 60);
    out.push_str(" GMT");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_via_is_stamped_with_received_and_rport_where_the_rfcs_ask() {
        let stamp = |v: &str, src: &str| {
            let via = Via::parse(v.as_bytes()).unwrap();
            via.stamped(src.parse().unwrap())
                .map(|s| String::from_utf8(s).unwrap())
        };
        // Same address, no rport: nothing to add.
        assert_eq!(
            stamp(
                "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1",
                "192.0.2.1:5060"
            ),
            None
        );
        // Another address, or a name: received (RFC 3261 §18.2.1).
        assert_eq!(
            stamp(
                "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1",
                "192.0.2.1:40000"
            )
            .as_deref(),
            Some("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;received=192.0.2.1")
        );
        assert_eq!(
            stamp(
                "SIP/2.0/TCP pc.example.com;branch=z9hG4bK1",
                "192.0.2.1:40000"
            )
            .as_deref(),
            Some("SIP/2.0/TCP pc.example.com;branch=z9hG4bK1;received=192.0.2.1")
        );
        // rport: both, even from the address the Via names (RFC 3581 §4);
        // a sender's own values are replaced, other parameters kept.
        assert_eq!(
            stamp("SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK1;x=\"a;b\"", "192.0.2.1:40000")
                .as_deref(),
            Some("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;x=\"a;b\";received=192.0.2.1;rport=40000")
        );
        assert_eq!(
            stamp(
                "SIP/2.0/UDP 10.0.0.5;received=6.6.6.6;rport=1;branch=z9hG4bK1",
                "192.0.2.1:40000"
            )
            .as_deref(),
            Some("SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1;received=192.0.2.1;rport=40000")
        );
        assert_eq!(
            stamp(
                "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;rport",
                "[2001:db8::2]:7000"
            )
            .as_deref(),
            Some("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;received=2001:db8::2;rport=7000")
        );
        // What is written parses again.
        let v = stamp("SIP/2.0/UDP h.example;rport;branch=z9hG4bK1", "192.0.2.1:1").unwrap();
        let via = Via::parse(v.as_bytes()).unwrap();
        assert_eq!(via.params.get(b"rport"), Some(Some(&b"1"[..])));
    }

    #[test]
    fn the_plain_via_parser_agrees_with_the_general_one() {
        const ALPHABET: &[u8] = b"SIP/2.0UDPTCP:;=.-_[]a1 \t\"<>,%";
        let seeds: [&[u8]; 5] = [
            b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1;rport",
            b"SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bK-2",
            b"SIP/2.0/UDP host.example.com;received=192.0.2.1",
            b"SIP/2.0/UDP 192.0.2.2;branch=\"a;b\"",
            b"SIP/2.0/UDP h:99999",
        ];
        let mut next = crate::sip::test_rng(0x2545_f491_4f6c_dd1d);
        let mut plain = 0;
        for _ in 0..100_000 {
            let mut v = seeds[next(seeds.len())].to_vec();
            for _ in 0..next(3) {
                let i = next(v.len() + 1);
                match next(3) {
                    0 if i < v.len() => v[i] = ALPHABET[next(ALPHABET.len())],
                    1 => v.insert(i, ALPHABET[next(ALPHABET.len())]),
                    _ if i < v.len() => {
                        v.remove(i);
                    }
                    _ => {}
                }
            }
            if let Some(p) = Via::parse_plain(&v) {
                plain += 1;
                assert_eq!(
                    Ok(p),
                    Via::parse_general(&v),
                    "{}",
                    String::from_utf8_lossy(&v)
                );
            }
        }
        assert!(plain > 10_000, "the plain path was taken {plain} times");
    }

    #[test]
    fn via_with_folding_and_spaces() {
        let v = Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, Host::V4("192.0.2.2".parse().unwrap()));
        assert_eq!(v.branch(), Some(&b"390skdjuw"[..]));
        assert!(!v.has_rfc3261_branch());
        let v = Via::parse(
            b"SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8",
        )
        .unwrap();
        assert_eq!(v.host_text, b"spindle.example.com");
        assert_eq!(v.branch(), Some(&b"z9hG4bK9ikj8"[..]));
        let v = Via::parse(b"SIP/2.0/UDP [2001:db8::9:1]:5070;rport;received=192.0.2.1").unwrap();
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some(&b"192.0.2.1"[..]));
        let v = Via::parse(b"SIP/2.0/UDP host.example.com : 5061 ;rport=1234").unwrap();
        assert_eq!((v.port, v.rport()), (Some(5061), Some(Some(1234))));
    }

    #[test]
    fn via_rejects_garbage() {
        for bad in [
            &b"SIP/2.0/UDP 192.0.2.15;;"[..],
            b"SIP/2.0/UDP",
            b"SIP/2.0 host",
            b"SIP/2.0/UDP host:port",
            b"",
        ] {
            assert!(
                Via::parse_strict(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn cseq_and_scalars() {
        let c = CSeq::parse(b"0009\r\n  INVITE").unwrap();
        assert_eq!((c.seq, c.method), (9, Method::INVITE));
        assert!(CSeq::parse(b"36893488147419103232 REGISTER").is_none());
        assert!(CSeq::parse(b"1INVITE").is_none());
        assert_eq!(parse_max_forwards(b"0068"), Some(68));
        assert_eq!(parse_max_forwards(b"300"), Some(255));
        assert_eq!(parse_max_forwards(b"-1"), None);
        assert_eq!(parse_expires(b"1000000000000000000000"), Some(u32::MAX));
    }

    #[test]
    fn auth_params() {
        let a = AuthValue::parse(b"Digest username=\"alice\", realm=\"a.example.com\",\r\n nonce=\"x,y\", qop=auth, nc=00000001").unwrap();
        assert!(a.is_digest());
        assert_eq!(a.get(b"USERNAME"), Some(&b"alice"[..]));
        assert_eq!(a.get(b"nonce"), Some(&b"x,y"[..]));
        assert_eq!(a.get(b"nc"), Some(&b"00000001"[..]));
        let a = AuthValue::parse(b"NoOneKnowsThisScheme opaque-data=here").unwrap();
        assert!(!a.is_digest());
        assert!(AuthValue::parse(b"Digest username=\"open").is_err());
        assert!(AuthValue::parse(b"Digest ,,").is_err());
    }

    #[test]
    fn content_type() {
        let c = ContentType::parse(
            b"multipart/signed;protocol=\"application/pkcs7-signature\"; micalg=sha1",
        )
        .unwrap();
        assert!(c.is("Multipart", "SIGNED"));
        assert!(ContentType::parse(b"application").is_none());
    }

    #[test]
    fn dates_are_written_in_the_rfc_1123_form() {
        assert_eq!(sip_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        // RFC 3261 §20.17's example.
        assert_eq!(sip_date(1_289_690_940), "Sat, 13 Nov 2010 23:29:00 GMT");
        assert_eq!(sip_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(sip_date(1_795_737_599), "Thu, 26 Nov 2026 23:59:59 GMT");
    }
}
