//! TCP on a worker: accepting, reading (framing with the parser's
//! `Partial`), opening connections to TCP next hops, and writing.
//!
//! A connection lives on the worker that accepted or opened it. Nothing
//! here waits on a peer in line with the worker's other work:
//!
//! - a connection to a next hop is opened by a task of its own, and what is
//!   sent meanwhile waits in [`Worker::connecting`] for it, in order; a
//!   connect refused or not answered within [`TCP_IO_LIMIT`] ends those
//!   messages' branches as 503 at once (`Proxy::transport_error`);
//! - each connection has a queue of outgoing messages, written in order by
//!   one writer task at a time; a write that fails or takes longer than
//!   [`TCP_IO_LIMIT`] (a peer that stopped reading) closes the connection
//!   and fails what was queued on it.
//!
//! So a PBX that drops SYNs, or one that stops reading, costs its own calls
//! their answer, not everyone else on the worker two seconds.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio_uring::net::{TcpListener, TcpStream};

use super::worker::Worker;
use crate::proxy::{Peer, Source, Transmit, Transport};
use crate::sip::{Framing, Head, Status};

/// The longest a TCP connect or write may take before the peer counts as
/// unreachable.
const TCP_IO_LIMIT: Duration = Duration::from_secs(2);

/// The most bytes waiting to be written on one connection. A client that
/// sends requests and never reads their answers would otherwise grow the
/// queue without bound; past this it is closed.
const MAX_QUEUED_BYTES: usize = 1 << 20;

/// The first pause after a failed `accept` (doubled up to
/// [`ACCEPT_BACKOFF_MAX`]). Out of descriptors, the connection stays
/// queued and accepting again at once fails again: without a pause the
/// worker would spin on it and flood the log.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// One TCP connection: its stream and the messages waiting to be written
/// on it.
pub(super) struct Conn {
    stream: TcpStream,
    id: u64,
    addr: SocketAddr,
    out: RefCell<VecDeque<Transmit>>,
    /// The bytes in `out`.
    queued: Cell<usize>,
    /// A writer task is draining `out`.
    writing: Cell<bool>,
    /// Closed once `out` is written (a framing error, or the peer's end of
    /// stream): answers already queued still go out.
    closing: Cell<bool>,
    /// Accepted from a peer (not opened by the switch): only these are
    /// evicted when the table is full.
    accepted: bool,
    /// When the last whole message arrived (or the connection opened).
    last_message: Cell<Instant>,
}

/// Counts events of one kind and says when one is worth a log line: the
/// first, then at most one a second, each with the count so far. A flood
/// of connections must not become a flood of log lines.
#[derive(Default)]
pub(super) struct Throttle {
    count: Cell<u64>,
    logged: Cell<Option<Instant>>,
}

impl Throttle {
    /// Counts one event; returns the count so far when it should be logged.
    pub(super) fn due(&self) -> Option<u64> {
        let n = self.count.get() + 1;
        self.count.set(n);
        let now = Instant::now();
        match self.logged.get() {
            Some(t) if now.duration_since(t) < Duration::from_secs(1) => None,
            _ => {
                self.logged.set(Some(now));
                Some(n)
            }
        }
    }
}

