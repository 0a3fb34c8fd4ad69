//! Validation of a parsed configuration: every problem, each with its place.
//!
//! Split in two so a reload can skip work: [`validate_company`] checks what
//! lies inside one company (names, references, numbers, regexes) and
//! depends on nothing else, while [`validate_global`] checks the server,
//! auth and carrier tables and everything that crosses companies (unique
//! names and domains, DDIs owned once platform-wide, carrier references).
//! A company equal to one already validated need not be checked again.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use rustc_hash::{FxHashMap, FxHashSet};

use super::error::{ConfigErrors, ErrorKind, Place};
use super::model::{Company, Config, Connection, Friend};
use super::values::{self, Cidr};

/// Checks the whole configuration; `Ok` when it has no problem at all.
pub fn validate(config: &Config) -> Result<(), ConfigErrors> {
    let mut errors = ConfigErrors::new();
    validate_global(config, &mut errors);
    for company in &config.company {
        validate_company(company, &company_place(company), &mut errors);
    }
    errors.into_result(())
}

/// The place of a company: `company[name]`.
pub fn company_place(company: &Company) -> Place {
    Place::key("company").named(&company.name)
}

/// Checks `[server]`, `[auth]`, `[[carrier]]` and the cross-company rules,
/// appending problems to `errors`.
pub fn validate_global(config: &Config, errors: &mut ConfigErrors) {
    validate_server(config, errors);
    validate_auth(config, errors);
    validate_registrar(config, errors);
    if config.company.is_empty() {
        // An empty or truncated file (a non-atomic write racing a SIGHUP)
        // would otherwise replace every tenant with nothing.
        errors.push(
            Place::key("company"),
            ErrorKind::Invalid(
                "no company configured: nothing would be routed (an empty or truncated file?)"
                    .into(),
            ),
        );
    }

    let mut carriers = HashSet::new();
    let mut networks: HashMap<Cidr, &str> = HashMap::new();
    for (i, carrier) in config.carrier.iter().enumerate() {
        let place = if carrier.name.is_empty() {
            Place::key("carrier").index(i)
        } else {
            Place::key("carrier").named(&carrier.name)
        };
        check_name(&carrier.name, &place.field("name"), errors);
        if !carrier.name.is_empty() && !carriers.insert(carrier.name.as_str()) {
            errors.push(place.field("name"), dup("carrier name", &carrier.name));
        }
        if let Err(m) = values::parse_address(&carrier.address) {
            errors.push(place.field("address"), ErrorKind::Invalid(m));
        }
        for (j, source) in carrier.sources.iter().enumerate() {
            let at = place.field("sources").index(j);
            match values::parse_cidr(source) {
                Ok(cidr) => {
                    if let Some(other) = networks.insert(cidr, &carrier.name) {
                        errors.push(
                            at,
                            ErrorKind::Conflict(format!(
                                "network {source} is already a source of carrier {other}"
                            )),
                        );
                    }
                }
                Err(m) => errors.push(at, ErrorKind::Invalid(m)),
            }
        }
    }

    // These run on every reload over every company (10,000 on a big
    // platform), so: a fast hasher (keys come from the operator, not the
    // network), capacity reserved, no allocation per company unless there
    // is an error or a domain in upper case.
    let n = config.company.len();
    let mut names = FxHashSet::with_capacity_and_hasher(n, Default::default());
    let mut domains = FxHashSet::with_capacity_and_hasher(n, Default::default());
    let mut ddis: FxHashMap<&str, &str> =
        FxHashMap::with_capacity_and_hasher(n * 4, Default::default());
    for company in &config.company {
        if !company.name.is_empty() && !names.insert(company.name.as_str()) {
            errors.push(
                company_place(company).field("name"),
                dup("company name", &company.name),
            );
        }
        let domain: Cow<str> = if company.domain.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(company.domain.to_ascii_lowercase())
        } else {
            Cow::Borrowed(&company.domain)
        };
        if !domain.is_empty() && !domains.insert(domain) {
            errors.push(
                company_place(company).field("domain"),
                dup("company domain", &company.domain),
            );
        }
        match &company.carrier {
            Some(c) if !carriers.contains(c.as_str()) => errors.push(
                company_place(company).field("carrier"),
                dangling("carrier", c),
            ),
            Some(_) => {}
            None => errors.push(
                company_place(company).field("carrier"),
                ErrorKind::Conflict("missing: every company needs a carrier".into()),
            ),
        }
        for ddi in &company.ddi {
            if let Some(owner) = ddis.insert(&ddi.number, &company.name) {
                errors.push(
                    company_place(company).field("ddi").named(&ddi.number),
                    ErrorKind::Conflict(format!(
                        "DDI {} is owned twice (also by company {owner})",
                        ddi.number
                    )),
                );
            }
        }
    }
}

