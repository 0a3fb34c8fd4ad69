//! Properties of the message layer over generated messages: round trips,
//! edits that keep what they do not touch, and no panics on mangled input.

use bytes::Bytes;
use tandem::sip::{validate, Framing, Head, HeaderName, Message, Status, Verdict};

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const NAMES: &[&str] = &[
    "Via",
    "v",
    "VIA",
    "Route",
    "X-Custom",
    "Subject",
    "s",
    "Supported",
    "k",
    "Record-Route",
];

fn generated(rng: &mut Rng) -> Vec<u8> {
    let mut m = b"INVITE sip:+34944000100@acme.example.com;user=phone SIP/2.0\r\n".to_vec();
    m.extend_from_slice(b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-gen;rport\r\n");
    for _ in 0..rng.below(12) {
        let name = NAMES[rng.below(NAMES.len())];
        let sep = [":", " :", ":  ", "\t:\t"][rng.below(4)];
        let value = match name.to_ascii_lowercase().as_str() {
            "via" | "v" => "SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bKabc",
            "route" | "record-route" => "<sip:10.0.0.2;lr>, <sip:10.0.0.3;lr>",
            _ => "some value,\r\n with a fold",
        };
        m.extend_from_slice(format!("{name}{sep}{value}\r\n").as_bytes());
    }
    m.extend_from_slice(
        b"From: \"A, B\" <sip:alice@acme.example.com>;tag=9\r\nTo: <sip:bob@acme.example.com>\r\n",
    );
    m.extend_from_slice(b"Call-ID: gen@127.0.0.1\r\nCSeq: 7 INVITE\r\nMax-Forwards: 70\r\n");
    let body = "v=0\r\n".repeat(rng.below(5));
    m.extend_from_slice(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    m
}

#[test]
fn generated_messages_round_trip_and_edit_cleanly() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for _ in 0..500 {
        let raw = generated(&mut rng);
        let m = Message::parse_datagram(Bytes::from(raw.clone())).unwrap();
        assert_eq!(
            validate(&m),
            Verdict::Accept,
            "{}",
            String::from_utf8_lossy(&raw)
        );
        assert_eq!(m.edit().finish(), raw);

        // A proxy hop: new Via on top, Max-Forwards down, Record-Route.
        let mut e = m.edit();
        e.push_via(b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKhop")
            .set_max_forwards(69)
            .add_record_route(b"<sip:127.0.0.1;lr>");
        let hop = Message::parse_datagram(Bytes::from(e.finish())).unwrap();
        assert_eq!(validate(&hop), Verdict::Accept);
        assert_eq!(
            hop.values(HeaderName::Via).count(),
            m.values(HeaderName::Via).count() + 1
        );
        assert_eq!(hop.body(), m.body());
        // Every field of the original is still there, in order.
        let before: Vec<_> = m
            .fields()
            .filter(|f| f.0 != HeaderName::MaxForwards)
            .collect();
        let after: Vec<_> = hop
            .fields()
            .filter(|f| f.0 != HeaderName::MaxForwards && f.2 != b"<sip:127.0.0.1;lr>")
            .skip(1)
            .collect();
        assert_eq!(before, after);

        // The response path: removing our Via gives back the original Vias.
        let mut e = hop.edit();
        e.remove_top_via();
        let back = Message::parse_datagram(Bytes::from(e.finish())).unwrap();
        let v1: Vec<_> = m.values(HeaderName::Via).collect();
        let v2: Vec<_> = back.values(HeaderName::Via).collect();
        assert_eq!(v1, v2);
    }
}

#[test]
fn mangled_messages_never_panic() {
    let mut rng = Rng(0x0dd_ba11);
    let seeds: Vec<Vec<u8>> = (0..20).map(|_| generated(&mut rng)).collect();
    for i in 0..20_000 {
        let mut raw = seeds[i % seeds.len()].clone();
        for _ in 0..1 + rng.below(4) {
            if raw.is_empty() {
                break;
            }
            let at = rng.below(raw.len());
            match rng.below(4) {
                0 => raw[at] = (rng.next() & 0xff) as u8,
                1 => {
                    raw.remove(at);
                }
                2 => raw.insert(at, b"\r\n :;,<>\"\\%"[rng.below(11)]),
                _ => raw.truncate(at),
            }
        }
        for framing in [Framing::Datagram, Framing::Stream] {
            if let Ok(Status::Complete(h)) = Head::parse(&raw, framing) {
                let m = Message::from_parts(Bytes::from(raw.clone()), h);
                let _ = validate(&m);
                assert_eq!(m.edit().finish(), m.as_bytes());
            }
        }
    }
}
