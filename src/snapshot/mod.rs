//! The snapshot step's engine (DESIGN.md section 3, step 3): archives the
//! 7.1 program tree and the system files the upgrade changes into the
//! backup directory, with a manifest of every entry, and puts them back
//! exactly on rollback.
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
//! FIFOs and device nodes are refused, as are names that are not UTF-8. A snapshotted path that is a symbolic link is followed
//! (inside the root): what it points to is snapshotted and restored, the
//! link itself is not.

mod apply;
mod archive;
mod extract;
mod manifest;
pub mod tree_move;
mod walk;

use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use chrono::Utc;
use thiserror::Error;
use xz2::read::XzDecoder;
use xz2::write::XzEncoder;

pub use apply::RestoreReport;
pub use archive::Compression;
pub use manifest::{
    ArchiveFormat, ArchiveInfo, Entry, EntryKind, FORMAT_VERSION, MANIFEST_FILE, Manifest, Meta,
    Pin, SnapshotPath,
};

use archive::{ArchiveWriter, FileWriter, Hash, IO_BUFFER, Source, copy_hashed, header_mtime};
use walk::{HashOnly, Visitor, walk};

use crate::support::fsutil;
use crate::support::root::Root;

/// The xz preset [`recompress`] uses: `xz`'s own default.
pub const RECOMPRESS_PRESET: u32 = 6;

/// A backup whose archive and manifest disagree, or that cannot be read:
/// it must not be restored from.
#[derive(Debug, Error)]
#[error(
    "the backup in {} does not match its manifest ({detail}): do not restore from it; if the snapshotted tree has not changed since, take the snapshot again, otherwise restore those paths from another backup of this server",
    dir.display()
)]
pub struct BackupMismatch {
    /// The backup directory.
    pub dir: PathBuf,
    /// Which file and which entry, and how they differ.
    pub detail: String,
}

impl BackupMismatch {
    fn new(dir: &Path, detail: impl Into<String>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            detail: detail.into(),
        }
    }
}

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

/// Checks the snapshot in `backup_dir`: the archive's size and SHA-256 are
/// those the manifest records, and every member matches its manifest line
/// (name, type, mode, owner, mtime, size, content hash, link target), in
/// order, none missing and none extra. Anything else is a
/// [`BackupMismatch`] naming the file and the entry.
pub fn verify(backup_dir: &Path, pin: &Pin) -> Result<Manifest> {
    let (manifest, archive) = open(backup_dir, pin)?;
    check_archive(backup_dir, &manifest, &archive)?;
    Ok(manifest)
}

/// Puts the snapshot in `backup_dir` back under `root`: verifies it first
/// (a snapshot that fails [`verify`] changes nothing), then makes each
/// snapshotted path exactly what the manifest records, removing what is
/// there now and is not listed (files 9.1 added, say), writing every file,
/// recreating directories and links, and setting owner, mode and mtime.
///
/// Safe over any tree (the 7.1 tree, the 9.1 tree, a mix left by an
/// interrupted upgrade): links found in the tree are never followed.
/// Idempotent: if it is interrupted, running it again finishes it. The
/// file systems are synced before it returns. Runs as root (it sets
/// owners). A running [`recompress`] must be stopped first.
pub fn restore(root: &Root, backup_dir: &Path, pin: &Pin) -> Result<RestoreReport> {
    let (manifest, archive) = open(backup_dir, pin)?;
    check_archive(backup_dir, &manifest, &archive)?;
    (&archive)
        .seek(SeekFrom::Start(0))
        .with_context(|| format!("reading {}", manifest.archive.file))?;
    let report = apply::apply(root, backup_dir, &manifest, &archive)?;
    tracing::info!(
        imss_files = report.files,
        imss_bytes = report.bytes,
        imss_removed = report.removed,
        "snapshot in {} restored",
        backup_dir.display()
    );
    Ok(report)
}

