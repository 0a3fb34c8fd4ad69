//! The shell: the only code that touches sockets, threads, signals and the
//! clock.
//!
//! [`run`] loads the configuration, publishes the routing table, starts one
//! worker thread per core ([`worker`]: a tokio-uring runtime with its own
//! `SO_REUSEPORT` sockets and its own [`crate::proxy::Proxy`]), and then
//! waits for signals on the main thread: `SIGHUP` reloads the configuration
//! (a bad one is logged and the running table kept), `SIGTERM`/`SIGINT` stop
//! the process.

pub mod mmsg;
pub mod persist;
mod tcp;
pub mod worker;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::auth::{AuthConfig, Authenticator};
use crate::config;
use crate::proxy::{timer::TimerConfig, ProxyConfig, Services, Transport, WallClock};
use crate::registrar::{Registrar, RegistrarConfig};
use crate::route::Publisher;

/// Installs the `tracing` subscriber that writes one line per event to
/// stderr, filtered by `RUST_LOG` (default `info`). Colours only on a
/// terminal (and not with `NO_COLOR`): a log file or journal read by
/// fail2ban or grep gets plain text.
pub fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Raises the soft limit on open descriptors to the hard one (the soft
/// limit is often 1,024, too few for `server.tcp_max_connections`), and
/// warns when even that is short of `needed`.
fn raise_open_files(needed: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
        lim.rlim_cur
    };
    if soft < needed {
        tracing::warn!(
            limit = soft,
            needed,
            "the open-files limit is below what server.tcp_max_connections needs: \
             raise it (ulimit -n, or LimitNOFILE= in a systemd unit)"
        );
    }
}

/// `a` as the core sees it: an IPv4 peer reaching a dual-stack (`[::]`)
/// socket arrives as `::ffff:a.b.c.d`, and is taken as the IPv4 address
/// it is, so carrier sources, bans, dialog parties, `received` and
/// Contacts fixed for NAT all see one form of it.
pub(crate) fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

/// `to` as a socket of the family `v6` sends to it: an IPv4 destination
/// is mapped (`::ffff:a.b.c.d`) for an IPv6 (dual-stack) socket.
pub(crate) fn on_socket(to: SocketAddr, v6: bool) -> SocketAddr {
    match to {
        SocketAddr::V4(v4) if v6 => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        _ => to,
    }
}

/// One listening socket.
#[derive(Debug, Clone, Copy)]
pub struct Listen {
    /// UDP or TCP.
    pub transport: Transport,
    /// Address and port.
    pub addr: SocketAddr,
}

/// A dual-stack switch's other family (see `ProxyConfig::alt`): the
/// first listen address of the family the advertised host is not of (not
/// a wildcard: peers could not be told where to come back), with its UDP
/// and TCP ports. `None` when the switch listens in one family only.
fn alt_family(listen: &[Listen], advertised_host: &str) -> Option<crate::proxy::AltFamily> {
    let v6 = match advertised_host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_ipv6(),
        Err(_) => listen.first()?.addr.is_ipv6(),
    };
    let host = listen
        .iter()
        .map(|l| l.addr.ip())
        .find(|ip| ip.is_ipv6() != v6 && !ip.is_unspecified())?;
    let port_of = |t: Transport| {
        listen
            .iter()
            .find(|l| l.transport == t && l.addr.ip() == host)
            .map(|l| l.addr.port())
    };
    let udp_port = port_of(Transport::Udp).unwrap_or(0);
    let tcp_port = port_of(Transport::Tcp).unwrap_or(udp_port);
    Some(crate::proxy::AltFamily {
        host,
        udp_port,
        tcp_port,
    })
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

