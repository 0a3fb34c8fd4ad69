//! The binding log's records: the full state of one address of record,
//! framed and checksummed, so a log can be replayed after a crash.
//!
//! ```text
//! record  = len:u32 crc:u32 payload          ; crc32 (IEEE) over payload
//! payload = seq:u64 aor:str n:u16 binding*n
//! binding = contact:str addr transport:u8 worker:u16 expires:u64
//!           call_id:str cseq:u32 q:u16        ; q = 0xFFFF: no q
//! addr    = 4:u8 ip:[u8;4] port:u16
//!         / 6:u8 ip:[u8;16] port:u16 flowinfo:u32 scope_id:u32
//! str     = len:u16 utf8-bytes
//! ```
//!
//! Integers are little-endian. A record carries the *whole* state of its
//! AoR (not a delta) and a sequence number that grows with every update, so
//! replay is idempotent and does not depend on the order records sit in the
//! file: a record older than what is already applied for its AoR is
//! ignored, and an empty record removes the AoR (see [`Replay`]).
//!
//! The TCP connection id of a binding is not written: after a restart the
//! connection is gone, so replayed bindings have `conn: None`.
//!
//! Decoding never panics and never trusts a length: every read is bounds
//! checked, and a length prefix above [`MAX_RECORD_LEN`] is corruption, not
//! a reason to wait for 4 GiB of input.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use rustc_hash::FxHashMap;

use super::{Binding, Registrar};
use crate::proxy::Transport;

/// Bytes before the payload: length and CRC.
pub const HEADER_LEN: usize = 8;

/// The longest payload a record may have: [`super::MAX_BINDINGS`]
/// bindings whose contact and Call-ID fill a 64 KiB REGISTER each stay
/// below it; real ones are a few hundred bytes.
pub const MAX_RECORD_LEN: usize = 32 << 20;

const NO_Q: u16 = u16::MAX;

/// The shortest encoded binding: empty strings and an IPv4 address.
const MIN_BINDING_LEN: usize = 2 + 7 + 1 + 2 + 8 + 2 + 4 + 2;

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The global update sequence number the record was written with.
    pub seq: u64,
    /// The address of record.
    pub aor: &'a str,
    /// Its whole state after the update (empty: the AoR was removed).
    pub bindings: Vec<Binding>,
}

/// Why [`decode`] found no record at the start of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ends inside the record: more may follow (a log being
    /// read in pieces), or the write was torn by a crash.
    Incomplete,
    /// The length is impossible, the CRC does not match, or the payload
    /// does not follow the grammar: nothing after it can be trusted.
    Corrupt,
}

/// Appends one record holding `bindings` as the state of `aor`.
///
/// # Panics
///
/// If a string is longer than `u16::MAX` bytes or there are more than
/// `u16::MAX` bindings; [`Registrar::update`] refuses such input first.
pub fn encode<'b>(
    seq: u64,
    aor: &str,
    bindings: impl IntoIterator<Item = &'b Binding>,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    out.extend_from_slice(&seq.to_le_bytes());
    put_str(out, aor);
    let n_at = out.len();
    out.extend_from_slice(&[0; 2]);
    let mut n: usize = 0;
    for b in bindings {
        put_binding(out, b);
        n += 1;
    }
    let n = u16::try_from(n).expect("at most u16::MAX bindings per record");
    out[n_at..n_at + 2].copy_from_slice(&n.to_le_bytes());
    let payload = &out[start + HEADER_LEN..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).expect("strings in records are at most u16::MAX bytes");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_binding(out: &mut Vec<u8>, b: &Binding) {
    put_str(out, &b.contact);
    match b.source {
        SocketAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_le_bytes());
        }
        SocketAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_le_bytes());
            out.extend_from_slice(&a.flowinfo().to_le_bytes());
            out.extend_from_slice(&a.scope_id().to_le_bytes());
        }
    }
    out.push(match b.transport {
        Transport::Udp => 0,
        Transport::Tcp => 1,
    });
    out.extend_from_slice(&b.worker.to_le_bytes());
    out.extend_from_slice(&b.expires.to_le_bytes());
    put_str(out, &b.call_id);
    out.extend_from_slice(&b.cseq.to_le_bytes());
    out.extend_from_slice(&b.q.unwrap_or(NO_Q).to_le_bytes());
}

/// Decodes the record at the start of `buf`; returns it and its length
/// (header included).
pub fn decode(buf: &[u8]) -> Result<(Record<'_>, usize), DecodeError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Err(DecodeError::Incomplete);
    };
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len > MAX_RECORD_LEN {
        return Err(DecodeError::Corrupt);
    }
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Err(DecodeError::Incomplete);
    };
    if crc32fast::hash(payload) != crc {
        return Err(DecodeError::Corrupt);
    }
    let record = parse_payload(payload).ok_or(DecodeError::Corrupt)?;
    Ok((record, HEADER_LEN + len))
}

