//! Requests the switch answers itself or must let through first: the
//! digest gate in front of routing, REGISTER (the registrar), keep-alive
//! OPTIONS to bindings, and hand-over of responses between workers.
//!
//! Answers to requests that carried credentials are stateful: a
//! transaction with no branches holds the request, so a retransmitted
//! REGISTER or INVITE is absorbed (and the last answer repeated) instead of
//! being authenticated a second time, which the nonce-count replay check
//! would refuse. A challenge to a request without credentials is sent
//! statelessly: there is nothing to protect, and it is half of all the
//! traffic of a login.
//!
//! A REGISTER that changes bindings is answered only once its log record
//! is durable: the proxy queues a [`Persist`] with a [`Ticket`]; the shell
//! writes and syncs it and calls [`Proxy::persisted`], which sends the
//! `200 OK` (or a `500` if the write failed).

use std::time::Instant;

use crate::auth::{Attempt, Outcome};
use crate::registrar::{self, Binding, UpdateError};
use crate::sip::{response_to, HeaderName, Message, Method, NameAddr, StatusCode, Uri};

use super::{Claim, Peer, Persist, Proxy, Router, ServerState, Ticket, Transport, Tx};

/// What the digest gate decided.
pub(super) enum Gate {
    /// The request goes on to routing.
    Pass {
        /// Whether credentials of ours were consumed (and are removed
        /// before forwarding, RFC 3261 §22.3).
        authenticated: bool,
    },
    /// It was answered (challenge, rejection) or dropped.
    Done,
}

impl Proxy {
    /// Authenticates a new out-of-dialog request (RFC 3261 §22): carriers
    /// pass, accounts prove themselves, anything else is refused.
    pub(super) fn gate(
        &mut self,
        now: Instant,
        msg: Message,
        from: Peer,
        router: &dyn Router,
    ) -> (Gate, Option<Message>) {
        let Some(services) = self.services.clone() else {
            return (
                Gate::Pass {
                    authenticated: false,
                },
                Some(msg),
            );
        };
        let (realm, user, password) = match router.claim(&msg, &from, false) {
            Claim::Trusted => {
                return (
                    Gate::Pass {
                        authenticated: false,
                    },
                    Some(msg),
                )
            }
            Claim::Reject { status, reason } => {
                // Stateless, like every answer before authentication:
                // an unauthenticated sender gets no state kept for it.
                self.reply(&msg, from, status, &reason, &[]);
                return (Gate::Done, None);
            }
            Claim::Account {
                realm,
                user,
                password,
                ..
            } => (realm, user, password),
        };
        let outcome = check(&services, now, &msg, from, &realm, &user, password);
        match outcome {
            Outcome::Authenticated => (
                Gate::Pass {
                    authenticated: true,
                },
                Some(msg),
            ),
            Outcome::Banned => {
                self.stats.dropped += 1;
                (Gate::Done, None)
            }
            Outcome::Challenge { stale } => {
                self.challenge(now, &msg, from, &realm, stale, false);
                (Gate::Done, None)
            }
        }
    }

