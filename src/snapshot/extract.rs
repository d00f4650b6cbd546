//! Taking one subtree out of a snapshot into a directory of its own
//! ([`extract_subtree`]): the archive is read once, every member checked
//! as the verification checks it, and the members at and below the
//! asked-for path written out as they pass.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use nix::fcntl::OFlag;

use super::manifest::{
    Entry, EntryKind, Manifest, Pin, check_path_syntax, is_at_or_below, is_below,
};
use super::verify::{Members, check_archive_with, open};
use crate::support::fsutil;

/// The suffix of the name the subtree is written under.
const EXTRACTING: &str = ".imss-extracting";

/// The suffix of the name an existing destination is moved to before the
/// new one takes its place.
const REPLACED: &str = ".imss-replaced";

/// Writes the archived entries at and below `inside` (an absolute path
/// inside the root, as the manifest names entries, e.g.
/// `/opt/trend/imss/PostgreSQL`) of the snapshot in `backup_dir` into
/// `dest`, a path on this machine: the entry `inside` becomes `dest`, and
/// what is below it lands at `dest/<path relative to inside>`. Returns the
/// number of files written.
///
/// After an upgrade the 7.1 program tree is gone; the background transfer
/// needs 7.1's bundled PostgreSQL 10 programs to start the 7.1 database
/// kept in the backup directory, and they come out of the snapshot.
///
/// The whole archive is read once (plain tar or xz, as the manifest says)
/// and every member checked against the manifest as [`super::verify()`] does; each
/// file is hashed as it is written and must have the manifest's size and
/// SHA-256. Files, directories and links get the manifest's mode and link
/// target, but the calling user as owner and the time of extraction as
/// mtime. A disagreement between archive and manifest is a
/// [`super::BackupMismatch`] naming the entry; an `inside` with no archived
/// entries is an error naming it.
///
/// Everything is written under a temporary name next to `dest`
/// (`.<name>.imss-extracting`), synced, and renamed to `dest` only once
/// the whole archive has checked out, so that a `dest` is always
/// complete. An existing `dest` is replaced: renamed aside
/// (`.<name>.imss-replaced`) just before, removed just after. A failed run
/// leaves `dest` as it was; an interrupted one may leave no `dest`; either
/// way, running again clears what it left next to it.
pub fn extract_subtree(backup_dir: &Path, pin: &Pin, inside: &str, dest: &Path) -> Result<u64> {
    let (manifest, archive) = open(backup_dir, pin)?;
    check_subtree(backup_dir, &manifest, inside)?;
    let name = dest
        .file_name()
        .with_context(|| {
            format!(
                "cannot extract {inside} into {}: it names no file",
                dest.display()
            )
        })?
        .to_string_lossy();
    let parent = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let extracting = parent.join(format!(".{name}{EXTRACTING}"));
    let replaced = parent.join(format!(".{name}{REPLACED}"));
    // What an interrupted run left.
    remove_extracted(&extracting)?;
    remove_extracted(&replaced)?;

    let mut extractor = Extractor {
        inside,
        top: extracting.clone(),
        dirs: Vec::new(),
        files: 0,
    };
    let written = check_archive_with(backup_dir, &manifest, &archive, &mut extractor)
        .and_then(|()| extractor.set_dir_modes())
        // On disk before it takes its name: a power loss must not leave
        // empty files under a name that looks complete.
        .and_then(|()| fsutil::sync_tree(&extracting));
    if let Err(err) = written {
        let _ = remove_extracted(&extracting);
        return Err(err.context(format!(
            "extracting {inside} from the snapshot in {} into {}",
            backup_dir.display(),
            dest.display()
        )));
    }

    if std::fs::symlink_metadata(dest).is_ok() {
        fsutil::rename_durably(dest, &replaced)?;
    }
    fsutil::rename_durably(&extracting, dest)?;
    remove_extracted(&replaced)?;
    tracing::info!(
        imss_files = extractor.files,
        "{inside} extracted from the snapshot in {} into {}",
        backup_dir.display(),
        dest.display()
    );
    Ok(extractor.files)
}

