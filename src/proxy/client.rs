//! The client side of the proxy: responses from the branches, the choice
//! of the best final response, and the transaction timers.

use std::time::Instant;

use bytes::Bytes;

use super::timer::TimerKind;
use super::{build, BranchState, Peer, Proxy, ServerState, Source, Transmit, Transport};
use crate::sip::{response_to, CSeq, HeaderName, Message, Method, StatusCode};

/// A response as sent upstream: our Via removed, From/To/SDP restored to
/// what the upstream side expects (see the `rewrite` module).
fn upstream(b: &super::Branch, msg: &Message, from: &Peer) -> Vec<u8> {
    let mut e = msg.edit();
    e.remove_top_via();
    // A binding's answer (to a request sent from the shared socket, or on
    // the binding's TCP connection), or a friend's over UDP (a PBX behind
    // static NAT writes its private address): its Contact fixed as a
    // request's would be, from where the answer came (the connection it
    // arrived on). A friend's TCP Contact is left alone: the configuration
    // names its address, and in-dialog requests reconnect there.
    if b.source == Source::Listen
        || (b.friend.is_some() && !b.carrier && from.transport == Transport::Udp)
    {
        super::rewrite::fix_response_contact(&mut e, msg, from);
    }
    // RFC 3325 §5: identity headers only from a trusted element. A friend
    // or a phone cannot tell the caller (or the carrier's network) who
    // answered; the request's own identity headers were stripped alike.
    // A carrier's too under `Privacy: id` (§7: the caller is untrusted).
    if !b.carrier || super::asks_privacy(msg, &[b"id", b"header"]) {
        for h in super::rewrite::IDENTITY_HEADERS {
            if msg.header(h).is_some() {
                e.remove_header(h);
            }
        }
    }
    if let Some(r) = &b.restore {
        super::rewrite::restore(
            &mut e,
            msg,
            r.from.as_deref(),
            r.to.as_deref(),
            r.codecs.as_deref(),
        );
    }
    e.finish()
}