    /// RFC 3261 §10.3: authenticate, update the bindings, answer with the
    /// current ones once the change is durable.
    pub(super) fn register(
        &mut self,
        now: Instant,
        msg: Message,
        from: Peer,
        key: &[u8],
        router: &dyn Router,
    ) {
        let Some(services) = self.services.clone() else {
            return self.answer(
                now,
                msg,
                from,
                key,
                StatusCode::FORBIDDEN,
                "Registration not supported here",
                &[],
            );
        };
        if let Some(tags) = crate::sip::required_extensions(&msg) {
            // The registrar supports no extension (RFC 3261 §8.2.2.3).
            return self.answer(
                now,
                msg,
                from,
                key,
                StatusCode::BAD_EXTENSION,
                "Bad Extension",
                &[("Unsupported", &tags)],
            );
        }
        let (realm, user, password, registers) = match router.claim(&msg, &from, true) {
            Claim::Trusted => {
                return self.answer(
                    now,
                    msg,
                    from,
                    key,
                    StatusCode::FORBIDDEN,
                    "Carriers do not register",
                    &[],
                )
            }
            Claim::Reject { status, reason } => {
                return self.answer(now, msg, from, key, status, &reason, &[])
            }
            Claim::Account {
                realm,
                user,
                password,
                registers,
            } => (realm, user, password, registers),
        };
        let outcome = check(&services, now, &msg, from, &realm, &user, password);
        let unix = services.clock.unix(now);
        match outcome {
            Outcome::Authenticated => {}
            Outcome::Banned => {
                self.stats.dropped += 1;
                return;
            }
            Outcome::Challenge { stale } => {
                return self.challenge(now, &msg, from, &realm, stale, true);
            }
        }
        if !registers {
            return self.answer(
                now,
                msg,
                from,
                key,
                StatusCode::FORBIDDEN,
                "Direct friends do not register",
                &[],
            );
        }
        if !self.registers_here(&msg, &realm) {
            // RFC 3261 §10.3 steps 2 and 5: an AoR is registered through
            // its own domain (or the switch's name or address), not through
            // another's.
            return self.answer(
                now,
                msg,
                from,
                key,
                StatusCode::NOT_FOUND,
                "Not Found (the Request-URI names another domain)",
                &[],
            );
        }
        let aor = format!("{user}@{realm}");
        let update = registrar::request::decode(&msg, &aor, from, self.cfg.worker);
        let result = update.and_then(|u| services.registrar.update(unix, &u));
        match result {
            Err(UpdateError::IntervalTooBrief { min_expires }) => {
                let min = min_expires.to_string();
                self.answer(
                    now,
                    msg,
                    from,
                    key,
                    StatusCode(423),
                    "Interval Too Brief",
                    &[("Min-Expires", min.as_bytes())],
                )
            }
            Err(UpdateError::Invalid(reason)) => {
                self.answer(now, msg, from, key, StatusCode::BAD_REQUEST, reason, &[])
            }
            Err(UpdateError::TooManyContacts { max }) => {
                let reason = format!("Too many contacts (at most {max} per address of record)");
                self.answer(now, msg, from, key, StatusCode::FORBIDDEN, &reason, &[])
            }
            Err(UpdateError::OutOfOrder) => self.answer(
                now,
                msg,
                from,
                key,
                StatusCode::SERVER_INTERNAL_ERROR,
                "Out of order",
                &[],
            ),
            Ok(updated) => {
                let ok = registered(&msg, &updated.bindings, unix, &self.new_tag());
                match updated.record {
                    None => self.answer_with(now, msg, from, key, ok),
                    Some(record) => {
                        let ticket = self.hold(msg, from, key, ok);
                        // Should the log writer never answer, the waiting
                        // transaction still ends (64·T1), unanswered.
                        self.timers.schedule(
                            now + self.cfg.timers.t1x64(),
                            ticket.slot,
                            ticket.generation,
                            super::timer::TimerKind::ServerLinger,
                        );
                        self.persist.push_back(Persist { record, ticket });
                    }
                }
            }
        }
    }

    /// Whether a REGISTER's Request-URI may register an AoR of `realm`:
    /// it names that domain, this switch's advertised host, or an address
    /// (an IP literal that reached the switch is taken as one of its own:
    /// behind a NAT its public address is not configured anywhere).
    fn registers_here(&self, msg: &Message, realm: &str) -> bool {
        let Some(Ok(Uri::Sip(u))) = msg.request_uri().map(Uri::decode) else {
            return true;
        };
        match u.host {
            crate::sip::Host::Domain(d) => {
                d.eq_ignore_ascii_case(realm.as_bytes()) || self.is_my_host(&u.host)
            }
            _ => true,
        }
    }

    /// The shell made the record of `ticket` durable (`ok`) or failed to.
    /// Sends the waiting answer.
    pub fn persisted(&mut self, now: Instant, ticket: Ticket, ok: bool) {
        let live = self.generations.get(ticket.slot as usize) == Some(&ticket.generation);
        let Some(tx) = self.slots[ticket.slot as usize].as_mut().filter(|_| live) else {
            return;
        };
        if !ok {
            if let Some(req) = &tx.request {
                let r = response_to(
                    req,
                    StatusCode::SERVER_INTERNAL_ERROR,
                    "Registration not stored",
                    Some(tx.to_tag.as_bytes()),
                    &[],
                );
                tx.best = Some((StatusCode::SERVER_INTERNAL_ERROR, r));
            }
        }
        self.maybe_finish(now, ticket.slot);
    }

