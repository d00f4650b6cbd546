//! Step 4, migrate: the 9.1 cluster that the presync made ready takes the
//! 7.1 cluster's place (same address, port and password), PostgreSQL 10
//! starts read-only from the backup directory, the 7.1 configuration is
//! exported to `imsx_config.dat` and imported, and the rest of the last 24
//! hours is copied and transformed: the quarantine and archive records,
//! and the policy events the presync did not see. Checksums of every
//! selection, and the window's policy events counted per block of ids,
//! must match before the step is done. The 9.1 cluster is left running for
//! the switch; the 7.1 one is stopped again. Older history is left to the
//! background transfer.
//!
//! May touch: `/var/imss/pgdata` (the 9.1 cluster moved there; removed on
//! undo), the backup directory (`imsx_config.dat`; the 7.1 cluster is only
//! read, started so that it writes nothing of the database there:
//! [`layout::start_backup_71_read_only`]).

use std::path::Path;

use anyhow::Result;

use crate::files::imss_ini::ProductInfo;
use crate::flow::context::Context;
use crate::flow::journal::{StepJournal, Undo};
use crate::flow::layout::{self, MOVED_71_DATA_DIR};
use crate::migration::config_export;
use crate::migration::copy::{WindowCounts, copy_selection_to_staging};
use crate::migration::schema::clear_staging_history;
use crate::migration::selection::{Filter, Selection, config_selections, window_cutoff};
use crate::migration::tables::Table71;
use crate::migration::transform::{set_id_floors, source_id_floors, transform_history};
use crate::migration::verify::{Verified, verify};
use crate::migration::window::{
    EventWindow, PresyncMark, check_window_events, missing_window_events,
};
use crate::support::fsutil;
use crate::system::pg::{self, Cluster, StopMode};

/// What the migrate step moved, for the report.
#[derive(Debug, Clone)]
pub struct MigrateReport {
    /// Rows of the last 24 hours copied per history table.
    pub window: WindowCounts,
    /// Every selection verified, with its checksum.
    pub verified: Vec<Verified>,
}

/// Moves the staged 9.1 cluster into place and brings it up to date.
pub async fn run(ctx: &Context, journal: &mut StepJournal) -> Result<MigrateReport> {
    let old = layout::backup_71(ctx)?;
    let new = layout::target_91(ctx)?;
    let staged = layout::staged_91(ctx)?;
    journal.note_undo(Undo::RemoveTargetCluster {
        data_dir: layout::data_dir_in_place(ctx)?,
    })?;
    let (opened, placed) = (old.clone(), new.clone());
    ctx.unblock(move |ctx| {
        layout::open_backup_to(ctx, &opened)?;
        fsutil::rename_durably(&staged.data_dir, &placed.data_dir)?;
        placed.start()?;
        layout::start_backup_71_read_only(&opened)
    })
    .await?;
    let result = load_target(ctx, &old, &new, journal.started_at).await;
    ctx.unblock(move |_| layout::stop_backup_71(&old)).await?;
    result
}

async fn load_target(
    ctx: &Context,
    old: &Cluster,
    new: &Cluster,
    started_at: chrono::DateTime<chrono::Utc>,
) -> Result<MigrateReport> {
    let settings = ctx.database()?;
    let source =
        pg::connect(&old.socket_settings(&settings.database, &settings.user, &settings.password))
            .await?;
    let mut target =
        pg::connect(&new.socket_settings(&settings.database, &settings.user, &settings.password))
            .await?;

    let product = ProductInfo::load(&ctx.root)?;
    let export = config_export::export(&source, &product).await?;
    config_export::write(&layout::config_export(ctx)?, &export)?;
    config_export::import(&mut target, &export).await?;
    crate::fail_point!("migrate-config-imported");

    // Quarantine and archive records whole; of the policy events, those the
    // presync did not see.
    let cutoff = window_cutoff(started_at);
    clear_staging_history(&target).await?;
    let mut selections: Vec<Selection> = [Table71::Quarantine, Table71::Archive]
        .into_iter()
        .map(|table| Selection::new(table, Filter::Since(cutoff)))
        .collect::<Result<_>>()?;
    let presynced = PresyncMark::read(&target).await?;
    let events = EventWindow {
        cutoff,
        above: presynced.low_water,
    };
    let missing = missing_window_events(&source, &target, &events).await?;
    selections.extend(missing.selections.iter().cloned());
    let mut window = WindowCounts::default();
    for selection in &selections {
        let rows = copy_selection_to_staging(&source, &target, selection).await?;
        match selection.table() {
            Table71::Quarantine => window.quarantine = rows,
            Table71::Archive => window.archive = rows,
            _ => {}
        }
    }
    crate::fail_point!("migrate-window-copied");
    let added = transform_history(&target).await?;
    window.policy_events = presynced.policy_events as u64 + added.policy_events;
    let floors = source_id_floors(&source).await?;
    set_id_floors(&target, &floors).await?;

    selections.extend(config_selections());
    let verified = verify(&source, &target, &selections).await?;
    check_window_events(&target, &events, &missing).await?;
    clear_staging_history(&target).await?;
    Ok(MigrateReport { window, verified })
}

/// Stops the 7.1 cluster in the backup if it was started, then stops and
/// removes the 9.1 cluster in 7.1's place.
pub async fn undo(ctx: &Context, data_dir: &Path) -> Result<()> {
    let data_dir = data_dir.to_path_buf();
    // By data directory alone: neither PostgreSQL's programs are needed.
    ctx.unblock(move |ctx| {
        pg::stop_server(&ctx.root.resolve(MOVED_71_DATA_DIR)?, StopMode::Immediate)?;
        pg::remove_cluster(&ctx.root.resolve_parent(&data_dir)?)
    })
    .await
}
