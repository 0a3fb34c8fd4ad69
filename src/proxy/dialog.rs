//! The switch's place in a dialog: the Record-Route it writes, the dialog
//! token that proves a Route was issued here (and binds it to the dialog's
//! two parties), and recognising its own address in a Route or a
//! Request-URI.

use crate::sip::{HeaderName, Message, NameAddr, StatusCode, Uri};

use super::rewrite::DialogEdit;
use super::server::push_dec;
use super::{Peer, Proxy, Router, Transport};

impl Proxy {
    /// Whether `host:port` is this switch (its advertised host, on the
    /// listening port or this worker's own).
    pub(super) fn is_me(&self, host: &crate::sip::Host<'_>, port: Option<u16>) -> bool {
        let port = port.unwrap_or(5060);
        self.is_my_host(host) && self.is_my_port(port)
    }

    /// The port UDP peers reach the switch at: the shared listening one,
    /// else (no UDP listen address) this worker's own.
    pub(super) fn udp_port(&self) -> u16 {
        match self.cfg.listen_port {
            0 => self.cfg.worker_port,
            p => p,
        }
    }

    /// Whether `port` is one of this worker's: a listening one or its own.
    fn is_my_port(&self, port: u16) -> bool {
        port == self.cfg.listen_port
            || port == self.cfg.tcp_port
            || port == self.cfg.worker_port
            || self
                .cfg
                .alt
                .is_some_and(|a| port == a.udp_port || port == a.tcp_port)
    }

    /// The other family's address and ports, when `peer` is of it.
    fn alt_for(&self, peer: std::net::IpAddr) -> Option<(&str, super::AltFamily)> {
        let alt = self.cfg.alt?;
        (alt.host.is_ipv6() == peer.is_ipv6())
            .then(|| (self.alt_uri_host.as_deref().unwrap_or(""), alt))
    }

    /// The host (as a URI writes it) and port a peer at `peer` reaches
    /// this switch at over `transport`: in our Via (`via`: the worker's
    /// own UDP port) or in Record-Route (the shared listening one).
    pub(super) fn host_port(
        &self,
        transport: Transport,
        peer: std::net::IpAddr,
        via: bool,
    ) -> (&str, u16) {
        if let Some((host, alt)) = self.alt_for(peer) {
            // The workers' own sockets are the other family's: the
            // listening socket is the way in (for UDP, if that family
            // listens on UDP at all).
            match transport {
                Transport::Udp if alt.udp_port != 0 => return (host, alt.udp_port),
                Transport::Tcp => return (host, alt.tcp_port),
                Transport::Udp => {}
            }
        }
        let port = match (transport, via) {
            (Transport::Tcp, _) => self.cfg.tcp_port,
            (Transport::Udp, true) => self.cfg.worker_port,
            (Transport::Udp, false) => self.udp_port(),
        };
        (&self.uri_host, port)
    }

    /// Whether `host` is the host this switch writes in Via and Record-Route.
    pub(super) fn is_my_host(&self, host: &crate::sip::Host<'_>) -> bool {
        match host {
            crate::sip::Host::Domain(d) => {
                d.eq_ignore_ascii_case(self.cfg.advertised_host.as_bytes())
            }
            other => other.ip().is_some_and(|ip| {
                self.cfg.advertised_host.parse() == Ok(ip)
                    || self.cfg.alt.is_some_and(|a| a.host == ip)
            }),
        }
    }

    /// Checks our Route's token (`claimed`) against the in-dialog request
    /// and its next hop `peer` ([`Proxy::token_ok`]); answers 403 when it
    /// does not hold. On success the Route's rewriting parameters are kept
    /// for the forwarding (`route_dialog`). Nothing claimed: nothing to
    /// check (the callers have refused what needed a token already).
    pub(super) fn dialog_hop_ok(
        &mut self,
        msg: &Message,
        from: &Peer,
        claimed: Option<(Vec<u8>, DialogEdit)>,
        peer: Option<&Peer>,
        router: &dyn Router,
    ) -> bool {
        let Some((token, edit)) = claimed else {
            return true;
        };
        // No next hop: the caller answers that (404/400) itself.
        let Some(peer) = peer else { return true };
        if !self.token_ok(msg, &token, &edit, from, peer.addr.ip(), router) {
            self.reply(
                msg,
                *from,
                StatusCode::FORBIDDEN,
                "Route not issued by this switch",
                &[],
            );
            return false;
        }
        // Kept for the forwarding: the Route is parsed once.
        self.route_dialog = (!edit.is_empty()).then_some(edit);
        true
    }

