//! Where everything the upgrade makes, moves or keeps lives, and nowhere
//! else: the places of the data directory (pg_upgrade's `old_cluster` and
//! `new_cluster`, with the stages in between), the staging directories of
//! the program tree, the backup directory and its files, and the state
//! directory and its files. Steps take their places from the [`Layout`]
//! the context holds, so no step needs to know another. The layout only
//! names and checks places; what acts on them is elsewhere:
//! [`backup::BackupDir`] (the backup directory made, opened to an account,
//! set aside) and [`crate::flow::clusters`] (the clusters at these places).
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
//! | the preflight report | `/var/log/imss-upgrade/preflight.json` |
//! | the 9.1 units, written by switch | `/etc/systemd/system/imss-*.service` |
//! | the bundled BIND: programs, configuration and key; working directory | `/opt/trend/imss/bind/{sbin,etc}`; `/var/imss/bind` |
//!
//! Places are named as absolute paths inside the root (the constants);
//! the methods give them as paths on this machine.

pub mod backup;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::support::constants::{PG71_DATA_DIR, PROGRAM_DIR};
use crate::support::fsutil;
use crate::support::no_follow::{self, Entry, EntryKind};
use crate::support::root::Root;

/// Where the upgrade keeps everything rollback needs (seed, item 3).
pub const BACKUP_DIR: &str = "/var/imss/imss_backup_71_to_91";

/// Where the upgrade keeps what decides what root does: the step journal,
/// the locks, the rollback manifest, the record of a running process group
/// and of the backup directory's identity, the transfer's control files.
/// Only root can write it, at every level from `/`, and that is checked
/// whenever it is read; the backup directory's parent, `/var/imss`,
/// belongs to the service account, so nothing there is trusted as state.
pub const STATE_DIR: &str = "/var/lib/imss-upgrade";

/// The step journal's name in the state directory: while it exists, an
/// upgrade is in progress or not yet finalized.
pub const STEP_JOURNAL_FILE: &str = "upgrade-state.json";

/// The portable configuration export's name in the backup directory (seed, item 1).
pub const CONFIG_EXPORT_FILE: &str = "imsx_config.dat";

/// The preflight report, as JSON.
pub const PREFLIGHT_REPORT: &str = "/var/log/imss-upgrade/preflight.json";

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

/// Where the switch puts the 9.1 program tree together before it is
/// swapped in.
pub const PROGRAM_STAGING_DIR: &str = "/opt/trend/imss.91-staging";

/// Where the 7.1 program tree waits, whole, between the swap and its
/// removal.
pub const PROGRAM_REPLACED_DIR: &str = "/opt/trend/imss.71-replaced";

/// Where the 7.1 program tree is deleted from, once 9.1 took mail: a tree
/// here may be half-deleted, so it is never put back.
pub const PROGRAM_REMOVING_DIR: &str = "/opt/trend/imss.71-removing";

/// The name of the 7.1 data directory once the snapshot moved it into the
/// backup directory.
const MOVED_71_NAME: &str = "pgdata-71";

/// The name the presync gives the 9.1 cluster, beside the 7.1 one.
const STAGED_91_NAME: &str = "pgdata-91.staged";

/// Socket directories inside the backup directory: a cluster started there
/// is reached by the upgrade alone, and collides with nothing on TCP.
const BACKUP_SOCKETS_71: &str = "run";
const BACKUP_SOCKETS_91: &str = "run-91";

/// Where the transfer puts 7.1's bundled PostgreSQL out of the snapshot.
const EXTRACTED_71_POSTGRESQL: &str = "postgresql-71";

/// The ids a rolled-back attempt's 9.1 handed out, in its backup directory.
pub const USED_91_IDS_FILE: &str = "ids-91-used.json";

/// How a rolled-back attempt's backup directory is renamed: this, then
/// when the attempt began.
const ROLLED_BACK_PREFIX: &str = "imss_backup_71_to_91.rolled-back-";

