//! Parse throughput: Tandem's zero-copy framing plus the typed views a proxy
//! reads on every message (top Via, From, To, CSeq, Call-ID), against rsip
//! parsing the same messages and decoding the same headers, in one group
//! per message so the two are measured side by side.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rsip::prelude::*;
use tandem::sip::{CSeq, HeaderName, Message, NameAddr, Via};

const MESSAGES: &[(&str, &[u8])] = &[
    ("invite_sdp", include_bytes!("data/invite.sip")),
    ("register_auth", include_bytes!("data/register.sip")),
    ("200_ok", include_bytes!("data/ok.sip")),
];

/// Framing, header index, and the typed views of a proxy's fast path.
fn tandem_parse(raw: &'static [u8]) -> usize {
    let m = Message::parse_datagram(Bytes::from_static(raw)).expect("valid");
    let via = Via::parse(m.values(HeaderName::Via).next().unwrap().unwrap()).unwrap();
    let from = NameAddr::parse(m.header(HeaderName::From).unwrap()).unwrap();
    let to = NameAddr::parse(m.header(HeaderName::To).unwrap()).unwrap();
    let cseq = CSeq::parse(m.header(HeaderName::CSeq).unwrap()).unwrap();
    let call_id = m.header(HeaderName::CallId).unwrap();
    via.branch().unwrap().len()
        + from.tag().unwrap().len()
        + to.uri.len()
        + cseq.seq as usize
        + call_id.len()
}

fn rsip_parse(raw: &'static [u8]) -> usize {
    let m = rsip::SipMessage::try_from(raw).expect("valid");
    let via = m.via_header().unwrap().typed().unwrap();
    let from = m.from_header().unwrap().typed().unwrap();
    let to = m.to_header().unwrap().typed().unwrap();
    let cseq = m.cseq_header().unwrap().typed().unwrap();
    let call_id = m.call_id_header().unwrap();
    via.branch().map_or(0, |b| b.to_string().len())
        + from.tag().map_or(0, |t| t.to_string().len())
        + to.uri.to_string().len()
        + cseq.seq as usize
        + call_id.value().len()
}

fn parse(c: &mut Criterion) {
    for &(name, raw) in MESSAGES {
        assert_eq!(tandem_parse(raw) > 0, rsip_parse(raw) > 0);
        let mut g = c.benchmark_group(format!("parse/{name}"));
        g.throughput(Throughput::Bytes(raw.len() as u64));
        g.bench_function("tandem", |b| b.iter(|| tandem_parse(black_box(raw))));
        g.bench_function("rsip", |b| b.iter(|| rsip_parse(black_box(raw))));
        g.finish();
    }
    let mut g = c.benchmark_group("parse/framing_only");
    let raw = MESSAGES[0].1;
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("tandem", |b| {
        b.iter(|| {
            Message::parse_datagram(Bytes::from_static(black_box(raw)))
                .unwrap()
                .head()
                .entries()
                .len()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = parse
}
criterion_main!(benches);
