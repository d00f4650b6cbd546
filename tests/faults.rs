//! Real faults in the middle of an upgrade, each of which must end with
//! 7.1 back exactly as it was and a report that names the cause: a full
//! file system during the snapshot and during the migration, PostgreSQL 15
//! killed in the middle of the copy, PostgreSQL 10 unable to start from the
//! backup, a 9.1 that does not pass its health check, and a service start
//! that hangs. The faults are made at named fail points (a callback does
//! the damage there), so each lands where it is meant to.
//!
//! Fail points are process-wide: every test holds a `FailScenario`, which
//! runs them one at a time.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use imss_fixture::harness::scenario::{Scenario, Upgradable};
use imss_fixture::harness::{PgVersion, TestServer, TmpfsMount, flow};
use imss_upgrade::files::odbc_ini::DbSettings;
use imss_upgrade::flow::context::Context;
use imss_upgrade::flow::layout::BACKUP_DIR;
use imss_upgrade::support::cmd::Cmd;
use imss_upgrade::system::{pg, procfs};

/// A small 7.1 server, whose baseline is taken once it runs.
fn small_server() -> Scenario {
    Scenario::new()
        .needs_failpoints(cfg!(feature = "failpoints"))
        .history_rows(500)
        .tree_mb(0)
        .days(2)
        .with_baseline()
}

/// Runs the upgrade in `ctx`, which the fault armed beforehand must fail;
/// checks that the report names `cause` and says 7.1 is back, and that 7.1
/// is exactly what it was.
async fn fails_and_rolls_back(site: &Upgradable, ctx: &Context, cause: &[&str]) {
    let err = flow::upgrade(ctx)
        .await
        .expect_err("the fault must fail the upgrade");
    let text = format!("{err:#}");
    assert!(text.contains("was rolled back: 7.1 runs"), "{text}");
    for word in cause {
        assert!(
            text.contains(word),
            "the report does not name {word:?}:\n{text}"
        );
    }
    if let Err(err) = site.check_back_on_71() {
        panic!("{err:#}\nafter:\n{text}");
    }
}

/// Fills the file system of `dir` until nothing is left, with a file
/// there; returns it.
fn fill(dir: &Path) -> std::path::PathBuf {
    let filler = dir.join("filler");
    let stats = nix::sys::statvfs::statvfs(dir).unwrap();
    let free = stats.blocks_available() * stats.fragment_size();
    Cmd::new("fallocate")
        .args(["-l", &free.to_string()])
        .arg(&filler)
        .run()
        .unwrap();
    filler
}

#[tokio::test]
async fn a_full_file_system_during_the_snapshot_rolls_back_naming_it() {
    let scenario = fail::FailScenario::setup();
    let (site, mount) = small_server().build_with(|server| {
        let backup = server.root().resolve(BACKUP_DIR).unwrap();
        TmpfsMount::mount(&backup, "512m").unwrap()
    });
    let dir = mount.dir().to_path_buf();
    fail::cfg_callback("before-snapshot", move || {
        fill(&dir);
    })
    .unwrap();
    fails_and_rolls_back(&site, &site.ctx, &["No space left on device", "snapshot"]).await;
    scenario.teardown();
    site.server.stop().unwrap();
}

#[tokio::test]
async fn a_full_file_system_during_the_migration_rolls_back_naming_it() {
    let scenario = fail::FailScenario::setup();
    // /var/imss, with both clusters and the backup, on a file system of
    // its own.
    let (site, mount) = small_server().build_with(|server| {
        let var_imss = server.root_dir().join("var/imss");
        let built = server.root_dir().join("var/imss-built");
        std::fs::rename(&var_imss, &built).unwrap();
        let mount = TmpfsMount::mount(&var_imss, "1g").unwrap();
        Cmd::new("cp")
            .args(["-a", "-T", "--"])
            .arg(&built)
            .arg(&var_imss)
            .run()
            .unwrap();
        std::fs::remove_dir_all(&built).unwrap();
        mount
    });
    let dir = mount.dir().to_path_buf();
    let filled = std::sync::Arc::new(std::sync::Mutex::new(None));
    let filler = filled.clone();
    fail::cfg_callback("migrate-config-imported", move || {
        *filler.lock().unwrap() = Some(fill(&dir));
    })
    .unwrap();
    fails_and_rolls_back(
        &site,
        &site.ctx,
        &["No space left on device", "step migrate"],
    )
    .await;
    scenario.teardown();
    assert!(filled.lock().unwrap().is_some(), "the fault was never made");
    site.server.stop().unwrap();
}

