//! Validation: classifies a framed message the way a proxy must treat it.
//!
//! A request is accepted, or rejected with the status and a reason phrase
//! that names the problem (`400 Missing Call-ID header`), or with `505`,
//! `416`, `414`, `420` or `483`. A response cannot be answered, so a bad one
//! is dropped. The checks decode every header a proxy relies on, so nothing
//! malformed is forwarded (DOMAIN.md §8).
//!
//! Policy choices where RFC 4475 allows either:
//! - requests without an RFC 3261 branch (RFC 2543 peers, `inv2543`,
//!   `wsinv`) are accepted; a branch that is exactly the magic cookie
//!   (`badbranch`) is rejected, since it claims RFC 3261 matching but
//!   carries no transaction identifier;
//! - a Request-URI carrying `?headers` is rejected (`escruri`), never
//!   forwarded or turned into real headers;
//! - a CSeq method that differs from the request method is `400`, for known
//!   and unknown methods alike (`mismatch01`, `mismatch02`);
//! - the `Date` header is not interpreted (`baddate` is accepted);
//! - a response whose next hop (its second Via) is a broadcast or multicast
//!   address is dropped (`bcast`).

use super::addr::{Contact, NameAddr};
use super::header::HeaderName;
use super::message::Message;
use super::method::Method;
use super::status::StatusCode;
use super::uri::{Host, Uri, UriError};
use super::values::{
    is_valid_call_id, option_tags, parse_expires, parse_max_forwards, AuthValue, CSeq, ContentType,
    Via,
};

/// What a proxy must do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Well-formed: process it.
    Accept,
    /// Answer the request with `status` and `reason` as the reason phrase.
    /// For `420 Bad Extension`, list [`unsupported_proxy_require`] in an
    /// Unsupported header.
    Reject {
        /// The status to send.
        status: StatusCode,
        /// A reason phrase naming the problem.
        reason: &'static str,
    },
    /// Discard silently (a bad response, or nothing to answer).
    Drop {
        /// Why, for the log.
        reason: &'static str,
    },
}

const fn reject(status: StatusCode, reason: &'static str) -> Verdict {
    Verdict::Reject { status, reason }
}

const fn bad(reason: &'static str) -> Verdict {
    reject(StatusCode::BAD_REQUEST, reason)
}

/// Option tags Tandem supports as a proxy in Proxy-Require (none: it is a
/// plain RFC 3261 proxy).
const PROXY_SUPPORTED: &[&[u8]] = &[];

