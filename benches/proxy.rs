//! The sans-IO proxy alone, no sockets: what one authenticated
//! registration costs the core (REGISTER → 401 → REGISTER with MD5
//! credentials → registrar update → record → 200 once persisted), to set
//! against the switch's CPU per registration in `benches/load/register.sh`
//! (the difference is the shell, the kernel and the log writer).
//!
//! The measured loop also does the client's side (writing the two
//! requests, computing its digest): `client_side` measures that alone.
//!
//! `carrier_call_to_friend`: a whole call through the core (13 messages
//! in, with the friend rewriting and codec filtering), to set against the
//! switch's CPU per call in `benches/load/run.sh`. It includes writing the
//! test's own messages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use tandem::auth::{digest_response, Algorithm, AuthConfig, Authenticator};
use tandem::config;
use tandem::proxy::router::TableRouter;
use tandem::proxy::{timer::TimerConfig, Peer, Proxy, ProxyConfig, Services, WallClock};
use tandem::registrar::{Registrar, RegistrarConfig};
use tandem::route::RoutingTable;

// The binary's allocator, so allocation costs are the switch's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DOMAIN: &str = "acme.example.com";
const PASSWORD: &str = "Load-Secret-1";
const USERS: usize = 1000;

fn table() -> RoutingTable {
    let mut text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/tandem.toml"))
            .unwrap()
            .replace(
                "algorithms = [\"SHA-256\", \"MD5\"]",
                "algorithms = [\"MD5\"]",
            );
    for i in 0..USERS {
        text.push_str(&format!(
            "\n  [[company.terminal]]\n  name = \"load{i}\"\n  password = \"{PASSWORD}\"\n"
        ));
    }
    let cfg = config::parse(&text).expect("config");
    RoutingTable::build(&cfg).expect("table")
}

fn register(user: &str, port: u16, n: u64, cseq: u32, auth: Option<&str>) -> Bytes {
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    Bytes::from(format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{n}-{cseq};rport\r\n\
         From: <sip:{user}@{DOMAIN}>;tag=t{n}\r\n\
         To: <sip:{user}@{DOMAIN}>\r\n\
         Call-ID: {n}-bench@127.0.0.1\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@127.0.0.1:{port}>\r\n\
         {auth}Expires: 3600\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    ))
}

fn credentials(user: &str, nonce: &str) -> String {
    let uri = format!("sip:{DOMAIN}");
    let r = digest_response(
        Algorithm::Md5,
        user,
        DOMAIN,
        PASSWORD,
        "REGISTER",
        &uri,
        nonce,
        "00000001",
        "c0ffee",
    );
    format!(
        "Digest username=\"{user}\",realm=\"{DOMAIN}\",nonce=\"{nonce}\",uri=\"{uri}\",\
         response=\"{r}\",algorithm=MD5,qop=auth,nc=00000001,cnonce=\"c0ffee\""
    )
}

fn nonce_of(resp: &[u8]) -> String {
    let text = std::str::from_utf8(resp).unwrap();
    let i = text.find("nonce=\"").unwrap() + 7;
    let j = text[i..].find('"').unwrap();
    text[i..i + j].to_owned()
}

