//! Registrar benchmarks: lookup and refresh latency among a million AoRs
//! (criterion), and one-shot figures printed to stdout: the resident memory
//! a million registrations take, and how long a snapshot and its replay
//! take (what a restart costs).
//!
//! The bench uses mimalloc, the allocator of the `tandem` binary, so the
//! memory figure is the one the switch would show. Data has realistic
//! sizes: AoRs of ~28 bytes, contacts of ~50, Call-IDs of 36 (a UUID).
//!
//! Run: `cargo bench --bench registrar` (about a minute on two cores).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tandem::proxy::Transport;
use tandem::registrar::{ContactSpec, Registrar, RegistrarConfig, Update};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const AORS: usize = 1_000_000;
const NOW: u64 = 1_700_000_000;

/// A deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// The strings of registration `i`.
struct Reg {
    aor: String,
    contact: String,
    call_id: String,
    source: SocketAddr,
}

fn reg(i: usize) -> Reg {
    let h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    Reg {
        // "u0123456@company042.example" style: 28 bytes.
        aor: format!("u{i:07}@company{:03}.example", i % 1000),
        // 50 bytes.
        contact: format!(
            "sip:u{i:07}@192.168.{}.{}:5060;transport=udp",
            (h >> 8) % 256,
            h % 256
        ),
        // A UUID: 36 bytes.
        call_id: format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            h >> 32,
            (h >> 16) & 0xffff,
            h & 0xfff,
            (h >> 12) & 0xfff,
            h & 0xffff_ffff_ffff
        ),
        source: SocketAddr::from(([203, 0, 113, (i % 250) as u8], 1024 + (h % 60000) as u16)),
    }
}

fn update(r: &Reg, cseq: u32) -> Update<'_> {
    Update {
        aor: &r.aor,
        contacts: vec![ContactSpec::Uri {
            uri: &r.contact,
            expires: None,
            q: None,
        }],
        expires: Some(3600),
        call_id: &r.call_id,
        cseq,
        source: r.source,
        transport: Transport::Udp,
        conn: None,
        worker: (cseq % 4) as u16,
    }
}

fn config() -> RegistrarConfig {
    RegistrarConfig {
        min_expires: 60,
        max_expires: 3600,
        default_expires: 3600,
        max_bindings: 10,
    }
}

/// Resident set size in bytes, from `/proc/self/statm`.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1 << 20)
}

fn registrar(c: &mut Criterion) {
    println!("registrar: {AORS} AoRs x 1 binding");
    let before = rss();
    let start = Instant::now();
    let registrar = Registrar::new(config());
    for i in 0..AORS {
        let r = reg(i);
        registrar.update(NOW, &update(&r, 1)).unwrap();
    }
    let took = start.elapsed();
    let grown = rss().saturating_sub(before);
    println!(
        "  insert: {:.3} s ({:.0} ns per REGISTER, record encoding included)",
        took.as_secs_f64(),
        took.as_nanos() as f64 / AORS as f64
    );
    println!(
        "  RSS growth: {:.0} MiB ({} bytes per AoR; target <= 512 MiB)",
        mib(grown),
        grown / AORS as u64
    );
    assert_eq!(registrar.bindings(), AORS);

    let start = Instant::now();
    let mut snap = Vec::new();
    registrar.snapshot(NOW, &mut snap);
    println!(
        "  snapshot: {:.3} s, {:.0} MiB ({} bytes per binding)",
        start.elapsed().as_secs_f64(),
        mib(snap.len() as u64),
        snap.len() / AORS
    );
    let fresh = Registrar::new(config());
    let start = Instant::now();
    let stats = fresh.replay(&snap, NOW);
    println!(
        "  replay: {:.3} s ({} records, torn: {})",
        start.elapsed().as_secs_f64(),
        stats.records,
        stats.torn
    );
    assert_eq!(fresh.bindings(), AORS);
    drop((fresh, snap));

    // Lookups of random AoRs: 65,536 keys spread over the whole map, more
    // than the caches hold. The keys sit side by side in one buffer, as an
    // AoR sits in the just-parsed message: the bench then measures the
    // registrar's memory accesses, not its own.
    let mut rng = Rng(0x5eed);
    let picks: Vec<Reg> = (0..1 << 16)
        .map(|_| reg(rng.next() as usize % AORS))
        .collect();
    let key_len = picks[0].aor.len();
    assert!(picks.iter().all(|r| r.aor.len() == key_len));
    let keys: String = picks.iter().map(|r| r.aor.as_str()).collect();
    let key = |i: usize| &keys[i * key_len..(i + 1) * key_len];
    let mut group = c.benchmark_group("registrar");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("with_bindings among 1M", |b| {
        b.iter(|| {
            i = (i + 1) & 0xffff;
            registrar.with_bindings(black_box(key(i)), NOW, |b| {
                black_box(b.first().map(|b| b.source))
            })
        })
    });
    group.bench_function("lookup (cloned) among 1M", |b| {
        b.iter(|| {
            i = (i + 1) & 0xffff;
            black_box(registrar.lookup(black_box(key(i)), NOW))
        })
    });
    let mut cseq = 1;
    group.bench_function("update: refresh among 1M", |b| {
        b.iter(|| {
            i = (i + 1) & 0xffff;
            cseq += 1;
            let u = update(&picks[i], cseq);
            black_box(registrar.update(NOW + 1, black_box(&u)).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, registrar);
criterion_main!(benches);
