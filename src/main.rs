//! The `tandem` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Run the switch (today: load the configuration and report; the wire
    /// layer is not built yet).
    Run {
        /// Configuration file.
        #[arg(long, default_value = "config/tandem.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    tandem::shell::init_logging();
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            eprintln!(
                "tandem run: configuration {} (the SIP wire layer is not built yet)",
                config.display()
            );
            ExitCode::SUCCESS
        }
    }
}
