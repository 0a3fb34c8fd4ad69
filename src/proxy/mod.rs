//! The transaction-stateful proxy (RFC 3261 §16–17) as a sans-IO state
//! machine.
//!
//! One [`Proxy`] runs per worker. The shell feeds it what arrives
//! ([`Proxy::handle`], with the time and the sender), asks it what to send
//! ([`Proxy::poll_transmit`]) and when to wake it ([`Proxy::poll_timeout`],
//! then [`Proxy::handle_timeout`]). It never reads a clock or touches a
//! socket, so every behaviour here is tested with a simulated clock
//! (`tests/it/proxy.rs`).
//!
//! What it does with a request:
//!
//! ```text
//! parse ─ validate ─┬─ response ── match client branch by our Via branch ── forward / absorb
//!   (400/505/416/   └─ request ─┬─ retransmission of a server transaction ── repeat last answer
//!    420/483)                   ├─ CANCEL ── 200, CANCEL each pending branch
//!                               ├─ ACK ── absorb (non-2xx) or forward statelessly (2xx)
//!                               └─ new ── loop check (482), Route pop, Router ── branches
//! ```
//!
//! ## Worker affinity
//!
//! `SO_REUSEPORT` spreads datagrams over the workers by 4-tuple, so a
//! response to a request forwarded by worker 1 could reach worker 0. Each
//! worker therefore sends the requests it forwards from a socket of its own
//! (`worker_port`) and names that port in its Via: RFC 3261 §18.2.2 sends
//! responses to the Via's sent-by, so they return to the worker holding the
//! transaction, with no lock and no hand-over. Requests from one upstream
//! peer (INVITE, its retransmissions, its CANCEL and ACK) share a 4-tuple
//! and so reach the same worker. In-dialog requests (BYE) arrive at the
//! shared port on any worker and start a new transaction there, which needs
//! no dialog state. The cost: one more UDP port per worker, visible in Via
//! (firewalls in front of the switch must allow the worker ports).

mod build;
pub mod router;
pub mod timer;

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::sip::{
    response_to, validate, CSeq, HeaderName, Message, Method, NameAddr, ParseError, StatusCode,
    Uri, Verdict, Via,
};
pub use build::answer_unparsable;
use timer::{TimerConfig, TimerKind, TimerQueue};

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: the proxy retransmits.
    Udp,
    /// TCP: reliable; no retransmissions.
    Tcp,
}

impl Transport {
    /// The Via transport token.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// The other end of a message: address, transport, and for TCP the
/// connection it came on (the shell's identifier) if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Address and port.
    pub addr: SocketAddr,
    /// Transport.
    pub transport: Transport,
    /// The shell's connection id, for TCP.
    pub conn: Option<u64>,
}

impl Peer {
    /// A UDP peer.
    pub fn udp(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            transport: Transport::Udp,
            conn: None,
        }
    }
}

/// Which local socket a UDP datagram leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The shared listening socket: answers go back the way requests came.
    Listen,
    /// This worker's own socket: requests we forward, so their responses
    /// return to this worker (see the module docs).
    Worker,
}

/// A message to send.
#[derive(Debug)]
pub struct Transmit {
    /// Where to.
    pub peer: Peer,
    /// From which local socket (UDP).
    pub source: Source,
    /// The message.
    pub data: Vec<u8>,
}

/// Where a routed request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The next hop.
    pub peer: Peer,
    /// A new Request-URI, if the decision rewrites it.
    pub request_uri: Option<String>,
}

/// A routing answer for a new out-of-dialog request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// Fork to these targets in parallel.
    Forward(Vec<Target>),
    /// Answer with this status and reason phrase.
    Reject {
        /// The status.
        status: StatusCode,
        /// The reason phrase.
        reason: Cow<'static, str>,
    },
}

/// Decides where new out-of-dialog requests go (the routing table, seen
/// from the proxy).
pub trait Router {
    /// Routes `req`, whose Request-URI is `uri`, received from `from`.
    fn route(&self, req: &Message, uri: &Uri<'_>, from: &Peer) -> Routing;
}

/// Configuration of one worker's proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Host written in Via and Record-Route.
    pub advertised_host: String,
    /// The shared listening port (in Record-Route).
    pub listen_port: u16,
    /// This worker's own port (in Via).
    pub worker_port: u16,
    /// This worker's index (in branches, for logs).
    pub worker: u16,
    /// The most live transactions; beyond it new requests get 503.
    pub max_transactions: usize,
    /// RFC 3261 timers.
    pub timers: TimerConfig,
    /// Random bits that make branches and tags unique across restarts.
    pub seed: u64,
}

