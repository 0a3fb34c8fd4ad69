//! The proxy core on a simulated clock, without sockets: call flows,
//! retransmissions, timers, CANCEL, forking, loops and overload.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem::proxy::{
    timer::TimerConfig, Peer, Proxy, ProxyConfig, Router, Routing, Source, Target, Transmit,
    Transport,
};
use tandem::sip::{HeaderName, Message, StatusCode, Uri, Via};

const A: &str = "127.0.0.10:5070";
const B: &str = "127.0.0.20:5080";
const C: &str = "127.0.0.30:5090";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Routes by the dialled user: `fork` to B and C, `nobody` rejected, the
/// rest to B.
struct TestRouter;

impl Router for TestRouter {
    fn route(&self, _req: &Message, uri: &Uri<'_>, _from: &Peer) -> Routing {
        let target = |a: &str| {
            Target::new(
                Peer::udp(addr(a)),
                Some(format!(
                    "sip:{}@{a}",
                    String::from_utf8_lossy(uri.user().unwrap_or(b""))
                )),
            )
        };
        match uri.user() {
            Some(b"nobody") => Routing::Reject {
                status: StatusCode::NOT_FOUND,
                reason: Cow::Borrowed("Not Found"),
            },
            Some(b"fork") => Routing::Forward(vec![target(B), target(C)]),
            Some(b"tcp") => {
                let mut t = target(B);
                t.peer.transport = Transport::Tcp;
                Routing::Forward(vec![t])
            }
            _ => Routing::Forward(vec![target(B)]),
        }
    }
}

struct Harness {
    proxy: Proxy,
    now: Instant,
}

impl Harness {
    fn new() -> Harness {
        Self::with_limit(1000)
    }

    fn with_limit(max_transactions: usize) -> Harness {
        Self::with_ports(max_transactions, 5060, 5060)
    }

    /// A proxy listening on UDP `listen_port` (0: none) and TCP `tcp_port`.
    fn with_ports(max_transactions: usize, listen_port: u16, tcp_port: u16) -> Harness {
        Harness {
            proxy: Proxy::new(ProxyConfig {
                advertised_host: "127.0.0.1".into(),
                listen_port,
                tcp_port,
                worker_port: 40000,
                alt: None,
                worker: 0,
                max_transactions,
                timers: TimerConfig::default(),
                seed: 0xfeed,
                secret: [0x5e; 32],
            }),
            now: Instant::now(),
        }
    }

    fn recv(&mut self, from: &str, text: &str) -> Vec<(SocketAddr, Source, Message)> {
        self.proxy.handle(
            self.now,
            Bytes::from(text.replace('\n', "\r\n")),
            Peer::udp(addr(from)),
            &TestRouter,
        );
        self.drain()
    }

    fn recv_raw(&mut self, from: &str, raw: Vec<u8>) -> Vec<(SocketAddr, Source, Message)> {
        self.proxy.handle(
            self.now,
            Bytes::from(raw),
            Peer::udp(addr(from)),
            &TestRouter,
        );
        self.drain()
    }

    fn recv_tcp(
        &mut self,
        from: &str,
        conn: u64,
        text: &str,
    ) -> Vec<(SocketAddr, Source, Message)> {
        let peer = Peer {
            addr: addr(from),
            transport: Transport::Tcp,
            conn: Some(conn),
        };
        let data = Bytes::from(text.replace('\n', "\r\n"));
        self.proxy.handle(self.now, data, peer, &TestRouter);
        self.drain()
    }

    fn advance(&mut self, d: Duration) -> Vec<(SocketAddr, Source, Message)> {
        let end = self.now + d;
        let mut out = Vec::new();
        while let Some(t) = self.proxy.poll_timeout().filter(|&t| t <= end) {
            self.now = t.max(self.now);
            self.proxy.handle_timeout(self.now);
            out.extend(self.drain());
        }
        self.now = end;
        out
    }

    fn drain(&mut self) -> Vec<(SocketAddr, Source, Message)> {
        let mut out = Vec::new();
        while let Some(Transmit {
            peer, source, data, ..
        }) = self.proxy.poll_transmit()
        {
            let m = Message::parse_datagram(data).expect("the proxy sends parsable messages");
            out.push((peer.addr, source, m));
        }
        out
    }
}

fn invite(user: &str, branch: &str) -> String {
    format!(
        "INVITE sip:{user}@acme.example.com SIP/2.0
Via: SIP/2.0/UDP {A};branch={branch}
Max-Forwards: 70
From: <sip:alice@acme.example.com>;tag=a1
To: <sip:{user}@acme.example.com>
Call-ID: call-{branch}
CSeq: 1 INVITE
Contact: <sip:alice@{A}>
Content-Length: 0

"
    )
}

/// A response from B to the request `req` that the proxy forwarded.
fn answer(req: &Message, code: u16, to_tag: Option<&str>) -> Vec<u8> {
    let tag = to_tag.map(|t| t.as_bytes());
    let mut extra: Vec<(&str, &[u8])> = Vec::new();
    let contact = format!("<sip:bob@{B}>");
    if code == 200 {
        extra.push(("Contact", contact.as_bytes()));
    }
    let mut r = tandem::sip::response_to(req, StatusCode(code), "X", tag, &extra);
    // response_to copies Record-Route only via the request's lines: add it
    // like a UAS would for a 2xx.
    if let Some(rr) = req.header(HeaderName::RecordRoute) {
        let at = r.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        let line = format!("Record-Route: {}\r\n", String::from_utf8_lossy(rr));
        r.splice(at..at, line.into_bytes());
    }
    r
}

fn status(m: &Message) -> u16 {
    m.status().expect("a response").0
}

fn top_branch(m: &Message) -> String {
    let v = Via::parse(m.values(HeaderName::Via).next().unwrap().unwrap()).unwrap();
    String::from_utf8_lossy(v.branch().unwrap()).into_owned()
}