/// The files of the state directory.
pub const ROLLBACK_MANIFEST_FILE: &str = "rollback-manifest.json";
const CONTROL_RECORD_FILE: &str = "control-script.group";
const BACKUP_IDENTITY_FILE: &str = "backup-dir.json";
const TRANSFER_LOCK_FILE: &str = "transfer.lock";
const TRANSFER_PAUSED_FILE: &str = "transfer.paused";
const TRANSFER_PROGRESS_FILE: &str = "transfer-progress.json";
const TRANSFER_DONE_FILE: &str = "transfer.done";
/// The room kept beside the journal, given up when the file system is
/// full so that the journal can still be written.
pub const JOURNAL_RESERVE_FILE: &str = "upgrade-state.reserve";

/// The files of one run in the state directory, the step journal last:
/// while it is there, the others are the run's.
const RUN_STATE_FILES: &[&str] = &[
    ROLLBACK_MANIFEST_FILE,
    CONTROL_RECORD_FILE,
    TRANSFER_PAUSED_FILE,
    TRANSFER_PROGRESS_FILE,
    TRANSFER_DONE_FILE,
    BACKUP_IDENTITY_FILE,
    JOURNAL_RESERVE_FILE,
    STEP_JOURNAL_FILE,
];

/// The rollback manifest, inside the root (the upgrade's units name it).
pub const ROLLBACK_MANIFEST: &str = "/var/lib/imss-upgrade/rollback-manifest.json";

/// The transfer's done file, inside the root (its unit names it).
pub const TRANSFER_DONE: &str = "/var/lib/imss-upgrade/transfer.done";

/// The background transfer's files, in the state directory.
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

/// The places of the upgrade of the server under one root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: Root,
}

impl Layout {
    /// The places under `root`.
    pub fn new(root: Root) -> Self {
        Self { root }
    }

    /// The state directory as a path on this machine, checked as every
    /// reader of the state must: only root can write it, at every level
    /// from the root. Otherwise the command refuses, naming the directory,
    /// its owner and the fix.
    pub fn state_dir(&self) -> Result<PathBuf> {
        let dir = self.root.resolve(STATE_DIR)?;
        no_follow::check_only_root_can_write(self.root.dir(), &dir)?;
        Ok(dir)
    }

    /// [`Self::state_dir`], made (root's, 0700) when it is missing: for a
    /// new run.
    pub fn state_dir_creating(&self) -> Result<PathBuf> {
        let dir = self.state_dir()?;
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
        self.state_dir()
    }

    /// The step journal, in the checked state directory.
    pub fn step_journal(&self) -> Result<PathBuf> {
        Ok(self.state_dir()?.join(STEP_JOURNAL_FILE))
    }

    /// The rollback manifest, in the checked state directory.
    pub fn rollback_manifest(&self) -> Result<PathBuf> {
        Ok(self.state_dir()?.join(ROLLBACK_MANIFEST_FILE))
    }

    /// The record of the control script's process group while it runs, in
    /// the checked state directory.
    pub fn control_record(&self) -> Result<PathBuf> {
        Ok(self.state_dir()?.join(CONTROL_RECORD_FILE))
    }

    /// The background transfer's files, in the checked state directory.
    pub fn transfer_files(&self) -> Result<TransferFiles> {
        let state = self.state_dir()?;
        Ok(TransferFiles {
            lock: state.join(TRANSFER_LOCK_FILE),
            paused: state.join(TRANSFER_PAUSED_FILE),
            progress: state.join(TRANSFER_PROGRESS_FILE),
            done: state.join(TRANSFER_DONE_FILE),
        })
    }

    /// The preflight report, as a path on this machine.
    pub fn preflight_report(&self) -> Result<PathBuf> {
        Ok(self.root.resolve(PREFLIGHT_REPORT)?)
    }

