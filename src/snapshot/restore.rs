//! Putting a verified snapshot back: each snapshotted path is made exactly
//! as the manifest records it, whatever is there now (the 7.1 tree, the 9.1
//! tree, or a mix that an interrupted upgrade or restore left).
//!
//! Entries are made parents first, and each directory is checked with
//! `lstat` (and replaced if it is anything else) before anything is
//! written into it, so no link that the current tree holds is ever
//! followed. Files are written to a temporary name next to their place and
//! renamed over it, with owner, mode and mtime set before the rename.
//! Whatever a directory holds that the manifest does not list is removed
//! when the directory is reached. Directories get their owner, mode and
//! mtime last, children first, since writing into a directory changes its
//! mtime. Nothing is synced while it is written: at the end each restored
//! tree is made durable whole ([`fsutil::sync_tree`]), and running the
//! restore again after a crash redoes it all.

use std::collections::HashSet;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use nix::fcntl::{AT_FDCWD, OFlag};
use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use serde::Serialize;

use super::archive::{IO_BUFFER, Source, member_name};
use super::manifest::{Entry, EntryKind, Manifest, Meta, Pin, SnapshotPath, is_below};
use super::verify::{check_archive, open};
use super::walk::Progress;
use crate::support::fsutil;
use crate::support::root::Root;

/// Puts the snapshot in `backup_dir` back under `root`: verifies it first
/// (a snapshot that fails [`super::verify()`] changes nothing), then makes
/// each snapshotted path exactly what the manifest records, removing what is
/// there now and is not listed (files 9.1 added, say), writing every file,
/// recreating directories and links, and setting owner, mode and mtime.
///
/// Safe over any tree (the 7.1 tree, the 9.1 tree, a mix left by an
/// interrupted upgrade): links found in the tree are never followed.
/// Idempotent: if it is interrupted, running it again finishes it. The
/// file systems are synced before it returns. Runs as root (it sets
/// owners). A running [`super::recompress()`] must be stopped first.
pub fn restore(root: &Root, backup_dir: &Path, pin: &Pin) -> Result<RestoreReport> {
    let (manifest, archive) = open(backup_dir, pin)?;
    check_archive(backup_dir, &manifest, &archive)?;
    (&archive)
        .seek(SeekFrom::Start(0))
        .with_context(|| format!("reading {}", manifest.archive.file))?;
    let report = apply(root, backup_dir, &manifest, &archive)?;
    tracing::info!(
        imss_files = report.files,
        imss_bytes = report.bytes,
        imss_removed = report.removed,
        "snapshot in {} restored",
        backup_dir.display()
    );
    Ok(report)
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// Files written (every file is rewritten).
    pub files: u64,
    /// Bytes written into files.
    pub bytes: u64,
    /// Directories created (existing ones are kept and fixed).
    pub dirs_created: u64,
    /// Symbolic links created or replaced.
    pub symlinks: u64,
    /// Things removed that the manifest does not list (a directory counts once).
    pub removed: u64,
}

/// The suffix of the temporary name a file is written under before it is
/// renamed into place. Anything left with it is removed by the next run,
/// since the manifest does not list it.
const TEMP_SUFFIX: &str = ".imss-restore";

