//! The compiled routing table: immutable, shared across threads in an `Arc`.
//!
//! A [`RoutingTable`] holds one [`CompiledCompany`] per company (each in its
//! own `Arc`, so a reload can reuse the unchanged ones), an index of
//! companies by domain, the platform-wide DDI map and the carriers. The
//! decision itself lives in `route::decide`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::config::validate::{company_place, validate_company, validate_global};
use crate::config::values::{self, Cidr, Proto};
use crate::config::{self, Config, ConfigErrors, ErrorKind, Policy};

use super::index::{ddi_key, StrIndex};
use super::matcher::{MatcherError, PatternSet, DEFAULT_SIZE_LIMIT};
use super::numbering::{Numbering, E164};

/// Index of a user within its company.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(pub u32);

/// Index of a friend within its company.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FriendId(pub u32);

/// Index of a carrier within the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CarrierId(pub u32);

/// A carrier: where external calls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierEntry {
    /// Configured name.
    pub name: Box<str>,
    /// Transport of `address`.
    pub proto: Proto,
    /// Host (IP or DNS name) of `address`.
    pub host: Box<str>,
    /// Port of `address`.
    pub port: u16,
}

impl CarrierEntry {
    fn compile(c: &config::Carrier) -> CarrierEntry {
        let (proto, host, port) =
            values::parse_address(&c.address).unwrap_or((Proto::Udp, String::new(), 0));
        CarrierEntry {
            name: c.name.as_str().into(),
            proto,
            host: host.into(),
            port,
        }
    }
}

/// A compiled user.
#[derive(Debug, Clone)]
pub struct UserEntry {
    /// Configured name.
    pub name: Box<str>,
    /// The user's terminal (its registrations are the user's contacts).
    pub terminal: Box<str>,
    /// Index into the company's ACLs.
    pub call_acl: Option<u32>,
    /// Presented number when the caller's own is not a company DDI.
    pub outgoing_ddi: Option<E164>,
}

/// How the switch reaches a friend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FriendConnection {
    /// Calls go to the friend's registered contacts.
    Register,
    /// Calls go to this address.
    Direct {
        /// Transport (default UDP).
        proto: Proto,
        /// IP address (validation refuses names).
        host: Box<str>,
        /// Port (default 5060).
        port: u16,
    },
}

/// A compiled friend.
#[derive(Debug, Clone)]
pub struct FriendEntry {
    /// Configured name (also its digest username).
    pub name: Box<str>,
    /// Lower wins among matching friends.
    pub priority: u32,
    /// How calls reach it.
    pub connection: FriendConnection,
    /// Index into the company's ACLs.
    pub call_acl: Option<u32>,
    /// Presented number when the friend's own is not a company DDI.
    pub fallback_outgoing_ddi: Option<E164>,
    /// The friend's numbering (company settings with its overrides).
    pub numbering: Numbering,
    /// SDP encoding names kept in offers, or `None` for no filtering.
    pub allowed_codecs: Option<crate::sip::Codecs>,
    /// From host on requests to the friend.
    pub from_domain: Box<str>,
}

/// Where an extension or DDI leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetId {
    /// A user (its terminal's registrations).
    User(UserId),
    /// A friend.
    Friend(FriendId),
}

/// Where a DDI leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DdiTarget {
    /// Straight to a user or friend.
    Direct(TargetId),
    /// Through an extension (named, for explanations).
    Extension(Box<str>, TargetId),
}

/// A compiled call ACL.
#[derive(Debug, Clone)]
pub struct CompiledAcl {
    /// Configured name.
    pub name: Box<str>,
    /// Policy when no rule matches.
    pub default: Policy,
    /// Policy of each rule, in order.
    pub rules: Vec<Policy>,
    /// The rules' patterns; pattern ID = rule index, so the lowest ID is the
    /// first matching rule.
    pub(crate) set: PatternSet,
}

impl CompiledAcl {
    /// The verdict for an E.164 destination: the policy and the 1-based
    /// index of the rule that decided (`None` for the default).
    pub fn check(&self, e164: &str) -> (Policy, Option<usize>) {
        match self.set.best_match(e164.as_bytes(), |_| true) {
            Some(i) => (self.rules[i], Some(i + 1)),
            None => (self.default, None),
        }
    }
}

/// Which friend and pattern a friend-pattern ID of the company's DFA is.
#[derive(Debug, Clone)]
pub(crate) struct PatternOwner {
    pub(crate) friend: FriendId,
    pub(crate) pattern: Box<str>,
}

