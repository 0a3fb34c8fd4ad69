//! The compiled routing table and the routing decision (DOMAIN.md §3–§5).
//!
//! A validated [`Config`](crate::config::Config) is compiled into a
//! [`RoutingTable`]: per company, a hash map of extensions and one
//! multi-pattern DFA over all friend patterns ([`matcher`]); per call ACL,
//! one DFA over its rules; platform-wide, a map of DDIs and the carriers'
//! source networks. The table is immutable and shared in an `Arc`;
//! [`Publisher`] swaps in a new one on reload, recompiling only the
//! companies that changed.
//!
//! ```
//! use tandem::route::{Caller, RoutingTable};
//! let config = tandem::config::load("config/tandem.toml").unwrap();
//! let table = RoutingTable::build(&config).unwrap();
//! let acme = table.company("acme.example.com").unwrap();
//! let branch = Caller::Friend(acme.friend_id("branch").unwrap());
//! // branch's own pattern is skipped: the next matching friend wins.
//! let d = table.decide(acme, &branch, "2001", None);
//! assert_eq!(d.to_string(), "friend legacy (pattern 2[0-9]{3}, priority 20)");
//! let d = table.decide(acme, &branch, "944123456", None);
//! assert_eq!(d.to_string(), "external +34944123456 via pstn as +34944000200");
//! assert_eq!(d.status(), None);
//! ```
//!
//! Module map:
//! - [`numbering`]: E.164 normalisation both ways (§5).
//! - [`matcher`]: whole-string multi-pattern matching reporting all matches
//!   (a [`prefix`] trie for `LITERAL[0-9]{n}` patterns, a DFA for the rest).
//! - [`table`]: compiled companies, carriers and indexes.
//! - [`decide`]: [`Decision`] and [`RoutingTable::decide`] (§3, §4.3).
//! - [`publish`]: the live table behind `ArcSwap`, and reload.
//! - `update`: replacing or removing one company without a full diff.
//!
//! This module does not depend on `crate::sip`: it takes numbers as `&str`
//! and returns decisions; the proxy does the SIP.

pub mod decide;
mod index;
pub mod matcher;
pub mod numbering;
pub mod prefix;
pub mod publish;
pub mod table;
mod update;

pub use decide::{Caller, Decision, Target};
pub use numbering::{dialled_number, NumberBuf, Numbering, E164};
pub use publish::{Publisher, Reader, ReloadStats};
pub use table::{
    Account, AccountKind, BuildOptions, CarrierEntry, CarrierId, CompiledCompany, FriendEntry,
    FriendId, RoutingTable, UserEntry, UserId,
};
