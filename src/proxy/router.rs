//! The routing table seen from the proxy: who is calling, what the
//! decision is, and which next hop and Request-URI it gives.
//!
//! Caller identification: a request from a carrier's source network is a
//! carrier call (DDI routing) and is not authenticated; any other request
//! names an account by its From `user@domain` (To for REGISTER): the domain
//! names the company (the digest realm), the user part a friend or a
//! terminal, and the proxy's digest gate ([`Router::claim`]) makes it prove
//! that before [`Router::route`] trusts the From.
//!
//! Users and register-mode friends are reached at their registered
//! bindings (parallel fork, from the shared socket the REGISTER reached so
//! NAT pinholes let the request in); none → `480`. Carrier calls
//! are normalised with the numbering of the company named by the
//! Request-URI host, else of the first company (DDIs are then looked up
//! platform-wide, so the choice only matters for non-E.164 numbers).
//!
//! Next hops are IP literals: Tandem does no DNS on the hot path, and a
//! direct friend or carrier configured by name gets `503` here.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use super::rewrite::ANONYMOUS_URI;
use super::{Claim, Peer, Rewrite, Router, Routing, Target, Transport};
use crate::config::values::Proto;
use crate::registrar::Registrar;
use crate::route::table::FriendConnection;
use crate::route::table::FriendEntry;
use crate::route::{AccountKind, E164};
use crate::route::{Caller, Decision, RoutingTable, Target as To};
use crate::sip::{escape_user, unescape, Codecs, HeaderName, Message, NameAddr, StatusCode, Uri};

/// A [`Router`] over one version of the routing table.
#[derive(Debug)]
pub struct TableRouter<'t> {
    table: &'t RoutingTable,
    registrar: Option<&'t Registrar>,
    unix: u64,
}

impl<'t> TableRouter<'t> {
    /// Routes with `table`; users and register friends are unreachable.
    pub fn new(table: &'t RoutingTable) -> Self {
        TableRouter {
            table,
            registrar: None,
            unix: 0,
        }
    }

    /// Routes with `table`, reaching users and register friends at their
    /// bindings in `registrar` that are live at Unix time `unix`.
    pub fn with_registrar(table: &'t RoutingTable, registrar: &'t Registrar, unix: u64) -> Self {
        TableRouter {
            table,
            registrar: Some(registrar),
            unix,
        }
    }

    /// Targets for the bindings of `name@domain`, the Request-URI user
    /// replaced by `user` when given; `480 Temporarily Unavailable` (the
    /// phrase DOMAIN.md §4.1 gives) when there are none.
    fn bindings(
        &self,
        name: &str,
        domain: &str,
        user: Option<&str>,
        rewrite: Option<Box<Rewrite>>,
    ) -> Routing {
        const UNAVAILABLE: &str = "Temporarily Unavailable";
        let Some(registrar) = self.registrar else {
            return reject(StatusCode::TEMPORARILY_UNAVAILABLE, UNAVAILABLE);
        };
        let aor = format!("{name}@{domain}");
        let targets: Vec<Target> = registrar.with_bindings(&aor, self.unix, |bs| {
            bs.iter()
                .filter(|b| b.expires > self.unix)
                .map(|b| Target {
                    peer: Peer {
                        addr: b.source,
                        transport: b.transport,
                        conn: b.conn,
                    },
                    request_uri: Some(match user {
                        Some(u) => with_user(request_uri_of(&b.contact), u),
                        None => request_uri_of(&b.contact).to_owned(),
                    }),
                    nat: true,
                    rewrite: rewrite.clone(),
                })
                .collect()
        });
        if targets.is_empty() {
            reject(StatusCode::TEMPORARILY_UNAVAILABLE, UNAVAILABLE)
        } else {
            Routing::Forward(targets)
        }
    }
}

/// A bound contact as a Request-URI: without its `?headers` part (RFC 3261
/// §19.1.5: headers are for building a request, never part of a
/// Request-URI; RFC 4475 `regescrt` binds one).
fn request_uri_of(contact: &str) -> &str {
    contact.split('?').next().unwrap_or(contact)
}

