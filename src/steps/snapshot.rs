//! Step 3, snapshot: the 7.1 program tree and the system files the upgrade
//! changes go into the backup directory as an archive with a manifest, and
//! the 7.1 database directory moves there (a rename on the same file
//! system, a verified copy across file systems). Neither is modified
//! afterwards: rolling the database back is a move, whatever its size.
//!
//! May touch: the backup directory; the 7.1 data directory (moved).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::cmd::Cmd;
use crate::constants::{BACKUP_DIR, PG71_DATA_DIR, PROGRAM_DIR};
use crate::context::Context;
use crate::root::Root;
use crate::snapshot;
use crate::step_journal::{Step, StepJournal, StepRecord};

/// What the archive holds: every path the switch replaces.
pub const SNAPSHOT_PATHS: &[&str] = &[PROGRAM_DIR];

/// Where the 7.1 data directory goes inside the backup directory.
pub const MOVED_DATA_DIR: &str = "/var/imss/imss_backup_71_to_91/pgdata-71";

/// Archives the program tree, then moves the stopped 7.1 data directory.
pub async fn run(ctx: &Context, journal: &mut StepJournal) -> Result<()> {
    let backup = ctx.root.resolve(BACKUP_DIR)?;
    snapshot::create(&ctx.root, &backup, SNAPSHOT_PATHS)?;
    crate::fail_point!("snapshot-archived");
    journal.note_undo(Step::Snapshot, |undo| {
        undo.moved
            .push((PathBuf::from(PG71_DATA_DIR), PathBuf::from(MOVED_DATA_DIR)));
    })?;
    move_tree(
        &ctx.root,
        Path::new(PG71_DATA_DIR),
        Path::new(MOVED_DATA_DIR),
    )
}

/// Moves the data directory back where it was.
pub async fn undo(ctx: &Context, record: &StepRecord) -> Result<()> {
    for (from, to) in record.undo.moved.iter().rev() {
        move_back(&ctx.root, from, to)?;
    }
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
    match std::fs::rename(&source, &target) {
        Ok(()) => return Ok(()),
        Err(err) if err.raw_os_error() == Some(nix::libc::EXDEV) => {}
        Err(err) => {
            return Err(err)
                .with_context(|| format!("moving {} to {}", source.display(), target.display()));
        }
    }
    copy_verified(root, from, to)?;
    let removing = sibling(&source, ".removing");
    std::fs::rename(&source, &removing)
        .with_context(|| format!("setting {} aside", source.display()))?;
    std::fs::remove_dir_all(&removing).with_context(|| format!("removing {}", removing.display()))
}

/// Undoes [`move_tree`] from whatever stage it reached.
pub fn move_back(root: &Root, from: &Path, to: &Path) -> Result<()> {
    let source = root.resolve_parent(from)?;
    let target = root.resolve_parent(to)?;
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
    match std::fs::rename(&target, &source) {
        Ok(()) => return Ok(()),
        Err(err) if err.raw_os_error() == Some(nix::libc::EXDEV) => {}
        Err(err) => {
            return Err(err).with_context(|| {
                format!("moving {} back to {}", target.display(), source.display())
            });
        }
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
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
    }
    Cmd::new("cp")
        .arg("-a")
        .arg("--")
        .arg(&source)
        .arg(&partial)
        .run()
        .with_context(|| format!("copying {} to {}", source.display(), partial.display()))?;
    let partial_inside = root.inside(&partial);
    let relative = |entries: Vec<snapshot::Entry>, prefix: &str| -> Vec<snapshot::Entry> {
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
        snapshot::scan(root, &[&from.to_string_lossy()])?,
        &from.to_string_lossy(),
    );
    let copied = relative(
        snapshot::scan(root, &[&partial_inside.to_string_lossy()])?,
        &partial_inside.to_string_lossy(),
    );
    if original != copied {
        bail!(
            "the copy of {} in {} differs from the original: check the disk it is on, then run again",
            source.display(),
            partial.display()
        );
    }
    std::fs::rename(&partial, &target)
        .with_context(|| format!("renaming {} to {}", partial.display(), target.display()))
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
