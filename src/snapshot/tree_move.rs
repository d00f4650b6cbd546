//! Moving and copying whole trees: the 7.1 data directory into the backup
//! and back (a rename on one file system, a verified copy across file
//! systems), and the one copy of a tree with owners, modes, times and links
//! (`cp -a`), which the switch also uses to stage the 9.1 program tree.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use super::{Entry, scan};
use crate::support::cmd::Cmd;
use crate::support::fsutil;
use crate::support::no_follow;
use crate::support::root::Root;

/// Copies the tree at `source` to `target` (paths on this machine; `target`
/// must not exist), keeping owners, modes, times and links, sharing blocks
/// where the file system can (`cp -a --reflink=auto`).
pub fn copy_tree(source: &Path, target: &Path) -> Result<()> {
    Cmd::new("cp")
        .args(["-a", "--reflink=auto", "--"])
        .arg(source)
        .arg(target)
        .run()
        .with_context(|| {
            format!(
                "copying {} to {}: check the free space on {}",
                source.display(),
                target.display(),
                target.parent().unwrap_or(target).display()
            )
        })?;
    Ok(())
}

/// `name` with a suffix, in the same directory.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Moves `from` to `to` (paths inside the root). A rename where both are on
/// one file system; otherwise copied to `to.partial`, checked entry by
/// entry, renamed to `to`, and only then is the original renamed aside to
/// `from.removing` and deleted. Each stage leaves the disk in a state
/// [`move_back`] can tell apart.
pub fn move_tree(root: &Root, from: &Path, to: &Path) -> Result<()> {
    let source = root.resolve(from)?;
    let target = root.resolve_parent(to)?;
    if !source.exists() && target.exists() {
        return Ok(()); // Done before an interruption.
    }
    if rename_on_one_file_system(&source, &target)? {
        return Ok(());
    }
    copy_verified(root, from, to)?;
    let removing = sibling(&source, ".removing");
    fsutil::rename_durably(&source, &removing)?;
    std::fs::remove_dir_all(&removing).with_context(|| format!("removing {}", removing.display()))
}

/// Undoes [`move_tree`] from whatever stage it reached.
pub fn move_back(root: &Root, from: &Path, to: &Path) -> Result<()> {
    let source = root.resolve_parent(from)?;
    let target = root.resolve_parent(to)?;
    // A link another account planted where the original goes is no data
    // directory: it goes, and the original comes back in its place.
    no_follow::remove_planted_link(&source)?;
    let partial = sibling(&target, ".partial");
    let removing = sibling(&source, ".removing");
    if source.exists() {
        // The original was never touched, or is back already: drop a
        // half-made copy, keep a whole one (the backup is never deleted by undo).
        if partial.exists() {
            std::fs::remove_dir_all(&partial)
                .with_context(|| format!("removing {}", partial.display()))?;
        }
        if target.exists() && same_file_system(&source, &target)? {
            bail!(
                "both {} and {} exist: the 7.1 data directory is in two places; \
                 keep the one PostgreSQL 10 last ran from and move the other away, then run the rollback again",
                source.display(),
                target.display()
            );
        }
        return Ok(());
    }
    if !target.exists() {
        bail!(
            "the 7.1 data directory is neither at {} nor at {}: restore it from your own backup",
            source.display(),
            target.display()
        );
    }
    if rename_on_one_file_system(&target, &source)? {
        return Ok(());
    }
    // Across file systems the copy in the backup stays; the original place
    // gets a verified copy of it, and a half-deleted original goes.
    if removing.exists() {
        std::fs::remove_dir_all(&removing)
            .with_context(|| format!("removing {}", removing.display()))?;
    }
    copy_verified(root, to, from)
}

/// Copies `from` to `to` (inside the root) through `to.partial`, with owners,
/// modes, times and links kept, and compares every entry before the rename.
fn copy_verified(root: &Root, from: &Path, to: &Path) -> Result<()> {
    let source = root.resolve(from)?;
    let target = root.resolve_parent(to)?;
    let partial = sibling(&target, ".partial");
    fsutil::remove_tree_if_present(&partial)?;
    copy_tree(&source, &partial)?;
    crate::fail_point!("tree-move-copied");
    let partial_inside = root.inside(&partial);
    let relative = |entries: Vec<Entry>, prefix: &str| -> Vec<Entry> {
        entries
            .into_iter()
            .map(|mut entry| {
                entry.path = entry
                    .path
                    .strip_prefix(prefix)
                    .unwrap_or(&entry.path)
                    .to_string();
                entry
            })
            .collect()
    };
    let original = relative(
        scan(root, &[&from.to_string_lossy()])?,
        &from.to_string_lossy(),
    );
    let copied = relative(
        scan(root, &[&partial_inside.to_string_lossy()])?,
        &partial_inside.to_string_lossy(),
    );
    if original != copied {
        bail!(
            "the copy of {} in {} differs from the original: check the disk it is on, then run again",
            source.display(),
            partial.display()
        );
    }
    // On disk before it takes its name, since the original goes next: a
    // power loss must not leave empty files in the only copy.
    fsutil::sync_tree(&partial)?;
    fsutil::rename_durably(&partial, &target)
}

/// Renames `from` to `to` durably and returns true, or returns false when
/// they are on different file systems (and a copy must do).
fn rename_on_one_file_system(from: &Path, to: &Path) -> Result<bool> {
    match fsutil::rename_durably(from, to) {
        Ok(()) => Ok(true),
        Err(err)
            if err
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::raw_os_error)
                == Some(nix::libc::EXDEV) =>
        {
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

fn same_file_system(a: &Path, b: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| -> Result<u64> {
        Ok(std::fs::metadata(p)
            .with_context(|| format!("reading {}", p.display()))?
            .dev())
    };
    Ok(dev(a)? == dev(b.parent().unwrap_or(b))?)
}
