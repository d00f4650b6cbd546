//! Where everything the upgrade makes or moves lives, and nowhere else: the
//! four placements of a database cluster (pg_upgrade's `old_cluster` and
//! `new_cluster`, with the stages in between), the staging directories of
//! the program tree, and the files of the backup directory. Steps take
//! their paths from here, so no step needs to know another.
//!
//! Paths are absolute paths inside the root; [`Root::resolve`] turns them
//! into paths on this machine.
//!
//! | what | where |
//! | --- | --- |
//! | the 7.1 cluster, live | `/var/imss/pgdata` (or where a link there leads), on 7.1's address and port |
//! | the 9.1 cluster, staged by presync | `pgdata-91.staged` beside it, on a socket in the backup directory |
//! | the 7.1 cluster, moved by snapshot | `<backup>/pgdata-71`, on a socket in the backup directory |
//! | the 9.1 cluster, placed by migrate | where the 7.1 one was, on 7.1's address and port |
//! | the 9.1 program tree, staged by switch | `/opt/trend/imss.91-staging` |
//! | the 7.1 program tree, between swap and removal | `/opt/trend/imss.71-replaced` (whole), `/opt/trend/imss.71-removing` (being deleted) |
//! | snapshot and its manifest, `imsx_config.dat`, the 7.1 cluster | `<backup>/…` (`/var/imss`, the service account's: checked against the state) |
//! | step journal, locks, rollback manifest, the record of the control script's process group and of the backup directory's identity | `/var/lib/imss-upgrade/…` (root's alone, checked when read) |
//! | the background transfer's lock, pause, progress and done files | `/var/lib/imss-upgrade/transfer*` |
//! | the 9.1 units, written by switch | `/etc/systemd/system/imss-*.service` |
//! | the bundled BIND: programs, configuration and key; working directory | `/opt/trend/imss/bind/{sbin,etc}`; `/var/imss/bind` |
//!
//! [`Root::resolve`]: crate::support::root::Root::resolve

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::flow::context::Context;
use crate::flow::journal;
use crate::support::constants::{
    BACKUP_DIR, BUNDLED_PG_DIR, CONFIG_EXPORT_FILE, DATABASE_HOST, PG71_DATA_DIR, PROGRAM_DIR,
    RUN_DIR, STATE_DIR, STEP_JOURNAL_FILE,
};
use crate::support::fsutil;
use crate::support::no_follow::{self, Entry, EntryKind};
use crate::support::root::Root;
use crate::system::pg::{Cluster, PgInstall, StopMode};

/// What the snapshot archives: every path the switch replaces.
pub const SNAPSHOT_PATHS: &[&str] = &[PROGRAM_DIR];

/// Where the switch installs the 9.1 units and the upgrade its own: the
/// administrator's unit directory, so that they outrank any package's.
pub const UNIT_DIR: &str = "/etc/systemd/system";

/// The bundled BIND's programs, inside the 9.1 program tree.
pub const BIND_PROGRAMS_DIR: &str = "/opt/trend/imss/bind/sbin";

/// The bundled BIND's configuration and control key, inside the 9.1
/// program tree (so a rollback takes them with the tree).
pub const BIND_CONFIG_DIR: &str = "/opt/trend/imss/bind/etc";

/// The bundled BIND's working directory: its zone, pid and managed keys.
pub const BIND_WORKING_DIR: &str = "/var/imss/bind";

/// The paths outside the program tree the switch creates: the bundled
/// BIND's working directory and, where systemd manages the server
/// (`units`), the 9.1 unit files. None may exist before it: it never
/// overwrites what it did not write.
pub fn paths_the_switch_creates(units: bool) -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from(BIND_WORKING_DIR)];
    if units {
        let unit_dir = std::path::Path::new(UNIT_DIR);
        paths.extend(
            crate::files::units::SERVICES_91
                .iter()
                .map(|unit| unit_dir.join(unit.name)),
        );
    }
    paths
}

