//! The one way the helpers, running as root, touch a file where another
//! account can write: `/var/imss` belongs to the service account, whose
//! scanner parses hostile mail all day. A path there is a trap: between
//! the moment root looks at it and the moment root opens it, the account
//! may have put a link in its place (CVE-2016-1240 gave a packaged init
//! script's `chown` of a log to the Tomcat account that way).
//!
//! So every directory is reached through handles, from `/` down:
//!
//! - a link is followed only inside a directory that only root can write
//!   (owned by root, writable by nobody else), where no other account
//!   could have planted it; below the first directory another account can
//!   write, a link anywhere on the way is refused and named. There the
//!   rest of the path is opened in one `openat2` with
//!   `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH` where the kernel has it
//!   (Linux 5.6), and component by component with
//!   `O_NOFOLLOW | O_DIRECTORY` otherwise (RHEL 7 and 8);
//! - a new file is created with `O_EXCL` in its final mode, and its owner
//!   and mode are set on the handle, never on a path;
//! - an existing file is opened with `O_NOFOLLOW | O_NONBLOCK` (a FIFO
//!   planted in its place cannot hang the helper) and used only when it is
//!   a regular file with one name, owned as expected.
//!
//! [`check_only_root_can_write`] is the other half: state that decides what
//! root does lives where, at every level, only root can write, and is
//! checked when read.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result, bail};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

/// More link hops than this is a loop (the kernel's own limit is 40).
const MAX_LINK_HOPS: usize = 40;

/// How often a file planted where one is being created is removed and
/// the creation tried again before giving up: each try loses a race only
/// to a process that plants again at once.
const CREATE_ATTEMPTS: usize = 5;

