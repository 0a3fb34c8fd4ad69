//! One worker: a tokio-uring runtime on its own thread, its own
//! `SO_REUSEPORT` sockets, and one [`Proxy`].
//!
//! Tasks on the worker share the proxy through `Rc<RefCell<..>>`: the
//! runtime is single-threaded and no borrow is held across an `.await`, so
//! the cell never contends. Received datagrams are copied out of one reused
//! receive buffer into a `Bytes` sized to the message.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_uring::net::{TcpListener, UdpSocket};

use super::mmsg::{send_batch, RecvBatch};
use super::persist::Persister;
use super::tcp::Conn;
use super::Listen;
use crate::proxy::{Peer, Proxy, ProxyConfig, Services, Source, Transmit, Transport};
use crate::route::Reader;
use crate::sip::MAX_MESSAGE_LEN;

/// What one worker passes another: a response that belongs to the other's
/// transaction, or a message to send on a TCP connection the other owns.
#[derive(Debug)]
pub enum Inbox {
    /// Handle this message as if received by the addressee.
    Receive {
        /// The message.
        data: Bytes,
        /// Who sent it.
        from: Peer,
        /// See [`crate::proxy::HandOver::hops`].
        hops: u8,
    },
    /// Send this on the addressee's connection.
    Send(Transmit),
    /// This, handed over to another worker to send, could not be sent:
    /// the addressee's proxy made it, and ends its branch.
    SendFailed(Transmit),
    /// These REGISTERs' records are durable (or failed): answer them.
    Persisted {
        /// The transactions waiting.
        tickets: Vec<crate::proxy::Ticket>,
        /// Whether the write and sync succeeded.
        ok: bool,
    },
}

/// The senders of every worker's inboxes, indexed by worker.
pub type Inboxes = std::sync::Arc<Vec<InboxSender>>;

/// How many handed-over messages ([`Inbox::Receive`], [`Inbox::Send`]) may
/// wait for one worker. Beyond it they are dropped and counted, as a full
/// socket buffer would drop them: a flood of responses aimed at one
/// worker's transactions, or a worker stalled on a slow peer, costs at most
/// this many messages of memory (4,096 × [`MAX_MESSAGE_LEN`] = 256 MiB in
/// the worst case, a few MiB for real traffic). [`Inbox::Persisted`] has a
/// queue of its own that is never full: a registration whose record is
/// durable must be answered, and those are bounded by the transaction
/// table.
pub const HANDOVER_QUEUE: usize = 4096;

/// One worker's two inboxes, seen from the senders.
#[derive(Debug, Clone)]
pub struct InboxSender {
    handover: tokio::sync::mpsc::Sender<Inbox>,
    persisted: tokio::sync::mpsc::UnboundedSender<Inbox>,
}

/// One worker's two inboxes, seen from the worker.
#[derive(Debug)]
pub struct InboxReceiver {
    handover: tokio::sync::mpsc::Receiver<Inbox>,
    persisted: tokio::sync::mpsc::UnboundedReceiver<Inbox>,
}

/// A worker's inboxes.
pub fn inbox() -> (InboxSender, InboxReceiver) {
    let (h, hr) = tokio::sync::mpsc::channel(HANDOVER_QUEUE);
    let (p, pr) = tokio::sync::mpsc::unbounded_channel();
    (
        InboxSender {
            handover: h,
            persisted: p,
        },
        InboxReceiver {
            handover: hr,
            persisted: pr,
        },
    )
}

/// Messages dropped because a worker's handover queue was full.
static HANDOVERS_DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl InboxSender {
    /// Queues a handed-over message; drops it (logged once per 1,000) when
    /// the queue is full.
    fn hand_over(&self, m: Inbox) {
        if self.handover.try_send(m).is_err() {
            let n = HANDOVERS_DROPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n % 1000 == 0 {
                tracing::warn!(
                    dropped = n + 1,
                    "a worker's handover queue is full: messages dropped"
                );
            }
        }
    }
}

