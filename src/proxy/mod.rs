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
//! (firewalls in front of the switch must allow the worker ports: the
//! shell binds them at the listen port + 1 + worker index).

mod build;
mod client;
mod dialog;
mod local;
mod rewrite;
pub mod router;
mod server;
pub mod timer;

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::sip::{
    response_to, validate, Message, Method, ParseError, StatusCode, Uri, Verdict, Via,
};
pub use build::answer_unparsable;
use timer::{TimerConfig, TimerQueue};

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
    /// The shell's connection id, for TCP. Plain, only that connection
    /// will do (a device behind NAT takes no other); with [`CONN_REUSE`]
    /// set, it is preferred while it leads to the peer's IP, and once it
    /// does not the peer's address is reached as any other.
    pub conn: Option<u64>,
}

/// The bit of [`Peer::conn`] that makes the connection a preference, not
/// a requirement: a device at its own address that names a port it may
/// listen on (see `rewrite::nat_contact`).
pub const CONN_REUSE: u64 = 1 << 63;

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
#[derive(Debug, Clone)]
pub struct Transmit {
    /// Where to.
    pub peer: Peer,
    /// From which local socket (UDP).
    pub source: Source,
    /// The message (shared, not copied, when it is retransmitted).
    pub data: Bytes,
    /// The worker whose proxy produced it: a failure to send it is that
    /// proxy's to handle ([`Proxy::transport_error`]), even when another
    /// worker, owning the TCP connection, does the sending.
    pub worker: u16,
}

/// Where a routed request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The next hop.
    pub peer: Peer,
    /// A new Request-URI, if the decision rewrites it.
    pub request_uri: Option<String>,
    /// The next hop is a registered binding (possibly behind NAT): the
    /// request leaves from the shared listening socket, the one the
    /// binding's REGISTER reached, so the NAT's pinhole lets it through.
    pub nat: bool,
    /// What the switch rewrites for this target, for the whole dialog.
    pub rewrite: Option<Box<Rewrite>>,
}

impl Target {
    /// A target reached from this worker's own socket, nothing rewritten.
    pub fn new(peer: Peer, request_uri: Option<String>) -> Target {
        Target {
            peer,
            request_uri,
            nat: false,
            rewrite: None,
        }
    }
}

/// What the switch changes in a new request for one target (DOMAIN.md
/// §4.3, §4.4); kept for the whole dialog through Record-Route (see the
/// `rewrite` module).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// The From URI the target sees (display name and tag kept).
    pub from_uri: Option<String>,
    /// A P-Asserted-Identity to send (the caller's PAI and
    /// P-Preferred-Identity are removed).
    pub pai: Option<String>,
    /// The caller withholds its identity: a `Privacy: id` goes with the
    /// P-Asserted-Identity when the caller's own Privacy does not say so
    /// (an anonymous From alone), so the carrier passes the number on to
    /// no one.
    pub withhold: bool,
    /// The codecs SDP is filtered to, in both directions.
    pub codecs: Option<crate::sip::Codecs>,
    /// The target is this friend: a challenge from it is not relayed.
    pub friend: Option<String>,
}

