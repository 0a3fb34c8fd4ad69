//! The shell: the only code that touches the process environment.
//!
//! Today it sets up logging; the io_uring workers, sockets, signals and the
//! clock arrive with the wire issue.

/// Installs the `tracing` subscriber that writes one line per event to
/// stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
