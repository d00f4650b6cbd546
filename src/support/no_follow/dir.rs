//! A directory reached through a handle, and everything done below it:
//! files created with `O_EXCL` in their final mode, replaced atomically,
//! appended to or read only when they are what they should be, owners and
//! modes set on handles, trees synced, no link followed.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::entry::{Entry, EntryKind, describe_uid};

/// How often a file planted where one is being created is removed and
/// the creation tried again before giving up: each try loses a race only
/// to a process that plants again at once.
const CREATE_ATTEMPTS: usize = 5;

/// A directory reached without following a link another account could have
/// planted; everything below it is reached through this handle.
#[derive(Debug)]
pub struct Dir {
    pub(super) fd: OwnedFd,
    pub(super) path: PathBuf,
}

pub(super) fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

pub(super) fn planted_link(link: &Path, dir: &Path, dir_entry: &Entry) -> anyhow::Error {
    anyhow::anyhow!(
        "{} is a symbolic link in {}, which {} can write: root follows no link there, since \
         that account could have planted it. Remove the link (if it is yours, put the real \
         directory or file there instead), then run this again",
        link.display(),
        dir.display(),
        describe_uid(dir_entry.uid)
    )
}

impl Dir {
    /// The directory as a path on this machine, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` in this directory as a path, for messages and for programs
    /// that take a path.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// The directory's own owner, mode and identity.
    pub fn entry_of_self(&self) -> Result<Entry> {
        Ok(Entry::from_stat(
            &rustix::fs::fstat(&self.fd)
                .with_context(|| format!("reading the owner of {}", self.path.display()))?,
        ))
    }