/// The option tags of Proxy-Require that Tandem does not support.
pub fn unsupported_proxy_require(msg: &Message) -> impl Iterator<Item = &[u8]> {
    msg.headers(HeaderName::ProxyRequire)
        .flat_map(option_tags)
        .filter(|t| !PROXY_SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
}

/// What a request's Require names (RFC 3261 §8.2.2.3), comma-separated,
/// for the `Unsupported` of a `420`; `None` when it requires nothing.
/// Where Tandem answers a request itself (REGISTER, OPTIONS to the
/// switch) it supports no extension: every tag is unsupported. A proxied
/// request's Require is the far end's business.
pub fn required_extensions(msg: &Message) -> Option<Vec<u8>> {
    let tags: Vec<&[u8]> = msg
        .headers(HeaderName::Require)
        .flat_map(option_tags)
        .collect();
    (!tags.is_empty()).then(|| tags.join(&b", "[..]))
}

/// Required in every request (RFC 3261 §8.1.1; Max-Forwards is left
/// optional for RFC 2543 peers and added when forwarding).
const REQUIRED: [(HeaderName, &str); 5] = [
    (HeaderName::Via, "Missing Via header"),
    (HeaderName::From, "Missing From header"),
    (HeaderName::To, "Missing To header"),
    (HeaderName::CallId, "Missing Call-ID header"),
    (HeaderName::CSeq, "Missing CSeq header"),
];

/// Classifies `msg` for a proxy.
pub fn validate(msg: &Message) -> Verdict {
    if msg.is_request() {
        validate_request(msg)
    } else {
        validate_response(msg)
    }
}

fn is_sip_version(v: &[u8]) -> Option<bool> {
    // SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT, case-insensitive.
    let rest = v.get(..4)?.eq_ignore_ascii_case(b"SIP/").then(|| &v[4..])?;
    let dot = rest.iter().position(|&c| c == b'.')?;
    let (major, minor) = (&rest[..dot], &rest[dot + 1..]);
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    (digits(major) && digits(minor)).then(|| major == b"2" && minor == b"0")
}

fn validate_request(msg: &Message) -> Verdict {
    match is_sip_version(msg.version()) {
        None => return bad("Malformed SIP-Version"),
        Some(false) => return reject(StatusCode::VERSION_NOT_SUPPORTED, "Version Not Supported"),
        Some(true) => {}
    }
    let vias = match common_headers(msg) {
        Ok(vias) => vias,
        Err(v) => return v,
    };
    let method = msg.method().expect("a request");

    // The Request-URI.
    let uri = match Uri::parse(msg.request_uri().expect("a request")) {
        Ok(u) => u,
        Err(UriError::TooLong) => {
            return reject(StatusCode::REQUEST_URI_TOO_LONG, "Request-URI Too Long")
        }
        Err(_) => return bad("Malformed Request-URI"),
    };

    // The top Via names the transaction.
    if vias.bare_branch {
        return bad("Via branch has no transaction identifier");
    }

    let cseq = CSeq::parse(msg.header(HeaderName::CSeq).expect("checked")).expect("checked");
    if cseq.method != method {
        return bad("CSeq method does not match request method");
    }

    let mut max_forwards = None;
    if let Some(v) = msg.header(HeaderName::MaxForwards) {
        match parse_max_forwards(v) {
            Some(n) => max_forwards = Some(n),
            None => return bad("Malformed Max-Forwards header"),
        }
    }

    for c in msg.values(HeaderName::Contact) {
        match c.map(Contact::parse) {
            Ok(Ok(_)) => {}
            _ => return bad("Malformed Contact header"),
        }
    }
    for (h, reason) in [
        (HeaderName::Route, "Malformed Route header"),
        (HeaderName::RecordRoute, "Malformed Record-Route header"),
        (
            HeaderName::PAssertedIdentity,
            "Malformed P-Asserted-Identity header",
        ),
    ] {
        for v in msg.values(h) {
            match v.map(NameAddr::parse_strict) {
                Ok(Ok(_)) => {}
                _ => return bad(reason),
            }
        }
    }
    for (h, reason) in [
        (HeaderName::Authorization, "Malformed Authorization header"),
        (
            HeaderName::ProxyAuthorization,
            "Malformed Proxy-Authorization header",
        ),
    ] {
        if msg.headers(h).any(|v| AuthValue::parse(v).is_err()) {
            return bad(reason);
        }
    }
    if let Some(v) = msg.header(HeaderName::Expires) {
        if parse_expires(v).is_none() {
            return bad("Malformed Expires header");
        }
    }
    if msg
        .headers(HeaderName::ProxyRequire)
        .flat_map(option_tags)
        .any(|t| !super::scan::is_token_str(t))
    {
        return bad("Malformed Proxy-Require header");
    }

    // Semantic checks, after the syntax is known to be sound.
    if matches!(uri, Uri::Other { .. }) {
        return reject(StatusCode::UNSUPPORTED_URI_SCHEME, "Unsupported URI Scheme");
    }
    if let Uri::Sip(u) = uri {
        if u.headers.is_some() {
            return bad("Request-URI must not carry headers");
        }
    }
    if unsupported_proxy_require(msg).next().is_some() {
        return reject(StatusCode::BAD_EXTENSION, "Bad Extension");
    }
    if max_forwards == Some(0) && method != Method::ACK {
        return reject(StatusCode::TOO_MANY_HOPS, "Too Many Hops");
    }
    Verdict::Accept
}

/// Checks shared by requests and responses: required headers present once,
/// and each of them decodable. Returns the verdict for the first problem.
/// What the checks of the Via headers found out on the way, for the
/// checks that come later (each Via is decoded once).
#[derive(Debug, Default)]
struct ViaFacts {
    /// The top Via's branch is the bare magic cookie.
    bare_branch: bool,
    /// The second Via (a response's next hop) names a broadcast,
    /// multicast or unspecified address.
    next_hop_unsafe: bool,
}

fn common_headers(msg: &Message) -> Result<ViaFacts, Verdict> {
    let request = msg.is_request();
    let fail = |reason| {
        Err(if request {
            bad(reason)
        } else {
            Verdict::Drop { reason }
        })
    };

    for (h, reason) in REQUIRED {
        if msg.header(h).is_none() {
            return fail(reason);
        }
    }
    // A second copy of a single-valued header is ambiguous (RFC 4475
    // `multi01`): which Call-ID or To would a proxy believe?
    let mut seen: u128 = 0;
    for e in msg.head().entries() {
        if e.name.is_single() {
            let bit = 1u128 << (e.name as u8);
            if seen & bit != 0 {
                return fail(duplicate_reason(e.name));
            }
            seen |= bit;
        }
    }
    let mut facts = ViaFacts::default();
    for (i, v) in msg.values(HeaderName::Via).enumerate() {
        let Some(via) = v.ok().and_then(|v| Via::parse_strict(v).ok()) else {
            return fail("Malformed Via header");
        };
        match i {
            0 => facts.bare_branch = via.branch() == Some(b"z9hG4bK"),
            1 if !request => facts.next_hop_unsafe = unsafe_next_hop(&via),
            _ => {}
        }
    }
    for (h, reason) in [
        (HeaderName::From, "Malformed From header"),
        (HeaderName::To, "Malformed To header"),
    ] {
        if NameAddr::parse_strict(msg.header(h).expect("present")).is_err() {
            return fail(reason);
        }
    }
    if !is_valid_call_id(msg.header(HeaderName::CallId).expect("present")) {
        return fail("Malformed Call-ID header");
    }
    if CSeq::parse(msg.header(HeaderName::CSeq).expect("present")).is_none() {
        return fail("Malformed CSeq header");
    }
    if let Some(v) = msg.header(HeaderName::ContentType) {
        if ContentType::parse(v).is_none() {
            return fail("Malformed Content-Type header");
        }
    }
    Ok(facts)
}

fn duplicate_reason(h: HeaderName) -> &'static str {
    match h {
        HeaderName::CallId => "Duplicate Call-ID header",
        HeaderName::ContentLength => "Duplicate Content-Length header",
        HeaderName::ContentType => "Duplicate Content-Type header",
        HeaderName::CSeq => "Duplicate CSeq header",
        HeaderName::Expires => "Duplicate Expires header",
        HeaderName::From => "Duplicate From header",
        HeaderName::MaxForwards => "Duplicate Max-Forwards header",
        HeaderName::MinExpires => "Duplicate Min-Expires header",
        HeaderName::To => "Duplicate To header",
        _ => "Duplicate header",
    }
}

