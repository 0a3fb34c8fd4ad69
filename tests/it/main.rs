//! Integration tests: one binary (STYLE.md), one module per area.

mod alloc;
mod auth;
mod config;
mod fuzz;
mod proxy;
mod registration;
mod registrar;
mod rfc4475;
mod route;
mod sip_props;
pub mod wire;
