//! The client side of the proxy: responses from the branches, the choice
//! of the best final response, and the transaction timers.

use std::time::Instant;

use bytes::Bytes;

use super::timer::TimerKind;
use super::{build, Branch, BranchState, Proxy, ServerState, Source, Transmit, Transport};
use crate::sip::{response_to, CSeq, HeaderName, Message, Method, StatusCode};

impl Proxy {
    pub(super) fn response(&mut self, now: Instant, msg: Message) {
        let via = super::top_via(&msg);
        let Some(&(slot, i)) = via.branch().and_then(|b| self.client_index.get(b)) else {
            self.stats.dropped += 1;
            return; // matches no transaction: dropped (DOMAIN.md §7)
        };
        if msg.values(HeaderName::Via).nth(1).is_none() {
            // Only our Via: nowhere to send it on (RFC 3261 §16.7 step 3).
            self.stats.dropped += 1;
            return;
        }
        let status = msg.status().expect("response");
        let cseq =
            CSeq::parse(msg.header(HeaderName::CSeq).expect("validated")).expect("validated");
        if cseq.method == Method::CANCEL {
            return; // the answer to our CANCEL: hop by hop
        }
        let tx = self.slots[slot as usize].as_mut().expect("indexed");
        let generation = tx.generation;
        let b = &mut tx.branches[i as usize];
        let timers = self.cfg.timers;

        if status.is_provisional() {
            if b.state == BranchState::Calling {
                b.state = BranchState::Proceeding;
                if tx.invite {
                    self.timers.schedule(
                        now + timers.timer_c,
                        slot,
                        generation,
                        TimerKind::ProceedingTimeout(i),
                    );
                }
            }
            if b.cancel_pending {
                if let Some(c) = cancel_of(b) {
                    self.out.push_back(c);
                }
            }
            if status != StatusCode::TRYING && tx.state == ServerState::Proceeding {
                let mut e = msg.edit();
                e.remove_top_via();
                let data = e.finish().into();
                let up = tx.upstream;
                self.out.push_back(Transmit {
                    peer: up,
                    source: Source::Listen,
                    data,
                });
            }
            return;
        }

        // A final response.
        if tx.invite && status.is_success() {
            // Every 2xx goes upstream, retransmissions included (RFC 6026).
            b.state = BranchState::Terminated;
            b.final_status = Some(status);
            b.sent = None;
            let mut e = msg.edit();
            e.remove_top_via();
            let data = e.finish().into();
            let up = tx.upstream;
            let first = tx.state == ServerState::Proceeding;
            if first {
                tx.state = ServerState::Accepted;
                // Lingering in Accepted only forwards 2xx retransmissions:
                // the request is no longer needed.
                tx.request = None;
                self.timers.schedule(
                    now + timers.linger,
                    slot,
                    generation,
                    TimerKind::ServerLinger,
                );
                // RFC 3261 §16.7 step 10: cancel the other branches.
                for (j, o) in tx.branches.iter_mut().enumerate() {
                    if j == i as usize {
                        continue;
                    }
                    match o.state {
                        BranchState::Proceeding => {
                            if let Some(c) = cancel_of(o) {
                                self.out.push_back(c);
                            }
                        }
                        BranchState::Calling => o.cancel_pending = true,
                        _ => {}
                    }
                }
            }
            self.out.push_back(Transmit {
                peer: up,
                source: Source::Listen,
                data,
            });
            return;
        }

        if tx.invite {
            // Non-2xx: ACK it hop by hop (RFC 3261 §17.1.1.3), every time it
            // comes (retransmissions mean our ACK was lost).
            // The ACK is built once from the request as sent, which is then
            // dropped.
            if b.ack.is_none() {
                if let Some(sent) = b.sent.take() {
                    let to = msg.header(HeaderName::To);
                    b.ack = Some(build::derived_request(&sent, "ACK", to).into());
                }
            }
            if let Some(ack) = b.ack.clone() {
                self.out.push_back(Transmit {
                    peer: b.peer,
                    source: Source::Worker,
                    data: ack,
                });
            }
        }
        if matches!(b.state, BranchState::Completed | BranchState::Terminated) {
            self.stats.absorbed += 1;
            return;
        }
        b.state = BranchState::Completed;
        b.final_status = Some(status);
        b.sent = None;
        let linger = if b.peer.transport == Transport::Udp {
            if tx.invite {
                std::time::Duration::from_secs(32)
            } else {
                timers.t4
            }
        } else {
            std::time::Duration::ZERO
        };
        self.timers
            .schedule(now + linger, slot, generation, TimerKind::ClientLinger(i));

        let mut e = msg.edit();
        e.remove_top_via();
        let data = e.finish();
        if better(status, tx.best.as_ref().map(|b| b.0)) {
            tx.best = Some((status, data));
        }
        self.maybe_finish(now, slot);
    }

