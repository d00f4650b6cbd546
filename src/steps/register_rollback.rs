//! Step 6, register rollback: a rollback manifest in the backup directory
//! records what `imss-rollback` (and `rpm -e`) need to put 7.1 back: the
//! releases before and after, where the 7.1 data directory and the 9.1
//! cluster are, and the SHA-256 of the snapshot manifest, so that a
//! snapshot changed after the upgrade is refused instead of restored.
//!
//! May touch: the backup directory (the rollback manifest).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, ensure};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::snapshot::{MOVED_DATA_DIR, SNAPSHOT_PATHS};
use crate::config_export;
use crate::constants::{
    BACKUP_DIR, CONFIG_EXPORT_FILE, PG71_DATA_DIR, SOURCE_VERSION, STEP_JOURNAL_FILE, TARGET_BUILD,
    TARGET_VERSION,
};
use crate::context::Context;
use crate::fsutil::atomic_write;
use crate::snapshot::{self, Manifest};
use crate::step_journal::{Step, StepJournal, StepRecord};

/// The rollback manifest's file name in the backup directory.
pub const ROLLBACK_MANIFEST_FILE: &str = "rollback-manifest.json";

/// The manifest's format; a newer one is refused rather than misread.
pub const FORMAT_VERSION: u32 = 1;

/// A product release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// `7.1` or `9.1`.
    pub version: String,
    /// Build number.
    pub build: u32,
}

/// What a rollback needs, written when the upgrade completes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackManifest {
    /// [`FORMAT_VERSION`].
    pub format: u32,
    /// When the upgrade completed.
    pub registered_at: DateTime<Utc>,
    /// The release rolled back to.
    pub from: Release,
    /// The release rolled back from.
    pub to: Release,
    /// The paths the snapshot holds.
    pub snapshot_paths: Vec<String>,
    /// SHA-256 of the snapshot manifest's entries.
    pub snapshot_manifest_sha256: String,
    /// The 7.1 data directory: where it belongs, and where it waits.
    pub data_dir_71: (PathBuf, PathBuf),
    /// The 9.1 cluster's data directory, removed by a rollback.
    pub data_dir_91: PathBuf,
    /// The step journal a rollback continues.
    pub step_journal: String,
}

impl RollbackManifest {
    /// Reads and checks the manifest in `backup_dir`: its format, and that
    /// the snapshot is still the one the upgrade registered.
    pub fn load(backup_dir: &Path) -> Result<Self> {
        let path = backup_dir.join(ROLLBACK_MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {}: the upgrade did not complete its registration",
                path.display()
            )
        })?;
        let manifest: Self = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a readable rollback manifest: leave the backup in place and contact support",
                path.display()
            )
        })?;
        ensure!(
            manifest.format == FORMAT_VERSION,
            "{} was written by another version of imss-upgrade (format {}): roll back with that version",
            path.display(),
            manifest.format
        );
        let now = snapshot_manifest_sha256(backup_dir)?;
        ensure!(
            now == manifest.snapshot_manifest_sha256,
            "the snapshot manifest in {} changed after the upgrade registered it (SHA-256 {now}, \
             registered {}): the backup was tampered with or damaged, so it is not restored; \
             restore 7.1 from your own backup",
            backup_dir.display(),
            manifest.snapshot_manifest_sha256
        );
        Ok(manifest)
    }
}

/// SHA-256 over the snapshot manifest's entries (the archive's own record
/// may change: recompression rewrites it, and `snapshot::verify` checks it).
fn snapshot_manifest_sha256(backup_dir: &Path) -> Result<String> {
    let manifest = Manifest::read(backup_dir)?;
    Ok(hex::encode(Sha256::digest(serde_json::to_vec(
        &manifest.entries,
    )?)))
}

/// Writes the rollback manifest, after checking the snapshot it names. The
/// 7.1 build comes from the configuration export in the backup: by now
/// `imss.ini` is 9.1's (and a recovery may run this step after a crash).
pub async fn run(ctx: &Context, journal: &mut StepJournal) -> Result<()> {
    let backup = ctx.root.resolve(BACKUP_DIR)?;
    let from = config_export::read(&backup.join(CONFIG_EXPORT_FILE))?.exported_from;
    let path = backup.join(ROLLBACK_MANIFEST_FILE);
    journal.note_undo(Step::RegisterRollback, |undo| {
        undo.created = vec![Path::new(BACKUP_DIR).join(ROLLBACK_MANIFEST_FILE)];
    })?;
    snapshot::verify(&backup)?;
    let manifest = RollbackManifest {
        format: FORMAT_VERSION,
        registered_at: Utc::now(),
        from: Release {
            version: SOURCE_VERSION.to_string(),
            build: from.build,
        },
        to: Release {
            version: TARGET_VERSION.to_string(),
            build: TARGET_BUILD,
        },
        snapshot_paths: SNAPSHOT_PATHS.iter().map(|p| p.to_string()).collect(),
        snapshot_manifest_sha256: snapshot_manifest_sha256(&backup)?,
        data_dir_71: (PathBuf::from(PG71_DATA_DIR), PathBuf::from(MOVED_DATA_DIR)),
        data_dir_91: PathBuf::from(PG71_DATA_DIR),
        step_journal: STEP_JOURNAL_FILE.to_string(),
    };
    let mut json = serde_json::to_vec_pretty(&manifest)?;
    json.push(b'\n');
    atomic_write(&path, &json, 0o600)
}

/// Removes the rollback manifest.
pub async fn undo(ctx: &Context, record: &StepRecord) -> Result<()> {
    for created in &record.undo.created {
        let path = ctx.root.resolve_parent(created)?;
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("removing {}", path.display())),
        }
    }
    Ok(())
}
