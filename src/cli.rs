//! Command-line plumbing shared by the binaries: parsing with the
//! documented exit codes, logging set-up, and printing the error chain once.

use std::process::ExitCode;

use clap::Parser;

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
