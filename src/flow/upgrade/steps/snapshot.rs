//! Step 3, snapshot: the 7.1 program tree and the system files the upgrade
//! changes go into the backup directory as an archive with a manifest, and
//! the 7.1 database directory moves there (a rename on the same file
//! system, a verified copy across file systems). Neither is modified
//! afterwards: rolling the database back is a move, whatever its size.
//!
//! May touch: the backup directory; the 7.1 data directory (moved).

use std::path::Path;

use anyhow::Result;

use crate::flow::context::Context;
use crate::flow::journal::{StepJournal, Undo};
use crate::flow::layout::SNAPSHOT_PATHS;
use crate::snapshot::{self, tree_move};

/// Archives the program tree, then moves the stopped 7.1 data directory.
pub async fn run(ctx: &Context, journal: &mut StepJournal) -> Result<()> {
    let backup = ctx.layout.backup_dir()?;
    let manifest = ctx
        .unblock(move |ctx| snapshot::create(&ctx.root, &backup, SNAPSHOT_PATHS))
        .await?;
    journal.record_snapshot(manifest.pin())?;
    crate::fail_point!("snapshot-archived");
    // Where it really is: a link at /var/imss/pgdata is left as it is.
    let original = ctx.layout.data_dir_in_place()?;
    journal.note_undo(Undo::MoveDataDirBack {
        original: original.clone(),
        moved_to: ctx.layout.moved_71_data_dir(),
    })?;
    ctx.unblock(move |ctx| {
        tree_move::move_tree(&ctx.root, &original, &ctx.layout.moved_71_data_dir())
    })
    .await
}

/// Moves the data directory back where it was, from whatever stage the
/// move reached.
pub async fn undo(ctx: &Context, original: &Path, moved_to: &Path) -> Result<()> {
    let (original, moved_to) = (original.to_path_buf(), moved_to.to_path_buf());
    ctx.unblock(move |ctx| tree_move::move_back(&ctx.root, &original, &moved_to))
        .await
}