#[test]
fn call_setup_and_teardown() {
    let mut h = Harness::new();
    let out = h.recv(A, &invite("bob", "z9hG4bK-a1"));
    assert_eq!(out.len(), 2);
    let (to_a, src, trying) = &out[0];
    assert_eq!(
        (*to_a, *src, status(trying)),
        (addr(A), Source::Listen, 100)
    );
    let (to_b, src, fwd) = &out[1];
    assert_eq!((*to_b, *src), (addr(B), Source::Worker));
    assert_eq!(fwd.request_uri(), Some(format!("sip:bob@{B}").as_bytes()));
    assert_eq!(fwd.values(HeaderName::Via).count(), 2);
    assert!(top_branch(fwd).starts_with("z9hG4bK"));
    assert!(
        String::from_utf8_lossy(fwd.values(HeaderName::Via).next().unwrap().unwrap())
            .contains("127.0.0.1:40000")
    );
    assert_eq!(fwd.header(HeaderName::MaxForwards), Some(&b"69"[..]));
    let rr = String::from_utf8(fwd.header(HeaderName::RecordRoute).unwrap().to_vec()).unwrap();
    assert!(rr.starts_with("<sip:127.0.0.1:5060;lr;tdm="), "{rr}");

    let out = h.recv_raw(B, answer(fwd, 180, Some("b1")));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, status(&out[0].2)), (addr(A), 180));
    assert_eq!(
        out[0].2.values(HeaderName::Via).count(),
        1,
        "our Via is removed"
    );

    let out = h.recv_raw(B, answer(fwd, 200, Some("b1")));
    assert_eq!((out[0].0, status(&out[0].2)), (addr(A), 200));
    // A 2xx retransmission passes too (RFC 6026).
    let out = h.recv_raw(B, answer(fwd, 200, Some("b1")));
    assert_eq!((out[0].0, status(&out[0].2)), (addr(A), 200));

    // ACK for the 2xx: a new transaction, routed by the Route set.
    let ack = format!(
        "ACK sip:bob@{B} SIP/2.0
Via: SIP/2.0/UDP {A};branch=z9hG4bK-ack1
Route: {rr}
Max-Forwards: 70
From: <sip:alice@acme.example.com>;tag=a1
To: <sip:bob@acme.example.com>;tag=b1
Call-ID: call-z9hG4bK-a1
CSeq: 1 ACK
Content-Length: 0

"
    );
    let out = h.recv(A, &ack);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, addr(B));
    assert_eq!(
        out[0].2.header(HeaderName::Route),
        None,
        "our Route is popped"
    );

    // The dialog's Route leads only to its other party: B cannot send an
    // in-dialog request through it to a third address (403).
    let relay = format!(
        "MESSAGE sip:premium@192.0.2.99:5060 SIP/2.0
Via: SIP/2.0/UDP {B};branch=z9hG4bK-relay1
Route: {rr}
Max-Forwards: 70
From: <sip:bob@acme.example.com>;tag=b1
To: <sip:alice@acme.example.com>;tag=a1
Call-ID: call-z9hG4bK-a1
CSeq: 2 MESSAGE
Content-Length: 0

"
    );
    let out = h.recv(B, &relay);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, status(&out[0].2)), (addr(B), 403));

    // BYE from B back to A through the Record-Route; B's identity headers
    // do not pass (B is no carrier: RFC 3325 §5).
    let bye = format!(
        "BYE sip:alice@{A} SIP/2.0
Via: SIP/2.0/UDP {B};branch=z9hG4bK-bye1
Route: {rr}
Max-Forwards: 70
From: <sip:bob@acme.example.com>;tag=b1
To: <sip:alice@acme.example.com>;tag=a1
Call-ID: call-z9hG4bK-a1
CSeq: 3 BYE
P-Asserted-Identity: <sip:+34911111111@acme.example.com>
P-Preferred-Identity: <sip:+34922222222@acme.example.com>
Content-Length: 0

"
    );
    let out = h.recv(B, &bye);
    assert_eq!(out.len(), 1);
    let (to, _, fwd_bye) = &out[0];
    assert_eq!(*to, addr(A));
    assert_eq!(fwd_bye.header(HeaderName::PAssertedIdentity), None);
    assert_eq!(fwd_bye.header(HeaderName::PPreferredIdentity), None);
    let resp = answer(fwd_bye, 200, None);
    let out = h.recv_raw(A, resp);
    assert_eq!((out[0].0, status(&out[0].2)), (addr(B), 200));
}

#[test]
fn retransmissions_are_absorbed_and_timers_retransmit() {
    let mut h = Harness::new();
    let out = h.recv(A, &invite("bob", "z9hG4bK-r1"));
    assert_eq!(out.len(), 2);
    let fwd = out[1].2.clone();
    // The caller retransmits: one request went through, the caller gets
    // 100 again.
    for _ in 0..2 {
        let out = h.recv(A, &invite("bob", "z9hG4bK-r1"));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0, status(&out[0].2)), (addr(A), 100));
    }
    assert_eq!(h.proxy.stats().forwarded, 1);
    assert_eq!(h.proxy.stats().absorbed, 2);
    // Timer A: retransmit to B at 500 ms, then 1 s later.
    let out = h.advance(Duration::from_millis(1600));
    assert_eq!(out.len(), 2);
    assert!(out
        .iter()
        .all(|(to, _, m)| *to == addr(B) && top_branch(m) == top_branch(&fwd)));
    // A provisional stops timer A.
    h.recv_raw(B, answer(&fwd, 180, Some("b")));
    assert!(h.advance(Duration::from_secs(10)).is_empty());
}

#[test]
fn no_answer_times_out_with_408() {
    let mut h = Harness::new();
    h.recv(A, &invite("bob", "z9hG4bK-t1"));
    let out = h.advance(Duration::from_secs(40));
    let finals: Vec<_> = out
        .iter()
        .filter(|(to, _, m)| *to == addr(A) && !m.is_request())
        .collect();
    // The 408, then its timer-G retransmissions while no ACK comes.
    assert!(!finals.is_empty());
    assert!(finals.iter().all(|f| status(&f.2) == 408));
    // 6 retransmissions to B before timer B (0.5+1+2+4+8+16 s < 32 s).
    assert_eq!(out.iter().filter(|(to, _, _)| *to == addr(B)).count(), 6);
}