/// What already stands at each path the switch creates, as a path on this
/// machine: the path itself is looked at, a link (dangling or not) is not
/// followed, and the directories on the way are reached as
/// [`no_follow`] reaches them. A dangling link reads as "absent" when
/// followed, and the switch would then create its target.
pub fn switch_targets_in_the_way(ctx: &Context, units: bool) -> Result<Vec<(PathBuf, Entry)>> {
    let mut found = Vec::new();
    for path in paths_the_switch_creates(units) {
        let on_server = ctx.root.resolve_parent(&path)?;
        if let Some(entry) = no_follow::entry_at(&on_server)? {
            found.push((on_server, entry));
        }
    }
    Ok(found)
}

/// The bundled BIND's files, as `named` and `rndc` read them.
pub fn bind_files() -> crate::system::bind::BindFiles {
    let etc = std::path::Path::new(BIND_CONFIG_DIR);
    crate::system::bind::BindFiles {
        named_conf: etc.join("named.conf"),
        rndc_conf: etc.join("rndc.conf"),
        rndc_key: etc.join("rndc.key"),
        working_dir: PathBuf::from(BIND_WORKING_DIR),
    }
}

/// The name the presync gives the 9.1 cluster, beside the 7.1 one.
const STAGED_91_NAME: &str = "pgdata-91.staged";

/// Where the snapshot moves the 7.1 data directory.
pub const MOVED_71_DATA_DIR: &str = "/var/imss/imss_backup_71_to_91/pgdata-71";

/// Where the 7.1 data directory really is, as a path inside the root: the
/// place `/var/imss/pgdata` names with its links followed (a link there
/// stays a link, and leads to the 9.1 cluster after the upgrade). The 9.1
/// cluster ends up here too, and is staged beside it, on its file system,
/// so that putting it in place is a rename.
///
/// `/var/imss` is the service account's: a link there is followed only when
/// root made it (the account can make no link of root's). Another one is
/// the place itself, which a rename replaces and a removal takes away,
/// never following it; preflight refuses to begin with one there
/// ([`untrusted_data_dir_link`]).
pub fn data_dir_in_place(ctx: &Context) -> Result<PathBuf> {
    if untrusted_data_dir_link(ctx)?.is_some() {
        return Ok(PathBuf::from(PG71_DATA_DIR));
    }
    Ok(ctx.root.inside(&ctx.root.resolve(PG71_DATA_DIR)?))
}

/// A link at the 7.1 data directory's place that root did not make, as a
/// path on this machine, with what it is.
pub fn untrusted_data_dir_link(ctx: &Context) -> Result<Option<(PathBuf, Entry)>> {
    let link = ctx.root.resolve_parent(PG71_DATA_DIR)?;
    Ok(no_follow::entry_at(&link)?
        .filter(|entry| entry.kind == EntryKind::Link && entry.uid != 0)
        .map(|entry| (link, entry)))
}

/// Where the presync stages the 9.1 cluster, as a path inside the root.
pub fn staged_91_data_dir(ctx: &Context) -> Result<PathBuf> {
    Ok(data_dir_in_place(ctx)?.with_file_name(STAGED_91_NAME))
}

/// Where the switch puts the 9.1 program tree together before it is
/// swapped in.
pub const PROGRAM_STAGING_DIR: &str = "/opt/trend/imss.91-staging";

/// Where the 7.1 program tree waits, whole, between the swap and its
/// removal.
pub const PROGRAM_REPLACED_DIR: &str = "/opt/trend/imss.71-replaced";

/// Where the 7.1 program tree is deleted from, once 9.1 took mail: a tree
/// here may be half-deleted, so it is never put back.
pub const PROGRAM_REMOVING_DIR: &str = "/opt/trend/imss.71-removing";

/// The rollback manifest's file name in the state directory.
pub const ROLLBACK_MANIFEST_FILE: &str = "rollback-manifest.json";

/// The rollback manifest, inside the root.
pub const ROLLBACK_MANIFEST: &str = "/var/lib/imss-upgrade/rollback-manifest.json";

/// Socket directories inside the backup directory: a cluster started there
/// is reached by the upgrade alone, and collides with nothing on TCP.
const BACKUP_SOCKETS_71: &str = "run";
const BACKUP_SOCKETS_91: &str = "run-91";