/// Writes the archived entries at and below `inside` (an absolute path
/// inside the root, as the manifest names entries, e.g.
/// `/opt/trend/imss/PostgreSQL`) of the snapshot in `backup_dir` into
/// `dest`, a path on this machine: the entry `inside` becomes `dest`, and
/// what is below it lands at `dest/<path relative to inside>`. Returns the
/// number of files written.
///
/// After an upgrade the 7.1 program tree is gone; the background transfer
/// needs 7.1's bundled PostgreSQL 10 programs to start the 7.1 database
/// kept in the backup directory, and they come out of the snapshot.
///
/// The whole archive is read once (plain tar or xz, as the manifest says)
/// and every member checked against the manifest as [`verify`] does; each
/// file is hashed as it is written and must have the manifest's size and
/// SHA-256. Files, directories and links get the manifest's mode and link
/// target, but the calling user as owner and the time of extraction as
/// mtime. A disagreement between archive and manifest is a
/// [`BackupMismatch`] naming the entry; an `inside` with no archived
/// entries is an error naming it.
///
/// Everything is written under a temporary name next to `dest`
/// (`.<name>.imss-extracting`), synced, and renamed to `dest` only once
/// the whole archive has checked out, so that a `dest` is always
/// complete. An existing `dest` is replaced: renamed aside
/// (`.<name>.imss-replaced`) just before, removed just after. A failed run
/// leaves `dest` as it was; an interrupted one may leave no `dest`; either
/// way, running again clears what it left next to it.
pub fn extract_subtree(backup_dir: &Path, pin: &Pin, inside: &str, dest: &Path) -> Result<u64> {
    let (manifest, archive) = open(backup_dir, pin)?;
    let files = extract::extract(backup_dir, &manifest, &archive, inside, dest)?;
    tracing::info!(
        imss_files = files,
        "{inside} extracted from the snapshot in {} into {}",
        backup_dir.display(),
        dest.display()
    );
    Ok(files)
}

/// Rewrites a plain-tar snapshot as xz preset [`RECOMPRESS_PRESET`] on one
/// thread (leaving the other cores to mail); see [`recompress_with`].
pub fn recompress(backup_dir: &Path, pin: &Pin) -> Result<Manifest> {
    recompress_with(backup_dir, pin, RECOMPRESS_PRESET, 1)
}

