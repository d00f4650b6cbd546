//! Walking the live tree under each snapshotted path: the one walk that
//! both [`super::create`] (archiving as it goes) and [`super::scan`]
//! (hashing only) use, so that their entry lists are comparable.
//!
//! The snapshotted path itself is resolved under the root (links on the
//! way are followed, never out of the root); below it nothing is followed:
//! a link is recorded as a link, and files are opened with `O_NOFOLLOW`.
//! Directories are walked parents first, names in byte order.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use nix::fcntl::OFlag;

use super::archive::{Hash, copy_hashed};
use super::manifest::{Entry, EntryKind, Meta, SnapshotPath, check_path_syntax, is_at_or_below};
use crate::support::logging::events;
use crate::support::root::Root;

/// How often long walks log their progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// What the walk hands over as it goes.
pub(crate) trait Visitor {
    /// A directory, symbolic link or absent path, in walk order.
    fn entry(&mut self, entry: &Entry) -> Result<()>;

    /// A regular file of `size` bytes at `path`: read it once, from the
    /// start, and return the hash of exactly `size` bytes.
    fn file(&mut self, path: &str, meta: &Meta, size: u64, contents: &mut dyn Read)
    -> Result<Hash>;
}

/// A visitor that only hashes: for [`super::scan`].
pub(crate) struct HashOnly;

impl Visitor for HashOnly {
    fn entry(&mut self, _entry: &Entry) -> Result<()> {
        Ok(())
    }

    fn file(
        &mut self,
        path: &str,
        _meta: &Meta,
        size: u64,
        contents: &mut dyn Read,
    ) -> Result<Hash> {
        let hash = copy_hashed(&mut contents.take(size), &mut io::sink())
            .with_context(|| format!("reading {path}"))?;
        if hash.len() != size {
            bail!(
                "{path} shrank from {size} to {} bytes while it was read",
                hash.len()
            );
        }
        Ok(hash)
    }
}

/// The result of a walk.
pub(crate) struct Walked {
    /// The snapshotted paths with where they resolved.
    pub paths: Vec<SnapshotPath>,
    /// Every entry, in walk order.
    pub entries: Vec<Entry>,
}

/// Walks `paths` under `root`. `keep_out` is a host directory that must
/// neither lie inside a walked path nor contain one (the backup directory:
/// a snapshot must not hold itself, and restore must not remove it).
pub(crate) fn walk(
    root: &Root,
    paths: &[&str],
    keep_out: Option<&Path>,
    what: &str,
    visitor: &mut dyn Visitor,
) -> Result<Walked> {
    let mut tops: Vec<(SnapshotPath, PathBuf)> = Vec::new();
    for path in paths {
        check_path_syntax(path).map_err(|why| anyhow!("cannot snapshot {path:?}: it {why}"))?;
        let host = root.resolve(path)?;
        let resolved = path_text(&root.inside(&host))?;
        if let Some(keep_out) = keep_out {
            check_apart(path, &host, keep_out)?;
        }
        for (other, other_host) in &tops {
            if is_at_or_below(path, &other.path)
                || is_at_or_below(&other.path, path)
                || host.starts_with(other_host)
                || other_host.starts_with(&host)
            {
                bail!(
                    "cannot snapshot both {} and {path}: one is inside the other",
                    other.path
                );
            }
        }
        tops.push((
            SnapshotPath {
                path: (*path).to_string(),
                resolved,
            },
            host,
        ));
    }

    let mut walker = Walker {
        visitor,
        entries: Vec::new(),
        progress: Progress::new(what),
    };
    for (top, host) in &tops {
        match std::fs::symlink_metadata(host) {
            Ok(meta) => walker.visit(top.path.clone(), host, &meta)?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let entry = Entry {
                    path: top.path.clone(),
                    kind: EntryKind::Absent,
                };
                walker.visitor.entry(&entry)?;
                walker.entries.push(entry);
            }
            Err(err) => {
                return Err(err).with_context(|| format!("reading {}", host.display()));
            }
        }
    }
    walker.progress.done();
    Ok(Walked {
        paths: tops.into_iter().map(|(top, _)| top).collect(),
        entries: walker.entries,
    })
}

/// Refuses a snapshotted path that holds the backup directory or lies in it.
fn check_apart(path: &str, host: &Path, keep_out: &Path) -> Result<()> {
    let keep_out = keep_out
        .canonicalize()
        .unwrap_or_else(|_| keep_out.to_path_buf());
    if keep_out.starts_with(host) || host.starts_with(&keep_out) {
        bail!(
            "cannot snapshot {path}: the backup directory {} is inside it or it is inside the backup directory",
            keep_out.display()
        );
    }
    Ok(())
}

struct Walker<'v> {
    visitor: &'v mut dyn Visitor,
    entries: Vec<Entry>,
    progress: Progress,
}

