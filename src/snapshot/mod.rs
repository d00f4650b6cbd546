//! The snapshot step's engine: archives the 7.1 program tree and the
//! system files the upgrade changes into the backup directory, with a
//! manifest of every entry, and puts them back exactly on rollback.
//!
//! It touches the snapshotted paths (reading them, and on restore making
//! them what the manifest says) and the backup directory, nothing else.
//!
//! The backup directory holds:
//! - `snapshot.tar` (or `snapshot.tar.xz` after [`recompress`]): the
//!   contents, members in manifest order;
//! - `snapshot-manifest.json` ([`Manifest`]): every entry with its type,
//!   mode, owner, mtime (with nanoseconds), size and SHA-256, and the
//!   archive's own name, size and SHA-256.
//!
//! Downtime decides the format: [`create`] writes a plain tar, as fast as
//! GNU tar on the same tree, where xz takes one to two orders of magnitude
//! longer on two cores (the ignored benchmark in `tests/snapshot.rs`
//! measures both). [`recompress`] rewrites it as xz `-6` later, off the
//! critical path, while 9.1 already carries mail. [`verify`] and
//! [`restore`] read either; restoring from xz takes longer, since the
//! archive is decompressed twice (verified whole first, then applied).
//!
//! What a snapshot records, and so what [`scan`] compares: for each entry
//! its path, type, permission bits (with setuid, setgid and sticky), numeric
//! owner and group, mtime to the nanosecond, and for files size and
//! SHA-256, for links the target. Not recorded: access and change times,
//! extended attributes (SELinux labels, ACLs, file capabilities), hard
//! links (each name is a file of its own; restore writes them as separate
//! files), holes in sparse files (restore writes them out in full), and
//! sockets (stale once the services are stopped; restore removes them).
//! FIFOs and device nodes are refused, as are names that are not UTF-8. A
//! snapshotted path that is a symbolic link is followed (inside the root):
//! what it points to is snapshotted and restored, the link itself is not.
//!
//! Here the snapshot is taken ([`create`]) and a live tree scanned
//! ([`scan`]); every reader takes the pin the snapshot step recorded and
//! reads through the checks of `verify` ([`verify()`]): `restore`
//! ([`restore()`]), `extract` ([`extract_subtree`]) and `recompress`
//! ([`recompress()`]).

mod archive;
mod extract;
mod manifest;
mod recompress;
mod restore;
pub mod tree_move;
mod verify;
mod walk;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use chrono::Utc;

pub use archive::Compression;
pub use extract::extract_subtree;
pub use manifest::{
    ArchiveFormat, ArchiveInfo, Entry, EntryKind, FORMAT_VERSION, MANIFEST_FILE, Manifest, Meta,
    Pin, SnapshotPath,
};
pub use recompress::{RECOMPRESS_PRESET, recompress, recompress_with};
pub use restore::{RestoreReport, restore};
pub use verify::{BackupMismatch, verify};

use archive::{ArchiveWriter, Hash};
use walk::{HashOnly, Visitor, walk};

use crate::support::fsutil;
use crate::support::root::Root;

/// Snapshots `paths` (absolute paths inside `root`, each taken whole) into
/// `backup_dir` (a path on this machine) as a plain tar and its manifest.
/// See [`create_with`].
pub fn create(root: &Root, backup_dir: &Path, paths: &[&str]) -> Result<Manifest> {
    create_with(root, backup_dir, paths, Compression::None)
}