/// A digest account of a company: a terminal or a friend.
#[derive(Debug, Clone)]
pub struct Account {
    /// The configured password.
    pub password: Box<str>,
    /// Who authenticates with it.
    pub kind: AccountKind,
}

/// What a digest account stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// A terminal, and the user that owns it (if any).
    Terminal(Option<UserId>),
    /// A friend.
    Friend(FriendId),
}

/// One company, compiled. Immutable; shared by `Arc` between table versions
/// while its configuration does not change.
#[derive(Debug)]
pub struct CompiledCompany {
    /// Configured name.
    pub name: Box<str>,
    /// SIP domain (lower case).
    pub domain: Box<str>,
    /// The company's numbering (users call with it).
    pub numbering: Numbering,
    /// Default presented number for external calls.
    pub outgoing_ddi: Option<E164>,
    /// The company's carrier (a copy: a carrier change recompiles the company).
    pub carrier: CarrierEntry,
    /// Users, by [`UserId`].
    pub users: Vec<UserEntry>,
    /// Friends, by [`FriendId`].
    pub friends: Vec<FriendEntry>,
    /// Call ACLs.
    pub acls: Vec<CompiledAcl>,
    pub(crate) user_by_name: FxHashMap<Box<str>, UserId>,
    pub(crate) user_by_terminal: FxHashMap<Box<str>, UserId>,
    pub(crate) friend_by_name: FxHashMap<Box<str>, FriendId>,
    /// Digest accounts: terminal and friend names (one namespace) and
    /// their passwords.
    pub(crate) accounts: FxHashMap<Box<str>, Account>,
    /// Each user's first extension, by [`UserId`] (the number a friend
    /// sees when the user calls it).
    pub(crate) user_extension: Vec<Option<Box<str>>>,
    pub(crate) extensions: FxHashMap<Box<str>, TargetId>,
    pub(crate) ddis: FxHashMap<Box<str>, DdiTarget>,
    /// All friends' patterns, ordered by (priority, friend, pattern index):
    /// the lowest matching pattern ID is the best friend.
    pub(crate) patterns: PatternSet,
    pub(crate) owners: Vec<PatternOwner>,
    /// The configuration this was compiled from, to detect changes on reload.
    pub(crate) source: config::Company,
    pub(crate) source_carrier: Option<config::Carrier>,
}