/// Set by tests to take the component-by-component way on a kernel that
/// has `openat2`, as RHEL 7 and 8 would.
static WITHOUT_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Walk component by component even where the kernel has `openat2` (the
/// way RHEL 7 and 8 go); for tests of that way.
pub fn use_component_walk_only(yes: bool) {
    WITHOUT_OPENAT2.store(yes, Ordering::SeqCst);
}

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
    fn from_stat(stat: &Stat) -> Self {
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

/// A directory reached without following a link another account could have
/// planted; everything below it is reached through this handle.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Opens the directory at `path` (absolute, on this machine) as the module
/// documentation says: links followed only where only root can write.
pub fn open_dir(path: &Path) -> Result<Dir> {
    walk(path).with_context(|| format!("opening {}", path.display()))
}

/// Opens the directory `path` is in, and names the last component: for
/// creating, removing or opening `path` itself through [`Dir`].
pub fn open_parent(path: &Path) -> Result<(Dir, OsString)> {
    let (parent, name) = split_parent(path)?;
    Ok((open_dir(parent)?, name.to_os_string()))
}

/// What stands at `path` itself, a link not followed; `None` when nothing.
/// The directories on the way are reached as [`open_dir`] reaches them.
pub fn entry_at(path: &Path) -> Result<Option<Entry>> {
    let (parent, name) = split_parent(path)?;
    match walk(parent) {
        Ok(dir) => dir.entry(name),
        // A missing parent: nothing can stand at the path.
        Err(err) if err.downcast_ref::<Errno>() == Some(&Errno::NOENT) => Ok(None),
        Err(err) => Err(err.context(format!("opening {}", parent.display()))),
    }
}

/// Removes a link at `path` that another account could have planted (not
/// root's, in a directory that account can write), never what it leads
/// to; whether there was one. For a place root is about to fill again,
/// where such a link would otherwise read as "something is there".
pub fn remove_planted_link(path: &Path) -> Result<bool> {
    let (parent, name) = split_parent(path)?;
    let dir = match walk(parent) {
        Ok(dir) => dir,
        Err(err) if err.downcast_ref::<Errno>() == Some(&Errno::NOENT) => return Ok(false),
        Err(err) => return Err(err.context(format!("opening {}", parent.display()))),
    };
    match dir.entry(name)? {
        Some(entry)
            if entry.kind == EntryKind::Link
                && entry.uid != 0
                && !dir.entry_of_self()?.only_root_can_write() =>
        {
            dir.remove_planted(name, &entry.describe())?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn split_parent(path: &Path) -> Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if path.is_absolute() => Ok((parent, name)),
        _ => bail!(
            "{} is not an absolute path to a file in a directory",
            path.display()
        ),
    }
}

fn walk(path: &Path) -> Result<Dir> {
    if !path.is_absolute() {
        bail!("{} is not an absolute path", path.display());
    }
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_components(&mut pending, path);
    let root = rustix::fs::open("/", dir_flags(), Mode::empty())?;
    let mut stack: Vec<Dir> = vec![Dir {
        fd: root,
        path: PathBuf::from("/"),
    }];
    let mut hops = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let parent = stack.last().expect("the stack keeps /");
        let parent_entry = Entry::from_stat(&rustix::fs::fstat(&parent.fd)?);
        let here = parent.path.join(&name);
        if !parent_entry.only_root_can_write()
            && let Some(dir) = open_rest_without_links(parent, &name, &pending)?
        {
            return Ok(dir);
        }
        let entry = Entry::from_stat(&rustix::fs::statat(
            &parent.fd,
            name.as_os_str(),
            AtFlags::SYMLINK_NOFOLLOW,
        )?);
        if entry.kind == EntryKind::Link {
            if !parent_entry.only_root_can_write() {
                return Err(planted_link(&here, &parent.path, &parent_entry));
            }
            hops += 1;
            if hops > MAX_LINK_HOPS {
                bail!("more than {MAX_LINK_HOPS} symbolic links on the way; is there a loop?");
            }
            let target = rustix::fs::readlinkat(&parent.fd, name.as_os_str(), Vec::new())?;
            let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
            if target.is_absolute() {
                stack.truncate(1);
            }
            let mut from_link = VecDeque::new();
            push_components(&mut from_link, &target);
            from_link.extend(pending.drain(..));
            pending = from_link;
            continue;
        }
        let fd = rustix::fs::openat(
            &parent.fd,
            name.as_os_str(),
            dir_flags() | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|errno| {
            if errno == Errno::LOOP {
                planted_link(&here, &parent.path, &parent_entry)
            } else {
                anyhow::Error::from(errno)
            }
        })?;
        stack.push(Dir { fd, path: here });
    }
    Ok(stack.pop().expect("the stack keeps /"))
}

/// Below a directory another account can write, the rest of the path in
/// one `openat2` that refuses every link; `None` where the kernel lacks it
/// (or a link is on the way, which the component walk then names).
fn open_rest_without_links(
    parent: &Dir,
    name: &OsStr,
    pending: &VecDeque<OsString>,
) -> Result<Option<Dir>> {
    if WITHOUT_OPENAT2.load(Ordering::SeqCst) || pending.iter().any(|n| n == "..") {
        return Ok(None);
    }
    let mut rest = PathBuf::from(name);
    rest.extend(pending);
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(&parent.fd, &rest, dir_flags(), Mode::empty(), resolve) {
        Ok(fd) => Ok(Some(Dir {
            fd,
            path: parent.path.join(&rest),
        })),
        // No openat2 (before Linux 5.6, or refused by a seccomp filter), or
        // a link on the way: the component walk goes on, and names it.
        Err(Errno::NOSYS | Errno::PERM | Errno::LOOP | Errno::XDEV | Errno::AGAIN) => Ok(None),
        Err(errno) => Err(errno.into()),
    }
}

fn push_components(pending: &mut VecDeque<OsString>, path: &Path) {
    for component in path.components() {
        match component {
            Component::Normal(name) => pending.push_back(name.to_os_string()),
            Component::ParentDir => pending.push_back("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

fn planted_link(link: &Path, dir: &Path, dir_entry: &Entry) -> anyhow::Error {
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
        for name in names {
            match self.entry(&name)?.map(|entry| entry.kind) {
                Some(EntryKind::Directory) => files += self.open_subdir(&name)?.sync_tree()?,
                Some(EntryKind::File) => files += u64::from(self.sync_file(&name)?),
                _ => {}
            }
        }
        rustix::fs::fsync(&self.fd).with_context(|| format!("syncing {}", self.path.display()))?;
        Ok(files)
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

    fn remove_planted(&self, name: &OsStr, what: &str) -> Result<()> {
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
/// judge a link before following it; elsewhere [`entry_at`].
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
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    /// A directory an account other than root can write, as `/var/imss` is
    /// the service account's: `nobody` owns it.
    fn untrusted_dir() -> (tempfile::TempDir, PathBuf) {
        let top = tempfile::tempdir().unwrap();
        let data = top.path().join("var-imss");
        std::fs::create_dir(&data).unwrap();
        let nobody = uzers::get_user_by_name("nobody").expect("the nobody account");
        std::os::unix::fs::chown(&data, Some(nobody.uid()), Some(nobody.primary_group_id()))
            .unwrap();
        (top, data)
    }

    fn both_ways(test: impl Fn()) {
        use_component_walk_only(false);
        test();
        use_component_walk_only(true);
        test();
        use_component_walk_only(false);
    }

    #[test]
    fn a_link_below_another_accounts_directory_is_refused_and_named() {
        both_ways(|| {
            let (_top, data) = untrusted_dir();
            std::fs::create_dir(data.join("real")).unwrap();
            symlink(data.join("real"), data.join("bind")).unwrap();
            let err = format!("{:#}", open_dir(&data.join("bind/etc")).unwrap_err());
            assert!(err.contains("bind is a symbolic link"), "{err}");
            assert!(err.contains("nobody"), "{err}");
        });
    }

    #[test]
    fn a_link_where_only_root_can_write_is_followed() {
        both_ways(|| {
            let top = tempfile::tempdir().unwrap();
            std::fs::create_dir(top.path().join("real")).unwrap();
            symlink(top.path().join("real"), top.path().join("alias")).unwrap();
            let dir = open_dir(&top.path().join("alias")).unwrap();
            assert_eq!(dir.path(), top.path().join("real"));
        });
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
    fn a_dangling_link_is_an_entry_and_blocks_a_new_directory() {
        let (top, data) = untrusted_dir();
        symlink(top.path().join("missing"), data.join("bind")).unwrap();
        let entry = entry_at(&data.join("bind")).unwrap().unwrap();
        assert_eq!(entry.kind, EntryKind::Link);
        let dir = open_dir(&data).unwrap();
        assert!(dir.create_dir("bind", 0o750, Some((65534, 65534))).is_err());
        assert!(!top.path().join("missing").exists());
    }

    #[test]
    fn a_new_directory_gets_its_owner_and_exact_mode_on_the_handle() {
        let (_top, data) = untrusted_dir();
        let dir = open_dir(&data).unwrap();
        dir.create_dir("bind", 0o750, Some((65534, 65534))).unwrap();
        let meta = std::fs::symlink_metadata(data.join("bind")).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (65534, 0o750));
    }

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
