//! What the file systems say: where a path's file system is mounted, how
//! much is free there, and how much a tree takes. Preflight sizes the
//! upgrade with these, and a rollback checks its room before it begins.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Bytes a tree uses on disk (allocated blocks), links not followed.
pub fn tree_bytes(path: &Path) -> Result<u64> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in
            std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?
        {
            total += tree_bytes(&entry?.path())?;
        }
    }
    Ok(total)
}

/// The nearest existing ancestor of `path` (the path itself if it exists).
pub fn existing_ancestor(path: &Path) -> &Path {
    path.ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
}

/// The device of the file system `path` is (or would be) on.
pub fn device_of(path: &Path) -> Result<u64> {
    let existing = existing_ancestor(path);
    Ok(std::fs::metadata(existing)
        .with_context(|| format!("reading {}", existing.display()))?
        .dev())
}

/// The device, mount point and free bytes of the file system `path` is (or
/// would be) on.
pub fn file_system_of(path: &Path) -> Result<(u64, PathBuf, u64)> {
    let existing = existing_ancestor(path);
    let device = device_of(existing)?;
    let mut mount_point = existing.to_path_buf();
    while let Some(parent) = mount_point.parent() {
        if device_of(parent)? != device {
            break;
        }
        mount_point = parent.to_path_buf();
    }
    let stats = nix::sys::statvfs::statvfs(existing)
        .with_context(|| format!("reading the free space of {}", existing.display()))?;
    let free = stats.blocks_available() * stats.fragment_size();
    Ok((device, mount_point, free))
}