/// What a worker shares with the others.
#[derive(Debug)]
pub struct Shared {
    /// Authenticator, registrar, clock.
    pub services: Services,
    /// The registrar's log.
    pub persister: Persister,
    /// Every worker's inbox.
    pub inboxes: Inboxes,
    /// The settings a reload changes under the running workers.
    pub tunables: Arc<Tunables>,
}

/// The shell's settings that SIGHUP applies while it runs (the others of
/// `[server]` need a restart: sockets, threads, data directory).
#[derive(Debug)]
pub struct Tunables {
    keepalive_s: AtomicU32,
    batch_window_us: AtomicU32,
    tcp_idle_s: AtomicU32,
    tcp_max_connections: AtomicU32,
}

impl Tunables {
    /// `registrar.keepalive_s`, `server.batch_window_us`,
    /// `server.tcp_idle_s` and `server.tcp_max_connections` of `cfg`.
    pub fn new(cfg: &crate::config::Config) -> Tunables {
        let t = Tunables {
            keepalive_s: AtomicU32::new(0),
            batch_window_us: AtomicU32::new(0),
            tcp_idle_s: AtomicU32::new(0),
            tcp_max_connections: AtomicU32::new(0),
        };
        t.set(cfg);
        t
    }

    /// Applies a reloaded configuration's values.
    pub fn set(&self, cfg: &crate::config::Config) {
        let store = |a: &AtomicU32, v| a.store(v, Ordering::Relaxed);
        store(&self.keepalive_s, cfg.registrar.keepalive_s);
        store(&self.batch_window_us, cfg.server.batch_window_us);
        store(&self.tcp_idle_s, cfg.server.tcp_idle_s);
        store(&self.tcp_max_connections, cfg.server.tcp_max_connections);
    }

    /// The most TCP connections each of `workers` workers keeps (its share
    /// of `server.tcp_max_connections`), and the most it keeps from one IP
    /// address: an eighth of that, room for a few hundred phones behind one
    /// NAT, while one address alone cannot take every slot.
    pub(super) fn tcp_caps(&self, workers: usize) -> (usize, usize) {
        let total = self.tcp_max_connections.load(Ordering::Relaxed).max(1) as usize;
        let per_worker = total.div_ceil(workers.max(1));
        (per_worker, (per_worker / 8).max(1))
    }

    /// How long a TCP connection may stay silent (`server.tcp_idle_s`).
    pub(super) fn tcp_idle(&self) -> Duration {
        Duration::from_secs(u64::from(self.tcp_idle_s.load(Ordering::Relaxed).max(1)))
    }

    /// Seconds between keep-alive OPTIONS to UDP bindings (0 = none).
    fn keepalive_s(&self) -> u32 {
        self.keepalive_s.load(Ordering::Relaxed)
    }

    /// After a wake-up's batch, how long a UDP socket is left to fill
    /// before it is read again (`server.batch_window_us`): under load one
    /// wake-up, one `recvmmsg` and one `sendmmsg` then serve many
    /// datagrams, at the price of at most this much added latency. Zero
    /// reads again at once.
    fn batch_window(&self) -> Duration {
        Duration::from_micros(u64::from(self.batch_window_us.load(Ordering::Relaxed)))
    }
}

/// The destinations a UDP socket reaches, by the address it is bound to.
#[derive(Debug, Clone, Copy)]
struct Reach {
    v6: bool,
    /// Bound to the IPv6 wildcard: dual-stack, IPv4 peers as `::ffff:a.b.c.d`.
    dual: bool,
}

impl Reach {
    fn of(local: SocketAddr) -> Reach {
        Reach {
            v6: local.is_ipv6(),
            dual: local.is_ipv6() && local.ip().is_unspecified(),
        }
    }

    /// `to` as this socket sends to it, if it can.
    fn addr(self, to: SocketAddr) -> Option<SocketAddr> {
        match (to.is_ipv6(), self.v6) {
            (false, false) | (true, true) => Some(to),
            (false, true) if self.dual => Some(super::on_socket(to, true)),
            _ => None,
        }
    }
}

/// TCP connection ids carry their worker in the top 16 bits, so any worker
/// can tell who owns a binding's connection.
pub(super) const CONN_WORKER_SHIFT: u32 = 48;