#[test]
fn busy_is_acked_hop_by_hop_and_relayed() {
    let mut h = Harness::new();
    let out = h.recv(A, &invite("bob", "z9hG4bK-b1"));
    let fwd = out[1].2.clone();
    let out = h.recv_raw(B, answer(&fwd, 486, Some("b")));
    assert_eq!(out.len(), 2);
    let ack = out
        .iter()
        .find(|(to, _, m)| *to == addr(B) && m.is_request())
        .expect("ACK to B");
    assert_eq!(ack.2.method(), Some(tandem::sip::Method::ACK));
    assert_eq!(top_branch(&ack.2), top_branch(&fwd));
    let busy = out
        .iter()
        .find(|(to, _, _)| *to == addr(A))
        .expect("486 to A");
    assert_eq!(status(&busy.2), 486);
    // A's retransmitted INVITE gets the 486 again; B's retransmitted 486 is
    // ACKed again but not relayed twice.
    let out = h.recv(A, &invite("bob", "z9hG4bK-b1"));
    assert_eq!(status(&out[0].2), 486);
    let out = h.recv_raw(B, answer(&fwd, 486, Some("b")));
    assert_eq!(out.len(), 1);
    assert!(out[0].2.is_request());
    // Timer G retransmits the 486 until A's ACK arrives.
    let out = h.advance(Duration::from_millis(600));
    assert_eq!(
        out.iter()
            .filter(|(to, _, m)| *to == addr(A) && status(m) == 486)
            .count(),
        1
    );
    let ack = invite("bob", "z9hG4bK-b1")
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK")
        .replace(
            "To: <sip:bob@acme.example.com>",
            "To: <sip:bob@acme.example.com>;tag=b",
        );
    assert!(
        h.recv(A, &ack).is_empty(),
        "the ACK of a non-2xx is absorbed"
    );
    assert!(h
        .advance(Duration::from_secs(2))
        .iter()
        .all(|(to, _, _)| *to != addr(A)));
}

#[test]
fn cancel_before_answer() {
    let mut h = Harness::new();
    let out = h.recv(A, &invite("bob", "z9hG4bK-c1"));
    let fwd = out[1].2.clone();
    h.recv_raw(B, answer(&fwd, 180, Some("b")));
    let cancel = invite("bob", "z9hG4bK-c1")
        .replace("INVITE sip", "CANCEL sip")
        .replace("1 INVITE", "1 CANCEL");
    let out = h.recv(A, &cancel);
    assert_eq!(out.len(), 2);
    let ok = out.iter().find(|(to, _, _)| *to == addr(A)).unwrap();
    assert_eq!(status(&ok.2), 200);
    let fwd_cancel = &out.iter().find(|(to, _, _)| *to == addr(B)).unwrap().2;
    assert_eq!(fwd_cancel.method(), Some(tandem::sip::Method::CANCEL));
    assert_eq!(top_branch(fwd_cancel), top_branch(&fwd));
    assert_eq!(fwd_cancel.request_uri(), fwd.request_uri());
    let out = h.recv_raw(B, answer(&fwd, 487, Some("b")));
    assert!(out
        .iter()
        .any(|(to, _, m)| *to == addr(A) && status(m) == 487));
    // A CANCEL for nothing: 481.
    let out = h.recv(A, &cancel.replace("z9hG4bK-c1", "z9hG4bK-none"));
    assert_eq!(status(&out[0].2), 481);
}

/// A CANCEL that comes before the callee answered anything: no CANCEL may
/// go out yet (RFC 3261 §9.1), the INVITE is still resent, and a late
/// provisional is met with the CANCEL at once. A callee that never answers
/// ends the call with the 487 the caller asked for, not a 408.
#[test]
fn cancel_before_any_provisional() {
    let mut h = Harness::new();
    let is = |m: &Message, method| m.method() == Some(method);
    let out = h.recv(A, &invite("bob", "z9hG4bK-c0"));
    assert!(out
        .iter()
        .any(|(to, _, m)| *to == addr(B) && is(m, tandem::sip::Method::INVITE)));
    let cancel = invite("bob", "z9hG4bK-c0")
        .replace("INVITE sip", "CANCEL sip")
        .replace("1 INVITE", "1 CANCEL");
    let out = h.recv(A, &cancel);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].0, status(&out[0].2)), (addr(A), 200));
    // The INVITE is still resent to the silent callee.
    let out = h.advance(Duration::from_millis(600));
    assert!(out
        .iter()
        .any(|(to, _, m)| *to == addr(B) && is(m, tandem::sip::Method::INVITE)));

    // A provisional, late: the CANCEL goes at once.
    let mut late = Harness::new();
    let out = late.recv(A, &invite("bob", "z9hG4bK-c0"));
    let fwd2 = out[1].2.clone();
    late.recv(A, &cancel);
    let out = late.recv_raw(B, answer(&fwd2, 180, Some("b")));
    assert!(
        out.iter()
            .any(|(to, _, m)| *to == addr(B) && is(m, tandem::sip::Method::CANCEL)),
        "{out:?}"
    );

    // Never an answer: the caller's INVITE ends with 487 when timer B fires.
    let out = h.advance(Duration::from_secs(40));
    let finals: Vec<u16> = out
        .iter()
        .filter(|(to, _, m)| *to == addr(A) && m.status().is_some())
        .map(|(_, _, m)| status(m))
        .collect();
    assert_eq!(finals.first(), Some(&487), "{out:?}");
}

