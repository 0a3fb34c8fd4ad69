//! Registrar tests: RFC 3261 §10.3 semantics with a simulated clock,
//! decoding of real REGISTERs (RFC 4475 included), the log records and
//! their replay, and the persister over a temporary directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tandem::proxy::{Peer, Transport};
use tandem::registrar::record::{self, DecodeError};
use tandem::registrar::{
    contact_values, request, Binding, ContactSpec, Registrar, RegistrarConfig, Update, UpdateError,
};
use tandem::shell::persist;
use tandem::sip::{validate, Message, Verdict};

const T0: u64 = 1_700_000_000;
const AOR: &str = "alice@example.com";

fn cfg(max_bindings: usize) -> RegistrarConfig {
    RegistrarConfig {
        min_expires: 60,
        max_expires: 3600,
        default_expires: 1800,
        max_bindings,
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, 7], port))
}

/// A REGISTER for [`AOR`] from `addr(5060)` over UDP.
fn req<'a>(
    contacts: &[(&'a str, Option<u32>)],
    expires: Option<u32>,
    call_id: &'a str,
    cseq: u32,
) -> Update<'a> {
    Update {
        aor: AOR,
        contacts: contacts
            .iter()
            .map(|&(uri, expires)| ContactSpec::Uri {
                uri,
                expires,
                q: None,
            })
            .collect(),
        expires,
        call_id,
        cseq,
        source: addr(5060),
        transport: Transport::Udp,
        conn: None,
        worker: 0,
    }
}

fn wildcard<'a>(expires: Option<u32>, call_id: &'a str, cseq: u32) -> Update<'a> {
    Update {
        contacts: vec![ContactSpec::Wildcard],
        ..req(&[], expires, call_id, cseq)
    }
}

/// `(contact, seconds left)` of the live bindings of [`AOR`].
fn state(r: &Registrar, now: u64) -> Vec<(String, u64)> {
    r.lookup(AOR, now)
        .iter()
        .map(|b| (b.contact.to_string(), b.expires - now))
        .collect()
}

fn owned(v: &[(&str, u64)]) -> Vec<(String, u64)> {
    v.iter().map(|&(c, s)| (c.to_owned(), s)).collect()
}

#[test]
fn register_refresh_and_expiry() {
    let r = Registrar::new(cfg(10));
    let done = r
        .update(T0, &req(&[("sip:a@h", None)], Some(600), "c1", 1))
        .unwrap();
    assert!(done.record.is_some());
    assert_eq!(done.bindings.len(), 1);
    assert_eq!(state(&r, T0), owned(&[("sip:a@h", 600)]));

    // A refresh from a new NAT port over TCP moves the binding there.
    let mut u = req(&[("sip:a@h", None)], Some(900), "c1", 2);
    u.source = addr(40000);
    u.transport = Transport::Tcp;
    u.conn = Some(7);
    u.worker = 3;
    r.update(T0 + 100, &u).unwrap();
    let b = &r.lookup(AOR, T0 + 100)[0];
    assert_eq!(
        (b.source, b.transport, b.conn, b.worker, b.cseq, b.expires),
        (addr(40000), Transport::Tcp, Some(7), 3, 2, T0 + 1000)
    );
    assert_eq!((r.len(), r.bindings()), (1, 1));

    // Expired: gone from lookups, still in the raw slice until purged.
    assert!(r.lookup(AOR, T0 + 1000).is_empty());
    assert_eq!(r.with_bindings(AOR, T0 + 1000, <[Binding]>::len), 1);
    let mut seen = 0;
    r.for_each_binding(T0 + 1000, |_, _| seen += 1);
    assert_eq!(seen, 0);
    assert_eq!(r.purge(T0 + 999), 0);
    assert_eq!(r.purge(T0 + 1000), 1);
    assert!(r.is_empty());
    assert_eq!(r.with_bindings(AOR, T0, <[Binding]>::len), 0);
}

#[test]
fn lifetimes_come_from_param_header_or_default_within_bounds() {
    /// (contact expires param, Expires header, granted seconds or error)
    type Case = (Option<u32>, Option<u32>, Result<u64, UpdateError>);
    let cases: &[Case] = &[
        (None, None, Ok(1800)),
        (None, Some(120), Ok(120)),
        (Some(300), Some(120), Ok(300)),
        (Some(60), None, Ok(60)),
        (None, Some(7200), Ok(3600)),
        (Some(u32::MAX), None, Ok(3600)),
        (
            Some(59),
            Some(600),
            Err(UpdateError::IntervalTooBrief { min_expires: 60 }),
        ),
        (
            None,
            Some(1),
            Err(UpdateError::IntervalTooBrief { min_expires: 60 }),
        ),
    ];
    for (i, &(param, header, ref want)) in cases.iter().enumerate() {
        let r = Registrar::new(cfg(10));
        let got = r
            .update(T0, &req(&[("sip:a@h", param)], header, "c", 1))
            .map(|d| d.bindings[0].expires - T0);
        assert_eq!(&got, want, "case {i}");
    }

    // One brief contact rejects the whole request: nothing changes.
    let r = Registrar::new(cfg(10));
    r.update(T0, &req(&[("sip:a@h", None)], Some(600), "c", 1))
        .unwrap();
    let u = req(
        &[("sip:b@h", Some(600)), ("sip:a@h", Some(30))],
        None,
        "c",
        2,
    );
    assert_eq!(
        r.update(T0, &u).err(),
        Some(UpdateError::IntervalTooBrief { min_expires: 60 })
    );
    assert_eq!(state(&r, T0), owned(&[("sip:a@h", 600)]));
}

