//! Transaction timers (RFC 3261 §17, Table 4) and the queue that orders
//! them. Time is an argument: the proxy never reads a clock.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// RFC 3261 timer values, configurable so tests can shrink them.
#[derive(Debug, Clone, Copy)]
pub struct TimerConfig {
    /// T1: RTT estimate (500 ms).
    pub t1: Duration,
    /// T2: maximum retransmit interval for non-INVITE requests and INVITE
    /// responses (4 s).
    pub t2: Duration,
    /// T4: maximum duration a message remains in the network (5 s).
    pub t4: Duration,
    /// Timer C: a proxy's INVITE transaction gives up waiting for a final
    /// response after this long (> 3 min, RFC 3261 §16.6 step 11).
    pub timer_c: Duration,
    /// How long a transaction that forwarded a 2xx (RFC 6026 Timer L) or
    /// answered a non-INVITE request over UDP (Timer J) stays to absorb
    /// retransmissions. The RFCs say 64·T1 (32 s); like Kamailio's
    /// `wt_timer` (5 s), Tandem keeps them for 5 s: at 8,000 calls/s, 32 s
    /// would hold half a million finished transactions per worker for
    /// retransmissions that, after a few seconds, no longer come.
    pub linger: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(181),
            linger: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64·T1: the lifetime bound of timers B, F, H and J.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

/// What a timer does when it fires. The letters are RFC 3261's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKind {
    /// A / E: retransmit a client request (UDP).
    Retransmit(u16),
    /// B / F: a client transaction got no final response: 408.
    ClientTimeout(u16),
    /// C: an INVITE branch proceeding for too long: CANCEL it, 408.
    ProceedingTimeout(u16),
    /// D / K: a completed client transaction stops absorbing retransmissions.
    ClientLinger(u16),
    /// E for our CANCEL of a branch (UDP).
    CancelRetransmit(u16),
    /// 64·T1 after our CANCEL without a final response: the branch is over
    /// (RFC 3261 §9.1).
    CancelTimeout(u16),
    /// G: retransmit the final response upstream (UDP, INVITE).
    ResponseRetransmit,
    /// H: no ACK for the final response; give up.
    AckTimeout,
    /// I / J: a completed server transaction stops absorbing retransmissions.
    ServerLinger,
}

/// A queue of `(deadline, transaction, timer, generation)`; entries whose
/// generation no longer matches the transaction's are stale and skipped
/// (cheaper than removing from a heap).
#[derive(Debug, Default)]
pub struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, u32, u32, TimerKind)>>,
}

impl TimerQueue {
    /// Schedules `kind` for transaction slot `tx` (with its generation).
    pub fn schedule(&mut self, at: Instant, tx: u32, generation: u32, kind: TimerKind) {
        self.heap.push(Reverse((at, tx, generation, kind)));
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|r| r.0 .0)
    }

    /// Pops the next entry due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(u32, u32, TimerKind)> {
        if self.heap.peek()?.0 .0 > now {
            return None;
        }
        let Reverse((_, tx, generation, kind)) = self.heap.pop()?;
        Some((tx, generation, kind))
    }

    /// Entries queued (including stale ones).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}