    /// Sends the best final response upstream once every branch has one
    /// (RFC 3261 §16.7 step 6), when no 2xx was forwarded already.
    pub(super) fn maybe_finish(&mut self, now: Instant, slot: u32) {
        let tx = self.slots[slot as usize].as_mut().expect("live");
        if tx.state != ServerState::Proceeding
            || tx.branches.iter().any(|b| b.final_status.is_none())
        {
            return;
        }
        let Some(request) = tx.request.take() else {
            return;
        };
        let local =
            |status, reason| response_to(&request, status, reason, Some(tx.to_tag.as_bytes()), &[]);
        let data: Bytes = match tx.best.take() {
            None => local(StatusCode::REQUEST_TIMEOUT, "Request Timeout"),
            // RFC 3261 §16.7 step 6: a 503 is not passed on as such.
            Some((StatusCode::SERVICE_UNAVAILABLE, _)) => {
                local(StatusCode::SERVER_INTERNAL_ERROR, "Server Internal Error")
            }
            Some((_, data)) => data,
        }
        .into();
        tx.state = ServerState::Completed;
        tx.last_response = Some(data.clone());
        let up = tx.upstream;
        let generation = tx.generation;
        let invite = tx.invite;
        let timers = self.cfg.timers;
        if invite {
            if up.transport == Transport::Udp {
                self.timers.schedule(
                    now + tx.g_interval,
                    slot,
                    generation,
                    TimerKind::ResponseRetransmit,
                );
            }
            self.timers.schedule(
                now + timers.t1x64(),
                slot,
                generation,
                TimerKind::AckTimeout,
            );
        } else {
            let linger = if up.transport == Transport::Udp {
                timers.linger
            } else {
                std::time::Duration::ZERO
            };
            self.timers
                .schedule(now + linger, slot, generation, TimerKind::ServerLinger);
        }
        self.send(up, Source::Listen, data);
    }

    pub(super) fn fire(&mut self, now: Instant, slot: u32, kind: TimerKind) {
        let timers = self.cfg.timers;
        let tx = self.slots[slot as usize].as_mut().expect("checked");
        let generation = tx.generation;
        match kind {
            TimerKind::Retransmit(i) => {
                let b = &mut tx.branches[i as usize];
                let again = match b.state {
                    BranchState::Calling => true,
                    BranchState::Proceeding => !tx.invite,
                    _ => false,
                };
                if again {
                    b.interval = if tx.invite {
                        b.interval * 2
                    } else {
                        (b.interval * 2).min(timers.t2)
                    };
                    if let Some(sent) = &b.sent {
                        let (peer, data) = (b.peer, sent.buffer().clone());
                        let next = b.interval;
                        self.send(peer, Source::Worker, data);
                        self.timers.schedule(
                            now + next,
                            slot,
                            generation,
                            TimerKind::Retransmit(i),
                        );
                    }
                }
            }
            TimerKind::ClientTimeout(i) | TimerKind::ProceedingTimeout(i) => {
                let b = &mut tx.branches[i as usize];
                let waiting = match kind {
                    TimerKind::ClientTimeout(_) => {
                        b.state == BranchState::Calling
                            || (!tx.invite && b.state == BranchState::Proceeding)
                    }
                    _ => b.state == BranchState::Proceeding,
                };
                if waiting {
                    if b.state == BranchState::Proceeding && tx.invite {
                        if let Some(c) = cancel_of(b) {
                            self.out.push_back(c);
                        }
                    }
                    b.state = BranchState::Terminated;
                    b.final_status = Some(StatusCode::REQUEST_TIMEOUT);
                    self.maybe_finish(now, slot);
                }
            }
            TimerKind::ClientLinger(i) => {
                tx.branches[i as usize].state = BranchState::Terminated;
            }
            TimerKind::ResponseRetransmit => {
                if tx.state == ServerState::Completed {
                    tx.g_interval = (tx.g_interval * 2).min(timers.t2);
                    let next = tx.g_interval;
                    if let Some(r) = tx.last_response.clone() {
                        let up = tx.upstream;
                        self.send(up, Source::Listen, r);
                    }
                    self.timers.schedule(
                        now + next,
                        slot,
                        generation,
                        TimerKind::ResponseRetransmit,
                    );
                }
            }
            TimerKind::AckTimeout => {
                if tx.state == ServerState::Completed {
                    self.release(slot);
                }
            }
            TimerKind::ServerLinger => self.release(slot),
        }
    }
}

/// The CANCEL of a branch (RFC 3261 §9.1), once: `None` when it was sent
/// already or the branch no longer holds its request.
pub(super) fn cancel_of(b: &mut Branch) -> Option<Transmit> {
    if b.cancelled {
        return None;
    }
    let sent = b.sent.as_ref()?;
    b.cancelled = true;
    Some(Transmit {
        peer: b.peer,
        source: Source::Worker,
        data: build::derived_request(sent, "CANCEL", None).into(),
    })
}

/// Whether `new` beats the best final response so far (RFC 3261 §16.7
/// step 6): a 6xx wins, else the lowest class, then the lowest code.
fn better(new: StatusCode, best: Option<StatusCode>) -> bool {
    let Some(best) = best else { return true };
    let rank = |s: StatusCode| {
        if s.0 >= 600 {
            (0, s.0)
        } else {
            (s.0 / 100, s.0)
        }
    };
    rank(new) < rank(best)
}