    /// Sends a keep-alive OPTIONS to a UDP binding behind NAT, from the
    /// shared socket whose pinhole it keeps open. Stateless: the answer (if
    /// any) matches no transaction and is dropped.
    pub fn keepalive(&mut self, binding: &Binding) {
        if binding.transport != Transport::Udp {
            return;
        }
        self.counter += 1;
        let (host, port) = self.host_port(Transport::Udp, binding.source.ip(), false);
        let tag = format!("{:x}{:x}", self.cfg.seed as u32, self.counter);
        let msg = format!(
            "OPTIONS {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-K{tag};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:keepalive@{host}>;tag={tag}\r\n\
             To: <{uri}>\r\n\
             Call-ID: ka{tag}@{host}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n",
            uri = binding
                .contact
                .split('?')
                .next()
                .unwrap_or(&binding.contact),
        );
        let peer = Peer {
            addr: binding.source,
            transport: Transport::Udp,
            conn: None,
        };
        self.send(peer, super::Source::Listen, msg.into_bytes());
    }

    /// The worker a branch of ours names, when it is not this one.
    pub(super) fn owner_of(&self, branch: &[u8]) -> Option<u16> {
        let workers = self.services.as_ref()?.workers;
        let rest = branch.strip_prefix(b"z9hG4bK-T")?;
        let rest = rest.get(9..)?; // 8 hex digits of the loop hash, '-'
        let end = rest.iter().position(|&c| c == b'-')?;
        let w = u16::from_str_radix(std::str::from_utf8(&rest[..end]).ok()?, 16).ok()?;
        (w < workers && w != self.cfg.worker).then_some(w)
    }

    /// A 401 (REGISTER) or 407 with one challenge per configured algorithm,
    /// answered statelessly (like Kamailio's `sl_send_reply`): nothing is
    /// kept for a sender that has not authenticated (RFC 3261 §26.3.2.4),
    /// so a flood of requests, with or without credentials, from one
    /// address or many, costs no memory. A retransmission gets a fresh
    /// challenge; the ACK of a 407 matches nothing and is dropped. Cost: a
    /// retransmitted request with wrong credentials counts as a second
    /// failure towards the ban.
    fn challenge(
        &mut self,
        now: Instant,
        msg: &Message,
        from: Peer,
        realm: &str,
        stale: bool,
        register: bool,
    ) {
        let services = self.services.as_ref().expect("gate");
        let scanner = msg
            .header(HeaderName::UserAgent)
            .is_some_and(crate::auth::is_scanner);
        let values = services.auth.challenges_to(
            services.clock.unix(now),
            realm,
            stale,
            from.addr.ip(),
            scanner,
        );
        let (status, reason, name) = if register {
            (StatusCode(401), "Unauthorized", "WWW-Authenticate")
        } else {
            (
                StatusCode(407),
                "Proxy Authentication Required",
                "Proxy-Authenticate",
            )
        };
        let extra: Vec<(&str, &[u8])> = values.iter().map(|v| (name, v.as_bytes())).collect();
        self.reply(msg, from, status, reason, &extra);
    }

    /// Answers `msg` with a final response, keeping a transaction that
    /// repeats it to retransmissions (and absorbs the ACK of an INVITE).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn answer(
        &mut self,
        now: Instant,
        msg: Message,
        from: Peer,
        key: &[u8],
        status: StatusCode,
        reason: &str,
        extra: &[(&str, &[u8])],
    ) {
        self.stats.rejected += 1;
        let tag = self.new_tag();
        let r = response_to(&msg, status, reason, Some(tag.as_bytes()), extra);
        self.answer_with(now, msg, from, key, (status, r, tag));
    }

    fn answer_with(
        &mut self,
        now: Instant,
        msg: Message,
        from: Peer,
        key: &[u8],
        answer: (StatusCode, Vec<u8>, String),
    ) {
        if self.live >= self.cfg.max_transactions {
            // No room to absorb retransmissions: answer statelessly.
            return self.send(from, super::Source::Listen, answer.1);
        }
        let ticket = self.hold(msg, from, key, answer);
        self.maybe_finish(now, ticket.slot);
    }

    /// A transaction with no branches whose answer waits in `best`.
    fn hold(
        &mut self,
        msg: Message,
        from: Peer,
        key: &[u8],
        (status, data, to_tag): (StatusCode, Vec<u8>, String),
    ) -> Ticket {
        let slot = self.alloc();
        let generation = self.generations[slot as usize];
        let invite = msg.method() == Some(Method::INVITE);
        self.server_index.insert(key.to_vec(), slot);
        self.slots[slot as usize] = Some(Box::new(Tx {
            generation,
            key: key.to_vec(),
            invite,
            upstream: from,
            request: Some(Box::new(msg)),
            state: ServerState::Proceeding,
            last_response: None,
            branches: Vec::new(),
            best: Some((status, data)),
            to_tag,
            g_interval: self.cfg.timers.t1,
            ack_key: None,
            cancelled: false,
        }));
        Ticket { slot, generation }
    }
}

