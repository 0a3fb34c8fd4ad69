//! Transaction timers (RFC 3261 §17, Table 4) and the queue that orders
//! them. Time is an argument: the proxy never reads a clock.

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
/// generation no longer matches the transaction's are stale: never removed
/// one by one (that would need a handle per entry), but dropped when the
/// wheel next passes their slot, within one turn (8.2 s), due or not. A
/// finished call's 3-minute Timer C thus costs memory for seconds, not
/// minutes: driven at 2,000 calls/s, the queue stays at ~80,000 entries
/// where it used to grow past 700,000.
///
/// A hashed timing wheel: [`SLOTS`] slots of one [`TICK`] each, an entry in
/// the slot of its deadline's tick (modulo the wheel), with its exact
/// deadline. Scheduling is a push; firing walks the slots the clock has
/// passed. Under load hundreds of thousands of entries wait (Timer C runs
/// three minutes per call), where a binary heap paid a logarithm of that,
/// in cache misses, for every push and pop; here an entry whose deadline is
/// more than one turn of the wheel away is looked at once per turn.
/// Entries fire in deadline order within what is due, as a heap's would.
#[derive(Debug)]
pub struct TimerQueue {
    slots: Vec<Vec<Entry>>,
    /// The instant of tick 0 (the first deadline ever scheduled).
    origin: Option<Instant>,
    /// Every tick before this one has been fired.
    cursor: u64,
    /// Due entries taken out of the wheel, latest first.
    ready: Vec<Entry>,
    len: usize,
    /// No entry is due before this (a lower bound; `None`: nothing queued).
    hint: Option<Instant>,
}

type Entry = (Instant, u32, u32, TimerKind);

/// The wheel's resolution.
pub const TICK: Duration = Duration::from_millis(1);
/// Slots in the wheel: one turn is 8.192 s.
pub const SLOTS: usize = 8192;

/// The wheel's tick 0 lies this long before the first deadline scheduled,
/// so later, earlier deadlines (a 5 s linger after a 32 s timeout) still
/// fall after it: every entry in the slot of its own tick.
const ORIGIN_MARGIN: Duration = Duration::from_secs(600);

impl Default for TimerQueue {
    fn default() -> Self {
        TimerQueue {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            origin: None,
            cursor: 0,
            ready: Vec::new(),
            len: 0,
            hint: None,
        }
    }
}

impl TimerQueue {
    fn tick(&self, at: Instant) -> u64 {
        match self.origin {
            Some(o) => {
                let d = at.saturating_duration_since(o);
                // Whole milliseconds (TICK), without a 128-bit division.
                d.as_secs() * 1000 + u64::from(d.subsec_millis())
            }
            None => 0,
        }
    }

    /// Schedules `kind` for transaction slot `tx` (with its generation).
    pub fn schedule(&mut self, at: Instant, tx: u32, generation: u32, kind: TimerKind) {
        match self.origin {
            None => self.origin = Some(at.checked_sub(ORIGIN_MARGIN).unwrap_or(at)),
            Some(o) if at < o => self.rebase(at),
            Some(_) => {}
        }
        // A deadline in a tick already fired goes in the current one.
        let tick = self.tick(at).max(self.cursor);
        self.slots[(tick % SLOTS as u64) as usize].push((at, tx, generation, kind));
        self.len += 1;
        self.hint = Some(self.hint.map_or(at, |h| h.min(at)));
    }

    /// The earliest deadline, or an instant before it (never after).
    pub fn next(&self) -> Option<Instant> {
        self.hint
    }

    /// Pops the next entry due at or before `now`. `live(tx, generation)`
    /// tells whether an entry's transaction still exists: an entry whose
    /// transaction is gone is dropped when the wheel passes its slot, due
    /// or not, so a finished call's Timer C (three minutes) does not stay
    /// queued long after the call.
    pub fn pop_due(
        &mut self,
        now: Instant,
        live: impl Fn(u32, u32) -> bool,
    ) -> Option<(u32, u32, TimerKind)> {
        if self.ready.is_empty() {
            if self.hint.is_none_or(|h| h > now) {
                return None;
            }
            self.collect(now, live);
            if self.ready.is_empty() {
                self.hint = self.lower_bound();
                return None;
            }
        }
        let (_, tx, generation, kind) = self.ready.pop()?;
        self.len -= 1;
        Some((tx, generation, kind))
    }

