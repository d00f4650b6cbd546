//! The database clusters at the layout's places (pg_upgrade's
//! `old_cluster` and `new_cluster`, with the stages in between): which
//! PostgreSQL runs each, where, on which socket and port, as which
//! account. The port and the account are the server's, read through the
//! context; the places are the [`Layout`]'s.

use anyhow::Result;

use crate::flow::context::Context;
#[cfg(doc)]
use crate::flow::layout::Layout;
use crate::flow::layout::backup::BackupDir;
use crate::support::constants::{BUNDLED_PG_DIR, DATABASE_HOST, RUN_DIR};
use crate::system::pg::{Cluster, PgInstall, StopMode};

/// The 7.1 cluster where 7.1 runs it, with the bundled PostgreSQL 10 of
/// the 7.1 program tree.
pub fn source_71(ctx: &Context) -> Result<Cluster> {
    live(ctx, bundled_71(ctx)?)
}

/// 7.1's bundled PostgreSQL 10, in the 7.1 program tree.
fn bundled_71(ctx: &Context) -> Result<PgInstall> {
    PgInstall::at(
        ctx.root.resolve(BUNDLED_PG_DIR)?.join("bin"),
        "the 7.1 program tree lacks its bundled PostgreSQL; is IMSS 7.1 installed whole?",
    )
}

/// The cluster `install` runs where 7.1's lives, listening as 7.1's does:
/// 7.1's own before the upgrade, 9.1's after it.
fn live(ctx: &Context, install: PgInstall) -> Result<Cluster> {
    Ok(Cluster {
        install,
        // 9.1's is not there yet during the presync, nor while the 7.1 one
        // is moved.
        data_dir: ctx.root.resolve_parent(ctx.layout.data_dir_in_place()?)?,
        socket_dir: ctx.root.resolve(RUN_DIR)?,
        listen_address: DATABASE_HOST.to_string(),
        port: ctx.database()?.port,
        owner: ctx.service_user()?.clone(),
    })
}

/// The 7.1 cluster in the backup directory, on a socket there only: no
/// client but the upgrade reaches it, and it does not collide with the 9.1
/// cluster, which takes over the 7.1 address and port.
pub fn backup_71(ctx: &Context) -> Result<Cluster> {
    in_backup(ctx, bundled_71(ctx)?)
}

/// The 7.1 cluster in the backup, as [`backup_71`] places it, run by the
/// PostgreSQL 10 programs the transfer took out of the snapshot
/// ([`Layout::extracted_71_postgresql`]): after the switch, the program tree is
/// 9.1's.
pub fn backup_71_after_switch(ctx: &Context) -> Result<Cluster> {
    in_backup(
        ctx,
        PgInstall::at(
            ctx.layout.extracted_71_postgresql()?.join("bin"),
            "7.1's PostgreSQL 10 was not taken out of the snapshot yet",
        )?,
    )
}

/// The 7.1 data directory in the backup, run by `install` on its socket
/// there and no TCP address.
fn in_backup(ctx: &Context, install: PgInstall) -> Result<Cluster> {
    Ok(Cluster {
        install,
        data_dir: ctx.root.resolve(ctx.layout.moved_71_data_dir())?,
        socket_dir: ctx.layout.backup_sockets_71()?,
        listen_address: String::new(),
        port: ctx.database()?.port,
        owner: ctx.service_user()?.clone(),
    })
}

/// Starts PostgreSQL 10 on the 7.1 data directory in the backup so that
/// it writes nothing of the database into it: read-only transactions, no
/// autovacuum (it analyzed and vacuumed into the backup), no statistics
/// collected and their temporary files beside the socket, no background
/// writer and no timed or size-triggered checkpoint (each wrote pages,
/// hint bits included, and the multixact, commit-log and replication-origin
/// files). [`stop_backup_71`] ends it without a shutdown checkpoint. What
/// PostgreSQL rewrites at every start whatever it is asked (its control
/// file, the relation cache's init files, the NOTIFY and subtransaction
/// logs, `postmaster.opts` and the pid file) is still written, and it
/// removes the statistics files it reads at start (7.1's statistics start
/// afresh after a rollback, as after any crash); the WAL and every
/// relation file stay as they were.
///
/// It asks for no password ([`Cluster::start_private_with`]): the one in
/// `odbc.ini` may be 9.1's, changed since the upgrade, which this cluster
/// never had.
pub fn start_backup_71_read_only(cluster: &Cluster) -> Result<()> {
    let stats = cluster.socket_dir.to_string_lossy().into_owned();
    cluster.start_private_with(&[
        ("default_transaction_read_only", "on"),
        ("autovacuum", "off"),
        ("track_counts", "off"),
        ("stats_temp_directory", &stats),
        ("bgwriter_lru_maxpages", "0"),
        ("checkpoint_timeout", "1d"),
        ("max_wal_size", "1TB"),
    ])
}

/// Stops PostgreSQL 10 on the 7.1 data directory in the backup without a
/// shutdown checkpoint, which would write the pages it read (their hint
/// bits) and the statistics into it.
pub fn stop_backup_71(cluster: &Cluster) -> Result<()> {
    cluster.stop(StopMode::Immediate)
}

/// The 9.1 cluster in its final place, where the 7.1 one was and listening
/// as it did, run by the upgrade package's PostgreSQL 15.
pub fn target_91(ctx: &Context) -> Result<Cluster> {
    live(
        ctx,
        PgInstall::at(
            &ctx.target_pg_bin,
            "the upgrade package's PostgreSQL 15 is missing: reinstall the package",
        )?,
    )
}

/// The 9.1 cluster while the presync makes it ready: beside the 7.1 one,
/// on a socket in the backup directory and no TCP port.
pub fn staged_91(ctx: &Context) -> Result<Cluster> {
    Ok(Cluster {
        data_dir: ctx.root.resolve_parent(ctx.layout.staged_91_data_dir()?)?,
        socket_dir: ctx.layout.backup_sockets_91()?,
        listen_address: String::new(),
        ..target_91(ctx)?
    })
}

/// Opens the backup directory to `cluster`'s account, whose data directory
/// and socket are inside it ([`BackupDir::open_to`]).
pub fn open_backup_to(ctx: &Context, cluster: &Cluster) -> Result<()> {
    BackupDir::of(&ctx.layout).open_to(&cluster.owner, &cluster.socket_dir, &cluster.data_dir)
}
