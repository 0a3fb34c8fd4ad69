//! Tandem: a multi-tenant SIP switch.
//!
//! The crate is a sans-IO core inside a thin shell. Everything that decides
//! what to do with a message is deterministic and testable without sockets;
//! only [`shell`] touches the network, threads, signals and the clock.
//!
//! ```text
//!             datagram / TCP bytes (bytes::Bytes)
//!                          |
//!   shell ---------------> sip::parse      framing + header index (zero-copy)
//!   (sockets, threads,     sip::validate   400 / 416 / 420 / 483 / 505 / drop
//!    clock, signals)            |
//!                          route           config -> compiled table -> Decision
//!                               |
//!                          proxy           transactions, forwarding  (later)
//!                               |
//!   shell <--------------- sip::edit       Via / R-URI / Record-Route edits
//! ```
//!
//! Module map:
//! - [`sip`]: the wire format only (parse, typed views, edits, validation).
//! - [`config`]: the TOML configuration and its validation.
//! - [`route`]: the compiled routing table and the routing decision.
//! - [`auth`]: digest authentication, stateless nonces, replay and ban
//!   tables (sans-IO, time as an argument).
//! - [`registrar`]: bindings shared by all workers, and their log records.
//! - [`shell`]: process-level glue (logging; sockets and workers later).

pub mod auth;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod proxy;
pub mod registrar;
pub mod route;
pub mod shell;
pub mod sip;
