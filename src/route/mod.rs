//! The compiled routing table and the routing decision (DOMAIN.md §3–§5).
pub mod matcher;
pub mod numbering;
pub use numbering::{Numbering, E164, NumberBuf};
