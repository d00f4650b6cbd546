//! `imss-upgrade finalize`: the end of an upgrade, by the administrator's
//! choice. Once the background transfer is done (or with `--force`, which
//! says what stays behind), it stops whatever of the upgrade still runs,
//! optionally writes the whole backup directory elsewhere as one archive
//! with its manifest (verified after writing), and deletes the backup
//! directory: 9.1 keeps running, and rollback is no longer offered.
//!
//! The delete is a rename first (to a name no command reads as a backup),
//! then the removal: a kill in between leaves no backup that looks
//! complete, and the next `finalize` removes what is left.
//!
//! Then the run's state goes (the journal last) and the upgrade's units
//! are disabled: after a finalize, nothing of the upgrade runs at boot.
//!
//! May touch: the backup directory (removed), the export directory, the
//! state directory's files of the run, the upgrade's units.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use crate::flow::after::transfer::{self, control, progress::TransferReport};
use crate::flow::context::Context;
use crate::flow::gate;
use crate::flow::journal::RunState;
use crate::flow::layout::BACKUP_DIR;
use crate::flow::upgrade::server_units;
use crate::snapshot::{ArchiveFormat, MANIFEST_FILE};
use crate::support::logging::events;
use crate::support::{fsutil, no_follow};
use crate::system::pg::{self, StopMode};

/// What `finalize` is asked.
#[derive(Debug, Clone, Default)]
pub struct FinalizeOptions {
    /// Finalize although the transfer is not done.
    pub force: bool,
    /// Write the backup as one archive with its manifest into this
    /// directory first (created; must be empty if it exists).
    pub export: Option<PathBuf>,
}

/// What `finalize` did.
#[derive(Debug, Clone, Serialize)]
pub struct FinalizeReport {
    /// The backup directory removed.
    pub removed: PathBuf,
    /// Where it was exported, and the archive's size in bytes.
    pub exported: Option<(PathBuf, u64)>,
    /// Rows of the older history that were not in 9.1 (with `--force`),
    /// when known.
    pub rows_left_behind: Option<i64>,
}

/// Finalizes the completed upgrade as `options` ask.
pub async fn finalize(ctx: &Context, options: &FinalizeOptions) -> Result<FinalizeReport> {
    let backup = ctx.layout.backup_dir()?;
    // The compression holds the upgrade lock, at idle priority, for as long
    // as it works after an upgrade: it gives way first (it may run again).
    server_units::stop_compression(ctx)?;
    let _admitted = gate::require(ctx, &[RunState::Completed], "finalize")?;
    remove_leftover_of_earlier(ctx)?;
    let deleted_already = !backup.exists();
    let rows_left_behind = if deleted_already {
        None
    } else {
        check_transfer(ctx, options.force)?
    };

    let export = options.export.clone();
    // Held until the run is forgotten: no transfer starts on a backup
    // being deleted. Until the backup is set aside nothing is changed, so
    // a failure before lets the transfer go on.
    let transfer = ctx.unblock(control::stop_transfer).await?;
    let exported = ctx
        .unblock(move |ctx| {
            pg::stop_server(
                &ctx.root.resolve(ctx.layout.moved_71_data_dir())?,
                StopMode::Immediate,
            )?;
            match &export {
                Some(dir) if !deleted_already => export_backup(ctx, dir).map(Some),
                _ => Ok(None),
            }
        })
        .await;
    let exported = match exported {
        Ok(exported) => exported,
        Err(err) => {
            transfer.go_on(ctx);
            return Err(err);
        }
    };
    let _transfer = transfer;
    crate::fail_point!("finalize-transfer-stopped");

    if !deleted_already {
        let removing = ctx.layout.finalizing_backup_dir()?;
        fsutil::rename_durably(&backup, &removing)
            .with_context(|| format!("setting {} aside to delete it", backup.display()))?;
        crate::fail_point!("finalize-backup-set-aside");
        delete_set_aside(&removing)?;
        crate::fail_point!("finalize-backup-deleted");
    }
    // Nothing of the upgrade runs at boot any more: its units are retired,
    // and the state they would act on is gone, the journal last.
    server_units::retire_upgrade_units(ctx)?;
    crate::flow::layout::backup::BackupDir::of(&ctx.layout).forget_run()?;
    tracing::info!(
        message_id = events::FINALIZED,
        imss_export = %exported
            .as_ref()
            .map_or("none".to_string(), |(dir, _)| dir.display().to_string()),
        imss_forced = if rows_left_behind.is_some() { "yes" } else { "no" },
        "the upgrade is finalized: the backup is gone and 9.1 keeps running; rollback is no longer offered"
    );
    Ok(FinalizeReport {
        removed: backup,
        exported,
        rows_left_behind,
    })
}

