//! Batched UDP: `recvmmsg(2)` and `sendmmsg(2)`, one system call for many
//! datagrams. The only `unsafe` code of the shell lives here.
//!
//! Under load a worker finds several datagrams queued on its sockets each
//! time it wakes, and produces several to send: one call for all of them
//! instead of one per datagram is most of what a batch saves.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Receive buffers for up to `n` datagrams of up to `slot` bytes each, and
/// the `mmsghdr`/`iovec` arrays that point into them, built once: a
/// receive allocates nothing. (The pointers target the heap blocks of the
/// vectors, which are never resized, so moving the struct keeps them
/// valid.)
pub struct RecvBatch {
    slot: usize,
    bufs: Vec<u8>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.lens.len())
            .field("slot", &self.slot)
            .finish()
    }
}

impl RecvBatch {
    /// Room for `n` datagrams of `slot` bytes.
    pub fn new(n: usize, slot: usize) -> RecvBatch {
        let mut b = RecvBatch {
            slot,
            bufs: vec![0; n * slot],
            lens: vec![0; n],
            // SAFETY: sockaddr_storage is plain old data; all zeroes is a
            // valid (unspecified-family) value.
            addrs: vec![unsafe { zeroed() }; n],
            iovs: Vec::with_capacity(n),
            hdrs: Vec::with_capacity(n),
        };
        let base = b.bufs.as_mut_ptr();
        for i in 0..n {
            b.iovs.push(libc::iovec {
                // SAFETY: i * slot + slot <= bufs.len(), so the pointer and
                // the slot after it stay inside `bufs`.
                iov_base: unsafe { base.add(i * slot) }.cast(),
                iov_len: slot,
            });
        }
        for i in 0..n {
            // SAFETY: msghdr and mmsghdr are plain old data; zeroed is valid.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_iov = &mut b.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            b.hdrs.push(h);
        }
        b
    }

    /// How many datagrams one call can receive.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Receives whatever is queued on `fd`, up to [`RecvBatch::capacity`]
    /// datagrams, without waiting: `Ok(0)` when nothing is.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.hdrs.len();
        for h in &mut self.hdrs {
            // The kernel wrote the previous call's lengths and flags here.
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        let hdrs = &mut self.hdrs;
        // SAFETY: every header points at an iovec and an address buffer
        // owned by `self` (`iovs`, `bufs`, `addrs`, never resized), with the
        // lengths given; the kernel writes only within them.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(0),
                _ => Err(e),
            };
        }
        let got = r as usize;
        for (i, h) in hdrs.iter().take(got).enumerate() {
            // A datagram longer than the slot is truncated (MSG_TRUNC in
            // msg_flags): report the whole slot, so a caller whose slots are
            // one byte over its message limit sees it is over.
            self.lens[i] = if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.slot
            } else {
                h.msg_len as usize
            };
        }
        Ok(got)
    }

    /// Datagram `i` of the last [`RecvBatch::recv`] and its source.
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        let start = i * self.slot;
        (
            &self.bufs[start..start + self.lens[i]],
            to_socket_addr(&self.addrs[i]),
        )
    }
}

fn to_socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for it.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Sends `msgs` (destination, payload) on `fd` in one call, without
/// waiting. Returns how many were sent, in order: fewer than `msgs.len()`
/// when the socket buffer filled up (the rest is the caller's to retry).
pub fn send_batch(fd: RawFd, msgs: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
    if msgs.is_empty() {
        return Ok(0);
    }
    let addrs: Vec<socket2::SockAddr> = msgs.iter().map(|(a, _)| (*a).into()).collect();
    let mut iovs: Vec<libc::iovec> = msgs
        .iter()
        .map(|(_, d)| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = Vec::with_capacity(msgs.len());
    for (iov, addr) in iovs.iter_mut().zip(&addrs) {
        // SAFETY: plain old data; zeroed is valid.
        let mut h: libc::mmsghdr = unsafe { zeroed() };
        h.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
        h.msg_hdr.msg_namelen = addr.len();
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
        hdrs.push(h);
    }
    // SAFETY: every header points at an address and an iovec (and through it
    // a payload) that outlive the call; the kernel only reads them (the
    // iovecs are `*mut` by the C signature alone).
    let r = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock => Ok(0),
            _ => Err(e),
        };
    }
    Ok(r as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_goes_out_and_comes_back_in_order() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = b.local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..5)
            .map(|i| format!("datagram {i}").into_bytes())
            .collect();
        let msgs: Vec<(SocketAddr, &[u8])> = payloads.iter().map(|p| (to, &p[..])).collect();
        assert_eq!(send_batch(a.as_raw_fd(), &msgs).unwrap(), 5);
        let mut batch = RecvBatch::new(4, 64);
        let mut got = Vec::new();
        for _ in 0..100 {
            let n = batch.recv(b.as_raw_fd()).unwrap();
            for i in 0..n {
                let (d, from) = batch.get(i);
                assert_eq!(from, Some(a.local_addr().unwrap()));
                got.push(d.to_vec());
            }
            if got.len() == 5 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got, payloads);
        assert_eq!(
            batch.recv(b.as_raw_fd()).unwrap(),
            0,
            "nothing left: no wait"
        );
    }

    #[test]
    fn an_oversized_datagram_is_reported_over_the_slot() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        a.send_to(&[b'x'; 100], b.local_addr().unwrap()).unwrap();
        let mut batch = RecvBatch::new(2, 32);
        let mut n = 0;
        for _ in 0..100 {
            n = batch.recv(b.as_raw_fd()).unwrap();
            if n > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(n, 1);
        assert_eq!(batch.get(0).0.len(), 32);
    }
}