/// Checks that `inside` is a path the manifest can name and that it is an
/// archived entry (with, perhaps, more below it).
fn check_subtree(backup_dir: &Path, manifest: &Manifest, inside: &str) -> Result<()> {
    check_path_syntax(inside).map_err(|why| anyhow::anyhow!("cannot extract {inside}: {why}"))?;
    let first = manifest
        .archived_entries()
        .find(|entry| is_at_or_below(&entry.path, inside));
    let snapshotted = || {
        manifest
            .paths
            .iter()
            .map(|top| top.path.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match first {
        None => bail!(
            "the snapshot in {} has no archived entries at or below {inside} (it holds {})",
            backup_dir.display(),
            snapshotted()
        ),
        Some(entry) if entry.path != inside => bail!(
            "{inside} is not itself an entry of the snapshot in {}: extract one of {} or a directory below one",
            backup_dir.display(),
            snapshotted()
        ),
        Some(_) => Ok(()),
    }
}

/// Writes out the members of the subtree as they are checked.
struct Extractor<'i> {
    /// The subtree's path in the manifest.
    inside: &'i str,
    /// Where the entry `inside` goes.
    top: PathBuf,
    /// Directories written, with their recorded modes, parents first.
    dirs: Vec<(PathBuf, u32)>,
    /// Files written.
    files: u64,
}

impl Extractor<'_> {
    /// Where `entry` goes, if it is in the subtree.
    fn host(&self, entry: &Entry) -> Option<PathBuf> {
        if entry.path == self.inside {
            Some(self.top.clone())
        } else if is_below(&entry.path, self.inside) {
            Some(self.top.join(&entry.path[self.inside.len() + 1..]))
        } else {
            None
        }
    }

    /// Gives the directories their recorded modes, children before parents
    /// (a mode may forbid writing into one).
    fn set_dir_modes(&self) -> Result<()> {
        for (host, mode) in self.dirs.iter().rev() {
            set_mode(host, *mode)?;
        }
        Ok(())
    }
}

impl Members for Extractor<'_> {
    type Contents = Output;

    fn contents(&mut self, entry: &Entry) -> Result<Output> {
        let Some(host) = self.host(entry) else {
            return Ok(Output::Skip);
        };
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(OFlag::O_NOFOLLOW.bits())
            .open(&host)
            .with_context(|| format!("creating {}", host.display()))?;
        Ok(Output::File { file, host })
    }

    fn matched(&mut self, entry: &Entry, contents: Option<Output>) -> Result<()> {
        let Some(host) = self.host(entry) else {
            return Ok(());
        };
        match (&entry.kind, contents) {
            (EntryKind::Dir { meta }, _) => {
                // Owner only until its recorded mode is set at the end.
                DirBuilder::new()
                    .mode(0o700)
                    .create(&host)
                    .with_context(|| format!("creating {}", host.display()))?;
                self.dirs.push((host, meta.mode));
            }
            (EntryKind::File { meta, .. }, Some(Output::File { file, .. })) => {
                // Set after writing: a write clears setuid and setgid.
                file.set_permissions(std::fs::Permissions::from_mode(meta.mode))
                    .with_context(|| format!("setting the mode of {}", host.display()))?;
                self.files += 1;
            }
            (EntryKind::Symlink { target, .. }, _) => {
                std::os::unix::fs::symlink(target, &host)
                    .with_context(|| format!("creating the link {}", host.display()))?;
            }
            (kind, _) => unreachable!("{kind:?} in the subtree has no file open for it"),
        }
        Ok(())
    }
}

