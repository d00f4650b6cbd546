//! The command lines of `imss-upgrade` and `imss-rollback` (what `--help`
//! shows), and each command's [`Profile`]: what it needs settled before it
//! starts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::flow::context::{Context, PAYLOAD_DIR};
use crate::flow::package::Scriptlet;
use crate::support::exit;
use crate::support::logging::{SYSLOG_IDENTIFIER, StderrLevel};
use crate::support::privileges::Work;
use crate::support::root::Root;
use crate::system::imssctl;

/// What a command needs before it runs: logging, privileges and the install
/// log are set up from it, before anything that can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// The name it logs under (the journal's `SYSLOG_IDENTIFIER`).
    pub identifier: &'static str,
    /// How much of the log stderr shows.
    pub stderr: StderrLevel,
    /// The capabilities it keeps.
    pub work: Work,
    /// Whether the install log under the root joins the log: the commands
    /// that upgrade, settle or end the upgrade.
    pub install_log: bool,
}

impl Profile {
    fn upgrade(stderr: StderrLevel, work: Work, install_log: bool) -> Self {
        Self {
            identifier: SYSLOG_IDENTIFIER,
            stderr,
            work,
            install_log,
        }
    }

    /// With `--verbose`, stderr shows the debug lines too.
    fn verbose(self, verbose: bool) -> Self {
        Self {
            stderr: if verbose {
                StderrLevel::Debug
            } else {
                self.stderr
            },
            ..self
        }
    }
}

/// Upgrade InterScan Messaging Security Suite 7.1 to 9.1 in place, with
/// automatic rollback.
#[derive(Parser)]
#[command(version, after_help = exit::HELP)]
pub struct UpgradeCli {
    /// Directory the server is installed under (as `rpm --root`).
    #[arg(long, global = true, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// Show debug lines on stderr.
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

impl UpgradeCli {
    /// What the command asked for needs.
    pub fn profile(&self) -> Profile {
        self.command.profile().verbose(self.verbose)
    }
}

/// The commands of `imss-upgrade`.
#[derive(Subcommand)]
pub enum Command {
    /// Inspect the 7.1 server and report everything that would stop or slow
    /// the upgrade, with the fix for each; changes nothing. Exit 0: ready;
    /// 2: inhibitors found; 1: a check could not run. The JSON report is
    /// also written to /var/log/imss-upgrade/preflight.json under the root.
    Preflight {
        /// Where the 9.1 programs come from.
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
        /// Where the 9.1 programs come from.
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
        /// Where the 9.1 programs come from.
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
        #[arg(long, default_value_t = crate::snapshot::RECOMPRESS_PRESET,
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
        /// Where the 9.1 programs come from.
        #[command(flatten)]
        payload: PayloadArgs,
    },
}

impl Command {
    /// What this command needs, without `--verbose`. The work that changes
    /// the server joins the install log; the rest only looks, or keeps to
    /// its own files.
    fn profile(&self) -> Profile {
        use StderrLevel::{Errors, Info, Warnings};
        use Work::{ChangesTheServer, Looks, Transfers};
        let (stderr, work, install_log) = match self {
            // The report is the output; stderr carries only errors.
            Command::Preflight { .. } => (Errors, Looks, false),
            // Step lines for people; the details go to the journal and the log.
            Command::Run { .. } | Command::Recover { .. } | Command::Package { .. } => {
                (Warnings, ChangesTheServer, true)
            }
            Command::Transfer(TransferCommand::Run { .. }) => (Warnings, Transfers, false),
            Command::Finalize { .. } => (Info, ChangesTheServer, true),
            Command::CompressSnapshot { .. }
            | Command::Config(ConfigCommand::Import { .. })
            | Command::Transfer(TransferCommand::Pause | TransferCommand::Resume) => {
                (Info, ChangesTheServer, false)
            }
            Command::Status { .. } | Command::Config(ConfigCommand::Export { .. }) => {
                (Info, Looks, false)
            }
        };
        Profile::upgrade(stderr, work, install_log)
    }
}

/// The package scriptlets `imss-upgrade package` runs for.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ScriptletArg {
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

/// `imss-upgrade transfer …`.
#[derive(Subcommand)]
pub enum TransferCommand {
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

/// `imss-upgrade config …`.
#[derive(Subcommand)]
pub enum ConfigCommand {
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

/// Revert an upgraded server to IMSS 7.1 from the backup the upgrade kept
/// in /var/imss/imss_backup_71_to_91, until the upgrade is finalized: 9.1
/// stops, its cluster and program tree go, the 7.1 tree comes back from the
/// snapshot (checked against its manifest first), the 7.1 database
/// directory moves back, and 7.1 starts and must accept mail.
#[derive(Parser)]
#[command(version, after_help = exit::HELP)]
pub struct RollbackCli {
    /// Directory the server is installed under (as `rpm --root`).
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// Where the 9.1 programs come from.
    #[command(flatten)]
    pub payload: PayloadArgs,
    /// Show debug lines on stderr.
    #[arg(long, short)]
    pub verbose: bool,
}

impl RollbackCli {
    /// What the rollback needs: step lines on stderr, the server changed.
    pub fn profile(&self) -> Profile {
        Profile {
            identifier: "imss-rollback",
            stderr: StderrLevel::Warnings,
            work: Work::ChangesTheServer,
            install_log: true,
        }
        .verbose(self.verbose)
    }
}

/// Where the 9.1 programs come from.
#[derive(Args)]
pub struct PayloadArgs {
    /// The 9.1 program tree to install (the upgrade package's payload).
    #[arg(long, default_value = PAYLOAD_DIR, value_name = "DIR")]
    pub payload: PathBuf,
    /// PostgreSQL 15 programs for the 9.1 cluster [default: DIR/PostgreSQL/bin
    /// of --payload].
    #[arg(long, value_name = "DIR")]
    pub target_pg_bin: Option<PathBuf>,
    /// Seconds the services may take to start or stop before the upgrade
    /// gives up on them and rolls back.
    #[arg(long, value_name = "SECONDS", default_value_t = imssctl::DEFAULT_TIMEOUT.as_secs())]
    pub service_timeout: u64,
}

impl PayloadArgs {
    /// The context for the server under `root` with these programs.
    pub fn context(self, root: Root) -> Context {
        let ctx = Context::with_payload(root, self.payload)
            .with_service_timeout(std::time::Duration::from_secs(self.service_timeout));
        match self.target_pg_bin {
            Some(bin) => ctx.with_target_pg(bin),
            None => ctx,
        }
    }
}
