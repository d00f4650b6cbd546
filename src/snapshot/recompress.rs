//! Recompression of a plain-tar snapshot as xz, off the critical path,
//! while 9.1 already carries mail.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use xz2::read::XzDecoder;
use xz2::write::XzEncoder;

use super::archive::{self, FileWriter, IO_BUFFER, copy_hashed};
use super::manifest::{ArchiveFormat, ArchiveInfo, Manifest, Pin};
use super::verify::{check_hash, open};
use super::{create_temp_archive, remove_other_archives, temp_archive_path};
use crate::support::fsutil;

/// The xz preset [`recompress`] uses: `xz`'s own default.
pub const RECOMPRESS_PRESET: u32 = 6;

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
