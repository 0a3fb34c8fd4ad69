//! Building outgoing messages without re-serialising what did not change.
//!
//! An [`Editor`] records splices against the received buffer (replace this
//! span with these bytes; insert a line here) and [`Editor::finish`] writes
//! the result in one pass, copying every untouched byte range as it was
//! received: folded headers, unknown headers and odd spacing survive a hop
//! exactly (RFC 4475 `wsinv`: unknown headers "forwarded unchanged").
//!
//! [`response_to`] builds a response from a request (RFC 3261 §8.2.6).

use super::header::HeaderName;
use super::message::{Message, Span, StartLine};
use super::scan::CommaSplit;
use super::status::StatusCode;

/// One splice: replace `span` of the original with `text` (a range of the
/// editor's arena). An insertion has an empty span.
#[derive(Debug, Clone, Copy)]
struct Splice {
    span: Span,
    text: (u32, u32),
    /// Tie-break for splices at the same position: insertions in the order
    /// they were made, before a replacement starting there.
    seq: u32,
}

/// Records edits to a received message; see the module docs.
#[derive(Debug)]
pub struct Editor<'m> {
    msg: &'m Message,
    splices: Vec<Splice>,
    arena: Vec<u8>,
    /// The new body, when replaced (Content-Length is fixed in `finish`).
    body: Option<(u32, u32)>,
}

impl<'m> Editor<'m> {
    /// Starts editing `msg`.
    pub fn new(msg: &'m Message) -> Self {
        // Sized for a proxy's usual edits (a Via, a Record-Route, a few
        // rewritten headers), so they do not regrow the vectors.
        let mut e = Editor {
            msg,
            splices: Vec::with_capacity(8),
            arena: Vec::with_capacity(512),
            body: None,
        };
        if let Some(via) = msg.stamped_top_via() {
            e.replace_first_value(HeaderName::Via, via);
        }
        e
    }

    fn push_text(&mut self, parts: &[&[u8]]) -> (u32, u32) {
        let start = self.arena.len() as u32;
        for p in parts {
            self.arena.extend_from_slice(p);
        }
        (start, self.arena.len() as u32)
    }

    fn splice(&mut self, span: Span, parts: &[&[u8]]) {
        let text = self.push_text(parts);
        let seq = self.splices.len() as u32;
        self.splices.push(Splice { span, text, seq });
    }

    fn at(pos: u32) -> Span {
        Span {
            start: pos,
            end: pos,
        }
    }

    fn first_header_pos(&self) -> u32 {
        self.msg.head().start_line_end
    }

    /// Inserts a header line `Name: value` above all other headers.
    pub fn insert_top(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let pos = Self::at(self.first_header_pos());
        self.splice(pos, &[name.as_bytes(), b": ", value, b"\r\n"]);
        self
    }

    /// Appends a header line `Name: value` after all other headers.
    pub fn append(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let pos = Self::at(self.msg.head().headers_end);
        self.splice(pos, &[name.as_bytes(), b": ", value, b"\r\n"]);
        self
    }

    /// Adds a Via on top (the proxy's own, RFC 3261 §16.6 step 8).
    pub fn push_via(&mut self, value: &[u8]) -> &mut Self {
        self.insert_top("Via", value)
    }

    /// Adds a Record-Route on top (RFC 3261 §16.6 step 4).
    pub fn add_record_route(&mut self, value: &[u8]) -> &mut Self {
        self.insert_top("Record-Route", value)
    }

    /// Removes the first value of the first Via header (a response passing
    /// back through the proxy, RFC 3261 §16.7 step 3). A header line that
    /// holds several values keeps the others.
    pub fn remove_top_via(&mut self) -> &mut Self {
        self.remove_first_value(HeaderName::Via)
    }

    /// Removes the first value of the first `name` header (e.g. the top
    /// Route when it names this proxy, RFC 3261 §16.4).
    pub fn remove_first_value(&mut self, name: HeaderName) -> &mut Self {
        self.remove_first_values(name, 1)
    }

