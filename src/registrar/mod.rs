//! The registrar (being built).