#[test]
fn expires_zero_removes() {
    let r = Registrar::new(cfg(10));
    r.update(
        T0,
        &req(&[("sip:a@h", None), ("sip:b@h", None)], Some(600), "c", 1),
    )
    .unwrap();
    // The contact parameter wins over the header.
    let d = r
        .update(T0, &req(&[("sip:a@h", Some(0))], Some(600), "c", 2))
        .unwrap();
    assert_eq!(d.bindings.len(), 1);
    assert!(d.record.is_some());
    assert_eq!(state(&r, T0), owned(&[("sip:b@h", 600)]));
    // Removing what is not there changes nothing: no record.
    let d = r
        .update(T0, &req(&[("sip:zz@h", None)], Some(0), "c", 3))
        .unwrap();
    assert!(d.record.is_none());
    let d = r
        .update(T0, &req(&[("sip:b@h", None)], Some(0), "c", 4))
        .unwrap();
    assert!(d.bindings.is_empty() && d.record.is_some());
    assert!(r.is_empty());
    // Removing from an unknown AoR.
    let d = r
        .update(T0, &req(&[("sip:b@h", None)], Some(0), "c", 5))
        .unwrap();
    assert!(d.bindings.is_empty() && d.record.is_none());
}

#[test]
fn wildcard_rules() {
    let r = Registrar::new(cfg(10));
    r.update(
        T0,
        &req(&[("sip:a@h", None), ("sip:b@h", None)], None, "c", 5),
    )
    .unwrap();
    for (u, err) in [
        (wildcard(None, "c", 9), "Contact * needs Expires: 0"),
        (wildcard(Some(60), "c", 9), "Contact * needs Expires: 0"),
        (
            Update {
                contacts: vec![
                    ContactSpec::Wildcard,
                    ContactSpec::Uri {
                        uri: "sip:a@h",
                        expires: None,
                        q: None,
                    },
                ],
                ..req(&[], Some(0), "c", 9)
            },
            "Contact * with other contacts",
        ),
    ] {
        assert_eq!(r.update(T0, &u).err(), Some(UpdateError::Invalid(err)));
    }
    // Same Call-ID, CSeq not higher: refused, nothing removed.
    assert_eq!(
        r.update(T0, &wildcard(Some(0), "c", 5)).err(),
        Some(UpdateError::OutOfOrder)
    );
    assert_eq!(r.bindings(), 2);
    // Another Call-ID (a rebooted phone) removes everything, whatever CSeq.
    let d = r.update(T0, &wildcard(Some(0), "other", 1)).unwrap();
    assert!(d.bindings.is_empty() && d.record.is_some());
    assert!(r.is_empty());
    // On nothing: fine, no record.
    assert!(r
        .update(T0, &wildcard(Some(0), "c", 10))
        .unwrap()
        .record
        .is_none());
}

#[test]
fn call_id_and_cseq_order() {
    let r = Registrar::new(cfg(10));
    r.update(T0, &req(&[("sip:a@h", None)], Some(600), "c", 10))
        .unwrap();
    for cseq in [9, 10] {
        assert_eq!(
            r.update(T0 + 5, &req(&[("sip:a@h", None)], Some(900), "c", cseq))
                .err(),
            Some(UpdateError::OutOfOrder),
        );
    }
    // Out of order on one contact aborts the others too.
    let u = req(
        &[("sip:new@h", None), ("sip:a@h", Some(0))],
        Some(600),
        "c",
        3,
    );
    assert_eq!(r.update(T0, &u).err(), Some(UpdateError::OutOfOrder));
    assert_eq!(state(&r, T0), owned(&[("sip:a@h", 600)]));
    // A new Call-ID with a lower CSeq updates and takes over.
    r.update(T0, &req(&[("sip:a@h", None)], Some(900), "d", 1))
        .unwrap();
    assert_eq!(state(&r, T0), owned(&[("sip:a@h", 900)]));
    assert_eq!(&*r.lookup(AOR, T0)[0].call_id, "d");
    r.update(T0, &req(&[("sip:a@h", None)], Some(300), "d", 2))
        .unwrap();
    assert_eq!(state(&r, T0), owned(&[("sip:a@h", 300)]));
    // An expired binding does not hold a CSeq against anyone.
    r.update(T0 + 300, &req(&[("sip:a@h", None)], Some(300), "d", 1))
        .unwrap();
}