/// Who sent an out-of-dialog request, as far as the routing table can
/// tell before authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim<'r> {
    /// Not authenticated: a carrier, recognised by source network.
    Trusted,
    /// An account of a company (terminal or friend) that must prove itself
    /// with digest credentials. `password` is `None` for a name the company
    /// does not have: it is challenged exactly like a real one.
    Account {
        /// The company domain: the digest realm (for a domain that is no
        /// company's, the domain as written: challenged all the same, so
        /// neither domains nor names can be enumerated).
        realm: Cow<'r, str>,
        /// The claimed name (From user; To user for REGISTER), unescaped.
        user: String,
        /// The account's password, if it exists.
        password: Option<&'r str>,
        /// Whether the account may register (terminals, register friends).
        registers: bool,
    },
    /// Refused before any authentication (e.g. an unknown domain).
    Reject {
        /// The status.
        status: StatusCode,
        /// The reason phrase.
        reason: Cow<'static, str>,
    },
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
    /// Who claims to send the out-of-dialog request `req` (for a REGISTER,
    /// `register` is true and the claim is the To header's). Only consulted
    /// when the proxy has an authenticator ([`Services`]).
    fn claim(&self, req: &Message, from: &Peer, register: bool) -> Claim<'_> {
        let _ = (req, from, register);
        Claim::Trusted
    }

    /// Routes `req`, whose Request-URI is `uri`, received from `from`.
    fn route(&self, req: &Message, uri: &Uri<'_>, from: &Peer) -> Routing;

    /// Whether `from` is a carrier (its Contact is never NAT-fixed).
    fn is_carrier(&self, from: &Peer) -> bool {
        let _ = from;
        false
    }

    /// Whether a next hop is a carrier: in its `sources`, or its
    /// configured `address` (which may lie outside them).
    fn is_carrier_hop(&self, to: &Peer) -> bool {
        self.is_carrier(to)
    }

    /// Whether the configuration names `addr` as a TCP peer (a carrier or
    /// a direct friend): a URI to it without a `transport` parameter is
    /// still sent over TCP.
    fn configured_tcp(&self, addr: std::net::SocketAddr) -> bool {
        let _ = addr;
        false
    }

    /// Whether the configuration names a peer at `ip` (a carrier's
    /// network or address, a direct friend's address). In-dialog requests
    /// to anyone else leave from the shared listening socket.
    fn is_configured_peer(&self, ip: std::net::IpAddr) -> bool {
        let _ = ip;
        true
    }

    /// Appends who is at `ip`, as a dialog token records its parties (see
    /// `RoutingTable::party`): by default the address itself.
    fn party(&self, ip: std::net::IpAddr, out: &mut Vec<u8>) {
        match ip {
            std::net::IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            std::net::IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
}

/// Wall-clock time as the proxy sees it: the Unix time at one instant of
/// the monotonic clock the shell passes in (nonces and bindings live in
/// Unix seconds, so they survive a restart).
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    /// An instant of the shell's clock.
    pub at: Instant,
    /// The Unix time, in seconds, at that instant.
    pub unix: u64,
}

impl WallClock {
    /// The Unix time at `now`.
    pub fn unix(&self, now: Instant) -> u64 {
        self.unix + now.saturating_duration_since(self.at).as_secs()
    }
}

/// What sits beside the proxy core: the digest authenticator and the
/// registrar, shared by every worker.
#[derive(Debug, Clone)]
pub struct Services {
    /// Digest authentication, nonces, replay and ban tables.
    pub auth: Arc<crate::auth::Authenticator>,
    /// Bindings.
    pub registrar: Arc<crate::registrar::Registrar>,
    /// How many workers there are (hand-overs name one of them).
    pub workers: u16,
    /// Unix time.
    pub clock: WallClock,
}

/// A registrar record the shell must make durable before the answer to
/// its REGISTER goes out: write it, then call [`Proxy::persisted`] with the
/// ticket.
#[derive(Debug)]
pub struct Persist {
    /// The log record.
    pub record: Vec<u8>,
    /// Which transaction waits for it.
    pub ticket: Ticket,
}

/// A transaction waiting for its record to be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    slot: u32,
    generation: u32,
}

/// A response that belongs to another worker's transaction (its branch
/// names that worker): the shell passes it there, to [`Proxy::handle`].
#[derive(Debug)]
pub struct HandOver {
    /// The worker whose transaction it is.
    pub worker: u16,
    /// The message as received.
    pub data: Bytes,
    /// Who sent it.
    pub from: Peer,
    /// 0 for a response; for a CANCEL that matched no transaction, how
    /// many workers have looked for its INVITE (see
    /// [`Proxy::handle_handover`]).
    pub hops: u8,
}

/// The switch's address and ports in the address family other than its
/// advertised host's (a dual-stack switch: see [`ProxyConfig::alt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AltFamily {
    /// The first listen address of that family.
    pub host: std::net::IpAddr,
    /// Its first UDP listen port (0: none; the listen socket is the only
    /// one of that family, the workers' own being the other family's).
    pub udp_port: u16,
    /// Its first TCP listen port (else `udp_port`).
    pub tcp_port: u16,
}

