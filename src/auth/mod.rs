//! Digest authentication of out-of-dialog requests (RFC 3261 §22,
//! RFC 7616, RFC 8760), sans-IO: time comes in as `now` (Unix seconds), and
//! nothing here touches a socket or the clock.
//!
//! # Overview
//!
//! One [`Authenticator`] serves every worker thread through an `Arc`. For
//! each out-of-dialog request the proxy builds an [`Attempt`] and calls
//! [`Authenticator::check`], which answers [`Outcome::Authenticated`],
//! [`Outcome::Challenge`] (send 401/407 with [`Authenticator::challenges`])
//! or [`Outcome::Banned`] (send nothing).
//!
//! ```text
//!  check(now, attempt, password)
//!    source banned? ───────────────────────────────────────────► Banned
//!    no Digest credentials for any realm ──────────────────────► Challenge
//!    pick the Digest value for our realm   ─ none/other realm ─► refusal
//!    parse: username, realm, nonce, uri, response, qop=auth,
//!           nc, cnonce, algorithm ─ bad ───────────────────────► refusal
//!    nonce MAC + realm + source (nonce.rs) ─ forged ───────────► refusal
//!    ─ from here the nonce proves a round trip with the source ─
//!    algorithm configured ─ no ────────────────────────────────► failure
//!    username == attempt.user ─ no ────────────────────────────► failure
//!    uri's user part (if any) == Request-URI's ─ no ───────────► failure
//!    response == H(HA1:nonce:nc:cnonce:auth:HA2) ─ no ─────────► failure
//!      (unknown user: computed against a dummy password, same answer)
//!    nonce older than nonce_lifetime ──────────────────────────► Challenge{stale}
//!    nc above the last one seen (replay.rs) ─ replay ──────────► Challenge{stale}
//!                                             forgotten ───────► Challenge{stale}
//!    ──────────────────────────────────────────────────────────► Authenticated
//!
//!  failure: one log line for fail2ban, one count in ban.rs; the count
//!  that reaches max_failures bans the source ──► Banned, else ► Challenge
//!  refusal: not counted, logged at most once a second ──────► Challenge
//! ```
//!
//! # What counts towards a ban
//!
//! Only answers to a nonce the switch issued *to that source address* are
//! counted: they prove a round trip, so the source is real. Anything else
//! (no usable credentials, a nonce that is forged or was issued to another
//! address) is refused with a fresh challenge but neither counted nor
//! written as a fail2ban line: such a packet may carry a forged source
//! address, and counting it would let ten spoofed packets ban a friend's
//! address, or a flood of them push real bans out of the table. A refused
//! packet gains its sender nothing: no password is checked against it.
//!
//! # Shared state
//!
//! Nonces are stateless (`nonce.rs`: issue time, a unique counter value
//! and a truncated HMAC over both and the realm; the counter value also
//! tells whether this process issued the nonce, which keeps a restart from
//! reopening replays, since the tables are not persisted). The only
//! tables are the replay table (highest `nc` per used nonce) and the ban
//! table (failure counts per source); both are bounded, sharded over 16
//! `std::sync::Mutex`es, and their module docs explain what happens when
//! they are full — in short, eviction never lets a replay through and never
//! forgets a ban before it forgets a mere count.
//!
//! # Not telling who exists
//!
//! An unknown user costs the same hashing as a known one and fails with the
//! same [`Outcome`] and the same log reason (`wrong-credentials`); the
//! challenge depends only on realm, time and `stale` (DOMAIN.md §6).
//!
//! # Logs
//!
//! Every failure is one `WARN` line in a fixed form for fail2ban:
//!
//! ```text
//! auth failure: user="alice" realm="a.example.com" source=192.0.2.7 reason=wrong-credentials
//! auth ban: source=192.0.2.7 for 900s after 10 failures
//! ```
//!
//! `reason` is one of `wrong-credentials`, `user-mismatch`, `uri-mismatch`
//! or `unsupported-algorithm`. Refusals are one `INFO` line a second at
//! most, `auth refused: ... reason=forged-nonce|wrong-realm|malformed|
//! unsupported-algorithm (N refused since the last line)`, which the
//! fail2ban filter does not match.
//! `user` and `realm` never contain a raw `"`, backslash or non-printable
//! character (they are written as `\xNN` / `\u{N}`), and are cut at 128
//! characters, so a hostile name cannot forge a line or a field.
//!
//! # Example
//!
//! ```
//! use tandem::auth::*;
//! let auth = Authenticator::new(
//!     AuthConfig::from_config(&tandem::config::Auth::default()),
//!     [42; 32],
//! );
//! let now = 1_700_000_000;
//! let source = "192.0.2.7".parse().unwrap();
//! let challenge = &auth.challenges(now, "a.example.com", false, source)[0];
//! let nonce = challenge.split("nonce=\"").nth(1).unwrap().split('"').next().unwrap();
//! let response = digest_response(
//!     Algorithm::Sha256, "alice", "a.example.com", "secret",
//!     "REGISTER", "sip:a.example.com", nonce, "00000001", "0a4f113b",
//! );
//! let header = format!(
//!     "Digest username=\"alice\", realm=\"a.example.com\", nonce=\"{nonce}\", \
//!      uri=\"sip:a.example.com\", response=\"{response}\", algorithm=SHA-256, \
//!      qop=auth, nc=00000001, cnonce=\"0a4f113b\""
//! );
//! let attempt = Attempt {
//!     method: b"REGISTER",
//!     request_uri: b"sip:a.example.com",
//!     realm: "a.example.com",
//!     user: "alice",
//!     credentials: &[header.as_bytes()],
//!     source,
//! };
//! let outcome = auth.check(now + 1, &attempt, |u| (u == "alice").then_some("secret"));
//! assert_eq!(outcome, Outcome::Authenticated);
//! ```

