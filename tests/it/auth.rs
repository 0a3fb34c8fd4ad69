//! Digest authentication tests (being built).
