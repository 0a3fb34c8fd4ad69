//! The compiled routing table and the routing decision (DOMAIN.md §3–§5).
