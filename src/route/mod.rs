//! The compiled routing table and the routing decision (DOMAIN.md §3–§5).
pub mod decide;
pub mod matcher;
pub mod numbering;
pub mod publish;
pub mod table;

pub use decide::{Caller, Decision, Target};
pub use numbering::{NumberBuf, Numbering, E164};
pub use publish::{Publisher, Reader, ReloadStats};
pub use table::{BuildOptions, CompiledCompany, RoutingTable};