mod ban;
mod digest;
mod nonce;
mod replay;

use std::fmt;
use std::net::IpAddr;

pub use digest::Algorithm;

use ban::{LogSafe, Reason};
use digest::{constant_time_eq, select, Credentials, Inputs, Quoted};

/// The `[auth]` settings, in the units the authenticator uses.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Algorithms offered, in this order; credentials using another are
    /// refused.
    pub algorithms: Vec<Algorithm>,
    /// Seconds a nonce stays valid; older nonces get `stale=true`.
    pub nonce_lifetime: u64,
    /// Failures within `failure_window` that ban a source (0: never).
    pub max_failures: u32,
    /// Seconds over which failures are counted (see `ban.rs`).
    pub failure_window: u64,
    /// Seconds a ban lasts.
    pub ban: u64,
}

impl AuthConfig {
    /// From the validated configuration; unknown algorithm names (already
    /// rejected by validation) are skipped.
    pub fn from_config(c: &crate::config::Auth) -> AuthConfig {
        AuthConfig {
            algorithms: c
                .algorithms
                .iter()
                .filter_map(|a| Algorithm::parse(a))
                .collect(),
            nonce_lifetime: c.nonce_lifetime_s.into(),
            max_failures: c.max_failures,
            failure_window: c.failure_window_s.into(),
            ban: c.ban_s.into(),
        }
    }
}

/// Memory bounds of the shared tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Nonces remembered by the replay table (about 40 bytes each).
    pub replay_entries: usize,
    /// Source addresses tracked by the ban table (about 60 bytes each).
    pub ban_entries: usize,
}

impl Default for Limits {
    /// 2^20 nonces (≈ 3,500 new nonces per second with a 300 s lifetime
    /// before the table is full) and 2^16 addresses.
    fn default() -> Limits {
        Limits {
            replay_entries: 1 << 20,
            ban_entries: 1 << 16,
        }
    }
}

/// What the proxy passes in for one out-of-dialog request.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// Request method, e.g. `b"REGISTER"`.
    pub method: &'a [u8],
    /// The Request-URI, as on the wire: the digest `uri` must name the
    /// same user, if it names one.
    pub request_uri: &'a [u8],
    /// The company domain.
    pub realm: &'a str,
    /// Identity the request claims: From user (To user for REGISTER),
    /// unescaped.
    pub user: &'a str,
    /// Every Authorization (REGISTER) or Proxy-Authorization (others)
    /// header value, as on the wire.
    pub credentials: &'a [&'a [u8]],
    /// For failure counting, bans and logs.
    pub source: IpAddr,
}

/// The decision on one [`Attempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Credentials valid for realm and user, nonce fresh, `nc` new.
    Authenticated,
    /// Answer 401/407 with [`Authenticator::challenges`]`(now, realm, stale)`.
    Challenge {
        /// The credentials were right but the nonce is too old (or
        /// forgotten): the client should retry without asking its user.
        stale: bool,
    },
    /// The source is banned: send nothing.
    Banned,
}