impl Walker<'_> {
    fn visit(&mut self, path: String, host: &Path, lstat: &Metadata) -> Result<()> {
        let kind = lstat.file_type();
        if kind.is_dir() {
            let entry = Entry {
                path,
                kind: EntryKind::Dir {
                    meta: meta_of(lstat),
                },
            };
            self.visitor.entry(&entry)?;
            let path = entry.path.clone();
            self.entries.push(entry);
            let mut names = Vec::new();
            for child in
                std::fs::read_dir(host).with_context(|| format!("reading {}", host.display()))?
            {
                names.push(
                    child
                        .with_context(|| format!("reading {}", host.display()))?
                        .file_name(),
                );
            }
            names.sort();
            for name in names {
                let Some(text) = name.to_str() else {
                    bail!(
                        "{path}/{} has a name that is not valid UTF-8; the snapshot records names as text: rename it, then run the upgrade again",
                        name.to_string_lossy()
                    );
                };
                let child_host = host.join(&name);
                let child_path = format!("{path}/{text}");
                match std::fs::symlink_metadata(&child_host) {
                    Ok(meta) => self.visit(child_path, &child_host, &meta)?,
                    // Gone since the directory was read: it is not part of the tree.
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => {
                        return Err(err)
                            .with_context(|| format!("reading {}", child_host.display()));
                    }
                }
            }
        } else if kind.is_symlink() {
            let target = std::fs::read_link(host)
                .with_context(|| format!("reading the link {}", host.display()))?;
            let target = target
                .to_str()
                .with_context(|| {
                    format!(
                        "the link {path} points to a name that is not valid UTF-8 ({}); the snapshot records link targets as text: replace the link, then run the upgrade again",
                        target.display()
                    )
                })?
                .to_string();
            let entry = Entry {
                path,
                kind: EntryKind::Symlink {
                    meta: meta_of(lstat),
                    target,
                },
            };
            self.visitor.entry(&entry)?;
            self.entries.push(entry);
        } else if kind.is_file() {
            self.visit_file(path, host)?;
        } else if kind.is_socket() {
            // A socket is a running program's rendezvous, not content: the
            // services are stopped, so it is stale. Not recorded (restore
            // removes it like anything else the manifest does not list).
            tracing::debug!(path = %path, "skipping a socket");
        } else {
            bail!(
                "{path} is a FIFO or a device node; the snapshot holds files, directories and symbolic links only: move it away, then run the upgrade again"
            );
        }
        Ok(())
    }

    fn visit_file(&mut self, path: String, host: &Path) -> Result<()> {
        let mut file =
            open_nofollow(host).with_context(|| format!("opening {}", host.display()))?;
        let before = file
            .metadata()
            .with_context(|| format!("reading {}", host.display()))?;
        if !before.is_file() {
            bail!(
                "{path} changed while it was archived: stop whatever writes to it and run the upgrade again"
            );
        }
        let meta = meta_of(&before);
        let size = before.len();
        let hash = self.visitor.file(&path, &meta, size, &mut file)?;
        let after = file
            .metadata()
            .with_context(|| format!("reading {}", host.display()))?;
        if after.len() != size || meta_of(&after) != meta {
            bail!(
                "{path} changed while it was archived: stop whatever writes to it and run the upgrade again"
            );
        }
        self.progress.file(size);
        let (sha256, _) = hash.finish();
        self.entries.push(Entry {
            path,
            kind: EntryKind::File { meta, size, sha256 },
        });
        Ok(())
    }
}

/// The metadata the manifest keeps, from `lstat` or `fstat`.
pub(crate) fn meta_of(stat: &Metadata) -> Meta {
    Meta {
        mode: stat.mode() & 0o7777,
        uid: stat.uid(),
        gid: stat.gid(),
        mtime_sec: stat.mtime(),
        mtime_nsec: u32::try_from(stat.mtime_nsec()).unwrap_or(0),
    }
}

/// A path inside the root as text, for the manifest.
fn path_text(path: &Path) -> Result<String> {
    path.to_str().map(str::to_string).with_context(|| {
        format!(
            "{} is not valid UTF-8; the snapshot records paths as text",
            path.display()
        )
    })
}

/// Periodic progress lines for the journal during a long walk.
pub(crate) struct Progress {
    what: String,
    started: Instant,
    last: Instant,
    files: u64,
    bytes: u64,
}

impl Progress {
    pub(crate) fn new(what: &str) -> Self {
        let now = Instant::now();
        Self {
            what: what.to_string(),
            started: now,
            last: now,
            files: 0,
            bytes: 0,
        }
    }

    pub(crate) fn file(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
        if self.last.elapsed() >= PROGRESS_EVERY {
            self.last = Instant::now();
            self.log("in progress");
        }
    }

    pub(crate) fn done(&self) {
        self.log("done");
    }

    fn log(&self, state: &str) {
        tracing::info!(
            message_id = events::PROGRESS,
            imss_files = self.files,
            imss_bytes = self.bytes,
            imss_seconds = self.started.elapsed().as_secs_f64(),
            "{}: {} files, {:.1} MiB, {state}",
            self.what,
            self.files,
            self.bytes as f64 / 1048576.0
        );
    }
}

/// Opens `path` for reading without following a link there.
pub(crate) fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NOCTTY).bits())
        .open(path)
}
