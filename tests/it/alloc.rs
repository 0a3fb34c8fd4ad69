//! Parsing allocates nothing: a counting global allocator (per thread, so
//! tests running in parallel do not disturb each other) around framing,
//! validation and the typed views of every RFC 4475 message.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use tandem::sip::{validate, CSeq, HeaderName, Message, NameAddr, Uri, Via};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the only
// extra work is bumping a thread-local counter, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// Decodes what the proxy reads from every message: Via, From, To, CSeq,
/// Call-ID, the Request-URI.
fn decode(m: &Message) -> usize {
    let mut n = 0;
    for v in m.values(HeaderName::Via).flatten() {
        n += Via::parse(v).map_or(0, |v| v.port.unwrap_or(0) as usize);
    }
    for h in [HeaderName::From, HeaderName::To] {
        if let Some(a) = m.header(h).and_then(|v| NameAddr::parse(v).ok()) {
            n += a.tag().map_or(0, <[u8]>::len);
        }
    }
    n += m
        .header(HeaderName::CSeq)
        .and_then(CSeq::parse)
        .map_or(0, |c| c.seq as usize);
    n += m.header(HeaderName::CallId).map_or(0, <[u8]>::len);
    if let Some(u) = m.request_uri().and_then(|u| Uri::parse(u).ok()) {
        n += u.user().map_or(0, <[u8]>::len);
    }
    n
}

#[test]
fn parsing_allocates_nothing() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc4475");
    let mut inputs = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "dat") {
            inputs.push(Bytes::from(std::fs::read(path).unwrap()));
        }
    }
    assert_eq!(inputs.len(), 49);
    let mut parsed = 0;
    for raw in inputs {
        let raw = raw.clone(); // promote the Bytes outside the measurement
        let n = allocations_during(|| {
            if let Ok(m) = Message::parse_datagram(raw) {
                std::hint::black_box(validate(&m));
                std::hint::black_box(decode(&m));
                parsed += 1;
            }
        });
        assert_eq!(n, 0, "allocations while parsing");
    }
    assert!(parsed >= 40, "only {parsed} messages parsed");
    // The counter itself works.
    assert!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 16]))) >= 1);
}