impl CompiledCompany {
    /// Compiles one validated company; `carrier` is the carrier it names.
    /// Fails only when a pattern set exceeds `size_limit`.
    pub fn compile(
        c: &config::Company,
        carrier: Option<&config::Carrier>,
        size_limit: usize,
    ) -> Result<CompiledCompany, ConfigErrors> {
        let place = company_place(c);
        let mut errors = ConfigErrors::new();
        let numbering = Numbering::new(
            &c.country_code,
            c.area_code.as_deref(),
            &c.international_prefix,
            &c.trunk_prefix,
            c.national_length,
        );
        let acl_index: HashMap<&str, u32> = c
            .call_acl
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.as_str(), i as u32))
            .collect();
        let acl_of =
            |name: &Option<String>| name.as_deref().and_then(|n| acl_index.get(n).copied());
        let e164 = |v: &Option<String>| v.as_deref().and_then(E164::parse);

        let users: Vec<UserEntry> = c
            .user
            .iter()
            .map(|u| UserEntry {
                name: u.name.as_str().into(),
                terminal: u.terminal.as_str().into(),
                call_acl: acl_of(&u.call_acl),
                outgoing_ddi: e164(&u.outgoing_ddi),
            })
            .collect();
        let friends: Vec<FriendEntry> = c
            .friend
            .iter()
            .map(|f| FriendEntry {
                name: f.name.as_str().into(),
                priority: f.priority,
                connection: match f.connection {
                    config::Connection::Register => FriendConnection::Register,
                    config::Connection::Direct => FriendConnection::Direct {
                        proto: match f.transport {
                            Some(config::Transport::Tcp) => Proto::Tcp,
                            _ => Proto::Udp,
                        },
                        host: f.address.as_deref().unwrap_or_default().into(),
                        port: f.port.unwrap_or(5060),
                    },
                },
                call_acl: acl_of(&f.call_acl),
                fallback_outgoing_ddi: e164(&f.fallback_outgoing_ddi),
                numbering: Numbering::new(
                    f.country_code.as_deref().unwrap_or(&c.country_code),
                    f.area_code.as_deref().or(c.area_code.as_deref()),
                    f.international_prefix
                        .as_deref()
                        .unwrap_or(&c.international_prefix),
                    f.trunk_prefix.as_deref().unwrap_or(&c.trunk_prefix),
                    f.national_length.unwrap_or(c.national_length),
                ),
                allowed_codecs: f
                    .allowed_codecs
                    .as_ref()
                    .map(|v| v.iter().map(|s| Box::from(s.as_str())).collect()),
                from_domain: f.from_domain.as_deref().unwrap_or(&c.domain).into(),
            })
            .collect();

        let user_by_name: FxHashMap<Box<str>, UserId> = users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.name.clone(), UserId(i as u32)))
            .collect();
        let user_by_terminal: FxHashMap<Box<str>, UserId> = users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.terminal.clone(), UserId(i as u32)))
            .collect();
        let friend_by_name: FxHashMap<Box<str>, FriendId> = friends
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), FriendId(i as u32)))
            .collect();
        let accounts: FxHashMap<Box<str>, Account> = c
            .terminal
            .iter()
            .map(|t| {
                let a = Account {
                    password: t.password.as_str().into(),
                    kind: AccountKind::Terminal(user_by_terminal.get(t.name.as_str()).copied()),
                };
                (t.name.as_str().into(), a)
            })
            .chain(c.friend.iter().map(|f| {
                let a = Account {
                    password: f.password.as_str().into(),
                    kind: AccountKind::Friend(friend_by_name[f.name.as_str()]),
                };
                (f.name.as_str().into(), a)
            }))
            .collect();
        let mut user_extension: Vec<Option<Box<str>>> = vec![None; users.len()];
        for e in &c.extension {
            if let Some(&UserId(u)) = e.user.as_deref().and_then(|u| user_by_name.get(u)) {
                user_extension[u as usize].get_or_insert_with(|| e.number.as_str().into());
            }
        }
        let target = |user: &Option<String>, friend: &Option<String>| match (user, friend) {
            (Some(u), _) => user_by_name.get(u.as_str()).map(|&id| TargetId::User(id)),
            (None, Some(f)) => friend_by_name
                .get(f.as_str())
                .map(|&id| TargetId::Friend(id)),
            (None, None) => None,
        };
        let extensions: FxHashMap<Box<str>, TargetId> = c
            .extension
            .iter()
            .filter_map(|e| Some((e.number.as_str().into(), target(&e.user, &e.friend)?)))
            .collect();
        let ddis = c
            .ddi
            .iter()
            .filter_map(|d| {
                let t = match &d.extension {
                    Some(x) => {
                        DdiTarget::Extension(x.as_str().into(), *extensions.get(x.as_str())?)
                    }
                    None => DdiTarget::Direct(target(&d.user, &d.friend)?),
                };
                Some((d.number.as_str().into(), t))
            })
            .collect();

        // Pattern IDs in (priority, friend, index) order: the lowest matching
        // ID is the answer, skipping the caller's own patterns.
        let mut order: Vec<(u32, usize, usize)> = Vec::new();
        for (fi, f) in c.friend.iter().enumerate() {
            order.extend((0..f.patterns.len()).map(|pi| (f.priority, fi, pi)));
        }
        order.sort_unstable();
        let owners: Vec<PatternOwner> = order
            .iter()
            .map(|&(_, fi, pi)| PatternOwner {
                friend: FriendId(fi as u32),
                pattern: c.friend[fi].patterns[pi].as_str().into(),
            })
            .collect();
        let texts: Vec<&str> = owners.iter().map(|o| &*o.pattern).collect();
        let patterns = match PatternSet::build(&texts, size_limit) {
            Ok(set) => set,
            Err(e) => {
                errors.push(place.field("friend"), matcher_error(e));
                PatternSet::empty()
            }
        };

        let mut acls = Vec::with_capacity(c.call_acl.len());
        for acl in &c.call_acl {
            let (rules, texts): (Vec<Policy>, Vec<&str>) =
                acl.rules.iter().filter_map(|r| r.policy()).unzip();
            let set = match PatternSet::build(&texts, size_limit) {
                Ok(set) => set,
                Err(e) => {
                    errors.push(place.field("call_acl").named(&acl.name), matcher_error(e));
                    PatternSet::empty()
                }
            };
            acls.push(CompiledAcl {
                name: acl.name.as_str().into(),
                default: acl.default,
                rules,
                set,
            });
        }

        errors.into_result(CompiledCompany {
            name: c.name.as_str().into(),
            domain: c.domain.to_ascii_lowercase().into(),
            numbering,
            outgoing_ddi: e164(&c.outgoing_ddi),
            carrier: carrier.map(CarrierEntry::compile).unwrap_or(CarrierEntry {
                name: "".into(),
                proto: Proto::Udp,
                host: "".into(),
                port: 0,
            }),
            users,
            friends,
            acls,
            user_by_name,
            user_by_terminal,
            friend_by_name,
            accounts,
            user_extension,
            extensions,
            ddis,
            patterns,
            owners,
            source: c.clone(),
            source_carrier: carrier.cloned(),
        })
    }

    /// The user called `name`.
    pub fn user_id(&self, name: &str) -> Option<UserId> {
        self.user_by_name.get(name).copied()
    }

    /// The user whose terminal is `terminal` (after digest authentication).
    pub fn user_by_terminal(&self, terminal: &str) -> Option<UserId> {
        self.user_by_terminal.get(terminal).copied()
    }

    /// The digest account (terminal or friend) called `name`.
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.get(name)
    }

    /// The user's first extension, if it has one.
    pub fn extension_of(&self, user: UserId) -> Option<&str> {
        self.user_extension.get(user.0 as usize)?.as_deref()
    }

    /// The friend called `name`.
    pub fn friend_id(&self, name: &str) -> Option<FriendId> {
        self.friend_by_name.get(name).copied()
    }

    /// The user with this id. Panics if the id is not of this company.
    pub fn user(&self, id: UserId) -> &UserEntry {
        &self.users[id.0 as usize]
    }

    /// The friend with this id. Panics if the id is not of this company.
    pub fn friend(&self, id: FriendId) -> &FriendEntry {
        &self.friends[id.0 as usize]
    }

    /// True when `e164` is one of this company's DDIs.
    pub fn owns_ddi(&self, e164: &str) -> bool {
        self.ddis.contains_key(e164)
    }

    /// Number of friend patterns compiled.
    pub fn pattern_count(&self) -> usize {
        self.owners.len()
    }

    /// Heap bytes of the company's pattern matchers (tries and DFAs of
    /// friend patterns and ACLs).
    pub fn pattern_memory(&self) -> usize {
        self.patterns.memory_usage()
            + self
                .acls
                .iter()
                .map(|a| a.set.memory_usage())
                .sum::<usize>()
    }

    /// True when this was compiled from exactly `company` and `carrier`.
    pub(crate) fn compiled_from(
        &self,
        company: &config::Company,
        carrier: Option<&config::Carrier>,
    ) -> bool {
        self.source == *company && self.source_carrier.as_ref() == carrier
    }
}

