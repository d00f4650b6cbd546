//! The snapshot engine on real trees under a temporary root: a 7.1-like
//! program tree (made by the fixture) with links, odd modes, a file of
//! another owner, long names and a system file. Each test changes the tree
//! the way an upgrade (or a crash during one) would, restores, and
//! compares the whole tree entry by entry (type, mode, owner, mtime to the
//! nanosecond, size, SHA-256, link target) with the tree as it was built.
//! The trees are seen by the oracle (`find` and `sha256sum`), never by the
//! snapshot engine's own walk, and the manifest is checked against it.
//!
//! These tests run as root: the tree holds files of other owners, as an
//! IMSS tree does, and restore sets owners.

use std::fs::{self, File, FileTimes};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use imss_fixture::harness::oracle;
use imss_fixture::model::tree::write_program_tree;
use imss_upgrade::snapshot::{
    self, ArchiveFormat, BackupMismatch, Compression, Entry, EntryKind, MANIFEST_FILE, Manifest,
    Pin,
};
use imss_upgrade::support::root::Root;

const PROGRAM: &str = "/opt/trend/imss";
const SYSTEM_FILE: &str = "/etc/imss-upgrade.conf";
const ABSENT: &str = "/etc/systemd/system/imss91-euq.service";
const PATHS: [&str; 3] = [PROGRAM, SYSTEM_FILE, ABSENT];

/// Another owner, as the 7.1 tree's service account files are.
const OTHER_UID: u32 = 4242;
const OTHER_GID: u32 = 4343;

/// A root with a 7.1-like tree, and a backup directory outside the tree.
struct Server {
    _dir: tempfile::TempDir,
    root: Root,
    backup: PathBuf,
    /// A directory outside the root that a hostile link points to.
    outside: PathBuf,
    /// The pin of the last snapshot taken, as the upgrade records it where
    /// only root can write.
    pin: std::cell::RefCell<Option<Pin>>,
    /// The snapshotted paths as built, as the oracle sees them.
    built: String,
}

impl Server {
    fn new() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the snapshot tests run as root: the tree holds files of other owners and restore sets owners (run them as root, as `make test` in CI does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let root_dir = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir_all(root_dir.join("etc/systemd/system")).unwrap();
        fs::create_dir_all(root_dir.join("var/imss")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("keep"), "outside the root").unwrap();
        let root = Root::new(&root_dir).unwrap();
        let backup = root.resolve("/var/imss/imss_backup_71_to_91").unwrap();
        let server = Server {
            _dir: dir,
            root,
            backup,
            outside,
            pin: Default::default(),
            built: String::new(),
        };
        server.build_tree();
        Server {
            built: server.state(),
            ..server
        }
    }

    fn host(&self, path: &str) -> PathBuf {
        self.root.resolve_parent(path).unwrap()
    }

