//! The routing decision (DOMAIN.md §3, §4.3): which rule decided, and where
//! the call goes.
//!
//! [`RoutingTable::decide`] takes the dialled number as `&str` and returns
//! a [`Decision`] borrowing names from the table: the hot path allocates
//! nothing (numbers live in inline [`E164`] buffers). The same `Decision`
//! serves the proxy (targets, status codes) and `tandem route` (its
//! `Display` is the one-line explanation of DOMAIN.md §3).

use std::fmt;

use crate::config::Policy;

use super::numbering::{Numbering, E164};
use super::table::{
    CarrierEntry, CarrierId, CompiledCompany, DdiTarget, FriendEntry, FriendId, RoutingTable,
    TargetId, UserEntry, UserId,
};

/// Who places the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A user, authenticated through its terminal.
    User(UserId),
    /// A friend, authenticated with its own credentials.
    Friend(FriendId),
    /// A carrier, recognised by source address (DDI calls).
    Carrier(CarrierId),
}

/// A user or friend that a call is routed to.
#[derive(Debug, Clone, Copy)]
pub enum Target<'t> {
    /// A user: ring its terminal's registered contacts.
    User(UserId, &'t UserEntry),
    /// A friend: its registered contacts or its direct address.
    Friend(FriendId, &'t FriendEntry),
}

impl<'t> Target<'t> {
    fn resolve(company: &'t CompiledCompany, id: TargetId) -> Target<'t> {
        match id {
            TargetId::User(u) => Target::User(u, company.user(u)),
            TargetId::Friend(f) => Target::Friend(f, company.friend(f)),
        }
    }
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::User(_, u) => write!(f, "user {}", u.name),
            Target::Friend(_, x) => write!(f, "friend {}", x.name),
        }
    }
}

/// What to do with a new call, and which rule decided.
#[derive(Debug, Clone, Copy)]
pub enum Decision<'t> {
    /// §3.1: the number is an extension of the caller's company.
    Extension {
        /// The extension dialled.
        number: &'t str,
        /// Where it leads.
        target: Target<'t>,
    },
    /// §3.2: the number fully matches a friend's pattern.
    Friend {
        /// The chosen friend.
        id: FriendId,
        /// Its entry.
        friend: &'t FriendEntry,
        /// The pattern that matched.
        pattern: &'t str,
    },
    /// §3.3: an external call through the company's carrier.
    External {
        /// The destination in E.164.
        number: E164,
        /// The carrier.
        carrier: &'t CarrierEntry,
        /// The presented identity (§4.3), for From and P-Asserted-Identity.
        presented: E164,
    },
    /// A carrier call to a DDI.
    Ddi {
        /// The DDI in E.164.
        number: E164,
        /// The company owning it.
        company: &'t CompiledCompany,
        /// The extension it goes through, if any.
        extension: Option<&'t str>,
        /// Where it leads.
        target: Target<'t>,
    },
    /// §3.3b: the caller's call ACL refused the destination (403).
    Denied {
        /// The ACL's name.
        acl: &'t str,
        /// 1-based index of the deciding rule; `None` for the default.
        rule: Option<usize>,
        /// The destination in E.164.
        number: E164,
    },
    /// A carrier call to a number that is no DDI (404).
    NotFound,
    /// The number cannot be normalised to E.164 (404).
    NotDialable,
    /// §4.3: no presented identity is available for an external call (403).
    NoIdentity,
}

impl Decision<'_> {
    /// The SIP status code to answer when the decision is a failure:
    /// 403 for an ACL denial or a missing identity, 404 for an unknown DDI
    /// or an undialable number; `None` when the call proceeds.
    pub fn status(&self) -> Option<u16> {
        match self {
            Decision::Denied { .. } | Decision::NoIdentity => Some(403),
            Decision::NotFound | Decision::NotDialable => Some(404),
            _ => None,
        }
    }

    /// True when the call proceeds.
    pub fn is_routed(&self) -> bool {
        self.status().is_none()
    }
}