#[test]
fn the_cap_replaces_the_binding_that_expires_first() {
    let r = Registrar::new(cfg(2));
    r.update(T0, &req(&[("sip:a@h", None)], Some(200), "c", 1))
        .unwrap();
    r.update(T0, &req(&[("sip:b@h", None)], Some(100), "c", 2))
        .unwrap();
    let d = r
        .update(T0, &req(&[("sip:c@h", None)], Some(300), "c", 3))
        .unwrap();
    assert_eq!(d.bindings.len(), 2);
    let mut s = state(&r, T0);
    s.sort();
    assert_eq!(s, owned(&[("sip:a@h", 200), ("sip:c@h", 300)]));
    // A refresh of an existing binding is not a new one.
    r.update(T0, &req(&[("sip:a@h", None)], Some(400), "c", 4))
        .unwrap();
    assert_eq!(r.bindings(), 2);
}

/// The cap never replaces a binding the same REGISTER sets: one that
/// names more live contacts than the cap is refused whole, and one that
/// fits keeps all of its own, replacing only older ones.
#[test]
fn the_cap_never_replaces_the_request_s_own_contacts() {
    let r = Registrar::new(cfg(3));
    for (i, c) in ["sip:a@h", "sip:b@h", "sip:c@h"].iter().enumerate() {
        r.update(T0, &req(&[(c, Some(600))], None, "c", i as u32 + 1))
            .unwrap();
    }
    let two = req(
        &[("sip:d@h", Some(60)), ("sip:e@h", Some(60))],
        None,
        "c",
        4,
    );
    r.update(T0, &two).unwrap();
    let mut s = state(&r, T0);
    s.sort();
    assert_eq!(s.len(), 3);
    assert!(s.iter().any(|(c, _)| c == "sip:d@h"), "{s:?}");
    assert!(s.iter().any(|(c, _)| c == "sip:e@h"), "{s:?}");

    let five: Vec<String> = (0..5).map(|i| format!("sip:m{i}@h")).collect();
    let contacts: Vec<(&str, Option<u32>)> = five.iter().map(|c| (c.as_str(), None)).collect();
    let e = r
        .update(T0, &req(&contacts, Some(600), "c", 5))
        .unwrap_err();
    assert!(
        matches!(e, UpdateError::TooManyContacts { max: 3 }),
        "{e:?}"
    );
    assert_eq!(state(&r, T0).len(), 3, "nothing applied");
    // The same contact twice counts once; a removal does not count.
    let same = [
        ("sip:x@h", None),
        ("sip:x@h", None),
        ("sip:y@h", None),
        ("sip:z@h", None),
    ];
    r.update(T0, &req(&same, Some(600), "c", 6)).unwrap();
    let gone = [
        ("sip:x@h", Some(0)),
        ("sip:p@h", None),
        ("sip:q@h", None),
        ("sip:s@h", None),
    ];
    r.update(T0, &req(&gone, Some(600), "c", 7)).unwrap();
    let mut s = state(&r, T0);
    s.sort();
    assert_eq!(
        s,
        owned(&[("sip:p@h", 600), ("sip:q@h", 600), ("sip:s@h", 600)])
    );
}

#[test]
fn bindings_come_highest_q_first() {
    let r = Registrar::new(cfg(10));
    let contacts = [
        ("sip:low@h", Some(100)),
        ("sip:none@h", None),
        ("sip:mid@h", Some(500)),
        ("sip:top@h", Some(1000)),
    ];
    let u = Update {
        contacts: contacts
            .iter()
            .map(|&(uri, q)| ContactSpec::Uri {
                uri,
                expires: None,
                q,
            })
            .collect(),
        ..req(&[], Some(600), "c", 1)
    };
    let d = r.update(T0, &u).unwrap();
    let order: Vec<&str> = d.bindings.iter().map(|b| &*b.contact).collect();
    assert_eq!(order, ["sip:none@h", "sip:top@h", "sip:mid@h", "sip:low@h"]);
    assert_eq!(r.lookup(AOR, T0), d.bindings);
    // A fetch (no contacts) returns the same, and writes nothing.
    let f = r.update(T0, &req(&[], None, "x", 1)).unwrap();
    assert_eq!((f.bindings, f.record), (d.bindings, None));
}

#[test]
fn contact_values_count_down() {
    let r = Registrar::new(cfg(10));
    let d = r
        .update(
            T0,
            &req(
                &[("sip:a@h;transport=tcp", Some(600)), ("sip:b@h", Some(60))],
                None,
                "c",
                1,
            ),
        )
        .unwrap();
    assert_eq!(
        contact_values(&d.bindings, T0 + 10),
        [
            "<sip:a@h;transport=tcp>;expires=590",
            "<sip:b@h>;expires=50"
        ]
    );
    assert_eq!(
        contact_values(&d.bindings, T0 + 60),
        ["<sip:a@h;transport=tcp>;expires=540"]
    );
}