/// Counters, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Requests forwarded (first copies, not retransmissions).
    pub forwarded: u64,
    /// Retransmitted requests absorbed.
    pub absorbed: u64,
    /// Messages dropped (bad responses, unmatched responses).
    pub dropped: u64,
    /// Requests answered locally with an error.
    pub rejected: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    /// Waiting for a final response from the branches.
    Proceeding,
    /// A non-2xx final response sent; waiting for the ACK (INVITE) or
    /// absorbing retransmissions (non-INVITE).
    Completed,
    /// The ACK arrived; absorbing its retransmissions.
    Confirmed,
    /// A 2xx was forwarded (RFC 6026 Accepted): retransmitted 2xx pass.
    Accepted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BranchState {
    Calling,
    Proceeding,
    Completed,
    Terminated,
}

#[derive(Debug)]
struct Branch {
    id: Vec<u8>,
    peer: Peer,
    sent: Message,
    state: BranchState,
    interval: std::time::Duration,
    final_status: Option<StatusCode>,
    cancel_pending: bool,
    cancelled: bool,
}

#[derive(Debug)]
struct Tx {
    generation: u32,
    key: Vec<u8>,
    invite: bool,
    upstream: Peer,
    request: Message,
    state: ServerState,
    last_response: Option<Vec<u8>>,
    branches: Vec<Branch>,
    best: Option<(StatusCode, Vec<u8>)>,
    to_tag: String,
    g_interval: std::time::Duration,
}

/// The proxy of one worker; see the module docs.
#[derive(Debug)]
pub struct Proxy {
    cfg: ProxyConfig,
    slots: Vec<Option<Tx>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    live: usize,
    server_index: HashMap<Vec<u8>, u32>,
    client_index: HashMap<Vec<u8>, (u32, u16)>,
    timers: TimerQueue,
    out: VecDeque<Transmit>,
    counter: u64,
    stats: Stats,
}

const MAGIC: &[u8] = b"z9hG4bK";

impl Proxy {
    /// A proxy with no transactions.
    pub fn new(cfg: ProxyConfig) -> Proxy {
        Proxy {
            cfg,
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            live: 0,
            server_index: HashMap::new(),
            client_index: HashMap::new(),
            timers: TimerQueue::default(),
            out: VecDeque::new(),
            counter: 0,
            stats: Stats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Live transactions.
    pub fn transactions(&self) -> usize {
        self.live
    }

    /// The next message to send, if any. Call until `None` after every
    /// `handle*` call.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// When [`Proxy::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((slot, generation, kind)) = self.timers.pop_due(now) {
            if self.generations.get(slot as usize) != Some(&generation)
                || self.slots[slot as usize].is_none()
            {
                continue;
            }
            self.fire(now, slot, kind);
        }
    }

    /// Handles one message received from `from`.
    pub fn handle(&mut self, now: Instant, data: Bytes, from: Peer, router: &dyn Router) {
        let msg = match Message::parse_datagram(data.clone()) {
            Ok(m) => m,
            Err(e) => return self.unparsable(&data, e, from),
        };
        match validate(&msg) {
            Verdict::Accept => {}
            Verdict::Drop { reason } => {
                tracing::debug!(%reason, peer = %from.addr, "dropped");
                self.stats.dropped += 1;
                return;
            }
            Verdict::Reject { status, reason } => {
                let mut extra: Vec<(&str, Vec<u8>)> = Vec::new();
                if status == StatusCode::BAD_EXTENSION {
                    let tags: Vec<&[u8]> = crate::sip::unsupported_proxy_require(&msg).collect();
                    extra.push(("Unsupported", tags.join(&b", "[..])));
                }
                let extra: Vec<(&str, &[u8])> = extra.iter().map(|(n, v)| (*n, &v[..])).collect();
                return self.reply(&msg, from, status, reason, &extra);
            }
        }
        if msg.is_request() {
            self.request(now, msg, from, router);
        } else {
            self.response(now, msg);
        }
    }

    fn unparsable(&mut self, data: &[u8], e: ParseError, from: Peer) {
        self.stats.dropped += 1;
        if let Some(status) = e.status() {
            if let Some(r) = build::answer_unparsable(data, status.0, e.reason()) {
                self.stats.rejected += 1;
                self.send(from, Source::Listen, r);
            }
        }
    }

