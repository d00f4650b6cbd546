//! `imss-upgrade`: upgrades an IMSS 7.1 server to 9.1 in place.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use imss_upgrade::cli::PayloadArgs;
use imss_upgrade::context::Context;
use imss_upgrade::{cli, config_commands, exit, logging, preflight, root::Root, status, upgrade};

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
    /// Upgrade the server to 9.1: preflight, quiesce, snapshot, migrate,
    /// switch, register rollback. On any failure the server is put back on
    /// 7.1 before this returns. Exit 0: 9.1 runs; 2: preflight found
    /// inhibitors, nothing changed; 1: failed (and rolled back, unless the
    /// message says otherwise).
    Run {
        #[command(flatten)]
        payload: PayloadArgs,
        /// Print the report as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Settle an interrupted upgrade from its step journal: finish it if
    /// 9.1 had taken over, roll it back otherwise. Does nothing when no run
    /// was interrupted.
    Recover {
        #[command(flatten)]
        payload: PayloadArgs,
    },
    /// Rewrite the completed upgrade's snapshot as xz, off the critical path
    /// (the downtime writes a plain tar); for the background unit, safe to
    /// interrupt and run again. Rollback reads either form.
    CompressSnapshot {
        /// xz preset, 0 (fast) to 9 (small).
        #[arg(long, default_value_t = imss_upgrade::snapshot::RECOMPRESS_PRESET,
              value_parser = clap::value_parser!(u32).range(0..=9))]
        preset: u32,
        /// Compression threads (one leaves the other cores to mail).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
        threads: u32,
    },
    /// Show what is installed: product version and build, components, and
    /// the admin database settings (password masked).
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Carry the configuration between servers as imsx_config.dat.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Write the configuration of this (running) 7.1 server to FILE.
    Export {
        /// The file to write (mode 0600: it holds password hashes).
        file: PathBuf,
    },
    /// Replace the configuration of this (running) 9.1 server with FILE's.
    Import {
        /// An imsx_config.dat written by `config export` or by the upgrade.
        file: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = cli::parse();
    cli::finish(run(cli).await)
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let root = Root::new(&cli.root)?;
    let changes_server = matches!(cli.command, Command::Run { .. } | Command::Recover { .. });
    logging::init(logging::LogOptions {
        identifier: logging::SYSLOG_IDENTIFIER,
        install_log: changes_server.then_some(&root),
        verbose: cli.verbose,
        // Preflight's report is its output; stderr carries only errors.
        quiet: matches!(cli.command, Command::Preflight { .. }),
    })?;
    match cli.command {
        Command::Status { json } => status::run(&root, json).await,
        Command::Preflight { json } => run_preflight(&Context::new(root), json).await,
        Command::Run { payload, json } => run_upgrade(&payload.context(root), json).await,
        Command::Recover { payload } => {
            let recovery = upgrade::recover(&payload.context(root)).await?;
            println!("{}", recovery.describe());
            Ok(exit::OK)
        }
        Command::CompressSnapshot { preset, threads } => {
            let size = upgrade::compress_snapshot(&Context::new(root), preset, threads)?;
            println!("snapshot compressed: {size} bytes");
            Ok(exit::OK)
        }
        Command::Config(ConfigCommand::Export { file }) => {
            config_commands::export(&root, &file).await?;
            Ok(exit::OK)
        }
        Command::Config(ConfigCommand::Import { file }) => {
            config_commands::import(&root, &file).await?;
            Ok(exit::OK)
        }
    }
}

async fn run_preflight(ctx: &Context, json: bool) -> anyhow::Result<u8> {
    let report = preflight::run(ctx).await?;
    preflight::save(ctx, &report)?;
    print_preflight(&report, json)?;
    Ok(report.exit_code())
}

fn print_preflight(report: &preflight::Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

async fn run_upgrade(ctx: &Context, json: bool) -> anyhow::Result<u8> {
    let outcome = upgrade::run(ctx).await?;
    match &outcome {
        upgrade::Outcome::Inhibited(report) => print_preflight(report, json)?,
        upgrade::Outcome::Upgraded(report) if json => {
            println!("{}", serde_json::to_string_pretty(report)?)
        }
        upgrade::Outcome::Upgraded(report) => print!("{}", report.to_text()),
    }
    Ok(outcome.exit_code())
}