    /// Our Record-Route for a request, with the dialog token. When the
    /// request leaves on another transport than it came (`out` vs
    /// `inbound`), two entries: the top one names the transport towards
    /// the callee, the other the caller's (RFC 5658 double
    /// Record-Route), so each side reaches the switch the way it spoke to
    /// it. Both carry the same parameters and token; an in-dialog request
    /// pops both.
    pub(super) fn record_route(
        &self,
        out: (Transport, std::net::IpAddr),
        inbound: (Transport, std::net::IpAddr),
        msg: &Message,
        edit: &DialogEdit,
        parties: &Parties,
    ) -> String {
        let params = edit.rr_params();
        let token = self.token_for(
            msg.header(HeaderName::CallId).unwrap_or(b""),
            msg.tag(HeaderName::From).unwrap_or(b""),
            &params,
            parties.caller(),
            parties.callee(),
        );
        let mut rr = String::with_capacity(2 * (64 + params.len() + token.len()));
        // One entry facing each side (RFC 5658): twice when the request
        // changes transport or address family.
        let side = |(t, ip): (Transport, std::net::IpAddr)| (t, self.host_port(t, ip, false));
        let (out, inbound) = (side(out), side(inbound));
        for (i, (transport, (host, port))) in [Some(out), (inbound != out).then_some(inbound)]
            .into_iter()
            .flatten()
            .enumerate()
        {
            if i > 0 {
                rr.push_str(", ");
            }
            rr.push_str("<sip:");
            rr.push_str(host);
            rr.push(':');
            push_dec(&mut rr, u64::from(port));
            if transport == Transport::Tcp {
                rr.push_str(";transport=tcp");
            }
            rr.push_str(";lr");
            rr.push_str(&params);
            rr.push_str(";tdm=");
            rr.push_str(&token);
            rr.push('>');
        }
        rr
    }

    /// Whether a Route value names this switch with dialog token `token`
    /// (our second Record-Route entry of the same dialog).
    pub(super) fn is_twin_route(&self, r: &[u8], token: &[u8]) -> bool {
        NameAddr::parse(r)
            .ok()
            .and_then(|a| a.decoded_uri().ok())
            .is_some_and(|u| {
                matches!(u, Uri::Sip(u) if self.is_me(&u.host, u.port)
                    && u.params.get(b"tdm").flatten() == Some(token))
            })
    }

    /// Whether the Request-URI names this switch.
    pub(super) fn request_uri_is_me(&self, msg: &Message) -> bool {
        msg.request_uri()
            .and_then(|v| Uri::decode(v).ok())
            .is_some_and(|u| matches!(u, Uri::Sip(u) if self.is_me(&u.host, u.port)))
    }

    /// Whether `token` is ours for this in-dialog request: issued for its
    /// Call-ID and the caller's tag, which is the From tag of requests
    /// from the caller's side and the To tag of the callee's.
    ///
    /// The token also names the dialog's two parties (who sent the request
    /// that created it, and where the switch sent it: [`Parties`]), so an
    /// in-dialog request only goes from one of them to the other. A
    /// request from the caller's side (its From tag is the caller's) comes
    /// from the caller and goes to the callee; one from the callee's side
    /// the other way. Without this, anyone holding a dialog's Route (its
    /// callee, say) could send "in-dialog" requests through the switch to
    /// any Request-URI: a relay past the digest gate, the call ACL and the
    /// identity rules.
    pub(super) fn token_ok(
        &self,
        msg: &Message,
        token: &[u8],
        edit: &DialogEdit,
        from: &Peer,
        next_hop: std::net::IpAddr,
        router: &dyn Router,
    ) -> bool {
        let call_id = msg.header(HeaderName::CallId).unwrap_or(b"");
        let params = edit.rr_params();
        let hop = Parties::of(router, from.addr.ip(), next_hop);
        let ok = |tag: HeaderName, caller: &[u8], callee: &[u8]| {
            self.token_for(
                call_id,
                msg.tag(tag).unwrap_or(b""),
                &params,
                caller,
                callee,
            )
            .as_bytes()
                == token
        };
        ok(HeaderName::From, hop.caller(), hop.callee())
            || ok(HeaderName::To, hop.callee(), hop.caller())
    }

    /// The token that proves a Route was written by this switch for this
    /// dialog: a keyed hash of the Call-ID, the caller's tag, the
    /// rewriting parameters (so none of them can be edited) and the
    /// dialog's two parties ([`Parties`]): HMAC-SHA-256
    /// truncated to 128 bits, keyed with a key derived from the switch's
    /// persisted secret (`data_dir/secret`), so calls survive a restart
    /// and an upgrade.
    pub(super) fn token_for(
        &self,
        call_id: &[u8],
        tag: &[u8],
        params: &str,
        caller: &[u8],
        callee: &[u8],
    ) -> String {
        use hmac::Mac;
        let mut mac = self.token_key.clone();
        for part in [call_id, tag, params.as_bytes(), caller, callee] {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        let out = mac.finalize().into_bytes();
        let mut t = String::with_capacity(32);
        for b in &out[..16] {
            t.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            t.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        t
    }

    /// Whether a next hop is this switch itself: forwarding there would
    /// loop (e.g. an ACK whose Request-URI names the switch).
    pub(super) fn targets_me(&self, peer: &Peer) -> bool {
        (self.cfg.advertised_host.parse() == Ok(peer.addr.ip())
            || self.cfg.alt.is_some_and(|a| a.host == peer.addr.ip()))
            && self.is_my_port(peer.addr.port())
    }
}

/// The two parties of a dialog as its token records them: who sent the
/// dialog-creating request and where the switch sent it, each as
/// [`Router::party`] names it (a configured carrier by name,
/// anyone else by address).
pub(super) struct Parties {
    bytes: Vec<u8>,
    split: usize,
}

impl Parties {
    pub(super) fn of(
        router: &dyn Router,
        caller: std::net::IpAddr,
        callee: std::net::IpAddr,
    ) -> Parties {
        let mut bytes = Vec::with_capacity(48);
        router.party(caller, &mut bytes);
        let split = bytes.len();
        router.party(callee, &mut bytes);
        Parties { bytes, split }
    }

    fn caller(&self) -> &[u8] {
        &self.bytes[..self.split]
    }

    fn callee(&self) -> &[u8] {
        &self.bytes[self.split..]
    }
}