/// Rewrites a plain-tar snapshot as `snapshot.tar.xz` (xz `preset` on
/// `threads` threads), off the critical path. The tar is hashed as it is
/// read and must match the manifest; the new archive is read back and
/// must decompress to the same bytes; only then is it renamed into place,
/// the manifest replaced atomically, and the tar removed. Interrupted at
/// any point, the snapshot is still whole and this can run again; on a
/// snapshot that is already xz it only removes leftovers.
pub fn recompress_with(
    backup_dir: &Path,
    pin: &Pin,
    preset: u32,
    threads: u32,
) -> Result<Manifest> {
    let (manifest, tar) = open(backup_dir, pin)?;
    if manifest.archive.format == ArchiveFormat::TarXz {
        remove_other_archives(backup_dir, ArchiveFormat::TarXz)?;
        return Ok(manifest);
    }
    let format = ArchiveFormat::TarXz;
    let temp_path = temp_archive_path(backup_dir, format);
    let archive_path = backup_dir.join(format.file_name());
    let compressed = (|| -> Result<(String, u64)> {
        let file = create_temp_archive(&temp_path)?;
        let mut encoder =
            XzEncoder::new_stream(FileWriter::new(file), archive::xz_encoder(preset, threads)?);
        let input = copy_hashed(&mut BufReader::with_capacity(IO_BUFFER, &tar), &mut encoder)
            .with_context(|| {
                format!(
                    "compressing {} into {}",
                    manifest.archive.file,
                    temp_path.display()
                )
            })?;
        check_hash(backup_dir, &manifest, input)?;
        let (file, output) = encoder
            .finish()
            .and_then(FileWriter::finish)
            .with_context(|| format!("writing {}", temp_path.display()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", temp_path.display()))?;
        let readback = File::open(&temp_path)
            .and_then(|file| {
                let mut decoder = XzDecoder::new(BufReader::with_capacity(IO_BUFFER, file));
                copy_hashed(&mut decoder, &mut io::sink())
            })
            .with_context(|| format!("reading back {}", temp_path.display()))?;
        let (readback_sha, _) = readback.finish();
        if readback_sha != manifest.archive.sha256 {
            bail!(
                "{} does not decompress to the archive it was made from; {} is kept as it is",
                temp_path.display(),
                manifest.archive.file
            );
        }
        Ok(output.finish())
    })();
    let (sha256, size) = compressed.inspect_err(|_| {
        let _ = std::fs::remove_file(&temp_path);
    })?;
    fsutil::rename_durably(&temp_path, &archive_path)?;
    crate::fail_point!("compress-archive-swapped");
    let manifest = Manifest {
        archive: ArchiveInfo {
            file: format.file_name().to_string(),
            format,
            size,
            sha256,
        },
        ..manifest
    };
    manifest.write(backup_dir)?;
    crate::fail_point!("compress-manifest-written");
    remove_other_archives(backup_dir, format)?;
    tracing::info!(
        imss_archive_bytes = size,
        "snapshot recompressed to {}",
        archive_path.display()
    );
    Ok(manifest)
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

/// Reads the manifest, which must be the one `pin` was taken of, and opens
/// the archive it names, checking its size. Should a recompression replace
/// the archive between the two, the manifest is read again.
fn open(backup_dir: &Path, pin: &Pin) -> Result<(Manifest, File)> {
    let mut retried = false;
    loop {
        let manifest = Manifest::read(backup_dir)?;
        let found = manifest.pin();
        if found != *pin {
            return Err(BackupMismatch::new(
                backup_dir,
                format!(
                    "{MANIFEST_FILE} is not the one this upgrade's snapshot wrote: what it \
                     restores hashes to SHA-256 {found}, the upgrade recorded {pin}"
                ),
            )
            .into());
        }
        if manifest.archive.file != manifest.archive.format.file_name() {
            return Err(BackupMismatch::new(
                backup_dir,
                format!(
                    "{MANIFEST_FILE}: archive {} is not a name a snapshot uses",
                    manifest.archive.file
                ),
            )
            .into());
        }
        let path = backup_dir.join(&manifest.archive.file);
        let file = match walk::open_nofollow(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound && !retried => {
                retried = true;
                continue;
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(BackupMismatch::new(
                    backup_dir,
                    format!("{} is missing", manifest.archive.file),
                )
                .into());
            }
            Err(err) => return Err(err).with_context(|| format!("opening {}", path.display())),
        };
        let size = file
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        if size != manifest.archive.size {
            return Err(BackupMismatch::new(
                backup_dir,
                format!(
                    "{} is {size} bytes, {MANIFEST_FILE} records {}",
                    manifest.archive.file, manifest.archive.size
                ),
            )
            .into());
        }
        return Ok((manifest, file));
    }
}

/// Reads the whole archive once, checking every member against the
/// manifest and the hash of the file. When a member cannot be read, the
/// file's hash tells a damaged archive from a manifest that lies.
fn check_archive(backup_dir: &Path, manifest: &Manifest, archive: &File) -> Result<()> {
    check_archive_with(backup_dir, manifest, archive, &mut Discard)
}

/// [`check_archive`], handing each member to `members` as it is checked.
fn check_archive_with<M: Members>(
    backup_dir: &Path,
    manifest: &Manifest,
    archive: &File,
    members: &mut M,
) -> Result<()> {
    let mismatch = |detail: String| BackupMismatch::new(backup_dir, detail);
    let file_name = &manifest.archive.file;
    let checked = check_members(manifest, archive, members);
    let whole = match checked {
        Ok(hash) => hash,
        Err(MemberError::Mismatch(detail)) => return Err(mismatch(detail).into()),
        Err(MemberError::Local(err)) => return Err(err),
        Err(MemberError::Unreadable(err)) => {
            (&*archive)
                .seek(SeekFrom::Start(0))
                .with_context(|| format!("reading {file_name}"))?;
            let hash =
                archive::hash_file(archive).with_context(|| format!("reading {file_name}"))?;
            check_hash(backup_dir, manifest, hash)?;
            return Err(mismatch(format!("{file_name} cannot be read: {err}")).into());
        }
    };
    check_hash(backup_dir, manifest, whole)
}

/// Compares the hash of the whole archive file with the manifest's.
fn check_hash(backup_dir: &Path, manifest: &Manifest, hash: Hash) -> Result<()> {
    let (sha256, size) = hash.finish();
    if sha256 != manifest.archive.sha256 || size != manifest.archive.size {
        return Err(BackupMismatch::new(
            backup_dir,
            format!(
                "{}: SHA-256 {sha256} over {size} bytes, {MANIFEST_FILE} records {} over {} bytes",
                manifest.archive.file, manifest.archive.sha256, manifest.archive.size
            ),
        )
        .into());
    }
    Ok(())
}

enum MemberError {
    /// A member differs from its manifest line.
    Mismatch(String),
    /// The archive could not be read or parsed.
    Unreadable(io::Error),
    /// What [`Members`] does with a member failed (a full disk, say): not
    /// the backup's fault.
    Local(anyhow::Error),
}

/// What reading the archive does with each member besides checking it:
/// nothing for [`verify`] and [`restore`] ([`Discard`]); [`extract_subtree`]
/// writes some of them out.
trait Members {
    /// Where the contents of a file go as they are hashed.
    type Contents: Write;

    /// Where the contents of the file `entry` go; called once the member's
    /// header has matched the manifest.
    fn contents(&mut self, entry: &Entry) -> Result<Self::Contents>;

    /// The member of `entry` has matched its manifest line, contents and
    /// all; `contents` is what [`Members::contents`] gave, for a file.
    fn matched(&mut self, entry: &Entry, contents: Option<Self::Contents>) -> Result<()>;
}

/// Checks the members and keeps nothing.
struct Discard;

impl Members for Discard {
    type Contents = io::Sink;

    fn contents(&mut self, _entry: &Entry) -> Result<io::Sink> {
        Ok(io::sink())
    }

    fn matched(&mut self, _entry: &Entry, _contents: Option<io::Sink>) -> Result<()> {
        Ok(())
    }
}

/// A member's contents on their way to [`Members::contents`], remembering
/// whether writing them failed, so that a full disk is not reported as a
/// damaged archive.
struct Outgoing<W> {
    inner: W,
    failed: bool,
}

impl<W: Write> Write for Outgoing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).inspect_err(|_| self.failed = true)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

impl From<io::Error> for MemberError {
    fn from(err: io::Error) -> Self {
        MemberError::Unreadable(err)
    }
}

/// Walks the archive's members alongside the manifest's archived entries;
/// returns the hash of the whole file.
fn check_members<M: Members>(
    manifest: &Manifest,
    archive: &File,
    members: &mut M,
) -> Result<Hash, MemberError> {
    let file_name = &manifest.archive.file;
    let mut reader = tar::Archive::new(Source::new(archive, manifest.archive.format)?);
    let mut expected = manifest.archived_entries();
    for member in reader.entries()? {
        let mut member = member?;
        let name = String::from_utf8_lossy(&member.path_bytes()).into_owned();
        let Some(entry) = expected.next() else {
            return Err(MemberError::Mismatch(format!(
                "{file_name}: member {name} is not in {MANIFEST_FILE}"
            )));
        };
        check_member(file_name, entry, &name, &mut member, members)?;
    }
    if let Some(entry) = expected.next() {
        return Err(MemberError::Mismatch(format!(
            "{file_name}, entry {}: missing from the archive",
            entry.path
        )));
    }
    Ok(reader.into_inner().finish()?)
}

fn check_member<M: Members>(
    file_name: &str,
    entry: &Entry,
    name: &str,
    member: &mut tar::Entry<'_, Source>,
    members: &mut M,
) -> Result<(), MemberError> {
    let differs =
        |what: String| MemberError::Mismatch(format!("{file_name}, entry {}: {what}", entry.path));
    let expected_name = archive::member_name(&entry.path);
    if name.trim_end_matches('/') != expected_name {
        return Err(differs(format!("the archive holds {name} in its place")));
    }
    let header = member.header().clone();
    let kind = header.entry_type();
    let type_matches = match entry.kind {
        EntryKind::File { .. } => kind.is_file(),
        EntryKind::Dir { .. } => kind.is_dir(),
        EntryKind::Symlink { .. } => kind.is_symlink(),
        EntryKind::Absent => false,
    };
    if !type_matches {
        return Err(differs(format!(
            "the archive holds a {kind:?}, {MANIFEST_FILE} a {}",
            entry.type_name()
        )));
    }
    let meta = entry.meta().expect("archived entries have metadata");
    let recorded = (
        header.mode()? & 0o7777,
        header.uid()?,
        header.gid()?,
        header.mtime()?,
    );
    let listed = (
        meta.mode,
        u64::from(meta.uid),
        u64::from(meta.gid),
        header_mtime(meta),
    );
    if recorded != listed {
        return Err(differs(format!(
            "mode, owner, group and mtime are {:04o} {}:{} {} in the archive, {:04o} {}:{} {} in {MANIFEST_FILE}",
            recorded.0, recorded.1, recorded.2, recorded.3, listed.0, listed.1, listed.2, listed.3
        )));
    }
    let mut contents = None;
    match &entry.kind {
        EntryKind::File { size, sha256, .. } => {
            let mut out = Outgoing {
                inner: members.contents(entry).map_err(MemberError::Local)?,
                failed: false,
            };
            let hash = copy_hashed(member, &mut out).map_err(|err| {
                if out.failed {
                    MemberError::Local(err.into())
                } else {
                    MemberError::Unreadable(err)
                }
            })?;
            let (actual, length) = hash.finish();
            if length != *size {
                return Err(differs(format!(
                    "{length} bytes in the archive, {size} in {MANIFEST_FILE}"
                )));
            }
            if &actual != sha256 {
                return Err(differs(format!(
                    "SHA-256 {actual} in the archive, {sha256} in {MANIFEST_FILE}"
                )));
            }
            contents = Some(out.inner);
        }
        EntryKind::Symlink { target, .. } => {
            let link = member.link_name_bytes().unwrap_or_default();
            if link.as_ref() != target.as_bytes() {
                return Err(differs(format!(
                    "the link points to {} in the archive, to {target} in {MANIFEST_FILE}",
                    String::from_utf8_lossy(&link)
                )));
            }
        }
        EntryKind::Dir { .. } | EntryKind::Absent => {}
    }
    members.matched(entry, contents).map_err(MemberError::Local)
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