    /// Moves the origin back to `at` (a deadline before it), keeping every
    /// entry: the wheel is rebuilt around the new origin. Deadlines come
    /// from a clock that only moves forward, so this happens at most while
    /// the queue is young (the origin is set [`ORIGIN_MARGIN`] before the
    /// first deadline, when the clock allows).
    fn rebase(&mut self, at: Instant) {
        let old = self.origin.expect("rebase of a started wheel");
        let origin = at.checked_sub(ORIGIN_MARGIN).unwrap_or(at);
        debug_assert!(origin < old);
        self.origin = Some(origin);
        // Back to the new deadline's tick: every entry sits at or after it
        // (looking at slots again is harmless; missing one is not).
        self.cursor = self.tick(at);
        let entries: Vec<Entry> = self.slots.iter_mut().flat_map(std::mem::take).collect();
        for e in entries {
            let tick = self.tick(e.0).max(self.cursor);
            self.slots[(tick % SLOTS as u64) as usize].push(e);
        }
    }

    /// Moves every entry due at `now` to `ready`, in firing order, and
    /// drops the entries of transactions that are gone from the slots it
    /// passes (each entry is passed once per turn of the wheel).
    fn collect(&mut self, now: Instant, live: impl Fn(u32, u32) -> bool) {
        let end = self.tick(now);
        let start = self.cursor.min(end);
        // A jump longer than one turn visits each slot once.
        let count = (end - start + 1).min(SLOTS as u64);
        for t in start..start + count {
            let slot = &mut self.slots[(t % SLOTS as u64) as usize];
            let mut i = 0;
            while i < slot.len() {
                let (at, tx, generation, _) = slot[i];
                if !live(tx, generation) {
                    slot.swap_remove(i);
                    self.len -= 1;
                } else if at <= now {
                    self.ready.push(slot.swap_remove(i));
                } else {
                    i += 1;
                }
            }
        }
        self.cursor = end;
        // Latest first, so `pop` yields the earliest.
        self.ready.sort_unstable_by(|a, b| b.cmp(a));
    }

    /// The earliest deadline in the cursor's slot (exact: entries of later
    /// turns and of the rest of the current tick, and deadlines before the
    /// origin), or the start of the next non-empty slot's tick (no entry
    /// there is earlier: each sits in the slot of its own tick): whichever
    /// comes first. Never before an entry; always after the instant the
    /// wheel was last run at, so a caller that sleeps until it makes
    /// progress.
    fn lower_bound(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let origin = self.origin?;
        let here = self.slots[(self.cursor % SLOTS as u64) as usize]
            .iter()
            .map(|e| e.0)
            .min();
        let next = (1..SLOTS as u64)
            .map(|k| self.cursor + k)
            .find(|t| !self.slots[(t % SLOTS as u64) as usize].is_empty())
            .map(|t| origin + Duration::from_nanos(t.saturating_mul(TICK.as_nanos() as u64)));
        match (here, next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Entries queued (including stale ones).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut TimerQueue, now: Instant) -> Vec<u32> {
        std::iter::from_fn(|| q.pop_due(now, |_, _| true))
            .map(|(tx, _, _)| tx)
            .collect()
    }

    #[test]
    fn entries_fire_at_their_deadline_in_order() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        let ms = Duration::from_millis;
        q.schedule(t0 + ms(500), 1, 0, TimerKind::AckTimeout);
        q.schedule(t0 + ms(32_000), 2, 0, TimerKind::AckTimeout);
        q.schedule(t0 + ms(181_000), 3, 0, TimerKind::AckTimeout);
        q.schedule(
            t0 + Duration::from_micros(499_700),
            4,
            0,
            TimerKind::AckTimeout,
        );
        assert_eq!(q.len(), 4);
        assert!(q.next().unwrap() <= t0 + Duration::from_micros(499_700));
        assert_eq!(
            drain(&mut q, t0 + Duration::from_micros(499_699)),
            Vec::<u32>::new()
        );
        assert_eq!(drain(&mut q, t0 + Duration::from_micros(499_700)), vec![4]);
        assert_eq!(drain(&mut q, t0 + ms(500)), vec![1]);
        assert!(q.next().unwrap() <= t0 + ms(32_000));
        assert!(q.next().unwrap() > t0 + ms(500));
        // Entries more than a turn away stay until their own deadline.
        assert_eq!(drain(&mut q, t0 + ms(31_999)), Vec::<u32>::new());
        assert_eq!(drain(&mut q, t0 + ms(100_000)), vec![2]);
        assert_eq!(drain(&mut q, t0 + ms(180_999)), Vec::<u32>::new());
        // A long jump fires everything due, earliest first.
        q.schedule(t0 + ms(150_000), 5, 0, TimerKind::AckTimeout);
        assert_eq!(drain(&mut q, t0 + ms(10_000_000)), vec![5, 3]);
        assert!(q.is_empty());
        assert_eq!(q.next(), None);
    }