/// Configuration of one worker's proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Host written in Via and Record-Route.
    pub advertised_host: String,
    /// The shared listening port for UDP (in Record-Route): the first UDP
    /// listen address's; 0 when none listens on UDP (UDP entries then name
    /// `worker_port`).
    pub listen_port: u16,
    /// The listening port for TCP (in TCP Record-Route entries and Vias):
    /// the first TCP listen address's, else `listen_port`.
    pub tcp_port: u16,
    /// This worker's own port (in Via).
    pub worker_port: u16,
    /// The other address family, when the switch also listens on it: its
    /// address and ports are written in Via and Record-Route for peers of
    /// that family (the advertised host and the ports above are the
    /// advertised host's family's).
    pub alt: Option<AltFamily>,
    /// This worker's index (in branches, for logs).
    pub worker: u16,
    /// The most live transactions; beyond it new requests get 503.
    pub max_transactions: usize,
    /// RFC 3261 timers.
    pub timers: TimerConfig,
    /// Random bits that make branches and tags unique across restarts.
    pub seed: u64,
    /// The process-wide secret of the dialog tokens in Record-Route (the
    /// same in every worker: an in-dialog request may reach any of them).
    pub secret: [u8; 32],
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
    /// The socket its requests leave from.
    source: Source,
    /// The request as sent, kept until the branch has a final response
    /// (retransmissions, CANCEL); then dropped so a lingering transaction
    /// stays small. Only bytes: it is parsed again in the rare case that a
    /// CANCEL or an ACK is derived from it.
    sent: Option<Bytes>,
    /// The ACK of a non-2xx final response, resent if that response is.
    ack: Option<Bytes>,
    state: BranchState,
    interval: std::time::Duration,
    final_status: Option<StatusCode>,
    cancel_pending: bool,
    cancelled: bool,
    /// Another branch answered: this one's CANCEL says so (RFC 3326).
    answered_elsewhere: bool,
    /// Our CANCEL, retransmitted (UDP) until it is answered (RFC 3261 §9.1:
    /// a CANCEL is a non-INVITE client transaction of its own).
    cancel: Option<Bytes>,
    cancel_interval: std::time::Duration,
    cancel_answered: bool,
    /// Timer C's current deadline: every provisional pushes it back
    /// (RFC 3261 §16.7 step 2). The branch has one queue entry for it,
    /// queued again for this deadline when it fires early.
    c_deadline: Option<Instant>,
    /// The friend this branch calls (a 401/407 from it is not relayed).
    friend: Option<Box<str>>,
    /// The next hop is a carrier: trusted by its network (its responses
    /// keep their identity headers and Contact; its challenges are relayed).
    carrier: bool,
    /// Set when the request forwarded on this branch was rewritten.
    restore: Option<Box<Restore>>,
}

/// How responses are shown to the upstream side of a transaction whose
/// request was rewritten.
#[derive(Debug, Default, Clone)]
struct Restore {
    /// The From the upstream side sent, when the forwarded one differs.
    from: Option<Vec<u8>>,
    /// The To the upstream side sent, when the forwarded one differs.
    to: Option<Vec<u8>>,
    /// The codecs SDP in responses is filtered to.
    codecs: Option<crate::sip::Codecs>,
}

#[derive(Debug)]
struct Tx {
    generation: u32,
    key: Vec<u8>,
    invite: bool,
    upstream: Peer,
    /// The request, kept while no final response was sent upstream.
    request: Option<Box<Message>>,
    state: ServerState,
    /// The last response sent upstream: while proceeding, the latest
    /// provisional; then the final (not a 2xx: those pass end to end).
    last_response: Option<Bytes>,
    branches: Vec<Branch>,
    best: Option<(StatusCode, Vec<u8>)>,
    to_tag: String,
    g_interval: std::time::Duration,
    /// For an INVITE answered upstream with a non-2xx final: its
    /// [`ack_key`], under which `ack_index` finds it.
    ack_key: Option<Vec<u8>>,
    /// The caller CANCELled it: an ending decided here (a branch that never
    /// answered timing out) is told as 487, what the caller's CANCEL asked
    /// for, not as 408.
    cancelled: bool,
}

