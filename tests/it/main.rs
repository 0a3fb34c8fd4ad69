//! Integration tests: one binary (STYLE.md), one module per area.
mod config;
mod route;
