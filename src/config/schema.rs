//! Unknown keys, all of them: a pass over the TOML tree before serde.
//!
//! serde stops at the first unknown key, so an operator with a typo in one
//! friend and a bad regex in another would learn of the second only after
//! fixing the first. This pass walks the tree against the key names of the
//! model (DOMAIN.md §2), reports every unknown key with its place, and
//! removes it, so that deserialisation and validation still run and report
//! the rest. (`deny_unknown_fields` on the model stays: it is the single
//! source of truth, and `tests` check that the two lists agree.)

use super::error::{ConfigError, ErrorKind, Place};

/// Keys of each table of the model (`src/config/model.rs`).
const ROOT: &[&str] = &["server", "auth", "registrar", "carrier", "company"];
const REGISTRAR: &[&str] = &[
    "min_expires_s",
    "max_expires_s",
    "default_expires_s",
    "max_bindings",
    "keepalive_s",
];
const SERVER: &[&str] = &[
    "listen",
    "advertised_host",
    "workers",
    "data_dir",
    "batch_window_us",
    "tcp_idle_s",
    "tcp_max_connections",
];
const AUTH: &[&str] = &[
    "algorithms",
    "nonce_lifetime_s",
    "max_failures",
    "failure_window_s",
    "ban_s",
];
const CARRIER: &[&str] = &["name", "address", "sources"];
const COMPANY: &[&str] = &[
    "name",
    "domain",
    "country_code",
    "area_code",
    "international_prefix",
    "trunk_prefix",
    "national_length",
    "outgoing_ddi",
    "carrier",
    "terminal",
    "user",
    "extension",
    "friend",
    "ddi",
    "call_acl",
];
const TERMINAL: &[&str] = &["name", "password"];
const USER: &[&str] = &["name", "terminal", "call_acl", "outgoing_ddi"];
const EXTENSION: &[&str] = &["number", "user", "friend"];
const FRIEND: &[&str] = &[
    "name",
    "description",
    "priority",
    "password",
    "connection",
    "transport",
    "address",
    "port",
    "patterns",
    "call_acl",
    "fallback_outgoing_ddi",
    "country_code",
    "area_code",
    "international_prefix",
    "trunk_prefix",
    "national_length",
    "allowed_codecs",
    "from_domain",
];
const DDI: &[&str] = &["number", "user", "friend", "extension"];
const CALL_ACL: &[&str] = &["name", "default", "rules"];
const ACL_RULE: &[&str] = &["allow", "deny"];

/// Removes every key of `root` the model does not know, returning one
/// error per key, placed like validation errors (`company[acme].friend[branch].bogus`).
pub fn strip_unknown(root: &mut toml::Table) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let place = Place::root();
    strip(root, ROOT, &place, &mut errors);
    if let Some(toml::Value::Table(t)) = root.get_mut("server") {
        strip(t, SERVER, &place.field("server"), &mut errors);
    }
    if let Some(toml::Value::Table(t)) = root.get_mut("auth") {
        strip(t, AUTH, &place.field("auth"), &mut errors);
    }
    if let Some(toml::Value::Table(t)) = root.get_mut("registrar") {
        strip(t, REGISTRAR, &place.field("registrar"), &mut errors);
    }
    each(root, "carrier", &place, CARRIER, &mut errors, |_, _, _| {});
    each(
        root,
        "company",
        &place,
        COMPANY,
        &mut errors,
        |company, at, errors| {
            each(company, "terminal", at, TERMINAL, errors, |_, _, _| {});
            each(company, "user", at, USER, errors, |_, _, _| {});
            each(company, "extension", at, EXTENSION, errors, |_, _, _| {});
            each(company, "friend", at, FRIEND, errors, |_, _, _| {});
            each(company, "ddi", at, DDI, errors, |_, _, _| {});
            each(
                company,
                "call_acl",
                at,
                CALL_ACL,
                errors,
                |acl, at, errors| {
                    if let Some(toml::Value::Array(rules)) = acl.get_mut("rules") {
                        for (i, r) in rules.iter_mut().enumerate() {
                            if let toml::Value::Table(r) = r {
                                strip(r, ACL_RULE, &at.field("rules").index(i), errors);
                            }
                        }
                    }
                },
            );
        },
    );
    errors
}

/// Visits the tables of the array `key` of `parent`, stripping each with
/// `known` and then calling `inner` on it.
fn each(
    parent: &mut toml::Table,
    key: &str,
    at: &Place,
    known: &[&str],
    errors: &mut Vec<ConfigError>,
    inner: impl Fn(&mut toml::Table, &Place, &mut Vec<ConfigError>),
) {
    let Some(toml::Value::Array(items)) = parent.get_mut(key) else {
        return;
    };
    for (i, item) in items.iter_mut().enumerate() {
        // Named the way validation names it (an empty name by its index).
        let here = super::types::label(item, &at.field(key), i);
        let toml::Value::Table(t) = item else {
            continue;
        };
        strip(t, known, &here, errors);
        inner(t, &here, errors);
    }
}

fn strip(t: &mut toml::Table, known: &[&str], at: &Place, errors: &mut Vec<ConfigError>) {
    let unknown: Vec<String> = t
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in unknown {
        t.remove(&k);
        let expected = known.join(", ");
        errors.push(ConfigError::new(
            at.field(&k),
            ErrorKind::Toml(format!("unknown key `{k}` (expected one of: {expected})")),
        ));
    }
}
