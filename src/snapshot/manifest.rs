//! The snapshot's manifest, `snapshot-manifest.json`: what was archived, one
//! line per entry, and the archive's own name, size and hash.
//!
//! The manifest is the authority for metadata (mode, owner, mtime with
//! nanoseconds); the archive holds the contents. Verification compares the
//! two entry by entry, and the structure checks here make sure that a
//! manifest, however it was edited, can only ever name paths inside the
//! snapshotted trees, parents before children.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::BackupMismatch;
use crate::support::fsutil::atomic_write;

/// The manifest's file name inside the backup directory.
pub const MANIFEST_FILE: &str = "snapshot-manifest.json";

/// The manifest format this code writes and reads. Fields are only ever
/// added; a change of meaning bumps it.
pub const FORMAT_VERSION: u32 = 1;

/// Everything a snapshot holds, as `snapshot-manifest.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The imss-upgrade version that took the snapshot.
    pub tool_version: String,
    /// When the snapshot was taken (UTC).
    pub created_at: DateTime<Utc>,
    /// The snapshotted paths, in the order given.
    pub paths: Vec<SnapshotPath>,
    /// The archive holding the contents.
    pub archive: ArchiveInfo,
    /// Every entry, each snapshotted path followed by what is below it
    /// (parents before children, names in byte order).
    pub entries: Vec<Entry>,
}

/// What a snapshot restores, in one value: the SHA-256 of its manifest's
/// paths (and where they are restored to) and entries. The archive's own
/// record is left out, since recompression rewrites it; the archive is
/// checked member by member against the entries. Recorded where only root
/// can write when the snapshot is taken, it is asked for by every reader,
/// so that a backup directory another account swapped in, or a manifest
/// changed after the check, is never restored from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pin(String);

impl Pin {
    /// The hash, in hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One path that was asked for, and where it really was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPath {
    /// The path inside the root, as given (`/opt/trend/imss`).
    pub path: String,
    /// The same path with symbolic links on the way followed (inside the
    /// root), as it was when the snapshot was taken; restore writes there.
    pub resolved: String,
}

/// The archive file in the backup directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    /// Its file name in the backup directory.
    pub file: String,
    /// How it is stored.
    pub format: ArchiveFormat,
    /// Its size in bytes.
    pub size: u64,
    /// The SHA-256 of the whole file, in hex.
    pub sha256: String,
}

/// How the archive is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArchiveFormat {
    /// A plain tar file (`snapshot.tar`).
    #[serde(rename = "tar")]
    Tar,
    /// A tar file compressed with xz (`snapshot.tar.xz`).
    #[serde(rename = "tar.xz")]
    TarXz,
}

impl ArchiveFormat {
    /// The archive's file name in the backup directory.
    pub fn file_name(self) -> &'static str {
        match self {
            ArchiveFormat::Tar => "snapshot.tar",
            ArchiveFormat::TarXz => "snapshot.tar.xz",
        }
    }
}

/// One entry of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The path inside the root (`/opt/trend/imss/bin/imssd`).
    pub path: String,
    /// What it is, with its metadata.
    #[serde(flatten)]
    pub kind: EntryKind,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file.
    File {
        /// Mode, owner, mtime.
        #[serde(flatten)]
        meta: Meta,
        /// Size in bytes.
        size: u64,
        /// SHA-256 of its contents, in hex.
        sha256: String,
    },
    /// A directory.
    Dir {
        /// Mode, owner, mtime.
        #[serde(flatten)]
        meta: Meta,
    },
    /// A symbolic link, kept as a link (never followed).
    Symlink {
        /// Mode (always 0777 on Linux), owner, mtime.
        #[serde(flatten)]
        meta: Meta,
        /// The link's target, exactly as stored.
        target: String,
    },
    /// A snapshotted path that did not exist: restore removes whatever is
    /// there by then.
    Absent,
}

/// Mode, owner and modification time of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Permission bits with setuid, setgid and sticky (`0o7777` at most),
    /// written in octal (`"0755"`).
    #[serde(with = "octal_mode")]
    pub mode: u32,
    /// Owner (numeric).
    pub uid: u32,
    /// Group (numeric).
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime_sec: i64,
    /// Modification time, nanoseconds within the second.
    pub mtime_nsec: u32,
}

