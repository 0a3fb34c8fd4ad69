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

/// The proxy core with the demo configuration: up to eight datagrams
/// (split on NUL bytes; each one's first byte picks the sender: the
/// carrier, the friend `branch`, a phone on UDP, a peer on TCP), every
/// request the proxy forwards answered by its target (180, then 200 with
/// a Contact), registrations made durable at once, then two minutes of
/// timers.
///
/// Invariants: nothing panics, and everything the proxy sends frames and
/// parses again.
pub fn proxy(data: &[u8]) {
    use std::net::SocketAddr;
    use std::sync::{Arc, OnceLock};
    use std::time::{Duration, Instant};

    use crate::proxy::router::TableRouter;
    use crate::proxy::{timer::TimerConfig, Peer, Proxy, ProxyConfig, Services, Transport};
    use crate::sip::{response_to, Method, StatusCode};

    // The routing table is built once; the state an input can change
    // (bans, replay counters, bindings) is fresh for each, so a finding
    // replays alone.
    static CONFIG: OnceLock<(crate::config::Config, crate::route::RoutingTable)> = OnceLock::new();
    let (cfg, table) = CONFIG.get_or_init(|| {
        let cfg = crate::config::parse(include_str!("../config/tandem.toml")).expect("demo");
        let table = crate::route::RoutingTable::build(&cfg).expect("demo table");
        (cfg, table)
    });
    let start = Instant::now();
    let services = Services {
        auth: Arc::new(crate::auth::Authenticator::new(
            crate::auth::AuthConfig::from_config(&cfg.auth),
            [7; 32],
        )),
        registrar: Arc::new(crate::registrar::Registrar::new(
            crate::registrar::RegistrarConfig::from_config(&cfg.registrar),
        )),
        workers: 1,
        clock: crate::proxy::WallClock {
            at: start,
            unix: 1_800_000_000,
        },
    };
    let mut proxy = Proxy::with_services(
        ProxyConfig {
            advertised_host: "127.0.0.1".into(),
            listen_port: 5060,
            tcp_port: 5060,
            worker_port: 40000,
            alt: None,
            worker: 0,
            max_transactions: 64,
            timers: TimerConfig::default(),
            seed: 1,
            secret: [3; 32],
        },
        services.clone(),
    );
    let peers = [
        Peer::udp(SocketAddr::from(([127, 0, 0, 2], 5090))),
        Peer::udp(SocketAddr::from(([127, 0, 0, 1], 5070))),
        Peer::udp(SocketAddr::from(([127, 0, 0, 9], 40000))),
        Peer {
            addr: SocketAddr::from(([127, 0, 0, 9], 40001)),
            transport: Transport::Tcp,
            conn: Some(1),
        },
    ];
    let mut now = start;
    let router = TableRouter::with_registrar(table, &services.registrar, services.clock.unix(now));
    // What arrives: the fuzzer's datagrams first, then the answers of the
    // targets to what the proxy forwards (bounded).
    let mut inbox: std::collections::VecDeque<(Peer, Bytes)> = data
        .split(|&b| b == 0)
        .filter(|c| !c.is_empty())
        .take(8)
        .map(|c| {
            (
                peers[usize::from(c[0]) % peers.len()],
                Bytes::copy_from_slice(&c[1..]),
            )
        })
        .collect();
    let mut answers = 0;
    let mut settle =
        |proxy: &mut Proxy, now: Instant, inbox: &mut std::collections::VecDeque<(Peer, Bytes)>| {
            while let Some(p) = proxy.poll_persist() {
                proxy.persisted(now, p.ticket, true);
            }
            while proxy.poll_handover().is_some() {}
            while let Some(t) = proxy.poll_transmit() {
                let sent = Message::parse_datagram(t.data.clone()).unwrap_or_else(|e| {
                    panic!(
                        "the proxy sent what does not parse ({e}): {:?}",
                        String::from_utf8_lossy(&t.data)
                    )
                });
                let forwarded =
                    matches!(sent.method(), Some(m) if m != Method::ACK && m != Method::CANCEL);
                if forwarded && answers < 16 {
                    answers += 2;
                    let contact: &[u8] = b"<sip:target@127.0.0.1:5070>";
                    for (code, reason) in [(180, "Ringing"), (200, "OK")] {
                        let r = response_to(
                            &sent,
                            StatusCode(code),
                            reason,
                            Some(b"fz"),
                            &[("Contact", contact)],
                        );
                        inbox.push_back((t.peer, Bytes::from(r)));
                    }
                }
            }
        };
    while let Some((from, msg)) = inbox.pop_front() {
        proxy.handle(now, msg, from, &router);
        settle(&mut proxy, now, &mut inbox);
        now += Duration::from_millis(10);
    }
    for _ in 0..12 {
        now += Duration::from_secs(10);
        proxy.handle_timeout(now);
        settle(&mut proxy, now, &mut inbox);
    }
}
