//! Digest authentication (being built).
