//! The serde model of the configuration file: one struct per TOML table.
//!
//! Key names are the contract of DOMAIN.md §2 and must never be renamed;
//! new keys may be added. Every struct rejects unknown keys, so a typo such
//! as `pasword` is an error instead of a silently ignored line. Values are
//! kept as written (strings, not parsed addresses): [`super::validate`]
//! checks them and reports every problem with its place, which serde alone
//! cannot do (it stops at the first error).
//!
//! Every struct derives `PartialEq`, so a reload can tell which companies
//! changed and recompile only those (see `route::publish`).

use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: listening sockets and process settings.
    #[serde(default)]
    pub server: Server,
    /// `[auth]`: digest authentication and banning.
    #[serde(default)]
    pub auth: Auth,
    /// `[registrar]`: binding lifetimes, caps and NAT keep-alives (an
    /// extension of DOMAIN.md §2; every key has a default).
    #[serde(default)]
    pub registrar: Registrar,
    /// `[[carrier]]`: trunks to the public network.
    #[serde(default)]
    pub carrier: Vec<Carrier>,
    /// `[[company]]`: the tenants.
    #[serde(default)]
    pub company: Vec<Company>,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Sockets to listen on, each `udp:IP:PORT` or `tcp:IP:PORT`.
    pub listen: Vec<String>,
    /// Host written in Via / Record-Route; `None` means the listen address.
    pub advertised_host: Option<String>,
    /// Worker threads; 0 means one per core.
    pub workers: u32,
    /// Directory where registrations persist across restarts.
    pub data_dir: String,
    /// Microseconds a busy UDP socket is left to fill after a batch before
    /// it is read again (0 = read again at once). An extension of the
    /// configuration contract: see `docs/wire.md`.
    pub batch_window_us: u32,
    /// Seconds a TCP connection may stay silent before it is closed; one
    /// that carries a live registration is kept while the binding lives.
    /// An extension of the configuration contract: see `docs/wire.md`.
    pub tcp_idle_s: u32,
    /// TCP connections the switch keeps open at most, across all workers.
    /// When full, a new connection takes the place of the one silent the
    /// longest that carries no live registration. An extension of the
    /// configuration contract: see `docs/wire.md`.
    pub tcp_max_connections: u32,
}

/// The default `server.batch_window_us`: one millisecond.
pub const DEFAULT_BATCH_WINDOW_US: u32 = 1000;

/// The largest `server.batch_window_us`: 20 ms (SIP's T1 is 500 ms; a
/// longer window only adds latency).
pub const MAX_BATCH_WINDOW_US: u32 = 20_000;

/// The default `server.tcp_idle_s`: five minutes.
pub const DEFAULT_TCP_IDLE_S: u32 = 300;

/// The default `server.tcp_max_connections`.
pub const DEFAULT_TCP_MAX_CONNECTIONS: u32 = 8192;

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: vec!["udp:127.0.0.1:5060".into()],
            advertised_host: None,
            workers: 0,
            data_dir: "var".into(),
            batch_window_us: DEFAULT_BATCH_WINDOW_US,
            tcp_idle_s: DEFAULT_TCP_IDLE_S,
            tcp_max_connections: DEFAULT_TCP_MAX_CONNECTIONS,
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Digest algorithms offered, in this order (`SHA-256`, `MD5`).
    pub algorithms: Vec<String>,
    /// Seconds a nonce stays valid.
    pub nonce_lifetime_s: u32,
    /// Failed attempts per source address before a ban.
    pub max_failures: u32,
    /// Window, in seconds, over which failures are counted.
    pub failure_window_s: u32,
    /// Length of a ban, in seconds.
    pub ban_s: u32,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            algorithms: vec!["SHA-256".into(), "MD5".into()],
            nonce_lifetime_s: 300,
            max_failures: 10,
            failure_window_s: 60,
            ban_s: 900,
        }
    }
}

/// `[registrar]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Registrar {
    /// Shortest registration accepted; shorter gets `423` with Min-Expires.
    pub min_expires_s: u32,
    /// Longest registration granted; longer requests are shortened.
    pub max_expires_s: u32,
    /// Granted when the REGISTER names no expiry.
    pub default_expires_s: u32,
    /// Most bindings per address of record; a new one beyond it replaces
    /// the one that expires first.
    pub max_bindings: u32,
    /// Seconds between keep-alive OPTIONS to UDP bindings (0 = none).
    pub keepalive_s: u32,
}

impl Default for Registrar {
    fn default() -> Self {
        Registrar {
            min_expires_s: 60,
            max_expires_s: 3600,
            default_expires_s: 3600,
            max_bindings: 10,
            keepalive_s: 30,
        }
    }
}

/// `[[carrier]]`: a trunk to the public network.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Carrier {
    /// Unique name, referenced by `company.carrier`.
    pub name: String,
    /// Where external calls are sent: `udp:IP:PORT` or `tcp:IP:PORT`.
    pub address: String,
    /// Networks (CIDR) whose requests are carrier traffic.
    #[serde(default)]
    pub sources: Vec<String>,
}

