//! Disk space (seed item 3: the vendor asked for 1.5 times the database
//! size free on /var and did not support /opt or /var on a symlinked file
//! system). Here the space the upgrade will really use is computed per file
//! system, after following links to where the data really is, and compared
//! with what is free there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::database::human_bytes;
use super::{Facts, Finding, Severity};
use crate::flow::context::Context;
use crate::flow::layout::BACKUP_DIR;
use crate::flow::layout::PROGRAM_STAGING_DIR;
use crate::support::constants::{DATA_DIR, PG71_DATA_DIR, PROGRAM_DIR, VENDOR_SPACE_FACTOR};
use crate::support::filesystems::{device_of, file_system_of, tree_bytes};

/// Room for the new cluster's write-ahead log while it is loaded.
const WAL_ALLOWANCE: u64 = 256 << 20;

/// The 9.1 schema's wider ids and new columns make rows a little larger.
const SCHEMA_GROWTH: f64 = 1.1;

/// Kept free on every file system the upgrade writes to, at the least.
const MIN_MARGIN: u64 = 64 << 20;

/// Kept free on top of the need, as a share of it.
const MARGIN_SHARE: f64 = 0.10;

/// One thing the upgrade writes.
struct Need {
    what: &'static str,
    bytes: u64,
}

/// A file system the upgrade writes to.
struct FileSystem {
    mount_point: PathBuf,
    free: u64,
    needs: Vec<Need>,
}

/// Computes the need per file system and inhibits only where it exceeds
/// what is free.
pub async fn check(ctx: &Context, facts: &mut Facts, out: &mut Vec<Finding>) -> Result<()> {
    let root = &ctx.root;
    report_links(ctx, out)?;
    check_program_tree_renames(ctx, out)?;

    let program_dir = root.resolve(PROGRAM_DIR)?;
    let pg_data = root.resolve_parent(ctx.layout.data_dir_in_place()?)?;
    let backup = root.resolve_parent(BACKUP_DIR)?;
    let program_bytes = tree_bytes(&program_dir)?;
    let pg_data_bytes = tree_bytes(&pg_data)?;
    let live_bytes = facts
        .database
        .as_ref()
        .map(|db| db.live_bytes().max(0) as u64)
        // Without the database's own figure, the data directory is the bound.
        .unwrap_or(pg_data_bytes);

    let mut systems: BTreeMap<u64, FileSystem> = BTreeMap::new();
    let mut add = |path: &Path, need: Need| -> Result<()> {
        let (device, mount_point, free) = file_system_of(path)?;
        systems
            .entry(device)
            .or_insert_with(|| FileSystem {
                mount_point,
                free,
                needs: Vec::new(),
            })
            .needs
            .push(need);
        Ok(())
    };
    add(
        &backup,
        Need {
            what: "snapshot of the 7.1 program tree",
            bytes: program_bytes,
        },
    )?;
    if device_of(&pg_data)? != device_of(&backup)? {
        // Not a rename: the 7.1 data directory is copied into the backup.
        add(
            &backup,
            Need {
                what: "copy of the 7.1 database directory",
                bytes: pg_data_bytes,
            },
        )?;
    }
    add(
        &pg_data,
        Need {
            what: "9.1 database cluster",
            bytes: (live_bytes as f64 * SCHEMA_GROWTH) as u64 + WAL_ALLOWANCE,
        },
    )?;
    add(
        &program_dir,
        Need {
            what: "9.1 program tree",
            bytes: program_bytes,
        },
    )?;

    let mut lines = Vec::new();
    for system in systems.values() {
        let need: u64 = system.needs.iter().map(|n| n.bytes).sum();
        let margin = ((need as f64 * MARGIN_SHARE) as u64).max(MIN_MARGIN);
        let total = need + margin;
        let parts: Vec<String> = system
            .needs
            .iter()
            .map(|n| format!("{} {}", n.what, human_bytes(n.bytes as i64)))
            .collect();
        lines.push(format!(
            "{}: needs {} ({} + margin {}), {} free",
            system.mount_point.display(),
            human_bytes(total as i64),
            parts.join(" + "),
            human_bytes(margin as i64),
            human_bytes(system.free as i64)
        ));
        if total > system.free {
            out.push(Finding::new(
                "disk-space-insufficient",
                Severity::Inhibitor,
                format!("Not enough free space on {}", system.mount_point.display()),
                format!(
                    "the upgrade needs {} on the file system mounted at {} and {} is free:\n{}",
                    human_bytes(total as i64),
                    system.mount_point.display(),
                    human_bytes(system.free as i64),
                    parts.join("\n")
                ),
                format!(
                    "free {} on {} (or move the 7.1 data to a larger file system and link it), then run again",
                    human_bytes((total - system.free) as i64),
                    system.mount_point.display()
                ),
            ));
        }
    }
    if let Some(db) = &facts.database {
        lines.push(format!(
            "the vendor's rule asked for {VENDOR_SPACE_FACTOR} x the database size ({}) free on /var: {}",
            human_bytes(db.size_bytes),
            human_bytes((db.size_bytes as f64 * VENDOR_SPACE_FACTOR) as i64)
        ));
    }
    out.push(Finding::new(
        "disk-space",
        Severity::Info,
        "Disk space per file system",
        lines.join("\n"),
        "",
    ));
    Ok(())
}

