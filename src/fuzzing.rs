//! Entry points for the `cargo fuzz` targets in `fuzz/` and for the
//! regression test that replays their findings (`tests/it/fuzz.rs`).
//!
//! Each function takes arbitrary bytes, must never panic, and asserts the
//! invariants of its layer; a failed assertion is a bug to fix, and the
//! input that found it goes to `tests/data/fuzz-regressions/`.

use bytes::Bytes;

use crate::sip::{
    validate, AuthValue, Contact, Framing, Head, HeaderName, Message, NameAddr, Status, Uri,
    Verdict, Via,
};

/// Message framing, validation and editing.
///
/// Invariants: parsing never panics; a parsed message re-serialises to its
/// own bytes and re-parses to the same fields; stream framing of the same
/// bytes agrees with datagram framing when Content-Length is present; a
/// message validation accepts is still accepted after a proxy hop's edits.
pub fn message(data: &[u8]) {
    let stream = Head::parse(data, Framing::Stream);
    let Ok(m) = Message::parse_datagram(Bytes::copy_from_slice(data)) else {
        return;
    };
    let out = m.edit().finish();
    assert_eq!(
        out,
        m.as_bytes(),
        "untouched message must serialise to itself"
    );
    let again = Message::parse_datagram(Bytes::from(out)).expect("re-parse of own output");
    assert!(m.fields().eq(again.fields()), "re-parse changed the fields");
    assert_eq!(m.body(), again.body());

    if m.header(HeaderName::ContentLength).is_some() {
        match stream {
            Ok(Status::Complete(h)) => assert_eq!(h.body, m.head().body),
            other => panic!("stream framing disagrees: {other:?}"),
        }
    }

    let verdict = validate(&m);
    if verdict == Verdict::Accept && m.is_request() {
        let mut e = m.edit();
        e.push_via(b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfuzz")
            .set_max_forwards(69)
            .add_record_route(b"<sip:127.0.0.1;lr>");
        let hop = Message::parse_datagram(Bytes::from(e.finish())).expect("hop parses");
        assert_eq!(
            validate(&hop),
            Verdict::Accept,
            "a proxy hop broke an accepted message"
        );
        let mut e = hop.edit();
        e.remove_top_via();
        let back = Message::parse_datagram(Bytes::from(e.finish())).expect("back parses");
        assert!(
            back.values(HeaderName::Via).eq(m.values(HeaderName::Via)),
            "removing our Via must restore the Via set"
        );
    }
}

/// URI and address decoding.
pub fn uri(data: &[u8]) {
    if let Ok(Uri::Sip(s)) = Uri::parse(data) {
        if let (Some(raw), Some(decoded)) = (s.user, s.user_unescaped()) {
            assert!(decoded.len() <= raw.len());
        }
    }
    if let Ok(a) = NameAddr::parse(data) {
        let _ = a.check();
        let _ = a.tag();
        for p in a.params.iter() {
            let _ = p;
        }
    }
    if let Ok(Contact::Addr(c)) = Contact::parse(data) {
        assert!(c.parsed_uri().is_ok());
    }
    let _ = Via::parse_strict(data).map(|v| (v.branch(), v.rport(), v.received()));
}

/// Authentication header parameters.
pub fn auth(data: &[u8]) {
    if let Ok(a) = AuthValue::parse(data) {
        for p in a.iter() {
            let (name, _value) = p.expect("parse checked every parameter");
            assert!(!name.is_empty());
        }
        let _ = a.get(b"nonce");
    }
}
