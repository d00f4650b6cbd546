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
//!
//! Here is the walk from `/` to a directory; `dir` holds what is done
//! through a directory's handle, `entry` what stands at a name and the
//! check of the state's directories.

mod dir;
mod entry;

pub use dir::Dir;
pub use entry::{Entry, EntryKind, check_only_root_can_write, describe_uid, lstat};

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result, bail};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use dir::{dir_flags, planted_link};

/// More link hops than this is a loop (the kernel's own limit is 40).
const MAX_LINK_HOPS: usize = 40;

/// Set by tests to take the component-by-component way on a kernel that
/// has `openat2`, as RHEL 7 and 8 would.
static WITHOUT_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Walk component by component even where the kernel has `openat2` (the
/// way RHEL 7 and 8 go); for tests of that way.
pub fn use_component_walk_only(yes: bool) {
    WITHOUT_OPENAT2.store(yes, Ordering::SeqCst);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A directory an account other than root can write, as `/var/imss` is
    /// the service account's: `nobody` owns it.
    pub(super) fn untrusted_dir() -> (tempfile::TempDir, PathBuf) {
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
    fn a_dangling_link_is_an_entry_and_blocks_a_new_directory() {
        let (top, data) = untrusted_dir();
        symlink(top.path().join("missing"), data.join("bind")).unwrap();
        let entry = entry_at(&data.join("bind")).unwrap().unwrap();
        assert_eq!(entry.kind, EntryKind::Link);
        let dir = open_dir(&data).unwrap();
        assert!(dir.create_dir("bind", 0o750, Some((65534, 65534))).is_err());
        assert!(!top.path().join("missing").exists());
    }
}
