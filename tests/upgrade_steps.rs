//! The upgrade's steps one at a time on model 7.1 servers, each with its
//! undo: what a step does is seen on the real services, files and
//! databases, and undo puts them back.

use imss_fixture::harness::oracle::device_and_inode;
use imss_fixture::harness::{FixtureServer, TmpfsMount};
use imss_upgrade::files::odbc_ini::DbSettings;
use imss_upgrade::flow::context::Context;
use imss_upgrade::flow::journal::{RollbackCause, Step, StepJournal};
use imss_upgrade::flow::layout::SNAPSHOT_PATHS;
use imss_upgrade::flow::upgrade::health;
use imss_upgrade::flow::upgrade::rollback::roll_back;
use imss_upgrade::flow::upgrade::runbook::undo_noted as undo_step;
use imss_upgrade::flow::upgrade::steps::quiesce;
use imss_upgrade::support::step_lines::StepLines;
use imss_upgrade::system::pg;

fn failed() -> RollbackCause {
    RollbackCause::StepFailed("test".into())
}

/// Marks the presync done without running it, for a test of a later step
/// that does not need the 9.1 cluster it makes.
fn skip_presync(journal: &mut StepJournal) {
    journal.begin(Step::Presync).unwrap();
    journal.finish(Step::Presync).unwrap();
}

fn smtp_answers(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test]
async fn quiesce_stops_the_71_server_and_its_undo_brings_it_back_accepting_mail() {
    let server = FixtureServer::build(&["--history-rows", "100", "--tree-mb", "0"]).unwrap();
    server.start().unwrap();
    let ctx = Context::new(server.root());
    let backup = tempfile::tempdir().unwrap();
    let mut journal = StepJournal::create(backup.path()).unwrap();
    health::send_test_mail(&ctx, "before").unwrap();

    skip_presync(&mut journal);
    journal.begin(Step::Quiesce).unwrap();
    quiesce::run(&ctx, &mut journal).await.unwrap();
    journal.finish(Step::Quiesce).unwrap();
    assert!(!smtp_answers(server.smtp_port), "the scanner must be down");
    assert!(
        !imss_upgrade::flow::clusters::source_71(&ctx)
            .unwrap()
            .is_running()
            .unwrap()
    );
    let probe = health::check_accepting(&ctx).unwrap_err();
    assert!(
        format!("{probe:#}").contains("does not accept mail"),
        "{probe:#}"
    );

    roll_back(&ctx, &mut journal, Some(failed()), &StepLines::silent())
        .await
        .unwrap();
    assert!(smtp_answers(server.smtp_port));
    let client = pg::connect(&DbSettings::load(&server.root()).unwrap())
        .await
        .unwrap();
    let probes: i64 = client
        .query_one(
            "SELECT count(*) FROM tb_policy_event WHERE message_id LIKE '<imss-upgrade-%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        probes, 1,
        "the probe before is logged; the rollback's check sends no message"
    );
}

/// How the snapshot must have moved the 7.1 data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    /// One file system: the same directory (device and inode), renamed.
    Rename,
    /// Across file systems: a copy on the backup's device, the original gone.
    Copy,
}

