//! `imss-upgrade`: upgrades an IMSS 7.1 server to 9.1 in place.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use imss_upgrade::context::Context;
use imss_upgrade::{cli, exit, logging, preflight, root::Root, status};

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
    /// Inspect the 7.1 server and report everything that would stop or slow
    /// the upgrade, with the fix for each; changes nothing. Exit 0: ready;
    /// 2: inhibitors found; 1: a check could not run. The JSON report is
    /// also written to /var/log/imss-upgrade/preflight.json under the root.
    Preflight {
        /// Print the report as JSON (schema in the README) instead of text.
        #[arg(long)]
        json: bool,
    },
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
        // Preflight's report is its output; stderr carries only errors.
        quiet: matches!(cli.command, Command::Preflight { .. }),
    })?;
    let root = Root::new(&cli.root)?;
    match cli.command {
        Command::Status { json } => status::run(&root, json).await,
        Command::Preflight { json } => run_preflight(&Context::new(root), json).await,
    }
}

async fn run_preflight(ctx: &Context, json: bool) -> anyhow::Result<u8> {
    let report = preflight::run(ctx).await?;
    preflight::save(ctx, &report)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(report.exit_code())
}