impl Entry {
    /// The entry's metadata; `None` for an absent path.
    pub fn meta(&self) -> Option<&Meta> {
        match &self.kind {
            EntryKind::File { meta, .. }
            | EntryKind::Dir { meta }
            | EntryKind::Symlink { meta, .. } => Some(meta),
            EntryKind::Absent => None,
        }
    }

    /// The name of its type, as the manifest writes it.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            EntryKind::File { .. } => "file",
            EntryKind::Dir { .. } => "dir",
            EntryKind::Symlink { .. } => "symlink",
            EntryKind::Absent => "absent",
        }
    }

    /// Whether the archive holds a member for this entry.
    pub fn is_archived(&self) -> bool {
        !matches!(self.kind, EntryKind::Absent)
    }
}

impl Manifest {
    /// This manifest's [`Pin`].
    pub fn pin(&self) -> Pin {
        let restored = serde_json::to_vec(&(&self.paths, &self.entries))
            .expect("paths and entries are plain data");
        Pin(hex::encode(Sha256::digest(restored)))
    }

    /// Reads and checks the manifest in `backup_dir`. A manifest that cannot
    /// be parsed, or whose entries are not a well-formed tree under its
    /// paths, is a [`BackupMismatch`].
    pub fn read(backup_dir: &Path) -> Result<Manifest> {
        let path = backup_dir.join(MANIFEST_FILE);
        // Not through a link, nor waiting on a FIFO: the backup directory's
        // parent is the service account's.
        let Some(text) =
            crate::support::no_follow::open_dir(backup_dir)?.read_file(MANIFEST_FILE)?
        else {
            bail!(
                "{} has no {MANIFEST_FILE}: the snapshot there was never finished; do not restore from it",
                backup_dir.display()
            )
        };
        let manifest: Manifest = serde_json::from_slice(&text)
            .map_err(|err| BackupMismatch::new(backup_dir, format!("{MANIFEST_FILE}: {err}")))?;
        if manifest.format_version != FORMAT_VERSION {
            bail!(
                "{} is format {}; this imss-upgrade reads format {FORMAT_VERSION}: use the imss-upgrade that took the snapshot",
                path.display(),
                manifest.format_version
            );
        }
        manifest.check_structure().map_err(|detail| {
            BackupMismatch::new(backup_dir, format!("{MANIFEST_FILE}: {detail}"))
        })?;
        Ok(manifest)
    }

    /// Writes the manifest into `backup_dir`, atomically, readable by root only.
    pub fn write(&self, backup_dir: &Path) -> Result<()> {
        atomic_write(&backup_dir.join(MANIFEST_FILE), &self.to_json()?, 0o600)
    }