/// Runs the snapshot step on a built (stopped) server, checks what it did,
/// undoes it, and checks the 7.1 database is back and whole. The trees are
/// compared by `find` and `sha256sum` (the oracle), not by the snapshot's
/// own walk.
async fn snapshot_and_undo(server: &FixtureServer, expected: Move) {
    use imss_upgrade::flow::upgrade::steps::snapshot as snapshot_step;
    let ctx = Context::new(server.root());
    let root = server.root();
    let backup = imss_upgrade::flow::layout::backup::BackupDir::of(&ctx.layout)
        .create()
        .unwrap();
    let data_dir = root.resolve("/var/imss/pgdata").unwrap();
    let before = server.tree_state("/var/imss/pgdata").unwrap();
    let original = device_and_inode(&data_dir).unwrap();
    let mut journal = StepJournal::create(&ctx.layout.state_dir().unwrap()).unwrap();
    skip_presync(&mut journal);
    for step in [Step::Quiesce, Step::Snapshot] {
        journal.begin(step).unwrap();
        if step == Step::Snapshot {
            snapshot_step::run(&ctx, &mut journal).await.unwrap();
        }
        journal.finish(step).unwrap();
    }
    assert!(
        !data_dir.exists(),
        "the 7.1 data directory should have moved"
    );
    assert!(backup.join("pgdata-71/PG_VERSION").is_file());
    let moved = device_and_inode(&backup.join("pgdata-71")).unwrap();
    match expected {
        Move::Rename => assert_eq!(moved, original, "a rename keeps device and inode"),
        Move::Copy => {
            assert_ne!(moved.0, original.0, "the copy is on the backup's device");
            assert_eq!(
                device_and_inode(&backup).unwrap().0,
                moved.0,
                "the copy is on the backup's device"
            );
        }
    }
    assert_eq!(
        imss_fixture::harness::oracle::tree_state(&backup.join("pgdata-71")).unwrap(),
        before,
        "the moved 7.1 data directory differs from the original"
    );
    // The journal, root's alone, records what the snapshot restores.
    let manifest =
        imss_upgrade::snapshot::verify(&backup, journal.snapshot_pin().unwrap()).unwrap();
    assert_eq!(
        manifest.entries,
        imss_upgrade::snapshot::scan(&root, SNAPSHOT_PATHS).unwrap()
    );

    journal.begin_rollback(failed()).unwrap();
    let record = journal.record(Step::Snapshot).unwrap().clone();
    journal.begin_undo(Step::Snapshot).unwrap();
    undo_step(&ctx, &record, &journal).await.unwrap();
    // Undo again, as after an interruption: nothing left to do, no error.
    undo_step(&ctx, &record, &journal).await.unwrap();
    journal.finish_undo(Step::Snapshot).unwrap();
    assert_eq!(server.tree_state("/var/imss/pgdata").unwrap(), before);
    let back = device_and_inode(&data_dir).unwrap();
    match expected {
        Move::Rename => assert_eq!(back, original, "moved back by a rename"),
        Move::Copy => assert_eq!(back.0, original.0, "copied back to its own device"),
    }
    server.start().unwrap();
    let client = pg::connect(&DbSettings::load(&root).unwrap())
        .await
        .unwrap();
    let events: i64 = client
        .query_one("SELECT count(*) FROM tb_policy_event", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 500);
}

#[tokio::test]
async fn snapshot_moves_the_71_database_by_rename_and_undo_moves_it_back() {
    let server = FixtureServer::build(&["--history-rows", "500", "--tree-mb", "1"]).unwrap();
    snapshot_and_undo(&server, Move::Rename).await;
}

/// The backup directory of `server` on a tmpfs of its own, unmounted on drop.
fn backup_on_tmpfs(server: &FixtureServer) -> TmpfsMount {
    TmpfsMount::mount(
        &server.root_dir().join("var/imss/imss_backup_71_to_91"),
        "512m",
    )
    .unwrap()
}

#[tokio::test]
async fn across_file_systems_the_database_is_copied_verified_and_copied_back() {
    // Fail points are process-wide: this test and the next run one at a time.
    let scenario = fail::FailScenario::setup();
    let server = FixtureServer::build(&["--history-rows", "500", "--tree-mb", "1"]).unwrap();
    let _tmpfs = backup_on_tmpfs(&server);
    snapshot_and_undo(&server, Move::Copy).await;
    server.stop().unwrap();
    scenario.teardown();
}

/// A copy that differs from the original (here, a file of the copy changed
/// between the copy and its check) is refused: the original stays where it
/// was, and the undo clears the copy away.
#[tokio::test]
async fn across_file_systems_a_copy_that_differs_is_refused_and_the_original_kept() {
    if !cfg!(feature = "failpoints") {
        panic!(
            "this test needs the fail points: run it with `--features imss-upgrade/failpoints` (make test does)"
        );
    }
    use imss_upgrade::flow::upgrade::steps::snapshot as snapshot_step;
    let scenario = fail::FailScenario::setup();
    let server = FixtureServer::build(&["--history-rows", "200", "--tree-mb", "0"]).unwrap();
    let tmpfs = backup_on_tmpfs(&server);
    let ctx = Context::new(server.root());
    let before = server.tree_state("/var/imss/pgdata").unwrap();
    let partial = tmpfs.dir().join("pgdata-71.partial");
    let damaged = partial.clone();
    fail::cfg_callback("tree-move-copied", move || {
        std::fs::write(damaged.join("PG_VERSION"), "15\n").unwrap();
    })
    .unwrap();
    // The mount point is the backup directory: empty and root's, it is
    // taken as this run's.
    imss_upgrade::flow::layout::backup::BackupDir::of(&ctx.layout)
        .create()
        .unwrap();
    let mut journal = StepJournal::create(&ctx.layout.state_dir().unwrap()).unwrap();
    skip_presync(&mut journal);
    journal.begin(Step::Quiesce).unwrap();
    journal.finish(Step::Quiesce).unwrap();
    journal.begin(Step::Snapshot).unwrap();
    let err = snapshot_step::run(&ctx, &mut journal).await.unwrap_err();
    fail::remove("tree-move-copied");
    assert!(
        format!("{err:#}").contains("differs from the original"),
        "{err:#}"
    );
    assert_eq!(
        server.tree_state("/var/imss/pgdata").unwrap(),
        before,
        "the original must be untouched"
    );
    assert!(
        !tmpfs.dir().join("pgdata-71").exists(),
        "a refused copy takes no place"
    );

    roll_back(&ctx, &mut journal, Some(failed()), &StepLines::silent())
        .await
        .unwrap();
    assert!(!partial.exists(), "the undo removes the refused copy");
    assert_eq!(server.tree_state("/var/imss/pgdata").unwrap(), before);
    scenario.teardown();
}

