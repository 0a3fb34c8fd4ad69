//! The server side of the proxy: new requests (loop check, Route set,
//! routing, forking), their retransmissions, CANCEL and stateless ACK.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::dialog::Parties;
use super::local::Gate;
use super::push_hex;
use super::rewrite::{self, DialogEdit};
use super::timer::TimerKind;
use super::{
    build, Branch, BranchState, Peer, Proxy, Router, Routing, ServerState, Source, Target,
    Transport, Tx, MAGIC,
};
use crate::sip::{
    response_to, CSeq, HeaderName, Message, Method, NameAddr, StatusCode, Uri, Via, MAX_HEADERS,
    MAX_MESSAGE_LEN,
};

impl Proxy {
    /// The server transaction key (RFC 3261 §17.2.3): branch, sent-by and
    /// method, where ACK matches INVITE; RFC 2543 requests (no magic cookie)
    /// match on Call-ID, CSeq number, From tag and the top Via.
    pub(super) fn server_key(msg: &Message, via: &Via<'_>, method: Method<'_>) -> Vec<u8> {
        let m = if method == Method::ACK {
            Method::INVITE
        } else {
            method
        };
        let mut k = Vec::with_capacity(96);
        match via.branch() {
            Some(b) if b.starts_with(MAGIC) => {
                k.extend_from_slice(b);
                k.push(0);
                k.extend_from_slice(via.host_text);
                k.extend_from_slice(&via.port.unwrap_or(0).to_be_bytes());
            }
            _ => {
                k.extend_from_slice(b"2543\0");
                k.extend_from_slice(msg.header(HeaderName::CallId).unwrap_or(b""));
                k.push(0);
                if let Some(c) = msg.header(HeaderName::CSeq).and_then(CSeq::parse) {
                    k.extend_from_slice(&c.seq.to_be_bytes());
                }
                if let Some(t) = msg.tag(HeaderName::From) {
                    k.extend_from_slice(t);
                }
                k.push(0);
                k.extend_from_slice(
                    msg.values(HeaderName::Via)
                        .next()
                        .and_then(Result::ok)
                        .unwrap_or(b""),
                );
            }
        }
        k.push(0);
        k.extend_from_slice(m.as_bytes());
        k
    }

