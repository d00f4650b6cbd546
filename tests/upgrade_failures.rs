//! Failures injected into the whole upgrade (named fail points, feature
//! `failpoints`, which `make test` builds in): each ends with 7.1 running,
//! its program tree identical to before (manifest compare) and `pg_dumpall`
//! identical to before. Runs killed at the fail points, and `recover`
//! after them, are in `tests/kill_matrix.rs`.
//!
//! Fail points are process-wide: every test holds a `FailScenario`, which
//! runs them one at a time.

use imss_fixture::harness::flow;
use imss_fixture::harness::{Baseline, FixtureServer, Payload};
use imss_upgrade::files::odbc_ini::DbSettings;
use imss_upgrade::flow::journal::StepJournal;
use imss_upgrade::flow::layout::{BACKUP_DIR, STATE_DIR};
use imss_upgrade::flow::upgrade::run::Outcome;
use imss_upgrade::system::pg;

fn built_server() -> (FixtureServer, Payload, Baseline) {
    built_server_arranged(|_| {})
}

/// A server built, then `arrange`d as an administrator might have it,
/// then started.
fn built_server_arranged(
    arrange: impl FnOnce(&FixtureServer),
) -> (FixtureServer, Payload, Baseline) {
    if !cfg!(feature = "failpoints") {
        panic!(
            "these tests need the fail points: run them with `--features imss-upgrade/failpoints` (make test does)"
        );
    }
    let server =
        FixtureServer::build(&["--history-rows", "2000", "--tree-mb", "1", "--days", "3"]).unwrap();
    arrange(&server);
    server.start().unwrap();
    let payload = Payload::build().unwrap();
    let before = Baseline::take(&server).unwrap();
    (server, payload, before)
}

/// 7.1 runs, takes mail, and is what it was.
fn assert_back_on_71(server: &FixtureServer, payload: &Payload, before: &Baseline) {
    if let Err(err) = before.check_back_on_71(server, payload) {
        panic!("{err:#}");
    }
}

async fn failure_at(point: &str) {
    let scenario = fail::FailScenario::setup();
    let (server, payload, before) = built_server();
    fail::cfg(point, "return").unwrap();
    let err = flow::upgrade(&payload.context(&server).unwrap())
        .await
        .expect_err("the injected failure must fail the upgrade");
    scenario.teardown();
    let text = format!("{err:#}");
    assert!(text.contains(&format!("fail point {point}")), "{text}");
    assert!(text.contains("was rolled back: 7.1 runs"), "{text}");
    assert_back_on_71(&server, &payload, &before);
    let journal = StepJournal::load(&server.root().resolve(STATE_DIR).unwrap())
        .unwrap()
        .unwrap();
    assert!(journal.failure.as_deref().unwrap_or("").contains(point));
}

#[tokio::test]
async fn a_failure_before_the_snapshot_rolls_back_to_71_as_it_was() {
    failure_at("before-snapshot").await;
}

#[tokio::test]
async fn a_failure_in_the_middle_of_the_migration_rolls_back_to_71_as_it_was() {
    failure_at("migrate-window-copied").await;
}

#[tokio::test]
async fn a_failure_at_the_health_check_rolls_back_to_71_as_it_was() {
    failure_at("switch-health-check").await;
}