fn validate_server(config: &Config, errors: &mut ConfigErrors) {
    let place = Place::key("server");
    let server = &config.server;
    if server.listen.is_empty() {
        errors.push(place.field("listen"), ErrorKind::Empty);
    }
    let mut seen = HashSet::new();
    for (i, listen) in server.listen.iter().enumerate() {
        match values::parse_listen(listen) {
            Ok(addr) => {
                if !seen.insert(addr) {
                    errors.push(
                        place.field("listen").index(i),
                        dup("listen address", listen),
                    );
                }
            }
            Err(m) => errors.push(place.field("listen").index(i), ErrorKind::Invalid(m)),
        }
    }
    // The host written in Via and Record-Route defaults to the first
    // listen address: a wildcard one (0.0.0.0, ::) names no host.
    let first_wildcard = server
        .listen
        .first()
        .and_then(|l| values::parse_listen(l).ok())
        .is_some_and(|(_, a)| a.ip().is_unspecified());
    if server.advertised_host.is_none() && first_wildcard {
        errors.push(
            place.field("advertised_host"),
            ErrorKind::Invalid(
                "must be set when the first listen address is a wildcard (0.0.0.0 or [::]): \
                 it is the address peers reach the switch at, written in Via and Record-Route"
                    .into(),
            ),
        );
    }
    if let Some(host) = &server.advertised_host {
        if !values::is_host(host) {
            errors.push(
                place.field("advertised_host"),
                ErrorKind::Invalid(format!("{host:?} is not an IP address or host name")),
            );
        }
    }
    if server.data_dir.is_empty() {
        errors.push(place.field("data_dir"), ErrorKind::Empty);
    }
    if server.batch_window_us > super::model::MAX_BATCH_WINDOW_US {
        errors.push(
            place.field("batch_window_us"),
            ErrorKind::Invalid(format!(
                "must not exceed {} (microseconds)",
                super::model::MAX_BATCH_WINDOW_US
            )),
        );
    }
    if server.tcp_idle_s == 0 {
        errors.push(
            place.field("tcp_idle_s"),
            ErrorKind::Invalid("must be at least 1 (seconds)".into()),
        );
    }
    if server.tcp_max_connections == 0 {
        errors.push(
            place.field("tcp_max_connections"),
            ErrorKind::Invalid("must be at least 1".into()),
        );
    }
}

fn validate_auth(config: &Config, errors: &mut ConfigErrors) {
    let place = Place::key("auth");
    let auth = &config.auth;
    if auth.algorithms.is_empty() {
        errors.push(place.field("algorithms"), ErrorKind::Empty);
    }
    let mut seen = HashSet::new();
    for (i, alg) in auth.algorithms.iter().enumerate() {
        let at = place.field("algorithms").index(i);
        if !values::DIGEST_ALGORITHMS.contains(&alg.as_str()) {
            errors.push(
                at,
                ErrorKind::Invalid(format!(
                    "unknown digest algorithm {alg:?} (expected one of {})",
                    values::DIGEST_ALGORITHMS.join(", ")
                )),
            );
        } else if !seen.insert(alg.as_str()) {
            errors.push(at, dup("algorithm", alg));
        }
    }
    for (key, value) in [
        ("nonce_lifetime_s", auth.nonce_lifetime_s),
        ("max_failures", auth.max_failures),
        ("failure_window_s", auth.failure_window_s),
        ("ban_s", auth.ban_s),
    ] {
        if value == 0 {
            errors.push(
                place.field(key),
                ErrorKind::Invalid("must be at least 1".into()),
            );
        }
    }
}

