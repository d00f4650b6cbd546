//! The rollback manifest, `rollback-manifest.json` in the backup
//! directory: what `imss-rollback` (and `rpm -e`) need to put 7.1 back, as
//! the register-rollback step records it when the upgrade completes: the
//! releases before and after, where the 7.1 data directory and the 9.1
//! cluster are, and the SHA-256 of the snapshot manifest, so that a
//! snapshot changed after the upgrade is refused instead of restored.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, ensure};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::flow::layout::ROLLBACK_MANIFEST_FILE;
use crate::snapshot::{Manifest, Pin};
use crate::support::fsutil::atomic_write;

/// The manifest's format; a newer one is refused rather than misread.
/// Version 2: the snapshot hash covers the paths restored to, not only the
/// entries.
pub const FORMAT_VERSION: u32 = 2;

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
    /// The snapshot's [`Pin`]: SHA-256 of its manifest's paths and entries.
    pub snapshot_manifest_sha256: Pin,
    /// The 7.1 data directory: where it belongs, and where it waits.
    pub data_dir_71: (PathBuf, PathBuf),
    /// The 9.1 cluster's data directory, removed by a rollback.
    pub data_dir_91: PathBuf,
    /// The step journal a rollback continues.
    pub step_journal: String,
}

impl RollbackManifest {
    /// Reads and checks the manifest in `state_dir`: its format, and that
    /// the snapshot in `backup_dir` is still the one the upgrade registered.
    pub fn load(state_dir: &Path, backup_dir: &Path) -> Result<Self> {
        let path = state_dir.join(ROLLBACK_MANIFEST_FILE);
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
        let now = Manifest::read(backup_dir)?.pin();
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

    /// Writes the manifest into `state_dir`, atomically, readable by root only.
    pub fn write(&self, state_dir: &Path) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        atomic_write(&state_dir.join(ROLLBACK_MANIFEST_FILE), &json, 0o600)
    }
}
