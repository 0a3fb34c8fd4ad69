//! Messages the proxy writes itself: forwarded requests, the hop-by-hop ACK
//! and CANCEL of a branch, and answers to requests that cannot be parsed.

use crate::sip::{HeaderName, Message};

/// Parameters of one forwarded copy of a request (RFC 3261 §16.6).
#[derive(Debug)]
pub struct Forward<'a> {
    /// Our Via value, with its branch.
    pub via: &'a [u8],
    /// A new Request-URI, if the routing decision rewrote it.
    pub request_uri: Option<&'a [u8]>,
    /// The decremented Max-Forwards (70 when the request had none).
    pub max_forwards: u8,
    /// Our Record-Route value, on dialog-creating requests.
    pub record_route: Option<&'a [u8]>,
    /// How many of the top Routes named us and are removed (loose
    /// routing; two when we record-routed twice, changing transport).
    pub pop_routes: usize,
    /// Whether Proxy-Authorization (our realm's credentials, consumed
    /// here) is removed (RFC 3261 §22.3).
    pub strip_credentials: bool,
    /// From / To / identity / SDP edits (see the `rewrite` module).
    pub edits: Option<&'a super::rewrite::Planned>,
}

/// Writes the forwarded copy of `req`.
pub fn forward(req: &Message, f: &Forward<'_>) -> Vec<u8> {
    let mut e = req.edit();
    if f.pop_routes > 0 {
        e.remove_first_values(HeaderName::Route, f.pop_routes);
    }
    if f.strip_credentials {
        e.remove_header(HeaderName::ProxyAuthorization);
    }
    if let Some(p) = f.edits {
        super::rewrite::apply(&mut e, p);
    }
    if let Some(rr) = f.record_route {
        e.add_record_route(rr);
    }
    e.push_via(f.via);
    if let Some(uri) = f.request_uri {
        e.set_request_uri(uri);
    }
    e.set_max_forwards(f.max_forwards);
    e.finish()
}

/// Writes a request derived from a request we sent on a branch, as RFC 3261
/// prescribes for CANCEL (§9.1) and for the ACK of a non-2xx final response
/// (§17.1.1.3): same Request-URI, our Via only, same From, Call-ID, CSeq
/// number and Route set; `to` replaces the To header (the response's, with
/// its tag, for an ACK); `extra` headers follow (a CANCEL's Reason).
pub fn derived_request(
    sent: &Message,
    method: &str,
    to: Option<&[u8]>,
    extra: &[(&str, &[u8])],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(sent.as_bytes().len().min(1024));
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(sent.request_uri().unwrap_or(b""));
    out.extend_from_slice(b" SIP/2.0\r\n");
    if let Some(Ok(via)) = sent.values(HeaderName::Via).next() {
        push_header(&mut out, "Via", via);
    }
    push_header(&mut out, "Max-Forwards", b"70");
    for (h, name) in [(HeaderName::From, "From"), (HeaderName::CallId, "Call-ID")] {
        if let Some(v) = sent.header(h) {
            push_header(&mut out, name, v);
        }
    }
    if let Some(v) = to.or_else(|| sent.header(HeaderName::To)) {
        push_header(&mut out, "To", v);
    }
    if let Some(cseq) = sent
        .header(HeaderName::CSeq)
        .and_then(crate::sip::CSeq::parse)
    {
        let v = format!("{} {method}", cseq.seq);
        push_header(&mut out, "CSeq", v.as_bytes());
    }
    for r in sent.headers(HeaderName::Route) {
        push_header(&mut out, "Route", r);
    }
    for (name, value) in extra {
        push_header(&mut out, name, value);
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    out
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Answers a request that could not be framed (RFC 4475 `ncl`, `mcl01`,
/// `clerr`, too many header lines...): finds its Via, From, To, Call-ID and
/// CSeq lines leniently and echoes them in a response with `status` and
/// `reason`. Every Via value goes on one line (RFC 3261 §7.3.1 allows the
/// comma list), so a request refused for its many Via lines is still
/// answered in a few lines. A To without a tag gets `mark` (the switch's
/// own, [`super::Proxy::tag_mark`], so the ACK of this answer ends at the
/// switch like that of any other answer it makes) followed by a hash of
/// the request's bytes (RFC 3261 §8.2.6.2; the same for its
/// retransmissions). Returns `None` when there is nothing to answer: a
/// response, or no Via line to send it back along.
pub fn answer_unparsable(raw: &[u8], status: u16, reason: &str, mark: &str) -> Option<Vec<u8>> {
    let raw = &raw[raw
        .iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count()..];
    if raw.len() < 4 || raw[..4].eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    let head_end = memchr::memmem::find(raw, b"\r\n\r\n").unwrap_or(raw.len());
    let head = &raw[..head_end];
    let mut vias: Vec<&[u8]> = Vec::new();
    // From, To, Call-ID, CSeq: the first of each.
    let mut once: [Option<&[u8]>; 4] = [None; 4];
    for line in head.split(|&c| c == b'\n').skip(1) {
        let line = crate::sip::scan::trim_end(line);
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let value = crate::sip::scan::trim(&line[colon + 1..]);
        if value.is_empty() || value.iter().any(|&c| c < b' ' && c != b'\t') {
            continue;
        }
        let k = match HeaderName::from_bytes(crate::sip::scan::trim(&line[..colon])) {
            HeaderName::Via => {
                vias.push(value);
                continue;
            }
            HeaderName::From => 0,
            HeaderName::To => 1,
            HeaderName::CallId => 2,
            HeaderName::CSeq => 3,
            _ => continue,
        };
        once[k].get_or_insert(value);
    }
    if vias.is_empty() {
        return None;
    }
    let mut out = format!("SIP/2.0 {status} {reason}\r\n").into_bytes();
    out.extend_from_slice(b"Via: ");
    for (i, v) in vias.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(v);
    }
    out.extend_from_slice(b"\r\n");
    for (k, name) in ["From", "To", "Call-ID", "CSeq"].into_iter().enumerate() {
        let Some(value) = once[k] else { continue };
        let tagged = (k == 1 && !has_tag_param(value))
            .then(|| [value, format!(";tag={mark}{:08x}", fnv1a(head)).as_bytes()].concat());
        push_header(&mut out, name, tagged.as_deref().unwrap_or(value));
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Some(out)
}

/// Whether a To value, read leniently, already carries a `tag` parameter
/// (after the URI's closing `>` when there is one).
fn has_tag_param(value: &[u8]) -> bool {
    let params = match memchr::memrchr(b'>', value) {
        Some(gt) => &value[gt + 1..],
        None => value,
    };
    params.split(|&c| c == b';').skip(1).any(|p| {
        let name = p.split(|&c| c == b'=').next().unwrap_or(b"");
        crate::sip::scan::trim(name).eq_ignore_ascii_case(b"tag")
    })
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &c| {
        (h ^ u32::from(c)).wrapping_mul(0x0100_0193)
    })
}