/// A policy event whose transaction took its id before the presync but
/// commits while the presync waits for the transactions open on 7.1 (its
/// fence) is copied, and reaches 9.1: the downtime only looks above the
/// fence's low-water mark.
#[tokio::test]
async fn a_policy_event_committed_while_the_presync_waits_reaches_91() {
    let scenario = fail::FailScenario::setup();
    let (server, payload, _before) = built_server();
    let settings = DbSettings::load(&server.root()).unwrap();
    let (commit, committed) = std::sync::mpsc::channel::<()>();
    let (inserted, wait_inserted) = std::sync::mpsc::channel::<i32>();
    let open_transaction = {
        let settings = settings.clone();
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                let client = pg::connect(&settings).await.unwrap();
                client.batch_execute("BEGIN").await.unwrap();
                let id: i32 = client
                    .query_one(
                        "INSERT INTO tb_policy_event (event_time, message_id, scanner_host, sender, \
                         recipients, subject, rule_id, rule_name, action, reason, message_size) \
                         SELECT now() AT TIME ZONE 'UTC', '<late-commit@test>', scanner_host, sender, \
                         recipients, subject, rule_id, rule_name, action, reason, message_size \
                         FROM tb_policy_event ORDER BY event_id DESC LIMIT 1 RETURNING event_id",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                inserted.send(id).unwrap();
                committed.recv().unwrap();
                client.batch_execute("COMMIT").await.unwrap();
            })
        })
    };
    let late_id = wait_inserted.recv().unwrap();
    let commit = std::sync::Mutex::new(Some(commit));
    let waited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let saw_wait = waited.clone();
    fail::cfg_callback("presync-fence-waiting", move || {
        saw_wait.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(commit) = commit.lock().unwrap().take() {
            commit.send(()).unwrap();
        }
    })
    .unwrap();
    let outcome = flow::upgrade(&payload.context(&server).unwrap()).await;
    scenario.teardown();
    open_transaction.join().unwrap();
    assert!(
        waited.load(std::sync::atomic::Ordering::SeqCst),
        "the presync did not wait for the open transaction"
    );
    let Ok(Outcome::Upgraded(report)) = outcome else {
        panic!("the upgrade did not complete: {outcome:?}");
    };
    let client_91 = pg::connect(&DbSettings::load(&server.root()).unwrap())
        .await
        .unwrap();
    let found: i64 = client_91
        .query_one(
            "SELECT count(*) FROM policy_event WHERE event_id = $1 AND source = '7.1'",
            &[&i64::from(late_id)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(found, 1, "event {late_id} did not reach 9.1: {report:?}");
}

/// Item 7 of the crash-safety issue: the switch's undo deleted the
/// untouched 7.1 tree it had set aside and restored the tar, which keeps
/// no extended attributes, capabilities, ACLs or hard links; with a
/// damaged archive no 7.1 tree was left anywhere. The tree set aside is
/// renamed back (the same inodes), and the archive is not needed for it.
#[tokio::test]
async fn a_failed_switch_renames_the_71_tree_back_even_with_a_damaged_archive() {
    let scenario = fail::FailScenario::setup();
    let (server, payload, before) = built_server();
    let root = server.root();
    let imss_ini = root.resolve("/opt/trend/imss/config/imss.ini").unwrap();
    let inode_before = imss_fixture::harness::oracle::device_and_inode(&imss_ini).unwrap();
    let archive = root.resolve(BACKUP_DIR).unwrap().join("snapshot.tar");
    fail::cfg_callback("switch-swapped", move || {
        // Damage the archive once the 7.1 tree is set aside.
        let mut bytes = std::fs::read(&archive).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&archive, bytes).unwrap();
    })
    .unwrap();
    fail_at_the_health_check(scenario, &server, &payload).await;
    assert_back_on_71(&server, &payload, &before);
    assert_eq!(
        imss_fixture::harness::oracle::device_and_inode(&imss_ini).unwrap(),
        inode_before,
        "the 7.1 tree was rewritten from the archive instead of renamed back"
    );
}

/// A program tree reached through a link, `/opt/trend/imss ->
/// imss-7.1.0` (root's, as an administrator who keeps versioned installs
/// makes it). The swap renamed the tree the link leads to, but its undo
/// renamed the link: 7.1 came back as a plain directory, the link was
/// gone, and the 9.1 tree stayed behind in `imss-7.1.0`. Both ways now
/// go through the link, so a switch that fails after the swap leaves the
/// link, its 7.1 tree (the same inodes) and nothing else.
#[tokio::test]
async fn a_failed_switch_puts_71_back_behind_a_linked_program_tree() {
    let scenario = fail::FailScenario::setup();
    let (server, payload, before) = built_server_arranged(|server| {
        let link = server.root().resolve_parent("/opt/trend/imss").unwrap();
        std::fs::rename(&link, link.with_file_name("imss-7.1.0")).unwrap();
        std::os::unix::fs::symlink("imss-7.1.0", &link).unwrap();
    });
    let link = server.root().resolve_parent("/opt/trend/imss").unwrap();
    let imss_ini = link.with_file_name("imss-7.1.0").join("config/imss.ini");
    let inode_before = imss_fixture::harness::oracle::device_and_inode(&imss_ini).unwrap();
    fail_at_the_health_check(scenario, &server, &payload).await;
    assert_eq!(
        std::fs::read_link(&link).ok(),
        Some(std::path::PathBuf::from("imss-7.1.0")),
        "/opt/trend/imss is no longer the administrator's link"
    );
    assert_eq!(
        imss_fixture::harness::oracle::device_and_inode(&imss_ini).unwrap(),
        inode_before,
        "the 7.1 tree behind the link was not renamed back"
    );
    let mut left: Vec<String> = std::fs::read_dir(link.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["imss", "imss-7.1.0"],
        "the switch left something in /opt/trend"
    );
    assert_back_on_71(&server, &payload, &before);
}