    pub(super) fn request(&mut self, now: Instant, msg: Message, from: Peer, router: &dyn Router) {
        let method = msg.method().expect("request");
        let via = super::top_via(&msg);
        let key = Self::server_key(&msg, &via, method);

        if method == Method::CANCEL {
            return self.cancel(now, &msg, from, &key, 0);
        }
        if let Some(&slot) = self.server_index.get(&key) {
            return self.retransmission(now, slot, &msg, from, router);
        }
        if method == Method::ACK {
            // An ACK matching no transaction acknowledges a 2xx: it is a
            // request of its own, forwarded statelessly along the route.
            // A 2xx ACK always has a To tag; one without matches nothing
            // and would be routed unauthenticated: dropped.
            if !in_dialog(&msg) {
                self.stats.dropped += 1;
                return;
            }
            let non_2xx = (!self.ack_index.is_empty())
                .then(|| self.ack_index.get(&super::ack_key(&msg)).copied())
                .flatten();
            if let Some(slot) = non_2xx {
                // A non-2xx's ACK under a new branch (see `ack_index`).
                return self.retransmission(now, slot, &msg, from, router);
            }
            if !self.refused.is_empty() && self.refused.contains(&super::ack_key(&msg)) {
                // The ACK of a re-INVITE the switch refused itself.
                self.stats.dropped += 1;
                return;
            }
            return self.forward_stateless(&msg, from, router);
        }

        // A `sips:` Request-URI asks for TLS on every hop (RFC 3261
        // §26.2.2), which this switch does not speak: refused, never sent
        // on over UDP or TCP as `sip:`.
        if msg
            .request_uri()
            .is_some_and(|u| u.len() > 5 && u[..5].eq_ignore_ascii_case(b"sips:"))
        {
            return self.reply(
                &msg,
                from,
                StatusCode(416),
                "sips requires TLS, which this switch does not offer",
                &[],
            );
        }

        // Loop detection (RFC 3261 §16.3 step 4): a Via of ours carrying
        // this request's loop hash means it came back unchanged. "Ours" is
        // our host with any port: the Via may be another worker's.
        let hash = loop_hash(&msg);
        let mut mine = String::with_capacity(24);
        mine.push_str(MAGIC_STR);
        mine.push_str("-T");
        push_hex8(&mut mine, hash);
        mine.push('-');
        for v in msg.values(HeaderName::Via).flatten() {
            if let Ok(v) = Via::parse(v) {
                if self.is_my_host(&v.host)
                    && v.branch().is_some_and(|b| b.starts_with(mine.as_bytes()))
                {
                    return self.reply(&msg, from, StatusCode::LOOP_DETECTED, "Loop Detected", &[]);
                }
            }
        }

        // The digest gate (RFC 3261 §22): REGISTER goes to the registrar;
        // any other out-of-dialog request of a non-carrier proves who sends
        // it. In-dialog requests are not challenged: they pass only with
        // the dialog token of our Record-Route (see `next_hops`).
        let register = method == Method::REGISTER;
        let mut msg = msg;
        let mut authenticated = false;
        if self.services.is_some() {
            if register {
                return self.register(now, msg, from, &key, router);
            }
            if !in_dialog(&msg) && !is_ping(&msg) {
                match self.gate(now, msg, from, router) {
                    (
                        Gate::Pass {
                            authenticated: auth,
                        },
                        Some(m),
                    ) => {
                        msg = m;
                        authenticated = auth;
                    }
                    _ => return,
                }
            }
        }
        let method = msg.method().expect("request");

        // A rejection after authentication is answered statefully: a lost
        // answer brings a retransmission with the same nonce count, which
        // must meet the same answer, not a replay failure.
        self.stateful_reject = authenticated.then(|| (now, key.clone()));
        let hops = self.next_hops(&msg, from, router);
        let stateful = self.stateful_reject.take();
        let Some(route) = hops else {
            return;
        };
        let (pops, targets) = route;

        if self.live >= self.cfg.max_transactions {
            return self.reply(
                &msg,
                from,
                StatusCode::SERVICE_UNAVAILABLE,
                "Overloaded",
                &[("Retry-After", b"5")],
            );
        }

        if targets.iter().any(|t| self.targets_me(&t.peer)) {
            return self.reply(&msg, from, StatusCode::LOOP_DETECTED, "Loop Detected", &[]);
        }

        // Write every copy first: one that no longer fits the message
        // limits (our Via and Record-Route added to a request already at
        // the limit) is refused before any state exists.
        let creates_dialog = method.creates_dialog();
        let in_dialog = in_dialog(&msg);
        let mf = msg
            .header(HeaderName::MaxForwards)
            .and_then(crate::sip::parse_max_forwards)
            .map_or(70, |n| n.saturating_sub(1));
        // The edits an in-dialog request inherits from our Route.
        let dialog = self.route_dialog.take().filter(|_| pops > 0);
        let mut copies = Vec::with_capacity(targets.len());
        let mut plans = Vec::with_capacity(targets.len());
        // A device behind NAT writes its private address in Contact: fixed
        // to the packet's source (or its TCP connection) so the far end's
        // in-dialog requests reach it (anyone but a carrier).
        let nat_contact = (!router.is_carrier(&from))
            .then(|| msg.header(HeaderName::Contact))
            .flatten()
            .and_then(|c| rewrite::nat_contact(c, &from, |a| router.configured_tcp(a)));
        // RFC 3325: identity headers are passed on only from a trusted
        // sender (a carrier), and not even then under `Privacy: id`
        // (§7: every target of the switch, terminal or friend, is
        // untrusted). A terminal or a friend cannot assert who it is to
        // another; where the switch asserts an identity itself (external
        // calls) its own P-Asserted-Identity replaces theirs.
        let strip_identity =
            !router.is_carrier(&from) || super::asks_privacy(&msg, &[b"id", b"header"]);
        for t in &targets {
            let rewrite = t.rewrite.as_deref().filter(|_| !in_dialog);
            match rewrite::plan(&msg, rewrite, dialog.as_ref()) {
                Ok(mut p) => {
                    p.contact.clone_from(&nat_contact);
                    p.strip_identity = strip_identity;
                    plans.push(p)
                }
                Err(rewrite::NothingLeft) => {
                    let status = StatusCode(488);
                    // An in-dialog re-INVITE (its Route token checked) is
                    // answered with a transaction too: its ACK, which
                    // carries the callee's To tag and the Route set, must
                    // end here, not reach a callee that never saw it.
                    let key = match &stateful {
                        Some((_, key)) => Some(key.clone()),
                        None => (method == Method::INVITE && in_dialog).then(|| key.clone()),
                    };
                    return match key {
                        Some(key) => {
                            self.answer(now, msg, from, &key, status, "Not Acceptable Here", &[])
                        }
                        None => self.reply(&msg, from, status, "Not Acceptable Here", &[]),
                    };
                }
            }
        }
        for (t, plan) in targets.iter().zip(&plans) {
            self.counter += 1;
            // z9hG4bK-T<loop hash>-<worker>-<seed><counter>, no `format!`
            // on the hot path.
            let mut branch = String::with_capacity(48);
            branch.push_str(&mine);
            push_hex(&mut branch, u64::from(self.cfg.worker));
            branch.push('-');
            push_hex(&mut branch, u64::from(self.cfg.seed as u32));
            push_hex(&mut branch, self.counter);
            let via = self.via_value(t.peer.transport, t.peer.addr.ip(), &branch);
            let rr = (creates_dialog && !in_dialog).then(|| {
                let parties = Parties::of(router, from.addr.ip(), t.peer.addr.ip());
                self.record_route(
                    (t.peer.transport, t.peer.addr.ip()),
                    (from.transport, from.addr.ip()),
                    &msg,
                    &plan.record,
                    &parties,
                )
            });
            let data = build::forward(
                &msg,
                &build::Forward {
                    via: via.as_bytes(),
                    request_uri: t.request_uri.as_deref().map(str::as_bytes),
                    max_forwards: mf,
                    record_route: rr.as_deref().map(str::as_bytes),
                    pop_routes: usize::from(pops),
                    // Credentials for our realms never travel on, in or out
                    // of a dialog (phones resend cached ones on BYE).
                    strip_credentials: true,
                    edits: Some(plan),
                },
            );
            // What we forward must frame again (CANCEL and ACK are derived
            // from it): within the size and header limits of our parser.
            if data.len() > MAX_MESSAGE_LEN || header_lines(&data) > MAX_HEADERS {
                return self.reply(
                    &msg,
                    from,
                    StatusCode::MESSAGE_TOO_LARGE,
                    "Message Too Large to forward",
                    &[],
                );
            }
            copies.push((branch, Bytes::from(data)));
        }

        let invite = method == Method::INVITE;
        if invite {
            let trying = response_to(&msg, StatusCode::TRYING, "Trying", None, &[]);
            self.send(from, Source::Listen, trying);
        }
        let slot = self.alloc();
        let generation = self.generations[slot as usize];
        let to_tag = self.new_tag();
        let mut branches = Vec::with_capacity(targets.len());
        for (i, ((t, (branch, sent)), plan)) in targets.iter().zip(copies).zip(plans).enumerate() {
            self.client_index
                .insert(branch.as_bytes().to_vec(), (slot, i as u16));
            let source = if t.nat {
                Source::Listen
            } else {
                Source::Worker
            };
            self.send(t.peer, source, sent.clone());
            branches.push(Branch {
                id: branch.into_bytes(),
                peer: t.peer,
                source,
                sent: Some(sent),
                ack: None,
                state: BranchState::Calling,
                interval: self.cfg.timers.t1,
                final_status: None,
                cancel_pending: false,
                answered_elsewhere: false,
                cancelled: false,
                cancel: None,
                cancel_interval: self.cfg.timers.t1,
                cancel_answered: false,
                c_deadline: None,
                friend: t
                    .rewrite
                    .as_ref()
                    .and_then(|r| r.friend.as_deref())
                    .map(Box::from)
                    .or_else(|| {
                        dialog
                            .as_ref()
                            .filter(|d| d.friend)
                            .map(|_| Box::from("of this dialog"))
                    }),
                restore: plan.restore,
                carrier: router.is_carrier_hop(&t.peer),
            });
            let i = i as u16;
            if t.peer.transport == Transport::Udp {
                self.timers.schedule(
                    now + self.cfg.timers.t1,
                    slot,
                    generation,
                    TimerKind::Retransmit(i),
                );
            }
            self.timers.schedule(
                now + self.cfg.timers.t1x64(),
                slot,
                generation,
                TimerKind::ClientTimeout(i),
            );
        }
        let tx = Tx {
            generation,
            key: key.clone(),
            invite,
            upstream: from,
            request: Some(Box::new(msg)),
            state: ServerState::Proceeding,
            last_response: None,
            branches,
            best: None,
            to_tag,
            g_interval: self.cfg.timers.t1,
            ack_key: None,
            cancelled: false,
        };
        self.stats.forwarded += 1;
        self.server_index.insert(key, slot);
        self.slots[slot as usize] = Some(Box::new(tx));
    }