/// The digest authenticator shared by all workers.
pub struct Authenticator {
    /// Replaced whole on a reload (SIGHUP); nonces, replay counters and
    /// bans carry over.
    cfg: arc_swap::ArcSwap<AuthConfig>,
    nonces: nonce::Nonces,
    replay: replay::ReplayTable,
    bans: ban::BanTable,
    /// Hashed for unknown users so they cost what known ones cost.
    dummy_password: String,
    /// Refusals (see the module docs) since the last one logged, and the
    /// second it was logged in.
    refused: std::sync::atomic::AtomicU64,
    refused_logged: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("cfg", &self.cfg.load())
            .field("replay_entries", &self.replay.len())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator with the default [`Limits`]. `secret` keys the
    /// nonces: keep it across restarts (nonces issued before a restart stay
    /// usable, answered `stale`) and never log it.
    pub fn new(cfg: AuthConfig, secret: [u8; 32]) -> Authenticator {
        Self::with_limits(cfg, secret, Limits::default())
    }

    /// An authenticator whose tables hold at most `limits` entries.
    pub fn with_limits(cfg: AuthConfig, secret: [u8; 32], limits: Limits) -> Authenticator {
        let dummy = nonce::derive(&secret, b"tandem auth dummy password");
        Authenticator {
            cfg: arc_swap::ArcSwap::from_pointee(cfg),
            nonces: nonce::Nonces::new(&secret),
            replay: replay::ReplayTable::new(limits.replay_entries),
            bans: ban::BanTable::new(limits.ban_entries),
            dummy_password: dummy.iter().map(|b| format!("{b:02x}")).collect(),
            refused: std::sync::atomic::AtomicU64::new(0),
            refused_logged: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> std::sync::Arc<AuthConfig> {
        self.cfg.load_full()
    }

    /// Puts new settings in force (a configuration reload): offered
    /// algorithms, nonce lifetime and ban policy apply from the next
    /// request; nonces already issued stay valid under the new lifetime,
    /// and counts and bans in progress are kept.
    pub fn set_config(&self, cfg: AuthConfig) {
        self.cfg.store(std::sync::Arc::new(cfg));
    }

    /// Whether `source` is banned: the fast check done before anything
    /// else for non-carrier sources.
    pub fn is_banned(&self, now: u64, source: IpAddr) -> bool {
        self.bans.is_banned(now, source)
    }

    /// Checks the credentials of one out-of-dialog request. `password(user)`
    /// returns the configured password of terminal/friend `user` in
    /// `attempt.realm`, or `None`; it is called at most once. The password
    /// may borrow from anywhere (lifetime `'p`), not only from the name.
    pub fn check<'p>(
        &self,
        now: u64,
        attempt: &Attempt<'_>,
        password: impl FnOnce(&str) -> Option<&'p str>,
    ) -> Outcome {
        if self.bans.is_banned(now, attempt.source) {
            return Outcome::Banned;
        }
        match self.verify(now, attempt, password) {
            Ok(outcome) => outcome,
            Err(reason) => self.fail(now, attempt, reason),
        }
    }

    fn verify<'p>(
        &self,
        now: u64,
        attempt: &Attempt<'_>,
        password: impl FnOnce(&str) -> Option<&'p str>,
    ) -> Result<Outcome, Reason> {
        let Some(value) = select(attempt.credentials, attempt.realm)? else {
            // A first request without credentials (or only other schemes,
            // RFC 4475 `regaut01`): challenge, not a failure.
            return Ok(Outcome::Challenge { stale: false });
        };
        let c = Credentials::parse(&value)?;
        let nonce = self
            .nonces
            .verify(now, attempt.realm, attempt.source, &c.nonce)
            .ok_or(Reason::ForgedNonce)?;
        // The nonce was issued to this source: what fails from here counts.
        let cfg = self.cfg.load();
        if !cfg.algorithms.contains(&c.algorithm) {
            return Err(Reason::UnsupportedAlgorithm);
        }
        if *c.username != *attempt.user.as_bytes() {
            return Err(Reason::UserMismatch);
        }
        if !uri_names_request_user(&c.uri, attempt.request_uri) {
            return Err(Reason::UriMismatch);
        }
        let pw = password(attempt.user);
        let expected = digest::response(&Inputs {
            alg: c.algorithm,
            username: &c.username,
            realm: &c.realm,
            password: pw.unwrap_or(&self.dummy_password).as_bytes(),
            method: attempt.method,
            uri: &c.uri,
            nonce: &c.nonce,
            nc: c.nc_text,
            cnonce: &c.cnonce,
        });
        // `&`, not `&&`: both operands are always evaluated.
        if !(constant_time_eq(expected.as_bytes(), &c.response) & pw.is_some()) {
            return Err(Reason::WrongCredentials);
        }
        if now.saturating_sub(nonce.issued_at) > cfg.nonce_lifetime {
            return Ok(Outcome::Challenge { stale: true });
        }
        match self
            .replay
            .check(now, cfg.nonce_lifetime, nonce.own, &nonce.key, c.nc)
        {
            replay::Verdict::Fresh => Ok(Outcome::Authenticated),
            replay::Verdict::Stale => Ok(Outcome::Challenge { stale: true }),
            // Refused, with a fresh nonce, but no failure: the password
            // was right, and the likeliest sender is the phone itself
            // retransmitting a request whose answer was lost after its
            // transaction ended. Counting it would let a lossy link ban
            // the phone (and everyone behind its NAT).
            replay::Verdict::Replay => {
                tracing::info!(
                    "auth replay refused: user=\"{}\" realm=\"{}\" source={}",
                    LogSafe(attempt.user),
                    LogSafe(attempt.realm),
                    attempt.source
                );
                Ok(Outcome::Challenge { stale: true })
            }
        }
    }