    fn send(&mut self, peer: Peer, source: Source, data: Vec<u8>) {
        self.out.push_back(Transmit { peer, source, data });
    }

    fn reply(
        &mut self,
        req: &Message,
        to: Peer,
        status: StatusCode,
        reason: &str,
        extra: &[(&str, &[u8])],
    ) {
        if req.method() == Some(Method::ACK) {
            return; // never answer an ACK
        }
        self.stats.rejected += 1;
        let tag = self.new_tag();
        let r = response_to(req, status, reason, Some(tag.as_bytes()), extra);
        self.send(to, Source::Listen, r);
    }

    fn new_tag(&mut self) -> String {
        self.counter += 1;
        format!("{:x}{:x}", self.cfg.seed as u32, self.counter)
    }

    /// The server transaction key (RFC 3261 §17.2.3): branch, sent-by and
    /// method, where ACK matches INVITE; RFC 2543 requests (no magic cookie)
    /// match on Call-ID, CSeq number, From tag and the top Via.
    fn server_key(msg: &Message, via: &Via<'_>, method: Method<'_>) -> Vec<u8> {
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
                if let Some(t) = msg
                    .header(HeaderName::From)
                    .and_then(|v| NameAddr::parse(v).ok())
                    .and_then(|a| a.tag())
                {
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

    fn request(&mut self, now: Instant, msg: Message, from: Peer, router: &dyn Router) {
        let method = msg.method().expect("request");
        let top = msg
            .values(HeaderName::Via)
            .next()
            .expect("validated")
            .expect("validated");
        let via = Via::parse(top).expect("validated");
        let key = Self::server_key(&msg, &via, method);

        if method == Method::CANCEL {
            return self.cancel(&msg, from, &key);
        }
        if let Some(&slot) = self.server_index.get(&key) {
            return self.retransmission(now, slot, &msg, from);
        }
        if method == Method::ACK {
            // An ACK matching no transaction acknowledges a 2xx: it is a
            // request of its own, forwarded statelessly along the route.
            return self.forward_stateless(&msg, from, router);
        }

        // Loop detection (RFC 3261 §16.3 step 4): a Via of ours carrying
        // this request's loop hash means it came back unchanged.
        let hash = loop_hash(&msg);
        let mine = format!("{MAGIC_STR}-T{hash:08x}-");
        for v in msg.values(HeaderName::Via).flatten() {
            if let Ok(v) = Via::parse(v) {
                if self.is_me(&v.host, v.port)
                    && v.branch().is_some_and(|b| b.starts_with(mine.as_bytes()))
                {
                    return self.reply(&msg, from, StatusCode::LOOP_DETECTED, "Loop Detected", &[]);
                }
            }
        }

        let Some(route) = self.next_hops(&msg, from, router) else {
            return;
        };
        let (pop_route, targets) = route;

        if self.live >= self.cfg.max_transactions {
            return self.reply(
                &msg,
                from,
                StatusCode::SERVICE_UNAVAILABLE,
                "Overloaded",
                &[("Retry-After", b"5")],
            );
        }

        let invite = method == Method::INVITE;
        let creates_dialog = method.creates_dialog();
        if invite {
            let trying = response_to(&msg, StatusCode::TRYING, "Trying", None, &[]);
            self.send(from, Source::Listen, trying);
        }
        let slot = self.alloc();
        let generation = self.generations[slot as usize];
        let to_tag = self.new_tag();
        let mut tx = Tx {
            generation,
            key: key.clone(),
            invite,
            upstream: from,
            request: msg,
            state: ServerState::Proceeding,
            last_response: None,
            branches: Vec::with_capacity(targets.len()),
            best: None,
            to_tag,
            g_interval: self.cfg.timers.t1,
        };
        let in_dialog = tx
            .request
            .header(HeaderName::To)
            .and_then(|v| NameAddr::parse(v).ok())
            .is_some_and(|a| a.tag().is_some());
        let mf = tx
            .request
            .header(HeaderName::MaxForwards)
            .and_then(crate::sip::parse_max_forwards)
            .map_or(70, |n| n.saturating_sub(1));
        for (i, t) in targets.iter().enumerate() {
            self.counter += 1;
            let branch = format!(
                "{MAGIC_STR}-T{hash:08x}-{:x}-{:x}{:x}",
                self.cfg.worker, self.cfg.seed as u32, self.counter
            );
            let via = format!(
                "SIP/2.0/{} {}:{};branch={branch}",
                t.peer.transport.as_str(),
                self.cfg.advertised_host,
                self.via_port(t.peer.transport)
            );
            let rr = (creates_dialog && !in_dialog).then(|| self.record_route(t.peer.transport));
            let data = build::forward(
                &tx.request,
                &build::Forward {
                    via: via.as_bytes(),
                    request_uri: t.request_uri.as_deref().map(str::as_bytes),
                    max_forwards: mf,
                    record_route: rr.as_deref().map(str::as_bytes),
                    pop_route,
                },
            );
            let sent = Message::parse_datagram(Bytes::from(data.clone())).expect("we wrote it");
            self.client_index
                .insert(branch.as_bytes().to_vec(), (slot, i as u16));
            tx.branches.push(Branch {
                id: branch.into_bytes(),
                peer: t.peer,
                sent,
                state: BranchState::Calling,
                interval: self.cfg.timers.t1,
                final_status: None,
                cancel_pending: false,
                cancelled: false,
            });
            self.send(t.peer, Source::Worker, data);
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
        self.stats.forwarded += 1;
        self.server_index.insert(key, slot);
        self.slots[slot as usize] = Some(tx);
    }

    /// Where a new request goes: Route set first (loose routing, RFC 3261
    /// §16.4 and §16.6), else the Router for out-of-dialog requests, else
    /// the Request-URI. `None` when a reply was already sent.
    fn next_hops(
        &mut self,
        msg: &Message,
        from: Peer,
        router: &dyn Router,
    ) -> Option<(bool, Vec<Target>)> {
        let mut routes = msg.values(HeaderName::Route).flatten();
        let mut pop_route = false;
        let mut next_route = routes.next();
        if let Some(r) = next_route {
            if let Ok(Uri::Sip(u)) =
                NameAddr::parse(r).and_then(|a| a.parsed_uri().map_err(crate::sip::AddrError::Uri))
            {
                if self.is_me(&u.host, u.port) {
                    pop_route = true;
                    next_route = routes.next();
                }
            }
        }
        if let Some(r) = next_route {
            return match resolve_route(r) {
                Some(peer) => Some((
                    pop_route,
                    vec![Target {
                        peer,
                        request_uri: None,
                    }],
                )),
                None => {
                    self.reply(
                        msg,
                        from,
                        StatusCode::NOT_FOUND,
                        "Route not resolvable",
                        &[],
                    );
                    None
                }
            };
        }
        let uri = Uri::parse(msg.request_uri().expect("request")).expect("validated");
        let in_dialog = msg
            .header(HeaderName::To)
            .and_then(|v| NameAddr::parse(v).ok())
            .is_some_and(|a| a.tag().is_some());
        if in_dialog {
            return match uri
                .as_sip()
                .and_then(|u| peer_of(u.host.ip()?, u.port, &u.params))
            {
                Some(peer) => Some((
                    pop_route,
                    vec![Target {
                        peer,
                        request_uri: None,
                    }],
                )),
                None => {
                    self.reply(
                        msg,
                        from,
                        StatusCode::NOT_FOUND,
                        "No route for in-dialog request",
                        &[],
                    );
                    None
                }
            };
        }
        let method = msg.method().expect("request");
        if method == Method::OPTIONS && uri.user().is_none() {
            // OPTIONS to the switch itself: a keep-alive or capability probe.
            self.reply(msg, from, StatusCode::OK, "OK", &[("Allow", b"INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, REFER, NOTIFY, MESSAGE")]);
            return None;
        }
        match router.route(msg, &uri, &from) {
            Routing::Forward(t) if !t.is_empty() => Some((pop_route, t)),
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
                self.reply(msg, from, status, &reason, &[]);
                None
            }
        }
    }

    /// Whether `host:port` names this switch (a Route or Via of ours).
    fn is_me(&self, host: &crate::sip::Host<'_>, port: Option<u16>) -> bool {
        let host_ok = match host {
            crate::sip::Host::Domain(d) => {
                d.eq_ignore_ascii_case(self.cfg.advertised_host.as_bytes())
            }
            other => other
                .ip()
                .is_some_and(|ip| self.cfg.advertised_host.parse() == Ok(ip)),
        };
        let port = port.unwrap_or(5060);
        host_ok && (port == self.cfg.listen_port || port == self.cfg.worker_port)
    }

    fn via_port(&self, transport: Transport) -> u16 {
        match transport {
            Transport::Udp => self.cfg.worker_port,
            Transport::Tcp => self.cfg.listen_port,
        }
    }

    fn record_route(&self, transport: Transport) -> String {
        match transport {
            Transport::Udp => format!(
                "<sip:{}:{};lr>",
                self.cfg.advertised_host, self.cfg.listen_port
            ),
            Transport::Tcp => format!(
                "<sip:{}:{};transport=tcp;lr>",
                self.cfg.advertised_host, self.cfg.listen_port
            ),
        }
    }

    fn forward_stateless(&mut self, msg: &Message, from: Peer, router: &dyn Router) {
        let Some((pop_route, targets)) = self.next_hops(msg, from, router) else {
            return;
        };
        let Some(t) = targets.first() else { return };
        let hash = loop_hash(msg);
        let via = format!(
            "SIP/2.0/{} {}:{};branch={MAGIC_STR}-T{hash:08x}-a",
            t.peer.transport.as_str(),
            self.cfg.advertised_host,
            self.via_port(t.peer.transport)
        );
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
                pop_route,
            },
        );
        self.stats.forwarded += 1;
        self.send(t.peer, Source::Worker, data);
    }