    /// Where a new request goes: Route set first (loose routing, RFC 3261
    /// §16.4 and §16.6), else the Router for out-of-dialog requests, else
    /// the Request-URI. `None` when a reply was already sent.
    pub(super) fn next_hops(
        &mut self,
        msg: &Message,
        from: Peer,
        router: &dyn Router,
    ) -> Option<(u8, Vec<Target>)> {
        self.route_dialog = None;
        // Tandem relays along a Route set or to an in-dialog Request-URI
        // only for dialogs it record-routed itself: its Record-Route carries
        // a keyed token of the Call-ID (`tdm`), which must come back in the
        // top Route. Anything else would make the switch an open relay that
        // bypasses routing and call ACLs (a preloaded Route, or a forged
        // in-dialog request towards any address).
        let mut routes = msg.values(HeaderName::Route).flatten().peekable();
        // How many top Routes are ours (popped): two when the dialog was
        // record-routed across a change of transport.
        let mut pops = 0u8;
        // Our Route's token, checked once the next hop is known.
        let mut claimed: Option<(Vec<u8>, DialogEdit)> = None;
        if let Some(r) = routes.next() {
            let ours = NameAddr::parse(r)
                .ok()
                .and_then(|a| match a.decoded_uri().ok()? {
                    Uri::Sip(u) if self.is_me(&u.host, u.port) => Some(
                        u.params
                            .get(b"tdm")
                            .flatten()
                            .map(|t| (t.to_vec(), DialogEdit::from_params(&u.params))),
                    ),
                    _ => None,
                });
            match ours {
                // Only in a dialog: a token replayed on a new request would
                // route it past the digest gate, the ACL and the identity
                // rules.
                Some(Some((token, edit))) if in_dialog(msg) => {
                    pops = 1;
                    // Our second entry (a change of transport) is the twin
                    // of the first: the same token. Another entry of ours
                    // (a call that spiralled back through the switch) is a
                    // hop of its own and stays.
                    if routes.peek().is_some_and(|r| self.is_twin_route(r, &token)) {
                        routes.next();
                        pops = 2;
                    }
                    claimed = Some((token, edit));
                }
                // A phone configured with the switch as outbound proxy
                // preloads a Route naming it: popped, and nothing may
                // follow it (that would be relaying by the sender's say).
                Some(None) if !in_dialog(msg) && msg.values(HeaderName::Route).nth(1).is_none() => {
                    pops = 1
                }
                Some(_) => {
                    self.reply(
                        msg,
                        from,
                        StatusCode::FORBIDDEN,
                        "Route not issued by this switch",
                        &[],
                    );
                    return None;
                }
                None => {
                    self.reply(msg, from, StatusCode::FORBIDDEN, "Route not accepted", &[]);
                    return None;
                }
            }
        }
        if let Some(r) = routes.next() {
            if pops > 0 && self.request_uri_is_me(msg) {
                // A strict router before us (RFC 2543) put our entry in the
                // Request-URI and the remote target in the last Route:
                // forwarding would send the far end a Request-URI naming
                // the switch.
                self.reply(
                    msg,
                    from,
                    StatusCode::FORBIDDEN,
                    "Strict routing is not supported",
                    &[],
                );
                return None;
            }
            let peer = resolve_route(r);
            if !self.dialog_hop_ok(msg, &from, claimed, peer.as_ref(), router) {
                return None;
            }
            return self.single_hop(msg, from, pops, peer, "Route not resolvable");
        }
        // A carrier's UA that ignores Record-Route (SIPp's built-in `uac`
        // does) sends its ACK and BYE like its INVITE: no Route, to the
        // switch, for the number it dialled. A carrier is trusted by its
        // source network and may route by the Request-URI anyway: such a
        // request is routed as the carrier's requests are (DDIs only),
        // with no dialog rewriting to restore. Anyone else needs the token.
        // An ACK of a final the switch made itself (its To tag is ours: a
        // 488, 420, 483 answered without a transaction) ends here.
        let acks_ours = msg.method() == Some(Method::ACK)
            && msg
                .tag(HeaderName::To)
                .is_some_and(|t| t.starts_with(self.tag_mark.as_bytes()));
        let carrier_by_uri = in_dialog(msg)
            && pops == 0
            && !acks_ours
            && router.is_carrier(&from)
            && self.request_uri_is_me(msg);
        if in_dialog(msg) && !carrier_by_uri {
            if pops == 0 {
                // Includes the ACK of a final response the switch sent
                // itself: it ends here (`reply` never answers an ACK).
                self.reply(
                    msg,
                    from,
                    StatusCode::FORBIDDEN,
                    "Not a dialog of this switch",
                    &[],
                );
                return None;
            }
            let uri = Uri::decode(msg.request_uri().expect("request")).expect("validated");
            let peer = uri.as_sip().and_then(|u| {
                let mut p = peer_of(u.host.ip()?, u.port, &u.params)?;
                if u.params.get(b"transport").is_none() && router.configured_tcp(p.addr) {
                    // A TCP carrier or friend whose Contact names no
                    // transport: its configuration says TCP.
                    p.transport = Transport::Tcp;
                }
                if p.transport == Transport::Tcp {
                    // A TCP Contact the switch fixed: that connection.
                    p.conn = rewrite::nat_connection(&u.params);
                }
                Some(p)
            });
            if !self.dialog_hop_ok(msg, &from, claimed, peer.as_ref(), router) {
                return None;
            }
            // A Contact the switch fixed for NAT (`tnat`), or any device
            // the configuration does not name (a phone, a register-mode
            // friend): sent from the shared socket, the one its requests
            // reach, so a NAT or firewall that lets only that address and
            // port in passes it (RFC 3581 §4's symmetric reasoning). Only
            // configured carriers and direct friends get the worker's own
            // socket, which brings their answers straight back to it.
            let nat = uri
                .as_sip()
                .is_some_and(|u| u.params.get(b"tnat").is_some())
                || peer
                    .as_ref()
                    .is_some_and(|p| !router.is_configured_peer(p.addr.ip()));
            let mut hop = self.single_hop(msg, from, pops, peer, "No route for in-dialog request");
            if let Some((_, targets)) = &mut hop {
                for t in targets {
                    t.nat = nat;
                }
            }
            return hop;
        }
        let uri = Uri::decode(msg.request_uri().expect("request")).expect("validated");
        // A carrier's SBC often pings with a name in the user part
        // (`sip:ping@switch`): no number a carrier may dial has letters.
        let carrier_ping = msg.method() == Some(Method::OPTIONS)
            && router.is_carrier(&from)
            && uri.as_sip().is_some_and(|u| {
                self.is_me(&u.host, u.port)
                    && u.user
                        .is_some_and(|n| n.iter().any(u8::is_ascii_alphabetic))
            });
        if is_ping(msg) || carrier_ping {
            // OPTIONS to the switch itself: a keep-alive or capability probe.
            if let Some(tags) = crate::sip::required_extensions(msg) {
                self.reply(
                    msg,
                    from,
                    StatusCode::BAD_EXTENSION,
                    "Bad Extension",
                    &[("Unsupported", &tags)],
                );
                return None;
            }
            self.reply(msg, from, StatusCode::OK, "OK", &[("Allow", b"INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, PRACK, REFER, SUBSCRIBE, NOTIFY, MESSAGE")]);
            return None;
        }
        match router.route(msg, &uri, &from) {
            Routing::Forward(t) if !t.is_empty() => Some((pops, t)),
            Routing::Forward(_) => {
                self.reply(
                    msg,
                    from,
                    StatusCode::TEMPORARILY_UNAVAILABLE,
                    "Temporarily Unavailable",
                    &[],
                );
                None
            }
            Routing::Reject { status, reason } => {
                match self.stateful_reject.take() {
                    Some((now, key)) => {
                        self.answer(now, msg.clone(), from, &key, status, &reason, &[])
                    }
                    None => self.reply(msg, from, status, &reason, &[]),
                }
                None
            }
        }
    }

