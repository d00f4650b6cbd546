//! What stands at a name, as `lstat` sees it, and the check that state
//! lives where only root can write.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use rustix::fs::{FileType, Stat};
use rustix::io::Errno;

/// What stands at a name in a directory, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link, dangling or not.
    Link,
    /// A FIFO, socket or device.
    Other,
}

/// An entry's kind, owner and identity, as `lstat` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// What it is.
    pub kind: EntryKind,
    /// Its owner.
    pub uid: u32,
    /// Its permission bits.
    pub mode: u32,
    /// How many names it has.
    pub links: u64,
    /// Its device and inode.
    pub id: (u64, u64),
}

impl Entry {
    pub(super) fn from_stat(stat: &Stat) -> Self {
        let kind = match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => EntryKind::File,
            FileType::Directory => EntryKind::Directory,
            FileType::Symlink => EntryKind::Link,
            _ => EntryKind::Other,
        };
        Entry {
            kind,
            uid: stat.st_uid,
            mode: stat.st_mode & 0o7777,
            links: stat.st_nlink,
            id: (stat.st_dev, stat.st_ino),
        }
    }

    /// Whether only root can change what this directory holds: owned by
    /// root, writable by neither its group nor others.
    pub fn only_root_can_write(&self) -> bool {
        self.uid == 0 && self.mode & 0o022 == 0
    }

    /// What it is and who owns it, for messages.
    pub fn describe(&self) -> String {
        let what = match self.kind {
            EntryKind::File => "a file",
            EntryKind::Directory => "a directory",
            EntryKind::Link => "a symbolic link",
            EntryKind::Other => "a FIFO, socket or device",
        };
        format!(
            "{what} owned by {} (mode {:04o}, {} name(s))",
            describe_uid(self.uid),
            self.mode,
            self.links
        )
    }
}

/// A user id with its name, for messages.
pub fn describe_uid(uid: u32) -> String {
    match uzers::get_user_by_uid(uid) {
        Some(user) => format!("{} (uid {uid})", user.name().to_string_lossy()),
        None => format!("uid {uid}"),
    }
}

/// Refuses unless only root can write `path` and every directory from
/// `top` down to it: each a directory or file (no link), owned by root and
/// writable by nobody else. `top` is the root the helpers work under (`/`
/// on a server); what is above it is the administrator's choice. For the
/// state that decides what root does: the step journal, the locks, the
/// rollback manifest, the record of a process group.
pub fn check_only_root_can_write(top: &Path, path: &Path) -> Result<()> {
    let below = path.strip_prefix(top).with_context(|| {
        format!(
            "{} is not under {}: the state lives under the root",
            path.display(),
            top.display()
        )
    })?;
    let mut here = top.to_path_buf();
    let check = |here: &Path| -> Result<()> {
        let Some(entry) = lstat(here)? else {
            return Ok(());
        };
        if entry.kind == EntryKind::Link || !entry.only_root_can_write() {
            bail!(
                "{} is {}; the upgrade's state must be where only root can write, at every \
                 level, or another account could steer what root does: make it root's and \
                 writable by root alone (chown root: and chmod go-w), or move it away if it \
                 is not the upgrade's, then run this again",
                here.display(),
                entry.describe()
            );
        }
        Ok(())
    };
    check(&here)?;
    for component in below.components() {
        here.push(component);
        check(&here)?;
    }
    Ok(())
}

/// What stands at `path` itself, a link not followed (`lstat`); `None`
/// when nothing. For a path whose directories are root's alone, or to
/// judge a link before following it; elsewhere [`super::entry_at`].
pub fn lstat(path: &Path) -> Result<Option<Entry>> {
    match rustix::fs::lstat(path) {
        Ok(stat) => Ok(Some(Entry::from_stat(&stat))),
        Err(Errno::NOENT) => Ok(None),
        Err(errno) => Err(errno).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn state_is_refused_where_another_account_can_write_at_any_level() {
        let top = tempfile::tempdir().unwrap();
        let state = top.path().join("var/lib/imss-upgrade");
        std::fs::create_dir_all(&state).unwrap();
        check_only_root_can_write(top.path(), &state).unwrap();
        std::fs::set_permissions(
            top.path().join("var/lib"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let err = format!(
            "{:#}",
            check_only_root_can_write(top.path(), &state).unwrap_err()
        );
        assert!(
            err.contains("var/lib is a directory owned by root"),
            "{err}"
        );
        assert!(err.contains("mode 0777"), "{err}");
    }
}
