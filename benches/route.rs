//! Routing benchmarks: decision latency and table build / swap times.
//!
//! Decision latency is measured by criterion (the median is what
//! docs/routing.md reports). Build and swap times of multi-second
//! constructions are one-shot `Instant` measurements printed to stdout,
//! because criterion's many iterations of a 2 s build would take too long.
//!
//! Run: `cargo bench --bench route` (a few minutes on two cores).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tandem::config::{Carrier, Company, Config, Connection, Ddi, Friend};
use tandem::route::{BuildOptions, Caller, Publisher, RoutingTable};

/// A deterministic generator (PCG-style LCG), so every run benches the
/// same patterns.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + (self.next() % 10) as u8))
            .collect()
    }
}

/// A friend pattern of realistic shape and a number it matches:
/// 60 % E.164 ranges (`\+34944123[0-9]{3}`), 20 % international prefixes
/// with a fixed length (`0033[0-9]{9}`), 20 % short extension ranges
/// (`2[0-9]{3}`).
fn pattern(rng: &mut Rng) -> (String, String) {
    match rng.next() % 10 {
        0..=5 => {
            let width = 3 + (rng.next() % 6) as usize;
            let prefix = rng.digits(width);
            let tail = 9 - width;
            (
                format!("\\+34{prefix}[0-9]{{{tail}}}"),
                format!("+34{prefix}{}", rng.digits(tail)),
            )
        }
        6 | 7 => {
            let cc = 1 + rng.next() % 98;
            let width = (rng.next() % 4) as usize;
            let prefix = rng.digits(width);
            let tail = 9 - width;
            (
                format!("00{cc}{prefix}[0-9]{{{tail}}}"),
                format!("00{cc}{prefix}{}", rng.digits(tail)),
            )
        }
        _ => {
            let width = 1 + (rng.next() % 3) as usize;
            let prefix = format!("{}{}", 1 + rng.next() % 9, rng.digits(width - 1));
            let tail = 4 - width;
            (
                format!("{prefix}[0-9]{{{tail}}}"),
                format!("{prefix}{}", rng.digits(tail)),
            )
        }
    }
}

/// One company with `patterns` friend patterns, `per_friend` per friend,
/// and numbers to dial (half matching some pattern, half external).
fn company(
    index: usize,
    patterns: usize,
    per_friend: usize,
    rng: &mut Rng,
) -> (Company, Vec<String>) {
    let mut friends = Vec::new();
    let mut numbers = Vec::new();
    let mut left = patterns;
    while left > 0 {
        let n = left.min(per_friend);
        left -= n;
        let mut pats = Vec::with_capacity(n);
        for _ in 0..n {
            let (p, number) = pattern(rng);
            pats.push(p);
            if numbers.len() < 256 {
                numbers.push(number);
                numbers.push(format!("9{}", rng.digits(8)));
            }
        }
        let i = friends.len();
        friends.push(Friend {
            name: format!("f{i}"),
            description: None,
            priority: i as u32 + 1,
            password: "secret".into(),
            connection: Connection::Register,
            transport: None,
            address: None,
            port: None,
            patterns: pats,
            call_acl: None,
            fallback_outgoing_ddi: Some(format!("+3490{index:07}0")),
            country_code: None,
            area_code: None,
            international_prefix: None,
            trunk_prefix: None,
            national_length: None,
            allowed_codecs: None,
            from_domain: None,
        });
    }
    let company = Company {
        name: format!("c{index}"),
        domain: format!("c{index}.example.com"),
        country_code: "34".into(),
        area_code: None,
        international_prefix: "00".into(),
        trunk_prefix: String::new(),
        national_length: 9,
        outgoing_ddi: Some(format!("+3490{index:07}0")),
        carrier: Some("pstn".into()),
        terminal: vec![],
        user: vec![],
        extension: vec![],
        friend: friends,
        ddi: (0..3)
            .map(|k| Ddi {
                number: format!("+3490{index:07}{k}"),
                user: None,
                friend: Some("f0".into()),
                extension: None,
            })
            .collect(),
        call_acl: vec![],
    };
    (company, numbers)
}

fn platform(companies: usize, patterns: usize, per_friend: usize) -> (Config, Vec<String>) {
    let mut rng = Rng(0x7a6d);
    let mut config = Config {
        carrier: vec![Carrier {
            name: "pstn".into(),
            address: "udp:127.0.0.2:5090".into(),
            sources: vec!["127.0.0.2/32".into()],
        }],
        ..Config::default()
    };
    let mut numbers = Vec::new();
    for i in 0..companies {
        let (c, n) = company(i, patterns, per_friend, &mut rng);
        config.company.push(c);
        if numbers.len() < 256 {
            numbers.extend(n);
        }
    }
    (config, numbers)
}

fn timed<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    println!("{label}: {:.3} s", start.elapsed().as_secs_f64());
    out
}

/// The timed path of a new call: company by domain, then the decision
/// (the caller is friend f1, so its own patterns are skipped).
fn bench_decide(
    c: &mut Criterion,
    name: &str,
    table: &RoutingTable,
    domain: &str,
    numbers: &[String],
) {
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(1));
    let caller = Caller::Friend(
        table
            .company(domain)
            .unwrap()
            .friend_id("f1")
            .unwrap_or(table.company(domain).unwrap().friend_id("f0").unwrap()),
    );
    let mut i = 0;
    group.bench_function(BenchmarkId::from_parameter(name), |b| {
        b.iter(|| {
            i += 1;
            if i == numbers.len() {
                i = 0;
            }
            let company = table.company(black_box(domain)).unwrap();
            let d = table.decide(
                company,
                &caller,
                black_box(&numbers[i]),
                Some("+34944000000"),
            );
            black_box(d.is_routed())
        })
    });
    group.finish();
}