    /// Whether `host:port` names this switch (a Route or Via of ours).
    /// One next hop for a routed request, or a 404 naming why there is none.
    fn single_hop(
        &mut self,
        msg: &Message,
        from: Peer,
        pops: u8,
        peer: Option<Peer>,
        reason: &'static str,
    ) -> Option<(u8, Vec<Target>)> {
        match peer {
            Some(peer) => Some((pops, vec![Target::new(peer, None)])),
            None => {
                self.reply(msg, from, StatusCode::NOT_FOUND, reason, &[]);
                None
            }
        }
    }

    /// `SIP/2.0/<transport> <host>:<port>;branch=<branch>`: our Via on a
    /// request to `to`.
    fn via_value(&self, transport: Transport, to: std::net::IpAddr, branch: &str) -> String {
        let (host, port) = self.host_port(transport, to, true);
        let mut via = String::with_capacity(40 + host.len() + branch.len());
        via.push_str("SIP/2.0/");
        via.push_str(transport.as_str());
        via.push(' ');
        via.push_str(host);
        via.push(':');
        push_dec(&mut via, u64::from(port));
        via.push_str(";branch=");
        via.push_str(branch);
        via
    }

    pub(super) fn forward_stateless(&mut self, msg: &Message, from: Peer, router: &dyn Router) {
        let Some((pops, targets)) = self.next_hops(msg, from, router) else {
            return;
        };
        let Some(t) = targets.first() else { return };
        let exhausted = msg
            .header(HeaderName::MaxForwards)
            .and_then(crate::sip::parse_max_forwards)
            == Some(0);
        if exhausted || self.targets_me(&t.peer) {
            self.stats.dropped += 1;
            return; // an ACK is never answered: a hop limit or a loop ends it
        }
        // A 2xx ACK keeps the dialog's From/To views (no SDP check: an ACK
        // with an unacceptable answer is still an ACK).
        let dialog = self.route_dialog.take().filter(|_| pops > 0);
        let plan = rewrite::plan(msg, None, dialog.as_ref())
            .or_else(|_| {
                // An ACK whose SDP would be emptied: its From/To views still
                // apply, the body goes as it is.
                let d = dialog.clone().map(|d| DialogEdit { codecs: None, ..d });
                rewrite::plan(msg, None, d.as_ref())
            })
            .ok();
        let hash = loop_hash(msg);
        let mut branch = String::with_capacity(24);
        branch.push_str(MAGIC_STR);
        branch.push_str("-T");
        push_hex8(&mut branch, hash);
        branch.push_str("-a");
        let via = self.via_value(t.peer.transport, t.peer.addr.ip(), &branch);
        let mf = msg
            .header(HeaderName::MaxForwards)
            .and_then(crate::sip::parse_max_forwards)
            .map_or(70, |n| n.saturating_sub(1));
        let data = build::forward(
            msg,
            &build::Forward {
                via: via.as_bytes(),
                request_uri: t.request_uri.as_deref().map(str::as_bytes),
                max_forwards: mf,
                record_route: None,
                pop_routes: usize::from(pops),
                strip_credentials: true,
                edits: plan.as_ref(),
            },
        );
        self.stats.forwarded += 1;
        let source = if t.nat {
            Source::Listen
        } else {
            Source::Worker
        };
        self.send(t.peer, source, data);
    }

