//! What the switch rewrites in the requests it forwards, and how it keeps
//! that dialog-safe (DOMAIN.md §4.3, §4.4).
//!
//! Rewritten: the From URI (the presented identity towards a carrier; the
//! caller's number in the friend's local format and the friend's
//! `from_domain` towards a friend), P-Asserted-Identity towards a carrier
//! (any P-Asserted-Identity, P-Preferred-Identity, Remote-Party-ID or
//! Diversion of the caller removed: a number that is not a company DDI never leaks), and the SDP
//! offer (codec filtering, [`crate::sip::sdp`]).
//!
//! ## Keeping each side's view (dialog-safe rewriting)
//!
//! Each side must keep seeing its own From and To in every response and
//! every later in-dialog request. Tandem keeps no dialog state for this:
//! its Record-Route carries the originals, like Kamailio's uac "restore"
//! mode —
//!
//! ```text
//! <sip:switch:5060;lr;tfo=<old From URI, base64url>;tfn=<new, base64url>;tcs=PCMA.PCMU;tdm=<token>>
//! ```
//!
//! — and the dialog token `tdm` is a MAC over the Call-ID *and* these
//! parameters, so an endpoint cannot edit them. An in-dialog request whose
//! From URI is the original came from the caller's side: its From becomes
//! the new one. One whose To URI is the new one came from the callee's
//! side: its To becomes the original. Responses travelling upstream get the
//! From and To of the request as the upstream side sent it (plus the
//! callee's To tag). `tcs` filters every SDP of the dialog (re-INVITE,
//! UPDATE, their answers) with the same codec list.

use super::{Peer, Transport};
use crate::sip::{sdp, Editor, HeaderName, Message, NameAddr};

/// The edits a forwarded request carries for its whole dialog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct DialogEdit {
    /// The From URI the caller sent, when it was replaced.
    pub orig_from: Option<String>,
    /// The From URI the callee sees.
    pub new_from: Option<String>,
    /// The codecs every SDP of the dialog is filtered to.
    pub codecs: Option<crate::sip::Codecs>,
    /// The new From is also the asserted identity (external calls): the
    /// caller's in-dialog requests get it as P-Asserted-Identity too.
    pub pai: bool,
    /// A friend is in this dialog: a 401/407 to an in-dialog request is not
    /// relayed either.
    pub friend: bool,
}

impl DialogEdit {
    pub fn is_empty(&self) -> bool {
        self.new_from.is_none() && self.codecs.is_none() && !self.friend
    }

    /// The Record-Route parameters (each with its leading `;`).
    pub fn rr_params(&self) -> String {
        let mut p = String::with_capacity(160);
        if let (Some(o), Some(n)) = (&self.orig_from, &self.new_from) {
            p.push_str(";tfo=");
            push_b64(&mut p, o.as_bytes());
            p.push_str(";tfn=");
            push_b64(&mut p, n.as_bytes());
        }
        if let Some(c) = &self.codecs {
            p.push_str(";tcs=");
            for (i, name) in c.iter().enumerate() {
                if i > 0 {
                    p.push('.');
                }
                p.push_str(name);
            }
        }
        if self.pai {
            p.push_str(";tpa");
        }
        if self.friend {
            p.push_str(";tfd");
        }
        p
    }

    /// Reads the parameters of our Route back (one pass over the list).
    pub fn from_params(params: &crate::sip::Params<'_>) -> DialogEdit {
        let text = |v: Option<&[u8]>| v.and_then(unb64).and_then(|v| String::from_utf8(v).ok());
        let mut d = DialogEdit::default();
        for (name, value) in params.iter() {
            // Names compare case-insensitively (RFC 3261 §19.1.4).
            let n = match name {
                [a, b, c] => [a, b, c].map(u8::to_ascii_lowercase),
                _ => continue,
            };
            match &n {
                b"tfo" => d.orig_from = text(value),
                b"tfn" => d.new_from = text(value),
                b"tcs" => {
                    d.codecs = value.map(|v| {
                        String::from_utf8_lossy(v)
                            .split('.')
                            .filter(|c| !c.is_empty())
                            .map(Box::from)
                            .collect()
                    })
                }
                b"tpa" => d.pai = true,
                b"tfd" => d.friend = true,
                _ => {}
            }
        }
        d
    }
}

