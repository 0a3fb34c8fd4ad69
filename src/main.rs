//! The `tandem` command line.
//!
//! - `tandem run [--config FILE]`: runs the switch until SIGTERM/SIGINT;
//!   SIGHUP reloads the configuration.
//! - `tandem check [--config FILE]`: exit 0 and a one-line summary on stdout
//!   when valid; exit 1 and one line per problem on stderr otherwise.
//! - `tandem route [--config FILE] --company DOMAIN|NAME --from CALLER [--presented N] NUMBER`:
//!   CALLER is a user or friend name, `user:NAME`, `friend:NAME` or
//!   `carrier:NAME`; prints on stdout the routing decision in one line (DOMAIN.md §3);
//!   exit 0, exit 2 for an unknown company or caller, exit 1 for an
//!   invalid configuration (problems on stderr).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tandem::config::{self, Config};
use tandem::route::RoutingTable;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "tandem", version, about = "Tandem SIP switch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the switch.
    Run {
        /// Configuration file.
        #[arg(long, default_value = "config/tandem.toml")]
        config: PathBuf,
    },
    /// Validate a configuration: a summary, or every problem with its place.
    Check {
        /// Configuration file.
        #[arg(long, default_value = "config/tandem.toml")]
        config: PathBuf,
    },
    /// Explain where a call would go, without any network.
    Route {
        /// Configuration file.
        #[arg(long, default_value = "config/tandem.toml")]
        config: PathBuf,
        /// The caller's company, by SIP domain or by name.
        #[arg(long)]
        company: String,
        /// The caller: a user or friend name, `user:NAME`, `friend:NAME`
        /// or `carrier:NAME` (a bare name that is both a user and a friend
        /// is refused).
        #[arg(long)]
        from: String,
        /// The caller's presented number (P-Asserted-Identity or From user).
        #[arg(long)]
        presented: Option<String>,
        /// The dialled number (Request-URI user part).
        number: String,
    },
}

fn main() -> ExitCode {
    tandem::shell::init_logging();
    match Cli::parse().command {
        Command::Run { config } => {
            let Some(cfg) = load(&config) else {
                return ExitCode::from(1);
            };
            tracing::info!(config = %config.display(), "{}", cfg.summary());
            match tandem::shell::run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tandem run: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Check { config } => {
            let Some(cfg) = load(&config) else {
                return ExitCode::from(1);
            };
            match RoutingTable::build(&cfg) {
                Ok(_) => {
                    println!("{}: ok: {}", config.display(), cfg.summary());
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Route {
            config,
            company,
            from,
            presented,
            number,
        } => {
            let Some(cfg) = load(&config) else {
                return ExitCode::from(1);
            };
            let table = match RoutingTable::build(&cfg) {
                Ok(t) => t,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(1);
                }
            };
            let found = table
                .company(&company)
                .or_else(|| table.company_by_name(&company));
            let Some(company) = found else {
                eprintln!("unknown company {company:?} (neither a domain nor a name)");
                return ExitCode::from(2);
            };
            let Some(caller) = table.caller_by_name(company, &from) else {
                if table.caller_is_ambiguous(company, &from) {
                    eprintln!(
                        "caller {from:?} in {} is both a user and a friend: write user:{from} or friend:{from}",
                        company.domain
                    );
                } else {
                    eprintln!(
                        "unknown caller {from:?} in {} (a user, a friend, user:NAME, friend:NAME or carrier:NAME)",
                        company.domain
                    );
                }
                return ExitCode::from(2);
            };
            // Read as the switch reads a Request-URI's user part: escapes
            // (`%32001`) undone first.
            let number = tandem::sip::unescape(number.as_bytes());
            let number = String::from_utf8_lossy(&number);
            println!(
                "{}",
                table.decide(
                    company,
                    &caller,
                    &tandem::route::dialled_number(&number, None),
                    presented.as_deref()
                )
            );
            ExitCode::SUCCESS
        }
    }
}

/// Loads and validates `path`, printing every problem on stderr.
fn load(path: &std::path::Path) -> Option<Config> {
    match config::load(path) {
        Ok(c) => Some(c),
        Err(errors) => {
            eprintln!("{errors}");
            None
        }
    }
}