    /// Removes the first `n` values of the `name` headers, across header
    /// lines (a proxy that record-routed twice pops both of its Routes). A
    /// line whose values all go is removed whole; one that keeps some
    /// keeps them.
    pub fn remove_first_values(&mut self, name: HeaderName, mut n: usize) -> &mut Self {
        let head = self.msg.head();
        for (i, e) in head.entries().iter().enumerate() {
            if n == 0 {
                break;
            }
            if e.name != name {
                continue;
            }
            let value = self.msg.slice(e.value());
            let count = CommaSplit::new(value).count();
            if count <= n {
                n -= count;
                let span = Span {
                    start: e.line(),
                    end: head.line_end(i),
                };
                self.splice(span, &[]);
                continue;
            }
            // Keep the values after the n-th unquoted comma.
            let mut cut = 0;
            for _ in 0..n {
                match super::scan::find_unquoted(&value[cut..], b',') {
                    Ok(Some(c)) => cut += c + 1,
                    _ => return self,
                }
            }
            let skip = value[cut..]
                .iter()
                .take_while(|&&b| super::scan::is_lws(b))
                .count();
            let span = Span {
                start: e.value().start,
                end: e.value().start + (cut + skip) as u32,
            };
            self.splice(span, &[]);
            n = 0;
        }
        self
    }

    /// Replaces the first value of the first `name` header (the top Via
    /// stamped with `received`, RFC 3261 §18.2.1); the line's other values
    /// stay.
    pub fn replace_first_value(&mut self, name: HeaderName, value: &[u8]) -> &mut Self {
        if let Some(e) = self.msg.head().find(name) {
            let text = self.msg.slice(e.value());
            let first = match super::scan::find_unquoted(text, b',') {
                Ok(Some(c)) => &text[..c],
                _ => text,
            };
            let lead = first
                .iter()
                .take_while(|&&b| super::scan::is_lws(b))
                .count();
            let start = e.value().start + lead as u32;
            let span = Span {
                start,
                end: start + super::scan::trim(first).len() as u32,
            };
            self.splice(span, &[value]);
        }
        self
    }

    /// Replaces the Request-URI.
    pub fn set_request_uri(&mut self, uri: &[u8]) -> &mut Self {
        if let StartLine::Request { uri: span, .. } = self.msg.head().start_line {
            self.splice(span, &[uri]);
        }
        self
    }

    /// Replaces the value of the first `name` header, or appends the header
    /// when absent.
    pub fn replace_header(&mut self, name: HeaderName, value: &[u8]) -> &mut Self {
        match self.msg.head().find(name) {
            Some(e) => {
                let span = e.value();
                self.splice(span, &[value]);
            }
            None => {
                let n = name.as_str().expect("a known header");
                self.append(n, value);
            }
        }
        self
    }

    /// Removes every `name` header line.
    pub fn remove_header(&mut self, name: HeaderName) -> &mut Self {
        let head = self.msg.head();
        for (i, e) in head.entries().iter().enumerate() {
            if e.name == name {
                let span = Span {
                    start: e.line(),
                    end: head.line_end(i),
                };
                self.splice(span, &[]);
            }
        }
        self
    }

    /// Sets Max-Forwards, adding the header when absent.
    pub fn set_max_forwards(&mut self, n: u8) -> &mut Self {
        let text = n.to_string();
        self.replace_header(HeaderName::MaxForwards, text.as_bytes())
    }

    /// Replaces the body; Content-Length is fixed when the message is
    /// written.
    pub fn set_body(&mut self, body: &[u8]) -> &mut Self {
        self.body = Some(self.push_text(&[body]));
        self
    }