    /// The manifest as JSON: the header fields indented, then one entry a
    /// line, so that `grep` and `diff` work on it.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        #[derive(Serialize)]
        struct Head<'a> {
            format_version: u32,
            tool_version: &'a str,
            created_at: &'a DateTime<Utc>,
            paths: &'a [SnapshotPath],
            archive: &'a ArchiveInfo,
        }
        let head = serde_json::to_string_pretty(&Head {
            format_version: self.format_version,
            tool_version: &self.tool_version,
            created_at: &self.created_at,
            paths: &self.paths,
            archive: &self.archive,
        })?;
        let head = head
            .strip_suffix('}')
            .context("a JSON object ends with '}'")?
            .trim_end();
        let mut out = String::with_capacity(head.len() + self.entries.len() * 200);
        out.push_str(head);
        out.push_str(",\n  \"entries\": [");
        for (index, entry) in self.entries.iter().enumerate() {
            out.push_str(if index == 0 { "\n    " } else { ",\n    " });
            out.push_str(&serde_json::to_string(entry)?);
        }
        out.push_str("\n  ]\n}\n");
        Ok(out.into_bytes())
    }

    /// The entries the archive holds members for, in archive order.
    pub fn archived_entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|entry| entry.is_archived())
    }

    /// The snapshotted path that `entry_path` is (or is below).
    pub fn top_of(&self, entry_path: &str) -> Option<&SnapshotPath> {
        self.paths
            .iter()
            .find(|top| is_at_or_below(entry_path, &top.path))
    }

    /// Checks that the entries form, for each snapshotted path in turn, a
    /// tree walked parents first: the path itself, then only paths below
    /// it whose parent directory came earlier, each once. Whatever a
    /// manifest says, restore then never writes outside those paths.
    fn check_structure(&self) -> Result<(), String> {
        for (index, top) in self.paths.iter().enumerate() {
            check_path_syntax(&top.path).map_err(|why| format!("path {}: {why}", top.path))?;
            check_path_syntax(&top.resolved)
                .map_err(|why| format!("path {} resolved as {}: {why}", top.path, top.resolved))?;
            for other in &self.paths[..index] {
                if is_at_or_below(&top.path, &other.path) || is_at_or_below(&other.path, &top.path)
                {
                    return Err(format!("paths {} and {} overlap", other.path, top.path));
                }
            }
        }
        let mut seen_dirs: HashSet<&str> = HashSet::new();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut entries = self.entries.iter().peekable();
        for top in &self.paths {
            let first = entries
                .next()
                .filter(|entry| entry.path == top.path)
                .ok_or_else(|| format!("no entry for the snapshotted path {}", top.path))?;
            seen.insert(&first.path);
            if !matches!(first.kind, EntryKind::Dir { .. }) {
                continue;
            }
            seen_dirs.insert(&first.path);
            while let Some(entry) = entries.next_if(|entry| is_below(&entry.path, &top.path)) {
                check_path_syntax(&entry.path)
                    .map_err(|why| format!("entry {}: {why}", entry.path))?;
                let parent = parent_of(&entry.path);
                if !seen_dirs.contains(parent) {
                    return Err(format!(
                        "entry {} comes before its directory {parent}, or that is not a directory",
                        entry.path
                    ));
                }
                if !seen.insert(&entry.path) {
                    return Err(format!("entry {} is listed twice", entry.path));
                }
                match entry.kind {
                    EntryKind::Dir { .. } => {
                        seen_dirs.insert(&entry.path);
                    }
                    EntryKind::Absent => {
                        return Err(format!(
                            "entry {} is absent but is not a snapshotted path",
                            entry.path
                        ));
                    }
                    EntryKind::File { .. } | EntryKind::Symlink { .. } => {}
                }
            }
        }
        if let Some(entry) = entries.next() {
            return Err(format!(
                "entry {} is not below any snapshotted path, or out of order",
                entry.path
            ));
        }
        for entry in &self.entries {
            if let Some(meta) = entry.meta()
                && (meta.mode > 0o7777 || meta.mtime_nsec >= 1_000_000_000)
            {
                return Err(format!("entry {}: mode or mtime out of range", entry.path));
            }
        }
        Ok(())
    }
}

/// Whether `path` is a well-formed absolute path inside the root:
/// `/name/name…`, no empty, `.` or `..` component, not `/` itself.
pub(crate) fn check_path_syntax(path: &str) -> Result<(), &'static str> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("not an absolute path");
    };
    if rest.is_empty() {
        return Err("the whole root cannot be snapshotted");
    }
    if rest
        .split('/')
        .any(|name| name.is_empty() || name == "." || name == "..")
    {
        return Err("has an empty, '.' or '..' component, or a trailing '/'");
    }
    if path.contains('\0') {
        return Err("contains a NUL byte");
    }
    Ok(())
}

/// Whether `path` is `top` or below it.
pub(crate) fn is_at_or_below(path: &str, top: &str) -> bool {
    path == top || is_below(path, top)
}

/// Whether `path` is strictly below `top`.
pub(crate) fn is_below(path: &str, top: &str) -> bool {
    path.strip_prefix(top)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// The parent of a checked absolute path (`/a/b` → `/a`, `/a` → `/`).
pub(crate) fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(index) => &path[..index],
    }
}

