//! `imss-upgrade`: upgrades an IMSS 7.1 server to 9.1 in place.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use imss_upgrade::{cli, exit, logging, root::Root, status};

/// Upgrade InterScan Messaging Security Suite 7.1 to 9.1 in place, with
/// automatic rollback.
#[derive(Parser)]
#[command(version, after_help = exit::HELP)]
struct Cli {
    /// Directory the server is installed under (as `rpm --root`).
    #[arg(long, global = true, default_value = "/", value_name = "DIR")]
    root: PathBuf,
    /// Show debug lines on stderr.
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what is installed: product version and build, components, and
    /// the admin database settings (password masked).
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = cli::parse();
    cli::finish(run(cli).await)
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    logging::init(logging::LogOptions {
        identifier: logging::SYSLOG_IDENTIFIER,
        install_log: None,
        verbose: cli.verbose,
    })?;
    let root = Root::new(&cli.root)?;
    match cli.command {
        Command::Status { json } => status::run(&root, json).await,
    }
}
