//! After a completed upgrade: the snapshot's plain tar, which the downtime
//! wrote because xz is too slow for it, rewritten as xz off the critical
//! path (`imss-upgrade compress-snapshot`). Rollback reads either form.

use anyhow::Result;

use crate::flow::context::Context;
use crate::flow::gate;
use crate::flow::journal::RunState;

/// Rewrites the completed upgrade's snapshot as xz `preset` on `threads`
/// threads; safe to interrupt and run again. Returns the archive's size in
/// bytes.
pub fn compress_snapshot(ctx: &Context, preset: u32, threads: u32) -> Result<u64> {
    // Never under a rollback or a recovery, which read the snapshot.
    let admitted = gate::require(ctx, &[RunState::Completed], "compress the snapshot")?;
    let backup = ctx.layout.backup_dir()?;
    let journal = admitted.journal;
    let manifest =
        crate::snapshot::recompress_with(&backup, journal.snapshot_pin()?, preset, threads)?;
    Ok(manifest.archive.size)
}
