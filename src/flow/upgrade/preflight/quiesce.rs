//! What would slow or block the quiesce step: mail still queued, and 7.1
//! processes stuck in uninterruptible sleep.

use std::path::Path;

use anyhow::Result;

use super::{Facts, Finding, Severity};
use crate::flow::context::Context;
use crate::support::constants::{MAIL_QUEUE_DIR, PROGRAM_DIR};

/// Counts queued mail and stuck 7.1 processes.
pub async fn check(ctx: &Context, _facts: &mut Facts, out: &mut Vec<Finding>) -> Result<()> {
    let queue = ctx.root.resolve(MAIL_QUEUE_DIR)?;
    let queued = count_files(&queue);
    if queued > 0 {
        out.push(Finding::new(
            "mail-queue-not-empty",
            Severity::Warning,
            "Mail is waiting in the 7.1 queue",
            format!("{queued} messages in {}", queue.display()),
            "nothing to do: quiesce waits for the queue to drain (or stop inbound mail first to shorten the wait)",
        ));
    }
    let program_dir = ctx.root.resolve(PROGRAM_DIR)?;
    let stuck = stuck_processes(&program_dir);
    if !stuck.is_empty() {
        out.push(Finding::new(
            "process-stuck",
            Severity::Warning,
            "7.1 processes are stuck in uninterruptible sleep",
            format!("{} processes: {}", stuck.len(), stuck.join(", ")),
            "find what they wait for (often storage or NFS) and resolve it; quiesce may not be able to stop them",
        ));
    }
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => count_files(&entry.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

/// Processes in state D whose command line runs something from the program tree.
fn stuck_processes(program_dir: &Path) -> Vec<String> {
    let needle = program_dir.to_string_lossy();
    crate::system::procfs::processes()
        .into_iter()
        .filter(|p| p.state == 'D' && p.cmdline.contains(needle.as_ref()))
        .map(|p| format!("{} (pid {})", p.cmdline, p.pid))
        .collect()
}