fn one_company(c: &mut Criterion) {
    for patterns in [10, 1_000, 10_000] {
        let (config, numbers) = platform(1, patterns, 10);
        let table = timed(&format!("build: 1 company x {patterns} patterns"), || {
            RoutingTable::build(&config).unwrap()
        });
        println!("  pattern memory: {} KiB", table.pattern_memory() >> 10);
        bench_decide(
            c,
            &format!("1 company x {patterns} patterns"),
            &table,
            "c0.example.com",
            &numbers,
        );
    }
}

/// The same 10,000 patterns forced through the DFA (each wrapped in
/// `(?:…)`, which the trie's grammar does not accept): what patterns
/// outside the `LITERAL DIGITS` shape cost.
fn dfa_path(c: &mut Criterion) {
    let (mut config, numbers) = platform(1, 10_000, 10);
    for f in &mut config.company[0].friend {
        for p in &mut f.patterns {
            *p = format!("(?:{p})");
        }
    }
    let table = timed("build: 1 company x 10000 patterns, DFA path", || {
        RoutingTable::build(&config).unwrap()
    });
    println!("  pattern memory: {} KiB", table.pattern_memory() >> 10);
    bench_decide(
        c,
        "1 company x 10000 patterns, DFA path",
        &table,
        "c0.example.com",
        &numbers,
    );
}

fn big_company(c: &mut Criterion) {
    let (config, numbers) = platform(1, 100_000, 10);
    let table = timed("build: 1 company x 100000 patterns", || {
        RoutingTable::build(&config).unwrap()
    });
    println!("  pattern memory: {} MiB", table.pattern_memory() >> 20);
    bench_decide(
        c,
        "1 company x 100000 patterns",
        &table,
        "c0.example.com",
        &numbers,
    );
}

fn platform_10k(c: &mut Criterion) {
    let (config, _) = platform(10_000, 30, 3);
    let one = BuildOptions {
        threads: 1,
        ..BuildOptions::default()
    };
    timed("build: 10000 companies x 30 patterns (1 thread)", || {
        RoutingTable::build_with(&config, None, one).unwrap()
    });
    let publisher = timed("build: 10000 companies x 30 patterns (all cores)", || {
        Publisher::new(&config).unwrap()
    });
    let table = publisher.table();
    println!("  pattern memory: {} MiB", table.pattern_memory() >> 20);

    // Swap after one company changes: validate + compile one company +
    // reassemble the indexes + store. Several rounds, median printed.
    let mut times = Vec::new();
    let mut changed = config.clone();
    for round in 0..9 {
        changed.company[round * 1000].friend[0].patterns[0] = format!("7{round}[0-9]{{2}}");
        let start = Instant::now();
        let stats = publisher.reload(&changed).unwrap();
        times.push(start.elapsed());
        assert_eq!(stats.compiled, 1);
    }
    times.sort();
    println!(
        "swap after one company changed, full reload with diff (median of 9): {:.2} ms",
        times[4].as_secs_f64() * 1e3
    );

    // The same change through the one-company path (admin API shape).
    let mut times = Vec::new();
    for round in 0..9 {
        let mut company = changed.company[round * 1000 + 1].clone();
        company.friend[0].patterns[0] = format!("8{round}[0-9]{{2}}");
        let start = Instant::now();
        publisher.update_company(&company).unwrap();
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "swap after one company changed, update_company (median of 9): {:.3} ms",
        times[4].as_secs_f64() * 1e3
    );

    // Lookups spread over many companies.
    let table = publisher.table();
    let calls: Vec<(String, String)> = (0..512)
        .map(|k| {
            let company = &changed.company[(k * 7919) % changed.company.len()];
            let f = &company.friend[k % company.friend.len()];
            let p = &f.patterns[0];
            // A number matching the pattern, or an external one.
            let number = if k % 2 == 0 {
                sample(p)
            } else {
                format!("9{:08}", k)
            };
            (company.domain.clone(), number)
        })
        .collect();
    let mut i = 0;
    let mut group = c.benchmark_group("decide");
    group.bench_function("10000 companies x 30 patterns", |b| {
        b.iter(|| {
            i += 1;
            if i == calls.len() {
                i = 0;
            }
            let (domain, number) = &calls[i];
            let company = table.company(black_box(domain)).unwrap();
            let d = table.decide(
                company,
                &Caller::Friend(tandem::route::table::FriendId(0)),
                number,
                None,
            );
            black_box(d.is_routed())
        })
    });
    // A carrier's call to a national number no company owns: read with
    // the numbering of the companies the carrier serves (all Spanish here).
    let carrier = Caller::Carrier(table.carrier_id("pstn").unwrap());
    let first = table.company("c0.example.com").unwrap();
    group.bench_function(
        "carrier call, unknown national number, 10000 companies",
        |b| {
            b.iter(|| {
                let d = table.decide(first, &carrier, black_box("944999999"), None);
                black_box(d.is_routed())
            })
        },
    );
    group.finish();
}

/// A number matching a generated pattern `LITERAL[0-9]{k}`.
fn sample(pattern: &str) -> String {
    let (literal, rest) = pattern.split_once("[0-9]{").unwrap();
    let k: usize = rest.trim_end_matches('}').parse().unwrap();
    format!("{}{}", literal.replace('\\', ""), "5".repeat(k))
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = one_company, dfa_path, platform_10k, big_company
}
criterion_main!(benches);