/// The edits of one forwarded copy of a request.
#[derive(Debug, Default)]
pub(super) struct Planned {
    /// New From value.
    pub from: Option<Vec<u8>>,
    /// New To value.
    pub to: Option<Vec<u8>>,
    /// A P-Asserted-Identity value; the caller's identity headers go.
    pub pai: Option<String>,
    /// Add `Privacy: id` (see [`super::Rewrite::withhold`]).
    pub privacy_id: bool,
    /// New body.
    pub body: Option<Vec<u8>>,
    /// New Contact (the sender is behind NAT).
    pub contact: Option<Vec<u8>>,
    /// What our Record-Route carries (dialog-creating requests).
    pub record: DialogEdit,
    /// How responses are restored for the upstream side.
    pub restore: Option<Box<super::Restore>>,
    /// The sender's identity headers go (a request from anyone but a
    /// carrier, or one asking for privacy: RFC 3325 §5, §7, identity is
    /// only passed on from a trusted sender, to a trusted receiver).
    pub strip_identity: bool,
}

/// An offer whose media would be left without codecs (answer 488).
#[derive(Debug)]
pub(super) struct NothingLeft;

/// Plans the edits of `msg` for a target: `rewrite` for a new request,
/// `dialog` (our Route's parameters) for an in-dialog one.
pub(super) fn plan(
    msg: &Message,
    rewrite: Option<&super::Rewrite>,
    dialog: Option<&DialogEdit>,
) -> Result<Planned, NothingLeft> {
    let mut p = Planned::default();
    let from_v = msg.header(HeaderName::From).unwrap_or(b"");
    let to_v = msg.header(HeaderName::To).unwrap_or(b"");
    let codecs = match (rewrite, dialog) {
        (Some(r), _) => {
            let orig = uri_of(from_v).map(|u| String::from_utf8_lossy(u).into_owned());
            if let (Some(new), Some(orig)) = (&r.from_uri, orig) {
                if new.as_bytes() != orig.as_bytes() {
                    p.from = with_uri(from_v, new.as_bytes());
                    p.record.orig_from = Some(orig);
                    p.record.new_from = Some(new.clone());
                }
            }
            if let Some(pai) = &r.pai {
                p.pai = Some(format!("<{pai}>"));
                p.privacy_id = r.withhold && !super::asks_privacy(msg, &[b"id"]);
                p.record.pai = p.record.new_from.as_deref() == Some(pai.as_str());
            }
            p.record.friend = r.friend.is_some();
            p.record.codecs = r.codecs.clone();
            r.codecs.clone()
        }
        (None, Some(d)) => {
            if let (Some(orig), Some(new)) = (&d.orig_from, &d.new_from) {
                if uri_of(from_v) == Some(orig.as_bytes()) {
                    p.from = with_uri(from_v, new.as_bytes());
                    if d.pai {
                        p.pai = Some(format!("<{new}>"));
                    }
                } else if uri_of(to_v) == Some(new.as_bytes()) {
                    p.to = with_uri(to_v, orig.as_bytes());
                }
            }
            d.codecs.clone()
        }
        (None, None) => None,
    };
    if let Some(c) = &codecs {
        match filter(msg, c) {
            sdp::Filtered::NothingLeft => return Err(NothingLeft),
            sdp::Filtered::Changed(b) => p.body = Some(b),
            sdp::Filtered::Unchanged => {}
        }
    }
    if p.from.is_some() || p.to.is_some() || codecs.is_some() {
        p.restore = Some(Box::new(super::Restore {
            from: p.from.is_some().then(|| from_v.to_vec()),
            to: p.to.is_some().then(|| to_v.to_vec()),
            codecs,
        }));
    }
    Ok(p)
}