    /// Logs and counts a failure; bans the source when it is one too many.
    /// A refusal (a reason that can come before the nonce proves the
    /// source) is neither counted nor written as a fail2ban line.
    fn fail(&self, now: u64, attempt: &Attempt<'_>, reason: Reason) -> Outcome {
        if !reason.counted() {
            self.log_refusal(now, attempt, reason);
            return Outcome::Challenge { stale: false };
        }
        tracing::warn!(
            "auth failure: user=\"{}\" realm=\"{}\" source={} reason={}",
            LogSafe(attempt.user),
            LogSafe(attempt.realm),
            attempt.source,
            reason.as_str()
        );
        let cfg = self.cfg.load();
        let policy = ban::Policy {
            max_failures: cfg.max_failures,
            window: cfg.failure_window,
            ban: cfg.ban,
        };
        match self.bans.fail(now, attempt.source, &policy) {
            Some(failures) => {
                tracing::warn!(
                    "auth ban: source={} for {}s after {} failures",
                    attempt.source,
                    cfg.ban,
                    failures
                );
                Outcome::Banned
            }
            None => Outcome::Challenge { stale: false },
        }
    }

    /// One INFO line a second at most for refusals, with how many there
    /// were: a flood of forged packets is not a flood of log lines.
    fn log_refusal(&self, now: u64, attempt: &Attempt<'_>, reason: Reason) {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.refused.fetch_add(1, Relaxed) + 1;
        let last = self.refused_logged.load(Relaxed);
        if now > last
            && self
                .refused_logged
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.refused.fetch_sub(n, Relaxed);
            tracing::info!(
                "auth refused: user=\"{}\" realm=\"{}\" source={} reason={} ({} refused since the last line)",
                LogSafe(attempt.user),
                LogSafe(attempt.realm),
                attempt.source,
                reason.as_str(),
                n
            );
        }
    }

    /// The header values of a challenge to `source`: one
    /// `Digest realm="..", nonce="..", algorithm=.., qop="auth"[, stale=true]`
    /// per configured algorithm, in configured order, all with the same
    /// fresh nonce (a client answers only one of them).
    ///
    /// A realm that is an IP address (a request naming the switch's
    /// address as its domain, as scanners do) belongs to no account, so no
    /// answer to it can succeed: MD5 is offered first there, so that
    /// MD5-only tools (SIPVicious' `svcrack`, which gives up on a SHA-256
    /// challenge) go on to guesses that count towards a ban instead of
    /// moving on unnoticed; it is offered there even when `auth.algorithms`
    /// leaves it out (an answer with it is then a counted failure, like
    /// any other answer in that realm). Company realms keep the configured
    /// order, except for a request from a known scanner
    /// ([`Authenticator::challenges_to`]).
    pub fn challenges(&self, now: u64, realm: &str, stale: bool, source: IpAddr) -> Vec<String> {
        self.challenges_to(now, realm, stale, source, false)
    }

    /// [`Authenticator::challenges`] for a request from a known scanner
    /// (`scanner`, see [`is_scanner`]): MD5 first in company realms too
    /// (when configured), so that its guesses count towards a ban and show
    /// in the log instead of the tool giving up on SHA-256 unnoticed.
    pub fn challenges_to(
        &self,
        now: u64,
        realm: &str,
        stale: bool,
        source: IpAddr,
        scanner: bool,
    ) -> Vec<String> {
        let nonce = self.nonces.issue(now, realm, source);
        // `realm` is written as a quoted-string; a domain has nothing to
        // escape, so the common case copies it as it is.
        let quoted = if realm.contains(['"', '\\']) {
            std::borrow::Cow::Owned(Quoted(realm).to_string())
        } else {
            std::borrow::Cow::Borrowed(realm)
        };
        let cfg = self.cfg.load();
        let mut algorithms = cfg.algorithms.clone();
        if realm
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok()
        {
            algorithms.retain(|a| *a != Algorithm::Md5);
            algorithms.insert(0, Algorithm::Md5);
        } else if scanner {
            algorithms.sort_by_key(|a| *a != Algorithm::Md5);
        }
        algorithms
            .iter()
            .map(|alg| {
                let mut v = String::with_capacity(80 + quoted.len() + nonce.len());
                v.push_str("Digest realm=\"");
                v.push_str(&quoted);
                v.push_str("\", nonce=\"");
                v.push_str(&nonce);
                v.push_str("\", algorithm=");
                v.push_str(alg.as_str());
                v.push_str(", qop=\"auth\"");
                if stale {
                    v.push_str(", stale=true");
                }
                v
            })
            .collect()
    }
}

