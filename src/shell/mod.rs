//! The shell: the only code that touches sockets, threads, signals and the
//! clock.
//!
//! [`run`] loads the configuration, publishes the routing table, starts one
//! worker thread per core ([`worker`]: a tokio-uring runtime with its own
//! `SO_REUSEPORT` sockets and its own [`crate::proxy::Proxy`]), and then
//! waits for signals on the main thread: `SIGHUP` reloads the configuration
//! (a bad one is logged and the running table kept), `SIGTERM`/`SIGINT` stop
//! the process.

pub mod worker;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::config;
use crate::proxy::{timer::TimerConfig, ProxyConfig, Transport};
use crate::route::Publisher;

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

/// One listening socket.
#[derive(Debug, Clone, Copy)]
pub struct Listen {
    /// UDP or TCP.
    pub transport: Transport,
    /// Address and port.
    pub addr: SocketAddr,
}

/// Parses a `server.listen` entry (`udp:IP:PORT` / `tcp:IP:PORT`).
pub fn parse_listen(s: &str) -> Option<Listen> {
    let (proto, rest) = s.split_once(':')?;
    let transport = match proto {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        _ => return None,
    };
    Some(Listen {
        transport,
        addr: rest.parse().ok()?,
    })
}

/// Live transactions per worker before new requests get `503`.
const MAX_TRANSACTIONS_PER_WORKER: usize = 200_000;

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    u64::from_le_bytes(b) ^ u64::from(std::process::id())
}

/// Runs the switch on the configuration at `path` until a signal stops it.
pub fn run(path: &Path) -> Result<(), String> {
    let cfg = config::load(path).map_err(|e| e.to_string())?;
    let publisher = Arc::new(Publisher::new(&cfg).map_err(|e| e.to_string())?);
    let listen: Vec<Listen> = cfg
        .server
        .listen
        .iter()
        .map(|l| {
            parse_listen(l)
                .ok_or_else(|| format!("server.listen: {l:?} is not udp:IP:PORT or tcp:IP:PORT"))
        })
        .collect::<Result<_, _>>()?;
    let first = listen.first().ok_or("server.listen is empty")?;
    let listen_port = first.addr.port();
    let advertised_host = cfg
        .server
        .advertised_host
        .clone()
        .unwrap_or_else(|| first.addr.ip().to_string());
    let workers = match cfg.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    };
    // SO_REUSEPORT would let a second switch (or a stale one) share the
    // ports silently and take half the traffic: a plain bind first proves
    // each address is free.
    for l in &listen {
        let probe = match l.transport {
            Transport::Udp => std::net::UdpSocket::bind(l.addr).map(drop),
            Transport::Tcp => std::net::TcpListener::bind(l.addr).map(drop),
        };
        probe.map_err(|e| {
            format!(
                "cannot listen on {}:{}: {e}",
                l.transport.as_str().to_lowercase(),
                l.addr
            )
        })?;
    }
    let seed = random_seed();
    // Independent of the seed, whose low bits appear in branches and tags.
    let secret =
        random_seed().rotate_left(17) ^ seed.rotate_right(29).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    tracing::info!(workers, ?listen, %advertised_host, "tandem starting");

    for index in 0..workers {
        let proxy_cfg = ProxyConfig {
            advertised_host: advertised_host.clone(),
            listen_port,
            worker_port: 0,
            worker: index as u16,
            max_transactions: MAX_TRANSACTIONS_PER_WORKER,
            timers: TimerConfig::default(),
            seed: seed.rotate_left(index as u32 * 8),
            secret,
        };
        let reader = publisher.reader();
        let listen = listen.clone();
        std::thread::Builder::new()
            .name(format!("tandem-worker-{index}"))
            .spawn(move || {
                if let Err(e) = worker::run(index, listen, proxy_cfg, reader) {
                    tracing::error!(worker = index, error = %e, "worker failed");
                    std::process::exit(1);
                }
            })
            .map_err(|e| e.to_string())?;
    }

    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| e.to_string())?;
    for sig in signals.forever() {
        if sig == signal_hook::consts::SIGHUP {
            match config::load(path)
                .map_err(|e| e.to_string())
                .and_then(|c| publisher.reload(&c).map_err(|e| e.to_string()))
            {
                Ok(_) => tracing::info!(config = %path.display(), "configuration reloaded"),
                Err(e) => {
                    tracing::error!(config = %path.display(), "reload refused, running table kept: {e}")
                }
            }
        } else {
            tracing::info!(signal = sig, "stopping");
            return Ok(());
        }
    }
    Ok(())
}
