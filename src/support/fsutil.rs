//! Writing files as if the power will go out: the one atomic replace, the
//! one durable rename, and files and directories created with their final
//! mode (never a `chmod` after the fact, when a secret may already be in
//! them).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, Result};

use super::no_follow;

/// Replaces `path` with `contents` atomically: a temporary file in the same
/// directory, created with `mode`, is written and fsynced, renamed over
/// `path`, and the directory is fsynced. After a crash the file is either
/// the old one or the new one, never a mix. The directory is reached as
/// [`no_follow`] reaches it: where another account can write, no link on
/// the way is followed.
pub fn atomic_write(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    atomic_write_as(path, contents, mode, None)
}

/// [`atomic_write`], with the file given to `owner` (uid, gid) before it
/// takes its name, for a file another account must own; its mode is then
/// exactly `mode`, whatever the umask.
pub fn atomic_write_as(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let path = std::path::absolute(path).with_context(|| format!("writing {}", path.display()))?;
    let (dir, name) =
        no_follow::open_parent(&path).with_context(|| format!("writing {}", path.display()))?;
    dir.replace_file(&name, contents, mode, owner)
}

/// Creates `path`, which must not exist, for writing, with `mode` from the
/// start (less the umask, as `open(2)` does).
pub fn create_new_file(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

/// Creates the directory `path` (its parents too, with the default mode),
/// with `mode` from the start. An existing directory is an error.
pub fn create_dir_with_mode(path: &Path, mode: u32) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    DirBuilder::new()
        .mode(mode)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Renames `from` to `to` and fsyncs the directories of both, so that the
/// rename survives a power loss.
pub fn rename_durably(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to)
        .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
    let from_dir = parent_of(from)?;
    let to_dir = parent_of(to)?;
    sync_dir(to_dir)?;
    if from_dir != to_dir {
        sync_dir(from_dir)?;
    }
    Ok(())
}

/// Makes the renames and removals in `dir` durable; `dir` is opened
/// without following a link another account could have made.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let handle = no_follow::open_dir(dir)?;
    rustix::fs::fsync(&handle).with_context(|| format!("syncing {}", dir.display()))
}

/// Makes the tree at `path` (a directory another program wrote: `cp`, an
/// extraction; or a single file or link) durable, and its name in its
/// directory: one `syncfs` first,
/// which writes it all out in one go where the file system takes it, then
/// an `fsync` of every file and directory in it (cheap once they are
/// clean), since `syncfs` promises nothing where the kernel does not pass
/// it to the file system (FUSE).
pub fn sync_tree(path: &Path) -> Result<()> {
    let path = std::path::absolute(path).with_context(|| format!("syncing {}", path.display()))?;
    let (parent, name) = no_follow::open_parent(&path)?;
    match parent.entry(&name)?.map(|entry| entry.kind) {
        Some(no_follow::EntryKind::Directory) => {
            let tree = parent.open_subdir(&name)?;
            nix::unistd::syncfs(&tree)
                .map_err(io::Error::from)
                .with_context(|| format!("syncing the file system of {}", path.display()))?;
            tree.sync_tree()?;
        }
        Some(no_follow::EntryKind::File) => {
            parent.sync_file(&name)?;
        }
        // A link has nothing of its own to sync: its directory holds it.
        _ => {}
    }
    rustix::fs::fsync(&parent).with_context(|| format!("syncing {}", parent.path().display()))
}

/// Removes the tree (or file, or link) at `path`, if there is one, and
/// makes that durable (its directory fsynced): an undo recorded as done
/// after it must not meet the tree again after a power loss. A link is
/// removed, never followed.
pub fn remove_tree_if_present(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            std::fs::remove_dir_all(path)
                .with_context(|| format!("removing {}", path.display()))?;
            sync_dir(parent_of(path)?)
        }
        Ok(_) => remove_file_if_present(path),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

/// Removes the file at `path`, if there is one, and makes that durable
/// (its directory fsynced).
pub fn remove_file_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(parent_of(path)?),
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {}", path.display()))
        }
        Err(_) => Ok(()),
    }
}

fn parent_of(path: &Path) -> Result<&Path> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => Ok(dir),
        Some(_) => Ok(Path::new(".")),
        None => anyhow::bail!("{} has no parent directory", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_file_with_the_given_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "old").unwrap();
        atomic_write(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_temp_file_left_by_a_crash_does_not_lend_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odbc.ini");
        let stale = dir
            .path()
            .join(format!(".odbc.ini.tmp-{}", std::process::id()));
        std::fs::write(&stale, "half").unwrap();
        std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o666)).unwrap();
        atomic_write(&path, b"Password = x\n", 0o600).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!stale.exists());
    }

    #[test]
    fn a_missing_directory_is_named_in_the_error() {
        let err = atomic_write(Path::new("/nonexistent-dir/x.ini"), b"x", 0o644).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent-dir/x.ini"),
            "{err:#}"
        );
    }

    #[test]
    fn a_directory_is_created_with_its_mode_and_an_existing_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("var/imss/backup");
        create_dir_with_mode(&backup, 0o700).unwrap();
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(create_dir_with_mode(&backup, 0o700).is_err());
    }

    #[test]
    fn a_tree_is_synced_file_by_file_and_no_link_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("a"), "a").unwrap();
        std::fs::write(tree.join("sub/b"), "b").unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("c"), "c").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("link")).unwrap();
        nix::unistd::mkfifo(&tree.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let synced = no_follow::open_dir(&tree).unwrap().sync_tree().unwrap();
        assert_eq!(synced, 2);
        sync_tree(&tree).unwrap();
    }

    #[test]
    fn removing_a_link_leaves_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("kept"), "x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        remove_tree_if_present(&link).unwrap();
        assert!(!link.exists() && target.join("kept").exists());
        remove_tree_if_present(&link).unwrap();
    }
}