/// Snapshots `paths` into `backup_dir`, compressed as asked.
///
/// Directories are taken recursively, links kept as links; a path that
/// does not exist is recorded as absent, so that restore removes whatever
/// is there by then. Each file is read once, hashed as it is archived, and
/// must not change meanwhile. The backup directory is created (mode 0700)
/// if missing; it must not lie inside a snapshotted path or hold one. The
/// archive is written under a temporary name, synced and renamed; the
/// manifest is written last, atomically, so a snapshot without a manifest
/// is an unfinished one and running this again replaces it.
pub fn create_with(
    root: &Root,
    backup_dir: &Path,
    paths: &[&str],
    compression: Compression,
) -> Result<Manifest> {
    prepare_backup_dir(backup_dir)?;
    let format = compression.format();
    let archive_path = backup_dir.join(format.file_name());
    let temp_path = temp_archive_path(backup_dir, format);
    let file = create_temp_archive(&temp_path)?;

    let written = (|| -> Result<_> {
        let mut writer = ArchiveWriter::new(file, compression)
            .with_context(|| format!("starting {}", temp_path.display()))?;
        let walked = walk(
            root,
            paths,
            Some(backup_dir),
            "snapshotting",
            &mut Archiving {
                writer: &mut writer,
            },
        )?;
        let (sha256, size) = writer
            .finish()
            .with_context(|| format!("writing {}", temp_path.display()))?;
        Ok((walked, sha256, size))
    })();
    let (walked, sha256, size) = written.inspect_err(|_| {
        let _ = std::fs::remove_file(&temp_path);
    })?;

    // The old manifest goes before the new archive takes its name: at no
    // moment does a manifest describe an archive it was not written for.
    fsutil::remove_file_if_present(&backup_dir.join(MANIFEST_FILE))?;
    fsutil::sync_dir(backup_dir)?;
    fsutil::rename_durably(&temp_path, &archive_path)?;
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: Utc::now(),
        paths: walked.paths,
        archive: ArchiveInfo {
            file: format.file_name().to_string(),
            format,
            size,
            sha256,
        },
        entries: walked.entries,
    };
    manifest.write(backup_dir)?;
    remove_other_archives(backup_dir, format)?;
    tracing::info!(
        imss_entries = manifest.entries.len(),
        imss_archive_bytes = size,
        "snapshot written to {}",
        archive_path.display()
    );
    Ok(manifest)
}

/// The entries of `paths` under `root` as they are now, computed exactly
/// as [`create`] records them (same walk, same order), for comparing a live
/// tree with a snapshot: `scan(root, paths)? == manifest.entries`. Every
/// file is read and hashed.
pub fn scan(root: &Root, paths: &[&str]) -> Result<Vec<Entry>> {
    Ok(walk(root, paths, None, "scanning", &mut HashOnly)?.entries)
}

/// Creates the backup directory (mode 0700) if missing, and makes an
/// existing one 0700 and, when running as root, root's.
fn prepare_backup_dir(backup_dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(backup_dir) {
        Ok(meta) if meta.is_dir() => {
            // On a handle: the backup directory's parent may be another
            // account's (`/var/imss`).
            let root = nix::unistd::geteuid().is_root().then_some((0, 0));
            crate::support::no_follow::open_dir(backup_dir)?
                .set_owner_and_mode(0o700, root)
                .with_context(|| format!("making {} private", backup_dir.display()))?;
        }
        Ok(_) => bail!(
            "{} is not a directory: move it away, then run the upgrade again",
            backup_dir.display()
        ),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            fsutil::create_dir_with_mode(backup_dir, 0o700)?;
        }
        Err(err) => {
            return Err(err).with_context(|| format!("reading {}", backup_dir.display()));
        }
    }
    Ok(())
}

/// Archives what the walk hands over.
struct Archiving<'w> {
    writer: &'w mut ArchiveWriter,
}

impl Visitor for Archiving<'_> {
    fn entry(&mut self, entry: &Entry) -> Result<()> {
        if entry.is_archived() {
            self.writer
                .add_entry(entry)
                .with_context(|| format!("archiving {}", entry.path))?;
        }
        Ok(())
    }

    fn file(
        &mut self,
        path: &str,
        meta: &Meta,
        size: u64,
        contents: &mut dyn io::Read,
    ) -> Result<Hash> {
        self.writer
            .add_file(path, meta, size, contents)
            .with_context(|| format!("archiving {path}"))
    }
}

fn temp_archive_path(backup_dir: &Path, format: ArchiveFormat) -> PathBuf {
    backup_dir.join(format!("{}.tmp", format.file_name()))
}

/// Removes the archive of the other format and temporary archives: what an
/// earlier snapshot or an interrupted run left.
fn remove_other_archives(backup_dir: &Path, kept: ArchiveFormat) -> Result<()> {
    for format in [ArchiveFormat::Tar, ArchiveFormat::TarXz] {
        if format != kept {
            fsutil::remove_file_if_present(&backup_dir.join(format.file_name()))?;
        }
        fsutil::remove_file_if_present(&temp_archive_path(backup_dir, format))?;
    }
    fsutil::sync_dir(backup_dir)
}

/// Creates a temporary archive, readable by root only; one an interrupted
/// run left is replaced.
fn create_temp_archive(temp_path: &Path) -> Result<File> {
    fsutil::remove_file_if_present(temp_path)?;
    fsutil::create_new_file(temp_path, 0o600)
        .with_context(|| format!("creating {}", temp_path.display()))
}