#[tokio::test]
async fn postgresql_15_killed_in_the_middle_of_the_copy_rolls_back() {
    let scenario = fail::FailScenario::setup();
    let site = small_server().build();
    let data_dir = site.server.root().resolve("/var/imss/pgdata").unwrap();
    fail::cfg_callback("migrate-config-imported", move || {
        let killed = procfs::working_in(&data_dir);
        assert!(!killed.is_empty(), "PostgreSQL 15 runs in the migration");
        for pid in killed {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    })
    .unwrap();
    fails_and_rolls_back(&site, &site.ctx, &["step migrate"]).await;
    scenario.teardown();
}

#[tokio::test]
async fn postgresql_10_failing_to_start_from_the_backup_rolls_back_naming_it() {
    let scenario = fail::FailScenario::setup();
    let site = small_server().build();
    // Its socket's lock file names a live PostgreSQL server (a scratch
    // one): PostgreSQL 10 refuses to start there.
    let other = TestServer::start(PgVersion::V15).unwrap();
    let other_pid = std::fs::read_to_string(other.cluster().data_dir.join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let sockets = site.server.root().resolve(BACKUP_DIR).unwrap().join("run");
    let port = DbSettings::load(&site.server.root()).unwrap().port;
    fail::cfg_callback("before-migrate", move || {
        std::fs::create_dir_all(&sockets).unwrap();
        std::fs::write(
            sockets.join(format!(".s.PGSQL.{port}.lock")),
            format!("{other_pid}\n/elsewhere\n"),
        )
        .unwrap();
    })
    .unwrap();
    fails_and_rolls_back(&site, &site.ctx, &["starting PostgreSQL on", "pgdata-71"]).await;
    scenario.teardown();
}

#[tokio::test]
async fn a_91_that_fails_its_health_check_rolls_back_naming_it() {
    let scenario = fail::FailScenario::setup();
    let site = small_server().build();
    // 9.1's database takes no write: the scanner cannot log a mail.
    let root = site.server.root();
    fail::cfg_callback("switch-swapped", move || {
        let settings = DbSettings::load(&root).unwrap();
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                pg::connect(&settings)
                    .await
                    .unwrap()
                    .batch_execute("ALTER DATABASE imss SET default_transaction_read_only = on")
                    .await
                    .unwrap();
            })
        })
        .join()
        .unwrap();
    })
    .unwrap();
    fails_and_rolls_back(
        &site,
        &site.ctx,
        &["did not accept the health check message", "step switch"],
    )
    .await;
    scenario.teardown();
}

#[tokio::test]
async fn a_service_start_that_hangs_is_stopped_and_rolled_back() {
    let scenario = fail::FailScenario::setup();
    let site = small_server().build();
    let script = site
        .server
        .root()
        .resolve("/opt/trend/imss/script/imssctl.sh")
        .unwrap();
    fail::cfg_callback("switch-swapped", move || {
        std::fs::write(&script, "#!/bin/sh\nsleep 600\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    })
    .unwrap();
    let ctx = site
        .ctx
        .clone()
        .with_service_timeout(Duration::from_secs(3));
    fails_and_rolls_back(&site, &ctx, &["did not finish within 3 s", "step switch"]).await;
    scenario.teardown();
}