fn validate_registrar(config: &Config, errors: &mut ConfigErrors) {
    let place = Place::key("registrar");
    let r = &config.registrar;
    for (key, value) in [
        ("min_expires_s", r.min_expires_s),
        ("max_expires_s", r.max_expires_s),
        ("default_expires_s", r.default_expires_s),
        ("max_bindings", r.max_bindings),
    ] {
        if value == 0 {
            errors.push(
                place.field(key),
                ErrorKind::Invalid("must be at least 1".into()),
            );
        }
    }
    let most = crate::registrar::MAX_BINDINGS;
    if r.max_bindings as usize > most {
        errors.push(
            place.field("max_bindings"),
            ErrorKind::Invalid(format!(
                "must not exceed {most} (bindings per address of record)"
            )),
        );
    }
    if r.min_expires_s > r.max_expires_s {
        errors.push(
            place.field("min_expires_s"),
            ErrorKind::Invalid("must not exceed max_expires_s".into()),
        );
    }
    if !(r.min_expires_s..=r.max_expires_s).contains(&r.default_expires_s) {
        errors.push(
            place.field("default_expires_s"),
            ErrorKind::Invalid("must lie between min_expires_s and max_expires_s".into()),
        );
    }
}

/// Checks everything inside one company, appending problems to `errors`
/// under `place` (normally `company[name]`).
pub fn validate_company(company: &Company, place: &Place, errors: &mut ConfigErrors) {
    check_name(&company.name, &place.field("name"), errors);
    if !values::is_host(&company.domain) {
        errors.push(
            place.field("domain"),
            ErrorKind::Invalid(format!("{:?} is not a domain name", company.domain)),
        );
    }
    check_numbering(
        place,
        Some(&company.country_code),
        company.area_code.as_ref(),
        Some(&company.international_prefix),
        Some(&company.trunk_prefix),
        Some(company.national_length),
        errors,
    );
    if let Some(ddi) = &company.outgoing_ddi {
        check_e164(ddi, &place.field("outgoing_ddi"), errors);
    }

    let acls: HashSet<&str> = company.call_acl.iter().map(|a| a.name.as_str()).collect();
    let users: HashSet<&str> = company.user.iter().map(|u| u.name.as_str()).collect();
    let friends: HashSet<&str> = company.friend.iter().map(|f| f.name.as_str()).collect();
    let terminals: HashSet<&str> = company.terminal.iter().map(|t| t.name.as_str()).collect();

    // Terminals and friends both authenticate as `name@domain`: one namespace.
    let mut auth_names = HashSet::new();
    for (i, t) in company.terminal.iter().enumerate() {
        let at = item_place(place, "terminal", &t.name, i);
        check_name(&t.name, &at.field("name"), errors);
        if !t.name.is_empty() && !auth_names.insert(t.name.as_str()) {
            errors.push(at.field("name"), dup("terminal or friend name", &t.name));
        }
        if t.password.is_empty() {
            errors.push(at.field("password"), ErrorKind::Empty);
        }
    }

    let mut user_names = HashSet::new();
    let mut terminal_owner: HashMap<&str, &str> = HashMap::new();
    for (i, u) in company.user.iter().enumerate() {
        let at = item_place(place, "user", &u.name, i);
        check_name(&u.name, &at.field("name"), errors);
        if !u.name.is_empty() && !user_names.insert(u.name.as_str()) {
            errors.push(at.field("name"), dup("user name", &u.name));
        }
        if !terminals.contains(u.terminal.as_str()) {
            errors.push(at.field("terminal"), dangling("terminal", &u.terminal));
        } else if let Some(other) = terminal_owner.insert(&u.terminal, &u.name) {
            errors.push(
                at.field("terminal"),
                ErrorKind::Conflict(format!(
                    "terminal {:?} already belongs to user {other}",
                    u.terminal
                )),
            );
        }
        if let Some(acl) = &u.call_acl {
            if !acls.contains(acl.as_str()) {
                errors.push(at.field("call_acl"), dangling("call_acl", acl));
            }
        }
        if let Some(ddi) = &u.outgoing_ddi {
            check_e164(ddi, &at.field("outgoing_ddi"), errors);
        }
    }

    let mut priorities: HashMap<u32, &str> = HashMap::new();
    for (i, f) in company.friend.iter().enumerate() {
        let at = item_place(place, "friend", &f.name, i);
        check_name(&f.name, &at.field("name"), errors);
        if !f.name.is_empty() && !auth_names.insert(f.name.as_str()) {
            errors.push(at.field("name"), dup("terminal or friend name", &f.name));
        }
        if let Some(other) = priorities.insert(f.priority, &f.name) {
            errors.push(
                at.field("priority"),
                ErrorKind::Conflict(format!(
                    "priority {} is also the priority of friend {other}",
                    f.priority
                )),
            );
        }
        validate_friend(f, &at, &acls, errors);
    }

    let mut extensions = HashSet::new();
    for (i, e) in company.extension.iter().enumerate() {
        let at = item_place(place, "extension", &e.number, i);
        if !values::is_extension(&e.number) {
            errors.push(
                at.field("number"),
                ErrorKind::Invalid(format!(
                    "{:?} is not an extension (1 to 15 of 0-9 * #)",
                    e.number
                )),
            );
        }
        if !e.number.is_empty() && !extensions.insert(e.number.as_str()) {
            errors.push(at.field("number"), dup("extension", &e.number));
        }
        match (&e.user, &e.friend) {
            (Some(u), None) => {
                if !users.contains(u.as_str()) {
                    errors.push(at.field("user"), dangling("user", u));
                }
            }
            (None, Some(f)) => {
                if !friends.contains(f.as_str()) {
                    errors.push(at.field("friend"), dangling("friend", f));
                }
            }
            _ => errors.push(at, exactly_one("user, friend")),
        }
    }

    let mut ddis = HashSet::new();
    for (i, d) in company.ddi.iter().enumerate() {
        let at = item_place(place, "ddi", &d.number, i);
        check_e164(&d.number, &at.field("number"), errors);
        if !ddis.insert(d.number.as_str()) {
            errors.push(at.field("number"), dup("DDI", &d.number));
        }
        match (&d.user, &d.friend, &d.extension) {
            (Some(u), None, None) => {
                if !users.contains(u.as_str()) {
                    errors.push(at.field("user"), dangling("user", u));
                }
            }
            (None, Some(f), None) => {
                if !friends.contains(f.as_str()) {
                    errors.push(at.field("friend"), dangling("friend", f));
                }
            }
            (None, None, Some(x)) => {
                if !extensions.contains(x.as_str()) {
                    errors.push(at.field("extension"), dangling("extension", x));
                }
            }
            _ => errors.push(at, exactly_one("user, friend, extension")),
        }
    }

    let mut acl_names = HashSet::new();
    for (i, acl) in company.call_acl.iter().enumerate() {
        let at = item_place(place, "call_acl", &acl.name, i);
        check_name(&acl.name, &at.field("name"), errors);
        if !acl.name.is_empty() && !acl_names.insert(acl.name.as_str()) {
            errors.push(at.field("name"), dup("call_acl name", &acl.name));
        }
        for (j, rule) in acl.rules.iter().enumerate() {
            let rat = at.field("rules").index(j);
            match rule.policy() {
                Some((_, pattern)) => check_regex(pattern, &rat, errors),
                None => errors.push(rat, exactly_one("allow, deny")),
            }
        }
    }
}