pub(super) struct Worker {
    pub(super) proxy: RefCell<Proxy>,
    pub(super) shared: Shared,
    pub(super) reader: RefCell<Reader>,
    udp_listen: Vec<Rc<UdpSocket>>,
    udp_own: Rc<UdpSocket>,
    /// The same sockets (duplicated descriptors) for plain non-blocking
    /// `sendto`/`recvfrom`: see [`Worker::transmit`] and [`udp_loop`].
    udp_listen_std: Vec<std::net::UdpSocket>,
    udp_own_std: std::net::UdpSocket,
    /// Which destinations each UDP socket reaches: index 0 the worker's
    /// own, then the listening ones in order (see [`Worker::udp_pick`]).
    udp_reach: Vec<Reach>,
    pub(super) conns: RefCell<HashMap<u64, Rc<Conn>>>,
    pub(super) conn_by_addr: RefCell<HashMap<SocketAddr, u64>>,
    /// Open connections per peer IP (a cap per address).
    pub(super) conns_per_ip: RefCell<HashMap<std::net::IpAddr, u32>>,
    /// Messages waiting for a connection being opened, by address.
    pub(super) connecting: RefCell<HashMap<SocketAddr, Vec<Transmit>>>,
    pub(super) next_conn: std::cell::Cell<u64>,
    wake: Notify,
    pub(super) index: usize,
}

/// Builds a UDP socket bound to `addr` with `SO_REUSEPORT`, so every worker
/// binds the same address and the kernel spreads datagrams by 4-tuple.
pub fn reuseport_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    udp_socket(addr, true)
}

/// A non-blocking UDP socket bound to `addr` with 4 MiB buffers (the
/// default ~200 KiB overflows when a busy worker is descheduled for a few
/// milliseconds: the worker's own socket, which receives every response to
/// the requests it forwards, needs them as much as the shared one).
fn udp_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        None,
    )?;
    if reuse_port {
        s.set_reuse_port(true)?;
        s.set_reuse_address(true)?;
    }
    // Bursts of load arrive faster than one worker drains them.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// A TCP listener on `addr` with `SO_REUSEPORT`, one per worker.
