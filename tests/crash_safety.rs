//! What a crash, a reboot or a second command does to an upgrade, item by
//! item: each test here failed before the fix it names. The kills
//! themselves are in `tests/kill_matrix.rs`.

use std::os::unix::fs::PermissionsExt;

use imss_fixture::harness::{Baseline, FixtureServer, Payload, TmpfsMount, flow};
use imss_upgrade::files::odbc_ini::DbSettings;
use imss_upgrade::flow::layout::{BACKUP_DIR, STATE_DIR};
use imss_upgrade::flow::upgrade::run::Outcome;
use imss_upgrade::support::cmd::Cmd;
use imss_upgrade::support::constants::{PG71_DATA_DIR, SERVICE_USER};
use imss_upgrade::system::pg;

/// A small running 7.1 server, its payload, and what it was.
fn small_site() -> (FixtureServer, Payload, Baseline) {
    let server =
        FixtureServer::build(&["--history-rows", "500", "--tree-mb", "0", "--days", "2"]).unwrap();
    server.start().unwrap();
    let payload = Payload::build().unwrap();
    let baseline = Baseline::take(&server).unwrap();
    (server, payload, baseline)
}

async fn upgraded(server: &FixtureServer, payload: &Payload) {
    let outcome = flow::upgrade(&payload.context(server).unwrap()).await;
    assert!(
        matches!(outcome, Ok(Outcome::Upgraded(_))),
        "the upgrade did not complete: {outcome:?}"
    );
}