/// `items.iter().map(f)` on up to `threads` scoped threads, in order.
fn par_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if threads <= 1 || items.len() < 2 {
        return items.iter().map(f).collect();
    }
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(items.len().div_ceil(threads))
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

fn matcher_error(e: MatcherError) -> ErrorKind {
    match e {
        MatcherError::TooLarge(m) => ErrorKind::TooLarge(m),
        MatcherError::Pattern(m) => ErrorKind::Regex(m),
    }
}

/// Build options.
#[derive(Debug, Clone, Copy)]
pub struct BuildOptions {
    /// Cap, in bytes, on each compiled DFA and its construction.
    pub size_limit: usize,
    /// Threads used to compile companies (1 = on the calling thread).
    pub threads: usize,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            size_limit: DEFAULT_SIZE_LIMIT,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// For each carrier (by [`CarrierId`]), the distinct numberings of the
/// companies it serves, each with how many companies use it, so adding or
/// removing one company updates it without a pass over all of them.
#[derive(Debug, Clone, Default)]
pub(crate) struct CarrierNumberings(Vec<Vec<(Numbering, u32)>>);

impl CarrierNumberings {
    pub(crate) fn build(carriers: &[CarrierEntry], companies: &[Arc<CompiledCompany>]) -> Self {
        let mut all = CarrierNumberings(vec![Vec::new(); carriers.len()]);
        for c in companies {
            all.add(carriers, c);
        }
        all
    }

