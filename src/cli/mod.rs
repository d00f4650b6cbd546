//! The commands the binaries in `src/bin` dispatch to, and the plumbing
//! every binary shares: parsing with the documented exit codes, logging set
//! up before anything that can fail, and the error chain reported once.

pub mod config;
pub mod package;
pub mod status;
pub mod transfer;
pub mod upgrade;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser};

use crate::flow::context::{Context, PAYLOAD_DIR};
use crate::support::exit;
use crate::support::logging::{self, LogOptions, StderrLevel};
use crate::support::privileges::{self, Work};
use crate::support::root::Root;
use crate::system::imssctl;

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
pub fn open_root(dir: &Path, install_log: bool) -> anyhow::Result<Root> {
    let root = Root::new(dir)?;
    if install_log {
        logging::open_install_log(&root)?;
    }
    Ok(root)
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