/// Item 4: after the upgrade, the 9.1 cluster's own `postgresql.conf` kept
/// the staging placement (no TCP listener, a socket in the backup
/// directory), hidden only by the overrides of the upgrade's own starts.
/// A start that reads the configuration, as a unit or a reboot does, with
/// the backup directory gone, must listen where `odbc.ini` says.
#[tokio::test]
async fn the_91_cluster_serves_from_its_own_configuration_after_the_upgrade() {
    let (server, payload, _) = small_site();
    upgraded(&server, &payload).await;
    server.stop().unwrap();
    let root = server.root();
    let data_dir = root.resolve(PG71_DATA_DIR).unwrap();
    let conf = std::fs::read_to_string(data_dir.join("postgresql.conf")).unwrap();
    assert!(
        !conf.contains("imss_backup_71_to_91"),
        "postgresql.conf names the backup directory"
    );
    let backup = root.resolve(BACKUP_DIR).unwrap();
    let aside = backup.with_file_name("backup-moved-away");
    std::fs::rename(&backup, &aside).unwrap();

    let owner = imss_upgrade::support::account::ServiceUser::lookup(&root, SERVICE_USER).unwrap();
    let log = data_dir.with_file_name("plain-start.log");
    std::fs::write(&log, "").unwrap();
    std::os::unix::fs::chown(&log, Some(owner.uid), Some(owner.gid)).unwrap();
    let pg_ctl = imss_fixture::model::pgbin::pg15()
        .unwrap()
        .program("pg_ctl");
    let started = Cmd::new(&pg_ctl)
        .arg("-D")
        .arg(&data_dir)
        .arg("-l")
        .arg(&log)
        .args(["-w", "start"])
        .current_dir("/")
        .as_user(&owner)
        .run();
    let connected = match &started {
        Ok(_) => pg::connect(&DbSettings::load(&root).unwrap())
            .await
            .map(drop)
            .map_err(anyhow::Error::from),
        Err(err) => Err(anyhow::anyhow!("{err}")),
    };
    pg::stop_server(&data_dir, pg::StopMode::Fast).unwrap();
    std::fs::rename(&aside, &backup).unwrap();
    if let Err(err) = connected {
        panic!(
            "a plain start of the 9.1 cluster does not serve on odbc.ini's address and port: {err:#}\n\
             its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

/// The step journal's run state, as on disk.
fn run_state(server: &FixtureServer) -> imss_upgrade::flow::journal::RunState {
    imss_upgrade::flow::journal::StepJournal::load(&server.root().resolve(STATE_DIR).unwrap())
        .unwrap()
        .unwrap()
        .state
}

/// 9.1 still runs and takes mail, and the upgrade is still completed.
fn still_on_91(server: &FixtureServer, payload: &Payload) {
    use imss_upgrade::files::imss_ini::ProductInfo;
    assert_eq!(ProductInfo::load(&server.root()).unwrap().version, "9.1");
    imss_upgrade::flow::upgrade::health::send_test_mail(
        &payload.context(server).unwrap(),
        "refused",
    )
    .expect("9.1 takes mail after the refusal");
    assert_eq!(
        run_state(server),
        imss_upgrade::flow::journal::RunState::Completed
    );
}

/// Item 3: imss-rollback after a completed upgrade whose backup lacks
/// `pgdata-71` started undoing (the 9.1 tree was already replaced) and then
/// failed. It checks everything first, refuses naming what is missing, and
/// 9.1 keeps running; with the directory back it rolls back exactly. A
/// data directory that is not PostgreSQL 10's is refused the same way.
#[tokio::test]
async fn imss_rollback_refuses_before_any_change_when_the_71_data_directory_is_gone() {
    let (server, payload, baseline) = small_site();
    upgraded(&server, &payload).await;
    let ctx = payload.context(&server).unwrap();
    let moved = server.root().resolve(BACKUP_DIR).unwrap().join("pgdata-71");
    let aside = moved.with_file_name("pgdata-71.aside");
    std::fs::rename(&moved, &aside).unwrap();
    let err = format!("{:#}", flow::roll_back(&ctx).await.unwrap_err());
    assert!(
        err.contains("nothing was changed") && err.contains("pgdata-71"),
        "{err}"
    );
    still_on_91(&server, &payload);

    std::fs::rename(&aside, &moved).unwrap();
    let version = moved.join("PG_VERSION");
    std::fs::write(&version, "15\n").unwrap();
    let err = format!("{:#}", flow::roll_back(&ctx).await.unwrap_err());
    assert!(err.contains("PG_VERSION"), "{err}");
    still_on_91(&server, &payload);

    std::fs::write(&version, "10\n").unwrap();
    flow::roll_back(&ctx).await.unwrap();
    baseline.check_back_on_71(&server, &payload).unwrap();
}

/// Item 3: a restore of the program tree that would fill its file system
/// is refused before anything changes, naming the space needed and free.
#[tokio::test]
async fn imss_rollback_refuses_when_the_program_tree_has_no_room_to_come_back() {
    let server =
        FixtureServer::build(&["--history-rows", "300", "--tree-mb", "0", "--days", "2"]).unwrap();
    // /opt/trend on a file system of its own, 512 MiB.
    let trend = server.root_dir().join("opt/trend");
    let built = server.root_dir().join("opt/trend-built");
    std::fs::rename(&trend, &built).unwrap();
    let tmpfs = TmpfsMount::mount(&trend, "512m").unwrap();
    std::fs::set_permissions(&trend, std::fs::Permissions::from_mode(0o755)).unwrap();
    Cmd::new("cp")
        .args(["-a", "--"])
        .arg(built.join("imss"))
        .arg(trend.join("imss"))
        .run()
        .unwrap();
    std::fs::remove_dir_all(&built).unwrap();
    server.start().unwrap();
    let payload = Payload::build().unwrap();
    let baseline = Baseline::take(&server).unwrap();
    upgraded(&server, &payload).await;
    let ctx = payload.context(&server).unwrap();

    let free = nix::sys::statvfs::statvfs(tmpfs.dir()).unwrap();
    let free = free.blocks_available() * free.fragment_size();
    let filler = tmpfs.dir().join("filler");
    let keep_free: u64 = 8 << 20;
    Cmd::new("fallocate")
        .args(["-l", &(free - keep_free).to_string()])
        .arg(&filler)
        .run()
        .unwrap();
    let err = format!("{:#}", flow::roll_back(&ctx).await.unwrap_err());
    assert!(
        err.contains("nothing was changed") && err.contains("MiB free"),
        "{err}"
    );
    still_on_91(&server, &payload);

    std::fs::remove_file(&filler).unwrap();
    flow::roll_back(&ctx).await.unwrap();
    baseline.check_back_on_71(&server, &payload).unwrap();
    server.stop().unwrap();
}

/// A 7.1 server whose `/var/imss/pgdata` is a link to `/data/pgdata`,
/// which is on a file system of its own when `own_file_system`.
fn server_with_linked_data_dir(own_file_system: bool) -> (FixtureServer, Option<TmpfsMount>) {
    let server =
        FixtureServer::build(&["--history-rows", "500", "--tree-mb", "0", "--days", "2"]).unwrap();
    let root = server.root_dir();
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mount = own_file_system.then(|| {
        let mount = TmpfsMount::mount(&data, "1g").unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        mount
    });
    Cmd::new("cp")
        .args(["-a", "--"])
        .arg(root.join("var/imss/pgdata"))
        .arg(data.join("pgdata"))
        .run()
        .unwrap();
    std::fs::remove_dir_all(root.join("var/imss/pgdata")).unwrap();
    std::os::unix::fs::symlink("/data/pgdata", root.join("var/imss/pgdata")).unwrap();
    server.start().unwrap();
    (server, mount)
}

/// Item 6: with `/var/imss/pgdata` a link, the snapshot moved the link's
/// target and left it dangling, the migration renamed a directory onto the
/// link (ENOTDIR), and the rollback replaced the link by a directory. The
/// upgrade puts 9.1 where the link leads, and the rollback gives back the
/// link and its target exactly, on one file system and across two.
async fn a_linked_data_directory_upgrades_and_comes_back_exactly(own_file_system: bool) {
    let (server, _mount) = server_with_linked_data_dir(own_file_system);
    let payload = Payload::build().unwrap();
    let baseline = Baseline::take(&server).unwrap();
    let root = server.root_dir();
    let link = root.join("var/imss/pgdata");
    upgraded(&server, &payload).await;
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        std::path::Path::new("/data/pgdata")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("data/pgdata/PG_VERSION")).unwrap(),
        "15\n",
        "9.1's cluster is where the link leads"
    );
    flow::roll_back(&payload.context(&server).unwrap())
        .await
        .unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link was replaced"
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        std::path::Path::new("/data/pgdata")
    );
    baseline.check_back_on_71(&server, &payload).unwrap();
    server.stop().unwrap();
}

