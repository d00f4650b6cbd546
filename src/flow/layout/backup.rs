//! What acts on the backup directory and the run's state files: the
//! directory made for a run and its identity recorded, opened to the
//! account whose cluster it holds, and a finished attempt set aside or
//! forgotten. Owners and modes are set on handles, never on paths.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};

use super::{BackupIdentity, Layout, read_backup_identity};
use crate::support::account::ServiceUser;
use crate::support::fsutil;
use crate::support::no_follow::{self, Entry, EntryKind};

/// The backup directory of the upgrade under one root.
#[derive(Debug, Clone, Copy)]
pub struct BackupDir<'a> {
    layout: &'a Layout,
}

impl<'a> BackupDir<'a> {
    /// The backup directory at `layout`'s place.
    pub fn of(layout: &'a Layout) -> Self {
        Self { layout }
    }

    /// Whether it is absent, or this upgrade's and empty (a run killed
    /// before its journal leaves it so): nothing in the way of a new run.
    /// What stands there is looked at through a handle on `/var/imss`,
    /// which the service account owns: no link there is followed.
    pub fn is_fresh(&self) -> Result<bool> {
        let path = self.layout.backup_dir_unchecked()?;
        let (parent, name) = no_follow::open_parent(&path)?;
        Ok(match parent.entry(&name)? {
            None => true,
            Some(found) => {
                self.adoptable(&parent, &name, &found)?
                    || (self.layout.backup_dir().is_ok()
                        && parent.open_subdir(&name)?.is_empty()?)
            }
        })
    }

    /// Whether `found`, at `name` in `parent`, may be taken as this run's
    /// backup directory although no record names it: an empty directory of
    /// root's, which only a run killed between making it and recording it
    /// leaves (the service account can make no directory of root's).
    fn adoptable(&self, parent: &no_follow::Dir, name: &OsStr, found: &Entry) -> Result<bool> {
        Ok(
            read_backup_identity(&self.layout.backup_identity_record()?)?.is_none()
                && found.kind == EntryKind::Directory
                && found.uid == 0
                && parent.open_subdir(name)?.is_empty()?,
        )
    }

    /// Makes it (root's, 0700) for a new run, through a handle on its
    /// parent, and records its identity in the state directory; an
    /// existing one is kept when it is this upgrade's (recorded, or empty
    /// and root's: a run killed before it recorded it).
    pub fn create(&self) -> Result<PathBuf> {
        let path = self.layout.backup_dir_unchecked()?;
        self.layout.state_dir_creating()?;
        let record = self.layout.backup_identity_record()?;
        let (parent, name) = no_follow::open_parent(&path)?;
        let dir = match parent.entry(&name)? {
            None => parent.create_dir(&name, 0o700, None)?,
            Some(found) if self.adoptable(&parent, &name, &found)? => parent.open_subdir(&name)?,
            Some(_) => {
                self.layout.backup_dir()?;
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

    /// It, through a handle, checked on the handle itself as
    /// [`Layout::backup_dir`] checks the path: no moment between the check
    /// and the use.
    pub fn open(&self) -> Result<no_follow::Dir> {
        let path = self.layout.backup_dir()?;
        let dir = no_follow::open_dir(&path)?;
        self.layout
            .check_backup_identity(&path, &dir.entry_of_self()?)?;
        Ok(dir)
    }

    /// Opens it to `owner`, whose cluster's data directory and socket
    /// directory (`sockets`) are inside it: the directory stays root's,
    /// and only the account's group may pass through it (0710; it may not
    /// list it). The socket directory is the account's own.
    pub fn open_to(&self, owner: &ServiceUser, sockets: &Path, data_dir: &Path) -> Result<()> {
        let backup = self.open()?;
        backup.set_owner_and_mode(0o710, Some((0, owner.gid)))?;
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
                data_dir.display()
            ),
        }
    }

    /// Sets a rolled-back attempt aside for a new run: its backup directory
    /// beside the new one ([`Layout::rolled_back_backup_dir`]), its state
    /// files in [`Layout::rolled_back_state_dir`], the journal last, so
    /// that a run killed meanwhile does it again.
    pub fn keep_rolled_back_attempt(&self, started_at: DateTime<Utc>) -> Result<PathBuf> {
        let backup = self.layout.backup_dir()?;
        let kept = self.layout.rolled_back_backup_dir(started_at)?;
        // Both in `/var/imss`, the service account's: renamed through a
        // handle on it, by name, no link followed.
        let (parent, name) = no_follow::open_parent(&backup)?;
        let kept_name = kept.file_name().expect("a kept attempt has a name");
        if parent.entry(&name)?.is_some() {
            parent.rename(&name, kept_name).with_context(|| {
                format!(
                    "keeping the earlier attempt's {} as {}",
                    backup.display(),
                    kept.display()
                )
            })?;
        }
        let kept_state = self.layout.rolled_back_state_dir(started_at)?;
        if !kept_state.exists() {
            fsutil::create_dir_with_mode(&kept_state, 0o700)?;
        }
        for from in self.layout.run_state_files()? {
            if from.exists() {
                let name = from.file_name().expect("a state file has a name");
                fsutil::rename_durably(&from, &kept_state.join(name))?;
            }
        }
        Ok(kept)
    }

    /// Forgets the run once `finalize` deleted its backup: its state files
    /// go, the journal last (a finalize killed meanwhile finds it and ends).
    pub fn forget_run(&self) -> Result<()> {
        for file in self.layout.run_state_files()? {
            fsutil::remove_file_if_present(&file)?;
        }
        fsutil::sync_dir(&self.layout.state_dir()?)
    }
}