/// The proxy of one worker; see the module docs.
#[derive(Debug)]
pub struct Proxy {
    cfg: ProxyConfig,
    /// `cfg.advertised_host` as a URI or Via writes it: an IPv6 address
    /// in brackets (RFC 3261 §25.1 `IPv6reference`).
    uri_host: Box<str>,
    /// [`AltFamily::host`] as a URI writes it.
    alt_uri_host: Option<Box<str>>,
    /// Boxed: a Tx holds its request (with the header index, ~1 KiB), and
    /// growing a vector of them inline would copy megabytes under load.
    slots: Vec<Option<Box<Tx>>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    live: usize,
    /// Keyed by branches and addresses the network chose: a hash with a
    /// random seed per process (foldhash), so nobody can aim collisions.
    server_index: HashMap<Vec<u8>, u32, foldhash::fast::RandomState>,
    client_index: HashMap<Vec<u8>, (u32, u16), foldhash::fast::RandomState>,
    /// INVITE transactions that sent a non-2xx final upstream, by
    /// [`ack_key`]: the ACK of a caller that gives it a new branch (RFC
    /// 3261 §17.1.1.3 says the INVITE's; SIPp scenarios often write
    /// `[branch]`) still finds its transaction and is absorbed, not taken
    /// for the ACK of a 2xx and routed on to the callee.
    ack_index: HashMap<Vec<u8>, u32, foldhash::fast::RandomState>,
    /// In-dialog INVITEs (re-INVITEs) the switch answered itself without a
    /// transaction (483, 420, 482, ...), by [`ack_key`]: their ACK, which
    /// carries the dialog's Route set, ends here instead of reaching a
    /// callee that never saw them.
    refused: Refused,
    timers: TimerQueue,
    out: VecDeque<Transmit>,
    persist: VecDeque<Persist>,
    handover: VecDeque<HandOver>,
    services: Option<Services>,
    /// Set while routing an authenticated request: its rejection is
    /// answered statefully (time, server key).
    stateful_reject: Option<(Instant, Vec<u8>)>,
    /// The rewriting parameters of the Route `next_hops` just accepted.
    route_dialog: Option<rewrite::DialogEdit>,
    counter: u64,
    stats: Stats,
    /// HMAC-SHA-256 keyed with `cfg.secret`, its key schedule done once
    /// (cloned per token).
    token_key: hmac::Hmac<sha2::Sha256>,
    /// How every To tag this switch writes begins (six hex digits derived
    /// from the secret, the same in every worker): an ACK whose To tag begins so
    /// acknowledges a final response the switch made itself.
    tag_mark: Box<str>,
}

const MAGIC: &[u8] = b"z9hG4bK";

impl Proxy {
    /// A proxy with no transactions, no authentication and no registrar
    /// (every caller is trusted: for tests of the proxy core alone).
    pub fn new(cfg: ProxyConfig) -> Proxy {
        Self::build(cfg, None)
    }

    /// A proxy that authenticates every out-of-dialog request of a
    /// non-carrier and answers REGISTER with the registrar.
    pub fn with_services(cfg: ProxyConfig, services: Services) -> Proxy {
        Self::build(cfg, Some(services))
    }

    fn build(cfg: ProxyConfig, services: Option<Services>) -> Proxy {
        use hmac::Mac;
        let token_key =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(&cfg.secret).expect("any key length");
        let uri_host = match cfg.advertised_host.parse::<std::net::Ipv6Addr>() {
            Ok(v6) => format!("[{v6}]").into(),
            Err(_) => cfg.advertised_host.as_str().into(),
        };
        let alt_uri_host = cfg.alt.map(|a| match a.host {
            std::net::IpAddr::V6(v6) => format!("[{v6}]").into_boxed_str(),
            std::net::IpAddr::V4(v4) => v4.to_string().into_boxed_str(),
        });
        // Derived from the secret, not a piece of it: tags are public.
        let tag_mark = token_key
            .clone()
            .chain_update(b"tandem: the mark of our To tags")
            .finalize()
            .into_bytes()[..3]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Proxy {
            token_key,
            tag_mark,
            uri_host,
            alt_uri_host,
            cfg,
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            live: 0,
            server_index: HashMap::default(),
            client_index: HashMap::default(),
            ack_index: HashMap::default(),
            refused: Refused::default(),
            timers: TimerQueue::default(),
            out: VecDeque::new(),
            persist: VecDeque::new(),
            handover: VecDeque::new(),
            services,
            stateful_reject: None,
            route_dialog: None,
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

    /// The next record to make durable, if any (see [`Persist`]).
    pub fn poll_persist(&mut self) -> Option<Persist> {
        self.persist.pop_front()
    }

    /// The next message to pass to another worker, if any.
    pub fn poll_handover(&mut self) -> Option<HandOver> {
        self.handover.pop_front()
    }

    /// What every To tag this switch writes begins with (derived from its
    /// secret): an ACK carrying one acknowledges a final it made itself.
    pub fn tag_mark(&self) -> &str {
        &self.tag_mark
    }

    /// When [`Proxy::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        loop {
            let (slots, generations) = (&self.slots, &self.generations);
            let live = |slot: u32, generation: u32| {
                generations.get(slot as usize) == Some(&generation)
                    && slots[slot as usize].is_some()
            };
            let Some((slot, generation, kind)) = self.timers.pop_due(now, live) else {
                break;
            };
            // An entry taken out with others may have gone stale while an
            // earlier one fired (and released its transaction).
            if !live(slot, generation) {
                continue;
            }
            self.fire(now, slot, kind);
        }
    }

