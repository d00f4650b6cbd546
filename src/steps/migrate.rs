//! Step 4, migrate: the 9.1 cluster that the presync made ready takes the
//! 7.1 cluster's place (same address, port and password), PostgreSQL 10
//! starts read-only from the backup directory, the 7.1 configuration is
//! exported to `imsx_config.dat` and imported, and the rest of the last 24
//! hours is copied and transformed: the quarantine and archive records,
//! and the policy events the presync did not see. Checksums of every
//! selection, and the window's policy events counted per block of ids,
//! must match before the step is done. The 9.1 cluster is left running for the
//! switch; the 7.1 one is stopped again. Older history is left to the
//! background transfer.
//!
//! May touch: `/var/imss/pgdata` (the 9.1 cluster moved there; removed on
//! undo), the backup directory (`imsx_config.dat`; the 7.1 cluster is only
//! read).

use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::presync::STAGED_DATA_DIR;
use super::snapshot::MOVED_DATA_DIR;
use crate::config::{DbSettings, ProductInfo};
use crate::config_export;
use crate::constants::{
    BACKUP_DIR, CONFIG_EXPORT_FILE, DATABASE_HOST, PG71_DATA_DIR, RUN_DIR, SERVICE_USER,
};
use crate::context::Context;
use crate::pg::{self, Cluster, PgInstall, StopMode};
use crate::schema91::{self, Filter, Selection, Table71};
use crate::step_journal::{Step, StepJournal, StepRecord};
use crate::user::ServiceUser;

/// What the migrate step moved, for the report.
#[derive(Debug, Clone)]
pub struct MigrateReport {
    /// Rows of the last 24 hours copied per history table.
    pub window: schema91::WindowCounts,
    /// Every selection verified, with its checksum.
    pub verified: Vec<schema91::Verified>,
}

/// The 7.1 cluster in the backup directory, on a socket in the backup
/// directory only: no client but the upgrade reaches it, and it does not
/// collide with the 9.1 cluster, which takes over the 7.1 address and port.
pub fn backup_cluster(ctx: &Context) -> Result<Cluster> {
    let mut cluster = super::source_cluster(ctx)?;
    cluster.data_dir = ctx.root.resolve(MOVED_DATA_DIR)?;
    cluster.socket_dir = ctx.root.resolve(BACKUP_DIR)?.join("run");
    cluster.listen_address = String::new();
    Ok(cluster)
}

/// The new 9.1 cluster, where the 7.1 one was and listening as it did.
pub fn target_cluster(ctx: &Context) -> Result<Cluster> {
    let owner = ServiceUser::lookup(&ctx.root, SERVICE_USER)?;
    let settings = DbSettings::load(&ctx.root)?;
    Ok(Cluster {
        install: PgInstall::at(
            &ctx.target_pg_bin,
            "the upgrade package's PostgreSQL 15 is missing: reinstall the package",
        )?,
        // Not there yet during the presync, nor while the 7.1 one is moved.
        data_dir: ctx.root.resolve_parent(PG71_DATA_DIR)?,
        socket_dir: ctx.root.resolve(RUN_DIR)?,
        listen_address: DATABASE_HOST.to_string(),
        port: settings.port,
        owner,
    })
}

/// Moves the staged 9.1 cluster into place and brings it up to date.
pub async fn run(ctx: &Context, journal: &mut StepJournal) -> Result<MigrateReport> {
    let settings = DbSettings::load(&ctx.root)?;
    let old = backup_cluster(ctx)?;
    let new = target_cluster(ctx)?;
    journal.note_undo(Step::Migrate, |undo| {
        undo.created.push(PathBuf::from(PG71_DATA_DIR));
    })?;
    super::open_backup_to_service(&old)?;
    let staged = ctx.root.resolve_parent(STAGED_DATA_DIR)?;
    std::fs::rename(&staged, &new.data_dir).with_context(|| {
        format!(
            "moving the 9.1 cluster from {} to {}",
            staged.display(),
            new.data_dir.display()
        )
    })?;
    new.start()?;
    old.start_with(&[("default_transaction_read_only", "on")])?;
    let result = load_target(ctx, &settings, &old, &new, journal.started_at).await;
    old.stop(StopMode::Fast)?;
    result
}

async fn load_target(
    ctx: &Context,
    settings: &DbSettings,
    old: &Cluster,
    new: &Cluster,
    started_at: chrono::DateTime<chrono::Utc>,
) -> Result<MigrateReport> {
    let source =
        pg::connect(&old.socket_settings(&settings.database, &settings.user, &settings.password))
            .await?;
    let mut target =
        pg::connect(&new.socket_settings(&settings.database, &settings.user, &settings.password))
            .await?;

    let product = ProductInfo::load(&ctx.root)?;
    let export = config_export::export(&source, &product).await?;
    config_export::write(
        &ctx.root.resolve(BACKUP_DIR)?.join(CONFIG_EXPORT_FILE),
        &export,
    )?;
    config_export::import(&mut target, &export).await?;
    crate::fail_point!("migrate-config-imported");

    // Quarantine and archive records whole; of the policy events, those the
    // presync did not see.
    let cutoff = schema91::window_cutoff(started_at);
    schema91::clear_staging_history(&target).await?;
    let mut selections: Vec<Selection> = [Table71::Quarantine, Table71::Archive]
        .into_iter()
        .map(|table| Selection::new(table, Filter::Since(cutoff)))
        .collect::<Result<_>>()?;
    let presynced = schema91::PresyncMark::read(&target).await?;
    let events = schema91::EventWindow {
        cutoff,
        above: presynced.low_water,
    };
    let missing = schema91::missing_window_events(&source, &target, &events).await?;
    selections.extend(missing.selections.iter().cloned());
    let mut window = schema91::WindowCounts::default();
    for selection in &selections {
        let rows = schema91::copy_selection_to_staging(&source, &target, selection).await?;
        match selection.table() {
            Table71::Quarantine => window.quarantine = rows,
            Table71::Archive => window.archive = rows,
            _ => {}
        }
    }
    crate::fail_point!("migrate-window-copied");
    let added = schema91::transform_history(&target).await?;
    window.policy_events = presynced.policy_events as u64 + added.policy_events;
    let floors = schema91::source_id_floors(&source).await?;
    schema91::set_id_floors(&target, &floors).await?;

    selections.extend(schema91::config_selections());
    let verified = schema91::verify(&source, &target, &selections).await?;
    schema91::check_window_events(&target, &events, &missing).await?;
    schema91::clear_staging_history(&target).await?;
    Ok(MigrateReport { window, verified })
}

/// Stops and removes the 9.1 cluster; stops the 7.1 one in the backup if a
/// crash left it running.
pub async fn undo(ctx: &Context, record: &StepRecord) -> Result<()> {
    // Only a started cluster has a pid file; before the start the backup
    // directory is still closed to the service account, which pg_ctl runs as.
    if let Ok(old) = backup_cluster(ctx)
        && old.data_dir.join("postmaster.pid").exists()
    {
        old.stop(StopMode::Fast)?;
    }
    super::remove_created(ctx, record, &target_cluster(ctx)?)
}