/// `[[company]]`: a tenant.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Company {
    /// Unique name, used in error places and logs.
    pub name: String,
    /// Unique SIP domain; the digest realm.
    pub domain: String,
    /// Country calling code, digits only (`34`).
    pub country_code: String,
    /// Area code prepended to numbers shorter than `national_length`.
    #[serde(default)]
    pub area_code: Option<String>,
    /// Prefix for international numbers (default `00`).
    #[serde(default = "default_international_prefix")]
    pub international_prefix: String,
    /// Trunk prefix of national numbers (default empty).
    #[serde(default)]
    pub trunk_prefix: String,
    /// Digits of a national significant number.
    pub national_length: u32,
    /// Default presented number for external calls.
    #[serde(default)]
    pub outgoing_ddi: Option<String>,
    /// Carrier for external calls.
    #[serde(default)]
    pub carrier: Option<String>,
    /// `[[company.terminal]]`.
    #[serde(default)]
    pub terminal: Vec<Terminal>,
    /// `[[company.user]]`.
    #[serde(default)]
    pub user: Vec<User>,
    /// `[[company.extension]]`.
    #[serde(default)]
    pub extension: Vec<Extension>,
    /// `[[company.friend]]`.
    #[serde(default)]
    pub friend: Vec<Friend>,
    /// `[[company.ddi]]`.
    #[serde(default)]
    pub ddi: Vec<Ddi>,
    /// `[[company.call_acl]]`.
    #[serde(default)]
    pub call_acl: Vec<CallAcl>,
}

fn default_international_prefix() -> String {
    "00".into()
}

/// `[[company.terminal]]`: a device that registers as `name@domain`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Terminal {
    /// Digest username; shares one namespace with friend names.
    pub name: String,
    /// Digest password; must not be empty.
    pub password: String,
}

/// `[[company.user]]`: a person with one terminal.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Unique name within the company.
    pub name: String,
    /// The user's terminal.
    pub terminal: String,
    /// Call ACL checked for external calls.
    #[serde(default)]
    pub call_acl: Option<String>,
    /// Presented number for external calls when the presented one is not a DDI.
    #[serde(default)]
    pub outgoing_ddi: Option<String>,
}

/// `[[company.extension]]`: a short internal number.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    /// The number dialled (`101`).
    pub number: String,
    /// Target user (exactly one of `user`, `friend`).
    #[serde(default)]
    pub user: Option<String>,
    /// Target friend (exactly one of `user`, `friend`).
    #[serde(default)]
    pub friend: Option<String>,
}

/// How the switch reaches a friend (DOMAIN.md §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Connection {
    /// The PBX registers like a terminal (behind NAT).
    Register,
    /// The switch sends to `transport:address:port`.
    Direct,
}

/// Transport of a direct friend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// SIP over UDP.
    Udp,
    /// SIP over TCP.
    Tcp,
}

/// `[[company.friend]]`: a SIP trunk to another PBX of the company.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Friend {
    /// Digest username; shares one namespace with terminal names.
    pub name: String,
    /// Free text for operators.
    #[serde(default)]
    pub description: Option<String>,
    /// Lower wins when several friends match; unique within the company.
    pub priority: u32,
    /// Digest password; must not be empty.
    pub password: String,
    /// `register` or `direct`.
    pub connection: Connection,
    /// Direct only: transport.
    #[serde(default)]
    pub transport: Option<Transport>,
    /// Direct only: an IP address (names are refused: none is resolved).
    #[serde(default)]
    pub address: Option<String>,
    /// Direct only: port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Whole-string regexes of the numbers routed to this friend.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Call ACL checked for the friend's external calls.
    #[serde(default)]
    pub call_acl: Option<String>,
    /// Presented number for external calls when the presented one is not a DDI.
    #[serde(default)]
    pub fallback_outgoing_ddi: Option<String>,
    /// Numbering override (default: the company's).
    #[serde(default)]
    pub country_code: Option<String>,
    /// Numbering override (default: the company's).
    #[serde(default)]
    pub area_code: Option<String>,
    /// Numbering override (default: the company's).
    #[serde(default)]
    pub international_prefix: Option<String>,
    /// Numbering override (default: the company's).
    #[serde(default)]
    pub trunk_prefix: Option<String>,
    /// Numbering override (default: the company's).
    #[serde(default)]
    pub national_length: Option<u32>,
    /// SDP encoding names kept in offers; `None` means no filtering.
    #[serde(default)]
    pub allowed_codecs: Option<Vec<String>>,
    /// From host on requests to the friend (default: the company domain).
    #[serde(default)]
    pub from_domain: Option<String>,
}

/// `[[company.ddi]]`: a public number owned by the company.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ddi {
    /// E.164 number (`+34944000100`); unique across all companies.
    pub number: String,
    /// Target user (exactly one of `user`, `friend`, `extension`).
    #[serde(default)]
    pub user: Option<String>,
    /// Target friend (exactly one of `user`, `friend`, `extension`).
    #[serde(default)]
    pub friend: Option<String>,
    /// Target extension (exactly one of `user`, `friend`, `extension`).
    #[serde(default)]
    pub extension: Option<String>,
}

/// The policy of an ACL rule or default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The call may proceed.
    Allow,
    /// The call is refused with 403.
    Deny,
}

/// One rule of a call ACL: `{ allow = "re" }` or `{ deny = "re" }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    /// Whole-string regex on the E.164 destination that allows the call.
    #[serde(default)]
    pub allow: Option<String>,
    /// Whole-string regex on the E.164 destination that denies the call.
    #[serde(default)]
    pub deny: Option<String>,
}

impl AclRule {
    /// The rule's policy and pattern, if exactly one of `allow`/`deny` is set.
    pub fn policy(&self) -> Option<(Policy, &str)> {
        match (&self.allow, &self.deny) {
            (Some(p), None) => Some((Policy::Allow, p)),
            (None, Some(p)) => Some((Policy::Deny, p)),
            _ => None,
        }
    }
}

/// `[[company.call_acl]]`: ordered rules on E.164 destinations.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallAcl {
    /// Unique name within the company.
    pub name: String,
    /// Policy when no rule matches.
    pub default: Policy,
    /// Rules in order; the first match wins.
    #[serde(default)]
    pub rules: Vec<AclRule>,
}