impl Proxy {
    pub(super) fn response(&mut self, now: Instant, msg: Message, from: Peer) {
        let via = super::top_via(&msg);
        let Some(&(slot, i)) = via.branch().and_then(|b| self.client_index.get(b)) else {
            if let Some(worker) = via.branch().and_then(|b| self.owner_of(b)) {
                // Another worker's transaction: a response to a request sent
                // from the shared socket (to a binding behind NAT) or over a
                // TCP connection this worker owns.
                self.handover.push_back(super::HandOver {
                    worker,
                    data: msg.buffer().clone(),
                    from,
                    hops: 0,
                });
                return;
            }
            self.stats.dropped += 1;
            return; // matches no transaction: dropped (DOMAIN.md §7)
        };
        let status = msg.status().expect("response");
        let cseq =
            CSeq::parse(msg.header(HeaderName::CSeq).expect("validated")).expect("validated");
        if cseq.method == Method::CANCEL {
            // The answer to our own CANCEL ends it hop by hop: stop resending.
            if let Some(tx) = self.slots[slot as usize].as_mut() {
                tx.branches[i as usize].cancel_answered = true;
            }
            return;
        }
        if msg.values(HeaderName::Via).nth(1).is_none() {
            // Only our Via: nowhere to send it on (RFC 3261 §16.7 step 3).
            self.stats.dropped += 1;
            return;
        }
        let tx = self.slots[slot as usize].as_mut().expect("indexed");
        let generation = tx.generation;
        let b = &mut tx.branches[i as usize];
        let timers = self.cfg.timers;

        if status.is_provisional() {
            if b.state == BranchState::Calling {
                b.state = BranchState::Proceeding;
            }
            if tx.invite && b.state == BranchState::Proceeding {
                // Timer C restarts with every provisional response. One
                // queue entry per branch: a later provisional only moves the
                // deadline, and the entry, when it fires early, is queued
                // again for the deadline as it then stands.
                let deadline = now + timers.timer_c;
                if b.c_deadline.replace(deadline).is_none() {
                    self.timers.schedule(
                        deadline,
                        slot,
                        generation,
                        TimerKind::ProceedingTimeout(i),
                    );
                }
            }
            let cancel_now = b.cancel_pending && !b.cancelled;
            // After a 6xx the other branches are being cancelled: their
            // ringing is not the caller's any more.
            let declined = tx.best.as_ref().is_some_and(|(s, _)| s.0 >= 600);
            if status != StatusCode::TRYING && tx.state == ServerState::Proceeding && !declined {
                let data: Bytes = upstream(b, &msg, &from).into();
                // A retransmitted INVITE gets the latest provisional again
                // (RFC 3261 §17.2.1), early-media SDP included.
                tx.last_response = Some(data.clone());
                let up = tx.upstream;
                self.out.push_back(Transmit {
                    peer: up,
                    source: Source::Listen,
                    data,
                    worker: self.cfg.worker,
                });
            }
            if cancel_now {
                self.send_cancel(now, slot, i);
            }
            return;
        }

        // A final response.
        if tx.invite && status.is_success() {
            // Every 2xx goes upstream, retransmissions included (RFC 6026).
            b.state = BranchState::Terminated;
            b.final_status = Some(status);
            b.sent = None;
            let data = upstream(b, &msg, &from).into();
            let up = tx.upstream;
            self.out.push_back(Transmit {
                peer: up,
                source: Source::Listen,
                data,
                worker: self.cfg.worker,
            });
            if tx.state == ServerState::Proceeding {
                tx.state = ServerState::Accepted;
                // Lingering in Accepted only forwards 2xx retransmissions:
                // the request and the last provisional are no longer needed.
                tx.request = None;
                tx.last_response = None;
                self.timers.schedule(
                    now + timers.linger,
                    slot,
                    generation,
                    TimerKind::ServerLinger,
                );
                // RFC 3261 §16.7 step 10: cancel the other branches.
                self.cancel_branches(now, slot, Some(i), true);
            }
            return;
        }

        if tx.invite {
            // Non-2xx: ACK it hop by hop (RFC 3261 §17.1.1.3), every time it
            // comes (retransmissions mean our ACK was lost).
            // The ACK is built once from the request as sent, which is then
            // dropped.
            if b.ack.is_none() {
                if let Some(Ok(sent)) = b.sent.take().map(Message::parse_datagram) {
                    let to = msg.header(HeaderName::To);
                    b.ack = Some(build::derived_request(&sent, "ACK", to, &[]).into());
                }
            }
            if let Some(ack) = b.ack.clone() {
                self.out.push_back(Transmit {
                    peer: b.peer,
                    source: b.source,
                    data: ack,
                    worker: self.cfg.worker,
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

        let data = upstream(b, &msg, &from);
        let (status, data) = match (b.friend.clone().filter(|_| !b.carrier), status.0) {
            // DOMAIN.md §4.2: a friend never challenges the switch. The
            // challenge is ACKed above, not answered, and not relayed (the
            // caller's credentials are not the friend's): the caller gets
            // a 502.
            (Some(friend), 401 | 407) => {
                tracing::warn!(
                    friend = %friend,
                    status = status.0,
                    "friend {friend} challenged the switch: a friend must not authenticate \
                     calls from Tandem (Asterisk chan_sip: insecure=port,invite on the peer; \
                     PJSIP: no outbound_auth on the endpoint)"
                );
                let bad = StatusCode(502);
                let data = tx.request.as_ref().map_or_else(Vec::new, |req| {
                    response_to(
                        req,
                        bad,
                        "Friend demands authentication",
                        Some(tx.to_tag.as_bytes()),
                        &[],
                    )
                });
                (bad, data)
            }
            _ => (status, data),
        };
        if better(status, tx.best.as_ref().map(|b| b.0)) {
            tx.best = Some((status, data));
        }
        if tx.invite && status.0 >= 600 && tx.state == ServerState::Proceeding {
            // RFC 3261 §16.7 step 5: a global failure (603 Decline) ends
            // the other branches too; it goes upstream once they have
            // answered their CANCEL (step 6 still picks it).
            self.cancel_branches(now, slot, None, false);
        }
        self.maybe_finish(now, slot);
    }

    /// Cancels every branch of transaction `slot` but `except`: at once
    /// those with a provisional response, the others when their first one
    /// comes (RFC 3261 §9.1). `elsewhere`: a 2xx came on `except`, and
    /// their CANCEL says so (RFC 3326).
    pub(super) fn cancel_branches(
        &mut self,
        now: Instant,
        slot: u32,
        except: Option<u16>,
        elsewhere: bool,
    ) {
        let Some(tx) = self.slots[slot as usize].as_mut() else {
            return;
        };
        let mut to_cancel = Vec::new();
        for (j, o) in tx.branches.iter_mut().enumerate() {
            let j = j as u16;
            if Some(j) == except {
                continue;
            }
            o.answered_elsewhere |= elsewhere;
            match o.state {
                BranchState::Proceeding => to_cancel.push(j),
                BranchState::Calling => o.cancel_pending = true,
                _ => {}
            }
        }
        for j in to_cancel {
            self.send_cancel(now, slot, j);
        }
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
            None if tx.cancelled => local(StatusCode::REQUEST_TERMINATED, "Request Terminated"),
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
        if tx.invite {
            let k = super::ack_key(&request);
            self.ack_index.insert(k.clone(), slot);
            tx.ack_key = Some(k);
        }
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
                        let (peer, source, data) = (b.peer, b.source, sent.clone());
                        let next = b.interval;
                        self.send(peer, source, data);
                        self.timers.schedule(
                            now + next,
                            slot,
                            generation,
                            TimerKind::Retransmit(i),
                        );
                    }
                }
            }
            TimerKind::ClientTimeout(i) => {
                let b = &tx.branches[i as usize];
                if b.state == BranchState::Calling
                    || (!tx.invite && b.state == BranchState::Proceeding)
                {
                    self.time_out_branch(now, slot, i);
                }
            }
            TimerKind::ProceedingTimeout(i) => {
                // Timer C: the callee rang too long. CANCEL it; the branch
                // ends with its 487, or 64·T1 later (CancelTimeout).
                let b = &tx.branches[i as usize];
                if b.state == BranchState::Proceeding {
                    match b.c_deadline {
                        Some(d) if now >= d => self.send_cancel(now, slot, i),
                        Some(d) => self.timers.schedule(
                            d,
                            slot,
                            generation,
                            TimerKind::ProceedingTimeout(i),
                        ),
                        None => {}
                    }
                }
            }
            TimerKind::CancelRetransmit(i) => {
                let b = &mut tx.branches[i as usize];
                if b.final_status.is_none() && !b.cancel_answered {
                    if let Some(c) = b.cancel.clone() {
                        b.cancel_interval = (b.cancel_interval * 2).min(timers.t2);
                        let (peer, source, next) = (b.peer, b.source, b.cancel_interval);
                        self.send(peer, source, c);
                        self.timers.schedule(
                            now + next,
                            slot,
                            generation,
                            TimerKind::CancelRetransmit(i),
                        );
                    }
                }
            }
            TimerKind::CancelTimeout(i) => {
                if tx.branches[i as usize].final_status.is_none() {
                    self.time_out_branch(now, slot, i);
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

impl Proxy {
    /// The shell could not send `data` to `peer` (a TCP connect refused or
    /// timed out, a write or a UDP send that failed). A request of one of
    /// this worker's branches that had no answer yet ends that branch as
    /// if it had answered 503 (RFC 3261 §16.9; §17.1.4: the transaction
    /// ends at once, nothing is sent to the peer). When it was the last
    /// branch the caller gets the best answer now, a 500 when that is the
    /// 503 (§16.7 step 6), instead of a 408 after Timer B. Anything else
    /// (a response, an ACK, a CANCEL, another worker's branch) is ignored.
    pub fn transport_error(&mut self, now: Instant, data: &Bytes, peer: &Peer) {
        if data.starts_with(b"SIP/2.0 ") {
            return;
        }
        let Ok(msg) = Message::parse_datagram(data.clone()) else {
            return;
        };
        if matches!(msg.method(), Some(Method::ACK) | Some(Method::CANCEL)) {
            return;
        }
        let Some(Ok(top)) = msg.values(HeaderName::Via).next() else {
            return;
        };
        let branch = crate::sip::Via::parse(top).ok().and_then(|v| v.branch());
        let Some(&(slot, i)) = branch.and_then(|b| self.client_index.get(b)) else {
            return;
        };
        let Some(tx) = self.slots[slot as usize].as_mut() else {
            return;
        };
        let b = &mut tx.branches[i as usize];
        if b.state != BranchState::Calling || b.final_status.is_some() {
            return;
        }
        tracing::info!(peer = %peer.addr, transport = peer.transport.as_str(), "next hop unreachable: branch ends as 503");
        b.state = BranchState::Terminated;
        b.final_status = Some(StatusCode::SERVICE_UNAVAILABLE);
        b.sent = None;
        if better(
            StatusCode::SERVICE_UNAVAILABLE,
            tx.best.as_ref().map(|b| b.0),
        ) {
            tx.best = Some((StatusCode::SERVICE_UNAVAILABLE, Vec::new()));
        }
        self.maybe_finish(now, slot);
    }

    /// Ends branch `i` as if it had answered 408 (timers B, F, and 64·T1
    /// after a CANCEL), and answers upstream if it was the last one.
    fn time_out_branch(&mut self, now: Instant, slot: u32, i: u16) {
        if let Some(tx) = self.slots[slot as usize].as_mut() {
            let b = &mut tx.branches[i as usize];
            b.state = BranchState::Terminated;
            b.final_status = Some(StatusCode::REQUEST_TIMEOUT);
            b.sent = None;
            self.maybe_finish(now, slot);
        }
    }

    /// Sends the CANCEL of branch `i` (RFC 3261 §9.1), once: built from the
    /// request as sent, retransmitted over UDP until answered, and the
    /// branch given 64·T1 to end with a final response.
    pub(super) fn send_cancel(&mut self, now: Instant, slot: u32, i: u16) {
        let timers = self.cfg.timers;
        let Some(tx) = self.slots[slot as usize].as_mut() else {
            return;
        };
        let generation = tx.generation;
        let b = &mut tx.branches[i as usize];
        let Some(Ok(sent)) = b
            .sent
            .clone()
            .filter(|_| !b.cancelled)
            .map(Message::parse_datagram)
        else {
            return;
        };
        // RFC 3326: a phone cancelled because another answered shows no
        // missed call.
        let extra: &[(&str, &[u8])] = if b.answered_elsewhere {
            &[("Reason", b"SIP;cause=200;text=\"Call completed elsewhere\"")]
        } else {
            &[]
        };
        let data: Bytes = build::derived_request(&sent, "CANCEL", None, extra).into();
        b.cancelled = true;
        b.cancel = Some(data.clone());
        b.cancel_interval = timers.t1;
        let (peer, source) = (b.peer, b.source);
        self.send(peer, source, data);
        if peer.transport == Transport::Udp {
            self.timers.schedule(
                now + timers.t1,
                slot,
                generation,
                TimerKind::CancelRetransmit(i),
            );
        }
        self.timers.schedule(
            now + timers.t1x64(),
            slot,
            generation,
            TimerKind::CancelTimeout(i),
        );
    }
}

/// Whether `new` beats the best final response so far (RFC 3261 §16.7
/// step 6): a 6xx wins, else the lowest class, then within it the lowest
/// code, except that among 4xx a busy callee (486) comes first and a
/// timeout (408) last (§16.7 lets the proxy pick any of the class): a
/// caller forked to a busy phone and a silent or stale one hears busy.
fn better(new: StatusCode, best: Option<StatusCode>) -> bool {
    let Some(best) = best else { return true };
    let rank = |s: StatusCode| match s.0 {
        600.. => (0, s.0),
        486 => (4, 0),
        408 => (4, 1000),
        _ => (s.0 / 100, s.0),
    };
    rank(new) < rank(best)
}
