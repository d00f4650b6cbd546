//! What every reader of a snapshot checks before it trusts it: the
//! manifest is the one the upgrade pinned, the archive it names has the
//! size and SHA-256 recorded, and every member matches its manifest line.
//! [`verify`] does only that; restore, extraction and recompression read
//! the archive through the same checks.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use thiserror::Error;

use super::archive::{self, Hash, Source, copy_hashed, header_mtime};
use super::manifest::{Entry, EntryKind, MANIFEST_FILE, Manifest, Pin};
use super::walk;

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
    pub(super) fn new(dir: &Path, detail: impl Into<String>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            detail: detail.into(),
        }
    }
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

/// Reads the manifest, which must be the one `pin` was taken of, and opens
/// the archive it names, checking its size. Should a recompression replace
/// the archive between the two, the manifest is read again.
pub(super) fn open(backup_dir: &Path, pin: &Pin) -> Result<(Manifest, File)> {
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
pub(super) fn check_archive(backup_dir: &Path, manifest: &Manifest, archive: &File) -> Result<()> {
    check_archive_with(backup_dir, manifest, archive, &mut Discard)
}

/// [`check_archive`], handing each member to `members` as it is checked.
pub(super) fn check_archive_with<M: Members>(
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
pub(super) fn check_hash(backup_dir: &Path, manifest: &Manifest, hash: Hash) -> Result<()> {
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
/// nothing for [`verify`] and [`super::restore()`] ([`Discard`]);
/// [`super::extract_subtree`] writes some of them out.
pub(super) trait Members {
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
