//! Integration tests: one binary (STYLE.md), one module per area.