#[test]
fn forking_picks_the_best_final_and_cancels_on_2xx() {
    let mut h = Harness::new();
    let out = h.recv(A, &invite("fork", "z9hG4bK-f1"));
    assert_eq!(out.len(), 3);
    let to_b = out
        .iter()
        .find(|(to, _, _)| *to == addr(B))
        .unwrap()
        .2
        .clone();
    let to_c = out
        .iter()
        .find(|(to, _, _)| *to == addr(C))
        .unwrap()
        .2
        .clone();
    assert_ne!(top_branch(&to_b), top_branch(&to_c));
    let out = h.recv_raw(B, answer(&to_b, 486, Some("b")));
    assert!(
        out.iter().all(|(to, _, _)| *to != addr(A)),
        "wait for the other branch"
    );
    let out = h.recv_raw(C, answer(&to_c, 404, Some("c")));
    let up: Vec<_> = out.iter().filter(|(to, _, _)| *to == addr(A)).collect();
    assert_eq!(up.len(), 1);
    assert_eq!(status(&up[0].2), 486, "lowest class; among 4xx, busy first");

    let out = h.recv(A, &invite("fork", "z9hG4bK-f2"));
    let to_b = out
        .iter()
        .find(|(to, _, _)| *to == addr(B))
        .unwrap()
        .2
        .clone();
    let to_c = out
        .iter()
        .find(|(to, _, _)| *to == addr(C))
        .unwrap()
        .2
        .clone();
    h.recv_raw(C, answer(&to_c, 180, Some("c")));
    let out = h.recv_raw(B, answer(&to_b, 200, Some("b")));
    assert!(out
        .iter()
        .any(|(to, _, m)| *to == addr(A) && status(m) == 200));
    let cancel = out
        .iter()
        .find(|(to, _, _)| *to == addr(C))
        .expect("CANCEL to the other branch");
    assert_eq!(cancel.2.method(), Some(tandem::sip::Method::CANCEL));
    // RFC 3326: the other phone shows no missed call.
    assert_eq!(
        cancel.2.header(HeaderName::Reason),
        Some(&b"SIP;cause=200;text=\"Call completed elsewhere\""[..])
    );
}

/// RFC 3261 §16.7 step 5: a 6xx on one branch cancels the others (the
/// caller stops hearing ringback when one phone declines); the 6xx goes
/// upstream once they have answered, chosen over their 487.
#[test]
fn a_global_failure_cancels_the_other_branches() {
    let mut h = Harness::new();
    let out = h.recv(A, &invite("fork", "z9hG4bK-g1"));
    let to = |who| {
        out.iter()
            .find(|(to, _, _)| *to == addr(who))
            .unwrap()
            .2
            .clone()
    };
    let (to_b, to_c) = (to(B), to(C));
    h.recv_raw(C, answer(&to_c, 180, Some("c")));
    let out = h.recv_raw(B, answer(&to_b, 603, Some("b")));
    assert!(
        out.iter().all(|(to, _, _)| *to != addr(A)),
        "the 603 waits for the other branch"
    );
    let cancel = out
        .iter()
        .find(|(to, _, _)| *to == addr(C))
        .expect("CANCEL to the other branch");
    assert_eq!(cancel.2.method(), Some(tandem::sip::Method::CANCEL));
    let out = h.recv_raw(C, answer(&to_c, 183, Some("c")));
    assert!(
        out.iter().all(|(to, _, _)| *to != addr(A)),
        "no early media after the decline"
    );
    h.recv_raw(C, answer(&cancel.2, 200, None));
    let out = h.recv_raw(C, answer(&to_c, 487, Some("c")));
    let up: Vec<_> = out.iter().filter(|(to, _, _)| *to == addr(A)).collect();
    assert_eq!(up.len(), 1);
    assert_eq!(status(&up[0].2), 603);
}

/// A request the parser takes but whose forwarded copy (one Via and a
/// Record-Route more) would exceed its header limit is answered 513: the
/// proxy must be able to parse its own copy again to derive a CANCEL or an
/// ACK. One header fewer and it is forwarded.
#[test]
fn a_copy_beyond_the_header_limit_is_not_forwarded() {
    let with_extra = |n: usize, branch: &str| {
        let extra: String = (0..n).map(|i| format!("X-Pad-{i}: {i}\n")).collect();
        invite("bob", branch).replacen("Content-Length", &format!("{extra}Content-Length"), 1)
    };
    let base = 9; // the headers of `invite`
    let mut h = Harness::new();
    // 95 headers: forwarded with 97.
    let out = h.recv(
        A,
        &with_extra(tandem::sip::MAX_HEADERS - base - 1, "z9hG4bK-big1"),
    );
    assert!(
        out.iter()
            .any(|(to, _, m)| *to == addr(B) && m.method() == Some(tandem::sip::Method::INVITE)),
        "{out:?}"
    );
    let out = h.recv(
        A,
        &with_extra(tandem::sip::MAX_HEADERS - base, "z9hG4bK-big2"),
    );
    assert!(out.iter().all(|(to, _, _)| *to == addr(A)), "{out:?}");
    assert!(
        out.iter()
            .any(|(_, _, m)| m.status() == Some(StatusCode(513))),
        "{out:?}"
    );
}

#[test]
fn hop_limits_loops_rejections_and_strays() {
    let mut h = Harness::new();
    let out = h.recv(
        A,
        &invite("bob", "z9hG4bK-m1").replace("Max-Forwards: 70", "Max-Forwards: 0"),
    );
    assert_eq!(status(&out[0].2), 483);
    let out = h.recv(A, &invite("nobody", "z9hG4bK-n1"));
    assert_eq!(status(&out[0].2), 404);
    // sips: needs TLS on every hop, which the switch does not offer: 416,
    // nothing forwarded (not even as sip:).
    let sips = invite("bob", "z9hG4bK-s1").replacen("INVITE sip:", "INVITE sips:", 1);
    let out = h.recv(A, &sips);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, status(&out[0].2)), (addr(A), 416));

    // A forwarded request coming back: the first return has a new
    // Request-URI, so it is a spiral (RFC 3261 §16.3 step 4) and goes on;
    // when it comes back unchanged, it is a loop.
    let out = h.recv(A, &invite("bob", "z9hG4bK-l1"));
    let fwd = out[1].2.clone();
    let out = h.recv_raw(B, fwd.as_bytes().to_vec());
    assert_eq!(out.len(), 2, "spiral: 100 and forwarded");
    let again = out[1].2.clone();
    let out = h.recv_raw(B, again.as_bytes().to_vec());
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, status(&out[0].2)), (addr(B), 482));

    // A response matching no transaction is dropped.
    let stray = answer(&fwd, 200, Some("x"));
    let stray = String::from_utf8(stray)
        .unwrap()
        .replace(&top_branch(&fwd), "z9hG4bK-unknown");
    assert!(h.recv(B, &stray).is_empty());

    // Unparsable requests are answered 400 with the problem named.
    let out = h.recv(
        A,
        &invite("bob", "z9hG4bK-p1").replace("Content-Length: 0", "Content-Length: -1"),
    );
    assert_eq!(status(&out[0].2), 400);
    assert_eq!(out[0].2.reason(), Some(&b"Invalid Content-Length"[..]));
}