/// The switch renames the program tree aside and the 9.1 tree into its
/// place, beside `/opt/trend/imss`. Through a link to another file system
/// no rename can do that, and the switch would fail in the downtime.
fn check_program_tree_renames(ctx: &Context, out: &mut Vec<Finding>) -> Result<()> {
    let tree = ctx.root.resolve(PROGRAM_DIR)?;
    let beside = ctx.root.resolve_parent(PROGRAM_STAGING_DIR)?;
    let Some(staging_parent) = beside.parent() else {
        return Ok(());
    };
    if !tree.exists() || device_of(&tree)? == device_of(staging_parent)? {
        return Ok(());
    }
    // Only now the mount points, which take a walk up each path.
    let (_, tree_mount, _) = file_system_of(&tree)?;
    let (_, staging_mount, _) = file_system_of(staging_parent)?;
    out.push(Finding::new(
        "program-tree-on-another-file-system",
        Severity::Inhibitor,
        format!("{PROGRAM_DIR} leads to another file system"),
        format!(
            "{PROGRAM_DIR} is a link to {} on the file system mounted at {}, and the 9.1 tree \
             is staged beside the link, on {}: the switch renames one into the other's place, \
             which cannot cross file systems",
            ctx.root.inside(&tree).display(),
            tree_mount.display(),
            staging_mount.display()
        ),
        format!(
            "link the directory above instead ({}), so that the tree and its link share a file \
             system, or move the tree back under it",
            ctx.root.inside(staging_parent).display()
        ),
    ));
    Ok(())
}

/// Links on the way to the program and data trees are followed, and said.
fn report_links(ctx: &Context, out: &mut Vec<Finding>) -> Result<()> {
    for path in [
        "/opt",
        "/opt/trend",
        PROGRAM_DIR,
        "/var",
        DATA_DIR,
        PG71_DATA_DIR,
    ] {
        let link = ctx.root.resolve_parent(path)?;
        let Ok(meta) = std::fs::symlink_metadata(&link) else {
            continue;
        };
        if !meta.file_type().is_symlink() {
            continue;
        }
        let target = ctx.root.resolve(path)?;
        let (_, mount_point, _) = file_system_of(&target)?;
        out.push(Finding::new(
            "path-is-symlink",
            Severity::Info,
            format!("{path} is a symbolic link"),
            format!(
                "{path} leads to {} on the file system mounted at {}; space is counted there, and data \
                 is copied rather than renamed where it crosses file systems",
                ctx.root.inside(&target).display(),
                mount_point.display()
            ),
            "",
        ));
    }
    Ok(())
}
