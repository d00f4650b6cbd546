//! Step 6, register rollback: the rollback manifest
//! ([`crate::flow::upgrade::rollback_manifest`]) goes into the backup directory,
//! after the snapshot it names is verified, so that `imss-rollback` (and
//! `rpm -e`) can put 7.1 back.
//!
//! May touch: the backup directory (the rollback manifest).

use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::Utc;

use crate::flow::context::Context;
use crate::flow::journal::{StepJournal, Undo};
use crate::flow::layout::STEP_JOURNAL_FILE;
use crate::flow::layout::{ROLLBACK_MANIFEST, SNAPSHOT_PATHS};
use crate::flow::upgrade::rollback_manifest::{FORMAT_VERSION, Release, RollbackManifest};
use crate::migration::config_export;
use crate::snapshot;
use crate::support::constants::{SOURCE_VERSION, TARGET_BUILD, TARGET_VERSION};
use crate::support::fsutil;

/// Writes the rollback manifest, after checking the snapshot it names. The
/// 7.1 build comes from the configuration export in the backup: by now
/// `imss.ini` is 9.1's (and a recovery may run this step after a crash).
pub async fn run(ctx: &Context, journal: &mut StepJournal) -> Result<()> {
    let from = config_export::read(&ctx.layout.config_export()?)?.exported_from;
    journal.note_undo(Undo::RemoveRollbackManifest {
        path: PathBuf::from(ROLLBACK_MANIFEST),
    })?;
    let pin = journal.snapshot_pin()?.clone();
    ctx.unblock(move |ctx| {
        let backup = ctx.layout.backup_dir()?;
        snapshot::verify(&backup, &pin)?;
        RollbackManifest {
            format: FORMAT_VERSION,
            registered_at: Utc::now(),
            from: Release {
                version: SOURCE_VERSION.to_string(),
                build: from.build,
            },
            to: Release {
                version: TARGET_VERSION.to_string(),
                build: TARGET_BUILD,
            },
            snapshot_paths: SNAPSHOT_PATHS.iter().map(|p| p.to_string()).collect(),
            snapshot_manifest_sha256: pin,
            data_dir_71: (
                ctx.layout.data_dir_in_place()?,
                ctx.layout.moved_71_data_dir(),
            ),
            data_dir_91: ctx.layout.data_dir_in_place()?,
            step_journal: STEP_JOURNAL_FILE.to_string(),
        }
        .write(&ctx.layout.state_dir()?)
    })
    .await
}

/// Removes the rollback manifest.
pub async fn undo(ctx: &Context, path: &Path) -> Result<()> {
    fsutil::remove_file_if_present(&ctx.root.resolve_parent(path)?)
}