#[test]
fn overload_answers_503_with_retry_after() {
    let mut h = Harness::with_limit(2);
    h.recv(A, &invite("bob", "z9hG4bK-o1"));
    h.recv(A, &invite("bob", "z9hG4bK-o2"));
    let out = h.recv(A, &invite("bob", "z9hG4bK-o3"));
    assert_eq!(status(&out[0].2), 503);
    assert_eq!(out[0].2.header(HeaderName::RetryAfter), Some(&b"5"[..]));
    assert_eq!(h.proxy.transactions(), 2);
    // Transactions end and the table empties.
    h.advance(Duration::from_secs(300));
    assert_eq!(h.proxy.transactions(), 0);
}

/// Many calls through one proxy on a simulated clock (8,000 calls/s): each
/// is answered at once, so no timer may ever produce a 408, and every
/// transaction ends.
#[test]
fn many_calls_leave_no_timeouts_and_no_transactions() {
    let mut h = Harness::with_limit(100_000);
    let mut finals = std::collections::HashMap::new();
    for n in 0..4000 {
        let branch = format!("z9hG4bK-load{n}");
        let out = h.recv(A, &invite("bob", &branch));
        let fwd = out
            .iter()
            .find(|(to, _, _)| *to == addr(B))
            .unwrap_or_else(|| panic!("call {n}: {out:?}"))
            .2
            .clone();
        for (code, tag) in [(180, "b"), (200, "b")] {
            for (to, _, m) in h.recv_raw(B, answer(&fwd, code, Some(tag))) {
                if to == addr(A) && m.status().is_some_and(|s| s.0 >= 200) {
                    *finals.entry(status(&m)).or_insert(0) += 1;
                }
            }
        }
        let rr = String::from_utf8(fwd.header(HeaderName::RecordRoute).unwrap().to_vec()).unwrap();
        let bye = format!(
            "BYE sip:bob@{B} SIP/2.0\nVia: SIP/2.0/UDP {A};branch=z9hG4bK-bye{n}\nRoute: {rr}\n\
             Max-Forwards: 70\nFrom: <sip:alice@acme.example.com>;tag=a1\nTo: <sip:bob@acme.example.com>;tag=b\n\
             Call-ID: call-{branch}\nCSeq: 2 BYE\nContent-Length: 0\n\n"
        );
        let out = h.recv(A, &bye);
        let fwd_bye = out
            .iter()
            .find(|(to, _, _)| *to == addr(B))
            .expect("BYE forwarded")
            .2
            .clone();
        for (to, _, m) in h.recv_raw(B, answer(&fwd_bye, 200, None)) {
            if to == addr(A) {
                *finals.entry(status(&m)).or_insert(0) += 1;
            }
        }
        for (to, _, m) in h.advance(Duration::from_micros(125)) {
            if !m.is_request() {
                *finals.entry(status(&m)).or_insert(0) += 1;
            }
            assert_ne!(to, addr(A), "timer output to the caller: {m:?}");
        }
    }
    assert_eq!(finals.get(&200), Some(&8000), "{finals:?}");
    assert_eq!(finals.len(), 1, "{finals:?}");
    h.advance(Duration::from_secs(300));
    assert_eq!(h.proxy.transactions(), 0);
}

/// A request already at the header limit cannot take our Via and
/// Record-Route: it is refused (513) before any state exists, and the
/// proxy goes on working.
#[test]
fn a_request_too_big_to_forward_is_refused_not_a_panic() {
    let mut h = Harness::new();
    let extra: String = (0..87).map(|i| format!("X-Filler-{i}: x\n")).collect();
    let big = invite("bob", "z9hG4bK-big").replace(
        "Content-Length: 0\n",
        &format!("{extra}Content-Length: 0\n"),
    );
    let out = h.recv(A, &big);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].0, status(&out[0].2)), (addr(A), 513));
    assert_eq!(h.proxy.transactions(), 0);
    let out = h.recv(A, &invite("bob", "z9hG4bK-after"));
    assert!(
        out.iter().any(|(to, _, _)| *to == addr(B)),
        "still forwarding"
    );
}

/// The ACK of a final response the switch sent itself ends at the switch,
/// even when its Request-URI names the switch (SIPp's default): no loop.
#[test]
fn the_ack_of_a_local_rejection_is_not_forwarded() {
    let mut h = Harness::new();
    let out = h.recv(
        A,
        &invite("nobody", "z9hG4bK-n2")
            .replace("nobody@acme.example.com SIP", "nobody@127.0.0.1:5060 SIP"),
    );
    assert_eq!(status(&out[0].2), 404);
    let to = String::from_utf8(out[0].2.header(HeaderName::To).unwrap().to_vec()).unwrap();
    let ack = invite("nobody", "z9hG4bK-n2")
        .replace(
            "INVITE sip:nobody@acme.example.com",
            "ACK sip:nobody@127.0.0.1:5060",
        )
        .replace("1 INVITE", "1 ACK")
        .replace("To: <sip:nobody@acme.example.com>", &format!("To: {to}"));
    assert!(h.recv(A, &ack).is_empty(), "the ACK went somewhere");
}

