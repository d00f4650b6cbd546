//! Command-line plumbing shared by the binaries: parsing with the
//! documented exit codes, logging set-up, and printing the error chain once.

use std::process::ExitCode;

use std::path::PathBuf;

use clap::{Args, Parser};

use crate::context::{Context, PAYLOAD_DIR};
use crate::root::Root;

use crate::exit;

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

/// Turns a command's result into the process exit code, printing the whole
/// cause chain once.
pub fn finish(result: anyhow::Result<u8>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            tracing::error!(message_id = crate::logging::events::STEP_FAILED, "{err:#}");
            ExitCode::from(exit::FAILED)
        }
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
}

impl PayloadArgs {
    /// The context for the server under `root` with these programs.
    pub fn context(self, root: Root) -> Context {
        let ctx = Context::with_payload(root, self.payload);
        match self.target_pg_bin {
            Some(bin) => ctx.with_target_pg(bin),
            None => ctx,
        }
    }
}