    pub(super) fn retransmission(
        &mut self,
        now: Instant,
        slot: u32,
        msg: &Message,
        from: Peer,
        router: &dyn Router,
    ) {
        let method = msg.method().expect("request");
        let tx = self.slots[slot as usize].as_mut().expect("indexed");
        if method == Method::ACK {
            if tx.state == ServerState::Accepted {
                // The ACK of a 2xx that matched the INVITE's transaction:
                // only RFC 2543 peers (no branch) do this. It goes on to
                // the callee like any 2xx ACK.
                return self.forward_stateless(msg, from, router);
            }
            // ACK of our non-2xx final response: absorbed hop by hop.
            if tx.state == ServerState::Completed {
                tx.state = ServerState::Confirmed;
                let generation = tx.generation;
                let linger = if tx.upstream.transport == Transport::Udp {
                    self.cfg.timers.t4
                } else {
                    std::time::Duration::ZERO
                };
                self.timers
                    .schedule(now + linger, slot, generation, TimerKind::ServerLinger);
            }
            self.stats.absorbed += 1;
            return;
        }
        self.stats.absorbed += 1;
        let resend: Option<Bytes> = match (&tx.last_response, &tx.request) {
            (Some(r), _) => Some(r.clone()),
            (None, Some(req)) if tx.invite => {
                Some(response_to(req, StatusCode::TRYING, "Trying", None, &[]).into())
            }
            _ => None,
        };
        if let Some(r) = resend {
            self.send(from, Source::Listen, r);
        }
    }