/// The state directory as a path on this machine, checked as every reader
/// of the state must: only root can write it, at every level from the
/// root. Otherwise the command refuses, naming the directory, its owner
/// and the fix.
pub fn state_dir(ctx: &Context) -> Result<PathBuf> {
    state_dir_under(&ctx.root)
}

/// [`state_dir`] under `root`, for a reader without a context.
pub fn state_dir_under(root: &Root) -> Result<PathBuf> {
    let dir = root.resolve(STATE_DIR)?;
    no_follow::check_only_root_can_write(root.dir(), &dir)?;
    Ok(dir)
}

/// [`state_dir`], made (root's, 0700) when it is missing: for a new run.
pub fn state_dir_creating(ctx: &Context) -> Result<PathBuf> {
    let dir = state_dir(ctx)?;
    if std::fs::symlink_metadata(&dir).is_err() {
        let parent = dir.parent().expect("the state directory has a parent");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        match fsutil::create_dir_with_mode(&dir, 0o700) {
            Ok(()) => fsutil::sync_dir(parent)?,
            // Another command made it meanwhile.
            Err(_) if dir.is_dir() => {}
            Err(err) => return Err(err),
        }
    }
    state_dir(ctx)
}

/// The step journal as a path on this machine.
pub fn step_journal(ctx: &Context) -> Result<PathBuf> {
    Ok(state_dir(ctx)?.join(STEP_JOURNAL_FILE))
}

/// The record of the control script's process group while it runs, in
/// the state directory, as a path on this machine.
pub fn control_record(ctx: &Context) -> Result<PathBuf> {
    Ok(state_dir(ctx)?.join(CONTROL_RECORD_FILE))
}

/// See [`control_record`].
const CONTROL_RECORD_FILE: &str = "control-script.group";

/// The backup directory's device and inode, recorded in the state
/// directory when the run made it.
const BACKUP_IDENTITY_FILE: &str = "backup-dir.json";

/// The files of one run in the state directory, the step journal last:
/// while it is there, the others are the run's.
const RUN_STATE_FILES: &[&str] = &[
    ROLLBACK_MANIFEST_FILE,
    CONTROL_RECORD_FILE,
    TRANSFER_PAUSED_FILE,
    TRANSFER_PROGRESS_FILE,
    TRANSFER_DONE_FILE,
    BACKUP_IDENTITY_FILE,
    journal::RESERVE_FILE,
    STEP_JOURNAL_FILE,
];

#[derive(Debug, Serialize, Deserialize)]
struct BackupIdentity {
    device: u64,
    inode: u64,
}

/// The backup directory as a path on this machine, checked: where a
/// directory stands there, it must be the one this upgrade made (its
/// device and inode as the state directory records them, root's), not one
/// the service account, which owns `/var/imss`, renamed into its place.
/// Otherwise nothing in it is trusted and the command refuses, naming what
/// it found and the fix. A missing one is for the caller to judge.
pub fn backup_dir(ctx: &Context) -> Result<PathBuf> {
    let path = ctx.root.resolve_parent(BACKUP_DIR)?;
    if let Some(found) = no_follow::entry_at(&path)? {
        check_backup_identity(ctx, &path, &found)?;
    }
    Ok(path)
}

/// The backup directory through a handle, checked on the handle itself as
/// [`backup_dir`] checks the path: no moment between the check and the use.
pub fn open_backup_dir(ctx: &Context) -> Result<no_follow::Dir> {
    let path = backup_dir(ctx)?;
    let dir = no_follow::open_dir(&path)?;
    check_backup_identity(ctx, &path, &dir.entry_of_self()?)?;
    Ok(dir)
}

fn check_backup_identity(ctx: &Context, path: &std::path::Path, found: &Entry) -> Result<()> {
    let record = state_dir(ctx)?.join(BACKUP_IDENTITY_FILE);
    let recorded = read_backup_identity(&record)?;
    let ours = found.kind == EntryKind::Directory && found.uid == 0;
    match recorded {
        Some(id) if ours && found.id == (id.device, id.inode) => Ok(()),
        Some(id) => bail!(
            "{} is not the backup directory this upgrade made: it is {}, device {} inode {}, \
             and {} records device {} inode {}. Another account replaced it (its parent \
             belongs to the service account), so nothing in it is trusted and nothing was \
             changed. Find the real one (`find {} -xdev -inum {}`), put it back in place of \
             this one, then run this again",
            path.display(),
            found.describe(),
            found.id.0,
            found.id.1,
            record.display(),
            id.device,
            id.inode,
            path.parent().unwrap_or(path).display(),
            id.inode
        ),
        None => bail!(
            "{} exists ({}), but this upgrade did not make it ({} records none): it may have \
             been put there by another account; move it away, then run this again",
            path.display(),
            found.describe(),
            record.display()
        ),
    }
}

