//! Failures injected into the whole upgrade (named fail points, feature
//! `failpoints`, which `make test` builds in): each ends with 7.1 running,
//! its program tree identical to before (manifest compare) and `pg_dumpall`
//! identical to before. An interrupted run (a panic at a fail point, as a
//! crash would leave it) is settled by `recover`.
//!
//! Fail points are process-wide: every test holds a `FailScenario`, which
//! runs them one at a time.

use imss_fixture::harness::flow;
use imss_fixture::harness::{FixtureServer, Payload};
use imss_upgrade::files::imss_ini::ProductInfo;
use imss_upgrade::files::odbc_ini::DbSettings;
use imss_upgrade::flow::health;
use imss_upgrade::flow::journal::{RunState, StepJournal};
use imss_upgrade::flow::recover::Recovery;
use imss_upgrade::flow::rollback_manifest::RollbackManifest;
use imss_upgrade::flow::run::Outcome;
use imss_upgrade::support::constants::BACKUP_DIR;
use imss_upgrade::system::pg;

/// The 7.1 server's state that a rollback must give back.
struct Before {
    tree: String,
    dump: String,
}

fn built_server() -> (FixtureServer, Payload, Before) {
    if !cfg!(feature = "failpoints") {
        panic!(
            "these tests need the fail points: run them with `--features imss-upgrade/failpoints` (make test does)"
        );
    }
    let server =
        FixtureServer::build(&["--history-rows", "2000", "--tree-mb", "1", "--days", "3"]).unwrap();
    server.start().unwrap();
    let payload = Payload::build().unwrap();
    let before = Before {
        tree: server.tree_state("/opt/trend/imss").unwrap(),
        dump: server.dump_all().unwrap(),
    };
    (server, payload, before)
}

/// The last lines of a log file under the server's root.
fn log_tail(server: &FixtureServer, path: &str) -> String {
    let text = std::fs::read_to_string(server.root().resolve(path).unwrap()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// 7.1 runs, takes mail, and is what it was.
fn assert_back_on_71(server: &FixtureServer, payload: &Payload, before: &Before) {
    let ctx = payload.context(server).unwrap();
    let root = server.root();
    assert_eq!(ProductInfo::load(&root).unwrap().version, "7.1");
    health::check_accepting(&ctx).expect("7.1 takes mail after the rollback");
    let tree = server.tree_state("/opt/trend/imss").unwrap();
    assert!(
        tree == before.tree,
        "the 7.1 program tree differs from before the upgrade"
    );
    assert!(
        server.dump_all().unwrap() == before.dump,
        "pg_dumpall of the 7.1 cluster differs from before the upgrade"
    );
    let journal = StepJournal::load(&root.resolve(BACKUP_DIR).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(journal.state, RunState::RolledBack);
    assert_eq!(
        std::fs::read_to_string(root.resolve("/var/imss/pgdata/PG_VERSION").unwrap()).unwrap(),
        "10\n"
    );
    assert!(!root.resolve("/opt/trend/imss.91-staging").unwrap().exists());
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
    let journal = StepJournal::load(&server.root().resolve(BACKUP_DIR).unwrap())
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

/// Runs the upgrade until it dies at `point` (a panic: nothing after it
/// runs, as after a crash or a power loss), then `recover`.
async fn interrupted_at(server: &FixtureServer, payload: &Payload, point: &str) -> Recovery {
    fail::cfg(point, "panic").unwrap();
    let ctx = payload.context(server).unwrap();
    let run = tokio::spawn(async move {
        flow::upgrade(&ctx)
            .await
            .map(|outcome| format!("{outcome:?}"))
    });
    let died = run.await.expect_err("the run must die at the fail point");
    assert!(died.is_panic(), "{point}: {died}");
    fail::remove(point);
    flow::recover(&payload.context(server).unwrap())
        .await
        .unwrap_or_else(|err| panic!("recover after {point}: {err:#}"))
}

/// One server goes through a run that dies at each fail point in turn:
/// `recover` rolls back every run that died before the switch was done and
/// finishes every later one (which `imss-rollback` then reverts), and each
/// time 7.1 comes back exactly as it was.
#[tokio::test]
async fn recover_settles_a_run_interrupted_at_every_fail_point() {
    let scenario = fail::FailScenario::setup();
    let (server, payload, before) = built_server();
    let ctx = payload.context(&server).unwrap();
    let switch_done_from = imss_upgrade::flow::failpoints::POINTS
        .iter()
        .position(|p| *p == "before-register-rollback")
        .unwrap();
    for (index, point) in imss_upgrade::flow::failpoints::POINTS.iter().enumerate() {
        let recovery = interrupted_at(&server, &payload, point).await;
        if index < switch_done_from {
            assert_eq!(recovery, Recovery::RolledBack, "{point}");
        } else {
            assert_eq!(recovery, Recovery::Finished, "{point}");
            assert_eq!(ProductInfo::load(&server.root()).unwrap().version, "9.1");
            if let Err(err) = health::send_test_mail(&ctx, "after-recover") {
                panic!(
                    "9.1 does not take mail after recovering from {point}: {err:#}\n\
                     the scanner's log ends:\n{}",
                    log_tail(&server, "/var/imss/run/scanner.log")
                );
            }
            assert_eq!(
                flow::recover(&ctx).await.unwrap(),
                Recovery::AlreadySettled(RunState::Completed)
            );
            let registered =
                RollbackManifest::load(&server.root().resolve(BACKUP_DIR).unwrap()).unwrap();
            assert_eq!(
                (registered.from.build, registered.to.build),
                (1808, 1195),
                "{point}: the rollback manifest names the releases"
            );
            flow::roll_back(&ctx)
                .await
                .unwrap_or_else(|err| panic!("imss-rollback after {point}: {err:#}"));
        }
        assert_back_on_71(&server, &payload, &before);
    }
    scenario.teardown();
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
