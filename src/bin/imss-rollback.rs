//! `imss-rollback`: puts a server that was upgraded to 9.1 back on 7.1.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use imss_upgrade::cli::{self, PayloadArgs, upgrade};
use imss_upgrade::support::exit;
use imss_upgrade::support::logging::StderrLevel;
use imss_upgrade::support::privileges::Work;

/// Revert an upgraded server to IMSS 7.1 from the backup the upgrade kept
/// in /var/imss/imss_backup_71_to_91, until the upgrade is finalized: 9.1
/// stops, its cluster and program tree go, the 7.1 tree comes back from the
/// snapshot (checked against its manifest first), the 7.1 database
/// directory moves back, and 7.1 starts and must accept mail.
#[derive(Parser)]
#[command(version, after_help = exit::HELP)]
struct Cli {
    /// Directory the server is installed under (as `rpm --root`).
    #[arg(long, default_value = "/", value_name = "DIR")]
    root: PathBuf,
    #[command(flatten)]
    payload: PayloadArgs,
    /// Show debug lines on stderr.
    #[arg(long, short)]
    verbose: bool,
}

fn main() -> ExitCode {
    let cli: Cli = cli::parse();
    let stderr = if cli.verbose {
        StderrLevel::Debug
    } else {
        StderrLevel::Warnings
    };
    cli::execute(
        "imss-rollback",
        stderr,
        Some(Work::ChangesTheServer),
        || async move {
            let root = cli::open_root(&cli.root, true)?;
            upgrade::roll_back(&cli.payload.context(root)).await
        },
    )
}