fn read_backup_identity(record: &std::path::Path) -> Result<Option<BackupIdentity>> {
    match std::fs::read(record) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
            format!(
                "{} is not a readable record of the backup directory: leave it in place and \
                 contact support",
                record.display()
            )
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading {}", record.display())),
    }
}

/// Whether the backup directory is absent, or this upgrade's and empty (a
/// run killed before its journal leaves it so): nothing in the way of a
/// new run.
pub fn backup_dir_is_fresh(ctx: &Context) -> Result<bool> {
    let path = ctx.root.resolve_parent(BACKUP_DIR)?;
    Ok(match no_follow::entry_at(&path)? {
        None => true,
        Some(found) => {
            adoptable_backup_dir(ctx, &path, &found)?
                || (backup_dir(ctx).is_ok() && std::fs::read_dir(&path)?.next().is_none())
        }
    })
}

/// Whether `found` at the backup directory's place may be taken as this
/// run's although no record names it: an empty directory of root's, which
/// only a run killed between making it and recording it leaves (the
/// service account can make no directory of root's).
fn adoptable_backup_dir(ctx: &Context, path: &std::path::Path, found: &Entry) -> Result<bool> {
    Ok(
        read_backup_identity(&state_dir(ctx)?.join(BACKUP_IDENTITY_FILE))?.is_none()
            && found.kind == EntryKind::Directory
            && found.uid == 0
            && std::fs::read_dir(path)?.next().is_none(),
    )
}

/// Makes the backup directory (root's, 0700) for a new run, through a
/// handle on its parent, and records its identity in the state directory;
/// an existing one is kept when it is this upgrade's (recorded, or empty
/// and root's: a run killed before it recorded it).
pub fn create_backup_dir(ctx: &Context) -> Result<PathBuf> {
    let path = ctx.root.resolve_parent(BACKUP_DIR)?;
    let record = state_dir_creating(ctx)?.join(BACKUP_IDENTITY_FILE);
    let (parent, name) = no_follow::open_parent(&path)?;
    let dir = match parent.entry(&name)? {
        None => parent.create_dir(&name, 0o700, None)?,
        Some(found) if adoptable_backup_dir(ctx, &path, &found)? => parent.open_subdir(&name)?,
        Some(_) => {
            backup_dir(ctx)?;
            return Ok(path);
        }
    };
    let (device, inode) = dir.entry_of_self()?.id;
    fsutil::sync_dir(parent.path())?;
    fsutil::atomic_write(
        &record,
        &serde_json::to_vec(&BackupIdentity { device, inode })?,
        0o600,
    )?;
    Ok(path)
}

/// Sets a rolled-back attempt aside for a new run: its backup directory
/// beside the new one ([`rolled_back_backup_dir`]), its state files in
/// `rolled-back-<time>/` of the state directory, the journal last, so that
/// a run killed meanwhile does it again.
pub fn keep_rolled_back_attempt(ctx: &Context, started_at: DateTime<Utc>) -> Result<PathBuf> {
    let state = state_dir(ctx)?;
    let backup = backup_dir(ctx)?;
    let kept = rolled_back_backup_dir(ctx, started_at)?;
    if backup.exists() {
        fsutil::rename_durably(&backup, &kept).with_context(|| {
            format!(
                "keeping the earlier attempt's {} as {}",
                backup.display(),
                kept.display()
            )
        })?;
    }
    let kept_state = state.join(format!(
        "rolled-back-{}",
        started_at.format("%Y%m%dT%H%M%S%.6fZ")
    ));
    if !kept_state.exists() {
        fsutil::create_dir_with_mode(&kept_state, 0o700)?;
    }
    for name in RUN_STATE_FILES {
        let from = state.join(name);
        if from.exists() {
            fsutil::rename_durably(&from, &kept_state.join(name))?;
        }
    }
    Ok(kept)
}