    /// Handles one message received from `from`.
    pub fn handle(&mut self, now: Instant, data: Bytes, from: Peer, router: &dyn Router) {
        if let Some(s) = &self.services {
            // Banned sources get silence, whatever they send. (Carriers are
            // never challenged, so never banned.) Responses still pass, to
            // be matched with our own requests' branches: a ban earned by
            // forged requests from a direct friend's address must not cut
            // the friend's answers to calls already sent to it.
            if !data.starts_with(b"SIP/2.0 ") && s.auth.is_banned(s.clock.unix(now), from.addr.ip())
            {
                self.stats.dropped += 1;
                return;
            }
        }
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
                let msg = stamp_received(msg, from.addr);
                return self.reply(&msg, from, status, reason, &extra);
            }
        }
        if msg.is_request() {
            let msg = stamp_received(msg, from.addr);
            self.request(now, msg, from, router);
        } else {
            self.response(now, msg, from);
        }
    }

    /// Handles what another worker passed on ([`HandOver`]): a response
    /// for one of this worker's transactions (`hops` 0: as [`Proxy::handle`]),
    /// or a CANCEL whose INVITE `hops` workers before this one did not
    /// hold. `SO_REUSEPORT` spreads by 4-tuple, so a CANCEL from another
    /// port or TCP connection than its INVITE (RFC 3261 §9.2 matches by
    /// branch, not by port) may land on a worker that never saw the
    /// INVITE: it goes round the workers before anyone answers 481.
    pub fn handle_handover(
        &mut self,
        now: Instant,
        data: Bytes,
        from: Peer,
        hops: u8,
        router: &dyn Router,
    ) {
        if hops == 0 {
            return self.handle(now, data, from, router);
        }
        // Validated by the worker that received it.
        let Ok(msg) = Message::parse_datagram(data) else {
            return;
        };
        if msg.method() != Some(Method::CANCEL) {
            return;
        }
        let msg = stamp_received(msg, from.addr);
        let key = Self::server_key(&msg, &top_via(&msg), Method::CANCEL);
        self.cancel(now, &msg, from, &key, hops);
    }

    fn unparsable(&mut self, data: &[u8], e: ParseError, from: Peer) {
        self.stats.dropped += 1;
        if let Some(status) = e.status() {
            if let Some(r) = build::answer_unparsable(data, status.0, e.reason(), &self.tag_mark) {
                self.stats.rejected += 1;
                self.send(from, Source::Listen, r);
            }
        }
    }

    fn send(&mut self, peer: Peer, source: Source, data: impl Into<Bytes>) {
        let data = data.into();
        if data.is_empty() {
            // A response too large to frame (`response_to`): not sent.
            self.stats.dropped += 1;
            return;
        }
        let worker = self.cfg.worker;
        self.out.push_back(Transmit {
            peer,
            source,
            data,
            worker,
        });
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
        if req.method() == Some(Method::INVITE) && req.tag(crate::sip::HeaderName::To).is_some() {
            self.refused.insert(ack_key(req));
        }
        let tag = self.new_tag();
        let r = response_to(req, status, reason, Some(tag.as_bytes()), extra);
        self.send(to, Source::Listen, r);
    }

    fn new_tag(&mut self) -> String {
        self.counter += 1;
        let mut t = String::with_capacity(32);
        t.push_str(&self.tag_mark);
        push_hex(&mut t, u64::from(self.cfg.seed as u32));
        push_hex(&mut t, self.counter);
        t
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
            if let Some(k) = &tx.ack_key {
                if self.ack_index.get(k) == Some(&slot) {
                    self.ack_index.remove(k);
                }
            }
            for b in &tx.branches {
                self.client_index.remove(&b.id);
            }
            self.generations[slot as usize] = self.generations[slot as usize].wrapping_add(1);
            self.free.push(slot);
            self.live -= 1;
        }
    }
}

