//! Integration tests: one binary (STYLE.md), one module per area.

mod alloc;
mod fuzz;
mod proxy;
mod rfc4475;
mod sip_props;