// --- decoding REGISTERs -------------------------------------------------

fn message(text: &str) -> Message {
    let m = Message::parse_datagram(Bytes::from(text.replace('\n', "\r\n"))).unwrap();
    assert_eq!(validate(&m), Verdict::Accept, "{text}");
    m
}

fn rfc4475(name: &str) -> Option<Message> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/rfc4475")
        .join(format!("{name}.dat"));
    let raw = std::fs::read(path).ok()?;
    let m = Message::parse_datagram(Bytes::from(raw)).unwrap();
    assert_eq!(validate(&m), Verdict::Accept, "{name}");
    Some(m)
}

fn peer() -> Peer {
    Peer {
        addr: addr(5062),
        transport: Transport::Udp,
        conn: None,
    }
}

#[test]
fn decodes_contact_lists_and_params() {
    let m = message(
        "REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP 192.168.1.5:5062;branch=z9hG4bK1;rport
Max-Forwards: 70
From: <sip:alice@example.com>;tag=1
To: <sip:alice@example.com>
Call-ID: 843817637684230@998sdasdh09
CSeq: 1826 REGISTER
Contact: \"Alice, desk\" <sip:alice@192.168.1.5:5062;transport=udp>;q=0.7;expires=120, <sip:alice@10.0.0.1>
m: <sip:alice@10.0.0.2>;q=0.1;+sip.instance=\"<urn:uuid:1>\"
Expires: 600
Content-Length: 0

",
    );
    let u = request::decode(&m, AOR, peer(), 2).unwrap();
    assert_eq!(
        u.contacts,
        [
            ContactSpec::Uri {
                uri: "sip:alice@192.168.1.5:5062;transport=udp",
                expires: Some(120),
                q: Some(700)
            },
            ContactSpec::Uri {
                uri: "sip:alice@10.0.0.1",
                expires: None,
                q: None
            },
            ContactSpec::Uri {
                uri: "sip:alice@10.0.0.2",
                expires: None,
                q: Some(100)
            },
        ]
    );
    assert_eq!(
        (u.expires, u.call_id, u.cseq, u.source, u.worker),
        (
            Some(600),
            "843817637684230@998sdasdh09",
            1826,
            addr(5062),
            2
        )
    );
    let r = Registrar::new(cfg(10));
    let d = r.update(T0, &u).unwrap();
    assert_eq!(
        contact_values(&d.bindings, T0),
        [
            "<sip:alice@10.0.0.1>;expires=600",
            "<sip:alice@192.168.1.5:5062;transport=udp>;expires=120",
            "<sip:alice@10.0.0.2>;expires=600",
        ]
    );

    let m = message(
        "REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP 192.168.1.5:5062;branch=z9hG4bK2
Max-Forwards: 70
From: <sip:alice@example.com>;tag=1
To: <sip:alice@example.com>
Call-ID: x
CSeq: 1827 REGISTER
Contact: *
Expires: 0
Content-Length: 0

",
    );
    let u = request::decode(&m, AOR, peer(), 0).unwrap();
    assert_eq!(
        (&u.contacts[..], u.expires),
        (&[ContactSpec::Wildcard][..], Some(0))
    );
    r.update(T0, &u).unwrap();
    assert!(r.is_empty());

    // No Contact: a fetch.
    let m = message(
        "REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP 192.168.1.5:5062;branch=z9hG4bK3
Max-Forwards: 70
From: <sip:alice@example.com>;tag=1
To: <sip:alice@example.com>
Call-ID: x
CSeq: 1828 REGISTER
Content-Length: 0

",
    );
    let (contacts, expires, call_id, cseq) = request::contacts(&m).unwrap();
    assert_eq!(
        (contacts, expires, call_id, cseq),
        (vec![], None, "x", 1828)
    );
}