fn validate_friend(f: &Friend, at: &Place, acls: &HashSet<&str>, errors: &mut ConfigErrors) {
    if f.password.is_empty() {
        errors.push(at.field("password"), ErrorKind::Empty);
    }
    let address_keys: Vec<&str> = [
        ("transport", f.transport.is_some()),
        ("address", f.address.is_some()),
        ("port", f.port.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    match f.connection {
        Connection::Register if !address_keys.is_empty() => errors.push(
            at.field("connection"),
            ErrorKind::Conflict(format!(
                "a register friend has no address fields (remove {})",
                address_keys.join(", ")
            )),
        ),
        Connection::Direct => match &f.address {
            None => errors.push(
                at.field("connection"),
                ErrorKind::Conflict(
                    "a direct friend needs address (and optionally transport, port)".into(),
                ),
            ),
            Some(a) if a.parse::<std::net::IpAddr>().is_err() => errors.push(
                at.field("address"),
                ErrorKind::Invalid(if values::is_host(a) {
                    format!("{a:?}: {}", values::NOT_RESOLVED)
                } else {
                    format!("{a:?} is not an IP address")
                }),
            ),
            Some(_) => {}
        },
        Connection::Register => {}
    }
    if f.port == Some(0) {
        errors.push(at.field("port"), ErrorKind::Invalid("port 0".into()));
    }
    for (j, p) in f.patterns.iter().enumerate() {
        check_regex(p, &at.field("patterns").index(j), errors);
    }
    if let Some(acl) = &f.call_acl {
        if !acls.contains(acl.as_str()) {
            errors.push(at.field("call_acl"), dangling("call_acl", acl));
        }
    }
    if let Some(ddi) = &f.fallback_outgoing_ddi {
        check_e164(ddi, &at.field("fallback_outgoing_ddi"), errors);
    }
    check_numbering(
        at,
        f.country_code.as_ref(),
        f.area_code.as_ref(),
        f.international_prefix.as_ref(),
        f.trunk_prefix.as_ref(),
        f.national_length,
        errors,
    );
    if let Some(codecs) = &f.allowed_codecs {
        if codecs.is_empty() {
            errors.push(
                at.field("allowed_codecs"),
                ErrorKind::Invalid("empty list would refuse every call with 488 (omit the key to allow all codecs)".into()),
            );
        }
        for (j, c) in codecs.iter().enumerate() {
            if !values::is_codec(c) {
                errors.push(
                    at.field("allowed_codecs").index(j),
                    ErrorKind::UnknownCodec(c.clone()),
                );
            }
        }
    }
    if let Some(d) = &f.from_domain {
        if !values::is_host(d) {
            errors.push(
                at.field("from_domain"),
                ErrorKind::Invalid(format!("{d:?} is not a domain name")),
            );
        }
    }
}

fn check_numbering(
    at: &Place,
    cc: Option<&String>,
    area: Option<&String>,
    intl: Option<&String>,
    trunk: Option<&String>,
    len: Option<u32>,
    errors: &mut ConfigErrors,
) {
    let digits = |v: &str, min: usize, max: usize| {
        (min..=max).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit())
    };
    if let Some(cc) = cc {
        if !digits(cc, 1, 3) {
            errors.push(
                at.field("country_code"),
                ErrorKind::Invalid(format!("{cc:?} is not 1 to 3 digits")),
            );
        }
    }
    if let Some(area) = area {
        if !digits(area, 1, 14) {
            errors.push(
                at.field("area_code"),
                ErrorKind::Invalid(format!("{area:?} is not 1 to 14 digits")),
            );
        }
    }
    if let Some(intl) = intl {
        if !digits(intl, 1, 4) {
            errors.push(
                at.field("international_prefix"),
                ErrorKind::Invalid(format!("{intl:?} is not 1 to 4 digits")),
            );
        }
    }
    if let Some(trunk) = trunk {
        if !digits(trunk, 0, 4) {
            errors.push(
                at.field("trunk_prefix"),
                ErrorKind::Invalid(format!("{trunk:?} is not 0 to 4 digits")),
            );
        }
    }
    if let Some(len) = len {
        if !(1..=14).contains(&len) {
            errors.push(
                at.field("national_length"),
                ErrorKind::Invalid(format!("{len} is not between 1 and 14")),
            );
        }
    }
}

fn check_e164(value: &str, at: &Place, errors: &mut ConfigErrors) {
    if !values::is_e164(value) {
        errors.push(at.clone(), ErrorKind::NotE164(value.to_string()));
    }
}

fn check_regex(pattern: &str, at: &Place, errors: &mut ConfigErrors) {
    if let Err(m) = values::check_regex(pattern) {
        errors.push(at.clone(), ErrorKind::Regex(m));
    }
}

fn check_name(name: &str, at: &Place, errors: &mut ConfigErrors) {
    if name.is_empty() {
        errors.push(at.clone(), ErrorKind::Empty);
    } else if !values::is_name(name) {
        errors.push(
            at.clone(),
            ErrorKind::Invalid(format!(
                "{name:?} is not a name (letters, digits and . _ - only)"
            )),
        );
    }
}

/// `parent.kind[name]`, or `parent.kind[index]` when the name is empty.
fn item_place(parent: &Place, kind: &str, name: &str, index: usize) -> Place {
    if name.is_empty() {
        parent.field(kind).index(index)
    } else {
        parent.field(kind).named(name)
    }
}

fn dup(what: &'static str, value: &str) -> ErrorKind {
    ErrorKind::Duplicate {
        what,
        value: value.to_string(),
    }
}

fn dangling(what: &'static str, name: &str) -> ErrorKind {
    ErrorKind::Dangling {
        what,
        name: name.to_string(),
    }
}

fn exactly_one(keys: &str) -> ErrorKind {
    ErrorKind::Conflict(format!("set exactly one of: {keys}"))
}