    /// The carrier's distinct numberings, in the order companies added them.
    pub(crate) fn of(&self, carrier: CarrierId) -> impl Iterator<Item = &Numbering> {
        self.0
            .get(carrier.0 as usize)
            .into_iter()
            .flatten()
            .map(|(n, _)| n)
    }

    fn slot(carriers: &[CarrierEntry], company: &CompiledCompany) -> Option<usize> {
        // Carriers are few; companies may be many.
        carriers.iter().position(|k| k.name == company.carrier.name)
    }

    pub(crate) fn add(&mut self, carriers: &[CarrierEntry], company: &CompiledCompany) {
        let Some(list) = Self::slot(carriers, company).and_then(|i| self.0.get_mut(i)) else {
            return;
        };
        match list.iter_mut().find(|(n, _)| *n == company.numbering) {
            Some((_, count)) => *count += 1,
            None => list.push((company.numbering.clone(), 1)),
        }
    }

    pub(crate) fn remove(&mut self, carriers: &[CarrierEntry], company: &CompiledCompany) {
        let Some(list) = Self::slot(carriers, company).and_then(|i| self.0.get_mut(i)) else {
            return;
        };
        if let Some(at) = list.iter().position(|(n, _)| *n == company.numbering) {
            list[at].1 -= 1;
            if list[at].1 == 0 {
                list.remove(at);
            }
        }
    }
}

/// The whole compiled routing table. Immutable; publish it with
/// `route::Publisher` and share it with `Arc`. Cloning it is shallow:
/// companies are shared, indexes are flat integer tables.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    pub(crate) companies: Vec<Arc<CompiledCompany>>,
    pub(crate) by_domain: StrIndex,
    pub(crate) by_name: StrIndex,
    /// DDI (packed by `index::ddi_key`) → owning company index.
    pub(crate) ddis: FxHashMap<u64, u32>,
    pub(crate) carriers: Vec<CarrierEntry>,
    /// Per carrier (by [`CarrierId`]), the distinct numberings of the
    /// companies it serves: a national number from the carrier is read
    /// with each of these, not once per company (see `decide_ddi`).
    pub(crate) carrier_numberings: CarrierNumberings,
    pub(crate) carrier_configs: Vec<config::Carrier>,
    pub(crate) sources: Vec<(Cidr, CarrierId)>,
    /// Addresses (IP literal and port) of the carriers and direct friends
    /// configured with TCP: see [`RoutingTable::configured_tcp`].
    pub(crate) tcp_peers: rustc_hash::FxHashSet<SocketAddr>,
    /// The configured peers by IP literal: carrier addresses (`c:NAME`)
    /// and direct friends (`f:DOMAIN/NAME`); see [`RoutingTable::party`].
    pub(crate) peer_names: FxHashMap<IpAddr, Box<str>>,
    /// `[server]` of the configuration (for the shell).
    pub server: config::Server,
    /// `[auth]` of the configuration.
    pub auth: config::Auth,
}

impl RoutingTable {
    /// Validates `config` and compiles every company.
    pub fn build(config: &Config) -> Result<RoutingTable, ConfigErrors> {
        Self::build_with(config, None, BuildOptions::default())
    }