/// The one-line forms of DOMAIN.md §3.
impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Extension { number, target } => write!(f, "extension {number} -> {target}"),
            Decision::Friend {
                friend, pattern, ..
            } => write!(
                f,
                "friend {} (pattern {pattern}, priority {})",
                friend.name, friend.priority
            ),
            Decision::External {
                number,
                carrier,
                presented,
            } => {
                write!(f, "external {number} via {} as {presented}", carrier.name)
            }
            Decision::Ddi {
                number,
                extension,
                target,
                ..
            } => match extension {
                Some(x) => write!(f, "ddi {number} -> extension {x} -> {target}"),
                None => write!(f, "ddi {number} -> {target}"),
            },
            Decision::Denied {
                acl, rule: Some(r), ..
            } => write!(f, "denied by acl {acl} (rule {r})"),
            Decision::Denied {
                acl, rule: None, ..
            } => write!(f, "denied by acl {acl} (default)"),
            Decision::NotFound => f.write_str("not found"),
            Decision::NotDialable => f.write_str("not dialable"),
            Decision::NoIdentity => f.write_str("no identity"),
        }
    }
}

impl RoutingTable {
    /// Decides where a new call goes.
    ///
    /// - `company`: the caller's company (found with [`RoutingTable::company`]);
    ///   for a carrier call, the company whose numbering normalises `dialled`
    ///   (DDIs themselves are looked up platform-wide).
    /// - `caller`: ids from this same table version (an unknown id gives
    ///   [`Decision::NotFound`]).
    /// - `dialled`: the Request-URI user part, unescaped.
    /// - `presented`: the caller's presented number (P-Asserted-Identity
    ///   user, else From user), for external calls (§4.3).
    pub fn decide<'t>(
        &'t self,
        company: &'t CompiledCompany,
        caller: &Caller,
        dialled: &str,
        presented: Option<&str>,
    ) -> Decision<'t> {
        // An id from another table version must not panic the proxy: it
        // finds nothing.
        let (numbering, acl, fallback) = match *caller {
            Caller::Carrier(id) => return self.decide_ddi(company, id, dialled),
            Caller::User(id) => match company.users.get(id.0 as usize) {
                Some(u) => (&company.numbering, u.call_acl, u.outgoing_ddi),
                None => return Decision::NotFound,
            },
            Caller::Friend(id) => match company.friends.get(id.0 as usize) {
                Some(f) => (&f.numbering, f.call_acl, f.fallback_outgoing_ddi),
                None => return Decision::NotFound,
            },
        };

        let me = match *caller {
            Caller::Friend(id) => Some(id),
            _ => None,
        };
        // §3.1: extensions always win, except one that leads back to the
        // calling friend (a friend is never routed back to itself: with a
        // PBX that starts a new call each time, that would loop); the
        // number then goes on to the friends' patterns and the carrier.
        if let Some((number, &id)) = company.extensions.get_key_value(dialled) {
            if me.map(TargetId::Friend) != Some(id) {
                return Decision::Extension {
                    number,
                    target: Target::resolve(company, id),
                };
            }
        }

        // §3.2: lowest-priority friend, never the caller itself.
        if let Some(p) = company
            .patterns
            .best_match(dialled.as_bytes(), |p| Some(company.owners[p].friend) != me)
        {
            let owner = &company.owners[p];
            return Decision::Friend {
                id: owner.friend,
                friend: company.friend(owner.friend),
                pattern: &owner.pattern,
            };
        }

        // §3.3: external.
        let Some(number) = numbering.to_e164(dialled) else {
            return Decision::NotDialable;
        };
        if let Some(acl) = acl {
            let acl = &company.acls[acl as usize];
            if let (Policy::Deny, rule) = acl.check(number.as_str()) {
                return Decision::Denied {
                    acl: &acl.name,
                    rule,
                    number,
                };
            }
        }
        match presented_identity(company, numbering, presented, fallback) {
            Some(presented) => Decision::External {
                number,
                carrier: &company.carrier,
                presented,
            },
            None => Decision::NoIdentity,
        }
    }

    /// A carrier's call: `dialled` normalised to E.164 and looked up among
    /// every company's DDIs. A number the carrier sends in national form
    /// is read with the numbering of `company` (the one the Request-URI's
    /// host names, else the first), then with that of each other company
    /// served by this carrier, in configuration order: the first reading
    /// that is a DDI wins. So a carrier serving a Spanish and a British
    /// company can send `944000100` and `02079460001` alike.
    fn decide_ddi<'t>(
        &'t self,
        company: &CompiledCompany,
        carrier: CarrierId,
        dialled: &str,
    ) -> Decision<'t> {
        // Each distinct numbering once (companies of one country share
        // one), and each distinct reading looked up once: an unknown number
        // costs a few readings, not one per company the carrier serves.
        let numberings = std::iter::once(&company.numbering).chain(
            self.carrier_numberings
                .of(carrier)
                .filter(|n| **n != company.numbering),
        );
        let mut first = None;
        let mut found = None;
        for numbering in numberings {
            let Some(number) = numbering.to_e164(dialled) else {
                continue;
            };
            if first == Some(number) {
                continue;
            }
            if let Some(owner) = self.ddi_owner(number.as_str()) {
                found = Some((number, owner));
                break;
            }
            first.get_or_insert(number);
        }
        let Some((number, owner)) = found else {
            return match first {
                Some(_) => Decision::NotFound,
                None => Decision::NotDialable,
            };
        };
        match owner.ddis.get(number.as_str()) {
            Some(DdiTarget::Direct(id)) => Decision::Ddi {
                number,
                company: owner,
                extension: None,
                target: Target::resolve(owner, *id),
            },
            Some(DdiTarget::Extension(x, id)) => Decision::Ddi {
                number,
                company: owner,
                extension: Some(x),
                target: Target::resolve(owner, *id),
            },
            None => Decision::NotFound,
        }
    }
}