    fn build_tree(&self) {
        let program = self.host(PROGRAM);
        write_program_tree(&program, 3, 71).unwrap();
        // Links: relative, absolute (inside the root), dangling, and one
        // whose target is longer than a tar header holds.
        symlink("libimsscore.so.7.1.0", program.join("lib/libimsscore.so")).unwrap();
        symlink("/opt/trend/imss/bin", program.join("bin-link")).unwrap();
        symlink("../nowhere/at/all", program.join("lib/dangling")).unwrap();
        let long_target = format!("../{}/target", "a-very-long-directory-name".repeat(6));
        symlink(&long_target, program.join("config/long-link")).unwrap();
        // A name longer than a tar header holds.
        let deep = program.join(format!("UI/{}", "nested-console-directory/".repeat(5)));
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("a-page-with-a-rather-long-name.jsp"), "<html/>\n").unwrap();
        // Odd modes: setuid, no permissions at all, sticky and read-only dirs.
        set_mode(&program.join("bin/imssps"), 0o4755);
        fs::write(program.join("config/secret.key"), "k3y").unwrap();
        set_mode(&program.join("config/secret.key"), 0o000);
        fs::create_dir(program.join("temp")).unwrap();
        set_mode(&program.join("temp"), 0o1777);
        fs::create_dir(program.join("readonly")).unwrap();
        fs::write(program.join("readonly/fixed.dat"), "fixed").unwrap();
        set_mode(&program.join("readonly"), 0o555);
        fs::create_dir(program.join("empty")).unwrap();
        fs::write(program.join("empty-file"), "").unwrap();
        // Another owner, as the service account's files.
        fs::create_dir(program.join("queue")).unwrap();
        fs::write(program.join("queue/state.db"), "queue state").unwrap();
        for path in [program.join("queue"), program.join("queue/state.db")] {
            std::os::unix::fs::lchown(&path, Some(OTHER_UID), Some(OTHER_GID)).unwrap();
        }
        std::os::unix::fs::lchown(program.join("bin-link"), Some(OTHER_UID), Some(0)).unwrap();
        // A hard link: two names, two entries.
        fs::hard_link(
            program.join("bin/imssd"),
            program.join("bin/imssd.hardlink"),
        )
        .unwrap();
        // Old, exact mtimes, as an installed tree has.
        set_mtime(&program.join("bin/imssd"), 1_500_000_000, 123_456_789);
        set_mtime(&program.join("lib"), 1_400_000_000, 987_654_321);
        fs::write(self.host(SYSTEM_FILE), "[imss]\nversion = 7.1\n").unwrap();
        set_mode(&self.host(SYSTEM_FILE), 0o640);
    }

    fn create(&self) -> Manifest {
        let manifest = snapshot::create(&self.root, &self.backup, &PATHS).unwrap();
        self.pin.replace(Some(manifest.pin()));
        manifest
    }

    fn pin(&self) -> Pin {
        self.pin.borrow().clone().expect("a snapshot was taken")
    }

    /// The pin of the manifest now on disk, as if whoever changed it had
    /// changed root's record too: for reaching the checks behind the pin.
    fn pin_on_disk(&self) -> Pin {
        Manifest::read(&self.backup)
            .map(|manifest| manifest.pin())
            .unwrap_or_else(|_| serde_json::from_str("\"unreadable\"").unwrap())
    }

    /// The snapshotted paths as the oracle sees them (`find` and
    /// `sha256sum`), one line per entry, paths as inside the root.
    fn state(&self) -> String {
        self.state_of(&PATHS)
    }

    fn state_of(&self, paths: &[&str]) -> String {
        let root_dir = self.root.dir().to_string_lossy().into_owned();
        let mut lines = Vec::new();
        for path in paths {
            let entries = oracle::tree_entries(&self.host(path)).unwrap();
            if entries.is_empty() {
                lines.push(format!("{path}\tabsent"));
            }
            for mut entry in entries {
                entry.path = entry.path[root_dir.len()..].to_string();
                lines.push(entry.to_string());
            }
        }
        lines.sort();
        lines.join("\n")
    }

    /// The manifest on disk, read as plain JSON and written as the oracle
    /// writes its lines.
    fn manifest_state(&self) -> String {
        let text = fs::read_to_string(self.backup.join(MANIFEST_FILE)).unwrap();
        let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut lines: Vec<String> = manifest["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                let field = |name: &str| entry[name].to_string().trim_matches('"').to_string();
                let kind = match entry["type"].as_str().unwrap() {
                    "absent" => return format!("{}\tabsent", field("path")),
                    "file" => 'f',
                    "dir" => 'd',
                    "symlink" => 'l',
                    other => panic!("a manifest entry of type {other}: {entry}"),
                };
                let mut line = format!(
                    "{}\t{kind}\t{:04o}\t{}:{}\t{}.{:09}",
                    field("path"),
                    u32::from_str_radix(&field("mode"), 8).unwrap(),
                    field("uid"),
                    field("gid"),
                    field("mtime_sec"),
                    entry["mtime_nsec"].as_u64().unwrap(),
                );
                match kind {
                    'f' => line += &format!("\tsize {}\tsha256 {}", field("size"), field("sha256")),
                    'l' => line += &format!("\t-> {}", field("target")),
                    _ => {}
                }
                line
            })
            .collect();
        lines.sort();
        lines.join("\n")
    }

    fn restore(&self) -> snapshot::RestoreReport {
        snapshot::restore(&self.root, &self.backup, &self.pin()).unwrap()
    }

    /// What the 9.1 install might do to the tree, and worse.
    fn change_like_an_upgrade(&self) {
        let program = self.host(PROGRAM);
        // Modified in place, same size.
        let imssd = program.join("bin/imssd");
        let mut bytes = fs::read(&imssd).unwrap();
        bytes[100] ^= 0xff;
        fs::write(&imssd, bytes).unwrap();
        // Mode, owner and mtime changed only.
        set_mode(&program.join("bin/imssps"), 0o755);
        std::os::unix::fs::lchown(program.join("queue/state.db"), Some(0), Some(0)).unwrap();
        set_mtime(&program.join("script/imssctl.sh"), 1_000, 0);
        // Deleted.
        fs::remove_file(program.join("lib/libtmase.so.7.5")).unwrap();
        fs::remove_dir_all(program.join("UI/euqUI")).unwrap();
        fs::remove_file(self.host(SYSTEM_FILE)).unwrap();
        // Added: files in existing directories, a new directory.
        fs::write(program.join("bin/imssd91"), "9.1 daemon").unwrap();
        fs::create_dir_all(program.join("lib91/plugins")).unwrap();
        fs::write(program.join("lib91/plugins/x.so"), "plugin").unwrap();
        fs::write(self.host(ABSENT), "[Unit]\nDescription=9.1 EUQ\n").unwrap();
        // A directory replaced by a file, a file by a directory.
        fs::remove_dir_all(program.join("script")).unwrap();
        fs::write(program.join("script"), "now a file").unwrap();
        fs::remove_file(program.join("config/foxdns.ini")).unwrap();
        fs::create_dir_all(program.join("config/foxdns.ini/d")).unwrap();
        // Directories replaced by links that lead out of the tree: restore
        // must not write through them.
        fs::remove_dir_all(program.join("UI/adminUI")).unwrap();
        symlink("/etc", program.join("UI/adminUI")).unwrap();
        fs::remove_dir_all(program.join("readonly")).unwrap();
        symlink(&self.outside, program.join("readonly")).unwrap();
        // A link retargeted, a file replaced by a link.
        fs::remove_file(program.join("lib/libimsscore.so")).unwrap();
        symlink(
            "/usr/lib64/libimsscore.so.9",
            program.join("lib/libimsscore.so"),
        )
        .unwrap();
        fs::remove_file(program.join("empty-file")).unwrap();
        symlink("/etc/passwd", program.join("empty-file")).unwrap();
        // A stale socket.
        let _listener =
            std::os::unix::net::UnixListener::bind(program.join("temp/imss.sock")).unwrap();
    }

    fn archive_path(&self, manifest: &Manifest) -> PathBuf {
        self.backup.join(&manifest.archive.file)
    }
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mtime(path: &Path, secs: u64, nanos: u32) {
    let time = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
    File::open(path)
        .unwrap()
        .set_times(FileTimes::new().set_modified(time))
        .unwrap();
}