/// The switch's secret: 32 random bytes kept in `data_dir/secret` (mode
/// 0600), created on first start. Nonces and dialog tokens are keyed with
/// it, so a restart invalidates neither live nonces nor the Record-Route
/// of calls in progress.
fn load_secret(dir: &Path) -> Result<[u8; 32], String> {
    use std::io::{Read, Write};
    let path = dir.join("secret");
    let mut secret = [0u8; 32];
    match std::fs::File::open(&path) {
        Ok(mut f) => {
            f.read_exact(&mut secret)
                .map_err(|e| format!("{}: {e} (delete it to make a new one)", path.display()))?;
            return Ok(secret);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    let tmp = dir.join("secret.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode_0600()
            .open(&tmp)?;
        f.write_all(&secret)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(secret)
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

/// How long an address in use at start is tried again (see [`run`]).
const PORT_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The `[server]` settings that differ between the running switch and a
/// reloaded configuration but need a restart to take effect.
fn restart_needed(running: &config::Server, new: &config::Server) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if running.listen != new.listen {
        changed.push("listen");
    }
    if running.advertised_host != new.advertised_host {
        changed.push("advertised_host");
    }
    if running.workers != new.workers {
        changed.push("workers");
    }
    if running.data_dir != new.data_dir {
        changed.push("data_dir");
    }
    changed
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
    // Record-Route and Via name the port of their transport: UDP and TCP
    // may listen on different ones.
    let port_of = |t: Transport| {
        listen
            .iter()
            .find(|l| l.transport == t)
            .map(|l| l.addr.port())
    };
    // No UDP listen address: 0, and UDP entries name the worker's own
    // port (the only UDP socket there is).
    let listen_port = port_of(Transport::Udp).unwrap_or(0);
    let tcp_port = port_of(Transport::Tcp).unwrap_or(listen_port);
    // The host as an address or name (an IPv6 one without brackets: the
    // proxy brackets it where a URI or Via needs them).
    let advertised_host = cfg
        .server
        .advertised_host
        .as_deref()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        .unwrap_or_else(|| first.addr.ip().to_string());
    let alt = alt_family(&listen, &advertised_host);
    let workers = match cfg.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    };
    // SO_REUSEPORT would let a second switch (or a stale one) share the
    // ports silently and take half the traffic: a plain bind first proves
    // each address is free.
    //
    // A switch killed a moment ago may still hold them for a moment (the
    // kernel tears an io_uring instance down asynchronously once its
    // process is gone, and the sockets its pending operations hold go
    // with it), so an address in use is tried again for up to
    // PORT_RELEASE_WAIT: a restart right after a crash, as systemd's
    // Restart= does it, should not fail for that.
    for l in &listen {
        let probe = || match l.transport {
            Transport::Udp => std::net::UdpSocket::bind(l.addr).map(drop),
            Transport::Tcp => std::net::TcpListener::bind(l.addr).map(drop),
        };
        let deadline = std::time::Instant::now() + PORT_RELEASE_WAIT;
        let mut result = probe();
        while matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
            result = probe();
        }
        result.map_err(|e| {
            format!(
                "cannot listen on {}:{}: {e}",
                l.transport.as_str().to_lowercase(),
                l.addr
            )
        })?;
    }
    // The TCP connections, plus each worker's sockets, io_uring, timers,
    // and the log.
    raise_open_files(u64::from(cfg.server.tcp_max_connections) + 64 * workers as u64 + 64);
    let seed = random_seed();
    let data_dir = Path::new(&cfg.server.data_dir);
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("server.data_dir {}: {e}", data_dir.display()))?;
    let key = load_secret(data_dir)?;
    // The dialog-token key, derived from the secret (the nonces use the
    // secret itself): HMAC(secret, label).
    let secret: [u8; 32] = {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(b"tandem dialog token v1");
        mac.finalize().into_bytes().into()
    };
    let auth = Arc::new(Authenticator::new(AuthConfig::from_config(&cfg.auth), key));
    let registrar = Arc::new(Registrar::new(RegistrarConfig::from_config(&cfg.registrar)));
    let opened = persist::open(data_dir, registrar.clone(), persist::now_unix())
        .map_err(|e| format!("registrar log in {}: {e}", data_dir.display()))?;
    tracing::info!(
        bindings = opened.bindings,
        records = opened.replay.records,
        torn = opened.replay.torn,
        took_ms = opened.took.as_millis() as u64,
        "registrations loaded"
    );
    let clock = WallClock {
        at: std::time::Instant::now(),
        unix: persist::now_unix(),
    };
    let (senders, mut receivers): (Vec<_>, Vec<_>) = (0..workers).map(|_| worker::inbox()).unzip();
    let inboxes: worker::Inboxes = Arc::new(senders);
    // What a reload cannot change (sockets, threads, data): compared with
    // each reloaded configuration to say so.
    let running = cfg.server.clone();
    let tunables = Arc::new(worker::Tunables::new(&cfg));
    tracing::info!(workers, ?listen, %advertised_host, ?alt, "tandem starting");

    for index in 0..workers {
        let proxy_cfg = ProxyConfig {
            advertised_host: advertised_host.clone(),
            listen_port,
            tcp_port,
            worker_port: 0,
            alt,
            worker: index as u16,
            max_transactions: MAX_TRANSACTIONS_PER_WORKER,
            timers: TimerConfig::default(),
            seed: seed.rotate_left(index as u32 * 8),
            secret,
        };
        let reader = publisher.reader();
        let listen = listen.clone();
        let shared = worker::Shared {
            services: Services {
                auth: auth.clone(),
                registrar: registrar.clone(),
                workers: workers as u16,
                clock,
            },
            persister: opened.persister.clone(),
            inboxes: inboxes.clone(),
            tunables: tunables.clone(),
        };
        let inbox = receivers.remove(0);
        std::thread::Builder::new()
            .name(format!("tandem-worker-{index}"))
            .spawn(move || {
                if let Err(e) = worker::run(index, listen, proxy_cfg, reader, shared, inbox) {
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
                .and_then(|c| publisher.reload(&c).map(|_| c).map_err(|e| e.to_string()))
            {
                Ok(c) => {
                    // The routing table took it: so do the authenticator
                    // and the registrar (their settings are already valid).
                    auth.set_config(AuthConfig::from_config(&c.auth));
                    registrar.set_config(RegistrarConfig::from_config(&c.registrar));
                    tunables.set(&c);
                    for field in restart_needed(&running, &c.server) {
                        tracing::warn!(
                            "server.{field} changed: it takes effect at the next restart"
                        );
                    }
                    tracing::info!(config = %path.display(), "configuration reloaded")
                }
                Err(e) => {
                    // One log line per problem, each with its level and
                    // time: log shippers and `grep ERROR` see them all.
                    let problems: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
                    tracing::error!(
                        config = %path.display(),
                        "reload refused, running table kept: {} problem(s)",
                        problems.len()
                    );
                    for p in problems {
                        tracing::error!(config = %path.display(), "reload refused: {p}");
                    }
                }
            }
        } else {
            tracing::info!(signal = sig, "stopping");
            return Ok(());
        }
    }
    Ok(())
}