/// Applies `p` to a forwarded copy.
pub(super) fn apply(e: &mut Editor<'_>, p: &Planned) {
    if let Some(v) = &p.from {
        e.replace_header(HeaderName::From, v);
    }
    if let Some(v) = &p.to {
        e.replace_header(HeaderName::To, v);
    }
    if let Some(pai) = &p.pai {
        for h in IDENTITY_HEADERS {
            e.remove_header(h);
        }
        e.append("P-Asserted-Identity", pai.as_bytes());
        if p.privacy_id {
            e.append("Privacy", b"id");
        }
    } else if p.strip_identity {
        for h in IDENTITY_HEADERS {
            e.remove_header(h);
        }
    }
    if let Some(b) = &p.body {
        e.set_body(b);
    }
    if let Some(c) = &p.contact {
        e.replace_header(HeaderName::Contact, c);
    }
}

/// The Contact of a message from `from` as the far end must use it, so
/// that in-dialog requests to it reach the device through the path it
/// opened (like Kamailio's `fix_nated_contact`). `None` when nothing
/// changes.
///
/// - UDP: when the Contact names another address than the packet came
///   from (a device behind NAT writes its private address), its host and
///   port become the source's and the URI gets a `tnat` flag: in-dialog
///   requests to it leave from the shared socket, whose pinhole the device
///   opened.
/// - TCP: host and port become the connection's far end, and the URI gets
///   `transport=tcp` and `tnat=<connection id, hex>`, so in-dialog
///   requests are written on that connection, whichever worker they reach
///   (the id names the owner; the shell writes only on that very
///   connection, and only while it still leads to that address). Done
///   when the Contact names another IP than the connection's (behind NAT;
///   the port never matches, it is the connection's), or names the same
///   IP but would be reached over UDP (no `transport=tcp`, as SIPp and
///   many PBXs write it, though they speak TCP) and `tcp_peer` (the
///   configuration's TCP carriers and direct friends) does not know the
///   address. A configured TCP peer is left alone.
/// - TCP, a device at its own address with `transport=tcp`: it may or may
///   not take connections on the port it names (a client socket cannot).
///   Its host and port stay, and the URI gets `tnat=<id | CONN_REUSE>`:
///   in-dialog requests go on its connection while that still leads to
///   its IP (whichever worker they reach), and to the named address once
///   the connection is gone (RFC 5923's reuse, without the `alias`).
///
/// A `sips:` Contact is left alone (TLS is not this switch's).
pub(super) fn nat_contact(
    v: &[u8],
    from: &Peer,
    tcp_peer: impl Fn(std::net::SocketAddr) -> bool,
) -> Option<Vec<u8>> {
    let a = NameAddr::parse(v).ok()?;
    let crate::sip::Uri::Sip(u) = a.parsed_uri().ok()? else {
        return None;
    };
    let source = from.addr;
    if u.secure {
        return None;
    }
    let conn = match from.transport {
        Transport::Udp => None,
        Transport::Tcp => Some(from.conn?),
    };
    let transport = u.params.get(b"transport").flatten();
    // A TCP device at its own address naming a port: kept, the connection
    // preferred (see above).
    let mut keep_address = false;
    match conn {
        Some(_) if u.host.ip() == Some(source.ip()) => {
            let named = std::net::SocketAddr::new(source.ip(), u.port.unwrap_or(5060));
            if tcp_peer(named) {
                return None; // configured: reachable over TCP as configured
            }
            keep_address = transport.is_some_and(|t| t.eq_ignore_ascii_case(b"tcp"));
        }
        Some(_) => {}
        None => {
            if u.host.ip() == Some(source.ip()) && u.port.unwrap_or(5060) == source.port() {
                return None;
            }
            if transport.is_some_and(|t| !t.eq_ignore_ascii_case(b"udp")) {
                return None; // another transport than the packet's: left alone
            }
        }
    }
    let mut out = Vec::with_capacity(v.len() + 48);
    out.extend_from_slice(b"<sip:");
    if let Some(user) = u.user {
        out.extend_from_slice(user);
        out.push(b'@');
    }
    let named = std::net::SocketAddr::new(source.ip(), u.port.unwrap_or(5060));
    let host = match if keep_address { named } else { source } {
        std::net::SocketAddr::V4(a) => a.to_string(),
        std::net::SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    out.extend_from_slice(host.as_bytes());
    match conn {
        None => {
            if !u.params.0.is_empty() {
                out.push(b';');
                out.extend_from_slice(u.params.0);
            }
            if u.params.get(b"tnat").is_none() {
                out.extend_from_slice(b";tnat");
            }
        }
        Some(id) => {
            for (name, value) in u.params.iter() {
                if name.eq_ignore_ascii_case(b"transport") || name.eq_ignore_ascii_case(b"tnat") {
                    continue;
                }
                out.push(b';');
                out.extend_from_slice(name);
                if let Some(value) = value {
                    out.push(b'=');
                    out.extend_from_slice(value);
                }
            }
            let id = if keep_address {
                id | super::CONN_REUSE
            } else {
                id
            };
            out.extend_from_slice(format!(";transport=tcp;tnat={id:x}").as_bytes());
        }
    }
    out.push(b'>');
    if !a.params.0.is_empty() {
        out.push(b';');
        out.extend_from_slice(a.params.0);
    }
    Some(out)
}

/// The connection a `tnat` URI parameter names (see [`nat_contact`]):
/// `Some(id)` for a TCP contact the switch fixed, `None` for the UDP flag
/// or anything else.
pub(super) fn nat_connection(params: &crate::sip::Params<'_>) -> Option<u64> {
    let v = params.get(b"tnat")??;
    if v.is_empty() || v.len() > 16 || !v.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(v).ok()?, 16).ok()
}