    /// What stands at `name`, a link not followed; `None` when nothing.
    pub fn entry(&self, name: impl AsRef<OsStr>) -> Result<Option<Entry>> {
        let name = name.as_ref();
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(Entry::from_stat(&stat))),
            Err(Errno::NOENT) => Ok(None),
            Err(errno) => Err(errno).with_context(|| format!("reading {}", self.describe(name))),
        }
    }

    /// Creates the file `name`, which must not exist (`O_EXCL`: a link or
    /// anything else there fails it), with exactly `mode`, given to `owner`
    /// on the handle.
    pub fn create_new_file(
        &self,
        name: impl AsRef<OsStr>,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<File> {
        let name = name.as_ref();
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .with_context(|| format!("creating {}", self.describe(name)))?;
        set_owner_and_mode(&fd, mode, owner)
            .with_context(|| format!("setting the owner and mode of {}", self.describe(name)))?;
        Ok(File::from(fd))
    }

    /// Replaces `name` with `contents` atomically: a temporary file
    /// created beside it with `O_EXCL` in exactly `mode` (given to `owner`
    /// on its handle), written and fsynced, renamed over `name` within this
    /// directory, and the directory fsynced. After a crash the file is the
    /// old one or the new one, never a mix; whatever stood at `name` (a
    /// link included) is replaced, never written through.
    pub fn replace_file(
        &self,
        name: impl AsRef<OsStr>,
        contents: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<()> {
        use std::io::Write;
        let name = name.as_ref();
        let mut tmp = OsString::from(".");
        tmp.push(name);
        tmp.push(format!(".tmp-{}", std::process::id()));
        // A temporary file a crash left behind is never reused: it may
        // carry another mode.
        self.remove_file(&tmp)?;
        let write = || -> Result<()> {
            let mut file = self.create_new_file(&tmp, mode, owner)?;
            file.write_all(contents)?;
            file.sync_all()?;
            rustix::fs::renameat(&self.fd, tmp.as_os_str(), &self.fd, name)?;
            rustix::fs::fsync(&self.fd)?;
            Ok(())
        };
        write()
            .inspect_err(|_| {
                let _ = self.remove_file(&tmp);
            })
            .with_context(|| format!("writing {}", self.describe(name)))
    }

    /// Opens `name` to append to it, for output that `owner` may read and
    /// write anyway (a server's log). An existing file is used only when
    /// it is a regular file with one name, owned by `owner`; anything else
    /// at the name (a link, a FIFO, a hard link to another file, another
    /// account's file) is removed, the name only, never what it leads to,
    /// and the file is created anew with `mode`, given to `owner`.
    pub fn open_append_owned(
        &self,
        name: impl AsRef<OsStr>,
        mode: u32,
        owner: (u32, u32),
    ) -> Result<File> {
        let name = name.as_ref();
        for _ in 0..CREATE_ATTEMPTS {
            match self.open_existing(name, OFlags::RDWR | OFlags::APPEND) {
                Ok(Some(file)) => {
                    let entry = Entry::from_stat(&rustix::fs::fstat(&file)?);
                    if entry.kind == EntryKind::File && entry.links == 1 && entry.uid == owner.0 {
                        return Ok(file);
                    }
                    drop(file);
                    self.remove_planted(name, &entry.describe())?;
                }
                Ok(None) => {}
                Err(errno) => {
                    let what = match self.entry(name)? {
                        Some(entry) => entry.describe(),
                        None => continue,
                    };
                    tracing::debug!("{}: {errno}", self.describe(name));
                    self.remove_planted(name, &what)?;
                }
            }
            match self.create_new_file(name, mode, Some(owner)) {
                Ok(file) => return Ok(file),
                Err(err) if self.entry(name)?.is_some() => {
                    tracing::debug!("{err:#}; something was planted again: once more");
                }
                Err(err) => return Err(err),
            }
        }
        bail!(
            "{} keeps being replaced while root creates it: something plants files there; \
             find what (the service account's processes) and stop it, then run this again",
            self.describe(name)
        )
    }

    /// Reads the regular file `name`, a link not followed and a FIFO not
    /// waited on; `None` when there is none.
    pub fn read_file(&self, name: impl AsRef<OsStr>) -> Result<Option<Vec<u8>>> {
        let name = name.as_ref();
        let file = match self.open_existing(name, OFlags::RDONLY) {
            Ok(Some(file)) => file,
            Ok(None) => return Ok(None),
            Err(errno) => {
                return Err(errno).with_context(|| format!("reading {}", self.describe(name)));
            }
        };
        let entry = Entry::from_stat(&rustix::fs::fstat(&file)?);
        if entry.kind != EntryKind::File {
            bail!(
                "{} is {}, not a regular file: remove it",
                self.describe(name),
                entry.describe()
            );
        }
        let mut bytes = Vec::new();
        (&file)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", self.describe(name)))?;
        Ok(Some(bytes))
    }

    fn open_existing(&self, name: &OsStr, access: OFlags) -> Result<Option<File>, Errno> {
        match rustix::fs::openat(
            &self.fd,
            name,
            access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(Errno::NOENT) => Ok(None),
            Err(errno) => Err(errno),
        }
    }

    /// Creates the directory `name`, which must not exist (a link there,
    /// dangling or not, fails it), with exactly `mode`, given to `owner`
    /// on its handle.
    pub fn create_dir(
        &self,
        name: impl AsRef<OsStr>,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<Dir> {
        let name = name.as_ref();
        rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode))
            .with_context(|| format!("creating {}", self.describe(name)))?;
        let dir = self.open_subdir(name)?;
        let entry = dir.entry_of_self()?;
        if entry.uid != rustix::process::geteuid().as_raw() {
            bail!(
                "{} was replaced by {} right after root created it: something plants files \
                 there; find what and stop it, then run this again",
                dir.path.display(),
                entry.describe()
            );
        }
        set_owner_and_mode(&dir.fd, mode, owner)
            .with_context(|| format!("setting the owner and mode of {}", dir.path.display()))?;
        Ok(dir)
    }

    /// Opens the directory `name` below this one, a link there refused.
    pub fn open_subdir(&self, name: impl AsRef<OsStr>) -> Result<Dir> {
        let name = name.as_ref();
        let here = self.join(name);
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            dir_flags() | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|errno| match self.entry_of_self() {
            Ok(parent) if errno == Errno::LOOP => planted_link(&here, &self.path, &parent),
            _ => anyhow::Error::from(errno).context(format!("opening {}", here.display())),
        })?;
        Ok(Dir { fd, path: here })
    }

    /// Gives this directory to `owner` with exactly `mode`, on its handle.
    pub fn set_owner_and_mode(&self, mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
        set_owner_and_mode(&self.fd, mode, owner)
            .with_context(|| format!("setting the owner and mode of {}", self.path.display()))
    }

    /// Removes the file or link `name` (never what a link leads to), if
    /// there is one.
    pub fn remove_file(&self, name: impl AsRef<OsStr>) -> Result<()> {
        let name = name.as_ref();
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(errno) => Err(errno).with_context(|| format!("removing {}", self.describe(name))),
        }
    }

    /// Makes everything below this directory durable, and this directory:
    /// each regular file and directory fsynced, children before the
    /// directory naming them, no link followed (a link, FIFO or socket has
    /// nothing to sync but its name, which its directory's sync covers).
    /// For a tree another program wrote (`cp`, an extraction), whose files
    /// this process never held open; `sync(2)` and `syncfs(2)` are not
    /// enough where a file system is not asked for them (FUSE). The number
    /// of files synced.
    pub fn sync_tree(&self) -> Result<u64> {
        let mut files = 0;
        for name in self.names()? {
            match self.entry(&name)?.map(|entry| entry.kind) {
                Some(EntryKind::Directory) => files += self.open_subdir(&name)?.sync_tree()?,
                Some(EntryKind::File) => files += u64::from(self.sync_file(&name)?),
                _ => {}
            }
        }
        rustix::fs::fsync(&self.fd).with_context(|| format!("syncing {}", self.path.display()))?;
        Ok(files)
    }

    /// The names in this directory, read through its handle (`.` and `..`
    /// left out).
    pub fn names(&self) -> Result<Vec<OsString>> {
        let mut names = Vec::new();
        let mut listing = rustix::fs::Dir::read_from(&self.fd)
            .with_context(|| format!("reading {}", self.path.display()))?;
        while let Some(entry) = listing.read() {
            let entry = entry.with_context(|| format!("reading {}", self.path.display()))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name != "." && name != ".." {
                names.push(name.to_os_string());
            }
        }
        Ok(names)
    }

    /// Whether this directory holds nothing.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.names()?.is_empty())
    }

    /// Renames `from` to `to`, both in this directory (whatever `from` is:
    /// a link is renamed, never followed), and makes the rename durable.
    pub fn rename(&self, from: impl AsRef<OsStr>, to: impl AsRef<OsStr>) -> Result<()> {
        let (from, to) = (from.as_ref(), to.as_ref());
        rustix::fs::renameat(&self.fd, from, &self.fd, to)
            .with_context(|| format!("moving {} to {}", self.describe(from), self.describe(to)))?;
        rustix::fs::fsync(&self.fd).with_context(|| format!("syncing {}", self.path.display()))
    }

    /// Fsyncs the regular file `name` in this directory, never following a
    /// link; whether there was one to sync.
    pub fn sync_file(&self, name: impl AsRef<OsStr>) -> Result<bool> {
        let name = name.as_ref();
        self.open_existing(name, OFlags::RDONLY)
            .map_err(anyhow::Error::from)
            .and_then(|file| match file {
                Some(file) if file.metadata()?.is_file() => {
                    file.sync_all()?;
                    Ok(true)
                }
                _ => Ok(false),
            })
            .with_context(|| format!("syncing {}", self.describe(name)))
    }

    pub(super) fn remove_planted(&self, name: &OsStr, what: &str) -> Result<()> {
        tracing::warn!(
            "{} was {what}, which another account could have planted: root removes the name, \
             never what it may lead to",
            self.describe(name)
        );
        self.remove_file(name)
    }

    fn describe(&self, name: &OsStr) -> String {
        self.path.join(name).display().to_string()
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn set_owner_and_mode(fd: &impl AsFd, mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
    if let Some((uid, gid)) = owner {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )?;
    }
    // Exactly `mode`, whatever the umask (a unit's UMask=0077 would take a
    // group's read away); after fchown, which clears set-id bits.
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, symlink};

    use crate::support::no_follow::open_dir;
    use crate::support::no_follow::tests::untrusted_dir;

    #[test]
    fn a_planted_link_is_renamed_and_listed_as_itself_never_followed() {
        let (top, data) = untrusted_dir();
        let target = top.path().join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("kept"), "x").unwrap();
        symlink(&target, data.join("backup")).unwrap();
        let dir = open_dir(&data).unwrap();
        assert_eq!(dir.names().unwrap(), ["backup"]);
        assert!(!dir.is_empty().unwrap());
        dir.rename("backup", "backup.kept").unwrap();
        let moved = std::fs::symlink_metadata(data.join("backup.kept")).unwrap();
        assert!(moved.file_type().is_symlink());
        assert!(target.join("kept").is_file(), "the link's target was moved");
        assert!(open_dir(&target).unwrap().names().unwrap() == ["kept"]);
        std::fs::remove_file(data.join("backup.kept")).unwrap();
        assert!(dir.is_empty().unwrap());
    }

    #[test]
    fn a_planted_link_at_a_log_is_removed_not_followed() {
        let (top, data) = untrusted_dir();
        let target = top.path().join("shadow");
        std::fs::write(&target, "secret\n").unwrap();
        symlink(&target, data.join("pgdata.log")).unwrap();
        let dir = open_dir(&data).unwrap();
        let mut log = dir
            .open_append_owned("pgdata.log", 0o640, (65534, 65534))
            .unwrap();
        log.write_all(b"server output\n").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "secret\n");
        assert_eq!(std::fs::metadata(&target).unwrap().uid(), 0);
        let meta = std::fs::symlink_metadata(data.join("pgdata.log")).unwrap();
        assert!(meta.is_file());
        assert_eq!((meta.uid(), meta.mode() & 0o777), (65534, 0o640));
    }

    #[test]
    fn a_fifo_or_a_hard_link_at_a_log_is_replaced_and_never_waited_on() {
        let (top, data) = untrusted_dir();
        nix::unistd::mkfifo(
            &data.join("a.log"),
            nix::sys::stat::Mode::from_bits_truncate(0o666),
        )
        .unwrap();
        let target = top.path().join("passwd");
        std::fs::write(&target, "root:x:0:0\n").unwrap();
        std::fs::hard_link(&target, data.join("b.log")).unwrap();
        let dir = open_dir(&data).unwrap();
        for name in ["a.log", "b.log"] {
            dir.open_append_owned(name, 0o640, (65534, 65534))
                .unwrap()
                .write_all(b"x\n")
                .unwrap();
            let meta = std::fs::symlink_metadata(data.join(name)).unwrap();
            assert!(meta.is_file() && meta.nlink() == 1 && meta.uid() == 65534);
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "root:x:0:0\n");
    }

    #[test]
    fn the_service_accounts_own_log_is_appended_to() {
        let (_top, data) = untrusted_dir();
        std::fs::write(data.join("pgdata.log"), "earlier\n").unwrap();
        std::os::unix::fs::chown(data.join("pgdata.log"), Some(65534), Some(65534)).unwrap();
        let dir = open_dir(&data).unwrap();
        dir.open_append_owned("pgdata.log", 0o640, (65534, 65534))
            .unwrap()
            .write_all(b"later\n")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(data.join("pgdata.log")).unwrap(),
            "earlier\nlater\n"
        );
    }

    #[test]
    fn a_new_directory_gets_its_owner_and_exact_mode_on_the_handle() {
        let (_top, data) = untrusted_dir();
        let dir = open_dir(&data).unwrap();
        dir.create_dir("bind", 0o750, Some((65534, 65534))).unwrap();
        let meta = std::fs::symlink_metadata(data.join("bind")).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (65534, 0o750));
    }
}
