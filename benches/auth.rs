//! Cost of digest authentication per request: `check` of a correct
//! REGISTER (nonce MAC, HA1/HA2/response, replay table) for each algorithm,
//! and `challenges` (one nonce, two header values).
//!
//! Every measured `check` carries a new `nc` on the same nonce, as a phone
//! re-registering would, so each one is accepted; building the header (the
//! client's own hashing) happens in the untimed setup.

use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tandem::auth::{digest_response, Algorithm, Attempt, AuthConfig, Authenticator, Outcome};

const REALM: &str = "a.example.com";
const URI: &str = "sip:a.example.com";
const NOW: u64 = 1_700_000_000;

fn authenticator() -> Authenticator {
    let cfg = AuthConfig {
        algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        nonce_lifetime: 300,
        max_failures: 10,
        failure_window: 60,
        ban: 900,
    };
    Authenticator::new(cfg, [7; 32])
}

fn credentials(alg: Algorithm, nonce: &str, nc: u32) -> String {
    let nc = format!("{nc:08x}");
    let cnonce = "8d3e1a5f";
    let r = digest_response(
        alg,
        "1001",
        REALM,
        "s3cr3t-pa55",
        "REGISTER",
        URI,
        nonce,
        &nc,
        cnonce,
    );
    format!(
        "Digest username=\"1001\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{URI}\", \
         response=\"{r}\", algorithm={}, cnonce=\"{cnonce}\", qop=auth, nc={nc}",
        alg.as_str()
    )
}

fn check(c: &mut Criterion) {
    let mut g = c.benchmark_group("auth");
    g.throughput(Throughput::Elements(1));
    let source: IpAddr = "192.0.2.7".parse().unwrap();
    for alg in [Algorithm::Md5, Algorithm::Sha256] {
        let auth = authenticator();
        let h = &auth.challenges(NOW, REALM, false, source)[0];
        let nonce = h
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let mut nc = 0u32;
        g.bench_function(format!("check/{}", alg.as_str()), |b| {
            b.iter_batched(
                || {
                    nc += 1;
                    credentials(alg, nonce, nc)
                },
                |creds| {
                    let attempt = Attempt {
                        method: b"REGISTER",
                        request_uri: URI.as_bytes(),
                        realm: REALM,
                        user: "1001",
                        credentials: &[creds.as_bytes()],
                        source,
                    };
                    let o = auth.check(NOW + 1, &attempt, |u| {
                        (u == "1001").then_some("s3cr3t-pa55")
                    });
                    assert_eq!(o, Outcome::Authenticated);
                },
                BatchSize::SmallInput,
            )
        });
    }
    let auth = authenticator();
    g.bench_function("challenges/SHA-256+MD5", |b| {
        b.iter(|| auth.challenges(NOW, REALM, false, source))
    });
    g.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
