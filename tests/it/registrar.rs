//! Registrar tests (being built).