    /// The backup directory as a path on this machine, checked: where a
    /// directory stands there, it must be the one this upgrade made (its
    /// device and inode as the state directory records them, root's), not
    /// one the service account, which owns `/var/imss`, renamed into its
    /// place. Otherwise nothing in it is trusted and the command refuses,
    /// naming what it found and the fix. A missing one is for the caller
    /// to judge.
    pub fn backup_dir(&self) -> Result<PathBuf> {
        let path = self.backup_dir_unchecked()?;
        if let Some(found) = no_follow::entry_at(&path)? {
            self.check_backup_identity(&path, &found)?;
        }
        Ok(path)
    }

    /// Where the backup directory's place is, as a path on this machine,
    /// before anything is known of what stands there: for preflight's
    /// look at it, and for [`backup::BackupDir`], which checks it.
    pub fn backup_dir_unchecked(&self) -> Result<PathBuf> {
        Ok(self.root.resolve_parent(BACKUP_DIR)?)
    }

    /// `imsx_config.dat` in the backup directory.
    pub fn config_export(&self) -> Result<PathBuf> {
        Ok(self.backup_dir()?.join(CONFIG_EXPORT_FILE))
    }

    /// Where the snapshot moves the 7.1 data directory, inside the root.
    pub fn moved_71_data_dir(&self) -> PathBuf {
        Path::new(BACKUP_DIR).join(MOVED_71_NAME)
    }

    /// The socket directory of the 7.1 cluster started from the backup.
    pub fn backup_sockets_71(&self) -> Result<PathBuf> {
        Ok(self.backup_dir()?.join(BACKUP_SOCKETS_71))
    }

    /// The socket directory of the 9.1 cluster while it is staged.
    pub fn backup_sockets_91(&self) -> Result<PathBuf> {
        Ok(self.backup_dir()?.join(BACKUP_SOCKETS_91))
    }

    /// Where the transfer puts 7.1's bundled PostgreSQL, taken out of the
    /// snapshot (after the switch the program tree is 9.1's).
    pub fn extracted_71_postgresql(&self) -> Result<PathBuf> {
        Ok(self.backup_dir()?.join(EXTRACTED_71_POSTGRESQL))
    }

    /// Where `finalize` moves the backup directory to delete it: a name no
    /// command reads as a backup, so a kill mid-delete leaves none that
    /// looks complete.
    pub fn finalizing_backup_dir(&self) -> Result<PathBuf> {
        Ok(self.backup_dir()?.with_extension("finalizing"))
    }

    /// Where the next run keeps the backup directory of an attempt that
    /// began at `started_at` and was rolled back.
    pub fn rolled_back_backup_dir(&self, started_at: DateTime<Utc>) -> Result<PathBuf> {
        Ok(self
            .backup_dir()?
            .with_file_name(format!("{ROLLED_BACK_PREFIX}{}", attempt_stamp(started_at))))
    }

    /// Where the next run keeps the state files of an attempt that began
    /// at `started_at` and was rolled back.
    pub fn rolled_back_state_dir(&self, started_at: DateTime<Utc>) -> Result<PathBuf> {
        Ok(self
            .state_dir()?
            .join(format!("rolled-back-{}", attempt_stamp(started_at))))
    }

    /// The files of one run in the state directory, the journal last.
    pub fn run_state_files(&self) -> Result<Vec<PathBuf>> {
        let state = self.state_dir()?;
        Ok(RUN_STATE_FILES
            .iter()
            .map(|name| state.join(name))
            .collect())
    }