/// Forgets the run once `finalize` deleted its backup: its state files
/// go, the journal last (a finalize killed meanwhile finds it and ends).
pub fn forget_run(ctx: &Context) -> Result<()> {
    let state = state_dir(ctx)?;
    for name in RUN_STATE_FILES {
        fsutil::remove_file_if_present(&state.join(name))?;
    }
    fsutil::sync_dir(&state)
}

/// Where the next run keeps the backup directory of an attempt that began
/// at `started_at` and was rolled back, as a path on this machine.
pub fn rolled_back_backup_dir(ctx: &Context, started_at: DateTime<Utc>) -> Result<PathBuf> {
    Ok(backup_dir(ctx)?.with_file_name(format!(
        "{ROLLED_BACK_PREFIX}{}",
        started_at.format("%Y%m%dT%H%M%S%.6fZ")
    )))
}

const ROLLED_BACK_PREFIX: &str = "imss_backup_71_to_91.rolled-back-";

/// The files in which rolled-back attempts recorded the ids their 9.1
/// handed out: the current backup directory's and every kept one's.
pub fn used_91_ids_files(ctx: &Context) -> Result<Vec<PathBuf>> {
    let backup = backup_dir(ctx)?;
    let mut files = vec![backup.join(USED_91_IDS_FILE)];
    let parent = backup.parent().expect("the backup directory has a parent");
    if let Ok(entries) = std::fs::read_dir(parent) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(ROLLED_BACK_PREFIX)
            {
                files.push(entry.path().join(USED_91_IDS_FILE));
            }
        }
    }
    Ok(files)
}

/// See [`used_91_ids_files`].
pub const USED_91_IDS_FILE: &str = "ids-91-used.json";

/// The background transfer's files, in the backup directory.
#[derive(Debug, Clone)]
pub struct TransferFiles {
    /// Held (`flock`) by the transfer that runs, and by a rollback or a
    /// finalize that stopped it; says who holds it.
    pub lock: PathBuf,
    /// Present while the transfer is paused: the pause outlives restarts.
    pub paused: PathBuf,
    /// Where the transfer is, rewritten every few seconds for `status`.
    pub progress: PathBuf,
    /// Written once every table is across and verified: the unit does not
    /// start again (`ConditionPathExists=!` in its unit file).
    pub done: PathBuf,
}

/// The background transfer's files, in the state directory, as paths on
/// this machine.
pub fn transfer_files(ctx: &Context) -> Result<TransferFiles> {
    let state = state_dir(ctx)?;
    Ok(TransferFiles {
        lock: state.join("transfer.lock"),
        paused: state.join(TRANSFER_PAUSED_FILE),
        progress: state.join(TRANSFER_PROGRESS_FILE),
        done: state.join(TRANSFER_DONE_FILE),
    })
}

const TRANSFER_PAUSED_FILE: &str = "transfer.paused";

const TRANSFER_PROGRESS_FILE: &str = "transfer-progress.json";

/// Where `finalize` moves the backup directory to delete it: a name no
/// command reads as a backup, so a kill mid-delete leaves none that looks
/// complete.
pub fn finalizing_backup_dir(ctx: &Context) -> Result<PathBuf> {
    Ok(backup_dir(ctx)?.with_extension("finalizing"))
}

/// The transfer's done file, inside the root (the unit names it).
pub const TRANSFER_DONE: &str = "/var/lib/imss-upgrade/transfer.done";

const TRANSFER_DONE_FILE: &str = "transfer.done";

/// `imsx_config.dat` in the backup directory, as a path on this machine.
pub fn config_export(ctx: &Context) -> Result<PathBuf> {
    Ok(backup_dir(ctx)?.join(CONFIG_EXPORT_FILE))
}

