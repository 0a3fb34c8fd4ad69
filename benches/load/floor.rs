//! The floor of the load benchmarks: what moving the same datagrams costs
//! when nothing is parsed, checked, routed or stored.
//!
//! `benches/load/run.sh floor` and `benches/load/register.sh floor` run this
//! program where the switch would be, with the same SIPp scenarios, and
//! measure its CPU per call (per registration) the same way. Its I/O is the
//! switch's own (`tandem::shell::mmsg`: `recvmmsg`, `sendmmsg`, a batch
//! window between reads), on one thread, without the io_uring runtime; what
//! it does with a datagram is as little as the scenario lets it:
//!
//! - `relay LISTEN CALLEE`: every datagram from CALLEE goes to the last
//!   other address heard from (the caller), every other one to CALLEE,
//!   byte for byte. SIPp sends everything to the address on its command
//!   line and answers where a request came from, so calls complete. (The
//!   switch sends one datagram more per call, its 100 Trying.)
//! - `registrar LISTEN`: a REGISTER without `Authorization` is answered
//!   401 with a fixed MD5 challenge, one with it 200 with its Contact;
//!   Via, From, To, Call-ID and CSeq are copied as lines, nothing is
//!   verified and nothing stored.
//!
//! Whatever the switch costs above these figures is its own work; the
//! figures themselves are the kernel (loopback delivery into SIPp's
//! sockets, waking it, receiving) and the batching loop.
//!
//! Usage: `floor relay 127.0.0.1:5160 127.0.0.1:5170 [WINDOW_US]`,
//! `floor registrar 127.0.0.1:5360 [WINDOW_US]` (window 1,000 µs, as the
//! switch's default `server.batch_window_us`).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use tandem::shell::mmsg::{send_batch, RecvBatch};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: floor relay LISTEN CALLEE [WINDOW_US] | floor registrar LISTEN [WINDOW_US]";
    let addr = |i: usize| -> SocketAddr {
        args.get(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{usage}"))
    };
    let window_at = |i: usize| -> Duration {
        Duration::from_micros(args.get(i).map_or(1000, |s| s.parse().expect(usage)))
    };
    match args.first().map(String::as_str) {
        Some("relay") => {
            let callee = addr(2);
            let mut caller = None;
            serve(addr(1), window_at(3), |d, from, out| {
                let to = if from == callee {
                    match caller {
                        Some(c) => c,
                        None => return,
                    }
                } else {
                    caller = Some(from);
                    callee
                };
                out.push((to, d.to_vec()));
            })
        }
        Some("registrar") => {
            let mut nonce = 0u64;
            serve(addr(1), window_at(2), |d, from, out| {
                nonce += 1;
                if let Some(r) = answer_register(d, nonce) {
                    out.push((from, r));
                }
            })
        }
        _ => panic!("{usage}"),
    }
}

/// Receives what is queued (up to 8 × 32 datagrams), hands each to `each`,
/// sends what it produced in one `sendmmsg`, sleeps the window; waits in
/// `poll` only when nothing was queued. The switch's loop, without the
/// runtime.
fn serve(
    listen: SocketAddr,
    window: Duration,
    mut each: impl FnMut(&[u8], SocketAddr, &mut Vec<(SocketAddr, Vec<u8>)>),
) {
    let sock = UdpSocket::bind(listen).expect("bind");
    sock.set_nonblocking(true).expect("non-blocking");
    let fd = sock.as_raw_fd();
    let mut batch = RecvBatch::new(32, 65536);
    let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    loop {
        let mut taken = 0;
        for _ in 0..8 {
            let n = batch.recv(fd).unwrap_or(0);
            for i in 0..n {
                if let (d, Some(from)) = batch.get(i) {
                    each(d, from, &mut out);
                }
            }
            taken += n;
            if n < batch.capacity() {
                break;
            }
        }
        let mut sent = 0;
        while sent < out.len() {
            let msgs: Vec<(SocketAddr, &[u8])> =
                out[sent..].iter().map(|(a, d)| (*a, &d[..])).collect();
            match send_batch(fd, &msgs) {
                Ok(0) | Err(_) => break,
                Ok(n) => sent += n,
            }
        }
        out.clear();
        if taken == 0 {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, for the duration of the call.
            unsafe { libc::poll(&mut p, 1, -1) };
        } else if !window.is_zero() {
            std::thread::sleep(window);
        }
    }
}

/// 401 or 200 to a REGISTER, as described in the module doc; `None` for
/// anything else.
fn answer_register(d: &[u8], nonce: u64) -> Option<Vec<u8>> {
    if !d.starts_with(b"REGISTER ") {
        return None;
    }
    let mut authorized = false;
    let mut contact: &[u8] = b"";
    let mut copied = Vec::with_capacity(512);
    for line in d.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let name = line.split(|&b| b == b':').next().unwrap_or(b"");
        if name.eq_ignore_ascii_case(b"Authorization") {
            authorized = true;
        } else if name.eq_ignore_ascii_case(b"Contact") {
            contact = line;
        } else if [&b"Via"[..], b"From", b"Call-ID", b"CSeq"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
        {
            copied.extend_from_slice(line);
            copied.extend_from_slice(b"\r\n");
        } else if name.eq_ignore_ascii_case(b"To") {
            copied.extend_from_slice(line);
            copied.extend_from_slice(b";tag=floor\r\n");
        }
    }
    let mut r = Vec::with_capacity(copied.len() + 256);
    if authorized {
        r.extend_from_slice(b"SIP/2.0 200 OK\r\n");
        r.extend_from_slice(&copied);
        r.extend_from_slice(contact);
        r.extend_from_slice(b";expires=3600\r\n");
    } else {
        r.extend_from_slice(b"SIP/2.0 401 Unauthorized\r\n");
        r.extend_from_slice(&copied);
        r.extend_from_slice(
            format!(
                "WWW-Authenticate: Digest realm=\"acme.example.com\", nonce=\"{nonce:016x}\", \
                 algorithm=MD5, qop=\"auth\"\r\n"
            )
            .as_bytes(),
        );
    }
    r.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Some(r)
}