    /// Validates and compiles `config`, reusing from `previous` every
    /// company whose configuration (and carrier) is unchanged: those are
    /// neither validated again nor recompiled, and keep their `Arc`.
    pub fn build_with(
        config: &Config,
        previous: Option<&RoutingTable>,
        options: BuildOptions,
    ) -> Result<RoutingTable, ConfigErrors> {
        let mut errors = ConfigErrors::new();
        validate_global(config, &mut errors);
        let carrier_of = |c: &config::Company| {
            c.carrier
                .as_deref()
                .and_then(|n| config.carrier.iter().find(|k| k.name == n))
        };

        // Reuse or mark for compilation. Comparing 10,000 companies field by
        // field is the bulk of a full reload, so it is split over threads.
        let reuse = |c: &config::Company| {
            let old = previous?.company_by_name(&c.name)?;
            old.compiled_from(c, carrier_of(c)).then(|| Arc::clone(old))
        };
        let threads = if previous.is_some() && config.company.len() >= 1024 {
            options.threads
        } else {
            1
        };
        let mut slots: Vec<Option<Arc<CompiledCompany>>> = par_map(&config.company, threads, reuse);
        let todo: Vec<usize> = (0..slots.len()).filter(|&i| slots[i].is_none()).collect();
        for &i in &todo {
            let c = &config.company[i];
            validate_company(c, &company_place(c), &mut errors);
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let compile = |i: usize| {
            let c = &config.company[i];
            CompiledCompany::compile(c, carrier_of(c), options.size_limit).map(Arc::new)
        };
        // Threads only pay off past a few dozen companies (~50 µs each).
        let threads = if todo.len() >= 64 { options.threads } else { 1 };
        let results = par_map(&todo, threads, |&i| compile(i));
        for (&i, result) in todo.iter().zip(results) {
            match result {
                Ok(compiled) => slots[i] = Some(compiled),
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let companies: Vec<Arc<CompiledCompany>> = slots.into_iter().flatten().collect();
        Ok(Self::assemble(config, companies))
    }

    pub(crate) fn assemble(config: &Config, companies: Vec<Arc<CompiledCompany>>) -> RoutingTable {
        // Keys are read from `config` (hot in cache after validation) rather
        // than from each compiled company (one pointer chase per company).
        let mut by_domain = StrIndex::with_capacity(companies.len());
        let mut by_name = StrIndex::with_capacity(companies.len());
        let mut ddis = FxHashMap::with_capacity_and_hasher(companies.len() * 4, Default::default());
        for (i, c) in config.company.iter().enumerate() {
            let domain = &companies[i].domain;
            by_domain.insert(domain, i as u32);
            by_name.insert(&c.name, i as u32);
            for ddi in &c.ddi {
                if let Some(key) = ddi_key(&ddi.number) {
                    ddis.insert(key, i as u32);
                }
            }
        }
        let carriers: Vec<CarrierEntry> =
            config.carrier.iter().map(CarrierEntry::compile).collect();
        let mut sources: Vec<(Cidr, CarrierId)> = Vec::new();
        for (i, c) in config.carrier.iter().enumerate() {
            for s in &c.sources {
                if let Ok(cidr) = values::parse_cidr(s) {
                    sources.push((cidr, CarrierId(i as u32)));
                }
            }
        }
        // Longest prefix first, so the first containing network wins.
        sources.sort_by_key(|s| std::cmp::Reverse(s.0.len));
        let ip_of = |host: &str| -> Option<IpAddr> {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .ok()
        };
        let mut peer_names = FxHashMap::default();
        for c in &companies {
            for f in &c.friends {
                if let FriendConnection::Direct { host, .. } = &f.connection {
                    if let Some(ip) = ip_of(host) {
                        let name = format!("f:{}/{}", c.domain, f.name);
                        peer_names.insert(ip, name.into_boxed_str());
                    }
                }
            }
        }
        for c in &carriers {
            if let Some(ip) = ip_of(&c.host) {
                peer_names.insert(ip, format!("c:{}", c.name).into_boxed_str());
            }
        }
        let direct =
            companies
                .iter()
                .flat_map(|c| &c.friends)
                .filter_map(|f| match &f.connection {
                    FriendConnection::Direct { proto, host, port } => {
                        Some((*proto, &**host, *port))
                    }
                    FriendConnection::Register => None,
                });
        let tcp_peers = carriers
            .iter()
            .map(|c| (c.proto, &*c.host, c.port))
            .chain(direct)
            .filter(|&(proto, _, _)| proto == Proto::Tcp)
            .filter_map(|(_, host, port)| {
                let ip = host.trim_start_matches('[').trim_end_matches(']');
                Some(SocketAddr::new(ip.parse().ok()?, port))
            })
            .collect();
        let carrier_numberings = CarrierNumberings::build(&carriers, &companies);
        RoutingTable {
            companies,
            by_domain,
            by_name,
            ddis,
            carriers,
            carrier_numberings,
            carrier_configs: config.carrier.clone(),
            sources,
            tcp_peers,
            peer_names,
            server: config.server.clone(),
            auth: config.auth.clone(),
        }
    }

    /// The company whose SIP domain is `domain` (ASCII case-insensitive).
    #[inline]
    pub fn company(&self, domain: &str) -> Option<&Arc<CompiledCompany>> {
        let key = |i: u32| &*self.companies[i as usize].domain;
        if let Some(i) = self.by_domain.get(domain, key) {
            return Some(&self.companies[i as usize]);
        }
        // Slow path for mixed case; host names are at most 253 bytes.
        if domain.len() <= 253 && domain.bytes().any(|b| b.is_ascii_uppercase()) {
            let mut buf = [0u8; 253];
            let lower = &mut buf[..domain.len()];
            lower.copy_from_slice(domain.as_bytes());
            lower.make_ascii_lowercase();
            let lower = std::str::from_utf8(lower).ok()?;
            return self
                .by_domain
                .get(lower, key)
                .map(|i| &self.companies[i as usize]);
        }
        None
    }

    /// The company configured with `name`.
    pub fn company_by_name(&self, name: &str) -> Option<&Arc<CompiledCompany>> {
        self.by_name
            .get(name, |i| &self.companies[i as usize].name)
            .map(|i| &self.companies[i as usize])
    }

    /// All companies, in configuration order.
    pub fn companies(&self) -> &[Arc<CompiledCompany>] {
        &self.companies
    }

    /// The carrier called `name`.
    pub fn carrier_id(&self, name: &str) -> Option<CarrierId> {
        self.carriers
            .iter()
            .position(|c| &*c.name == name)
            .map(|i| CarrierId(i as u32))
    }

    /// The carrier with this id. Panics if the id is not of this table.
    pub fn carrier(&self, id: CarrierId) -> &CarrierEntry {
        &self.carriers[id.0 as usize]
    }

    /// The carrier whose `sources` contain `ip` (longest prefix wins), so
    /// requests from it are carrier traffic.
    pub fn carrier_for_source(&self, ip: IpAddr) -> Option<CarrierId> {
        self.sources
            .iter()
            .find(|(net, _)| net.contains(ip))
            .map(|&(_, id)| id)
    }

    /// Who is at `ip`, as a dialog token records the two parties of a
    /// dialog (appended to `out`): a carrier by name, for any address of
    /// its `sources` or its `address` (a carrier's in-dialog requests may
    /// come from, and go to, any node of its pool; each carrier is a party
    /// of its own, so a dialog with one cannot be used to reach another),
    /// anyone else — a direct friend included — by the address itself.
    ///
    /// A friend is not named: a token issued before a reload that adds,
    /// renames or removes a friend (two trunks of one PBX share its
    /// address) still holds for the calls in progress. Renaming or
    /// removing a carrier does end the in-dialog routing of its calls.
    pub fn party(&self, ip: IpAddr, out: &mut Vec<u8>) {
        if let Some(c) = self.carrier_for_source(ip) {
            out.extend_from_slice(b"c:");
            out.extend_from_slice(self.carrier(c).name.as_bytes());
        } else if let Some(name) = self.peer_names.get(&ip).filter(|n| n.starts_with("c:")) {
            out.extend_from_slice(name.as_bytes());
        } else {
            match ip {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
    }

    /// Whether `ip` is a carrier's: in its `sources`, or its `address`.
    pub fn is_carrier_address(&self, ip: IpAddr) -> bool {
        self.carrier_for_source(ip).is_some()
            || self
                .peer_names
                .get(&ip)
                .is_some_and(|n| n.starts_with("c:"))
    }

    /// The direct friend configured at `ip` (an IP-literal `address`), as
    /// (company domain, friend name); the last configured when several
    /// share the address.
    pub fn direct_friend_at(&self, ip: IpAddr) -> Option<(&str, &str)> {
        self.peer_names
            .get(&ip)?
            .strip_prefix("f:")?
            .split_once('/')
    }

    /// Whether `ip` is a configured peer: in a carrier's `sources`, or the
    /// address of a carrier or a direct friend (what [`Self::party`] names).
    pub fn is_configured_peer(&self, ip: IpAddr) -> bool {
        self.carrier_for_source(ip).is_some() || self.peer_names.contains_key(&ip)
    }

    /// Whether a carrier or a direct friend is configured with TCP at
    /// `addr`. A peer's Contact often names its address without
    /// `;transport=tcp` (which would mean UDP, RFC 3263); the switch then
    /// sends in-dialog requests to it over TCP all the same, as its
    /// configuration says.
    pub fn configured_tcp(&self, addr: SocketAddr) -> bool {
        !self.tcp_peers.is_empty() && self.tcp_peers.contains(&addr)
    }

    /// The company owning the DDI `e164`.
    pub fn ddi_owner(&self, e164: &str) -> Option<&Arc<CompiledCompany>> {
        self.ddis
            .get(&ddi_key(e164)?)
            .map(|&i| &self.companies[i as usize])
    }

    /// Heap bytes of every company's pattern matchers.
    pub fn pattern_memory(&self) -> usize {
        self.companies.iter().map(|c| c.pattern_memory()).sum()
    }
}