/// `contact` with its user part set to `user` (escaped): a friend's
/// registered contact receives the dialled number in its Request-URI.
fn with_user(contact: &str, user: &str) -> String {
    let user = escape_user(user.as_bytes());
    let (scheme, rest) = match contact.split_once(':') {
        Some((s, r)) if s.eq_ignore_ascii_case("sip") || s.eq_ignore_ascii_case("sips") => (s, r),
        _ => return contact.to_owned(),
    };
    let hostpart = match rest.split_once('@') {
        Some((_, h)) if !rest[..rest.find('@').unwrap_or(0)].contains([';', '?']) => h,
        _ => rest,
    };
    format!("{scheme}:{user}@{hostpart}")
}

/// Appends `a` as a URI's hostport (`192.0.2.1:5060`, `[2001:db8::1]:5060`),
/// an IPv4 address without the formatting machinery.
fn push_addr(out: &mut String, a: SocketAddr) {
    use crate::sip::scan::itoa;
    match a {
        SocketAddr::V4(v4) => {
            for (i, o) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(itoa(u64::from(o)).as_str());
            }
        }
        SocketAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "[{}]", v6.ip());
        }
    }
    out.push(':');
    out.push_str(itoa(u64::from(a.port())).as_str());
}

fn reject(status: StatusCode, reason: &'static str) -> Routing {
    Routing::Reject {
        status,
        reason: Cow::Borrowed(reason),
    }
}

fn peer(proto: Proto, host: &str, port: u16) -> Option<Peer> {
    let ip: IpAddr = host.parse().ok()?;
    Some(Peer {
        addr: SocketAddr::new(ip, port),
        transport: match proto {
            Proto::Udp => Transport::Udp,
            Proto::Tcp => Transport::Tcp,
        },
        conn: None,
    })
}

fn target(peer: Option<Peer>, user: &str, rewrite: Option<Box<Rewrite>>) -> Routing {
    // The dialled user was unescaped for routing; it goes back escaped.
    let user = escape_user(user.as_bytes());
    match peer {
        Some(p) => {
            let mut uri = String::with_capacity(user.len() + 32);
            uri.push_str("sip:");
            uri.push_str(&user);
            uri.push('@');
            push_addr(&mut uri, p.addr);
            let mut t = Target::new(p, Some(uri));
            t.rewrite = rewrite;
            Routing::Forward(vec![t])
        }
        None => reject(StatusCode::SERVICE_UNAVAILABLE, "Next hop not resolvable"),
    }
}

/// Both lists apply when both ends are friends with a filter.
fn intersect(a: Option<Codecs>, b: Option<Codecs>) -> Option<Codecs> {
    match (a, b) {
        (Some(a), Some(b)) => Some(
            a.iter()
                .filter(|x| b.iter().any(|y| y.eq_ignore_ascii_case(x)))
                .cloned()
                .collect(),
        ),
        (a, b) => a.or(b),
    }
}

/// The user part of a name-addr header value (of a validated request),
/// unescaped.
fn user_of(v: &[u8]) -> Option<String> {
    let a = NameAddr::parse(v).ok()?;
    let u = a.decoded_uri().ok()?.user()?;
    String::from_utf8(unescape(u).into_owned()).ok()
}

/// The friend of `company` that `req`'s Proxy-Authorization credentials
/// name (see [`crate::auth::digest_username`]), with its account.
fn friend_by_credentials<'c>(
    company: &'c crate::route::CompiledCompany,
    req: &Message,
) -> Option<(String, &'c crate::route::Account)> {
    let creds: Vec<&[u8]> = req.headers(HeaderName::ProxyAuthorization).collect();
    let name = crate::auth::digest_username(&creds, &company.domain)?;
    let account = company.account(&name)?;
    matches!(account.kind, AccountKind::Friend(_)).then_some((name, account))
}