/// Whether a User-Agent is one of the SIP scanners seen attacking
/// platforms (SIPVicious' `friendly-scanner`, `sipcli`, `VaxSIPUserAgent`,
/// …): its first product token, case-insensitively, up to `/` or a space
/// (a phone named `SIPClient-…` is not `sipcli`). Only the challenge's
/// algorithm order depends on it ([`Authenticator::challenges_to`]).
pub fn is_scanner(user_agent: &[u8]) -> bool {
    const SCANNERS: [&[u8]; 8] = [
        b"friendly-scanner",
        b"sipvicious",
        b"sipcli",
        b"vaxsipuseragent",
        b"pplsip",
        b"sundayddr",
        b"iwar",
        b"sivus",
    ];
    let ua = crate::sip::scan::trim(user_agent);
    let product = ua
        .iter()
        .position(|&b| b == b'/' || b == b' ' || b == b'\t')
        .map_or(ua, |end| &ua[..end]);
    SCANNERS.iter().any(|s| product.eq_ignore_ascii_case(s))
}

/// The `username` of the Digest credentials among `credentials` that
/// [`Authenticator::check`] would check for `realm` (the first for that
/// realm), unescaped; `None` when there are none or they do not parse.
/// For a friend whose PBX writes the caller's number as From user (see
/// `docs/friends.md`): the account is then the one the credentials name.
pub fn digest_username(credentials: &[&[u8]], realm: &str) -> Option<String> {
    let value = select(credentials, realm).ok()??;
    let c = Credentials::parse(&value).ok()?;
    String::from_utf8(c.username.into_owned()).ok()
}

/// Whether the digest `uri` (RFC 7616 §3.4.6: the server must check it
/// against the Request-URI) names the user the Request-URI names. Only the
/// user part is compared, unescaped: it is what routing reads (the dialled
/// number), and clients differ in the rest (SIPp, for one, writes the
/// switch's address, without a user, whatever it calls). A `uri` without
/// a user part is accepted as it is.
fn uri_names_request_user(uri: &[u8], request_uri: &[u8]) -> bool {
    use crate::sip::{unescape, Uri};
    // The common cases, without parsing: the very Request-URI, or no user
    // part (a SIP URI names one before an `@`).
    if uri == request_uri || !uri.contains(&b'@') {
        return true;
    }
    let Some(user) = Uri::parse(uri)
        .ok()
        .and_then(|u| u.as_sip().and_then(|s| s.user))
    else {
        return true;
    };
    let wanted = Uri::parse(request_uri).ok().and_then(|u| u.user());
    wanted.is_some_and(|w| unescape(w) == unescape(user))
}

/// For tests and clients: the `response` value of RFC 7616 §3.4.1 with
/// `qop=auth`, as lowercase hex.
#[allow(clippy::too_many_arguments)] // mirrors the RFC's inputs one to one
pub fn digest_response(
    alg: Algorithm,
    user: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
) -> String {
    let h = digest::response(&Inputs {
        alg,
        username: user.as_bytes(),
        realm: realm.as_bytes(),
        password: password.as_bytes(),
        method: method.as_bytes(),
        uri: uri.as_bytes(),
        nonce: nonce.as_bytes(),
        nc: nc.as_bytes(),
        cnonce: cnonce.as_bytes(),
    });
    String::from_utf8(h.as_bytes().to_vec()).expect("hex is ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticator_is_shareable() {
        fn is<T: Send + Sync>() {}
        is::<Authenticator>();
    }
}