pub fn reuseport_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    s.set_reuse_port(true)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Runs worker `index` until the process exits.
pub fn run(
    index: usize,
    listen: Vec<Listen>,
    mut cfg: ProxyConfig,
    reader: Reader,
    shared: Shared,
    inbox: InboxReceiver,
) -> io::Result<()> {
    tokio_uring::start(async move {
        let mut udp_listen = Vec::new();
        let mut udp_listen_std = Vec::new();
        let mut tcp_listen = Vec::new();
        for l in &listen {
            match l.transport {
                Transport::Udp => {
                    let s = reuseport_udp(l.addr)?;
                    udp_listen_std.push(s.try_clone()?);
                    udp_listen.push(Rc::new(UdpSocket::from_std(s)))
                }
                Transport::Tcp => tcp_listen.push(TcpListener::from_std(reuseport_tcp(l.addr)?)),
            }
        }
        let first = listen
            .first()
            .map(|l| l.addr)
            .ok_or_else(|| io::Error::other("nothing to listen on"))?;
        // The worker's own socket: same IP, a port of its own that goes in
        // its Via (see the proxy's module docs on worker affinity). The
        // ports after the first listen port (5061, 5062, … for 5060), so a
        // firewall can name them and they stay the same across restarts
        // (a peer that answers where a dialog came from still finds the
        // switch); an ephemeral port if that one is taken.
        let wanted = u16::try_from(usize::from(first.port()) + 1 + index)
            .ok()
            .filter(|&p| first.port() != 0 && listen.iter().all(|l| l.addr.port() != p));
        let own_std = match wanted.map(|p| udp_socket(SocketAddr::new(first.ip(), p), false)) {
            Some(Ok(s)) => s,
            other => {
                let s = udp_socket(SocketAddr::new(first.ip(), 0), false)?;
                tracing::warn!(
                    worker = index,
                    wanted = ?wanted,
                    port = s.local_addr()?.port(),
                    error = ?other.and_then(Result::err).map(|e| e.to_string()),
                    "worker port taken: an ephemeral one instead (firewalls must allow it)"
                );
                s
            }
        };
        cfg.worker_port = own_std.local_addr()?.port();
        tracing::info!(worker = index, port = cfg.worker_port, "worker started");
        let udp_own_std = own_std.try_clone()?;
        let udp_own = Rc::new(UdpSocket::from_std(own_std));
        let udp_reach = std::iter::once(&udp_own_std)
            .chain(&udp_listen_std)
            .map(|s| s.local_addr().map(Reach::of))
            .collect::<io::Result<Vec<_>>>()?;
        let w = Rc::new(Worker {
            proxy: RefCell::new(Proxy::with_services(cfg, shared.services.clone())),
            shared,
            reader: RefCell::new(reader),
            udp_listen,
            udp_own,
            udp_listen_std,
            udp_own_std,
            udp_reach,
            conns: RefCell::new(HashMap::new()),
            conn_by_addr: RefCell::new(HashMap::new()),
            connecting: RefCell::new(HashMap::new()),
            conns_per_ip: RefCell::new(HashMap::new()),
            next_conn: std::cell::Cell::new(((index as u64) << CONN_WORKER_SHIFT) + 1),
            wake: Notify::new(),
            index,
        });
        for (i, s) in w.udp_listen.clone().into_iter().enumerate() {
            tokio_uring::spawn(udp_loop(w.clone(), s, Some(i)));
        }
        tokio_uring::spawn(udp_loop(w.clone(), w.udp_own.clone(), None));
        for l in tcp_listen {
            tokio_uring::spawn(super::tcp::accept_loop(w.clone(), l));
        }
        let InboxReceiver {
            mut handover,
            mut persisted,
        } = inbox;
        let iw = w.clone();
        tokio_uring::spawn(async move {
            while let Some(m) = handover.recv().await {
                iw.inbox(m).await;
            }
        });
        let iw = w.clone();
        tokio_uring::spawn(async move {
            while let Some(m) = persisted.recv().await {
                iw.inbox(m).await;
            }
        });
        tokio_uring::spawn(housekeeping(w.clone()));
        timer_loop(w).await;
        Ok(())
    })
}

/// Receives on one UDP socket (`listen`: its index among the listening
/// sockets, `None` for the worker's own). Whatever is queued is taken with
/// `recvmmsg`, many datagrams per call; everything they produce is sent
/// with `sendmmsg`; then the loop leaves the socket alone for the batch
/// window (see [`Shared::batch_window`]). Only a socket found empty is
/// waited on, with an io_uring receive: a busy one never needs it.
async fn udp_loop(w: Rc<Worker>, sock: Rc<UdpSocket>, listen: Option<usize>) {
    let mut buf = Vec::with_capacity(MAX_MESSAGE_LEN + 1);
    let mut batch = RecvBatch::new(RECV_BATCH, MAX_MESSAGE_LEN + 1);
    let fd = match listen {
        Some(i) => w.udp_listen_std[i].as_raw_fd(),
        None => w.udp_own_std.as_raw_fd(),
    };
    loop {
        if w.drain(&mut batch, fd) == 0 {
            let (res, b) = sock.recv_from(buf).await;
            buf = b;
            match res {
                Ok((n, from)) => {
                    let data = Bytes::copy_from_slice(&buf[..n]);
                    buf.clear();
                    w.process(data, Peer::udp(super::canonical(from)), 0);
                }
                Err(e) => {
                    buf.clear();
                    tracing::warn!(worker = w.index, error = %e, "UDP receive failed");
                    continue;
                }
            }
            w.drain(&mut batch, fd);
        }
        w.flush().await;
        let window = w.shared.tunables.batch_window();
        if !window.is_zero() {
            tokio::time::sleep(window).await;
        }
    }
}

/// Datagrams one `recvmmsg` takes.
const RECV_BATCH: usize = 32;
/// `recvmmsg` calls per wake-up at most, before the other tasks run.
const MAX_BATCHES: usize = 8;

