//! After a completed upgrade: the snapshot's plain tar, which the downtime
//! wrote because xz is too slow for it, rewritten as xz off the critical
//! path (`imss-upgrade compress-snapshot`). Rollback reads either form.

use anyhow::{Result, bail};

use crate::flow::context::Context;
use crate::flow::journal::{RunState, StepJournal};
use crate::flow::layout;
use crate::flow::lock::UpgradeLock;

/// Rewrites the completed upgrade's snapshot as xz `preset` on `threads`
/// threads; safe to interrupt and run again. Returns the archive's size in
/// bytes.
pub fn compress_snapshot(ctx: &Context, preset: u32, threads: u32) -> Result<u64> {
    let backup = layout::backup_dir(ctx)?;
    // Never under a rollback or a recovery, which read the snapshot.
    let Some(_lock) = UpgradeLock::take_existing(ctx)? else {
        bail!(
            "{} holds no upgrade: the snapshot is compressed once the upgrade is done",
            backup.display()
        );
    };
    let journal = match StepJournal::of(ctx)? {
        Some(journal) if journal.state == RunState::Completed => journal,
        _ => bail!(
            "{} holds no completed upgrade: the snapshot is compressed once the upgrade is done",
            backup.display()
        ),
    };
    let manifest =
        crate::snapshot::recompress_with(&backup, journal.snapshot_pin()?, preset, threads)?;
    Ok(manifest.archive.size)
}
