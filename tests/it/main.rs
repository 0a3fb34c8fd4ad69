//! Integration tests: one binary (STYLE.md), one module per area.

mod alloc;
mod auth;
mod config;
mod friends;
mod fuzz;
mod proxy;
mod registrar;
mod registration;
mod rfc4475;
mod route;
mod sip_props;
pub mod wire;