#[tokio::test]
async fn a_data_directory_linked_on_the_same_file_system_comes_back_exactly() {
    a_linked_data_directory_upgrades_and_comes_back_exactly(false).await;
}

#[tokio::test]
async fn a_data_directory_linked_to_another_file_system_comes_back_exactly() {
    a_linked_data_directory_upgrades_and_comes_back_exactly(true).await;
}

/// The id of the policy event 9.1 logged for a test mail sent now.
async fn logged_event_id(server: &FixtureServer, payload: &Payload, purpose: &str) -> i64 {
    let ctx = payload.context(server).unwrap();
    let message_id = imss_upgrade::flow::upgrade::health::send_test_mail(&ctx, purpose).unwrap();
    pg::connect(&DbSettings::load(&server.root()).unwrap())
        .await
        .unwrap()
        .query_one(
            "SELECT event_id FROM policy_event WHERE message_id = $1",
            &[&message_id],
        )
        .await
        .unwrap()
        .get(0)
}

/// Found by the kill matrix: after a rollback, the next attempt's 9.1
/// handed out the same ids as the first one's, and the scanner, which
/// names quarantined message files by id, found the first attempt's file
/// in the way and refused mail. The ids a rolled-back 9.1 used are kept
/// with its backup, and a later attempt starts above them, while 7.1 stays
/// exactly as it was.
#[tokio::test]
async fn a_second_attempt_after_a_rollback_reuses_no_id_the_first_handed_out() {
    let (server, payload, baseline) = small_site();
    upgraded(&server, &payload).await;
    let first = logged_event_id(&server, &payload, "first-attempt").await;
    flow::roll_back(&payload.context(&server).unwrap())
        .await
        .unwrap();
    baseline.check_back_on_71(&server, &payload).unwrap();
    upgraded(&server, &payload).await;
    let second = logged_event_id(&server, &payload, "second-attempt").await;
    assert!(
        second > first,
        "the second attempt's 9.1 handed out id {second}, at or below the first's {first}"
    );
}