/// The 7.1 cluster where 7.1 runs it, with the bundled PostgreSQL 10 of
/// the 7.1 program tree.
pub fn source_71(ctx: &Context) -> Result<Cluster> {
    Ok(Cluster {
        install: PgInstall::at(
            ctx.root.resolve(BUNDLED_PG_DIR)?.join("bin"),
            "the 7.1 program tree lacks its bundled PostgreSQL; is IMSS 7.1 installed whole?",
        )?,
        data_dir: ctx.root.resolve_parent(data_dir_in_place(ctx)?)?,
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
    Ok(Cluster {
        data_dir: ctx.root.resolve(MOVED_71_DATA_DIR)?,
        socket_dir: backup_dir(ctx)?.join(BACKUP_SOCKETS_71),
        listen_address: String::new(),
        ..source_71(ctx)?
    })
}

/// The 7.1 cluster in the backup, as [`backup_71`] places it, run by the
/// PostgreSQL 10 programs the transfer took out of the snapshot
/// ([`extracted_71_postgresql`]): after the switch, the program tree is
/// 9.1's.
pub fn backup_71_after_switch(ctx: &Context) -> Result<Cluster> {
    Ok(Cluster {
        install: PgInstall::at(
            extracted_71_postgresql(ctx)?.join("bin"),
            "7.1's PostgreSQL 10 was not taken out of the snapshot yet",
        )?,
        data_dir: ctx.root.resolve(MOVED_71_DATA_DIR)?,
        socket_dir: backup_dir(ctx)?.join(BACKUP_SOCKETS_71),
        listen_address: String::new(),
        port: ctx.database()?.port,
        owner: ctx.service_user()?.clone(),
    })
}

/// Where the transfer puts 7.1's bundled PostgreSQL ([`BUNDLED_PG_DIR`]
/// of the snapshot), as a path on this machine.
pub fn extracted_71_postgresql(ctx: &Context) -> Result<PathBuf> {
    Ok(backup_dir(ctx)?.join("postgresql-71"))
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
    Ok(Cluster {
        install: PgInstall::at(
            &ctx.target_pg_bin,
            "the upgrade package's PostgreSQL 15 is missing: reinstall the package",
        )?,
        // Not there yet during the presync, nor while the 7.1 one is moved.
        data_dir: ctx.root.resolve_parent(data_dir_in_place(ctx)?)?,
        socket_dir: ctx.root.resolve(RUN_DIR)?,
        listen_address: DATABASE_HOST.to_string(),
        port: ctx.database()?.port,
        owner: ctx.service_user()?.clone(),
    })
}

/// The 9.1 cluster while the presync makes it ready: beside the 7.1 one,
/// on a socket in the backup directory and no TCP port.
pub fn staged_91(ctx: &Context) -> Result<Cluster> {
    Ok(Cluster {
        data_dir: ctx.root.resolve_parent(staged_91_data_dir(ctx)?)?,
        socket_dir: backup_dir(ctx)?.join(BACKUP_SOCKETS_91),
        listen_address: String::new(),
        ..target_91(ctx)?
    })
}

/// Opens the backup directory to `cluster`'s account, which must reach its
/// data directory and socket inside it: the directory stays root's, and
/// only the account's group may pass through it (0710; it may not list
/// it). The socket directory is the account's own. Owners and modes are
/// set on handles, never on paths.
pub fn open_backup_to(ctx: &Context, cluster: &Cluster) -> Result<()> {
    let backup = open_backup_dir(ctx)?;
    let owner = &cluster.owner;
    backup.set_owner_and_mode(0o710, Some((0, owner.gid)))?;
    let sockets = &cluster.socket_dir;
    let name = sockets
        .file_name()
        .filter(|_| sockets.parent() == Some(backup.path()))
        .with_context(|| {
            format!(
                "{} is not a directory of {}",
                sockets.display(),
                backup.path().display()
            )
        })?;
    let account = Some((owner.uid, owner.gid));
    match backup.entry(name)? {
        None => backup.create_dir(name, 0o700, account).map(drop),
        Some(found) if found.kind == EntryKind::Directory => {
            backup.open_subdir(name)?.set_owner_and_mode(0o700, account)
        }
        Some(found) => bail!(
            "{} is {}, where the socket directory of {} must be: remove it, then run this again",
            sockets.display(),
            found.describe(),
            cluster.data_dir.display()
        ),
    }
}