fn bench(c: &mut Criterion) {
    let table = table();
    let auth = Arc::new(Authenticator::new(
        AuthConfig::from_config(&config::Auth {
            algorithms: vec!["MD5".into()],
            ..config::Auth::default()
        }),
        [9; 32],
    ));
    let registrar = Arc::new(Registrar::new(RegistrarConfig::from_config(
        &config::Registrar::default(),
    )));
    let start = Instant::now();
    let clock = WallClock {
        at: start,
        unix: 1_800_000_000,
    };
    let mut proxy = Proxy::with_services(
        ProxyConfig {
            advertised_host: "127.0.0.1".into(),
            listen_port: 5060,
            tcp_port: 5060,
            worker_port: 40000,
            alt: None,
            worker: 0,
            max_transactions: 1_000_000,
            timers: TimerConfig::default(),
            seed: 1,
            secret: [2; 32],
        },
        Services {
            auth,
            registrar: registrar.clone(),
            workers: 1,
            clock,
        },
    );
    let mut n: u64 = 0;
    let mut g = c.benchmark_group("proxy");
    g.bench_function("authenticated_register_pair", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                n += 1;
                let user = format!("load{}", n as usize % USERS);
                let port = 10_000 + (n % 50_000) as u16;
                let from = Peer::udp(SocketAddr::from(([127, 0, 0, 1], port)));
                // Time advances 500 µs per registration: lingering
                // transactions expire as they would at 2,000/s.
                let now = start + Duration::from_micros(n * 500);
                let router = TableRouter::with_registrar(&table, &registrar, clock.unix(now));
                proxy.handle(now, register(&user, port, n, 1, None), from, &router);
                let challenge = proxy.poll_transmit().expect("401");
                let creds = credentials(&user, &nonce_of(&challenge.data));
                proxy.handle(
                    now,
                    register(&user, port, n, 2, Some(&creds)),
                    from,
                    &router,
                );
                let p = proxy.poll_persist().expect("a record");
                proxy.persisted(now, p.ticket, true);
                let ok = proxy.poll_transmit().expect("200");
                assert!(ok.data.starts_with(b"SIP/2.0 200"));
                proxy.handle_timeout(now);
            }
            t0.elapsed()
        })
    });
    // A whole carrier → DDI → friend call through the core: INVITE (100
    // back), 180 and 200 from the friend, ACK and BYE from the carrier,
    // the BYE's 200; rewriting and SDP filtering included (the demo's
    // friend `branch` filters codecs). 13 messages in, 12 out.
    let carrier = Peer::udp(SocketAddr::from(([127, 0, 0, 2], 5090)));
    let friend = Peer::udp(SocketAddr::from(([127, 0, 0, 1], 5070)));
    g.bench_function("carrier_call_to_friend", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                n += 1;
                let now = start + Duration::from_micros(n * 500);
                let router = TableRouter::with_registrar(&table, &registrar, clock.unix(now));
                let call = call_messages(n);
                proxy.handle(now, call.invite.clone(), carrier, &router);
                let mut fwd = None;
                while let Some(t) = proxy.poll_transmit() {
                    if t.peer == friend {
                        fwd = Some(t.data);
                    }
                }
                let fwd = fwd.expect("INVITE forwarded");
                let via = top_via(&fwd);
                let rr = header(&fwd, "Record-Route");
                for code in ["180 Ringing", "200 OK"] {
                    proxy.handle(now, call.response(&via, &rr, code), friend, &router);
                    while proxy.poll_transmit().is_some() {}
                }
                proxy.handle(now, call.in_dialog("ACK", 1, &rr), carrier, &router);
                while proxy.poll_transmit().is_some() {}
                proxy.handle(now, call.in_dialog("BYE", 2, &rr), carrier, &router);
                let mut bye = None;
                while let Some(t) = proxy.poll_transmit() {
                    if t.peer == friend {
                        bye = Some(t.data);
                    }
                }
                let bye = bye.expect("BYE forwarded");
                let ok = call.bye_ok(&bye);
                proxy.handle(now, ok, friend, &router);
                while proxy.poll_transmit().is_some() {}
                proxy.handle_timeout(now);
            }
            t0.elapsed()
        })
    });
    g.bench_function("client_side", |b| {
        b.iter(|| {
            n += 1;
            let user = format!("load{}", n as usize % USERS);
            let r1 = register(&user, 10_000, n, 1, None);
            let creds = credentials(&user, "AAAAAGsH9Skr68ucBXdP1_mlY74eQNP0xJprQHIAVHw");
            let r2 = register(&user, 10_000, n, 2, Some(&creds));
            (r1, r2)
        })
    });
    g.finish();
}

struct Call {
    n: u64,
    invite: Bytes,
}

fn call_messages(n: u64) -> Call {
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
               m=audio 6000 RTP/AVP 8 0 18 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
               a=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let invite = format!(
        "INVITE sip:+34944000200@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.2:5090;branch=z9hG4bK-c{n}\r\n\
         From: <sip:+34600111222@pstn.example.net>;tag=c{n}\r\n\
         To: <sip:+34944000200@pstn.example.net>\r\n\
         Call-ID: call-{n}@127.0.0.2\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:c@127.0.0.2:5090>\r\nMax-Forwards: 70\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    Call {
        n,
        invite: Bytes::from(invite),
    }
}

impl Call {
    /// A response of the friend to the forwarded INVITE.
    fn response(&self, via: &str, rr: &str, code: &str) -> Bytes {
        let n = self.n;
        Bytes::from(format!(
            "SIP/2.0 {code}\r\nVia: {via}\r\nVia: SIP/2.0/UDP 127.0.0.2:5090;branch=z9hG4bK-c{n}\r\n\
             Record-Route: {rr}\r\n\
             From: <sip:600111222@acme.example.com>;tag=c{n}\r\n\
             To: <sip:+34944000200@pstn.example.net>;tag=f{n}\r\n\
             Call-ID: call-{n}@127.0.0.2\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:branch@127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    /// ACK or BYE from the carrier through the recorded route.
    fn in_dialog(&self, method: &str, cseq: u32, rr: &str) -> Bytes {
        let n = self.n;
        Bytes::from(format!(
            "{method} sip:branch@127.0.0.1:5070 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.2:5090;branch=z9hG4bK-c{n}-{cseq}\r\n\
             Route: {rr}\r\n\
             From: <sip:+34600111222@pstn.example.net>;tag=c{n}\r\n\
             To: <sip:+34944000200@pstn.example.net>;tag=f{n}\r\n\
             Call-ID: call-{n}@127.0.0.2\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        ))
    }

    /// The friend's 200 to the forwarded BYE.
    fn bye_ok(&self, bye: &[u8]) -> Bytes {
        let text = std::str::from_utf8(bye).unwrap();
        let mut out = String::from("SIP/2.0 200 OK\r\n");
        for line in text.split("\r\n").skip(1) {
            if ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                .iter()
                .any(|h| line.starts_with(h))
            {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        Bytes::from(out)
    }
}

fn header(msg: &[u8], name: &str) -> String {
    let text = std::str::from_utf8(msg).unwrap();
    let prefix = format!("{name}: ");
    text.split("\r\n")
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap()
        .to_owned()
}

fn top_via(msg: &[u8]) -> String {
    header(msg, "Via")
}

criterion_group!(benches, bench);
criterion_main!(benches);