fn validate_response(msg: &Message) -> Verdict {
    if is_sip_version(msg.version()) != Some(true) {
        return Verdict::Drop {
            reason: "unsupported SIP version in response",
        };
    }
    let vias = match common_headers(msg) {
        Ok(vias) => vias,
        Err(v) => return v,
    };
    // The hop after ours: never reflect a response to a broadcast or
    // multicast address (RFC 4475 §3.3.10, amplification defence).
    if vias.next_hop_unsafe {
        return Verdict::Drop {
            reason: "response next hop is a broadcast or multicast address",
        };
    }
    Verdict::Accept
}

/// Whether a response sent on to `via` would go to a broadcast, multicast
/// or unspecified address.
fn unsafe_next_hop(via: &Via<'_>) -> bool {
    let received = via
        .received()
        .and_then(|r| std::str::from_utf8(r).ok())
        .and_then(|r| r.parse::<std::net::IpAddr>().ok());
    let target = received.or_else(|| via.host.ip());
    let bad_target = match target {
        Some(std::net::IpAddr::V4(a)) => a.is_broadcast() || a.is_multicast() || a.is_unspecified(),
        Some(std::net::IpAddr::V6(a)) => a.is_multicast() || a.is_unspecified(),
        None => false,
    };
    bad_target || matches!(via.host, Host::V4(a) if a.is_broadcast())
}