/// No relaying for requests the switch did not record-route: a forged
/// in-dialog request, a preloaded Route to another host, or a Route to us
/// without the token we issued.
#[test]
fn the_switch_is_not_an_open_relay() {
    let mut h = Harness::new();
    let forged = invite("bob", "z9hG4bK-r1")
        .replace(
            "INVITE sip:bob@acme.example.com",
            "INVITE sip:+900123@192.0.2.99",
        )
        .replace(
            "To: <sip:bob@acme.example.com>",
            "To: <sip:bob@acme.example.com>;tag=x",
        );
    let preloaded = invite("bob", "z9hG4bK-r2").replace(
        "Max-Forwards: 70\n",
        "Max-Forwards: 70\nRoute: <sip:192.0.2.99;lr>\n",
    );
    let no_token = forged.replace("z9hG4bK-r1", "z9hG4bK-r3").replace(
        "Max-Forwards: 70\n",
        "Max-Forwards: 70\nRoute: <sip:127.0.0.1:5060;lr>\n",
    );
    let bad_token = no_token
        .replace("z9hG4bK-r3", "z9hG4bK-r4")
        .replace(";lr>", ";lr;tdm=0123456789abcdef>");
    for (name, req) in [
        ("forged", forged),
        ("preloaded", preloaded),
        ("no token", no_token),
        ("bad token", bad_token),
    ] {
        let out = h.recv(A, &req);
        assert!(
            out.iter().all(|(to, _, _)| *to == addr(A)),
            "{name}: relayed {out:?}"
        );
        assert_eq!(status(&out[0].2), 403, "{name}");
    }
}

/// A loop through two workers of the same switch is caught although the
/// Via that proves it carries the other worker's port.
#[test]
fn loops_across_workers_are_detected() {
    let mut w0 = Harness::new();
    let mut w1 = Harness::new();
    w1.proxy = Proxy::new(ProxyConfig {
        advertised_host: "127.0.0.1".into(),
        listen_port: 5060,
        tcp_port: 5060,
        worker_port: 40001,
        alt: None,
        worker: 1,
        max_transactions: 1000,
        timers: TimerConfig::default(),
        seed: 0xbeef,
        secret: [0x5e; 32],
    });
    let out = w1.recv(A, &invite("bob", "z9hG4bK-x1"));
    let via_w1 = out
        .iter()
        .find(|(_, _, m)| m.is_request())
        .unwrap()
        .2
        .clone();
    // Back to the switch on worker 0: a spiral (the Request-URI changed).
    let out = w0.recv_raw(B, via_w1.as_bytes().to_vec());
    let via_w0 = out
        .iter()
        .find(|(_, _, m)| m.is_request())
        .expect("spiral forwarded")
        .2
        .clone();
    // Back on worker 1, unchanged: a loop, proven by worker 0's Via.
    let out = w1.recv_raw(B, via_w0.as_bytes().to_vec());
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(status(&out[0].2), 482);
}

/// Our CANCEL is a transaction of its own: resent over UDP until answered,
/// and a callee that never ends the INVITE is given up 64·T1 later.
#[test]
fn cancel_is_retransmitted_until_answered() {
    let mut h = Harness::new();
    let out = h.recv(A, &invite("bob", "z9hG4bK-cr1"));
    let fwd = out[1].2.clone();
    h.recv_raw(B, answer(&fwd, 180, Some("b")));
    let cancel = invite("bob", "z9hG4bK-cr1")
        .replace("INVITE sip", "CANCEL sip")
        .replace("1 INVITE", "1 CANCEL");
    let out = h.recv(A, &cancel);
    let ours = out
        .iter()
        .find(|(to, _, _)| *to == addr(B))
        .expect("CANCEL sent")
        .2
        .clone();
    // Unanswered: resent at 0.5 s and 1.5 s.
    let out = h.advance(Duration::from_millis(1600));
    let resent = out
        .iter()
        .filter(|(to, _, m)| *to == addr(B) && m.method() == Some(tandem::sip::Method::CANCEL))
        .count();
    assert_eq!(resent, 2, "{out:?}");
    // Answered: no more.
    h.recv_raw(B, answer(&ours, 200, Some("b")));
    let out = h.advance(Duration::from_secs(10));
    assert!(
        out.iter()
            .all(|(_, _, m)| m.method() != Some(tandem::sip::Method::CANCEL)),
        "{out:?}"
    );
    // No 487 ever comes: 64·T1 after the CANCEL the caller gets a final.
    let out = h.advance(Duration::from_secs(30));
    assert!(
        out.iter()
            .any(|(to, _, m)| *to == addr(A) && m.status().is_some_and(|s| s.0 >= 400)),
        "{out:?}"
    );
}

/// Timer C restarts with every provisional: a callee that keeps ringing
/// (a 180 every minute) is not cancelled at 181 s; one that goes silent is.
#[test]
fn timer_c_restarts_with_each_provisional() {
    let mut h = Harness::new();
    let out = h.recv(A, &invite("bob", "z9hG4bK-c1"));
    let fwd = out[1].2.clone();
    for _ in 0..4 {
        h.recv_raw(B, answer(&fwd, 180, Some("b")));
        let out = h.advance(Duration::from_secs(60));
        assert!(
            out.iter()
                .all(|(_, _, m)| m.method() != Some(tandem::sip::Method::CANCEL)),
            "cancelled while ringing"
        );
    }
    let out = h.advance(Duration::from_secs(130));
    assert!(
        out.iter()
            .any(|(to, _, m)| *to == addr(B) && m.method() == Some(tandem::sip::Method::CANCEL)),
        "{out:?}"
    );
}