impl TableRouter<'_> {
    /// Who the request says it is, as (user unescaped, domain lower-cased)
    /// of `header` (From; To for a REGISTER). An anonymous From (RFC 3323:
    /// `anonymous@anonymous.invalid`, as a PBX withholding its caller's
    /// number writes it) names no company: from a direct friend's address
    /// it is that friend, which then authenticates as itself (or, once its
    /// credentials name another account of that company, that account: a
    /// phone behind the office's NAT). Elsewhere the company is the one
    /// the request is addressed to ([`Self::addressed_company`]) and the
    /// caller the account its credentials name there.
    fn caller_of(
        &self,
        req: &Message,
        from: &Peer,
        header: HeaderName,
    ) -> Option<(String, String)> {
        let (user, domain) = req.header(header).and_then(super::local::user_host)?;
        if header != HeaderName::From
            || self.table.company(&domain).is_some()
            || !(user.eq_ignore_ascii_case("anonymous")
                || domain.eq_ignore_ascii_case("anonymous.invalid"))
        {
            return Some((user, domain));
        }
        let (domain, fallback) = match self.table.direct_friend_at(from.addr.ip()) {
            Some((domain, name)) => (domain, name),
            // Elsewhere (a phone, a register-mode friend) the company is
            // the one the request is addressed to: its Request-URI's host
            // (a phone dials `number@its-domain`), else its To's.
            None => match self.addressed_company(req) {
                Some(domain) => (domain, user.as_str()),
                None => return Some((user, domain)),
            },
        };
        // Who its credentials say, once it has answered the challenge (in
        // that company's realm): a phone behind the office's NAT, or any
        // terminal or friend of the company withholding its number. Until
        // then the friend at that address, or `anonymous` (no account:
        // challenged like any unknown name).
        let creds: Vec<&[u8]> = req.headers(HeaderName::ProxyAuthorization).collect();
        let user = crate::auth::digest_username(&creds, domain)
            .filter(|u| {
                self.table
                    .company(domain)
                    .is_some_and(|c| c.account(u).is_some())
            })
            .unwrap_or_else(|| fallback.to_owned());
        Some((user, domain.to_owned()))
    }

    /// The domain of the company `req` is addressed to: its Request-URI's
    /// host if that names one, else its To's.
    fn addressed_company(&self, req: &Message) -> Option<&str> {
        let by_uri = req
            .request_uri()
            .and_then(|v| Uri::decode(v).ok())
            .and_then(|u| match u.as_sip()?.host {
                crate::sip::Host::Domain(d) => std::str::from_utf8(d).ok().map(str::to_owned),
                _ => None,
            });
        let by_to = || {
            req.header(HeaderName::To)
                .and_then(super::local::user_host)
                .map(|(_, host)| host)
        };
        [by_uri, by_to()]
            .into_iter()
            .flatten()
            .find_map(|d| self.table.company(&d).map(|c| &*c.domain))
    }
}