/// The URI of a From/To value.
pub(super) fn uri_of(v: &[u8]) -> Option<&[u8]> {
    NameAddr::parse(v).ok().map(|a| a.uri)
}

/// A From/To value with its URI replaced by `uri` and its display name
/// dropped; header parameters (the tag) kept.
pub(super) fn with_uri(v: &[u8], uri: &[u8]) -> Option<Vec<u8>> {
    let a = NameAddr::parse(v).ok()?;
    let mut out = Vec::with_capacity(uri.len() + a.params.0.len() + 32);
    // The display name stays (the caller's name on the callee's screen),
    // except on an anonymous URI: a withheld identity shows no name.
    let display = if uri == ANONYMOUS_URI.as_bytes() {
        Some(&b"\"Anonymous\""[..])
    } else {
        a.display
    };
    if let Some(d) = display.filter(|d| !d.is_empty()) {
        out.extend_from_slice(d);
        out.push(b' ');
    }
    out.push(b'<');
    out.extend_from_slice(uri);
    out.push(b'>');
    if !a.params.0.is_empty() {
        out.push(b';');
        out.extend_from_slice(a.params.0);
    }
    Some(out)
}

/// The From URI of a caller that withholds its identity (RFC 3323 §4.1.1.3).
pub(super) const ANONYMOUS_URI: &str = "sip:anonymous@anonymous.invalid";

/// Headers through which a caller could present an identity of its own.
pub(super) const IDENTITY_HEADERS: [HeaderName; 4] = [
    HeaderName::PAssertedIdentity,
    HeaderName::PPreferredIdentity,
    HeaderName::RemotePartyId,
    HeaderName::Diversion,
];

/// The body filtered to `codecs`: an SDP body, or the SDP parts of a
/// multipart one (SIP-I/SIP-T: SDP beside ISUP); any other is unchanged.
pub(super) fn filter(msg: &Message, codecs: &[Box<str>]) -> sdp::Filtered {
    if msg.body().is_empty() {
        return sdp::Filtered::Unchanged;
    }
    let Some(ct) = msg
        .header(HeaderName::ContentType)
        .and_then(crate::sip::ContentType::parse)
    else {
        return sdp::Filtered::Unchanged;
    };
    if ct.is("application", "sdp") {
        return sdp::filter_codecs(msg.body(), codecs);
    }
    if ct.mtype.eq_ignore_ascii_case(b"multipart") {
        if let Some(Some(b)) = ct.params.get(b"boundary") {
            return sdp::filter_multipart(msg.body(), crate::sip::unquote(b), codecs);
        }
    }
    sdp::Filtered::Unchanged
}

