//! The TOML configuration (DOMAIN.md §2) and its validation.