/// Checks the credentials of `msg` (Authorization for a REGISTER,
/// Proxy-Authorization otherwise) for `user` in `realm`.
fn check(
    services: &super::Services,
    now: Instant,
    msg: &Message,
    from: Peer,
    realm: &str,
    user: &str,
    password: Option<&str>,
) -> Outcome {
    let method = msg.method().expect("request");
    let header = if method == Method::REGISTER {
        HeaderName::Authorization
    } else {
        HeaderName::ProxyAuthorization
    };
    let creds: Vec<&[u8]> = msg.headers(header).collect();
    services.auth.check(
        services.clock.unix(now),
        &Attempt {
            method: method.as_bytes(),
            request_uri: msg.request_uri().unwrap_or_default(),
            realm,
            user,
            credentials: &creds,
            source: from.addr.ip(),
        },
        |_| password,
    )
}

/// The most bytes of Contact values and of the REGISTER itself (which
/// bounds what the answer echoes) together: a 200 stays well within a
/// datagram.
const CONTACT_BYTES: usize = 60 * 1024;

/// The 200 OK of a REGISTER: the current bindings with their remaining
/// lifetimes (RFC 3261 §10.3 step 8).
fn registered(
    msg: &Message,
    bindings: &[Binding],
    unix: u64,
    tag: &str,
) -> (StatusCode, Vec<u8>, String) {
    let mut contacts = registrar::contact_values(bindings, unix);
    // A datagram holds at most 64 KiB: past the budget the remaining
    // contacts (the lowest q, listed last) are left out of the list, bound
    // all the same; silence would be worse.
    // The request's length bounds what the answer echoes of it.
    let budget = CONTACT_BYTES.saturating_sub(msg.buffer().len());
    let mut size = 0;
    if let Some(n) = contacts.iter().position(|c| {
        size += c.len() + 2;
        size > budget
    }) {
        contacts.truncate(n);
    }
    // One line per binding while they fit the header count a parser takes
    // (MAX_HEADERS, with the echoed Vias and the other lines); beyond it,
    // one comma-separated Contact (RFC 3261 §7.3.1, as §20.10 allows).
    let vias = msg.headers(HeaderName::Via).count();
    let joined;
    let contact_lines: Vec<&str> = if contacts.len() + vias + 8 <= crate::sip::MAX_HEADERS {
        contacts.iter().map(String::as_str).collect()
    } else {
        joined = contacts.join(", ");
        vec![joined.as_str()]
    };
    // RFC 3261 §10.3 step 8: a Date lets a phone without a clock set one.
    let date = crate::sip::sip_date(unix);
    let extra: Vec<(&str, &[u8])> = contact_lines
        .iter()
        .map(|c| ("Contact", c.as_bytes()))
        .chain([("Date", date.as_bytes())])
        .collect();
    let r = response_to(msg, StatusCode::OK, "OK", Some(tag.as_bytes()), &extra);
    (StatusCode::OK, r, tag.to_owned())
}

/// The `user@domain` of a name-addr header value, unescaped user.
///
/// Any host is accepted (an IP literal too, as scanners such as `svwar`
/// and `svcrack` write it): it names no company, so the claim is
/// challenged like an unknown account and its failures count towards a
/// ban. A missing user part is the empty name.
pub(super) fn user_host(v: &[u8]) -> Option<(String, String)> {
    let a = NameAddr::parse(v).ok()?;
    let Ok(Uri::Sip(u)) = a.parsed_uri() else {
        return None;
    };
    let user = String::from_utf8(crate::sip::unescape(u.user.unwrap_or(b"")).into_owned()).ok()?;
    let host = match u.host {
        crate::sip::Host::Domain(d) => std::str::from_utf8(d).ok()?.to_ascii_lowercase(),
        crate::sip::Host::V4(ip) => ip.to_string(),
        crate::sip::Host::V6(ip) => format!("[{ip}]"),
    };
    Some((user, host))
}