    /// A CANCEL (`hops`: how many other workers looked for its INVITE
    /// before this one, see [`Proxy::handle_handover`]).
    pub(super) fn cancel(&mut self, now: Instant, msg: &Message, from: Peer, key: &[u8], hops: u8) {
        // The CANCEL's key names INVITE's server transaction once its method
        // part is swapped.
        let mut invite_key = key[..key.len() - b"CANCEL".len()].to_vec();
        invite_key.extend_from_slice(b"INVITE");
        let Some(&slot) = self.server_index.get(&invite_key) else {
            let workers = self.services.as_ref().map_or(1, |s| s.workers);
            if u16::from(hops) + 1 < workers {
                // Perhaps the next worker holds the INVITE.
                self.handover.push_back(super::HandOver {
                    worker: (self.cfg.worker + 1) % workers,
                    data: msg.buffer().clone(),
                    from,
                    hops: hops + 1,
                });
                return;
            }
            return self.reply(
                msg,
                from,
                StatusCode::CALL_DOES_NOT_EXIST,
                "Call/Transaction Does Not Exist",
                &[],
            );
        };
        let tag = self.new_tag();
        let ok = response_to(msg, StatusCode::OK, "OK", Some(tag.as_bytes()), &[]);
        self.send(from, Source::Listen, ok);
        let tx = self.slots[slot as usize].as_mut().expect("indexed");
        if tx.state != ServerState::Proceeding {
            return;
        }
        tx.cancelled = true;
        self.cancel_branches(now, slot, None, false);
    }
}

