//! `imss-rollback`: puts a server that was upgraded to 9.1 back on 7.1.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Parser;
use imss_upgrade::constants::BACKUP_DIR;
use imss_upgrade::{cli, exit, logging, root::Root};

/// Revert an upgraded server to IMSS 7.1 from the backup the upgrade kept
/// in /var/imss/imss_backup_71_to_91, until the upgrade is finalized.
#[derive(Parser)]
#[command(version, after_help = exit::HELP)]
struct Cli {
    /// Directory the server is installed under (as `rpm --root`).
    #[arg(long, default_value = "/", value_name = "DIR")]
    root: PathBuf,
    /// Show debug lines on stderr.
    #[arg(long, short)]
    verbose: bool,
}

fn main() -> ExitCode {
    let cli: Cli = cli::parse();
    cli::finish(run(cli))
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    logging::init(logging::LogOptions {
        identifier: "imss-rollback",
        install_log: None,
        verbose: cli.verbose,
        quiet: false,
    })?;
    let root = Root::new(&cli.root)?;
    let backup = root.resolve(BACKUP_DIR)?;
    if !backup.exists() {
        bail!(
            "nothing to roll back: {} does not exist, so no upgrade was made under {}",
            backup.display(),
            root.dir().display()
        );
    }
    bail!(
        "{} exists but holds no rollback manifest this version can read; leave it in place and contact support",
        backup.display()
    )
}