    fn retransmission(&mut self, now: Instant, slot: u32, msg: &Message, from: Peer) {
        let method = msg.method().expect("request");
        let tx = self.slots[slot as usize].as_mut().expect("indexed");
        if method == Method::ACK {
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
        let resend = match (&tx.last_response, tx.invite) {
            (Some(r), _) => Some(r.clone()),
            (None, true) => Some(response_to(
                &tx.request,
                StatusCode::TRYING,
                "Trying",
                None,
                &[],
            )),
            (None, false) => None,
        };
        if let Some(r) = resend {
            self.send(from, Source::Listen, r);
        }
    }

    fn cancel(&mut self, msg: &Message, from: Peer, key: &[u8]) {
        // The CANCEL's key names INVITE's server transaction once its method
        // part is swapped.
        let mut invite_key = key[..key.len() - b"CANCEL".len()].to_vec();
        invite_key.extend_from_slice(b"INVITE");
        let Some(&slot) = self.server_index.get(&invite_key) else {
            return self.reply(
                msg,
                from,
                StatusCode::CALL_DOES_NOT_EXIST,
                "Call/Transaction Does Not Exist",
                &[],
            );
        };
        let ok = response_to(msg, StatusCode::OK, "OK", None, &[]);
        self.send(from, Source::Listen, ok);
        let tx = self.slots[slot as usize].as_mut().expect("indexed");
        if tx.state != ServerState::Proceeding {
            return;
        }
        let mut cancels = Vec::new();
        for b in &mut tx.branches {
            match b.state {
                BranchState::Proceeding if !b.cancelled => {
                    b.cancelled = true;
                    cancels.push((b.peer, build::derived_request(&b.sent, "CANCEL", None)));
                }
                BranchState::Calling => b.cancel_pending = true,
                _ => {}
            }
        }
        for (peer, c) in cancels {
            self.send(peer, Source::Worker, c);
        }
    }

    fn response(&mut self, now: Instant, msg: Message) {
        let top = msg
            .values(HeaderName::Via)
            .next()
            .expect("validated")
            .expect("validated");
        let via = Via::parse(top).expect("validated");
        let Some(&(slot, i)) = via.branch().and_then(|b| self.client_index.get(b)) else {
            self.stats.dropped += 1;
            return; // matches no transaction: dropped (DOMAIN.md §7)
        };
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
            let cancel = (b.cancel_pending && !b.cancelled).then(|| {
                b.cancelled = true;
                (b.peer, build::derived_request(&b.sent, "CANCEL", None))
            });
            if let Some((peer, c)) = cancel {
                self.out.push_back(Transmit {
                    peer,
                    source: Source::Worker,
                    data: c,
                });
            }
            if status != StatusCode::TRYING && tx.state == ServerState::Proceeding {
                let mut e = msg.edit();
                e.remove_top_via();
                let data = e.finish();
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
            let mut e = msg.edit();
            e.remove_top_via();
            let data = e.finish();
            let up = tx.upstream;
            let first = tx.state == ServerState::Proceeding;
            if first {
                tx.state = ServerState::Accepted;
                self.timers.schedule(
                    now + timers.t1x64(),
                    slot,
                    generation,
                    TimerKind::ServerLinger,
                );
                // RFC 3261 §16.7 step 10: cancel the other branches.
                let mut cancels = Vec::new();
                for (j, o) in tx.branches.iter_mut().enumerate() {
                    if j != i as usize && o.state == BranchState::Proceeding && !o.cancelled {
                        o.cancelled = true;
                        cancels.push((o.peer, build::derived_request(&o.sent, "CANCEL", None)));
                    } else if o.state == BranchState::Calling {
                        o.cancel_pending = true;
                    }
                }
                for (peer, c) in cancels {
                    self.out.push_back(Transmit {
                        peer,
                        source: Source::Worker,
                        data: c,
                    });
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
            let to = msg.header(HeaderName::To).map(<[u8]>::to_vec);
            let ack = build::derived_request(&b.sent, "ACK", to.as_deref());
            let peer = b.peer;
            self.out.push_back(Transmit {
                peer,
                source: Source::Worker,
                data: ack,
            });
        }
        if matches!(b.state, BranchState::Completed | BranchState::Terminated) {
            self.stats.absorbed += 1;
            return;
        }
        b.state = BranchState::Completed;
        b.final_status = Some(status);
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
    fn maybe_finish(&mut self, now: Instant, slot: u32) {
        let tx = self.slots[slot as usize].as_mut().expect("live");
        if tx.state != ServerState::Proceeding
            || tx.branches.iter().any(|b| b.final_status.is_none())
        {
            return;
        }
        let (status, data) = match tx.best.take() {
            Some(b) => b,
            None => (
                StatusCode::REQUEST_TIMEOUT,
                response_to(
                    &tx.request,
                    StatusCode::REQUEST_TIMEOUT,
                    "Request Timeout",
                    Some(tx.to_tag.as_bytes()),
                    &[],
                ),
            ),
        };
        let data = if status == StatusCode::SERVICE_UNAVAILABLE {
            // RFC 3261 §16.7 step 6: a 503 is not passed on as such.
            response_to(
                &tx.request,
                StatusCode::SERVER_INTERNAL_ERROR,
                "Server Internal Error",
                Some(tx.to_tag.as_bytes()),
                &[],
            )
        } else {
            data
        };
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
                timers.t1x64()
            } else {
                std::time::Duration::ZERO
            };
            self.timers
                .schedule(now + linger, slot, generation, TimerKind::ServerLinger);
        }
        self.send(up, Source::Listen, data);
    }

    fn fire(&mut self, now: Instant, slot: u32, kind: TimerKind) {
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
                    let (peer, data) = (b.peer, b.sent.as_bytes().to_vec());
                    let next = b.interval;
                    self.send(peer, Source::Worker, data);
                    self.timers
                        .schedule(now + next, slot, generation, TimerKind::Retransmit(i));
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
                    if b.state == BranchState::Proceeding && tx.invite && !b.cancelled {
                        b.cancelled = true;
                        let c = build::derived_request(&b.sent, "CANCEL", None);
                        let peer = b.peer;
                        self.out.push_back(Transmit {
                            peer,
                            source: Source::Worker,
                            data: c,
                        });
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

    fn alloc(&mut self) -> u32 {
        self.live += 1;
        if let Some(s) = self.free.pop() {
            return s;
        }
        self.slots.push(None);
        self.generations.push(0);
        (self.slots.len() - 1) as u32
    }

    fn release(&mut self, slot: u32) {
        if let Some(tx) = self.slots[slot as usize].take() {
            self.server_index.remove(&tx.key);
            for b in &tx.branches {
                self.client_index.remove(&b.id);
            }
            self.generations[slot as usize] = self.generations[slot as usize].wrapping_add(1);
            self.free.push(slot);
            self.live -= 1;
        }
    }
}

const MAGIC_STR: &str = "z9hG4bK";

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
        eat(msg
            .header(hn)
            .and_then(|v| NameAddr::parse(v).ok())
            .and_then(|a| a.tag())
            .unwrap_or(b""));
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
/// does no DNS on the hot path).
fn resolve_route(r: &[u8]) -> Option<Peer> {
    let a = NameAddr::parse(r).ok()?;
    let Uri::Sip(u) = a.parsed_uri().ok()? else {
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