/// Timers are served in batches at most every [`TIMER_TICK`]: under load
/// thousands of transaction timers fall due each second, and one wake-up per
/// deadline would cost more than the timers' work. RFC 3261 timers are
/// hundreds of milliseconds and up, so a few milliseconds late is harmless.
const TIMER_TICK: Duration = Duration::from_millis(10);

async fn timer_loop(w: Rc<Worker>) {
    let mut last = Instant::now();
    loop {
        let next = w.proxy.borrow().poll_timeout();
        let sleep = match next {
            Some(t) => tokio::time::sleep_until(t.max(last + TIMER_TICK).into()),
            None => tokio::time::sleep(Duration::from_secs(3600)),
        };
        tokio::select! {
            _ = sleep => {
                last = Instant::now();
                w.proxy.borrow_mut().handle_timeout(last);
                w.flush().await;
            }
            _ = w.wake.notified() => {}
        }
    }
}

/// Keep-alive OPTIONS to the UDP bindings this worker registered (their
/// NAT pinholes lead to its 4-tuple) every `registrar.keepalive_s`, one
/// per source address and port: a PBX registering many accounts through
/// one socket (one pinhole) gets one OPTIONS a round, not one per
/// account. And,
/// on worker 0, the purge of expired bindings every [`PURGE_EVERY`]. The
/// period is read again at least every second, so a reload applies it.
async fn housekeeping(w: Rc<Worker>) {
    const RECHECK: Duration = Duration::from_secs(1);
    let mut last_keepalive = Instant::now();
    let mut next_purge = last_keepalive + PURGE_EVERY;
    loop {
        let every = w.shared.tunables.keepalive_s();
        let next_keepalive =
            (every != 0).then(|| last_keepalive + Duration::from_secs(u64::from(every)));
        let wake = next_keepalive
            .unwrap_or(next_purge)
            .min(next_purge)
            .min(Instant::now() + RECHECK);
        tokio::time::sleep_until(wake.into()).await;
        let now = Instant::now();
        let keepalive = next_keepalive.is_some_and(|t| now >= t);
        let purge = now >= next_purge;
        if !keepalive && !purge {
            continue;
        }
        let services = &w.shared.services;
        let unix = services.clock.unix(now);
        if keepalive {
            last_keepalive = now;
            // By the worker that registered it, modulo the workers running
            // now (a restart may run fewer).
            let (me, n) = (w.index, usize::from(services.workers.max(1)));
            let mut proxy = w.proxy.borrow_mut();
            let mut pinged: HashSet<SocketAddr, foldhash::fast::RandomState> = HashSet::default();
            services.registrar.for_each_binding(unix, |_, b| {
                if usize::from(b.worker) % n == me
                    && b.transport == Transport::Udp
                    && pinged.insert(b.source)
                {
                    proxy.keepalive(b);
                }
            });
        }
        if purge {
            next_purge = now + PURGE_EVERY;
            if w.index == 0 {
                let purged = services.registrar.purge(unix);
                if purged > 0 {
                    tracing::debug!(purged, "expired bindings purged");
                }
            }
        }
        w.flush().await;
    }
}

/// How often worker 0 drops expired bindings from the store (lookups
/// skip them meanwhile).
const PURGE_EVERY: Duration = Duration::from_secs(30);

impl Worker {
    async fn inbox(self: &Rc<Self>, m: Inbox) {
        match m {
            Inbox::Receive { data, from, hops } => {
                self.process(data, from, hops);
                self.flush().await;
            }
            Inbox::Send(t) => self.transmit(t).await,
            Inbox::SendFailed(t) => {
                self.send_failed(&t);
                self.flush().await;
            }
            Inbox::Persisted { tickets, ok } => {
                {
                    let mut proxy = self.proxy.borrow_mut();
                    let now = Instant::now();
                    for t in tickets {
                        proxy.persisted(now, t, ok);
                    }
                }
                self.wake.notify_one();
                self.flush().await;
            }
        }
    }

    pub(super) async fn handle(self: &Rc<Self>, data: Bytes, from: Peer) {
        self.process(data, from, 0);
        self.flush().await;
    }