/// A bounds-checked reader over a payload.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).map(|s| s.try_into().expect("N bytes"))
    }
    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|a| a[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u16()?;
        std::str::from_utf8(self.take(usize::from(n))?).ok()
    }
}

fn parse_payload(payload: &[u8]) -> Option<Record<'_>> {
    let mut r = Reader(payload);
    let seq = r.u64()?;
    let aor = r.str()?;
    let n = r.u16()?;
    // A count that cannot fit is corruption, and must not size an
    // allocation.
    if usize::from(n) * MIN_BINDING_LEN > r.0.len() {
        return None;
    }
    let mut bindings = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        bindings.push(parse_binding(&mut r)?);
    }
    r.0.is_empty().then_some(Record { seq, aor, bindings })
}

fn parse_binding(r: &mut Reader<'_>) -> Option<Binding> {
    let contact = r.str()?;
    let source = match r.u8()? {
        4 => {
            let ip = Ipv4Addr::from(r.array::<4>()?);
            SocketAddr::V4(SocketAddrV4::new(ip, r.u16()?))
        }
        6 => {
            let ip = Ipv6Addr::from(r.array::<16>()?);
            let port = r.u16()?;
            SocketAddr::V6(SocketAddrV6::new(ip, port, r.u32()?, r.u32()?))
        }
        _ => return None,
    };
    let transport = match r.u8()? {
        0 => Transport::Udp,
        1 => Transport::Tcp,
        _ => return None,
    };
    let worker = r.u16()?;
    let expires = r.u64()?;
    let call_id = r.str()?;
    let cseq = r.u32()?;
    let q = match r.u16()? {
        NO_Q => None,
        q => Some(q),
    };
    Some(Binding {
        contact: contact.into(),
        source,
        transport,
        conn: None,
        worker,
        expires,
        call_id: call_id.into(),
        cseq,
        q,
    })
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Whole, valid records read (applied or found stale).
    pub records: usize,
    /// Bytes from the start of the log to the end of the last valid
    /// record: what a recovering writer keeps.
    pub valid_len: usize,
    /// Whether the log does not end on a valid record: a torn write at the
    /// tail, or corruption (replay stops at the first bad record).
    pub torn: bool,
}

/// A replay in progress, which may be fed a log in pieces.
///
/// It remembers, for the duration of the replay, the sequence number of
/// every AoR that a record removed, so an older record for it that comes
/// later in the file does not bring it back; this is what makes the result
/// independent of record order.
#[derive(Debug)]
pub struct Replay<'r> {
    registrar: &'r Registrar,
    now: u64,
    removed: FxHashMap<Box<str>, u64>,
    stats: ReplayStats,
    stopped: bool,
}

impl<'r> Replay<'r> {
    /// Starts replaying into `registrar`; bindings that expire at or
    /// before `now` are skipped.
    pub fn new(registrar: &'r Registrar, now: u64) -> Self {
        Replay {
            registrar,
            now,
            removed: FxHashMap::default(),
            stats: ReplayStats::default(),
            stopped: false,
        }
    }

    /// Applies the whole records at the start of `chunk` and returns how
    /// many bytes they took; the rest (an incomplete record) should be
    /// passed again with more input after it. After a corrupt record
    /// nothing more is applied and 0 is returned.
    pub fn feed(&mut self, chunk: &[u8]) -> usize {
        let mut at = 0;
        while !self.stopped {
            match decode(&chunk[at..]) {
                Ok((rec, len)) => {
                    self.apply(&rec);
                    at += len;
                    self.stats.records += 1;
                    self.stats.valid_len += len;
                }
                Err(DecodeError::Incomplete) => break,
                Err(DecodeError::Corrupt) => {
                    self.stopped = true;
                    self.stats.torn = true;
                }
            }
        }
        at
    }

    /// Whether a corrupt record stopped the replay (feeding more is
    /// pointless).
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Ends the replay; `leftover` is how many bytes of input were not
    /// consumed by [`Replay::feed`] (a torn tail if not zero).
    pub fn finish(mut self, leftover: usize) -> ReplayStats {
        self.stats.torn |= leftover > 0;
        self.stats
    }

    fn apply(&mut self, rec: &Record<'_>) {
        if self.removed.get(rec.aor).is_some_and(|&s| s >= rec.seq) {
            return;
        }
        let now = self.now;
        let live = rec.bindings.iter().filter(|b| b.expires > now).cloned();
        if !self.registrar.restore(rec.seq, rec.aor, live) {
            return;
        }
        if !rec.bindings.iter().any(|b| b.expires > now) {
            match self.removed.get_mut(rec.aor) {
                Some(s) => *s = rec.seq,
                None => {
                    self.removed.insert(rec.aor.into(), rec.seq);
                }
            }
        }
    }
}