/// Where a file's contents go: a file of the subtree, or nowhere.
enum Output {
    Skip,
    File { file: File, host: PathBuf },
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Skip => Ok(buf.len()),
            Output::File { file, host } => file.write(buf).map_err(|err| {
                io::Error::new(err.kind(), format!("writing {}: {err}", host.display()))
            }),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

/// Removes what an extraction left at `path`, if anything (a link itself,
/// never what it points to), first opening up its directories to their
/// owner: their recorded modes may forbid removing what they hold.
fn remove_extracted(path: &Path) -> Result<()> {
    fn open_up(dir: &Path) -> Result<()> {
        set_mode(dir, 0o700)?;
        for child in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let child = child.with_context(|| format!("reading {}", dir.display()))?;
            if child.file_type().is_ok_and(|kind| kind.is_dir()) {
                open_up(&child.path())?;
            }
        }
        Ok(())
    }
    if std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_dir()) {
        open_up(path)?;
    }
    fsutil::remove_tree_if_present(path)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{MetadataExt, symlink};

    use super::*;
    use crate::snapshot::{self, BackupMismatch, recompress};
    use crate::support::root::Root;

    const PROGRAM: &str = "/opt/trend/imss";
    const PG: &str = "/opt/trend/imss/PostgreSQL";
    const CONF: &str = "/etc/imss.conf";
    const ABSENT: &str = "/etc/imss-absent.conf";

    /// A root with a program tree holding a PostgreSQL subtree, snapshotted
    /// into a backup directory next to it.
    struct Snapshotted {
        dir: tempfile::TempDir,
        root: Root,
        backup: PathBuf,
        pin: snapshot::Pin,
    }

    impl Snapshotted {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let root_dir = dir.path().join("root");
            let pg = root_dir.join(&PG[1..]);
            for sub in ["bin", "lib", "share/timezone", "empty"] {
                fs::create_dir_all(pg.join(sub)).unwrap();
            }
            fs::create_dir_all(root_dir.join("opt/trend/imss/bin")).unwrap();
            fs::create_dir_all(root_dir.join("opt/trend/imss/PostgreSQLx")).unwrap();
            fs::create_dir_all(root_dir.join("etc")).unwrap();
            fs::write(pg.join("bin/postgres"), postgres_bytes()).unwrap();
            fs::write(pg.join("bin/pg_ctl"), "#!/bin/sh\necho pg_ctl\n").unwrap();
            fs::write(pg.join("lib/libpq.so.5.10"), "libpq 10").unwrap();
            fs::write(pg.join("share/timezone/UTC"), "TZif").unwrap();
            fs::write(pg.join("empty-file"), "").unwrap();
            symlink("libpq.so.5.10", pg.join("lib/libpq.so.5")).unwrap();
            symlink("/opt/trend/imss/PostgreSQL/lib", pg.join("lib-abs")).unwrap();
            symlink("../nowhere", pg.join("dangling")).unwrap();
            set_mode(&pg.join("bin/postgres"), 0o755).unwrap();
            set_mode(&pg.join("bin/pg_ctl"), 0o4750).unwrap();
            set_mode(&pg.join("lib/libpq.so.5.10"), 0o640).unwrap();
            set_mode(&pg.join("share"), 0o555).unwrap();
            set_mode(&pg.join("empty"), 0o710).unwrap();
            if nix::unistd::geteuid().is_root() {
                std::os::unix::fs::lchown(pg.join("bin/postgres"), Some(4242), Some(4343)).unwrap();
            }
            // Outside the subtree, one with its name as a prefix.
            fs::write(root_dir.join("opt/trend/imss/bin/imssd"), "imssd 7.1").unwrap();
            fs::write(root_dir.join("opt/trend/imss/PostgreSQLx/other"), "x").unwrap();
            fs::write(root_dir.join("etc/imss.conf"), "[imss]\n").unwrap();
            let root = Root::new(&root_dir).unwrap();
            let backup = dir.path().join("backup");
            let pin = snapshot::create(&root, &backup, &[PROGRAM, CONF, ABSENT])
                .unwrap()
                .pin();
            Self {
                dir,
                root,
                backup,
                pin,
            }
        }

        fn pg_host(&self) -> PathBuf {
            self.root.resolve(PG).unwrap()
        }

        fn out(&self) -> PathBuf {
            self.dir.path().join("out")
        }

        fn dest(&self) -> PathBuf {
            self.out().join("pg10")
        }

        fn archive(&self) -> PathBuf {
            self.backup
                .join(Manifest::read(&self.backup).unwrap().archive.file)
        }
    }

    impl Drop for Snapshotted {
        /// The read-only directories would keep a user other than root
        /// from removing the temporary directory.
        fn drop(&mut self) {
            let _ = remove_extracted(self.dir.path());
        }
    }

    /// Bytes no other file of the tree holds, long enough to find.
    fn postgres_bytes() -> Vec<u8> {
        let mut bytes = b"\x7fELF postgres 10.23 ".to_vec();
        bytes.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        bytes
    }

    /// Every entry below `dir` (itself as ""), with its type, mode and
    /// contents or link target, in name order.
    fn listing(dir: &Path) -> Vec<(String, u32, Vec<u8>)> {
        fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, u32, Vec<u8>)>) {
            let meta = fs::symlink_metadata(dir).unwrap();
            let mode = meta.mode();
            let contents = if meta.file_type().is_symlink() {
                fs::read_link(dir)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if meta.is_file() {
                fs::read(dir).unwrap()
            } else {
                Vec::new()
            };
            out.push((rel.to_string(), mode, contents));
            if meta.is_dir() {
                let mut names: Vec<_> = fs::read_dir(dir)
                    .unwrap()
                    .map(|child| child.unwrap().file_name().into_string().unwrap())
                    .collect();
                names.sort();
                for name in names {
                    walk(&dir.join(&name), &format!("{rel}/{name}"), out);
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, "", &mut out);
        out
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|child| child.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn mismatch_text(err: &anyhow::Error) -> String {
        assert!(
            err.downcast_ref::<BackupMismatch>().is_some(),
            "expected a BackupMismatch, got: {err:#}"
        );
        format!("{err:#}")
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    #[test]
    fn a_subtree_comes_out_with_its_bytes_modes_and_links_and_nothing_else() {
        let snap = Snapshotted::new();
        let dest = snap.dest();
        let files = snapshot::extract_subtree(&snap.backup, &snap.pin, PG, &dest).unwrap();
        assert_eq!(files, 5);
        let extracted = listing(&dest);
        assert_eq!(extracted, listing(&snap.pg_host()));
        assert!(
            extracted
                .iter()
                .any(|(path, mode, _)| path == "/bin/pg_ctl" && mode & 0o7777 == 0o4750)
        );
        assert_eq!(
            fs::read_link(dest.join("lib-abs")).unwrap(),
            Path::new("/opt/trend/imss/PostgreSQL/lib")
        );
        // The calling user owns what it wrote, whoever owned the original.
        let uid = nix::unistd::geteuid().as_raw();
        assert_eq!(fs::metadata(dest.join("bin/postgres")).unwrap().uid(), uid);
        // No temporary name left beside it.
        assert_eq!(names_in(&snap.out()), ["pg10"]);

        // Again over an existing destination: replaced, strays and all.
        set_mode(&dest.join("share"), 0o700).unwrap();
        fs::write(dest.join("share/stray"), "left from before").unwrap();
        set_mode(&dest.join("share"), 0o555).unwrap();
        fs::remove_file(dest.join("bin/postgres")).unwrap();
        assert_eq!(
            snapshot::extract_subtree(&snap.backup, &snap.pin, PG, &dest).unwrap(),
            5
        );
        assert_eq!(listing(&dest), listing(&snap.pg_host()));
        assert_eq!(names_in(&snap.out()), ["pg10"]);

        // A single file comes out as the destination itself.
        let one = snap.out().join("libpq");
        let path = format!("{PG}/lib/libpq.so.5.10");
        assert_eq!(
            snapshot::extract_subtree(&snap.backup, &snap.pin, &path, &one).unwrap(),
            1
        );
        assert_eq!(fs::read(&one).unwrap(), b"libpq 10");
        assert_eq!(fs::metadata(&one).unwrap().mode() & 0o7777, 0o640);
    }

    #[test]
    fn a_tampered_member_or_manifest_fails_naming_the_entry_and_leaves_no_destination() {
        let snap = Snapshotted::new();
        let dest = snap.dest();
        let archive = snap.archive();
        let original = fs::read(&archive).unwrap();
        let contents = postgres_bytes();
        let at = find(&original, &contents[1000..1064]).expect("postgres is in the archive");
        let mut bytes = original.clone();
        bytes[at + 10] ^= 0x01;
        fs::write(&archive, &bytes).unwrap();
        let err = snapshot::extract_subtree(&snap.backup, &snap.pin, PG, &dest).unwrap_err();
        let text = mismatch_text(&err);
        assert!(
            text.contains("/opt/trend/imss/PostgreSQL/bin/postgres"),
            "{text}"
        );
        assert!(!dest.exists());
        assert!(
            names_in(&snap.out()).is_empty(),
            "{:?}",
            names_in(&snap.out())
        );

        // A member outside the subtree fails it too: the whole snapshot is checked.
        let imssd = find(&original, b"imssd 7.1").unwrap();
        let mut bytes = original.clone();
        bytes[imssd] ^= 0x01;
        fs::write(&archive, &bytes).unwrap();
        let text = mismatch_text(
            &snapshot::extract_subtree(&snap.backup, &snap.pin, PG, &dest).unwrap_err(),
        );
        assert!(text.contains("/opt/trend/imss/bin/imssd"), "{text}");
        assert!(!dest.exists());

        // A hash changed in the manifest.
        fs::write(&archive, &original).unwrap();
        let mut manifest = Manifest::read(&snap.backup).unwrap();
        let path = format!("{PG}/lib/libpq.so.5.10");
        let entry = manifest
            .entries
            .iter_mut()
            .find(|e| e.path == path)
            .unwrap();
        let EntryKind::File { sha256, .. } = &mut entry.kind else {
            panic!("{path} is a file")
        };
        *sha256 = "0".repeat(64);
        manifest.write(&snap.backup).unwrap();
        // As if root's record had been changed too: the entries and the
        // archive still disagree.
        let text = mismatch_text(
            &snapshot::extract_subtree(&snap.backup, &manifest.pin(), PG, &dest).unwrap_err(),
        );
        assert!(text.contains(&path), "{text}");
        assert!(text.contains(&"0".repeat(64)), "{text}");
        assert!(!dest.exists());
        assert!(
            names_in(&snap.out()).is_empty(),
            "{:?}",
            names_in(&snap.out())
        );
    }

    #[test]
    fn a_path_with_no_archived_entries_fails_naming_it() {
        let snap = Snapshotted::new();
        let dest = snap.dest();
        for inside in [
            "/opt/trend/imss/pgsql",
            "/opt/trend/imss/PostgreSQ",
            ABSENT,
            "/usr/bin",
            "/opt/trend",
        ] {
            let err =
                snapshot::extract_subtree(&snap.backup, &snap.pin, inside, &dest).unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains(inside), "{text}");
            assert!(!dest.exists() && !snap.out().exists(), "{inside}");
        }
        let err = snapshot::extract_subtree(&snap.backup, &snap.pin, "opt/trend/imss", &dest)
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("not an absolute path"),
            "{err:#}"
        );
    }

    #[test]
    fn an_xz_snapshot_extracts_the_same() {
        let snap = Snapshotted::new();
        let manifest = recompress(&snap.backup, &snap.pin).unwrap();
        assert_eq!(manifest.archive.format, snapshot::ArchiveFormat::TarXz);
        let dest = snap.dest();
        assert_eq!(
            snapshot::extract_subtree(&snap.backup, &snap.pin, PG, &dest).unwrap(),
            5
        );
        assert_eq!(listing(&dest), listing(&snap.pg_host()));
        assert_eq!(names_in(&snap.out()), ["pg10"]);
    }
}