/// Makes the tree under `root` what `manifest` records, reading the
/// contents from `archive` (already verified against the manifest).
fn apply(
    root: &Root,
    backup_dir: &Path,
    manifest: &Manifest,
    archive: &File,
) -> Result<RestoreReport> {
    let backup = backup_dir
        .canonicalize()
        .with_context(|| format!("reading {}", backup_dir.display()))?;
    let mut tops: Vec<(&SnapshotPath, PathBuf)> = Vec::new();
    for top in &manifest.paths {
        let host = root.resolve_parent(&top.resolved)?;
        if backup.starts_with(&host) || host.starts_with(&backup) {
            bail!(
                "cannot restore {}: the backup directory {} is inside it or it is inside the backup directory",
                top.path,
                backup.display()
            );
        }
        tops.push((top, host));
    }
    let listed: HashSet<&str> = manifest.entries.iter().map(|e| e.path.as_str()).collect();

    let mut restorer = Restorer {
        listed,
        report: RestoreReport::default(),
        dirs: Vec::new(),
        progress: Progress::new("restoring the snapshot"),
    };
    let mut source = tar::Archive::new(
        Source::new(archive, manifest.archive.format)
            .with_context(|| format!("reading {}", manifest.archive.file))?,
    );
    let mut members = source
        .entries()
        .with_context(|| format!("reading {}", manifest.archive.file))?;
    for entry in &manifest.entries {
        let (top, top_host) = tops
            .iter()
            .find(|(top, _)| entry.path == top.path || is_below(&entry.path, &top.path))
            .expect("the manifest's structure was checked");
        let host = if entry.path == top.path {
            top_host.clone()
        } else {
            top_host.join(&entry.path[top.path.len() + 1..])
        };
        if !entry.is_archived() {
            restorer.remove(&host)?;
            continue;
        }
        if entry.path == top.path
            && let Some(parent) = host.parent()
        {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut member = members
            .next()
            .with_context(|| format!("{} ends early", manifest.archive.file))?
            .with_context(|| format!("reading {}", manifest.archive.file))?;
        if member.path_bytes().as_ref() != member_name(&entry.path).as_bytes()
            && member.path_bytes().as_ref().strip_suffix(b"/")
                != Some(member_name(&entry.path).as_bytes())
        {
            bail!(
                "{} changed while it was restored from (at {}): restore again",
                manifest.archive.file,
                entry.path
            );
        }
        restorer
            .make(entry, &host, &mut member)
            .with_context(|| format!("restoring {}", entry.path))?;
    }

    // Children before parents: a directory's mtime is final once nothing
    // is written into it any more.
    for (host, meta) in restorer.dirs.iter().rev() {
        set_owner_and_mode(host, meta)?;
        set_mtime(host, meta)?;
    }
    for (_, host) in &tops {
        sync_restored(host)?;
    }
    restorer.progress.done();
    Ok(restorer.report)
}

struct Restorer<'m> {
    listed: HashSet<&'m str>,
    report: RestoreReport,
    dirs: Vec<(PathBuf, Meta)>,
    progress: Progress,
}

impl Restorer<'_> {
    fn make(&mut self, entry: &Entry, host: &Path, contents: &mut dyn Read) -> Result<()> {
        match &entry.kind {
            EntryKind::Dir { meta } => {
                self.make_dir(host)?;
                self.remove_unlisted(&entry.path, host)?;
                self.dirs.push((host.to_path_buf(), *meta));
            }
            EntryKind::File { meta, size, .. } => {
                self.write_file(host, meta, *size, contents)?;
            }
            EntryKind::Symlink { meta, target } => self.make_symlink(host, meta, target)?,
            EntryKind::Absent => unreachable!("absent paths have no member"),
        }
        Ok(())
    }

    fn make_dir(&mut self, host: &Path) -> Result<()> {
        match std::fs::symlink_metadata(host) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) => {
                self.remove(host)?;
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("reading {}", host.display())),
        }
        // Root only until its recorded mode is set at the end.
        DirBuilder::new()
            .mode(0o700)
            .create(host)
            .with_context(|| format!("creating {}", host.display()))?;
        self.report.dirs_created += 1;
        Ok(())
    }

    /// Removes what `dir` (the host path of the directory entry `path`)
    /// holds that the manifest does not list.
    fn remove_unlisted(&mut self, path: &str, dir: &Path) -> Result<()> {
        let mut unlisted = Vec::new();
        for child in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let name = child
                .with_context(|| format!("reading {}", dir.display()))?
                .file_name();
            let listed = name
                .to_str()
                .is_some_and(|name| self.listed.contains(format!("{path}/{name}").as_str()));
            if !listed {
                unlisted.push(dir.join(name));
            }
        }
        for host in unlisted {
            self.remove(&host)?;
        }
        Ok(())
    }

    fn write_file(
        &mut self,
        host: &Path,
        meta: &Meta,
        size: u64,
        contents: &mut dyn Read,
    ) -> Result<()> {
        if std::fs::symlink_metadata(host).is_ok_and(|m| m.is_dir()) {
            self.remove(host)?;
        }
        let temp = temp_name(host);
        remove_any(&temp)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(OFlag::O_NOFOLLOW.bits())
            .open(&temp)
            .with_context(|| format!("creating {}", temp.display()))?;
        let written = copy_exact(contents, &mut file)
            .with_context(|| format!("writing {}", temp.display()))?;
        if written != size {
            bail!("the archive holds {written} bytes for it, the manifest {size}");
        }
        // Owner first: changing it clears setuid and setgid.
        std::os::unix::fs::fchown(&file, Some(meta.uid), Some(meta.gid))
            .with_context(|| format!("giving {} to {}:{}", temp.display(), meta.uid, meta.gid))?;
        file.set_permissions(std::fs::Permissions::from_mode(meta.mode))
            .with_context(|| format!("setting the mode of {}", temp.display()))?;
        drop(file);
        set_mtime(&temp, meta)?;
        std::fs::rename(&temp, host)
            .with_context(|| format!("renaming {} to {}", temp.display(), host.display()))?;
        self.report.files += 1;
        self.report.bytes += size;
        self.progress.file(size);
        Ok(())
    }

    fn make_symlink(&mut self, host: &Path, meta: &Meta, target: &str) -> Result<()> {
        match std::fs::symlink_metadata(host) {
            Ok(current)
                if current.file_type().is_symlink()
                    && std::fs::read_link(host).is_ok_and(|t| t.as_os_str() == target) =>
            {
                lchown(host, meta)?;
                return set_mtime(host, meta);
            }
            Ok(current) if current.is_dir() => {
                self.remove(host)?;
            }
            _ => {}
        }
        let temp = temp_name(host);
        remove_any(&temp)?;
        std::os::unix::fs::symlink(target, &temp)
            .with_context(|| format!("creating the link {}", temp.display()))?;
        lchown(&temp, meta)?;
        set_mtime(&temp, meta)?;
        std::fs::rename(&temp, host)
            .with_context(|| format!("renaming {} to {}", temp.display(), host.display()))?;
        self.report.symlinks += 1;
        Ok(())
    }

    fn remove(&mut self, host: &Path) -> Result<()> {
        if remove_any(host)? {
            tracing::debug!(path = %host.display(), "removed, not in the snapshot");
            self.report.removed += 1;
        }
        Ok(())
    }
}