/// Compares two states of the tree and names the differences, instead of
/// printing thousands of lines.
fn assert_same_state(found: &str, expected: &str) {
    assert!(
        found == expected,
        "the tree differs:\n{}",
        oracle::state_difference(expected, found, 10)
    );
}

fn mismatch_text(err: &anyhow::Error) -> String {
    assert!(
        err.downcast_ref::<BackupMismatch>().is_some(),
        "expected a BackupMismatch, got: {err:#}"
    );
    format!("{err:#}")
}

fn entry<'m>(manifest: &'m Manifest, path: &str) -> &'m Entry {
    manifest
        .entries
        .iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("no entry {path}"))
}

#[test]
fn the_manifest_lists_every_entry_with_its_metadata_as_find_and_sha256sum_see_it() {
    let server = Server::new();
    let manifest = server.create();
    // What the manifest on disk lists is what find and sha256sum see.
    assert_same_state(&server.manifest_state(), &server.state());
    assert_same_state(&server.state(), &server.built);

    assert_eq!(manifest.archive.format, ArchiveFormat::Tar);
    assert_eq!(manifest.archive.file, "snapshot.tar");
    let archive_len = fs::metadata(server.archive_path(&manifest)).unwrap().len();
    assert_eq!(manifest.archive.size, archive_len);
    assert_eq!(manifest.paths.len(), 3);

    let backup_mode = fs::metadata(&server.backup).unwrap().permissions().mode();
    assert_eq!(backup_mode & 0o7777, 0o700);
    let manifest_mode = fs::metadata(server.backup.join(MANIFEST_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(manifest_mode & 0o777, 0o600);

    let imssd = entry(&manifest, "/opt/trend/imss/bin/imssd");
    let EntryKind::File { meta, size, sha256 } = &imssd.kind else {
        panic!("{imssd:?}");
    };
    assert_eq!(
        (meta.mtime_sec, meta.mtime_nsec),
        (1_500_000_000, 123_456_789)
    );
    assert_eq!(*size, 2400 * 1024);
    let contents = fs::read(server.host("/opt/trend/imss/bin/imssd")).unwrap();
    assert_eq!(sha256, &sha256_hex(&contents));
    let EntryKind::File { meta, .. } = entry(&manifest, "/opt/trend/imss/bin/imssps").kind else {
        panic!()
    };
    assert_eq!(meta.mode, 0o4755);
    let EntryKind::Dir { meta } = entry(&manifest, "/opt/trend/imss/queue").kind else {
        panic!()
    };
    assert_eq!((meta.uid, meta.gid), (OTHER_UID, OTHER_GID));
    let EntryKind::Symlink { target, .. } = &entry(&manifest, "/opt/trend/imss/lib/dangling").kind
    else {
        panic!()
    };
    assert_eq!(target, "../nowhere/at/all");
    assert_eq!(entry(&manifest, ABSENT).kind, EntryKind::Absent);

    // The manifest on disk is the one returned, one entry a line.
    let text = fs::read_to_string(server.backup.join(MANIFEST_FILE)).unwrap();
    assert!(text.contains(
        "\n    {\"path\":\"/etc/systemd/system/imss91-euq.service\",\"type\":\"absent\"}"
    ));
    assert_eq!(
        snapshot::verify(&server.backup, &server.pin()).unwrap(),
        manifest
    );
}

#[test]
fn restore_after_an_upgrade_like_change_gives_back_the_tree_exactly() {
    let server = Server::new();
    server.create();
    server.change_like_an_upgrade();
    assert_ne!(server.state(), server.built);

    let report = server.restore();
    assert_same_state(&server.state(), &server.built);
    assert!(report.removed >= 6, "{report:?}");
    assert!(report.files > 20, "{report:?}");

    // Nothing was written through the links the changed tree held.
    let mut etc: Vec<_> = fs::read_dir(server.host("/etc"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    etc.sort();
    assert_eq!(etc, ["imss-upgrade.conf", "systemd"]);
    let outside: Vec<_> = fs::read_dir(&server.outside).unwrap().collect();
    assert_eq!(outside.len(), 1, "{outside:?}");
    assert!(!server.host("/opt/trend/imss/temp/imss.sock").exists());
    assert!(!server.host(ABSENT).exists());
}

#[test]
fn restore_replaces_a_different_tree_and_a_top_directory_turned_link() {
    let server = Server::new();
    server.create();
    // The 9.1 tree: other files, other sizes, other contents, moved aside
    // and linked, as a package that installs into a versioned directory.
    let program = server.host(PROGRAM);
    fs::remove_dir_all(&program).unwrap();
    let elsewhere = server.host("/opt/trend/imss-9.1");
    write_program_tree(&elsewhere, 5, 91).unwrap();
    symlink("/opt/trend/imss-9.1", &program).unwrap();

    server.restore();
    assert!(fs::symlink_metadata(&program).unwrap().is_dir());
    assert_same_state(&server.state(), &server.built);
    // The 9.1 tree it pointed to is not part of the snapshot: left alone.
    assert!(elsewhere.join("bin/imssd").exists());
}

#[test]
fn restore_is_idempotent_and_finishes_an_interrupted_restore() {
    let server = Server::new();
    let manifest = server.create();
    server.change_like_an_upgrade();
    server.restore();
    let second = server.restore();
    assert_eq!(second.removed, 0, "{second:?}");
    assert_eq!(second.dirs_created, 0, "{second:?}");
    assert_same_state(&server.state(), &server.built);

    // An interrupted restore: half of the files gone, some left under the
    // temporary name, a directory not yet made.
    let mut files: Vec<PathBuf> = manifest
        .entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::File { .. }))
        .map(|e| server.host(&e.path))
        .collect();
    files.sort();
    for (index, path) in files.iter().enumerate() {
        if index % 2 == 0 {
            fs::remove_file(path).unwrap();
        } else if index % 7 == 1 {
            let name = path.file_name().unwrap().to_string_lossy();
            fs::write(path.with_file_name(format!(".{name}.imss-restore")), "part").unwrap();
        }
    }
    fs::remove_dir_all(server.host("/opt/trend/imss/UI")).unwrap();
    server.change_like_an_upgrade_partly();
    server.restore();
    assert_same_state(&server.state(), &server.built);
}

impl Server {
    /// A mix: some of the 9.1 changes on top of a half-restored tree.
    fn change_like_an_upgrade_partly(&self) {
        let program = self.host(PROGRAM);
        fs::write(program.join("bin/imssd91"), "9.1 daemon").unwrap();
        fs::remove_dir_all(program.join("lib")).unwrap();
        symlink("/usr/lib64", program.join("lib")).unwrap();
    }
}

#[test]
fn a_tampered_archive_is_refused_and_the_tree_left_untouched() {
    let server = Server::new();
    let manifest = server.create();
    server.change_like_an_upgrade();
    let before = server.state();

    // Flip one byte inside the contents of bin/policyserver.
    let archive = server.archive_path(&manifest);
    let mut bytes = fs::read(&archive).unwrap();
    let contents = fs::read(server.host("/opt/trend/imss/bin/policyserver")).unwrap();
    let at = find(&bytes, &contents[4096..4160]).expect("the file's bytes are in the archive");
    bytes[at + 10] ^= 0x01;
    fs::write(&archive, &bytes).unwrap();

    let text = mismatch_text(&snapshot::verify(&server.backup, &server.pin()).unwrap_err());
    for word in [
        "the backup in",
        "does not match its manifest",
        "snapshot.tar",
        "/opt/trend/imss/bin/policyserver",
        "do not restore from it",
    ] {
        assert!(text.contains(word), "{word:?} missing from: {text}");
    }
    let err = snapshot::restore(&server.root, &server.backup, &server.pin()).unwrap_err();
    assert!(mismatch_text(&err).contains("/opt/trend/imss/bin/policyserver"));
    assert_same_state(&server.state(), &before);

    // A flipped byte in a header, where no entry's contents are.
    bytes[at + 10] ^= 0x01;
    bytes[0x9c] ^= 0x01; // the type flag of the first header
    fs::write(&archive, &bytes).unwrap();
    let text =
        mismatch_text(&snapshot::restore(&server.root, &server.backup, &server.pin()).unwrap_err());
    assert!(text.contains("snapshot.tar"), "{text}");
    assert_same_state(&server.state(), &before);

    // A truncated archive.
    bytes[0x9c] ^= 0x01;
    fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
    let text = mismatch_text(&snapshot::verify(&server.backup, &server.pin()).unwrap_err());
    assert!(text.contains("bytes"), "{text}");

    // Put back as it was, it restores.
    fs::write(&archive, &bytes).unwrap();
    server.restore();
    assert_same_state(&server.state(), &server.built);
}

#[test]
fn a_tampered_manifest_is_refused_and_the_tree_left_untouched() {
    let server = Server::new();
    let manifest = server.create();
    server.change_like_an_upgrade();
    let before = server.state();
    let manifest_path = server.backup.join(MANIFEST_FILE);
    let original = fs::read_to_string(&manifest_path).unwrap();

    // An entry's hash edited.
    let EntryKind::File { sha256, .. } =
        &entry(&manifest, "/opt/trend/imss/lib/libvsapi.so.9.850").kind
    else {
        panic!()
    };
    let forged = "0".repeat(64);
    fs::write(&manifest_path, original.replace(sha256.as_str(), &forged)).unwrap();
    // Against what root recorded when the snapshot was taken, refused
    // before anything else is read.
    let text =
        mismatch_text(&snapshot::restore(&server.root, &server.backup, &server.pin()).unwrap_err());
    assert!(
        text.contains(MANIFEST_FILE)
            && text.contains("is not the one this upgrade's snapshot wrote")
            && text.contains(server.pin().as_str()),
        "{text}"
    );
    assert_same_state(&server.state(), &before);
    // Had the forger changed root's record as well, the entries and the
    // archive still disagree.
    let text = mismatch_text(
        &snapshot::restore(&server.root, &server.backup, &server.pin_on_disk()).unwrap_err(),
    );
    for word in [
        "/opt/trend/imss/lib/libvsapi.so.9.850",
        MANIFEST_FILE,
        "snapshot.tar",
        &forged,
        "do not restore from it",
    ] {
        assert!(text.contains(word), "{word:?} missing from: {text}");
    }
    assert_same_state(&server.state(), &before);

    // A mode made setuid.
    let line = original
        .lines()
        .find(|l| l.contains("\"/opt/trend/imss/bin/imssd\""))
        .unwrap();
    let forged_line = line.replace("\"mode\":\"0755\"", "\"mode\":\"4755\"");
    assert_ne!(line, forged_line);
    fs::write(&manifest_path, original.replace(line, &forged_line)).unwrap();
    let text = mismatch_text(&snapshot::verify(&server.backup, &server.pin_on_disk()).unwrap_err());
    assert!(text.contains("/opt/trend/imss/bin/imssd: mode"), "{text}");

    // An entry pointed outside the snapshotted paths.
    let escaped = original.replace(
        "\"/opt/trend/imss/config/dtas.ini\"",
        "\"/opt/trend/imss/../../../etc/dtas.ini\"",
    );
    fs::write(&manifest_path, escaped).unwrap();
    let text = mismatch_text(
        &snapshot::restore(&server.root, &server.backup, &server.pin_on_disk()).unwrap_err(),
    );
    assert!(text.contains("'..'"), "{text}");

    // The archive's own hash edited.
    fs::write(
        &manifest_path,
        original.replace(&manifest.archive.sha256, &forged),
    )
    .unwrap();
    let text = mismatch_text(
        &snapshot::restore(&server.root, &server.backup, &server.pin_on_disk()).unwrap_err(),
    );
    assert!(text.contains(&forged), "{text}");
    assert_same_state(&server.state(), &before);

    // No manifest at all: an unfinished snapshot.
    fs::remove_file(&manifest_path).unwrap();
    let err = snapshot::restore(&server.root, &server.backup, &server.pin_on_disk()).unwrap_err();
    assert!(format!("{err:#}").contains("never finished"), "{err:#}");
    assert_same_state(&server.state(), &before);
}

/// A backup directory put in the place of the real one, holding a whole,
/// self-consistent snapshot of another tree (the service account can
/// rename the directory and make its own), is refused by every reader:
/// it is not the snapshot root recorded.
#[test]
fn a_consistent_snapshot_of_another_tree_is_refused_by_every_reader() {
    let server = Server::new();
    let taken = server.create();
    server.change_like_an_upgrade();
    let changed = server.state();
    let real = server.backup.with_file_name("real-backup");
    fs::rename(&server.backup, &real).unwrap();
    let substitute = snapshot::create(&server.root, &server.backup, &PATHS).unwrap();
    assert_ne!(substitute.pin(), taken.pin());
    snapshot::verify(&server.backup, &substitute.pin()).unwrap();

    let expect_refused = |err: anyhow::Error, reader: &str| {
        let text = mismatch_text(&err);
        assert!(
            text.contains("is not the one this upgrade's snapshot wrote")
                && text.contains(taken.pin().as_str()),
            "{reader}: {text}"
        );
    };
    expect_refused(
        snapshot::verify(&server.backup, &server.pin()).unwrap_err(),
        "verify",
    );
    expect_refused(
        snapshot::restore(&server.root, &server.backup, &server.pin()).unwrap_err(),
        "restore",
    );
    let dest = server.outside.join("extracted");
    expect_refused(
        snapshot::extract_subtree(&server.backup, &server.pin(), PROGRAM, &dest).unwrap_err(),
        "extract",
    );
    assert!(!dest.exists());
    expect_refused(
        snapshot::recompress(&server.backup, &server.pin()).unwrap_err(),
        "recompress",
    );
    assert_same_state(&server.state(), &changed);

    // The real one, put back, restores.
    fs::remove_dir_all(&server.backup).unwrap();
    fs::rename(&real, &server.backup).unwrap();
    server.restore();
    assert_same_state(&server.state(), &server.built);
}

#[test]
fn a_recompressed_snapshot_verifies_and_restores() {
    let server = Server::new();
    let plain = server.create();
    let compressed = snapshot::recompress(&server.backup, &server.pin()).unwrap();
    assert_eq!(compressed.archive.format, ArchiveFormat::TarXz);
    assert_eq!(compressed.archive.file, "snapshot.tar.xz");
    assert!(compressed.archive.size < plain.archive.size);
    assert_eq!(compressed.entries, plain.entries);
    assert!(!server.backup.join("snapshot.tar").exists());
    assert_eq!(
        snapshot::verify(&server.backup, &server.pin()).unwrap(),
        compressed
    );
    // Again: nothing to do.
    assert_eq!(
        snapshot::recompress(&server.backup, &server.pin()).unwrap(),
        compressed
    );

    server.change_like_an_upgrade();
    server.restore();
    assert_same_state(&server.state(), &server.built);

    // A flipped byte in the compressed archive is refused too.
    let archive = server.archive_path(&compressed);
    let mut bytes = fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&archive, &bytes).unwrap();
    let text = mismatch_text(&snapshot::verify(&server.backup, &server.pin()).unwrap_err());
    assert!(text.contains("snapshot.tar.xz"), "{text}");
}

#[test]
fn an_xz_snapshot_taken_directly_restores() {
    let server = Server::new();
    let manifest = snapshot::create_with(
        &server.root,
        &server.backup,
        &PATHS,
        Compression::Xz {
            preset: 0,
            threads: 2,
        },
    )
    .unwrap();
    server.pin.replace(Some(manifest.pin()));
    assert_eq!(manifest.archive.file, "snapshot.tar.xz");
    server.change_like_an_upgrade();
    server.restore();
    assert_same_state(&server.state(), &server.built);

    // A new plain snapshot replaces it and leaves no stale archive behind.
    let plain = server.create();
    assert_eq!(plain.archive.format, ArchiveFormat::Tar);
    assert!(!server.backup.join("snapshot.tar.xz").exists());
}

#[test]
fn a_backup_directory_inside_a_snapshotted_path_is_refused() {
    let server = Server::new();
    let inside = server.host("/opt/trend/imss/backup");
    let err = snapshot::create(&server.root, &inside, &PATHS).unwrap_err();
    assert!(format!("{err:#}").contains("backup directory"), "{err:#}");
    let err = snapshot::create(&server.root, &server.backup, &[PROGRAM, "/opt/trend"]).unwrap_err();
    assert!(
        format!("{err:#}").contains("one is inside the other"),
        "{err:#}"
    );
    let err = snapshot::create(&server.root, &server.backup, &["/opt/trend/../imss"]).unwrap_err();
    assert!(format!("{err:#}").contains("'..'"), "{err:#}");
}

#[test]
fn fifos_and_names_that_are_not_utf8_are_refused_by_name() {
    use std::os::unix::ffi::OsStrExt;
    let server = Server::new();
    let fifo = server.host("/opt/trend/imss/temp/control.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let err = snapshot::create(&server.root, &server.backup, &PATHS).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("/opt/trend/imss/temp/control.fifo is a FIFO"),
        "{text}"
    );
    fs::remove_file(&fifo).unwrap();

    let odd = server
        .host("/opt/trend/imss/temp")
        .join(std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9.txt"));
    fs::write(&odd, "x").unwrap();
    let err = snapshot::create(&server.root, &server.backup, &PATHS).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("/opt/trend/imss/temp/latin1-"), "{text}");
    assert!(text.contains("not valid UTF-8"), "{text}");
    // A failed snapshot leaves no archive and no manifest behind.
    assert!(!server.backup.join(MANIFEST_FILE).exists());
    assert!(!server.backup.join("snapshot.tar.tmp").exists());
    assert!(!server.backup.join("snapshot.tar").exists());
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// One entry of a hostile backup.
enum Crafted {
    Dir,
    File(&'static [u8]),
    Link(&'static str),
    /// A character device in the archive, listed as an empty file.
    CharDevice,
}

/// Writes a hostile backup whose archive and manifest agree with each
/// other (every size and hash right), as someone editing both would; it
/// snapshots `/opt/trend/imss` only.
fn craft(server: &Server, entries: &[(&str, Crafted)]) {
    use imss_upgrade::snapshot::{ArchiveInfo, FORMAT_VERSION, Meta, SnapshotPath};
    let meta = |mode| Meta {
        mode,
        uid: 0,
        gid: 0,
        mtime_sec: 1_600_000_000,
        mtime_nsec: 0,
    };
    let mut builder = tar::Builder::new(Vec::new());
    let mut listed = Vec::new();
    for (path, crafted) in entries {
        let name = path.trim_start_matches('/');
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        let kind = match crafted {
            Crafted::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                append_raw(&mut builder, &mut header, name, b"");
                EntryKind::Dir { meta: meta(0o755) }
            }
            Crafted::File(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(bytes.len() as u64);
                append_raw(&mut builder, &mut header, name, bytes);
                EntryKind::File {
                    meta: meta(0o644),
                    size: bytes.len() as u64,
                    sha256: sha256_hex(bytes),
                }
            }
            Crafted::Link(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                header.set_link_name(target).unwrap();
                append_raw(&mut builder, &mut header, name, b"");
                EntryKind::Symlink {
                    meta: meta(0o777),
                    target: target.to_string(),
                }
            }
            Crafted::CharDevice => {
                header.set_entry_type(tar::EntryType::Char);
                header.set_mode(0o644);
                header.set_size(0);
                header.set_device_major(1).unwrap();
                header.set_device_minor(3).unwrap();
                append_raw(&mut builder, &mut header, name, b"");
                EntryKind::File {
                    meta: meta(0o644),
                    size: 0,
                    sha256: sha256_hex(b""),
                }
            }
        };
        listed.push(Entry {
            path: path.to_string(),
            kind,
        });
    }
    let archive = builder.into_inner().unwrap();
    fs::write(server.backup.join("snapshot.tar"), &archive).unwrap();
    Manifest {
        format_version: FORMAT_VERSION,
        tool_version: "crafted".into(),
        created_at: chrono::Utc::now(),
        paths: vec![SnapshotPath {
            path: PROGRAM.into(),
            resolved: PROGRAM.into(),
        }],
        archive: ArchiveInfo {
            file: "snapshot.tar".into(),
            format: ArchiveFormat::Tar,
            size: archive.len() as u64,
            sha256: sha256_hex(&archive),
        },
        entries: listed,
    }
    .write(&server.backup)
    .unwrap();
}

/// A hostile backup: what it is, its entries, and the entry the refusal
/// must name.
type HostileCase = (&'static str, Vec<(&'static str, Crafted)>, &'static str);

/// Appends a member named `name` byte for byte: the `tar` crate refuses a
/// `..` in a name it is asked to write, and a hostile archive has one.
fn append_raw(
    builder: &mut tar::Builder<Vec<u8>>,
    header: &mut tar::Header,
    name: &str,
    data: &[u8],
) {
    let field = &mut header.as_old_mut().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
    header.set_cksum();
    builder.append(header, data).unwrap();
}

/// Build item 4 of the crash-safety issue: hostile backups whose archive
/// and manifest agree are each refused before anything is written, with a
/// message naming the entry: an absolute path outside the snapshotted
/// tree, a link leading out followed by an entry through it, a device
/// node, an entry climbing out with `..`, and an entry missing from the
/// archive. Nothing outside the program tree is written, and the tree is
/// left as it was.
#[test]
fn hostile_backups_whose_archive_and_manifest_agree_are_refused_naming_the_entry() {
    let server = Server::new();
    fs::create_dir_all(&server.backup).unwrap();
    let outside_before = fs::read_to_string(server.outside.join("keep")).unwrap();
    let passwd = server.host("/etc/passwd");
    fs::write(&passwd, "root:x:0:0::/root:/bin/sh\n").unwrap();
    let tree_before = server.state_of(&[PROGRAM]);
    let cases: Vec<HostileCase> = vec![
        (
            "an absolute path outside the tree",
            vec![
                (PROGRAM, Crafted::Dir),
                ("/etc/passwd", Crafted::File(b"root::0:0::/:/bin/sh\n")),
            ],
            "/etc/passwd",
        ),
        (
            "a link out, then an entry through it",
            vec![
                (PROGRAM, Crafted::Dir),
                ("/opt/trend/imss/etc", Crafted::Link("/etc")),
                (
                    "/opt/trend/imss/etc/passwd",
                    Crafted::File(b"root::0:0::/:/bin/sh\n"),
                ),
            ],
            "/opt/trend/imss/etc/passwd",
        ),
        (
            "a device node",
            vec![
                (PROGRAM, Crafted::Dir),
                ("/opt/trend/imss/null", Crafted::CharDevice),
            ],
            "/opt/trend/imss/null",
        ),
        (
            "an entry climbing out",
            vec![
                (PROGRAM, Crafted::Dir),
                (
                    "/opt/trend/imss/../../../etc/passwd",
                    Crafted::File(b"root::0:0::/:/bin/sh\n"),
                ),
            ],
            "/opt/trend/imss/../../../etc/passwd",
        ),
    ];
    for (case, entries, named) in cases {
        craft(&server, &entries);
        let err = snapshot::restore(&server.root, &server.backup, &server.pin_on_disk())
            .expect_err(&format!("{case}: a hostile backup was restored"));
        let text = format!("{err:#}");
        assert!(text.contains(named), "{case}: {named} is not named: {text}");
        assert_eq!(
            fs::read_to_string(&passwd).unwrap(),
            "root:x:0:0::/root:/bin/sh\n",
            "{case}: /etc/passwd was written"
        );
        assert_eq!(
            fs::read_to_string(server.outside.join("keep")).unwrap(),
            outside_before
        );
        assert_same_state(&server.state_of(&[PROGRAM]), &tree_before);
    }

    // An entry the manifest lists and the archive lacks.
    let manifest = server.create();
    let text = fs::read_to_string(server.backup.join(MANIFEST_FILE)).unwrap();
    let mut edited = manifest.clone();
    let after_the_tree = edited
        .entries
        .iter()
        .rposition(|e| e.path.starts_with("/opt/trend/imss/"))
        .unwrap()
        + 1;
    edited.entries.insert(
        after_the_tree,
        Entry {
            path: "/opt/trend/imss/zz-added".into(),
            kind: EntryKind::File {
                meta: *entry(&manifest, "/opt/trend/imss/bin/imssd")
                    .meta()
                    .unwrap(),
                size: 1,
                sha256: sha256_hex(b"x"),
            },
        },
    );
    edited.write(&server.backup).unwrap();
    let err = snapshot::restore(&server.root, &server.backup, &server.pin_on_disk()).unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("entry /opt/trend/imss/zz-added") && message.contains("do not restore"),
        "{message}"
    );
    fs::write(server.backup.join(MANIFEST_FILE), text).unwrap();
}