/// A dialog token is good for its own dialog only: replayed on a new
/// request (no To tag) with a Route past the switch, or with another
/// caller tag, it is refused; an ACK without a To tag matching nothing is
/// dropped, never routed.
#[test]
fn a_dialog_token_does_not_open_other_requests() {
    let mut h = Harness::new();
    let out = h.recv(A, &invite("bob", "z9hG4bK-t1"));
    let fwd = out
        .iter()
        .find(|(to, _, m)| *to == addr(B) && m.is_request())
        .map(|(_, _, m)| m.clone())
        .expect("forwarded");
    let rr = std::str::from_utf8(fwd.header(HeaderName::RecordRoute).unwrap())
        .unwrap()
        .to_owned();
    // In its dialog (To tag, same Call-ID and caller tag) the token works.
    let bye = format!(
        "BYE sip:bob@{B} SIP/2.0\nVia: SIP/2.0/UDP {A};branch=z9hG4bK-t2\nMax-Forwards: 70\n\
         From: <sip:alice@acme.example.com>;tag=a1\nTo: <sip:bob@acme.example.com>;tag=b1\n\
         Call-ID: call-z9hG4bK-t1\nCSeq: 2 BYE\nRoute: {rr}\nContent-Length: 0\n\n"
    );
    let out = h.recv(A, &bye);
    assert!(
        out.iter()
            .any(|(to, _, m)| *to == addr(B) && m.is_request()),
        "{out:?}"
    );
    // Replayed on a new INVITE with a further Route: refused.
    let replay = invite("bob", "z9hG4bK-t3")
        .replace("Call-ID: call-z9hG4bK-t3", "Call-ID: call-z9hG4bK-t1")
        .replace(
            "Max-Forwards: 70\n",
            &format!("Max-Forwards: 70\nRoute: {rr}, <sip:192.0.2.99;lr>\n"),
        );
    let out = h.recv(A, &replay);
    assert!(
        out.iter().all(|(to, _, _)| *to == addr(A)),
        "relayed {out:?}"
    );
    assert_eq!(status(&out[0].2), 403);
    // The same dialog's token under another caller tag: refused.
    let other_tag = bye
        .replace("z9hG4bK-t2", "z9hG4bK-t4")
        .replace(";tag=a1", ";tag=zz");
    let out = h.recv(A, &other_tag);
    assert!(
        out.iter().all(|(to, _, _)| *to == addr(A)),
        "relayed {out:?}"
    );
    // An ACK without a To tag that matches no transaction: dropped.
    let ack = format!(
        "ACK sip:+34600111222@{B} SIP/2.0\nVia: SIP/2.0/UDP {A};branch=z9hG4bK-t5\n\
         Max-Forwards: 70\nFrom: <sip:alice@acme.example.com>;tag=a1\nTo: <sip:x@acme.example.com>\n\
         Call-ID: stray\nCSeq: 1 ACK\nContent-Length: 0\n\n"
    );
    assert!(h.recv(A, &ack).is_empty());
}

/// Each Record-Route entry names the port of its transport: TCP's where
/// TCP listens elsewhere than UDP, the worker's own port for UDP where
/// nothing listens on UDP (TCP only).
#[test]
fn record_route_names_the_port_of_each_transport() {
    for (udp, tcp, want_udp, want_tcp) in [(5060, 5061, 5060, 5061), (0, 5061, 40000, 5061)] {
        let mut h = Harness::with_ports(1000, udp, tcp);
        let out = h.recv(A, &invite("tcp", "z9hG4bK-rp1"));
        let (_, _, fwd) = out.last().unwrap();
        let rrs: Vec<String> = fwd
            .values(HeaderName::RecordRoute)
            .map(|v| String::from_utf8(v.unwrap().to_vec()).unwrap())
            .collect();
        assert!(
            rrs[0].starts_with(&format!("<sip:127.0.0.1:{want_tcp};transport=tcp;lr;")),
            "{rrs:?}"
        );
        assert!(
            rrs[1].starts_with(&format!("<sip:127.0.0.1:{want_udp};lr;")),
            "{rrs:?}"
        );
        let via = String::from_utf8(fwd.header(HeaderName::Via).unwrap().to_vec()).unwrap();
        assert!(
            via.starts_with(&format!("SIP/2.0/TCP 127.0.0.1:{want_tcp};")),
            "{via}"
        );
    }
}

/// A caller on UDP, a callee on TCP: the switch record-routes twice (RFC
/// 5658), the top entry naming TCP (the callee's route set starts there),
/// the other UDP (the caller's, reversed, starts there), and pops both
/// from in-dialog requests either way.
#[test]
fn a_change_of_transport_is_record_routed_twice() {
    let mut h = Harness::new();
    let out = h.recv(A, &invite("tcp", "z9hG4bK-t1"));
    let (to_b, _, fwd) = out.last().unwrap();
    assert_eq!(*to_b, addr(B));
    let rrs: Vec<String> = fwd
        .values(HeaderName::RecordRoute)
        .map(|v| String::from_utf8(v.unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(rrs.len(), 2, "{rrs:?}");
    assert!(
        rrs[0].starts_with("<sip:127.0.0.1:5060;transport=tcp;lr;tdm="),
        "{rrs:?}"
    );
    assert!(rrs[1].starts_with("<sip:127.0.0.1:5060;lr;tdm="), "{rrs:?}");

    // The callee's answer reaches the caller with both entries.
    let ok = answer(fwd, 200, Some("b1"));
    let out = h.recv_raw(B, ok);
    assert_eq!((out[0].0, status(&out[0].2)), (addr(A), 200));
    assert_eq!(out[0].2.values(HeaderName::RecordRoute).count(), 2);

    // The caller's ACK: its route set is the Record-Route reversed.
    let ack = format!(
        "ACK sip:bob@{B};transport=tcp SIP/2.0
Via: SIP/2.0/UDP {A};branch=z9hG4bK-t1ack
Route: {}, {}
Max-Forwards: 70
From: <sip:alice@acme.example.com>;tag=a1
To: <sip:tcp@acme.example.com>;tag=b1
Call-ID: call-z9hG4bK-t1
CSeq: 1 ACK
Content-Length: 0

",
        rrs[1], rrs[0]
    );
    let out = h.recv(A, &ack);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, addr(B));
    assert_eq!(
        out[0].2.header(HeaderName::Route),
        None,
        "both Routes popped"
    );

    // The callee's BYE, over its connection, in Record-Route order.
    let bye = format!(
        "BYE sip:alice@{A} SIP/2.0
Via: SIP/2.0/TCP {B};branch=z9hG4bK-t1bye
Route: {}
Route: {}
Max-Forwards: 70
From: <sip:tcp@acme.example.com>;tag=b1
To: <sip:alice@acme.example.com>;tag=a1
Call-ID: call-z9hG4bK-t1
CSeq: 1 BYE
Content-Length: 0

",
        rrs[0], rrs[1]
    );
    let out = h.recv_tcp(B, 7, &bye);
    assert_eq!(out.len(), 1, "{out:?}");
    let (to, _, fwd_bye) = &out[0];
    assert_eq!(*to, addr(A));
    assert_eq!(
        fwd_bye.header(HeaderName::Route),
        None,
        "both Routes popped"
    );

    // An entry of ours with another token is not the twin (a call that
    // came back through the switch): only the first goes, and the request
    // is not sent on to A as if both were ours.
    let other = rrs[1].replace("tdm=", "tdm=0");
    let spiral = bye
        .replace(
            &format!("Route: {}\r\n", rrs[1]),
            &format!("Route: {other}\r\n"),
        )
        .replace(
            &format!("Route: {}\n", rrs[1]),
            &format!("Route: {other}\n"),
        )
        .replace("z9hG4bK-t1bye", "z9hG4bK-t1bye2");
    assert!(spiral.contains(&other));
    let out = h.recv_tcp(B, 7, &spiral);
    assert!(out.iter().all(|(to, _, _)| *to != addr(A)), "{out:?}");

    // A strict router before us put our entry in the Request-URI: refused,
    // not forwarded with a Request-URI naming the switch.
    let uri = rrs[1].trim_start_matches('<').trim_end_matches('>');
    let strict = bye
        .replace(
            &format!("BYE sip:alice@{A} SIP/2.0"),
            &format!("BYE {uri} SIP/2.0"),
        )
        .replace(
            &format!("Route: {}\n", rrs[1]),
            &format!("Route: <sip:alice@{A}>\n"),
        )
        .replace("z9hG4bK-t1bye", "z9hG4bK-t1bye3");
    assert!(!strict.starts_with("BYE <") && strict.contains(&format!("Route: <sip:alice@{A}>")));
    let out = h.recv_tcp(B, 7, &strict);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].0, status(&out[0].2)), (addr(B), 403));
}