    /// Writes the edited message.
    pub fn finish(mut self) -> Vec<u8> {
        let msg = self.msg;
        let head = msg.head();
        let buf = msg.buffer();
        if let Some((s, e)) = self.body {
            let len = super::scan::itoa(u64::from(e - s));
            let len = len.as_str().as_bytes();
            match head.find(HeaderName::ContentLength) {
                Some(cl) => {
                    let span = cl.value();
                    self.splice(span, &[len]);
                }
                None => {
                    self.append("Content-Length", len);
                }
            }
            let seq = self.splices.len() as u32;
            self.splices.push(Splice {
                span: head.body,
                text: (s, e),
                seq,
            });
        }
        self.splices
            .sort_by_key(|s| (s.span.start, s.span.end != s.span.start, s.seq));

        let start = head.msg_start as usize;
        let end = head.body.end as usize;
        let mut out = Vec::with_capacity(end - start + self.arena.len() + 16);
        let mut pos = start;
        for s in &self.splices {
            let (a, b) = (s.span.start as usize, s.span.end as usize);
            if a < pos {
                // Overlapping edits (e.g. the same line removed twice):
                // the first one wins.
                continue;
            }
            out.extend_from_slice(&buf[pos..a]);
            out.extend_from_slice(&self.arena[s.text.0 as usize..s.text.1 as usize]);
            pos = b;
        }
        out.extend_from_slice(&buf[pos..end]);
        out
    }
}

impl Message {
    /// Starts editing this message.
    pub fn edit(&self) -> Editor<'_> {
        Editor::new(self)
    }
}