    /// The files in which rolled-back attempts recorded the ids their 9.1
    /// handed out: the current backup directory's and every kept one's.
    pub fn used_91_ids_files(&self) -> Result<Vec<PathBuf>> {
        let backup = self.backup_dir()?;
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

    /// Where the 7.1 data directory really is, as a path inside the root:
    /// the place `/var/imss/pgdata` names with its links followed (a link
    /// there stays a link, and leads to the 9.1 cluster after the upgrade).
    /// The 9.1 cluster ends up here too, and is staged beside it, on its
    /// file system, so that putting it in place is a rename.
    ///
    /// `/var/imss` is the service account's: a link there is followed only
    /// when root made it (the account can make no link of root's). Another
    /// one is the place itself, which a rename replaces and a removal takes
    /// away, never following it; preflight refuses to begin with one there
    /// ([`Self::untrusted_data_dir_link`]).
    pub fn data_dir_in_place(&self) -> Result<PathBuf> {
        if self.untrusted_data_dir_link()?.is_some() {
            return Ok(PathBuf::from(PG71_DATA_DIR));
        }
        Ok(self.root.inside(&self.root.resolve(PG71_DATA_DIR)?))
    }

    /// A link at the 7.1 data directory's place that root did not make, as
    /// a path on this machine, with what it is.
    pub fn untrusted_data_dir_link(&self) -> Result<Option<(PathBuf, Entry)>> {
        let link = self.root.resolve_parent(PG71_DATA_DIR)?;
        Ok(no_follow::entry_at(&link)?
            .filter(|entry| entry.kind == EntryKind::Link && entry.uid != 0)
            .map(|entry| (link, entry)))
    }

    /// Where the presync stages the 9.1 cluster, as a path inside the root.
    pub fn staged_91_data_dir(&self) -> Result<PathBuf> {
        Ok(self.data_dir_in_place()?.with_file_name(STAGED_91_NAME))
    }

    /// The paths outside the program tree the switch creates: the bundled
    /// BIND's working directory and, where systemd manages the server
    /// (`units`), the 9.1 unit files. None may exist before it: it never
    /// overwrites what it did not write.
    pub fn paths_the_switch_creates(units: bool) -> Vec<PathBuf> {
        let mut paths = vec![PathBuf::from(BIND_WORKING_DIR)];
        if units {
            let unit_dir = Path::new(UNIT_DIR);
            paths.extend(
                crate::files::units::SERVICES_91
                    .iter()
                    .map(|unit| unit_dir.join(unit.name)),
            );
        }
        paths
    }

    /// What already stands at each path the switch creates, as a path on
    /// this machine: the path itself is looked at, a link (dangling or not)
    /// is not followed, and the directories on the way are reached as
    /// [`no_follow`] reaches them. A dangling link reads as "absent" when
    /// followed, and the switch would then create its target.
    pub fn switch_targets_in_the_way(&self, units: bool) -> Result<Vec<(PathBuf, Entry)>> {
        let mut found = Vec::new();
        for path in Self::paths_the_switch_creates(units) {
            let on_server = self.root.resolve_parent(&path)?;
            if let Some(entry) = no_follow::entry_at(&on_server)? {
                found.push((on_server, entry));
            }
        }
        Ok(found)
    }

    /// The bundled BIND's files, as `named` and `rndc` read them.
    pub fn bind_files() -> crate::system::bind::BindFiles {
        let etc = Path::new(BIND_CONFIG_DIR);
        crate::system::bind::BindFiles {
            named_conf: etc.join("named.conf"),
            rndc_conf: etc.join("rndc.conf"),
            rndc_key: etc.join("rndc.key"),
            working_dir: PathBuf::from(BIND_WORKING_DIR),
        }
    }

    fn backup_identity_record(&self) -> Result<PathBuf> {
        Ok(self.state_dir()?.join(BACKUP_IDENTITY_FILE))
    }

    fn check_backup_identity(&self, path: &Path, found: &Entry) -> Result<()> {
        let record = self.backup_identity_record()?;
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
}

/// A rolled-back attempt's mark in the names it is kept under.
fn attempt_stamp(started_at: DateTime<Utc>) -> String {
    started_at.format("%Y%m%dT%H%M%S%.6fZ").to_string()
}

/// The backup directory's device and inode, recorded in the state
/// directory when the run made it.
#[derive(Debug, Serialize, Deserialize)]
struct BackupIdentity {
    device: u64,
    inode: u64,
}

fn read_backup_identity(record: &Path) -> Result<Option<BackupIdentity>> {
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
