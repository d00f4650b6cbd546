//! Power losses that lose what was not synced, on the fixture's lossy file
//! system (`imss_fixture::lossyfs`): first the file system itself (what a
//! power cut keeps and what it throws away, and PostgreSQL's own fsyncs
//! keeping a committed row), then the upgrade with its whole root on it.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use imss_fixture::harness::{self, PgVersion};
use imss_fixture::lossyfs::LossyMount;
use imss_upgrade::support::secret::Secret;
use imss_upgrade::system::pg::{Cluster, InitOptions, StopMode};

/// A directory with the lossy file system mounted on `mnt` inside it.
fn mounted() -> (tempfile::TempDir, LossyMount) {
    let dir = tempfile::Builder::new()
        .prefix("imss-lossy-")
        .tempdir()
        .unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mount = LossyMount::mount(&mnt).unwrap();
    (dir, mount)
}

fn write_file(path: &Path, contents: &str, sync: bool) {
    let mut file = File::create(path).unwrap();
    file.write_all(contents.as_bytes()).unwrap();
    if sync {
        file.sync_all().unwrap();
    }
}

fn sync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Each kind of change, synced and not, then a power cut: exactly the
/// synced ones are there, the device and inode numbers are those from
/// before, and what the cut threw away is counted.
#[test]
fn a_power_cut_keeps_what_was_synced_and_loses_the_rest() {
    let (_dir, mount) = mounted();
    let root = mount.dir().to_path_buf();
    let (kept, renamed, moved, sub) = (
        root.join("kept"),
        root.join("renamed"),
        root.join("moved"),
        root.join("sub"),
    );
    write_file(&kept, "synced", true);
    write_file(&renamed, "renamed", true);
    write_file(&moved, "moved", true);
    std::fs::create_dir(&sub).unwrap();
    sync_dir(&root);
    let identity = std::fs::metadata(&kept)
        .map(|m| (m.dev(), m.ino()))
        .unwrap();

    // A write not synced, and one synced.
    write_file(&kept, "overwritten, never synced", false);
    let synced_data = root.join("synced-data");
    write_file(&synced_data, "first", true);
    sync_dir(&root);
    write_file(&synced_data, "second", true);
    // A rename without a directory sync.
    std::fs::rename(&renamed, root.join("renamed-away")).unwrap();
    // A create without a sync, and one whose file is synced (its name
    // then reaches the disk with it, as ext4, XFS and btrfs do).
    write_file(&root.join("created"), "never synced", false);
    write_file(&root.join("created-synced"), "synced", true);
    // A rename into another directory, that directory synced.
    std::fs::rename(&moved, sub.join("moved")).unwrap();
    sync_dir(&sub);

    // The product's atomic replace (a handle from openat2 with
    // RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, the file fsynced, renamed, the
    // directory fsynced).
    let journal = sub.join("state.json");
    imss_upgrade::support::fsutil::atomic_write(&journal, b"v1", 0o600).unwrap();
    imss_upgrade::support::fsutil::atomic_write(&journal, b"v2", 0o600).unwrap();

    let cut = mount.power_cut().unwrap();
    assert!(
        cut.killed.is_empty(),
        "nothing used the mount: {:?}",
        cut.killed
    );
    assert_eq!(read(&kept).as_deref(), Some("synced"));
    assert_eq!(read(&synced_data).as_deref(), Some("second"));
    assert_eq!(read(&renamed).as_deref(), Some("renamed"));
    assert!(!root.join("renamed-away").exists());
    assert!(!root.join("created").exists());
    assert_eq!(
        read(&root.join("created-synced")).as_deref(),
        Some("synced")
    );
    assert_eq!(read(&sub.join("moved")).as_deref(), Some("moved"));
    assert!(!moved.exists(), "a rename is durable whole");
    assert_eq!(
        std::fs::metadata(&kept)
            .map(|m| (m.dev(), m.ino()))
            .unwrap(),
        identity,
        "device and inode are the same after the power cut"
    );
    assert_eq!(read(&journal).as_deref(), Some("v2"));
    assert!(
        cut.lost.dir_ops >= 2 && cut.lost.inodes >= 1,
        "{:?}",
        cut.lost
    );
}

/// The kernel checks permissions (`default_permissions`) for every
/// account (`allow_other`): the unprivileged test account may write in a
/// directory it owns and not in root's.
#[test]
fn the_kernel_checks_permissions_for_other_accounts() {
    let (_dir, mount) = mounted();
    let user = harness::unprivileged_user().unwrap();
    let own = mount.dir().join("own");
    std::fs::create_dir(&own).unwrap();
    harness::chown(&own, &user).unwrap();
    let touch = |path: &Path| {
        imss_upgrade::support::cmd::Cmd::new("touch")
            .arg(path)
            .as_user(&user)
            .run()
    };
    touch(&own.join("mine")).unwrap();
    let refused = touch(&mount.dir().join("roots")).unwrap_err();
    assert!(
        format!("{refused:#}").contains("Permission denied"),
        "{refused:#}"
    );
    let owner = std::fs::metadata(own.join("mine")).unwrap().uid();
    assert_eq!(owner, user.uid);
}

/// PostgreSQL 15, created (`initdb`, which syncs what it wrote) and run as
/// the unprivileged test account on the lossy file system, its socket
/// there too: a committed row survives a power cut and the crash recovery
/// of the next start, one of a transaction left open does not, and the cut
/// did throw away what the server had not synced.
#[test]
fn postgresql_keeps_a_committed_row_across_a_power_cut() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, mount) = mounted();
    let root = mount.dir().to_path_buf();
    let owner = harness::unprivileged_user().unwrap();
    let (data_dir, socket_dir) = (root.join("data"), root.join("run"));
    for dir in [&data_dir, &socket_dir] {
        std::fs::create_dir(dir).unwrap();
        harness::chown(dir, &owner).unwrap();
    }
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let cluster = Cluster {
        install: PgVersion::V15.install().unwrap(),
        data_dir,
        socket_dir,
        listen_address: String::new(),
        port: 5432,
        owner,
    };
    let password = Secret::new("power-cut");
    cluster
        .initdb(&InitOptions {
            superuser: harness::SUPERUSER,
            password: &password,
            no_sync: false,
            settings: &[],
        })
        .unwrap();
    mount.power_cut().unwrap();
    cluster.start().unwrap();
    let settings = cluster.socket_settings("postgres", harness::SUPERUSER, &password);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let open_transaction = runtime.block_on(async {
        let client = imss_upgrade::system::pg::connect(&settings).await.unwrap();
        client
            .batch_execute(
                "CREATE TABLE mail (subject text); INSERT INTO mail VALUES ('committed');",
            )
            .await
            .unwrap();
        let open = imss_upgrade::system::pg::connect(&settings).await.unwrap();
        open.batch_execute("BEGIN; INSERT INTO mail VALUES ('never committed');")
            .await
            .unwrap();
        open
    });

    let cut = mount.power_cut().unwrap();
    drop(open_transaction);
    assert!(
        cut.killed.len() >= 3,
        "the postmaster and its processes were killed: {:?}",
        cut.killed
    );
    assert!(
        cut.lost.files_reverted + cut.lost.dir_ops > 0,
        "the server had written something it never synced: {:?}",
        cut.lost
    );
    cluster.start().unwrap();
    let subjects: Vec<String> = runtime.block_on(async {
        let client = imss_upgrade::system::pg::connect(&settings).await.unwrap();
        client
            .query("SELECT subject FROM mail", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    });
    cluster.stop(StopMode::Fast).unwrap();
    assert_eq!(subjects, ["committed"]);
}
