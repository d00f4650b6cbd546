//! What a crash, a reboot or a second command does to an upgrade, item by
//! item: each test here failed before the fix it names. The kills
//! themselves are in `tests/kill_matrix.rs`.

use imss_fixture::harness::{Baseline, FixtureServer, Payload, flow};
use imss_upgrade::files::odbc_ini::DbSettings;
use imss_upgrade::flow::run::Outcome;
use imss_upgrade::support::cmd::Cmd;
use imss_upgrade::support::constants::{BACKUP_DIR, PG71_DATA_DIR, SERVICE_USER};
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
    let pg_ctl = imss_fixture::pgbin::pg15().unwrap().program("pg_ctl");
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