pub(super) async fn accept_loop(w: Rc<Worker>, listener: TcpListener) {
    let mut backoff = ACCEPT_BACKOFF;
    let (failed, per_ip, full) = (
        Throttle::default(),
        Throttle::default(),
        Throttle::default(),
    );
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                backoff = ACCEPT_BACKOFF;
                let addr = super::canonical(addr);
                let services = &w.shared.services;
                if services
                    .auth
                    .is_banned(services.clock.unix(Instant::now()), addr.ip())
                {
                    continue; // a banned source gets nothing, not even a connection
                }
                // Each connection may buffer up to MAX_MESSAGE_LEN: the caps
                // bound that memory and the descriptors. A refused stream is
                // dropped (closed).
                let (cap, per_ip_cap) = w.shared.tunables.tcp_caps(w.shared.inboxes.len());
                let from_ip = w.conns_per_ip.borrow().get(&addr.ip()).copied();
                // A configured peer (a carrier's SBC opening one
                // connection per call, a friend's PBX) is held only to the
                // table's cap: the per-address cap is for the unknown.
                if from_ip.unwrap_or(0) as usize >= per_ip_cap
                    && !w.reader.borrow_mut().table().is_configured_peer(addr.ip())
                {
                    if let Some(n) = per_ip.due() {
                        tracing::warn!(worker = w.index, %addr, refused = n, "TCP connection refused: too many from this address");
                    }
                    continue;
                }
                if w.conns.borrow().len() >= cap {
                    let evicted = w.evict_idlest();
                    if let Some(n) = full.due() {
                        tracing::warn!(
                            worker = w.index,
                            %addr,
                            times = n,
                            evicted = ?evicted,
                            "TCP connection table full: {}",
                            if evicted.is_some() {
                                "the longest silent connection closed"
                            } else {
                                "connection refused (every one carries a registration)"
                            }
                        );
                    }
                    if evicted.is_none() {
                        continue;
                    }
                }
                let id = w.add_conn(stream, addr, true);
                tokio_uring::spawn(read_loop(w.clone(), id, addr));
            }
            Err(e) => {
                // Typically out of descriptors (EMFILE): the connection
                // stays queued, so wait before trying again, and log once
                // a second at most.
                if let Some(n) = failed.due() {
                    tracing::warn!(worker = w.index, error = %e, failed = n, "TCP accept failed");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

/// Reads one TCP connection: frames messages with the parser's `Partial`,
/// bounded by [`crate::sip::MAX_MESSAGE_LEN`], closed when idle or on a framing error
/// (RFC 4475 `ncl`, `mcl01`: a stream cannot be resynchronised).
async fn read_loop(w: Rc<Worker>, id: u64, addr: SocketAddr) {
    let Some(conn) = w.conns.borrow().get(&id).cloned() else {
        return;
    };
    let peer = Peer {
        addr,
        transport: Transport::Tcp,
        conn: Some(id),
    };
    let mut pending = BytesMut::with_capacity(8192);
    let mut buf = vec![0u8; 16384];
    // Only a whole message (not a keep-alive ping) moves the deadline: a
    // client trickling a byte now and then does not hold a slot forever.
    let mut deadline = Instant::now() + w.shared.tunables.tcp_idle();
    loop {
        // One read stays in flight across idle periods: tokio-uring does
        // not cancel a dropped read, whose data would be lost.
        let mut read = std::pin::pin!(conn.stream.read(buf));
        let (res, b) = loop {
            match tokio::time::timeout_at(deadline.into(), read.as_mut()).await {
                Ok(r) => break r,
                // No message for `server.tcp_idle_s`: closed, unless a live
                // registration was made over it. A device behind NAT can
                // only be reached on the connection it registered on, and
                // not every one sends keep-alives.
                Err(_) if holds_binding(&w, id) => {
                    deadline = Instant::now() + w.shared.tunables.tcp_idle();
                }
                Err(_) => {
                    w.drop_conn(id, addr);
                    return;
                }
            }
        };
        buf = b;
        let n = match res {
            // The peer's end of stream: what is queued still goes out.
            Ok(0) => return w.close_after_flush(&conn),
            Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        loop {
            // RFC 5626 §3.5.1: a CRLFCRLF ping is answered with CRLF.
            if pending.starts_with(b"\r\n\r\n") {
                let _ = pending.split_to(4);
                let pong = Transmit {
                    peer,
                    source: Source::Listen,
                    data: Bytes::from_static(b"\r\n"),
                    worker: w.index as u16,
                };
                // A ping keeps a NAT pinhole open; it does not keep the
                // connection: only messages (or a live registration) do,
                // so pings alone cannot hold slots forever.
                w.enqueue(&conn, pong);
                continue;
            }
            match Head::parse(&pending, Framing::Stream) {
                Ok(Status::Complete(head)) => {
                    let msg = pending.split_to(head.end()).freeze();
                    let now = Instant::now();
                    conn.last_message.set(now);
                    deadline = now + w.shared.tunables.tcp_idle();
                    w.handle(msg, peer).await;
                }
                Ok(Status::Partial) => break,
                Err(e) => {
                    tracing::debug!(worker = w.index, %addr, error = %e, "TCP framing error, closing");
                    // The 400 goes after the answers already queued, then
                    // the connection closes.
                    let answer = e.status().and_then(|s| {
                        let proxy = w.proxy.borrow();
                        crate::proxy::answer_unparsable(&pending, s.0, e.reason(), proxy.tag_mark())
                    });
                    if let Some(r) = answer {
                        let bad = Transmit {
                            peer,
                            source: Source::Listen,
                            data: r.into(),
                            worker: w.index as u16,
                        };
                        w.enqueue(&conn, bad);
                    }
                    return w.close_after_flush(&conn);
                }
            }
        }
    }
    w.drop_conn(id, addr);
}

/// Whether TCP connection `id` carries a live registration.
fn holds_binding(w: &Worker, id: u64) -> bool {
    let services = &w.shared.services;
    let unix = services.clock.unix(Instant::now());
    services.registrar.holds_connection(id, unix)
}

/// Opens a connection to `addr` for the messages waiting for it in
/// [`Worker::connecting`], then queues them on it; when it cannot be
/// opened, fails them (their branches end as 503).
async fn connect(w: Rc<Worker>, addr: SocketAddr) {
    let result = tokio::time::timeout(TCP_IO_LIMIT, TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| Err(io::Error::from(io::ErrorKind::TimedOut)));
    let waiting = w.connecting.borrow_mut().remove(&addr).unwrap_or_default();
    match result {
        Ok(stream) => {
            let id = w.add_conn(stream, addr, false);
            tokio_uring::spawn(read_loop(w.clone(), id, addr));
            let conn = w.conns.borrow().get(&id).cloned();
            if let Some(conn) = conn {
                for t in waiting {
                    w.enqueue(&conn, t);
                }
            }
        }
        Err(e) => {
            tracing::info!(worker = w.index, peer = %addr, error = %e, "TCP connect failed");
            for t in &waiting {
                w.send_failed(t);
            }
            w.flush().await;
        }
    }
}

/// Writes what is queued on `conn`, in order, until the queue is empty.
async fn writer(w: Rc<Worker>, conn: Rc<Conn>) {
    loop {
        let next = conn.out.borrow_mut().pop_front();
        let Some(t) = next else {
            conn.writing.set(false);
            if conn.closing.get() {
                w.drop_conn(conn.id, conn.addr);
            }
            return;
        };
        conn.queued
            .set(conn.queued.get().saturating_sub(t.data.len()));
        let r =
            match tokio::time::timeout(TCP_IO_LIMIT, conn.stream.write_all(t.data.clone())).await {
                Ok((r, _)) => r,
                Err(_) => Err(io::Error::from(io::ErrorKind::TimedOut)),
            };
        if let Err(e) = r {
            tracing::debug!(worker = w.index, peer = %conn.addr, error = %e, "TCP send failed, closing");
            w.drop_conn(conn.id, conn.addr);
            let rest: Vec<Transmit> = conn.out.borrow_mut().drain(..).collect();
            conn.queued.set(0);
            conn.writing.set(false);
            for t in std::iter::once(&t).chain(&rest) {
                w.send_failed(t);
            }
            w.flush().await;
            return;
        }
    }
}

impl Worker {
    /// Keeps `stream` to `addr` (`accepted` from a peer, else opened by
    /// the switch); returns its id.
    fn add_conn(&self, stream: TcpStream, addr: SocketAddr, accepted: bool) -> u64 {
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            stream,
            id,
            addr,
            out: RefCell::new(VecDeque::new()),
            queued: Cell::new(0),
            writing: Cell::new(false),
            closing: Cell::new(false),
            accepted,
            last_message: Cell::new(Instant::now()),
        };
        self.conns.borrow_mut().insert(id, Rc::new(conn));
        self.conn_by_addr.borrow_mut().insert(addr, id);
        *self.conns_per_ip.borrow_mut().entry(addr.ip()).or_default() += 1;
        id
    }

    /// Makes room for a new connection when the table is full: closes the
    /// accepted connection that has been silent the longest, unless it
    /// carries a live registration (a phone behind NAT is reachable only
    /// through it) or is already closing. Returns the address of the one
    /// closed.
    ///
    /// Without this, clients that each send one message per
    /// `server.tcp_idle_s` could hold every slot and keep everyone else
    /// out; with it, a newcomer always gets in, and what is closed is the
    /// least active. Connections the switch opened are not evicted.
    fn evict_idlest(&self) -> Option<SocketAddr> {
        let victim = {
            let conns = self.conns.borrow();
            let mut idle: Vec<(Instant, u64, SocketAddr)> = conns
                .values()
                .filter(|c| c.accepted && !c.closing.get())
                .map(|c| (c.last_message.get(), c.id, c.addr))
                .collect();
            idle.sort_unstable_by_key(|&(at, id, _)| (at, id));
            idle.into_iter()
                .find(|&(_, id, _)| !holds_binding(self, id))
        };
        let (_, id, addr) = victim?;
        self.drop_conn(id, addr);
        Some(addr)
    }

    /// Closes connection `id`. Shut down explicitly: a read still in
    /// flight holds the descriptor (tokio-uring does not cancel it), so
    /// dropping the stream alone would leave the socket open.
    fn drop_conn(&self, id: u64, addr: SocketAddr) {
        let Some(conn) = self.conns.borrow_mut().remove(&id) else {
            return;
        };
        let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        let mut per_ip = self.conns_per_ip.borrow_mut();
        if let Some(n) = per_ip.get_mut(&addr.ip()) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&addr.ip());
            }
        }
        drop(per_ip);
        self.shared.services.registrar.connection_closed(id);
        let mut by = self.conn_by_addr.borrow_mut();
        if by.get(&addr) == Some(&id) {
            by.remove(&addr);
        }
    }

    /// Queues `t` on `conn`, starting a writer if none is running. A
    /// connection whose queue would pass [`MAX_QUEUED_BYTES`] (a peer that
    /// does not read) is closed, and what it had queued fails.
    fn enqueue(self: &Rc<Self>, conn: &Rc<Conn>, t: Transmit) {
        let queued = conn.queued.get() + t.data.len();
        if queued > MAX_QUEUED_BYTES {
            tracing::info!(worker = self.index, peer = %conn.addr, "TCP peer does not read its answers: closed");
            self.drop_conn(conn.id, conn.addr);
            let rest: Vec<Transmit> = conn.out.borrow_mut().drain(..).collect();
            conn.queued.set(0);
            for t in std::iter::once(&t).chain(&rest) {
                self.send_failed(t);
            }
            return;
        }
        conn.queued.set(queued);
        conn.out.borrow_mut().push_back(t);
        if !conn.writing.replace(true) {
            tokio_uring::spawn(writer(self.clone(), conn.clone()));
        }
    }

    /// Stops taking messages on `conn` and closes it once its queue is
    /// written (at once if nothing is queued).
    fn close_after_flush(&self, conn: &Rc<Conn>) {
        conn.closing.set(true);
        if !conn.writing.get() {
            self.drop_conn(conn.id, conn.addr);
        }
    }

    /// Sends `t` over TCP without waiting for the peer.
    ///
    /// A named connection (a binding's, a NAT-fixed Contact's) is used only
    /// while it still leads to the address: a closed one's id, or one from
    /// before a restart, may now be another peer's. Gone, the message
    /// fails (a device behind NAT takes no connection). A preferred one
    /// ([`crate::proxy::CONN_REUSE`]) is used while it leads to the same
    /// IP; gone, the address is reached as without an id. Without an id,
    /// any connection to the address will do, or one is opened.
    pub(super) fn send_tcp(self: &Rc<Self>, t: Transmit) {
        let by_addr = self.conn_by_addr.borrow().get(&t.peer.addr).copied();
        let preferred = t
            .peer
            .conn
            .filter(|id| id & crate::proxy::CONN_REUSE != 0)
            .map(|id| id & !crate::proxy::CONN_REUSE);
        let id = match (preferred, t.peer.conn) {
            (Some(id), _) => {
                let same_ip = self
                    .conns
                    .borrow()
                    .get(&id)
                    .is_some_and(|c| c.addr.ip() == t.peer.addr.ip());
                if same_ip {
                    Some(id)
                } else {
                    by_addr
                }
            }
            (None, Some(id)) if by_addr == Some(id) => Some(id),
            (None, Some(_)) => {
                tracing::debug!(worker = self.index, peer = %t.peer.addr, "TCP connection gone, message dropped");
                return self.send_failed(&t);
            }
            (None, None) => by_addr,
        };
        let conn = id.and_then(|id| self.conns.borrow().get(&id).cloned());
        if let Some(conn) = conn {
            return self.enqueue(&conn, t);
        }
        let addr = t.peer.addr;
        let mut connecting = self.connecting.borrow_mut();
        if let Some(waiting) = connecting.get_mut(&addr) {
            waiting.push(t);
            return;
        }
        connecting.insert(addr, vec![t]);
        drop(connecting);
        tokio_uring::spawn(connect(self.clone(), addr));
    }
}