/// A request refused for having more header lines than the parser takes
/// (here 95 Via lines) is still answered 400: its Vias go back in one
/// comma-separated line, so the answer frames again, and its To gets a tag
/// (the same for a retransmission).
#[test]
fn a_request_of_too_many_via_lines_gets_a_400() {
    let mut h = Harness::new();
    let mut text = String::from("OPTIONS sip:bob@acme.example.com SIP/2.0\r\n");
    text.push_str(&format!("Via: SIP/2.0/UDP {A};branch=z9hG4bK-many\r\n"));
    for i in 0..94 {
        text.push_str(&format!(
            "Via: SIP/2.0/UDP 10.0.0.{i};branch=z9hG4bK-{i}\r\n"
        ));
    }
    text.push_str(
        "Max-Forwards: 70\r\nFrom: <sip:alice@acme.example.com>;tag=a1\r\n\
         To: <sip:bob@acme.example.com>\r\nCall-ID: many-vias\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
    );
    let out = h.recv_raw(A, text.clone().into_bytes());
    assert_eq!(out.len(), 1, "{out:?}");
    let (to, _, answer) = &out[0];
    assert_eq!((*to, status(answer)), (addr(A), 400));
    assert_eq!(answer.values(HeaderName::Via).count(), 95);
    assert_eq!(top_branch(answer), "z9hG4bK-many");
    let tag = answer.tag(HeaderName::To).expect("a To tag").to_vec();
    let again = h.recv_raw(A, text.into_bytes());
    assert_eq!(again[0].2.tag(HeaderName::To), Some(&tag[..]));
}

/// The ACK of a non-2xx final ends its INVITE transaction even when the
/// caller gives it a new branch (many SIPp scenarios write `[branch]`): it
/// is absorbed, not taken for the ACK of a 2xx and routed to the callee,
/// and the 486 is no longer resent.
#[test]
fn a_non_2xx_ack_under_a_new_branch_is_absorbed() {
    let mut h = Harness::new();
    let out = h.recv(A, &invite("bob", "z9hG4bK-nb1"));
    let fwd = out[1].2.clone();
    let out = h.recv_raw(B, answer(&fwd, 486, Some("b")));
    let busy = out
        .iter()
        .find(|(to, _, m)| *to == addr(A) && m.status().is_some())
        .expect("486 upstream");
    let to = String::from_utf8_lossy(busy.2.header(HeaderName::To).unwrap()).into_owned();
    let ack = format!(
        "ACK sip:bob@acme.example.com SIP/2.0
Via: SIP/2.0/UDP {A};branch=z9hG4bK-nb1-other
Max-Forwards: 70
From: <sip:alice@acme.example.com>;tag=a1
To: {to}
Call-ID: call-z9hG4bK-nb1
CSeq: 1 ACK
Content-Length: 0

"
    );
    let out = h.recv(A, &ack);
    assert!(out.is_empty(), "{out:?}");
    let out = h.advance(Duration::from_secs(5));
    assert!(
        out.iter()
            .all(|(to, _, _)| *to != addr(A) && *to != addr(B)),
        "{out:?}"
    );
}

/// A retransmitted INVITE gets the latest provisional again, not a 100
/// (RFC 3261 §17.2.1): a caller that lost the 183 gets its early-media SDP.
#[test]
fn a_retransmitted_invite_gets_the_latest_provisional() {
    let mut h = Harness::new();
    let inv = invite("bob", "z9hG4bK-rp1");
    let out = h.recv(A, &inv);
    let fwd = out[1].2.clone();
    h.recv_raw(B, answer(&fwd, 180, Some("b")));
    let out = h.recv(A, &inv);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].0, status(&out[0].2)), (addr(A), 180));
    h.recv_raw(B, answer(&fwd, 183, Some("b")));
    let out = h.recv(A, &inv);
    assert_eq!(status(&out[0].2), 183);
    // Answered: a late retransmission gets nothing (the 2xx passes end to
    // end), and no provisional again.
    h.recv_raw(B, answer(&fwd, 200, Some("b")));
    let out = h.recv(A, &inv);
    assert!(
        out.iter()
            .all(|(_, _, m)| m.status().is_none_or(|s| s.0 >= 200)),
        "{out:?}"
    );
}