const MAGIC_STR: &str = "z9hG4bK";

/// A hash of what identifies a request for loop detection (RFC 3261 §16.6
/// step 8): Request-URI, From tag, To tag, Call-ID, CSeq number.
fn loop_hash(msg: &Message) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |s: &[u8]| {
        for &c in s {
            h = (h ^ u32::from(c)).wrapping_mul(0x0100_0193);
        }
        h = (h ^ 0xff).wrapping_mul(0x0100_0193);
    };
    eat(msg.request_uri().unwrap_or(b""));
    for hn in [HeaderName::From, HeaderName::To] {
        eat(msg.tag(hn).unwrap_or(b""));
    }
    eat(msg.header(HeaderName::CallId).unwrap_or(b""));
    eat(&msg
        .header(HeaderName::CSeq)
        .and_then(CSeq::parse)
        .map_or(0, |c| c.seq)
        .to_be_bytes());
    h
}

/// The peer a Route value names; only IP literals are resolved (Tandem
/// does no DNS on the hot path). The value passed validation.
fn resolve_route(r: &[u8]) -> Option<Peer> {
    let a = NameAddr::parse(r).ok()?;
    let Uri::Sip(u) = a.decoded_uri().ok()? else {
        return None;
    };
    peer_of(u.host.ip()?, u.port, &u.params)
}