/// Modes in octal text, as people read them (`"0755"`, `"4755"`).
mod octal_mode {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(mode: &u32, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{mode:04o}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
        let text = String::deserialize(deserializer)?;
        u32::from_str_radix(&text, 8)
            .map_err(|_| D::Error::custom(format!("mode {text:?} is not an octal number")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            mode: 0o4755,
            uid: 0,
            gid: 12,
            mtime_sec: 1_700_000_000,
            mtime_nsec: 123_456_789,
        }
    }

    fn manifest(entries: Vec<Entry>) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            tool_version: "0.1.0".into(),
            created_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            paths: vec![
                SnapshotPath {
                    path: "/opt/trend/imss".into(),
                    resolved: "/opt/trend/imss".into(),
                },
                SnapshotPath {
                    path: "/etc/imss.conf".into(),
                    resolved: "/etc/imss.conf".into(),
                },
            ],
            archive: ArchiveInfo {
                file: "snapshot.tar".into(),
                format: ArchiveFormat::Tar,
                size: 10240,
                sha256: "00".repeat(32),
            },
            entries,
        }
    }

    fn good_entries() -> Vec<Entry> {
        vec![
            Entry {
                path: "/opt/trend/imss".into(),
                kind: EntryKind::Dir { meta: meta() },
            },
            Entry {
                path: "/opt/trend/imss/bin".into(),
                kind: EntryKind::Dir { meta: meta() },
            },
            Entry {
                path: "/opt/trend/imss/bin/imssd".into(),
                kind: EntryKind::File {
                    meta: meta(),
                    size: 3,
                    sha256: "ab".repeat(32),
                },
            },
            Entry {
                path: "/opt/trend/imss/lib".into(),
                kind: EntryKind::Symlink {
                    meta: meta(),
                    target: "../../../usr/lib64//".into(),
                },
            },
            Entry {
                path: "/etc/imss.conf".into(),
                kind: EntryKind::Absent,
            },
        ]
    }

    #[test]
    fn json_has_one_entry_a_line_and_reads_back_the_same() {
        let manifest = manifest(good_entries());
        let json = String::from_utf8(manifest.to_json().unwrap()).unwrap();
        assert!(
            json.contains(
                "\n    {\"path\":\"/opt/trend/imss/bin/imssd\",\"type\":\"file\",\"mode\":\"4755\",\"uid\":0,\"gid\":12,\"mtime_sec\":1700000000,\"mtime_nsec\":123456789,\"size\":3,\"sha256\":\""
            ),
            "{json}"
        );
        assert!(
            json.contains("\n    {\"path\":\"/etc/imss.conf\",\"type\":\"absent\"}\n  ]\n}\n"),
            "{json}"
        );
        assert!(json.contains("\"format\": \"tar\""), "{json}");
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, manifest);
        back.check_structure().unwrap();
    }

    #[test]
    fn entries_outside_the_paths_or_out_of_order_are_refused() {
        let mut entries = good_entries();
        entries.swap(1, 2);
        let err = manifest(entries).check_structure().unwrap_err();
        assert!(err.contains("before its directory"), "{err}");

        let mut entries = good_entries();
        entries[2].path = "/opt/trend/imss/../../../etc/shadow".into();
        let err = manifest(entries).check_structure().unwrap_err();
        assert!(err.contains("'..'"), "{err}");

        let mut entries = good_entries();
        entries.push(Entry {
            path: "/etc/passwd".into(),
            kind: EntryKind::Dir { meta: meta() },
        });
        let err = manifest(entries).check_structure().unwrap_err();
        assert!(err.contains("/etc/passwd is not below any"), "{err}");

        let mut entries = good_entries();
        entries.insert(3, entries[2].clone());
        let err = manifest(entries).check_structure().unwrap_err();
        assert!(err.contains("listed twice"), "{err}");

        let mut entries = good_entries();
        entries.remove(0);
        let err = manifest(entries).check_structure().unwrap_err();
        assert!(
            err.contains("no entry for the snapshotted path /opt/trend/imss"),
            "{err}"
        );
    }

    #[test]
    fn path_helpers() {
        assert!(is_below("/a/b", "/a"));
        assert!(!is_below("/ab", "/a"));
        assert!(!is_below("/a", "/a"));
        assert_eq!(parent_of("/a/b/c"), "/a/b");
        assert_eq!(parent_of("/a"), "/");
        assert!(check_path_syntax("/a//b").is_err());
        assert!(check_path_syntax("/a/b/").is_err());
        assert!(check_path_syntax("/").is_err());
        assert!(check_path_syntax("a/b").is_err());
        assert!(check_path_syntax("/a/./b").is_err());
        assert!(check_path_syntax("/opt/trend/imss").is_ok());
    }
}