/// Edits the response `resp` into what the upstream side must see: its
/// From and To as in the request that side sent (`request_from`,
/// `request_to`; To with the response's tag), its SDP filtered to `codecs`.
pub(super) fn restore(
    e: &mut Editor<'_>,
    resp: &Message,
    request_from: Option<&[u8]>,
    request_to: Option<&[u8]>,
    codecs: Option<&[Box<str>]>,
) {
    if let Some(from) = request_from {
        e.replace_header(HeaderName::From, from);
    }
    if let Some(to) = request_to {
        let tag = resp.tag(HeaderName::To);
        let had_tag = NameAddr::parse(to).ok().and_then(|a| a.tag()).is_some();
        let mut v = to.to_vec();
        if let (Some(t), false) = (tag, had_tag) {
            v.extend_from_slice(b";tag=");
            v.extend_from_slice(t);
        }
        e.replace_header(HeaderName::To, &v);
    }
    if let Some(c) = codecs {
        if let sdp::Filtered::Changed(b) = filter(resp, c) {
            e.set_body(&b);
        }
    }
}

/// A response from a binding reached through NAT: its Contact fixed like
/// a request's (see [`nat_contact`]).
pub(super) fn fix_response_contact(e: &mut Editor<'_>, resp: &Message, source: &Peer) {
    if let Some(c) = resp
        .header(HeaderName::Contact)
        .and_then(|v| nat_contact(v, source, |_| false))
    {
        e.replace_header(HeaderName::Contact, &c);
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding: every character is legal in a URI parameter.
/// Appends `data` in the URL-safe alphabet, unpadded.
fn push_b64(out: &mut String, data: &[u8]) {
    out.reserve(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(B64[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
}

/// Each byte's value in [`B64`], or 0xff.
const UNB64: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut i = 0;
    while i < 64 {
        t[B64[i] as usize] = i as u8;
        i += 1;
    }
    t
};

fn unb64(text: &[u8]) -> Option<Vec<u8>> {
    let val = |c: u8| match UNB64[usize::from(c)] {
        0xff => None,
        v => Some(u32::from(v)),
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        if chunk.len() < 2 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connection a fixed Contact's `tnat` names.
    fn connection_of(contact: &[u8]) -> Option<u64> {
        let a = NameAddr::parse(contact).unwrap();
        let crate::sip::Uri::Sip(u) = a.parsed_uri().unwrap() else {
            panic!("a SIP URI")
        };
        nat_connection(&u.params)
    }

    #[test]
    fn base64url_round_trip() {
        for s in [
            "",
            "a",
            "ab",
            "abc",
            "sip:+34600111222@pstn.example.net;user=phone",
        ] {
            let mut e = String::from("x");
            push_b64(&mut e, s.as_bytes());
            assert_eq!(unb64(&e.as_bytes()[1..]).unwrap(), s.as_bytes());
        }
    }

    #[test]
    fn params_round_trip() {
        let d = DialogEdit {
            orig_from: Some("sip:+34600111222@pstn.example.net".into()),
            new_from: Some("sip:600111222@acme.example.com".into()),
            codecs: Some(["PCMA", "telephone-event"].map(Box::from).into()),
            pai: true,
            friend: true,
        };
        let p = d.rr_params();
        let parsed = DialogEdit::from_params(&crate::sip::Params(&p.as_bytes()[1..]));
        assert_eq!(parsed, d);
    }

    #[test]
    fn nat_contacts_lead_back_to_the_source() {
        let udp = Peer::udp("127.0.0.1:40000".parse().unwrap());
        let fixed =
            nat_contact(b"<sip:alice@192.0.2.50:5060>;expires=60", &udp, |_| false).unwrap();
        assert_eq!(fixed, b"<sip:alice@127.0.0.1:40000;tnat>;expires=60");
        // Already the source: nothing to fix.
        assert_eq!(
            nat_contact(b"<sip:alice@127.0.0.1:40000>", &udp, |_| false),
            None
        );
        // TCP behind NAT: the connection, whatever transport the Contact named.
        let tcp = Peer {
            addr: "127.0.0.1:40001".parse().unwrap(),
            transport: Transport::Tcp,
            conn: Some(0x1_0000_0000_002a),
        };
        let fixed = nat_contact(
            b"\"A\" <sip:alice@192.0.2.50:5060;transport=TCP;ob;tnat=7>;+sip.instance=\"<urn:x>\"",
            &tcp,
            |_| false,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(fixed.clone()).unwrap(),
            "<sip:alice@127.0.0.1:40001;ob;transport=tcp;tnat=100000000002a>;+sip.instance=\"<urn:x>\""
        );
        assert_eq!(connection_of(&fixed), Some(0x1_0000_0000_002a));
        // Over TCP, a Contact naming the connection's own IP with
        // transport=tcp keeps its address and prefers the connection
        // (the device may or may not take connections at that port).
        let fixed =
            nat_contact(b"<sip:alice@127.0.0.1:5060;transport=tcp>", &tcp, |_| false).unwrap();
        assert_eq!(
            String::from_utf8(fixed.clone()).unwrap(),
            "<sip:alice@127.0.0.1:5060;transport=tcp;tnat=800100000000002a>"
        );
        assert_eq!(
            connection_of(&fixed),
            Some(0x1_0000_0000_002a | super::super::CONN_REUSE)
        );
        // A configured TCP peer at that address: left alone.
        let at_5060 = |a: std::net::SocketAddr| a == "127.0.0.1:5060".parse().unwrap();
        assert_eq!(
            nat_contact(b"<sip:alice@127.0.0.1:5060;transport=tcp>", &tcp, at_5060),
            None
        );
        // The same IP without transport=tcp (UDP by RFC 3263): the
        // connection, unless the configuration knows a TCP peer there.
        let plain = b"<sip:alice@127.0.0.1:5060>";
        let fixed = nat_contact(plain, &tcp, |_| false).unwrap();
        assert_eq!(
            fixed,
            b"<sip:alice@127.0.0.1:40001;transport=tcp;tnat=100000000002a>"
        );
        assert_eq!(nat_contact(plain, &tcp, at_5060), None);
        // TLS is not ours to fix.
        assert_eq!(
            nat_contact(b"<sips:alice@192.0.2.50>", &tcp, |_| false),
            None
        );
        assert_eq!(
            nat_contact(b"<sips:alice@192.0.2.50>", &udp, |_| false),
            None
        );
        // A TCP peer without a connection id (never from the shell): left.
        let no_conn = Peer { conn: None, ..tcp };
        assert_eq!(
            nat_contact(b"<sip:alice@192.0.2.50>", &no_conn, |_| false),
            None
        );
        // The UDP flag and junk name no connection.
        for p in [
            "tnat",
            "tnat=",
            "tnat=xyz",
            "tnat=+5",
            "tnat=11112222333344445",
        ] {
            assert_eq!(
                nat_connection(&crate::sip::Params(p.as_bytes())),
                None,
                "{p}"
            );
        }
    }

    #[test]
    fn uri_replaced_tag_kept() {
        let v = with_uri(b"\"Bob\" <sip:+346@x>;tag=12", b"sip:6@y").unwrap();
        assert_eq!(v, b"\"Bob\" <sip:6@y>;tag=12");
        let v = with_uri(b"sip:+346@x;tag=12", b"sip:6@y").unwrap();
        assert_eq!(v, b"<sip:6@y>;tag=12");
        let v = with_uri(b"\"Bob\" <sip:+346@x>;tag=12", ANONYMOUS_URI.as_bytes()).unwrap();
        assert_eq!(v, b"\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=12");
    }
}