/// Whether the request's `Privacy` (RFC 3323 §4.2) names one of `kinds`
/// (`id`: RFC 3325 §7; `header`, `user`).
fn asks_privacy(msg: &Message, kinds: &[&[u8]]) -> bool {
    msg.headers(crate::sip::HeaderName::Privacy).any(|v| {
        v.split(|&c| c == b';' || c == b',')
            .map(<[u8]>::trim_ascii)
            .any(|t| kinds.iter().any(|k| t.eq_ignore_ascii_case(k)))
    })
}

/// What an INVITE and the ACK of its non-2xx final share whatever their
/// branches: Call-ID, From tag and CSeq number.
/// The most keys [`Refused`] keeps (the oldest go first): a flood of
/// refused re-INVITEs costs at most this much memory.
const REFUSED_KEPT: usize = 4096;

/// A bounded first-in-first-out set of [`ack_key`]s.
#[derive(Debug, Default)]
struct Refused {
    keys: std::collections::HashSet<Vec<u8>, foldhash::fast::RandomState>,
    order: VecDeque<Vec<u8>>,
}

impl Refused {
    fn insert(&mut self, key: Vec<u8>) {
        if self.keys.contains(&key) {
            return;
        }
        if self.order.len() >= REFUSED_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.keys.remove(&old);
            }
        }
        self.keys.insert(key.clone());
        self.order.push_back(key);
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn contains(&self, key: &[u8]) -> bool {
        self.keys.contains(key)
    }
}

fn ack_key(msg: &Message) -> Vec<u8> {
    let call_id = msg.header(crate::sip::HeaderName::CallId).unwrap_or(b"");
    let from_tag = msg.tag(crate::sip::HeaderName::From).unwrap_or(b"");
    let mut k = Vec::with_capacity(call_id.len() + from_tag.len() + 6);
    k.extend_from_slice(call_id);
    k.push(0);
    k.extend_from_slice(from_tag);
    k.push(0);
    let seq = msg
        .header(crate::sip::HeaderName::CSeq)
        .and_then(crate::sip::CSeq::parse)
        .map_or(0, |c| c.seq);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Appends `n` in lower-case hex, no leading zeros (what `{:x}` writes,
/// without the formatting machinery on the hot path).
fn push_hex(out: &mut String, n: u64) {
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        let d = ((n >> (i * 4)) & 0xf) as u8;
        out.push(char::from(if d < 10 { b'0' + d } else { b'a' + d - 10 }));
    }
}

/// A request with its top Via stamped with `received` (and `rport`) as
/// RFC 3261 §18.2.1 and RFC 3581 §4 ask of the receiving server: every
/// response the switch writes (a 400 to a request validation rejects
/// too), and the request it forwards, carry the stamped Via. Most requests
/// need no change and cost nothing more; one whose top Via does not parse
/// is left as it is.
fn stamp_received(mut msg: Message, source: std::net::SocketAddr) -> Message {
    let stamped = msg
        .values(crate::sip::HeaderName::Via)
        .next()
        .and_then(Result::ok)
        .and_then(|v| Via::parse(v).ok())
        .and_then(|v| v.stamped(source));
    if let Some(via) = stamped {
        msg.stamp_top_via(via);
    }
    msg
}

/// The top Via of a message that passed validation.
fn top_via(msg: &Message) -> Via<'_> {
    let top = msg.values(crate::sip::HeaderName::Via).next();
    Via::parse(top.expect("validated").expect("validated")).expect("validated")
}

#[cfg(test)]
mod tests {
    use super::{Refused, REFUSED_KEPT};

    #[test]
    fn refused_keys_are_bounded_and_the_oldest_go_first() {
        let mut r = Refused::default();
        for i in 0..REFUSED_KEPT + 10 {
            r.insert(i.to_be_bytes().to_vec());
        }
        assert_eq!(r.keys.len(), REFUSED_KEPT);
        assert_eq!(r.order.len(), REFUSED_KEPT);
        assert!(!r.contains(&0usize.to_be_bytes()));
        assert!(r.contains(&(REFUSED_KEPT + 9).to_be_bytes()));
        r.insert((REFUSED_KEPT + 9).to_be_bytes().to_vec());
        assert_eq!(r.order.len(), REFUSED_KEPT, "a repeated key is kept once");
    }
}