#[tokio::test]
async fn migrate_loads_configuration_and_the_last_24_hours_into_postgres_15_and_undo_removes_it() {
    use imss_upgrade::flow::upgrade::steps::{migrate, presync, snapshot as snapshot_step};
    let server =
        FixtureServer::build(&["--history-rows", "3000", "--tree-mb", "0", "--days", "3"]).unwrap();
    server.start().unwrap();
    let root = server.root();
    let ctx = Context::new(root.clone())
        .with_target_pg(imss_fixture::model::pgbin::pg15().unwrap().bin_dir());
    let settings = DbSettings::load(&root).unwrap();
    let client = pg::connect(&settings).await.unwrap();
    let newest_day: i64 = client
        .query_one(
            "SELECT count(*) FROM tb_policy_event WHERE event_time >= (now() AT TIME ZONE 'UTC') - interval '24 hours'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    drop(client);
    let dump_before = server.dump_all().unwrap();
    let tree_before = server.tree_state("/opt/trend/imss").unwrap();
    let backup = imss_upgrade::flow::layout::backup::BackupDir::of(&ctx.layout)
        .create()
        .unwrap();
    let mut journal = StepJournal::create(&ctx.layout.state_dir().unwrap()).unwrap();
    journal.begin(Step::Presync).unwrap();
    let presynced = presync::run(&ctx, &mut journal).await.unwrap();
    journal.finish(Step::Presync).unwrap();
    assert!(presynced.policy_events > 0);
    journal.begin(Step::Quiesce).unwrap();
    quiesce::run(&ctx, &mut journal).await.unwrap();
    journal.finish(Step::Quiesce).unwrap();
    journal.begin(Step::Snapshot).unwrap();
    snapshot_step::run(&ctx, &mut journal).await.unwrap();
    journal.finish(Step::Snapshot).unwrap();
    journal.begin(Step::Migrate).unwrap();
    let report = migrate::run(&ctx, &mut journal).await.unwrap();
    journal.finish(Step::Migrate).unwrap();

    // About a third of three days of history is the last 24 hours.
    assert!(
        (newest_day - report.window.policy_events as i64).abs() <= 2,
        "{newest_day} vs {:?}",
        report.window
    );
    // Quarantine and archive windows, the seven configuration tables (no
    // mail arrived after the presync, so no run of new policy events).
    assert_eq!(report.verified.len(), 9, "{:?}", report.verified);
    let export = backup.join("imsx_config.dat");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&export).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The 9.1 cluster runs, and answers where 7.1 did, with the same password.
    assert!(
        imss_upgrade::flow::clusters::target_91(&ctx)
            .unwrap()
            .is_running()
            .unwrap()
    );
    let new = pg::connect(&settings).await.unwrap();
    let version: String = new
        .query_one("SHOW server_version", &[])
        .await
        .unwrap()
        .get(0);
    assert!(version.starts_with("15."), "{version}");
    let migrated: i64 = new
        .query_one("SELECT count(*) FROM policy_event", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(migrated, report.window.policy_events as i64);
    drop(new);

    journal.begin_rollback(failed()).unwrap();
    for record in journal.steps_to_undo() {
        journal.begin_undo(record.step).unwrap();
        assert!(record.step <= Step::Migrate, "{} was not run", record.step);
        undo_step(&ctx, &record, &journal).await.unwrap();
        journal.finish_undo(record.step).unwrap();
    }
    let old = pg::connect(&settings).await.unwrap();
    let version: String = old
        .query_one("SHOW server_version", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        version.starts_with("10."),
        "7.1's database is back: {version}"
    );
    drop(old);
    assert!(
        server.dump_all().unwrap() == dump_before,
        "pg_dumpall of 7.1 differs after the rollback"
    );
    assert_eq!(
        server.tree_state("/opt/trend/imss").unwrap(),
        tree_before,
        "the program tree differs after the rollback"
    );
}