/// Refuses while the transfer is not done, unless `force`; then says what
/// stays behind (the rows left, when the transfer reported them).
fn check_transfer(ctx: &Context, force: bool) -> Result<Option<i64>> {
    if transfer::completed(ctx)?.is_some() {
        return Ok(None);
    }
    let report = TransferReport::load(&ctx.layout.transfer_files()?.progress)?;
    let left = report.as_ref().map(|report| report.rows.rows_left);
    let what = match (&report, left) {
        (Some(report), Some(left)) => format!(
            "{left} of {} rows of the older 7.1 history are not in 9.1 yet",
            report.rows.rows_total
        ),
        _ => "the older 7.1 history has not moved into 9.1 yet (the transfer has not reported)"
            .to_string(),
    };
    if !force {
        bail!(
            "the transfer of the older history is not done: {what}. Wait until `imss-upgrade status` \
             says it is done, or run `imss-upgrade finalize --force`, which deletes them with the \
             backup (with --export PATH they are kept in the archive)"
        );
    }
    tracing::warn!("finalizing before the transfer is done: {what}; they go with the backup");
    Ok(Some(left.unwrap_or(-1)))
}

/// In an export directory while the export is written and not verified.
const EXPORT_UNFINISHED: &str = "export-unfinished";

/// Writes the backup directory as one archive with its manifest into
/// `dir`, then verifies it against the manifest; the archive's size.
fn export_backup(ctx: &Context, dir: &Path) -> Result<(PathBuf, u64)> {
    let dir = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let backup = ctx.layout.backup_dir()?;
    if dir.starts_with(&backup) {
        bail!(
            "the export directory {} is inside the backup directory, which finalize deletes: \
             name a place elsewhere",
            dir.display()
        );
    }
    // A finalize killed while it exported left its mark: that export is
    // written again. Anything else there is not this finalize's to replace.
    let unfinished = dir.join(EXPORT_UNFINISHED);
    let holds_files = std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some());
    if holds_files && !unfinished.exists() {
        let finished = dir.join(MANIFEST_FILE).exists();
        bail!(
            "the export directory {} is not empty{}: name a new or empty directory",
            dir.display(),
            if finished {
                " (it holds a finished export: if a finalize of this server wrote it, run                  `imss-upgrade finalize` again without --export)"
            } else {
                ""
            }
        );
    }
    if !dir.exists() {
        fsutil::create_dir_with_mode(&dir, 0o700)?;
    }
    fsutil::atomic_write(
        &unfinished,
        b"an export of the upgrade's backup, not verified yet\n",
        0o600,
    )?;
    let manifest = crate::snapshot::create(&ctx.root, &dir, &[BACKUP_DIR])
        .with_context(|| format!("exporting {} to {}", backup.display(), dir.display()))?;
    crate::fail_point!("finalize-exported");
    crate::snapshot::verify(&dir, &manifest.pin()).with_context(|| {
        format!(
            "the export in {} does not match its manifest; the backup is kept",
            dir.display()
        )
    })?;
    fsutil::remove_file_if_present(&unfinished)?;
    fsutil::sync_dir(&dir)?;
    tracing::info!(
        "the backup is exported to {} ({} bytes) and verified",
        dir.display(),
        manifest.archive.size
    );
    Ok((dir, manifest.archive.size))
}

/// Deletes the backup set aside at `removing`: the snapshot first (its
/// manifest, then its archive), so that what a kill leaves is no snapshot
/// anything would restore from, whatever it is named, then the rest.
fn delete_set_aside(removing: &Path) -> Result<()> {
    let dir = no_follow::open_dir(removing)?;
    for name in [
        MANIFEST_FILE,
        ArchiveFormat::Tar.file_name(),
        ArchiveFormat::TarXz.file_name(),
    ] {
        dir.remove_file(name)?;
    }
    drop(dir);
    crate::fail_point!("finalize-backup-deleting");
    fsutil::remove_tree_if_present(removing)
}

/// Removes what a finalize killed while deleting left.
fn remove_leftover_of_earlier(ctx: &Context) -> Result<()> {
    let leftover = ctx.layout.finalizing_backup_dir()?;
    if leftover.exists() {
        tracing::info!(
            "removing {}, which an interrupted finalize left",
            leftover.display()
        );
        fsutil::remove_tree_if_present(&leftover)?;
    }
    Ok(())
}
