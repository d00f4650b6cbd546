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

use std::path::Path;

use anyhow::Result;

use crate::flow::context::Context;
use crate::flow::journal::{StepJournal, Undo};
use crate::migration::schema;
use crate::migration::selection::window_cutoff;
use crate::migration::window::{PresyncMark, copy_fenced_window};
use crate::support::constants::DATABASE_NAME;
use crate::support::fsutil;
use crate::system::pg::{self, Cluster, InitOptions, StopMode};

/// Creates the 9.1 cluster and copies the window's policy events into it.
pub async fn run(ctx: &Context, journal: &mut StepJournal) -> Result<PresyncMark> {
    let staged = crate::flow::clusters::staged_91(ctx)?;
    journal.note_undo(Undo::RemoveStagedCluster {
        data_dir: ctx.layout.staged_91_data_dir()?,
    })?;
    let cutoff = window_cutoff(journal.started_at);
    let cluster = staged.clone();
    ctx.unblock(move |ctx| {
        crate::flow::clusters::open_backup_to(ctx, &cluster)?;
        create_cluster(ctx, &cluster)?;
        cluster.start()
    })
    .await?;
    let loaded = load(ctx, &staged, cutoff).await;
    ctx.unblock(move |_| staged.stop(StopMode::Fast)).await?;
    loaded
}

/// A new data directory of the service account's, made by `initdb` with the
/// 7.1 superuser and password. Its own `postgresql.conf` says where the
/// cluster serves once it is in place (7.1's address, port and socket
/// directory), so that any start that reads it (a unit, after a reboot)
/// serves there; while staged, each start overrides that with a socket in
/// the backup directory.
fn create_cluster(ctx: &Context, cluster: &Cluster) -> Result<()> {
    let dir = &cluster.data_dir;
    fsutil::create_dir_with_mode(dir, 0o700)?;
    cluster.take_ownership_of_data_dir()?;
    let settings = ctx.database()?;
    let in_place = Cluster {
        data_dir: dir.clone(),
        ..crate::flow::clusters::target_91(ctx)?
    };
    in_place.initdb(&InitOptions {
        superuser: &settings.user,
        password: &settings.password,
        no_sync: false,
        settings: &[],
    })
}

async fn load(
    ctx: &Context,
    staged: &Cluster,
    cutoff: chrono::NaiveDateTime,
) -> Result<PresyncMark> {
    let settings = ctx.database()?;
    let admin =
        pg::connect(&staged.socket_settings("postgres", &settings.user, &settings.password))
            .await?;
    schema::create_database(&admin, DATABASE_NAME).await?;
    let target = pg::connect(&staged.socket_settings(
        &settings.database,
        &settings.user,
        &settings.password,
    ))
    .await?;
    schema::load_tables(&target).await?;
    schema::create_staging(&target).await?;

    let source = pg::connect(&settings).await?;
    let mark = copy_fenced_window(&source, &target, cutoff).await?;
    schema::analyze(&target).await?;
    // The shutdown at quiesce then has little to write: a shorter downtime.
    if let Err(err) = pg::checkpoint(&source).await {
        tracing::warn!(
            "a checkpoint on 7.1 ahead of its shutdown failed (the shutdown takes longer): {err:#}"
        );
    }
    tracing::info!(
        imss_rows = mark.policy_events,
        "policy events of the last 24 hours copied to 9.1 ahead of the downtime"
    );
    Ok(mark)
}

/// Stops the staged cluster if a crash left it running (an `initdb`'s
/// single-user server included), and removes it.
pub async fn undo(ctx: &Context, data_dir: &Path) -> Result<()> {
    let data_dir = data_dir.to_path_buf();
    // Nothing of the staged cluster's PostgreSQL 15 is needed: the undo
    // works when the programs that made the cluster are gone.
    ctx.unblock(move |ctx| pg::remove_cluster(&ctx.root.resolve_parent(&data_dir)?))
        .await
}
