//! Step 1 after preflight, presync: while 7.1 still takes mail, the 9.1
//! cluster is created beside the 7.1 one (initdb, the 9.1 tables and
//! indexes) and the policy events of the last 24 hours are copied into it
//! and checked, so that the downtime only has to carry what arrived since.
//! The cluster listens on a socket in the backup directory only, and is
//! stopped again at the end; the migrate step moves it into place.
//!
//! Policy events are only ever inserted, so what is copied here stays
//! right; quarantine and archive records (their `released` flag can change)
//! and the configuration move during the downtime, whole.
//!
//! May touch: the staged cluster's directory (created; removed on undo) and
//! the backup directory's socket directory. 7.1 is only read.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use crate::config::DbSettings;
use crate::constants::{BACKUP_DIR, DATABASE_NAME};
use crate::context::Context;
use crate::pg::{self, Cluster, InitOptions, StopMode};
use crate::schema91::{self, ChecksumMismatch, Filter, Selection, Table71};
use crate::step_journal::{Step, StepJournal, StepRecord};

/// Where the 9.1 cluster is made ready before the downtime.
pub const STAGED_DATA_DIR: &str = "/var/imss/pgdata-91.staged";

/// The 9.1 cluster in its staging place, on a socket of its own in the
/// backup directory and no TCP port.
pub fn staged_cluster(ctx: &Context) -> Result<Cluster> {
    let mut cluster = super::migrate::target_cluster(ctx)?;
    cluster.data_dir = ctx.root.resolve_parent(STAGED_DATA_DIR)?;
    cluster.socket_dir = ctx.root.resolve(BACKUP_DIR)?.join("run-91");
    cluster.listen_address = String::new();
    Ok(cluster)
}

/// What the presync copied.
#[derive(Debug, Clone, Copy, Default)]
pub struct PresyncReport {
    /// Policy events of the last 24 hours copied and verified.
    pub policy_events: u64,
}

/// Creates the 9.1 cluster and copies the window's policy events into it.
pub async fn run(ctx: &Context, journal: &mut StepJournal) -> Result<PresyncReport> {
    let settings = DbSettings::load(&ctx.root)?;
    let staged = staged_cluster(ctx)?;
    journal.note_undo(Step::Presync, |undo| {
        undo.created.push(PathBuf::from(STAGED_DATA_DIR));
    })?;
    super::open_backup_to_service(&staged)?;
    create_cluster(&staged, &settings)?;
    staged.start()?;
    let result = load(
        &staged,
        &settings,
        schema91::window_cutoff(journal.started_at),
    )
    .await;
    staged.stop(StopMode::Fast)?;
    result
}

/// A new, empty data directory of the service account's, and `initdb`.
fn create_cluster(cluster: &Cluster, settings: &DbSettings) -> Result<()> {
    let dir = &cluster.data_dir;
    std::fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::os::unix::fs::chown(dir, Some(cluster.owner.uid), Some(cluster.owner.gid))
        .with_context(|| format!("giving {} to {}", dir.display(), cluster.owner.name))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    cluster.initdb(&InitOptions {
        superuser: &settings.user,
        password: &settings.password,
        no_sync: false,
        settings: &[],
    })
}

async fn load(
    staged: &Cluster,
    settings: &DbSettings,
    cutoff: chrono::NaiveDateTime,
) -> Result<PresyncReport> {
    let admin =
        pg::connect(&staged.socket_settings("postgres", &settings.user, &settings.password))
            .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {DATABASE_NAME} ENCODING 'UTF8'"))
        .await
        .context("creating the 9.1 database")?;
    let target = pg::connect(&staged.socket_settings(
        &settings.database,
        &settings.user,
        &settings.password,
    ))
    .await?;
    schema91::load_tables(&target).await?;
    schema91::create_staging(&target).await?;

    // The copy and the 7.1 checksum see one snapshot of the live database,
    // taken once no transaction can still commit a policy event with an id
    // up to the low-water mark.
    let source = pg::connect(settings).await?;
    let low_water = schema91::fence_low_water(&source).await?;
    source
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .context("starting the snapshot the presync reads 7.1 in")?;
    let window = Selection::new(Table71::PolicyEvent, Filter::Since(cutoff))?;
    let copied = schema91::copy_selection_to_staging(&source, &target, &window).await?;
    crate::fail_point!("presync-window-copied");
    let on_71 = schema91::checksum_source(&source, &window).await?;
    source
        .batch_execute("COMMIT")
        .await
        .context("ending the presync's snapshot of 7.1")?;

    schema91::transform_history(&target).await?;
    schema91::create_indexes(&target).await?;
    let on_91 = schema91::checksum_target(&target, &window).await?;
    if on_71 != on_91 {
        return Err(ChecksumMismatch {
            selection: window,
            on_71,
            on_91,
        }
        .into());
    }
    schema91::clear_staging_history(&target).await?;
    schema91::PresyncMark {
        low_water,
        policy_events: copied as i64,
    }
    .record(&target)
    .await?;
    target
        .batch_execute("ANALYZE")
        .await
        .context("gathering statistics on the 9.1 database")?;
    // The shutdown at quiesce then has little to write: a shorter downtime.
    if let Err(err) = source.batch_execute("CHECKPOINT").await {
        tracing::warn!(
            "a checkpoint on 7.1 ahead of its shutdown failed (the shutdown takes longer): {err}"
        );
    }
    tracing::info!(
        imss_rows = copied,
        "policy events of the last 24 hours copied to 9.1 ahead of the downtime"
    );
    Ok(PresyncReport {
        policy_events: copied,
    })
}

/// Stops the staged cluster if a crash left it running, and removes it.
pub async fn undo(ctx: &Context, record: &StepRecord) -> Result<()> {
    super::remove_created(ctx, record, &staged_cluster(ctx)?)
}
