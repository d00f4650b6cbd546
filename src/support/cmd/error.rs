//! How a program that was run failed: it did not start, it ran out of
//! time, or it exited unsuccessfully, with the end of what it wrote to
//! stderr.

use std::process::{ExitStatus, Output};
use std::time::Duration;

use thiserror::Error;

/// How many lines of stderr an error keeps.
const STDERR_TAIL_LINES: usize = 20;

/// A program that failed to start or exited unsuccessfully.
#[derive(Debug, Error)]
pub enum CmdError {
    /// The program could not be started (not installed, not executable).
    #[error("could not start {argv}")]
    Spawn {
        /// The command line, for the operator.
        argv: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The program did not finish in the time it was given, and was
    /// killed (with every process of its group).
    #[error("{argv} did not finish within {} s and was stopped", .limit.as_secs())]
    TimedOut {
        /// The command line, for the operator.
        argv: String,
        /// The time it had.
        limit: Duration,
    },
    /// The program ran and failed.
    #[error("{argv} failed ({status}){}", stderr_suffix(.stderr_tail))]
    Failed {
        /// The command line, for the operator.
        argv: String,
        /// How it ended.
        status: ExitStatus,
        /// The last lines it wrote to stderr.
        stderr_tail: String,
    },
}

impl CmdError {
    /// The exit code, when the program ran and exited with one.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            CmdError::Failed { status, .. } => status.code(),
            CmdError::Spawn { .. } | CmdError::TimedOut { .. } => None,
        }
    }
}

fn stderr_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    }
}

/// The error for a program that ran and exited unsuccessfully with
/// `output`: for [`super::Cmd::run`], and for callers of
/// [`super::Cmd::run_unchecked`] that met an exit they cannot explain.
pub(crate) fn failed(argv: String, output: &Output) -> CmdError {
    CmdError::Failed {
        argv,
        status: output.status,
        stderr_tail: tail(&output.stderr, STDERR_TAIL_LINES),
    }
}

/// The last `lines` lines of `bytes`, as text, trimmed.
fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