fn peer_of(
    ip: std::net::IpAddr,
    port: Option<u16>,
    params: &crate::sip::Params<'_>,
) -> Option<Peer> {
    let transport = match params.get(b"transport").flatten() {
        Some(t) if t.eq_ignore_ascii_case(b"tcp") => Transport::Tcp,
        Some(t) if !t.eq_ignore_ascii_case(b"udp") => return None,
        _ => Transport::Udp,
    };
    Some(Peer {
        addr: SocketAddr::new(ip, port.unwrap_or(5060)),
        transport,
        conn: None,
    })
}

/// Whether the request is an OPTIONS to the switch itself (no user part):
/// a keep-alive or capability probe, answered without authentication.
fn is_ping(msg: &Message) -> bool {
    msg.method() == Some(Method::OPTIONS)
        && msg
            .request_uri()
            .and_then(|u| Uri::parse(u).ok())
            .is_some_and(|u| u.user().is_none())
}

/// Whether the request belongs to a dialog (its To has a tag).
fn in_dialog(msg: &Message) -> bool {
    msg.tag(HeaderName::To).is_some()
}

/// Appends `n` as exactly eight lower-case hex digits (`{:08x}`).
fn push_hex8(out: &mut String, n: u32) {
    for i in (0..8).rev() {
        let d = ((n >> (i * 4)) & 0xf) as u8;
        out.push(char::from(if d < 10 { b'0' + d } else { b'a' + d - 10 }));
    }
}

/// Appends `n` in decimal.
pub(super) fn push_dec(out: &mut String, n: u64) {
    out.push_str(crate::sip::scan::itoa(n).as_str());
}

/// Lines of the header section after the start line: at least as many as
/// the header entries the parser will index (a folded header spans more
/// than one line), so a copy within [`MAX_HEADERS`] lines frames again.
fn header_lines(msg: &[u8]) -> usize {
    let head = memchr::memmem::find(msg, b"\r\n\r\n").map_or(msg, |end| &msg[..end]);
    memchr::memchr_iter(b'\n', head).count()
}