#[test]
fn rfc4475_registers() {
    // (file, AoR, the bound URIs as a registrar must keep them)
    let cases: &[(&str, &str, &[&str])] = &[
        // The parameter after an addr-spec is a contact parameter.
        (
            "cparam01",
            "watson@example.com",
            &["sip:+19725552222@gw1.example.net"],
        ),
        // Inside <> it is a URI parameter and stays.
        (
            "cparam02",
            "watson@example.com",
            &["sip:+19725552222@gw1.example.net;unknownparam"],
        ),
        // The escaped header stays, and comes back in the 200.
        (
            "regescrt",
            "user@example.com",
            &["sip:user@example.com?Route=%3Csip:sip.example.com%3E"],
        ),
        // Escaped NULs: two distinct bindings, nothing truncated.
        (
            "escnull",
            "null-%00-null@example.com",
            &["sip:%00@host5.example.com", "sip:%00%00@host5.example.com"],
        ),
    ];
    for &(name, aor, want) in cases {
        let Some(m) = rfc4475(name) else { continue };
        let r = Registrar::new(cfg(10));
        let u = request::decode(&m, aor, peer(), 0).unwrap();
        let d = r.update(T0, &u).unwrap();
        let got: Vec<&str> = d.bindings.iter().map(|b| &*b.contact).collect();
        assert_eq!(got, want, "{name}");
        let values = contact_values(&d.bindings, T0);
        assert_eq!(values[0], format!("<{}>;expires=1800", want[0]), "{name}");
    }
    // A contact with a scheme no request can be sent to.
    if let Some(m) = rfc4475("unksm2") {
        assert_eq!(
            request::decode(&m, AOR, peer(), 0).err(),
            Some(UpdateError::Invalid("Contact URI is not sip"))
        );
    }
    // A sips contact could only be reached over TLS, which is not offered.
    let m = Message::parse_datagram(Bytes::from_static(
        b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-s\r\n\
          Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=1\r\n\
          To: <sip:alice@example.com>\r\nCall-ID: s@h\r\nCSeq: 1 REGISTER\r\n\
          Contact: <sips:alice@192.0.2.1>\r\nContent-Length: 0\r\n\r\n",
    ))
    .unwrap();
    assert_eq!(
        request::decode(&m, AOR, peer(), 0).err(),
        Some(UpdateError::Invalid("Contact needs TLS (not offered)"))
    );
    let tls = String::from_utf8_lossy(m.buffer()).replace(
        "<sips:alice@192.0.2.1>",
        "<sip:alice@192.0.2.1;transport=TLS>",
    );
    let m = Message::parse_datagram(Bytes::from(tls)).unwrap();
    assert_eq!(
        request::decode(&m, AOR, peer(), 0).err(),
        Some(UpdateError::Invalid("Contact needs TLS (not offered)"))
    );
}

// --- records and replay -------------------------------------------------

/// A deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn binding(i: u64) -> Binding {
    Binding {
        contact: format!("sip:user{i}@192.0.2.{}:5060;transport=udp", i % 250).into(),
        source: if i % 3 == 0 {
            std::net::SocketAddrV6::new("2001:db8::1".parse().unwrap(), 5070, 0, 3).into()
        } else {
            addr(i as u16)
        },
        transport: if i % 2 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        },
        conn: None,
        worker: (i % 4) as u16,
        expires: T0 + 1000 + i,
        call_id: format!("{i:032x}").into(),
        cseq: i as u32,
        q: (i % 5 != 0).then_some((i % 1001) as u16),
    }
}

#[test]
fn records_round_trip() {
    for n in [0, 1, 3] {
        let bindings: Vec<Binding> = (0..n).map(binding).collect();
        let mut out = vec![];
        record::encode(42 + n, "bob@example.com", &bindings, &mut out);
        let (rec, len) = record::decode(&out).unwrap();
        assert_eq!(len, out.len());
        assert_eq!((rec.seq, rec.aor), (42 + n, "bob@example.com"));
        assert_eq!(rec.bindings, bindings);
    }
}

/// A log of random updates over a few AoRs, and the registrar that made
/// it.
fn random_log(seed: u64, steps: usize) -> (Registrar, Vec<Vec<u8>>) {
    let r = Registrar::new(cfg(3));
    let mut rng = Rng(seed);
    let mut records = vec![];
    let aors: Vec<String> = (0..5).map(|i| format!("u{i}@example.com")).collect();
    let uris: Vec<String> = (0..6).map(|i| format!("sip:c{i}@192.0.2.1")).collect();
    for step in 0..steps {
        let u = Update {
            aor: &aors[rng.below(5) as usize],
            contacts: if rng.below(10) == 0 {
                vec![ContactSpec::Wildcard]
            } else {
                (0..1 + rng.below(2))
                    .map(|_| ContactSpec::Uri {
                        uri: &uris[rng.below(6) as usize],
                        expires: Some([0, 60, 600, 3600][rng.below(4) as usize]),
                        q: None,
                    })
                    .collect()
            },
            expires: Some(0),
            call_id: "c",
            cseq: step as u32 + 1,
            source: addr(rng.below(60000) as u16),
            transport: Transport::Udp,
            conn: None,
            worker: 0,
        };
        if let Ok(d) = r.update(T0, &u) {
            records.extend(d.record);
        }
    }
    (r, records)
}

