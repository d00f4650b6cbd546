//! The commands the binaries in `src/bin` dispatch to, and the plumbing
//! every binary shares: parsing with the documented exit codes, logging set
//! up before anything that can fail, and the error chain reported once.

pub mod args;
pub mod config;
pub mod package;
pub mod render;
pub mod status;
pub mod transfer;
pub mod upgrade;

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::flow::after::finalize::FinalizeOptions;
use crate::flow::after::transfer::TransferOptions;
use crate::flow::context::Context;
use crate::support::exit;
use crate::support::logging::{self, LogOptions, StderrLevel};
use crate::support::privileges::{self, Work};
use crate::support::root::Root;

pub use args::PayloadArgs;
use args::{Command, ConfigCommand, Profile, RollbackCli, TransferCommand, UpgradeCli};

/// Parses the command line; `--help` and `--version` exit 0, a wrong
/// command line exits [`exit::USAGE`] (clap's own 2 would read as "inhibited").
pub fn parse<T: Parser>() -> T {
    match T::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            std::process::exit(if err.use_stderr() {
                exit::USAGE.into()
            } else {
                exit::OK.into()
            });
        }
    }
}

/// Runs one command of the binary `identifier`: logging first (stderr and
/// the journal, which need nothing that can be missing), then the
/// capabilities `work` does not need dropped (before any thread starts;
/// `None` keeps them, for the 7.1 model), then `command` on a
/// multi-threaded runtime, then the exit code. An error, whenever it
/// happens, is reported once with its whole cause chain
/// ([`logging::report_error`]) and exits [`exit::FAILED`].
pub fn execute<F, Fut>(
    identifier: &str,
    stderr: StderrLevel,
    work: Option<Work>,
    command: F,
) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<u8>>,
{
    // Without a subscriber an error is still written to stderr, by hand.
    let _ = logging::init(LogOptions { identifier, stderr });
    crate::support::failpoints::arm_from_environment();
    let result = work
        .map_or(Ok(()), privileges::keep_only)
        .and_then(|()| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
        })
        .and_then(|runtime| runtime.block_on(command()));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            logging::report_error(identifier, &err, exit::FAILED);
            ExitCode::from(exit::FAILED)
        }
    }
}

/// Opens the root the server is installed under; for commands that change
/// the server, the install log under it joins the log from here on.
fn open_root(dir: &Path, install_log: bool) -> anyhow::Result<Root> {
    let root = Root::new(dir)?;
    if install_log {
        logging::open_install_log(&root)?;
    }
    Ok(root)
}

/// Runs the `imss-upgrade` command `cli` asks for, set up as `profile` says.
pub async fn imss_upgrade(cli: UpgradeCli, profile: Profile) -> anyhow::Result<u8> {
    let root = open_root(&cli.root, profile.install_log)?;
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

/// Runs `imss-rollback`, set up as `profile` says.
pub async fn imss_rollback(cli: RollbackCli, profile: Profile) -> anyhow::Result<u8> {
    let root = open_root(&cli.root, profile.install_log)?;
    upgrade::roll_back(&cli.payload.context(root)).await
}