/// §4.3: the caller's own number if it is a company DDI, else the caller's
/// fallback (friend `fallback_outgoing_ddi` / user `outgoing_ddi`), else the
/// company's `outgoing_ddi`.
fn presented_identity(
    company: &CompiledCompany,
    numbering: &Numbering,
    presented: Option<&str>,
    fallback: Option<E164>,
) -> Option<E164> {
    presented
        .and_then(|p| numbering.to_e164(p))
        .filter(|p| company.owns_ddi(p.as_str()))
        .or(fallback)
        .or(company.outgoing_ddi)
}

impl RoutingTable {
    /// Resolves a caller by name, as `tandem route --from` does:
    /// `carrier:NAME`, `user:NAME`, `friend:NAME`, or a bare name that is
    /// a user's or a friend's. A user and a friend may share a name (only
    /// terminals and friends share a namespace, DOMAIN.md §2): a bare name
    /// that is both resolves to neither, see [`RoutingTable::caller_is_ambiguous`].
    pub fn caller_by_name(&self, company: &CompiledCompany, name: &str) -> Option<Caller> {
        if let Some(carrier) = name.strip_prefix("carrier:") {
            return self.carrier_id(carrier).map(Caller::Carrier);
        }
        if let Some(user) = name.strip_prefix("user:") {
            return company.user_id(user).map(Caller::User);
        }
        if let Some(friend) = name.strip_prefix("friend:") {
            return company.friend_id(friend).map(Caller::Friend);
        }
        match (company.user_id(name), company.friend_id(name)) {
            (Some(u), None) => Some(Caller::User(u)),
            (None, Some(f)) => Some(Caller::Friend(f)),
            _ => None,
        }
    }

    /// Whether a bare `name` is both a user and a friend of `company`, so
    /// `caller_by_name` needs `user:` or `friend:` before it.
    pub fn caller_is_ambiguous(&self, company: &CompiledCompany, name: &str) -> bool {
        company.user_id(name).is_some() && company.friend_id(name).is_some()
    }
}