fn dump(r: &Registrar, now: u64) -> Vec<(String, Vec<Binding>)> {
    let mut all: Vec<(String, Vec<Binding>)> = (0..5)
        .map(|i| format!("u{i}@example.com"))
        .map(|a| {
            let b = r.lookup(&a, now);
            (a, b)
        })
        .filter(|(_, b)| !b.is_empty())
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

#[test]
fn replay_is_idempotent_and_order_independent() {
    for seed in 1..20 {
        let (orig, records) = random_log(seed * 7919, 200);
        let want = dump(&orig, T0);
        let mut rng = Rng(seed);
        for round in 0..4 {
            let mut recs = records.clone();
            match round {
                0 => {}
                1 => recs.reverse(),
                _ => {
                    for i in (1..recs.len()).rev() {
                        recs.swap(i, rng.below(i as u64 + 1) as usize);
                    }
                }
            }
            let log = recs.concat();
            let r = Registrar::new(cfg(3));
            let stats = r.replay(&log, T0);
            assert_eq!(
                (stats.records, stats.valid_len, stats.torn),
                (recs.len(), log.len(), false)
            );
            assert_eq!(dump(&r, T0), want, "seed {seed} round {round}");
            // Twice is the same as once.
            r.replay(&log, T0);
            assert_eq!(
                dump(&r, T0),
                want,
                "seed {seed} round {round}, replayed twice"
            );
            // Updates after a replay get higher sequence numbers than the log.
            let d = r
                .update(
                    T0,
                    &Update {
                        aor: "u0@example.com",
                        ..req(&[("sip:z@h", None)], Some(600), "new", 1)
                    },
                )
                .unwrap();
            let mut log2 = log.clone();
            log2.extend(d.record.unwrap());
            let r2 = Registrar::new(cfg(3));
            r2.replay(&log2, T0);
            assert!(r2
                .lookup("u0@example.com", T0)
                .iter()
                .any(|b| &*b.contact == "sip:z@h"));
        }
    }
}

#[test]
fn replay_skips_expired_and_snapshot_compacts() {
    let (orig, records) = random_log(99, 300);
    let log = records.concat();
    // Half an hour later the 60 s and 600 s bindings are gone.
    let later = T0 + 1800;
    let r = Registrar::new(cfg(3));
    r.replay(&log, later);
    assert_eq!(dump(&r, later), dump(&orig, later));
    assert!(r.with_bindings("u0@example.com", later, |b| b
        .iter()
        .all(|b| b.expires > later)));

    let mut snap = vec![];
    orig.snapshot(T0, &mut snap);
    assert!(snap.len() < log.len());
    let r = Registrar::new(cfg(3));
    let stats = r.replay(&snap, T0);
    assert_eq!(stats.records, orig.len());
    assert_eq!(dump(&r, T0), dump(&orig, T0));
}

#[test]
fn a_torn_tail_keeps_what_precedes_it() {
    let (_, records) = random_log(5, 50);
    let log = records.concat();
    let last = records.last().unwrap().len();
    let before = log.len() - last;
    let want = {
        let r = Registrar::new(cfg(3));
        r.replay(&log[..before], T0);
        dump(&r, T0)
    };
    for cut in before..log.len() {
        let r = Registrar::new(cfg(3));
        let s = r.replay(&log[..cut], T0);
        assert_eq!(
            (s.records, s.valid_len, s.torn),
            (records.len() - 1, before, cut != before),
            "cut at {cut}"
        );
        assert_eq!(dump(&r, T0), want, "cut at {cut}");
    }
    // A flipped bit in the middle stops the replay there.
    let mut bad = log.clone();
    bad[records[0].len() + 12] ^= 0x10;
    let s = Registrar::new(cfg(3)).replay(&bad, T0);
    assert_eq!(
        (s.records, s.valid_len, s.torn),
        (1, records[0].len(), true)
    );
}

#[test]
fn garbage_never_panics() {
    let (_, records) = random_log(11, 40);
    let log = records.concat();
    let mut rng = Rng(0x5eed);
    for i in 0..20_000 {
        let mut buf = match i % 4 {
            // Random bytes.
            0 => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
            // A valid log with random bytes changed.
            1 => {
                let mut b = log.clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(b.len() as u64) as usize;
                    b[at] = rng.next() as u8;
                }
                b
            }
            // A truncated valid log.
            2 => log[..rng.below(log.len() as u64) as usize].to_vec(),
            // A random payload under a correct header: the CRC passes, so
            // the payload grammar itself is exercised.
            _ => {
                let mut payload: Vec<u8> =
                    records[rng.below(records.len() as u64) as usize][8..].to_vec();
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(payload.len() as u64) as usize;
                    payload[at] = rng.next() as u8;
                }
                payload.truncate(payload.len() - rng.below(4) as usize);
                let mut b = (payload.len() as u32).to_le_bytes().to_vec();
                b.extend(crc32fast::hash(&payload).to_le_bytes());
                b.extend(payload);
                b
            }
        };
        if i % 7 == 0 {
            buf.extend_from_slice(&[0xff; 8]);
        }
        let r = Registrar::new(cfg(3));
        let s = r.replay(&buf, T0);
        assert!(s.valid_len <= buf.len());
        if let Err(e) = record::decode(&buf) {
            assert!(matches!(e, DecodeError::Incomplete | DecodeError::Corrupt));
        }
    }
    // An absurd length is corruption, not a wait for more input.
    let mut b = u32::MAX.to_le_bytes().to_vec();
    b.extend([0; 8]);
    assert_eq!(record::decode(&b).err(), Some(DecodeError::Corrupt));
}