/// Removes whatever is at `path` (a directory with all it holds), without
/// following a link; whether there was anything.
fn remove_any(path: &Path) -> Result<bool> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(err) => Err(err),
    };
    result.with_context(|| format!("removing {}", path.display()))?;
    Ok(true)
}

fn temp_name(host: &Path) -> PathBuf {
    let name = host.file_name().unwrap_or_default().to_string_lossy();
    host.with_file_name(format!(".{name}{TEMP_SUFFIX}"))
}

fn copy_exact(from: &mut dyn Read, to: &mut File) -> io::Result<u64> {
    let mut buf = vec![0u8; IO_BUFFER];
    let mut total = 0;
    loop {
        let read = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        io::Write::write_all(to, &buf[..read])?;
        total += read as u64;
    }
}

fn lchown(path: &Path, meta: &Meta) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid))
        .with_context(|| format!("giving {} to {}:{}", path.display(), meta.uid, meta.gid))
}

/// Owner, then mode (changing the owner clears setuid and setgid), of a
/// directory that was checked to be one.
fn set_owner_and_mode(path: &Path, meta: &Meta) -> Result<()> {
    lchown(path, meta)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

/// Sets the mtime of `path` itself (a link is not followed); the access
/// time is left alone.
fn set_mtime(path: &Path, meta: &Meta) -> Result<()> {
    utimensat(
        AT_FDCWD,
        path,
        &TimeSpec::UTIME_OMIT,
        &TimeSpec::new(meta.mtime_sec, i64::from(meta.mtime_nsec)),
        UtimensatFlags::NoFollowSymlink,
    )
    .with_context(|| format!("setting the mtime of {}", path.display()))
}

/// Makes what the restore left at `host` durable, with its name
/// ([`fsutil::sync_tree`]), or its removal: the nearest directory that is
/// still there no longer holds it.
fn sync_restored(host: &Path) -> Result<()> {
    if crate::support::no_follow::lstat(host)?.is_some() {
        return fsutil::sync_tree(host);
    }
    let parent = host
        .ancestors()
        .skip(1)
        .find(|dir| dir.is_dir())
        .unwrap_or(Path::new("/"));
    fsutil::sync_dir(parent)
}