    /// Runs what is queued on UDP socket `fd` through the proxy, a batch
    /// of datagrams per `recvmmsg`, at most [`MAX_BATCHES`] batches (timers
    /// and other sockets get their turn). Returns how many were taken.
    fn drain(&self, batch: &mut RecvBatch, fd: std::os::fd::RawFd) -> usize {
        let mut total = 0;
        for _ in 0..MAX_BATCHES {
            let n = match batch.recv(fd) {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(worker = self.index, error = %e, "UDP receive failed");
                    0
                }
            };
            for i in 0..n {
                let (d, from) = batch.get(i);
                if let Some(from) = from {
                    self.process(
                        Bytes::copy_from_slice(d),
                        Peer::udp(super::canonical(from)),
                        0,
                    );
                }
            }
            total += n;
            if n < batch.capacity() {
                break;
            }
        }
        total
    }

    /// Runs one received message through the proxy; what it produces waits
    /// in the proxy's queues for [`Worker::flush`].
    /// Runs one message through the proxy (`hops`: see
    /// [`Proxy::handle_handover`]; 0 for what this worker received).
    fn process(&self, data: Bytes, from: Peer, hops: u8) {
        let before = self.proxy.borrow().poll_timeout();
        {
            let mut reader = self.reader.borrow_mut();
            let table = reader.table();
            let now = Instant::now();
            let services = &self.shared.services;
            let router = crate::proxy::router::TableRouter::with_registrar(
                table,
                &services.registrar,
                services.clock.unix(now),
            );
            self.proxy
                .borrow_mut()
                .handle_handover(now, data, from, hops, &router);
        }
        let after = self.proxy.borrow().poll_timeout();
        if after.is_some() && (before.is_none() || after < before) {
            self.wake.notify_one();
        }
    }

    pub(super) async fn flush(self: &Rc<Self>) {
        loop {
            let h = self.proxy.borrow_mut().poll_handover();
            let Some(h) = h else { break };
            if let Some(inbox) = self.shared.inboxes.get(usize::from(h.worker)) {
                inbox.hand_over(Inbox::Receive {
                    data: h.data,
                    from: h.from,
                    hops: h.hops,
                });
            }
        }
        // Every record this flush produced goes to the log as one batch;
        // when it is durable the writer posts the tickets back to this
        // worker's inbox (one wake-up per batch).
        let mut records = Vec::new();
        let mut tickets = Vec::new();
        loop {
            let p = self.proxy.borrow_mut().poll_persist();
            let Some(p) = p else { break };
            records.extend_from_slice(&p.record);
            tickets.push(p.ticket);
        }
        if !tickets.is_empty() {
            let inbox = self.shared.inboxes[self.index].clone();
            self.shared.persister.persist_then(records, move |r| {
                if let Err(e) = &r {
                    tracing::error!(error = %e, "registration records not stored");
                }
                let _ = inbox.persisted.send(Inbox::Persisted {
                    tickets,
                    ok: r.is_ok(),
                });
            });
        }
        // UDP from this worker's own sockets goes out in one `sendmmsg` per
        // socket; the rest (TCP, other workers' connections) one by one. A
        // send that fails may make the proxy answer at once (a branch ends
        // as 503): passes repeat until one finds nothing to send.
        loop {
            // Grouped by the socket they leave from (index as in
            // `udp_reach`), each with its destination as that socket takes it.
            let mut udp: Vec<(usize, Vec<(SocketAddr, Transmit)>)> = Vec::new();
            let mut any = false;
            loop {
                let t = self.proxy.borrow_mut().poll_transmit();
                let Some(t) = t else { break };
                any = true;
                if t.peer.transport == Transport::Udp && t.peer.conn.is_none() {
                    let (k, to) = self.udp_pick(t.source, t.peer.addr);
                    match udp.iter_mut().find(|(s, _)| *s == k) {
                        Some((_, group)) => group.push((to, t)),
                        None => udp.push((k, vec![(to, t)])),
                    }
                } else {
                    self.transmit(t).await;
                }
            }
            if !any {
                return;
            }
            for (k, group) in udp {
                let fd = self.udp_std_at(k).as_raw_fd();
                let msgs: Vec<(SocketAddr, &[u8])> =
                    group.iter().map(|(to, t)| (*to, &t.data[..])).collect();
                let sent = match send_batch(fd, &msgs) {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::debug!(worker = self.index, error = %e, "UDP batch send failed");
                        0
                    }
                };
                drop(msgs);
                // What did not fit (a full socket buffer, or one bad
                // destination) goes one by one, with io_uring's wait if
                // needed.
                for (_, t) in group.into_iter().skip(sent) {
                    self.transmit(t).await;
                }
            }
        }
    }

    /// The UDP socket a datagram from `source` to `to` leaves by (index as
    /// in `udp_reach`: 0 the worker's own, then the listening ones), and
    /// `to` as that socket takes it. `Listen`: the first listening socket
    /// that reaches `to`. `Worker`: the worker's own socket when it reaches
    /// `to` (it has the first listen address's family), else as `Listen`.
    /// When none does, the first candidate, whose send then fails.
    fn udp_pick(&self, source: Source, to: SocketAddr) -> (usize, SocketAddr) {
        let own = usize::from(source == Source::Listen && self.udp_reach.len() > 1);
        let candidates = std::iter::once(own).chain(1..self.udp_reach.len());
        candidates
            .clone()
            .find_map(|k| Some((k, self.udp_reach[k].addr(to)?)))
            .unwrap_or((own, to))
    }

    /// UDP socket `k` (see [`Worker::udp_pick`]), plain descriptor.
    fn udp_std_at(&self, k: usize) -> &std::net::UdpSocket {
        match k {
            0 => &self.udp_own_std,
            k => &self.udp_listen_std[k - 1],
        }
    }

    /// UDP socket `k`, io_uring side.
    fn udp_at(&self, k: usize) -> &Rc<UdpSocket> {
        match k {
            0 => &self.udp_own,
            k => &self.udp_listen[k - 1],
        }
    }

    /// Tells the proxy that made `t` that it could not be sent (its
    /// transaction may answer the caller at once: the flush in progress
    /// sends that). A message handed over by another worker (to be written
    /// on a connection this one owns) goes back to it.
    pub(super) fn send_failed(&self, t: &Transmit) {
        let origin = usize::from(t.worker);
        if origin != self.index {
            if let Some(inbox) = self.shared.inboxes.get(origin) {
                inbox.hand_over(Inbox::SendFailed(t.clone()));
                return;
            }
        }
        self.proxy
            .borrow_mut()
            .transport_error(Instant::now(), &t.data, &t.peer);
    }

    async fn transmit(self: &Rc<Self>, t: Transmit) {
        if let Some(id) = t.peer.conn {
            let owner = ((id & !crate::proxy::CONN_REUSE) >> CONN_WORKER_SHIFT) as usize;
            if owner != self.index {
                // A binding's (or a NAT-fixed Contact's) connection lives on
                // the worker that accepted it: that worker writes. An id
                // naming no running worker (a Contact from before a restart
                // with fewer workers) is served here, by address.
                if let Some(inbox) = self.shared.inboxes.get(owner) {
                    inbox.hand_over(Inbox::Send(t));
                    return;
                }
            }
        }
        match t.peer.transport {
            Transport::Udp => {
                // A UDP send never waits for the peer: a plain non-blocking
                // `sendto` does it in one syscall, with no completion to
                // reap. Only a full socket buffer falls back to io_uring.
                let (k, to) = self.udp_pick(t.source, t.peer.addr);
                match self.udp_std_at(k).send_to(&t.data, to) {
                    Ok(_) => return,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        tracing::debug!(worker = self.index, peer = %t.peer.addr, error = %e, "UDP send failed");
                        return self.send_failed(&t);
                    }
                }
                let (r, _) = self.udp_at(k).send_to(t.data.clone(), to).await;
                if let Err(e) = r {
                    tracing::debug!(worker = self.index, peer = %t.peer.addr, error = %e, "UDP send failed");
                    self.send_failed(&t);
                }
            }
            Transport::Tcp => self.send_tcp(t),
        }
    }
}