#[test]
fn concurrent_readers_and_writers() {
    let r = Arc::new(Registrar::new(cfg(4)));
    let threads: Vec<_> = (0..4u16)
        .map(|t| {
            let r = Arc::clone(&r);
            std::thread::spawn(move || {
                for i in 0..2000u32 {
                    let aor = format!("u{}@example.com", i % 50);
                    let uri = format!("sip:t{t}@192.0.2.1");
                    let u = Update {
                        aor: &aor,
                        worker: t,
                        ..req(&[(&uri, None)], Some(600), "c", i + 1)
                    };
                    r.update(T0, &u).unwrap();
                    let n = r.with_bindings(&aor, T0, <[Binding]>::len);
                    assert!((1..=4).contains(&n));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!((r.len(), r.bindings()), (50, 200));
}

// --- the persister -----------------------------------------------------

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p =
            std::env::temp_dir().join(format!("tandem-registrar-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn persisted_bindings_survive_a_restart() {
    let dir = TempDir::new("restart");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let now = persist::now_unix();
    assert!(now > T0);

    let r = Arc::new(Registrar::new(cfg(10)));
    let opened = persist::open(&dir.0, Arc::clone(&r), now).unwrap();
    assert_eq!((opened.replay.records, opened.bindings), (0, 0));
    let p = opened.persister;
    let aors: Vec<String> = (0..20).map(|i| format!("u{i}@example.com")).collect();
    let mut waits = vec![];
    for (i, aor) in aors.iter().enumerate() {
        let u = Update {
            aor,
            ..req(
                &[("sip:a@192.0.2.1", None), ("sip:b@192.0.2.1", None)],
                Some(600),
                "c",
                1,
            )
        };
        waits.push(p.persist(r.update(now, &u).unwrap().record.unwrap()));
        if i % 2 == 0 {
            let u = Update {
                aor,
                ..req(&[("sip:b@192.0.2.1", None)], Some(0), "c", 2)
            };
            waits.push(p.persist(r.update(now, &u).unwrap().record.unwrap()));
        }
    }
    // Another clone, another thread.
    let p2 = p.clone();
    let (r2, aor0) = (Arc::clone(&r), aors[0].clone());
    let w = std::thread::spawn(move || {
        let u = Update {
            aor: &aor0,
            ..req(&[("sip:c@192.0.2.1", None)], Some(900), "c", 3)
        };
        p2.persist(r2.update(now, &u).unwrap().record.unwrap())
    })
    .join()
    .unwrap();
    waits.push(w);
    rt.block_on(async {
        for w in waits {
            w.await.unwrap().unwrap();
        }
    });
    drop(p);
    let snapshot =
        |r: &Registrar| -> Vec<Vec<Binding>> { aors.iter().map(|a| r.lookup(a, now)).collect() };
    let want = snapshot(&r);
    assert_eq!(r.bindings(), 31);

    let fresh = Arc::new(Registrar::new(cfg(10)));
    let opened = persist::open(&dir.0, Arc::clone(&fresh), now).unwrap();
    assert!(!opened.replay.torn);
    assert_eq!((opened.replay.records, opened.bindings), (31, 31));
    assert_eq!(snapshot(&fresh), want);
    drop(opened);
    // Reopening compacted the log to one record per AoR.
    let path = dir.0.join("bindings.log");
    let stats = Registrar::new(cfg(10)).replay(&std::fs::read(&path).unwrap(), now);
    assert_eq!((stats.records, stats.torn), (20, false));

    // A torn tail: the last record half written.
    let mut log = std::fs::read(&path).unwrap();
    let compacted = log.len();
    let mut extra = vec![];
    record::encode(1 << 40, "late@example.com", &[binding(now)], &mut extra);
    log.extend_from_slice(&extra[..extra.len() / 2]);
    std::fs::write(&path, &log).unwrap();
    let again = Arc::new(Registrar::new(cfg(10)));
    let opened = persist::open(&dir.0, Arc::clone(&again), now).unwrap();
    assert!(opened.replay.torn);
    assert_eq!(
        (opened.replay.records, opened.replay.valid_len),
        (20, compacted)
    );
    assert_eq!(snapshot(&again), want);
    // The rewrite dropped the torn bytes.
    assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, compacted);
    // And expired bindings are purged on open.
    drop(opened);
    let late = Arc::new(Registrar::new(cfg(10)));
    let opened = persist::open(&dir.0, Arc::clone(&late), now + 700).unwrap();
    assert_eq!(opened.bindings, 1);
}

#[test]
fn the_writer_compacts_a_growing_log() {
    let dir = TempDir::new("compact");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let now = persist::now_unix();
    let r = Arc::new(Registrar::new(cfg(10)));
    let opened = persist::open_with(&dir.0, Arc::clone(&r), now, 4096).unwrap();
    let aors: Vec<String> = (0..4).map(|i| format!("u{i}@example.com")).collect();
    let mut written = 0;
    // Sequential refreshes: each waits for the previous batch and for any
    // compaction that batch triggered.
    for cseq in 1..=400 {
        let u = Update {
            aor: &aors[cseq as usize % 4],
            ..req(&[("sip:a@192.0.2.1", None)], Some(600 + cseq), "c", cseq)
        };
        let record = r.update(now, &u).unwrap().record.unwrap();
        written += record.len();
        rt.block_on(opened.persister.persist(record))
            .unwrap()
            .unwrap();
    }
    let want: Vec<Vec<Binding>> = aors.iter().map(|a| r.lookup(a, now)).collect();
    drop(opened.persister);
    opened.writer.join().unwrap();
    let path = dir.0.join("bindings.log");
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(
        len <= 4096 + 1024 && written > 4 * len,
        "{len} of {written}"
    );
    assert!(!dir.0.join("bindings.log.tmp").exists());

    let fresh = Arc::new(Registrar::new(cfg(10)));
    let reopened = persist::open(&dir.0, Arc::clone(&fresh), now).unwrap();
    assert!(!reopened.replay.torn);
    let got: Vec<Vec<Binding>> = aors.iter().map(|a| fresh.lookup(a, now)).collect();
    assert_eq!(got, want);
    // A REGISTER after the restart is numbered after everything in the
    // log, so its record wins on the next replay.
    let u = Update {
        aor: &aors[0],
        ..req(&[("sip:a@192.0.2.1", None)], Some(0), "d", 1)
    };
    let record = fresh.update(now, &u).unwrap().record.unwrap();
    rt.block_on(reopened.persister.persist(record))
        .unwrap()
        .unwrap();
    drop(reopened);
    let last = Arc::new(Registrar::new(cfg(10)));
    persist::open(&dir.0, Arc::clone(&last), now).unwrap();
    assert!(last.lookup(&aors[0], now).is_empty());
    assert_eq!(last.lookup(&aors[1], now), want[1]);
}

/// The registrar tells the shell which TCP connections carry a live
/// binding (those are kept open however long they stay silent).
#[test]
fn a_connection_is_held_while_a_binding_lives_on_it() {
    let reg = Registrar::new(cfg(10));
    let over = |conn: u64, call_id, cseq, expires| Update {
        transport: Transport::Tcp,
        conn: Some(conn),
        ..req(
            &[("sip:alice@192.0.2.1;transport=tcp", None)],
            Some(expires),
            call_id,
            cseq,
        )
    };
    assert!(!reg.holds_connection(7, T0), "nothing registered yet");
    reg.update(T0, &over(7, "c1", 1, 600)).unwrap();
    assert!(reg.holds_connection(7, T0 + 599));
    assert!(!reg.holds_connection(8, T0 + 1), "another connection");
    assert!(!reg.holds_connection(7, T0 + 600), "expired");
    assert!(
        !reg.holds_connection(7, T0 + 1),
        "forgotten once found unused"
    );

    // The phone comes back on a new connection: the old one is let go.
    reg.update(T0, &over(7, "c1", 2, 600)).unwrap();
    reg.update(T0 + 10, &over(9, "c1", 3, 600)).unwrap();
    assert!(reg.holds_connection(9, T0 + 20));
    assert!(!reg.holds_connection(7, T0 + 20));

    // Closed by the shell: forgotten even though the binding lives.
    reg.connection_closed(9);
    assert!(!reg.holds_connection(9, T0 + 20));
    // A REGISTER over UDP pins nothing.
    reg.update(
        T0,
        &req(&[("sip:alice@192.0.2.2", None)], Some(600), "c2", 1),
    )
    .unwrap();
    assert!(!reg.holds_connection(0, T0 + 1));
}

/// Two accounts over one connection (a PBX, a multi-line phone): the
/// connection is held while either has a binding on it, whichever was
/// bound last.
#[test]
fn a_connection_carrying_two_aors_is_held_while_either_lives() {
    let reg = Registrar::new(cfg(10));
    let over = |aor, call_id, cseq, expires| Update {
        aor,
        transport: Transport::Tcp,
        conn: Some(7),
        ..req(
            &[("sip:line@192.0.2.1;transport=tcp", None)],
            Some(expires),
            call_id,
            cseq,
        )
    };
    reg.update(T0, &over("alice@acme.example.com", "a", 1, 600))
        .unwrap();
    reg.update(T0, &over("bob@acme.example.com", "b", 1, 600))
        .unwrap();
    reg.update(T0 + 1, &over("bob@acme.example.com", "b", 2, 0))
        .unwrap();
    assert!(reg.holds_connection(7, T0 + 2), "alice still lives on it");
    reg.update(T0 + 3, &over("alice@acme.example.com", "a", 2, 0))
        .unwrap();
    assert!(!reg.holds_connection(7, T0 + 4), "nobody left");
}