/// Builds a response to `req` (RFC 3261 §8.2.6): the status line, every Via
/// line as received, the first From, To (with `to_tag` added when the
/// request's To has no tag and the status is not 100), Call-ID and CSeq,
/// the `extra` headers, and an empty body.
///
/// Empty when the response would hold more header lines than
/// [`super::MAX_HEADERS`] (a request of many Vias answered with extra
/// headers): no parser, ours included, would take it, so it is not sent.
pub fn response_to(
    req: &Message,
    status: StatusCode,
    reason: &str,
    to_tag: Option<&[u8]>,
    extra: &[(&str, &[u8])],
) -> Vec<u8> {
    let head = req.head();
    let buf = req.buffer();
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"SIP/2.0 ");
    out.extend_from_slice(super::scan::itoa(u64::from(status.0)).as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut stamped = req.stamped_top_via();
    // From, To, Call-ID, CSeq: the first of each (a request may repeat
    // them; validation refuses that, but its refusal is built here too).
    let mut seen = [false; 4];
    let mut lines = 1 + extra.len();
    for (i, e) in head.entries().iter().enumerate() {
        let once = match e.name {
            HeaderName::From => Some(0),
            HeaderName::To => Some(1),
            HeaderName::CallId => Some(2),
            HeaderName::CSeq => Some(3),
            HeaderName::Via => None,
            _ => continue,
        };
        if let Some(k) = once {
            if std::mem::replace(&mut seen[k], true) {
                continue;
            }
        }
        lines += 1;
        match e.name {
            HeaderName::Via if stamped.is_some() => {
                // The first value as stamped, then the line's others.
                out.extend_from_slice(b"Via: ");
                out.extend_from_slice(stamped.take().unwrap_or_default());
                out.extend_from_slice(b"\r\n");
                let value = req.slice(e.value());
                if let Ok(Some(c)) = super::scan::find_unquoted(value, b',') {
                    lines += 1;
                    out.extend_from_slice(b"Via: ");
                    out.extend_from_slice(super::scan::trim(&value[c + 1..]));
                    out.extend_from_slice(b"\r\n");
                }
            }
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                out.extend_from_slice(&buf[e.line() as usize..head.line_end(i) as usize]);
            }
            HeaderName::To => {
                let value = req.slice(e.value());
                out.extend_from_slice(b"To: ");
                out.extend_from_slice(value);
                // A malformed To is echoed as it is, without a tag.
                let has_tag = req.tag(HeaderName::To).is_some()
                    || super::addr::NameAddr::parse(value).is_err();
                if let (false, Some(tag), false) = (has_tag, to_tag, status == StatusCode::TRYING) {
                    out.extend_from_slice(b";tag=");
                    out.extend_from_slice(tag);
                }
                out.extend_from_slice(b"\r\n");
            }
            _ => {}
        }
    }
    for (name, value) in extra {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if lines > super::MAX_HEADERS {
        return Vec::new();
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const REQ: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds, SIP/2.0/UDP p2.example.com;branch=z9hG4bK2\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
X-Odd:   spaced   \r\n\
Content-Length: 4\r\n\
\r\n\
abcd";

    fn msg() -> Message {
        Message::parse_datagram(Bytes::from_static(REQ)).unwrap()
    }

    #[test]
    fn no_edits_is_identity() {
        assert_eq!(msg().edit().finish(), REQ);
    }

    #[test]
    fn proxy_edits() {
        let m = msg();
        let mut e = m.edit();
        e.push_via(b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx")
            .add_record_route(b"<sip:127.0.0.1;lr>")
            .set_max_forwards(69)
            .set_request_uri(b"sip:bob@192.0.2.4:5070")
            .set_body(b"hello world");
        let out = e.finish();
        let out = Message::parse_datagram(Bytes::from(out)).unwrap();
        assert_eq!(out.request_uri(), Some(&b"sip:bob@192.0.2.4:5070"[..]));
        let vias: Vec<_> = out.values(HeaderName::Via).map(Result::unwrap).collect();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0], b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx");
        assert_eq!(out.header(HeaderName::MaxForwards), Some(&b"69"[..]));
        assert_eq!(
            out.header(HeaderName::RecordRoute),
            Some(&b"<sip:127.0.0.1;lr>"[..])
        );
        assert_eq!(out.body(), b"hello world");
        assert_eq!(out.header(HeaderName::ContentLength), Some(&b"11"[..]));
        assert_eq!(out.header_by_name(b"x-odd"), Some(&b"spaced"[..]));
        assert!(String::from_utf8_lossy(out.as_bytes()).contains("X-Odd:   spaced   \r\n"));
    }

    #[test]
    fn a_response_is_built_only_when_it_frames() {
        let mut text = String::from("OPTIONS sip:a@b SIP/2.0\r\n");
        for i in 0..89 {
            text.push_str(&format!("Via: SIP/2.0/UDP h{i};branch=z9hG4bK{i}\r\n"));
        }
        // Repeated: only the first of each goes into the response.
        for _ in 0..2 {
            text.push_str("From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\n");
        }
        text.push_str("Call-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n");
        let m = Message::parse_datagram(Bytes::from(text)).unwrap();
        let r = response_to(&m, StatusCode::OK, "OK", Some(b"t"), &[]);
        let r = Message::parse_datagram(Bytes::from(r)).unwrap();
        assert_eq!(r.head().entries().len(), 94);
        let two: [(&str, &[u8]); 2] = [("Allow", b"INVITE"), ("Accept", b"application/sdp")];
        let r = response_to(&m, StatusCode::OK, "OK", Some(b"t"), &two);
        let r = Message::parse_datagram(Bytes::from(r)).unwrap();
        assert_eq!(r.head().entries().len(), 96);
        // One line more would not frame: nothing is built.
        let three = [two[0], two[1], ("Supported", &b"path"[..])];
        assert!(response_to(&m, StatusCode::OK, "OK", Some(b"t"), &three).is_empty());
    }

    #[test]
    fn a_stamped_top_via_is_in_every_copy_and_response() {
        let mut m = msg();
        let stamped =
            &b"SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.9"[..];
        m.stamp_top_via(stamped.to_vec());
        let second = &b"SIP/2.0/UDP p2.example.com;branch=z9hG4bK2"[..];
        let mut e = m.edit();
        e.push_via(b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx");
        let copy = Message::parse_datagram(Bytes::from(e.finish())).unwrap();
        let vias: Vec<_> = copy.values(HeaderName::Via).map(Result::unwrap).collect();
        assert_eq!(vias[1..], [stamped, second]);
        let r = response_to(&m, StatusCode::OK, "OK", Some(b"t"), &[]);
        let r = Message::parse_datagram(Bytes::from(r)).unwrap();
        let vias: Vec<_> = r.values(HeaderName::Via).map(Result::unwrap).collect();
        assert_eq!(vias, [stamped, second]);
    }

    #[test]
    fn remove_top_via_keeps_the_rest_of_the_line() {
        let m = msg();
        let mut e = m.edit();
        e.remove_top_via();
        let out = Message::parse_datagram(Bytes::from(e.finish())).unwrap();
        let vias: Vec<_> = out.values(HeaderName::Via).map(Result::unwrap).collect();
        assert_eq!(vias, [&b"SIP/2.0/UDP p2.example.com;branch=z9hG4bK2"[..]]);
        let mut e = out.edit();
        e.remove_top_via();
        let out = Message::parse_datagram(Bytes::from(e.finish())).unwrap();
        assert_eq!(out.header(HeaderName::Via), None);
        assert_eq!(out.header(HeaderName::MaxForwards), Some(&b"70"[..]));
    }

    #[test]
    fn the_first_values_go_across_lines() {
        let text = "BYE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                    Route: <sip:a;lr>\r\nFrom: <sip:x@y>;tag=1\r\n\
                    Route: <sip:b;lr>, \"c, d\" <sip:c;lr>, <sip:d;lr>\r\n\
                    Content-Length: 0\r\n\r\n";
        let routes = |n: usize| {
            let m = Message::parse_datagram(Bytes::from(text)).unwrap();
            let mut e = m.edit();
            e.remove_first_values(HeaderName::Route, n);
            let out = Message::parse_datagram(Bytes::from(e.finish())).unwrap();
            assert_eq!(out.header(HeaderName::From), Some(&b"<sip:x@y>;tag=1"[..]));
            out.values(HeaderName::Route)
                .map(|v| String::from_utf8(v.unwrap().to_vec()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(routes(0).len(), 4);
        assert_eq!(
            routes(1),
            ["<sip:b;lr>", "\"c, d\" <sip:c;lr>", "<sip:d;lr>"]
        );
        assert_eq!(routes(2), ["\"c, d\" <sip:c;lr>", "<sip:d;lr>"]);
        assert_eq!(routes(3), ["<sip:d;lr>"]);
        assert!(routes(4).is_empty());
        assert!(routes(9).is_empty());
    }

    #[test]
    fn replace_and_remove_headers() {
        let m = msg();
        let mut e = m.edit();
        e.remove_header(HeaderName::Other)
            .replace_header(HeaderName::To, b"<sip:carol@example.com>")
            .replace_header(HeaderName::Subject, b"hi");
        let out = Message::parse_datagram(Bytes::from(e.finish())).unwrap();
        assert_eq!(out.header_by_name(b"X-Odd"), None);
        assert_eq!(
            out.header(HeaderName::To),
            Some(&b"<sip:carol@example.com>"[..])
        );
        assert_eq!(out.header(HeaderName::Subject), Some(&b"hi"[..]));
    }

    #[test]
    fn response_copies_dialog_headers() {
        let m = msg();
        let r = response_to(
            &m,
            StatusCode::BUSY_HERE,
            "Busy Here",
            Some(b"abc"),
            &[("Retry-After", b"5")],
        );
        let r = Message::parse_datagram(Bytes::from(r)).unwrap();
        assert_eq!(r.status(), Some(StatusCode::BUSY_HERE));
        assert_eq!(r.values(HeaderName::Via).count(), 2);
        assert_eq!(
            r.header(HeaderName::To),
            Some(&b"Bob <sip:bob@biloxi.example.com>;tag=abc"[..])
        );
        assert_eq!(r.header(HeaderName::CSeq), Some(&b"314159 INVITE"[..]));
        assert_eq!(r.header(HeaderName::RetryAfter), Some(&b"5"[..]));
        assert_eq!(super::super::validate(&r), super::super::Verdict::Accept);
    }
}
