//! `imss-upgrade`: upgrades an IMSS 7.1 server to 9.1 in place.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use imss_upgrade::cli::{self, PayloadArgs, config, package, status, transfer, upgrade};
use imss_upgrade::flow::after::finalize::FinalizeOptions;
use imss_upgrade::flow::after::transfer::TransferOptions;
use imss_upgrade::flow::context::Context;
use imss_upgrade::flow::package::Scriptlet;
use imss_upgrade::support::exit;
use imss_upgrade::support::logging::{SYSLOG_IDENTIFIER, StderrLevel};
use imss_upgrade::support::privileges::Work;

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
        #[command(flatten)]
        payload: PayloadArgs,
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
        /// Run by imss-upgrade-recover.service at boot: the 9.1 units,
        /// ordered after it, are queued rather than waited for, and check
        /// themselves as they start.
        #[arg(long)]
        at_boot: bool,
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
    /// End the upgrade: once the transfer is done, stop what is left,
    /// optionally export the backup as one archive, delete the backup
    /// directory. 9.1 keeps running; rollback is no longer offered.
    Finalize {
        /// Finalize although the transfer is not done (says how many rows
        /// stay behind in the backup).
        #[arg(long)]
        force: bool,
        /// Write the whole backup directory as one archive with its
        /// manifest into DIR (new or empty), verified, before deleting it.
        #[arg(long, value_name = "DIR")]
        export: Option<PathBuf>,
    },
    /// The background transfer of the history older than the upgrade's
    /// 24-hour window into 9.1 (imss-upgrade-transfer.service runs it).
    #[command(subcommand)]
    Transfer(TransferCommand),
    /// What the upgrade package's scriptlets run (README, "The package"):
    /// `pre-install` upgrades on an install, `pre-uninstall` rolls back on
    /// an erase, `helpers-pre-uninstall` refuses while a rollback is
    /// possible; a reinstall or an upgrade of the package does neither.
    Package {
        /// The scriptlet.
        scriptlet: ScriptletArg,
        /// rpm's first argument to the scriptlet ($1).
        rpm_arg: u32,
        #[command(flatten)]
        payload: PayloadArgs,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ScriptletArg {
    /// `%pre` of imss-upgrade.
    PreInstall,
    /// `%preun` of imss-upgrade.
    PreUninstall,
    /// `%preun` of imss-upgrade-helpers.
    HelpersPreUninstall,
}

impl From<ScriptletArg> for Scriptlet {
    fn from(arg: ScriptletArg) -> Self {
        match arg {
            ScriptletArg::PreInstall => Scriptlet::PreInstall,
            ScriptletArg::PreUninstall => Scriptlet::PreUninstall,
            ScriptletArg::HelpersPreUninstall => Scriptlet::HelpersPreUninstall,
        }
    }
}

#[derive(Subcommand)]
enum TransferCommand {
    /// Move the older history into 9.1 until every table is across and
    /// verified; resumes after the last committed batch. SIGTERM stops it
    /// between two batches.
    Run {
        /// At most this many rows a second (default: as fast as 9.1 takes
        /// them while it serves mail first).
        #[arg(long, value_name = "ROWS")]
        max_rows_per_sec: Option<u64>,
        /// Back off while more than N other sessions run a query on 9.1
        /// (default: the number of CPUs); 0 never backs off.
        #[arg(long, value_name = "N", default_value_t = default_max_load())]
        max_load: u32,
        /// Seconds without a committed batch that make a stall, reported
        /// with its cause.
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        stall_after: u64,
        /// Seconds between progress reports (journal and status).
        #[arg(long, value_name = "SECONDS", default_value_t = 5)]
        report_every: u64,
    },
    /// Hold the transfer back (across restarts and reboots) until resumed.
    Pause,
    /// Let a paused transfer go on.
    Resume,
}

/// The transfer's default `--max-load`: as many busy sessions as there
/// are CPUs to serve them.
fn default_max_load() -> u32 {
    std::thread::available_parallelism().map_or(1, |cpus| cpus.get() as u32)
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

fn main() -> ExitCode {
    let cli: Cli = cli::parse();
    let stderr = match &cli.command {
        _ if cli.verbose => StderrLevel::Debug,
        // The report is the output; stderr carries only errors.
        Command::Preflight { .. } => StderrLevel::Errors,
        // Step lines for people; the details go to the journal and the log.
        Command::Run { .. }
        | Command::Recover { .. }
        | Command::Package { .. }
        | Command::Transfer(TransferCommand::Run { .. }) => StderrLevel::Warnings,
        _ => StderrLevel::Info,
    };
    let work = match &cli.command {
        Command::Run { .. }
        | Command::Recover { .. }
        | Command::CompressSnapshot { .. }
        | Command::Package { .. }
        | Command::Config(ConfigCommand::Import { .. }) => Work::ChangesTheServer,
        Command::Preflight { .. }
        | Command::Status { .. }
        | Command::Config(ConfigCommand::Export { .. }) => Work::Looks,
        Command::Transfer(TransferCommand::Run { .. }) => Work::Transfers,
        Command::Finalize { .. } => Work::ChangesTheServer,
        Command::Transfer(_) => Work::ChangesTheServer,
    };
    cli::execute(SYSLOG_IDENTIFIER, stderr, Some(work), || run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let changes_server = matches!(
        cli.command,
        Command::Run { .. }
            | Command::Recover { .. }
            | Command::Package { .. }
            | Command::Finalize { .. }
    );
    let root = cli::open_root(&cli.root, changes_server)?;
    match cli.command {
        Command::Status { json } => status::run(&root, json).await,
        Command::Preflight { payload, json } => {
            upgrade::preflight(&payload.context(root), json).await
        }
        Command::Run { payload, json } => upgrade::run(&payload.context(root), json).await,
        Command::Recover { payload, at_boot } => {
            upgrade::recover(&payload.context(root).at_boot(at_boot)).await
        }
        Command::CompressSnapshot { preset, threads } => {
            upgrade::compress_snapshot(&Context::new(root), preset, threads).await
        }
        Command::Transfer(TransferCommand::Run {
            max_rows_per_sec,
            max_load,
            stall_after,
            report_every,
        }) => {
            let options = TransferOptions {
                max_rows_per_sec,
                max_load: (max_load > 0).then_some(max_load),
                stall_after: Duration::from_secs(stall_after),
                report_every: Duration::from_secs(report_every.max(1)),
            };
            transfer::run(&Context::new(root), &options).await
        }
        Command::Finalize { force, export } => {
            upgrade::finalize(&Context::new(root), &FinalizeOptions { force, export }).await
        }
        Command::Transfer(TransferCommand::Pause) => transfer::pause(&Context::new(root)),
        Command::Transfer(TransferCommand::Resume) => transfer::resume(&Context::new(root)),
        Command::Config(ConfigCommand::Export { file }) => config::export(&root, &file).await,
        Command::Config(ConfigCommand::Import { file }) => config::import(&root, &file).await,
        Command::Package {
            scriptlet,
            rpm_arg,
            payload,
        } => package::scriptlet(&payload.context(root), scriptlet.into(), rpm_arg).await,
    }
}