    #[test]
    fn a_deadline_already_past_fires_at_the_next_look() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        q.schedule(t0 + Duration::from_secs(5), 1, 0, TimerKind::ServerLinger);
        assert_eq!(drain(&mut q, t0 + Duration::from_secs(6)), vec![1]);
        q.schedule(t0 + Duration::from_secs(1), 2, 0, TimerKind::ServerLinger);
        assert_eq!(drain(&mut q, t0 + Duration::from_secs(6)), vec![2]);
    }

    #[test]
    fn an_earlier_deadline_than_any_before_keeps_its_place() {
        // The first deadline far out, then nearer ones: the wheel must not
        // pile them into one slot (or fire them late).
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        let s = Duration::from_secs;
        q.schedule(t0 + s(32), 1, 0, TimerKind::ServerLinger);
        q.schedule(t0 + s(5), 2, 0, TimerKind::ServerLinger);
        q.schedule(
            t0 + Duration::from_millis(500),
            3,
            0,
            TimerKind::ServerLinger,
        );
        assert!(q.next().unwrap() <= t0 + Duration::from_millis(500));
        assert_eq!(drain(&mut q, t0 + s(1)), vec![3]);
        assert!(q.next().unwrap() > t0 + s(1));
        assert_eq!(drain(&mut q, t0 + s(6)), vec![2]);
        assert_eq!(drain(&mut q, t0 + s(40)), vec![1]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_deadline_before_the_origin_rebuilds_the_wheel() {
        let t0 = Instant::now();
        let Some(early) = t0.checked_sub(Duration::from_secs(700)) else {
            return; // the machine has not been up that long
        };
        let mut q = TimerQueue::default();
        q.schedule(t0 + Duration::from_secs(1), 1, 0, TimerKind::ServerLinger);
        q.schedule(early, 2, 0, TimerKind::ServerLinger);
        q.schedule(t0 + Duration::from_secs(20), 3, 0, TimerKind::ServerLinger);
        assert!(q.next().unwrap() <= early);
        assert_eq!(drain(&mut q, early), vec![2]);
        assert_eq!(drain(&mut q, t0), Vec::<u32>::new());
        assert_eq!(drain(&mut q, t0 + Duration::from_secs(2)), vec![1]);
        assert_eq!(drain(&mut q, t0 + Duration::from_secs(30)), vec![3]);
    }

    #[test]
    fn entries_of_finished_transactions_go_within_a_turn() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        let s = Duration::from_secs;
        // Timer C of 1,000 calls, three minutes out; odd calls finish.
        for tx in 0..1000u32 {
            q.schedule(t0 + s(181), tx, 7, TimerKind::ProceedingTimeout(0));
        }
        q.schedule(t0 + s(1), 5000, 0, TimerKind::ServerLinger);
        let live = |tx: u32, _| tx % 2 == 0;
        let mut now = t0;
        while now < t0 + s(20) {
            now += Duration::from_millis(10);
            while q.pop_due(now, live).is_some() {}
        }
        // One turn (8.2 s) later the finished calls' entries are gone, the
        // live ones stay until their deadline.
        assert_eq!(q.len(), 500);
        let fired: Vec<u32> = std::iter::from_fn(|| q.pop_due(t0 + s(181), live))
            .map(|(tx, _, _)| tx)
            .collect();
        assert_eq!(fired.len(), 500);
        assert!(fired.iter().all(|tx| tx % 2 == 0));
        assert!(q.is_empty());
    }

    #[test]
    fn many_entries_against_a_sorted_reference() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        let mut reference = Vec::new();
        let mut x: u64 = 7;
        for i in 0..5000u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let at = t0 + Duration::from_micros(x % 40_000_000);
            q.schedule(at, i, 0, TimerKind::Retransmit(0));
            reference.push((at, i));
        }
        reference.sort();
        let mut fired = Vec::new();
        let mut now = t0;
        while fired.len() < reference.len() {
            now += Duration::from_millis(7);
            while let Some((tx, _, _)) = q.pop_due(now, |_, _| true) {
                fired.push(tx);
            }
            if let Some(n) = q.next() {
                assert!(reference[fired.len()].0 >= n, "the hint is a lower bound");
                assert!(n > now, "and it is ahead of the clock");
            }
        }
        assert_eq!(fired, reference.iter().map(|r| r.1).collect::<Vec<_>>());
    }
}
