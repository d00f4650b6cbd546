//! Step 4, migrate: PostgreSQL 10 starts read-only from the backup
//! directory, a new PostgreSQL 15 cluster takes the 7.1 cluster's place
//! (same address, port and password), the 9.1 schema is loaded, the 7.1
//! configuration is exported to `imsx_config.dat` and imported, and the
//! last 24 hours of history are copied and transformed; counts and
//! checksums must match before the step is done. The 9.1 cluster is left
//! running for the switch; the 7.1 one is stopped again. Older history is
//! left to the background transfer.
//!
//! May touch: the new cluster's directory (created; removed on undo), the
//! backup directory (`imsx_config.dat`; the 7.1 cluster is only read).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::snapshot::MOVED_DATA_DIR;
use crate::config::{DbSettings, ProductInfo};
use crate::config_export;
use crate::constants::{
    BACKUP_DIR, CONFIG_EXPORT_FILE, DATABASE_HOST, DATABASE_NAME, PG71_DATA_DIR, RUN_DIR,
    SERVICE_USER,
};
use crate::context::Context;
use crate::pg::{self, Cluster, InitOptions, PgInstall, StopMode};
use crate::schema91;
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

/// The service account must reach its data directory inside the backup
/// directory: the directory stays root's, and only the imss group may pass
/// through it (0710; it may not list it). The socket directory is the
/// account's own.
fn open_backup_to_service(cluster: &Cluster) -> Result<()> {
    let backup = cluster
        .socket_dir
        .parent()
        .context("the backup socket directory has a parent")?;
    std::os::unix::fs::chown(backup, None, Some(cluster.owner.gid))
        .with_context(|| format!("giving {} to group {}", backup.display(), cluster.owner.gid))?;
    std::fs::set_permissions(backup, std::fs::Permissions::from_mode(0o710))
        .with_context(|| format!("setting the mode of {}", backup.display()))?;
    if !cluster.socket_dir.exists() {
        std::fs::create_dir(&cluster.socket_dir)
            .with_context(|| format!("creating {}", cluster.socket_dir.display()))?;
    }
    std::os::unix::fs::chown(
        &cluster.socket_dir,
        Some(cluster.owner.uid),
        Some(cluster.owner.gid),
    )
    .with_context(|| {
        format!(
            "giving {} to {}",
            cluster.socket_dir.display(),
            cluster.owner.name
        )
    })?;
    std::fs::set_permissions(&cluster.socket_dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
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
        data_dir: ctx.root.resolve(PG71_DATA_DIR)?,
        socket_dir: ctx.root.resolve(RUN_DIR)?,
        listen_address: DATABASE_HOST.to_string(),
        port: settings.port,
        owner,
    })
}

/// Creates and loads the 9.1 cluster.
pub async fn run(ctx: &Context, journal: &mut StepJournal) -> Result<MigrateReport> {
    let settings = DbSettings::load(&ctx.root)?;
    let old = backup_cluster(ctx)?;
    let new = target_cluster(ctx)?;
    journal.note_undo(Step::Migrate, |undo| {
        undo.created.push(PathBuf::from(PG71_DATA_DIR));
    })?;
    open_backup_to_service(&old)?;
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
    std::fs::create_dir(&new.data_dir)
        .with_context(|| format!("creating {}", new.data_dir.display()))?;
    std::os::unix::fs::chown(&new.data_dir, Some(new.owner.uid), Some(new.owner.gid))
        .with_context(|| format!("giving {} to {}", new.data_dir.display(), new.owner.name))?;
    std::fs::set_permissions(&new.data_dir, std::fs::Permissions::from_mode(0o700))?;
    new.initdb(&InitOptions {
        superuser: &settings.user,
        password: &settings.password,
        no_sync: false,
        settings: &[],
    })?;
    new.start()?;

    let source =
        pg::connect(&old.socket_settings(&settings.database, &settings.user, &settings.password))
            .await?;
    let admin =
        pg::connect(&new.socket_settings("postgres", &settings.user, &settings.password)).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {DATABASE_NAME} ENCODING 'UTF8'"))
        .await
        .context("creating the 9.1 database")?;
    let mut target =
        pg::connect(&new.socket_settings(&settings.database, &settings.user, &settings.password))
            .await?;

    schema91::load_tables(&target).await?;
    schema91::create_staging(&target).await?;
    let product = ProductInfo::load(&ctx.root)?;
    let export = config_export::export(&source, &product).await?;
    config_export::write(
        &ctx.root.resolve(BACKUP_DIR)?.join(CONFIG_EXPORT_FILE),
        &export,
    )?;
    config_export::import(&mut target, &export).await?;
    crate::fail_point!("migrate-config-imported");
    let cutoff = schema91::window_cutoff(started_at);
    let window = schema91::copy_window_to_staging(&source, &target, cutoff).await?;
    crate::fail_point!("migrate-window-copied");
    schema91::transform_history(&target).await?;
    schema91::create_indexes(&target).await?;
    let floors = schema91::source_id_floors(&source).await?;
    schema91::set_id_floors(&target, &floors).await?;
    let mut selections = schema91::window_selections(cutoff);
    selections.extend(schema91::config_selections());
    let verified = schema91::verify(&source, &target, &selections).await?;
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
    for created in &record.undo.created {
        let path = ctx.root.resolve_parent(created)?;
        if !path.exists() {
            continue;
        }
        let new = target_cluster(ctx)?;
        if new.data_dir == path {
            new.stop(StopMode::Immediate)?;
        }
        std::fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}