impl Router for TableRouter<'_> {
    fn is_carrier(&self, from: &Peer) -> bool {
        self.table.carrier_for_source(from.addr.ip()).is_some()
    }

    fn is_carrier_hop(&self, to: &Peer) -> bool {
        self.table.is_carrier_address(to.addr.ip())
    }

    fn configured_tcp(&self, addr: std::net::SocketAddr) -> bool {
        self.table.configured_tcp(addr)
    }

    fn party(&self, ip: std::net::IpAddr, out: &mut Vec<u8>) {
        self.table.party(ip, out);
    }

    fn is_configured_peer(&self, ip: std::net::IpAddr) -> bool {
        self.table.is_configured_peer(ip)
    }

    fn claim(&self, req: &Message, from: &Peer, register: bool) -> Claim<'_> {
        if self.table.carrier_for_source(from.addr.ip()).is_some() {
            return Claim::Trusted;
        }
        let header = if register {
            HeaderName::To
        } else {
            HeaderName::From
        };
        let Some((user, domain)) = self.caller_of(req, from, header) else {
            if register {
                // RFC 4475 `unksm2`: a registrar answers a To that is no
                // SIP or SIPS address of record with 400.
                return Claim::Reject {
                    status: StatusCode::BAD_REQUEST,
                    reason: Cow::Borrowed("To is not a SIP or SIPS address of record"),
                };
            }
            return Claim::Reject {
                status: StatusCode::FORBIDDEN,
                reason: Cow::Borrowed("Unknown caller"),
            };
        };
        let Some(company) = self.table.company(&domain) else {
            return Claim::Account {
                realm: Cow::Owned(domain),
                user,
                password: None,
                registers: true,
            };
        };
        let mut account = company.account(&user);
        let mut user = user;
        if account.is_none() && !register {
            // A friend's PBX often writes the caller's number as From user
            // (Asterisk without `fromuser`) and authenticates as the
            // friend: the account is the friend its credentials name. Only
            // a friend, and only when the From user names no account, so
            // no one can speak as another account this way.
            if let Some((name, friend)) = friend_by_credentials(company, req) {
                user = name;
                account = Some(friend);
            }
        }
        let registers = match account.map(|a| a.kind) {
            Some(AccountKind::Friend(f)) => {
                matches!(company.friend(f).connection, FriendConnection::Register)
            }
            _ => true,
        };
        Claim::Account {
            realm: Cow::Borrowed(&company.domain),
            user,
            password: account.map(|a| &*a.password),
            registers,
        }
    }

    fn route(&self, req: &Message, uri: &Uri<'_>, from: &Peer) -> Routing {
        let t = self.table;
        let Some(dialled) = uri.user().map(unescape) else {
            return reject(StatusCode::NOT_FOUND, "No number dialled");
        };
        let Ok(dialled) = std::str::from_utf8(&dialled) else {
            return reject(StatusCode::NOT_FOUND, "Not Found");
        };
        // Read as RFC 3966 reads a telephone-subscriber: separators
        // dropped, a global phone-context prefixed.
        let tel_context = match uri {
            Uri::Tel(t) => t
                .params
                .get(b"phone-context")
                .flatten()
                .and_then(|v| std::str::from_utf8(v).ok()),
            _ => None,
        };
        let dialled = crate::route::dialled_number(dialled, tel_context);
        let dialled: &str = &dialled;
        let uri_host = uri.as_sip().and_then(|u| match u.host {
            crate::sip::Host::Domain(d) => std::str::from_utf8(d).ok(),
            _ => None,
        });

        let (company, caller) = if let Some(carrier) = t.carrier_for_source(from.addr.ip()) {
            let company = uri_host
                .and_then(|h| t.company(h))
                .or_else(|| t.companies().first());
            let Some(company) = company else {
                return reject(StatusCode::NOT_FOUND, "Not Found");
            };
            (company, Caller::Carrier(carrier))
        } else {
            // The same reading of the From as the digest gate's claim
            // (user unescaped, domain lower-cased).
            let Some((user, domain)) = self.caller_of(req, from, HeaderName::From) else {
                return reject(StatusCode::FORBIDDEN, "Unknown caller");
            };
            let (user, domain) = (user.as_str(), domain.as_str());
            let Some(company) = t.company(domain) else {
                return reject(StatusCode::FORBIDDEN, "Unknown company");
            };
            let caller = match (company.friend_id(user), company.user_by_terminal(user)) {
                (Some(f), _) => Caller::Friend(f),
                (None, Some(u)) => Caller::User(u),
                // The friend its credentials name (as the gate took it):
                // the From user is then the number it presents.
                (None, None) if company.account(user).is_none() => {
                    match friend_by_credentials(company, req)
                        .and_then(|(name, _)| company.friend_id(name.as_str()))
                    {
                        Some(f) => Caller::Friend(f),
                        None => return reject(StatusCode::FORBIDDEN, "Unknown caller"),
                    }
                }
                (None, None) => return reject(StatusCode::FORBIDDEN, "Unknown caller"),
            };
            (company, caller)
        };

        // A P-Asserted-Identity may hold a SIP and a tel URI, in one header
        // or two (RFC 3325 §9.1): the first that names a user.
        let presented = req
            .values(HeaderName::PAssertedIdentity)
            .find_map(|v| v.ok().and_then(user_of))
            .or_else(|| req.header(HeaderName::From).and_then(user_of));
        let decision = t.decide(company, &caller, dialled, presented.as_deref());
        let domain = &company.domain;
        // What the target sees (DOMAIN.md §4.4): a friend gets the caller's
        // number in its local format (a user's extension when it has one)
        // from its from_domain, and SDP filtered to its codecs (and to the
        // calling friend's, when the caller is a friend with a list).
        let caller_codecs = match caller {
            Caller::Friend(f) => company.friend(f).allowed_codecs.clone(),
            _ => None,
        };
        let from_user = req.header(HeaderName::From).and_then(user_of);
        // A caller that withholds its identity (RFC 3323/3325: `Privacy:
        // id`, `user` or `header`, or an anonymous From) keeps it withheld:
        // the carrier gets the number only in P-Asserted-Identity (with the
        // caller's Privacy, so it goes no further), a friend not at all.
        let anonymous = withholds_identity(req);
        // A carrier writes its caller's number in the format of the
        // country it calls into (`0034…`, `600…`): read with the numbering
        // of the company that owns the DDI.
        let carrier_numbering = match &decision {
            Decision::Ddi { company: owner, .. } => &owner.numbering,
            _ => &company.numbering,
        };
        let for_friend = |f: &FriendEntry| {
            // The caller's number: a user's extension; a friend's presented
            // number (its P-Asserted-Identity, else its From user: a
            // friend's From user is its name), read with its numbering;
            // a carrier's From user, read with the DDI's company's.
            let number = match caller {
                Caller::User(u) => company
                    .extension_of(u)
                    .map(str::to_owned)
                    .or_else(|| from_user.clone()),
                // A presented name rather than a number (the friend's own,
                // as its From user usually is) gives way to the friend's
                // number: its fallback DDI, else the company's.
                Caller::Friend(id) => {
                    let caller = company.friend(id);
                    let own = || {
                        caller
                            .fallback_outgoing_ddi
                            .as_ref()
                            .or(company.outgoing_ddi.as_ref())
                            .map(|e| e.as_str().to_owned())
                    };
                    let short_number =
                        |n: &str| n.bytes().all(|c| c.is_ascii_digit() || b"+*#".contains(&c));
                    match presented.as_deref() {
                        Some(n) => match caller.numbering.to_e164(n) {
                            Some(e) => Some(e.as_str().to_owned()),
                            // An extension of its PBX, as it is.
                            None if short_number(n) => Some(n.to_owned()),
                            None => own().or_else(|| Some(n.to_owned())),
                        },
                        None => own(),
                    }
                }
                // A carrier's caller: E.164 when its numbering reads it so,
                // else as it came.
                Caller::Carrier(_) => from_user.clone().map(|n| {
                    carrier_numbering
                        .to_e164(&n)
                        .map_or(n, |e| e.as_str().to_owned())
                }),
            };
            let local = number.map(|n| match E164::parse(&n) {
                Some(e) => f.numbering.to_local(e.as_str()).to_string(),
                None => n,
            });
            let from_uri = if anonymous {
                Some(ANONYMOUS_URI.to_owned())
            } else {
                local.map(|n| format!("sip:{}@{}", escape_user(n.as_bytes()), f.from_domain))
            };
            Some(Box::new(Rewrite {
                from_uri,
                pai: None,
                withhold: false,
                codecs: intersect(f.allowed_codecs.clone(), caller_codecs.clone()),
                friend: Some(f.name.to_string()),
            }))
        };
        let for_user = || {
            caller_codecs.clone().map(|c| {
                Box::new(Rewrite {
                    codecs: Some(c),
                    ..Rewrite::default()
                })
            })
        };
        // `domain`: the company of the target (a carrier's DDI may belong to
        // any company, not the one the Request-URI names).
        let to_target = |dest: &To<'_>, user: &str, domain: &str| match dest {
            To::User(_, u) => self.bindings(&u.terminal, domain, None, for_user()),
            To::Friend(_, f) => match &f.connection {
                FriendConnection::Register => {
                    self.bindings(&f.name, domain, Some(user), for_friend(f))
                }
                FriendConnection::Direct { proto, host, port } => {
                    target(peer(*proto, host, *port), user, for_friend(f))
                }
            },
        };
        match &decision {
            Decision::Extension { number, target } => to_target(target, number, domain),
            Decision::Friend { id, friend, .. } => {
                // A pattern may match an E.164 number (`\+34946[0-9]{6}`):
                // the friend gets it in its local format.
                let local = match E164::parse(dialled) {
                    Some(e) => friend.numbering.to_local(e.as_str()).to_string(),
                    None => dialled.to_owned(),
                };
                to_target(&To::Friend(*id, friend), &local, domain)
            }
            Decision::Ddi {
                number,
                target,
                company: owner,
                ..
            } => {
                let local = match target {
                    To::Friend(_, f) => f.numbering.to_local(number.as_str()).to_string(),
                    To::User(..) => number.to_string(),
                };
                to_target(target, &local, &owner.domain)
            }
            Decision::External {
                number,
                carrier,
                presented,
            } => {
                // §4.3: the presented identity in From and PAI; nothing the
                // caller presented reaches the carrier otherwise.
                let identity = format!("sip:{}@{}", presented.as_str(), company.domain);
                let rewrite = Rewrite {
                    from_uri: Some(if anonymous {
                        ANONYMOUS_URI.to_owned()
                    } else {
                        identity.clone()
                    }),
                    pai: Some(identity),
                    withhold: anonymous,
                    codecs: caller_codecs.clone(),
                    friend: None,
                };
                target(
                    peer(carrier.proto, &carrier.host, carrier.port),
                    number.as_str(),
                    Some(Box::new(rewrite)),
                )
            }
            Decision::Denied { .. } => reject(StatusCode::FORBIDDEN, "Forbidden by call ACL"),
            Decision::NoIdentity => reject(StatusCode::FORBIDDEN, "No outgoing identity"),
            Decision::NotFound => reject(StatusCode::NOT_FOUND, "Not Found"),
            Decision::NotDialable => reject(StatusCode::NOT_FOUND, "Not dialable"),
        }
    }
}

/// Whether the caller asks for its identity to be withheld: a `Privacy`
/// of `id`, `user` or `header` (RFC 3323, RFC 3325 §7), or a From that is
/// already anonymous (user `anonymous`, or the `anonymous.invalid` host).
fn withholds_identity(req: &Message) -> bool {
    super::asks_privacy(req, &[b"id", b"user", b"header"])
        || req
            .header(HeaderName::From)
            // A scan, not a second parse of every From: only one that
            // says `anonymous` somewhere is decoded.
            .filter(|v| v.windows(9).any(|w| w.eq_ignore_ascii_case(b"anonymous")))
            .and_then(|v| NameAddr::parse(v).ok())
            .and_then(|a| match a.decoded_uri().ok()? {
                Uri::Sip(u) => Some(
                    u.user.is_some_and(|n| n.eq_ignore_ascii_case(b"anonymous"))
                        || matches!(u.host, crate::sip::Host::Domain(d)
                            if d.eq_ignore_ascii_case(b"anonymous.invalid")),
                ),
                _ => None,
            })
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for a in [
            "192.0.2.1:5060",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[2001:db8::1]:5061",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            let mut out = String::new();
            push_addr(&mut out, a);
            assert_eq!(out, a.to_string());
        }
    }
}