/// Fails the upgrade of `server` where 9.1 has started and its health
/// check is next, as a 9.1 that takes no mail would, and checks that the
/// run says it rolled back. Ends `scenario`.
async fn fail_at_the_health_check(
    scenario: fail::FailScenario<'_>,
    server: &FixtureServer,
    payload: &Payload,
) {
    fail::cfg("switch-health-check", "return").unwrap();
    let err = flow::upgrade(&payload.context(server).unwrap())
        .await
        .expect_err("the injected failure must fail the upgrade");
    scenario.teardown();
    let text = format!("{err:#}");
    assert!(text.contains("was rolled back: 7.1 runs"), "{text}");
}

/// Files PostgreSQL rewrites whenever it starts, whatever it is asked: the
/// control file (its state), the relation cache's init files, the
/// NOTIFY and subtransaction logs (zeroed), the statistics files (read and
/// removed), the options of the last start and the pid file, and so the
/// modification times of their directories. Nothing of the database's
/// contents is among them.
fn rewritten_by_every_start(line: &str) -> bool {
    let path = line.split('\t').next().unwrap_or("");
    let name = path.rsplit('/').next().unwrap_or(path);
    let kind = line.split('\t').nth(1).unwrap_or("");
    kind == "dir"
        || matches!(
            path,
            "global/pg_control" | "postmaster.opts" | "pg_notify/0000" | "pg_subtrans/0000"
        )
        || name == "pg_internal.init"
        || path.starts_with("pg_stat/")
}

/// Item 12 of the crash-safety issue: PostgreSQL 10, started "read-only"
/// from the backup for the migration, ran autovacuum and checkpoints into
/// it (relation files, statistics, multixact and replication-origin
/// files). When the upgrade completes, nothing of the 7.1 data directory
/// in the backup may have changed but what every start of PostgreSQL
/// rewrites.
#[tokio::test]
async fn the_71_data_directory_in_the_backup_is_left_as_the_snapshot_moved_it() {
    let scenario = fail::FailScenario::setup();
    let (server, payload, _before) = built_server();
    let moved = server.root().resolve(BACKUP_DIR).unwrap().join("pgdata-71");
    let at_snapshot = std::sync::Arc::new(std::sync::Mutex::new(None));
    let taken = at_snapshot.clone();
    let dir = moved.clone();
    fail::cfg_callback("after-snapshot", move || {
        *taken.lock().unwrap() = Some(imss_fixture::harness::oracle::tree_state(&dir).unwrap());
    })
    .unwrap();
    let outcome = flow::upgrade(&payload.context(&server).unwrap()).await;
    scenario.teardown();
    assert!(outcome.is_ok(), "{outcome:?}");
    let before = at_snapshot.lock().unwrap().take().unwrap();
    let after = imss_fixture::harness::oracle::tree_state(&moved).unwrap();
    let changed: Vec<&str> = after
        .lines()
        .filter(|line| !before.lines().any(|l| l == *line) && !rewritten_by_every_start(line))
        .collect();
    let gone: Vec<&str> = before
        .lines()
        .filter(|line| !after.lines().any(|l| l == *line) && !rewritten_by_every_start(line))
        .collect();
    assert!(
        gone.is_empty(),
        "entries changed or went:\n{}",
        gone.join("\n")
    );
    assert!(
        changed.is_empty(),
        "the migration wrote into the 7.1 data directory in the backup:\n{}",
        changed.join("\n")
    );
}

/// A bundled BIND configuration that `named` would refuse is caught by
/// `named-checkconf` once the tree is in place, before 9.1 starts, and the
/// run rolls back to 7.1 exactly: no BIND working directory, no key left.
#[tokio::test]
async fn an_invalid_bind_configuration_is_caught_by_named_checkconf_and_rolled_back() {
    let scenario = fail::FailScenario::setup();
    let (server, payload, before) = built_server();
    let named_conf = server
        .root()
        .resolve("/opt/trend/imss/bind/etc/named.conf")
        .unwrap();
    fail::cfg_callback("switch-swapped", move || {
        let text = std::fs::read_to_string(&named_conf).unwrap();
        std::fs::write(
            &named_conf,
            text.replace("recursion yes;", "recursion maybe;"),
        )
        .unwrap();
    })
    .unwrap();
    let err = flow::upgrade(&payload.context(&server).unwrap())
        .await
        .expect_err("an invalid configuration must fail the upgrade");
    scenario.teardown();
    let text = format!("{err:#}");
    assert!(text.contains("does not pass named-checkconf"), "{text}");
    assert!(
        text.contains("maybe"),
        "named-checkconf's words are kept: {text}"
    );
    assert!(text.contains("was rolled back: 7.1 runs"), "{text}");
    assert_back_on_71(&server, &payload, &before);
    assert!(!server.root().resolve("/var/imss/bind").unwrap().exists());
}
