//! The background transfer of the older history on model servers under
//! `--root`, where `imss-upgrade transfer run` works in the foreground: it
//! completes with every 7.1 row in 9.1 exactly once, under live mail; it
//! survives SIGKILL at random moments; its pause outlives a restart; a row
//! 9.1 refuses is kept and reported; `status --json` follows it; `finalize`
//! waits for it; a rollback in its middle ends on 7.1 exactly.
//!
//! "Exactly once" is judged by the oracle (`imss_fixture::harness::oracle`), which
//! shares nothing with the transfer: 7.1's rows as they were before the
//! upgrade, mapped into 9.1's by the oracle's own SQL, set against what 9.1
//! holds with `EXCEPT ALL` both ways, right after the upgrade (the window
//! it copied) and after the transfer (every row).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Timelike, Utc};
use imss_fixture::harness::oracle::{self, History71, HistoryOracle, Part, PgAddress, Piece};
use imss_fixture::harness::query::{column, missing, value};
use imss_fixture::harness::scenario::{Scenario, Upgradable};
use imss_fixture::harness::traffic::{self, LoggedSender, TrafficOptions};
use imss_fixture::harness::{
    self, Baseline, FixtureServer, HelperProcess, Payload, TmpfsMount, flow,
};
use imss_upgrade::files::odbc_ini::DbSettings;
use imss_upgrade::flow::layout::{BACKUP_DIR, STATE_DIR};
use imss_upgrade::system::pg;
use serde_json::Value;

const HELPER: &str = env!("CARGO_BIN_EXE_imss-upgrade");

/// A started 7.1 server with `rows` policy events over 30 days (so nearly
/// all of them are older than the window), its payload, and its context.
fn server(rows: u64) -> (FixtureServer, Payload, imss_upgrade::flow::context::Context) {
    let Upgradable {
        server,
        payload,
        ctx,
        ..
    } = Scenario::new()
        .history_rows(rows)
        .tree_mb(0)
        .days(30)
        .build();
    (server, payload, ctx)
}

/// 7.1's history before the upgrade, as the oracle read it, and where the
/// upgrade's 24-hour window began.
struct Before {
    history: History71,
    cutoff: NaiveDateTime,
}

/// A server of `rows` policy events as [`server`] builds it, upgraded
/// ([`upgrade_checked`]): what [`server`] returns, and its history before.
async fn upgraded_server(
    rows: u64,
) -> (
    FixtureServer,
    Payload,
    imss_upgrade::flow::context::Context,
    Before,
) {
    let (server, payload, ctx) = server(rows);
    let history = capture_71(&server).await;
    let before = upgrade_checked(&server, &ctx, history).await;
    (server, payload, ctx, before)
}

/// Where the oracle reaches the database the server's `odbc.ini` names
/// (7.1's before the upgrade, 9.1's after).
fn address(server: &FixtureServer) -> PgAddress {
    harness::pg_address(&DbSettings::load(&server.root()).unwrap())
}

/// Every row of the running 7.1 server's history, read by the oracle.
async fn capture_71(server: &FixtureServer) -> History71 {
    History71::capture(&address(server)).await.unwrap()
}

/// Upgrades the server, then checks with the oracle that 9.1 holds exactly
/// the window of 7.1's `history` the upgrade copied: the rows stamped at
/// or after 24 hours before the run began, every one once, none older.
async fn upgrade_checked(
    server: &FixtureServer,
    ctx: &imss_upgrade::flow::context::Context,
    history: History71,
) -> Before {
    let began = Utc::now();
    flow::upgrade(ctx).await.expect("the upgrade succeeds");
    let cutoff = window_start(server, began, Utc::now());
    let before = Before { history, cutoff };
    assert_91_holds(server, &before, &[Piece::standard(Part::Window(cutoff))]).await;
    before
}

/// Where the upgrade's window began: 24 hours before the run began, as its
/// step journal records it, which must lie between `began` and `ended` (what
/// the test saw), to the microsecond PostgreSQL keeps.
fn window_start(
    server: &FixtureServer,
    began: DateTime<Utc>,
    ended: DateTime<Utc>,
) -> NaiveDateTime {
    let path = server
        .root()
        .resolve(STATE_DIR)
        .unwrap()
        .join("upgrade-state.json");
    let journal: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let started: DateTime<Utc> = journal["started_at"]
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("no start time in {}: {journal}", path.display()));
    assert!(
        began <= started && started <= ended,
        "the journal says the run began at {started}, outside {began} to {ended}"
    );
    let start = (started - chrono::Duration::hours(24)).naive_utc();
    start
        .with_nanosecond(start.nanosecond() / 1000 * 1000)
        .unwrap()
}

/// The tree at `dir` as the oracle sees it, paths relative to `dir`,
/// modification times to the second.
fn tree_to_the_second(dir: &Path) -> String {
    let prefix = format!("{}/", dir.display());
    oracle::tree_entries(dir)
        .unwrap()
        .into_iter()
        .map(|mut entry| {
            entry.path = entry
                .path
                .strip_prefix(&prefix)
                .unwrap_or_default()
                .to_string();
            entry.mtime.1 = 0;
            entry.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks with the oracle that the rows 9.1 holds from 7.1 are exactly
/// `pieces` of the history before the upgrade, mapped.
async fn assert_91_holds(server: &FixtureServer, before: &Before, pieces: &[Piece]) {
    let oracle = HistoryOracle::load(&address(server), &before.history)
        .await
        .unwrap();
    if let Err(err) = oracle.check(pieces).await {
        panic!("{err:#}");
    }
}

/// Checks with the oracle that 9.1 holds every row of 7.1's history once,
/// mapped, but the policy events whose action codes 9.1 has no word for.
async fn assert_every_row_once(server: &FixtureServer, before: &Before) {
    assert_91_holds(server, before, &[Piece::standard(Part::All)]).await;
}

/// Runs `imss-upgrade transfer run` to its end, which must succeed, then
/// [`assert_every_row_once`].
async fn transfer_completes_with_every_row_once(server: &FixtureServer, before: &Before) {
    let (code, output) = helper(server, &["transfer", "run"]);
    assert_eq!(code, 0, "{output}");
    assert_every_row_once(server, before).await;
}

/// Adds a policy event ten days old with action code `action` to the
/// running 7.1 server, committed after every row of the window, so its id
/// is above theirs (as a late commit's is); its id.
async fn add_late_old_event(root: &imss_upgrade::support::root::Root, action: i16) -> i64 {
    let client = pg::connect(&DbSettings::load(root).unwrap()).await.unwrap();
    let id: i32 = value(&client, "INSERT INTO tb_policy_event (event_time, message_id, scanner_host, sender, recipients, action) \
             VALUES (now() AT TIME ZONE 'UTC' - interval '10 days', '<late@example.com>', 'imss71', \
                     'a@example.com', 'b@example.com,c@example.com', $1) RETURNING event_id", &[&action]).await;
    i64::from(id)
}

fn root_arg(server: &FixtureServer) -> Vec<OsString> {
    vec!["--root".into(), server.root_dir().into_os_string()]
}

/// `imss-upgrade transfer run` in a process of its own, reporting every
/// second, with `extra` arguments.
fn start_transfer(server: &FixtureServer, extra: &[&str]) -> HelperProcess {
    let mut args = root_arg(server);
    args.extend(["transfer", "run", "--report-every", "1"].map(OsString::from));
    args.extend(extra.iter().map(OsString::from));
    HelperProcess::start(Path::new(HELPER), &args, None, None).unwrap()
}

/// Runs `imss-upgrade` with `args` under the server's root: its exit code
/// and what it printed.
fn helper(server: &FixtureServer, args: &[&str]) -> (i32, String) {
    run_under_root(HELPER, server, args, None)
}

/// Runs `program` (`imss-upgrade` or `imss-rollback`) with `args` under the
/// server's root, with `FAILPOINTS` set to `failpoints` when given: its
/// exit code and what it printed, standard output then standard error.
fn run_under_root(
    program: &str,
    server: &FixtureServer,
    args: &[&str],
    failpoints: Option<&str>,
) -> (i32, String) {
    let output = under_root(program, server, args, failpoints);
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// [`run_under_root`], its standard output and error apart.
fn under_root(
    program: &str,
    server: &FixtureServer,
    args: &[&str],
    failpoints: Option<&str>,
) -> std::process::Output {
    let mut command = std::process::Command::new(program);
    command.args(root_arg(server)).args(args);
    if let Some(points) = failpoints {
        command.env("FAILPOINTS", points);
    }
    command.output().unwrap()
}

/// `imss-upgrade transfer run` with `FAILPOINTS` set to `failpoints`,
/// which must stop it at its fail point: what it wrote to standard error
/// names the point.
fn transfer_stopped_by(server: &FixtureServer, failpoints: &str) {
    let point = failpoints.split('=').next().unwrap_or(failpoints);
    let stopped = under_root(HELPER, server, &["transfer", "run"], Some(failpoints));
    assert!(
        String::from_utf8_lossy(&stopped.stderr).contains(point),
        "{stopped:?}"
    );
}

/// `imss-upgrade status --json`'s `transfer` object.
fn transfer_status(server: &FixtureServer) -> Value {
    let (code, output) = helper(server, &["status", "--json"]);
    assert_eq!(code, 0, "{output}");
    let status: Value = serde_json::from_str(&output[..output.rfind('}').unwrap() + 1])
        .unwrap_or_else(|err| panic!("{err}: {output}"));
    status["transfer"].clone()
}

/// Waits until `status --json` shows a transfer for which `ready` holds.
fn wait_for_status(server: &FixtureServer, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = transfer_status(server);
        if ready(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed {what}; last: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether the transfer is stalled for a known cause other than its
/// start: on a busy machine, starting PostgreSQL 10, or a first batch that
/// is merely slow (a stall without a cause), may take longer than a short
/// stall limit, and those stalls are not the one a test waits for.
fn stalled_past_start(status: &Value) -> bool {
    status["state"] == "stalled"
        && status["progress"]["cause"]
            .as_str()
            .is_some_and(|cause| !cause.starts_with("starting"))
}

fn rows_done(status: &Value) -> i64 {
    status["progress"]["rows_done"].as_i64().unwrap_or(0)
}

/// The transfer moves every older row under live mail, the ones committed
/// after the window's rows too, keeps and reports the row 9.1 refuses
/// (action code 9), and `status --json` shows it at the start, in the
/// middle and at the end; the done file keeps a second run from working.
#[tokio::test]
async fn the_transfer_completes_under_mail_with_a_refused_row_kept_and_status_throughout() {
    let (server, _payload, ctx) = server(30_000);
    let root = server.root();
    let odd = add_late_old_event(&root, 9).await;
    // Checked by the checksums below, being the last of the table's ids.
    add_late_old_event(&root, 2).await;
    let history = capture_71(&server).await;
    let before = upgrade_checked(&server, &ctx, history).await;
    let oracle = HistoryOracle::load(&address(&server), &before.history)
        .await
        .unwrap();
    let window = oracle.rows_71(Part::Window(before.cutoff)).await.unwrap();
    let older = oracle.rows_71(Part::Older(before.cutoff)).await.unwrap();
    assert!(
        window > 0 && window < older / 10,
        "the window holds {window} rows, the older history {older}"
    );
    assert_eq!(
        oracle
            .events_without_word(&Piece::standard(Part::All))
            .await
            .unwrap(),
        [odd],
        "the one row 9.1 must refuse"
    );
    drop(oracle);
    let status = transfer_status(&server);
    assert!(
        status.is_null(),
        "a transfer shows before any ran: {status}"
    );

    let sender = LoggedSender::start(&TrafficOptions::loopback(
        server.smtp_port,
        20.0,
        Duration::from_secs(600),
    ))
    .unwrap();

    let transfer = start_transfer(&server, &["--max-rows-per-sec", "8000"]);
    let start = wait_for_status(&server, "the start", |s| {
        s["progress"]["rows_total"]
            .as_i64()
            .is_some_and(|total| total > 0)
    });
    assert_eq!(start["running"], true, "{start:#}");
    assert_eq!(start["paused"], false, "{start:#}");
    let total = start["progress"]["rows_total"].as_i64().unwrap();
    assert_eq!(total, older, "{start:#}");
    assert_eq!(start["progress"]["max_rows_per_sec"], 8000);
    assert_eq!(start["progress"]["tables"].as_array().unwrap().len(), 3);

    let middle = wait_for_status(&server, "the middle", |s| {
        rows_done(s) > 0
            && rows_done(s) < total
            && s["progress"]["rate_rows_per_sec"].as_f64() > Some(0.0)
    });
    assert!(
        ["copying", "throttled"].contains(&middle["state"].as_str().unwrap()),
        "{middle:#}"
    );
    assert_eq!(
        middle["progress"]["rows_left"].as_i64().unwrap(),
        total - rows_done(&middle),
        "{middle:#}"
    );
    assert!(
        middle["progress"]["eta_seconds"].as_u64().is_some(),
        "{middle:#}"
    );
    assert!(
        middle["progress"]["last_commit_at"].is_string(),
        "{middle:#}"
    );
    // The limit holds over the run: a batch (at most a second's worth) may
    // run ahead of it, never more. The rate of one report interval may show
    // two batches in one second.
    let at = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(middle["progress"][field].as_str().unwrap()).unwrap()
    };
    let seconds = (at("updated_at") - at("started_at")).as_seconds_f64();
    assert!(
        rows_done(&middle) as f64 <= 8000.0 * (seconds + 1.0),
        "the rate limit does not hold: {} rows in {seconds:.1} s: {middle:#}",
        rows_done(&middle)
    );

    let ended = transfer.wait(Duration::from_secs(120)).unwrap();
    assert!(ended.status.success(), "{}", ended.output);
    assert!(ended.output.contains("1 rejected"), "{}", ended.output);
    assert!(
        ended.output.contains("refused 1 rows of tb_policy_event"),
        "{}",
        ended.output
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (traffic, accepted) = sender.finish().unwrap();

    let end = transfer_status(&server);
    assert_eq!(end["state"], "done", "{end:#}");
    assert_eq!(end["running"], false, "{end:#}");
    assert_eq!(end["completed"]["rows_done"], total, "{end:#}");
    assert_eq!(end["completed"]["rows_rejected"], 1, "{end:#}");
    assert_eq!(end["progress"]["rows_left"], 0, "{end:#}");

    // Every 7.1 row but the refused one is in 9.1, once, as it was.
    assert_every_row_once(&server, &before).await;
    let client = server.database().await.unwrap();
    let rejected = client
        .query_one(
            "SELECT row_id, reason, row_71 FROM upgrade_transfer.rejected WHERE table_name = 'tb_policy_event'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rejected.get::<_, i64>(0), odd);
    assert!(rejected.get::<_, String>(1).contains("action code 9"));
    let row_71: Value = serde_json::from_str(&rejected.get::<_, String>(2)).unwrap();
    assert_eq!(row_71["event_id"], odd, "{row_71}");
    assert_eq!(row_71["action"], 9, "{row_71}");
    assert_eq!(
        row_71["recipients"], "b@example.com,c@example.com",
        "{row_71}"
    );

    // Live mail during the transfer: every accepted mail is in 9.1.
    assert!(traffic.accepted > 20, "{traffic:?}");
    assert_eq!(traffic.refused + traffic.failed, 0, "{traffic:?}");
    let missing = missing(
        &accepted,
        &client,
        "SELECT message_id FROM policy_event WHERE source = '9.1' AND message_id LIKE '<traffic-%'",
    )
    .await;
    assert!(missing.is_empty(), "accepted, not in 9.1: {missing:?}");

    // Done is done: PostgreSQL 10 is stopped, and a second run does nothing.
    let backup_71 = root.resolve(format!("{BACKUP_DIR}/pgdata-71")).unwrap();
    assert!(!pg::server_running(&backup_71), "PostgreSQL 10 still runs");
    let (code, output) = helper(&server, &["transfer", "run"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("in 9.1 already"), "{output}");
}

/// SIGKILL at 30 random moments, each followed by a new start: in the end
/// no row is lost or duplicated.
#[tokio::test]
async fn a_transfer_killed_at_30_random_moments_ends_with_every_row_once() {
    use rand::{Rng, SeedableRng};
    let (server, _payload, _ctx, before) = upgraded_server(40_000).await;

    let seed: u64 = std::env::var("IMSS_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("kill moments from IMSS_KILL_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // A kill that lands before a run's first COMMIT (while PostgreSQL 10
    // starts, which takes long on a busy machine) proves nothing of a batch
    // in flight: the sweep goes on past 30 kills until 15 have landed in a
    // run that had committed a batch.
    const KILLS: usize = 30;
    const AFTER_A_COMMIT: usize = 15;
    const MOST_KILLS: usize = 90;
    let mut progress: Vec<i64> = Vec::new();
    let mut after_a_commit = 0;
    while progress.len() < KILLS || (after_a_commit < AFTER_A_COMMIT && progress.len() < MOST_KILLS)
    {
        // Slow enough that 90 runs of at most 2 s cannot finish it.
        let transfer = start_transfer(&server, &["--max-rows-per-sec", "400"]);
        std::thread::sleep(Duration::from_millis(rng.random_range(100..2_000)));
        let ended = transfer.kill9().unwrap();
        assert!(
            !ended.status.success(),
            "the transfer ended before it was killed: {}",
            ended.output
        );
        let done = rows_done(&transfer_status(&server));
        if done > progress.last().copied().unwrap_or(0) {
            after_a_commit += 1;
        }
        progress.push(done);
    }
    eprintln!("rows done after each kill: {progress:?}");
    assert!(
        after_a_commit >= AFTER_A_COMMIT,
        "only {after_a_commit} of {} kills came after the killed run had committed a batch \
         (IMSS_KILL_SEED={seed}): {progress:?}",
        progress.len()
    );
    assert!(
        progress.windows(2).all(|pair| pair[0] <= pair[1]),
        "status showed the transfer going back: {progress:?}"
    );
    let ended = start_transfer(&server, &[])
        .wait(Duration::from_secs(120))
        .unwrap();
    assert!(ended.status.success(), "{}", ended.output);
    assert!(ended.output.contains("0 rejected"), "{}", ended.output);
    eprintln!("checking every row once; the kills came from IMSS_KILL_SEED={seed}");
    assert_every_row_once(&server, &before).await;
}

/// A pause holds across a restart of the transfer; resumed, it completes.
/// `finalize` is refused until then, and afterwards exports the backup
/// (verified) and removes it, leaving 9.1 running without rollback.
#[tokio::test]
async fn a_pause_outlives_a_restart_and_finalize_waits_for_the_transfer() {
    let (server, _payload, ctx) = server(20_000);
    let root = server.root();
    flow::upgrade(&ctx).await.expect("the upgrade succeeds");

    let (code, output) = helper(&server, &["transfer", "pause"]);
    assert_eq!(code, 0, "{output}");
    let transfer = start_transfer(&server, &[]);
    let paused = wait_for_status(&server, "the pause", |s| s["progress"]["state"] == "paused");
    assert_eq!(paused["paused"], true, "{paused:#}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        rows_done(&transfer_status(&server)),
        0,
        "a paused transfer moved rows"
    );
    let ended = transfer.terminate().unwrap();
    assert!(ended.status.success(), "{}", ended.output);
    assert!(ended.output.contains("resumes"), "{}", ended.output);

    let (code, output) = helper(&server, &["finalize"]);
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("transfer of the older history is not done"),
        "{output}"
    );
    assert!(root.resolve(BACKUP_DIR).unwrap().exists());

    // Started again, still paused; resumed, it finishes.
    let transfer = start_transfer(&server, &["--stall-after", "1"]);
    let stalled = wait_for_status(&server, "a stall while paused", |s| {
        s["running"] == true && stalled_past_start(s)
    });
    assert!(
        stalled["progress"]["cause"]
            .as_str()
            .unwrap()
            .starts_with("paused"),
        "{stalled:#}"
    );
    assert_eq!(rows_done(&stalled), 0, "{stalled:#}");
    let (code, output) = helper(&server, &["transfer", "resume"]);
    assert_eq!(code, 0, "{output}");
    let ended = transfer.wait(Duration::from_secs(120)).unwrap();
    assert!(ended.status.success(), "{}", ended.output);

    let backup = root.resolve(BACKUP_DIR).unwrap();
    let backup_before = tree_to_the_second(&backup);
    assert!(
        backup_before.contains("\npgdata-71/PG_VERSION\t"),
        "the backup lacks the 7.1 database: {backup_before}"
    );
    let export = tempfile::tempdir().unwrap();
    let export_dir = export.path().join("backup-export");
    let (code, output) = helper(
        &server,
        &["finalize", "--export", &export_dir.to_string_lossy()],
    );
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("finalized"), "{output}");
    // The export holds the backup as it was: GNU tar unpacks it to the
    // same tree, to the second (a tar header keeps no finer mtime).
    let unpacked = export.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let tar = std::process::Command::new("tar")
        .arg("-xf")
        .arg(export_dir.join("snapshot.tar"))
        .arg("-C")
        .arg(&unpacked)
        .args(["--same-owner", "--same-permissions"])
        .output()
        .unwrap();
    assert!(tar.status.success(), "{tar:?}");
    let exported = tree_to_the_second(&unpacked.join(BACKUP_DIR.trim_start_matches('/')));
    assert!(
        exported == backup_before,
        "the export differs from the backup:\n{}",
        oracle::state_difference(&backup_before, &exported, 10)
    );
    assert!(
        !root.resolve(BACKUP_DIR).unwrap().exists(),
        "the backup is still there"
    );
    let mail = traffic::run(&TrafficOptions::loopback(
        server.smtp_port,
        5.0,
        Duration::from_secs(1),
    ))
    .await
    .unwrap();
    assert!(
        mail.accepted > 0 && mail.refused + mail.failed == 0,
        "9.1 does not take mail after finalize: {mail:?}"
    );
    let rollback = under_root(env!("CARGO_BIN_EXE_imss-rollback"), &server, &[], None);
    assert!(!rollback.status.success());
    assert!(
        String::from_utf8_lossy(&rollback.stderr).contains("nothing to roll back"),
        "{rollback:?}"
    );
    let (code, output) = helper(&server, &["finalize"]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("nothing to finalize"), "{output}");
}

/// 9.1 is live while the transfer runs: an end user releases a quarantined
/// message that is across already, and a purge deletes an old policy event
/// that is across. Neither is the transfer's to undo, and neither makes its
/// final comparison fail: each batch is compared as it commits.
#[tokio::test]
async fn rows_9_1_changes_after_their_batch_do_not_fail_the_final_comparison() {
    let (server, _payload, ctx) = server(20_000);
    flow::upgrade(&ctx).await.expect("the upgrade succeeds");
    // Every batch committed, the final comparison not yet made.
    transfer_stopped_by(&server, "transfer-verifying=return");

    let target = server.database().await.unwrap();
    let released = target
        .execute(
            "UPDATE quarantine_message SET released = true \
              WHERE quarantine_id = (SELECT min(q.quarantine_id) FROM quarantine_message q \
                                      WHERE q.source = '7.1' AND NOT q.released \
                                        AND q.quarantine_id <= (SELECT last_id FROM upgrade_transfer.cursor \
                                                                 WHERE table_name = 'tb_quarantine'))",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(released, 1, "no transferred quarantine record to release");
    let purged = target
        .execute(
            "DELETE FROM policy_event WHERE event_id = (SELECT min(event_id) FROM policy_event \
                                                         WHERE source = '7.1')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(purged, 1);

    let (code, output) = helper(&server, &["transfer", "run"]);
    assert_eq!(code, 0, "{output}");
    let status = transfer_status(&server);
    assert_eq!(status["state"], "done", "{status:#}");
}

/// A batch whose rows 9.1 reads back otherwise than 7.1 has them (here
/// through a trigger that rewrites a column on the way in, one that fires
/// whatever the session's replication role) fails before it commits: the
/// transfer ends saying which rows differ, and its cursor stays where it
/// was. With the cause gone, it goes on from there.
#[tokio::test]
async fn a_batch_that_9_1_reads_back_otherwise_fails_before_it_commits() {
    let (server, _payload, _ctx, before) = upgraded_server(5_000).await;
    let target = server.database().await.unwrap();
    let archived_from_71 = "SELECT count(*) FROM archive_message WHERE source = '7.1'";
    let window = value::<i64>(&target, archived_from_71, &[]).await;
    target
        .batch_execute(
            "CREATE FUNCTION public.garble() RETURNS trigger LANGUAGE plpgsql AS \
               $$ BEGIN NEW.subject := NEW.subject || '!'; RETURN NEW; END $$; \
             CREATE TRIGGER garble BEFORE INSERT ON archive_message \
               FOR EACH ROW EXECUTE FUNCTION public.garble(); \
             ALTER TABLE archive_message ENABLE ALWAYS TRIGGER garble",
        )
        .await
        .unwrap();

    let (code, output) = helper(&server, &["transfer", "run"]);
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("the moved rows of the batch of tb_archive"),
        "{output}"
    );
    assert!(output.contains("cursor stays"), "{output}");
    let archive = transfer_status(&server)["progress"]["tables"]
        .as_array()
        .and_then(|tables| tables.iter().find(|t| t["table"] == "tb_archive").cloned())
        .unwrap();
    assert_eq!(archive["rows_done"], 0, "{archive:#}");
    assert_eq!(value::<i64>(&target, archived_from_71, &[]).await, window);

    target
        .batch_execute("DROP TRIGGER garble ON archive_message")
        .await
        .unwrap();
    transfer_completes_with_every_row_once(&server, &before).await;
}

/// `finalize --force` before the transfer ran says what stays behind.
#[tokio::test]
async fn finalize_force_before_the_transfer_says_what_goes_with_the_backup() {
    let (server, _payload, ctx) = server(3_000);
    flow::upgrade(&ctx).await.expect("the upgrade succeeds");
    // A done file that cannot be read (a disk error, an editor) blocks
    // neither `status` nor `finalize --force`: it is named, not trusted.
    let done = server
        .root()
        .resolve(STATE_DIR)
        .unwrap()
        .join("transfer.done");
    std::fs::write(&done, "{\"tables\": [").unwrap();
    let (code, output) = helper(&server, &["status"]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("transfer.done is not a readable summary"),
        "{output}"
    );
    let (code, output) = helper(&server, &["finalize", "--force"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("Forced"), "{output}");
    assert!(!server.root().resolve(BACKUP_DIR).unwrap().exists());
}

/// `imss-rollback` while the transfer works stops it first, and the server
/// ends on 7.1 exactly as it was.
#[tokio::test]
async fn a_rollback_in_the_middle_of_the_transfer_ends_on_71_exactly() {
    let (server, payload, ctx) = server(20_000);
    let baseline = Baseline::take(&server).unwrap();
    flow::upgrade(&ctx).await.expect("the upgrade succeeds");
    let transfer = start_transfer(&server, &["--max-rows-per-sec", "2000"]);
    wait_for_status(&server, "the middle", |s| rows_done(s) > 0);
    flow::roll_back(&ctx).await.expect("the rollback succeeds");
    let ended = transfer.wait(Duration::from_secs(30)).unwrap();
    assert!(
        ended.output.contains("The transfer stopped"),
        "{}",
        ended.output
    );
    baseline.check_back_on_71(&server, &payload).unwrap();
    let (code, output) = helper(&server, &["transfer", "run"]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("rolled back"), "{output}");
}

/// Per history table of the 7.1 database, every row as text by its id,
/// read on the oracle's own connection.
async fn rows_71(server: &FixtureServer) -> Vec<BTreeMap<i64, String>> {
    let client = oracle::connect(&address(server)).await.unwrap();
    oracle::history_71_by_id(&client).await.unwrap()
}

/// A server of `rows` policy events as [`server`] builds it, upgraded:
/// what [`server`] returns, and 7.1's history before ([`rows_71`]).
async fn upgraded_after_reading_rows_71(
    rows: u64,
) -> (
    FixtureServer,
    Payload,
    imss_upgrade::flow::context::Context,
    Vec<BTreeMap<i64, String>>,
) {
    let (server, payload, ctx) = server(rows);
    let before = rows_71(&server).await;
    flow::upgrade(&ctx).await.expect("the upgrade succeeds");
    (server, payload, ctx, before)
}

/// Deletes in 9.1, as its users would, up to `limit` records of `table`
/// (`quarantine_message` or `archive_message`) that came from 7.1 and
/// satisfy `condition`; their ids.
async fn delete_in_91(
    root: &imss_upgrade::support::root::Root,
    table: &str,
    condition: &str,
    limit: i64,
) -> BTreeSet<i64> {
    let client = pg::connect(&DbSettings::load(root).unwrap()).await.unwrap();
    let id = if table == "quarantine_message" {
        "quarantine_id"
    } else {
        "archive_id"
    };
    let sql = format!(
        "DELETE FROM {table} WHERE {id} IN (SELECT {id} FROM {table} \
          WHERE source = '7.1' AND {condition} ORDER BY {id} LIMIT {limit}) RETURNING {id}"
    );
    let deleted: BTreeSet<i64> = column(&client, &sql, &[]).await;
    assert_eq!(deleted.len() as i64, limit, "{sql}");
    deleted
}

/// Moved by the transfer: well older than the 24-hour window.
const MOVED_QUARANTINE: &str = "quarantined_at < now() - interval '2 days'";
const MOVED_ARCHIVE: &str = "archived_at < now() - interval '2 days'";
/// Moved by the upgrade itself: inside the window (the model's 4000
/// events over 30 days have a quarantine record every 9 hours).
const WINDOW_QUARANTINE: &str = "quarantined_at > now() - interval '20 hours'";

/// Deletes in 9.1, as its users would, three quarantine records the
/// transfer moved and one the upgrade moved; their ids.
async fn delete_quarantine_in_91(root: &imss_upgrade::support::root::Root) -> BTreeSet<i64> {
    let mut deleted = delete_in_91(root, "quarantine_message", MOVED_QUARANTINE, 3).await;
    deleted.extend(delete_in_91(root, "quarantine_message", WINDOW_QUARANTINE, 1).await);
    deleted
}

/// `imss-rollback` of `server`, which must succeed.
fn imss_rollback(
    server: &FixtureServer,
    payload: &Payload,
    ctx: &imss_upgrade::flow::context::Context,
) {
    let rollback = std::process::Command::new(env!("CARGO_BIN_EXE_imss-rollback"))
        .args(root_arg(server))
        .arg("--payload")
        .arg(payload.dir())
        .arg("--target-pg-bin")
        .arg(ctx.target_pg_bin.as_path())
        .output()
        .unwrap();
    assert!(rollback.status.success(), "{rollback:?}");
}

/// Checks that 7.1's history after a rollback is `before` less the
/// quarantine and archive records with ids `deleted` (quarantine, archive),
/// every other row as it was.
async fn check_71_less(
    server: &FixtureServer,
    mut before: Vec<BTreeMap<i64, String>>,
    deleted: [&BTreeSet<i64>; 2],
) {
    for (rows, ids) in before[1..].iter_mut().zip(deleted) {
        for id in ids {
            assert!(rows.remove(id).is_some(), "7.1 never had {id}");
        }
    }
    let after = rows_71(server).await;
    for (((table, _), expected), found) in oracle::HISTORY_71_IDS.iter().zip(&before).zip(&after) {
        let gone: Vec<_> = expected
            .keys()
            .filter(|id| !found.contains_key(id))
            .collect();
        let back: Vec<_> = found
            .keys()
            .filter(|id| !expected.contains_key(id))
            .collect();
        let changed: Vec<_> = expected
            .iter()
            .filter(|(id, row)| found.get(id).is_some_and(|now| now != *row))
            .map(|(id, _)| id)
            .collect();
        assert!(
            gone.is_empty() && back.is_empty() && changed.is_empty(),
            "{table} after the rollback: ids gone that 9.1 kept: {gone:?}; ids there that 9.1 \
             deleted (or never had): {back:?}; rows changed: {changed:?}"
        );
    }
}

/// A rollback after the transfer: the quarantine and archive records that
/// 9.1's users deleted once the transfer had moved them (a message
/// released or deleted in EUQ) are gone from 7.1 too, as are those of the
/// window; every other 7.1 row is as it was before the upgrade.
#[tokio::test]
async fn a_rollback_after_the_transfer_removes_from_71_the_moved_records_9_1_deleted() {
    let (server, payload, ctx, before) = upgraded_after_reading_rows_71(4_000).await;
    let root = server.root();
    let (code, output) = helper(&server, &["transfer", "run"]);
    assert_eq!(code, 0, "{output}");

    let quarantine = delete_quarantine_in_91(&root).await;
    let archive = delete_in_91(&root, "archive_message", MOVED_ARCHIVE, 2).await;

    imss_rollback(&server, &payload, &ctx);
    check_71_less(&server, before, [&quarantine, &archive]).await;
}

/// A rollback after part of the transfer: of the older records, only those
/// the transfer moved and 9.1 then deleted go from 7.1; those it had not
/// moved yet, which 9.1 never had, stay.
#[tokio::test]
async fn a_rollback_after_part_of_the_transfer_removes_only_moved_records_9_1_deleted() {
    let (server, payload, ctx, before) = upgraded_after_reading_rows_71(4_000).await;
    let root = server.root();
    // Each table fits one batch: the policy events and the quarantine
    // records commit, the archive records' batch fails.
    transfer_stopped_by(&server, "transfer-batch-settled=2*off->return");
    let target = server.database().await.unwrap();
    let cursor = |table: &'static str| {
        let target = &target;
        async move {
            let sql = format!(
                "SELECT CASE WHEN done THEN 1 WHEN last_id = 0 THEN 0 ELSE -1 END::bigint \
                   FROM upgrade_transfer.cursor WHERE table_name = '{table}'"
            );
            value::<i64>(target, &sql, &[]).await
        }
    };
    assert_eq!(
        cursor("tb_quarantine").await,
        1,
        "quarantine not moved whole"
    );
    assert_eq!(cursor("tb_archive").await, 0, "archive moved in part");

    let quarantine = delete_quarantine_in_91(&root).await;
    let archive = BTreeSet::new();

    imss_rollback(&server, &payload, &ctx);
    check_71_less(&server, before, [&quarantine, &archive]).await;
}

/// SIGKILL once a batch and its cursor are written and checked in 9.1 but
/// not committed (stopped at the fail point `transfer-batch-settled`): the
/// kill lands past that point, the open transaction goes with the process,
/// the cursor stays where it was, and the next run moves the batch again,
/// ending with every row once.
#[tokio::test]
async fn a_transfer_killed_with_a_batch_settled_but_not_committed_moves_it_once_on_the_next_run() {
    let (server, _payload, _ctx, before) = upgraded_server(5_000).await;
    let mut args = root_arg(&server);
    args.extend(["transfer", "run"].map(OsString::from));
    let mut transfer = HelperProcess::start(
        Path::new(HELPER),
        &args,
        Some("transfer-batch-settled"),
        None,
    )
    .unwrap();
    transfer.wait_stopped(Duration::from_secs(120)).unwrap();
    transfer.kill9().unwrap();

    let target = server.database().await.unwrap();
    let committed: i64 = value(
        &target,
        "SELECT coalesce(sum(committed_rows), 0)::bigint FROM upgrade_transfer.cursor",
        &[],
    )
    .await;
    assert_eq!(committed, 0, "a batch killed before its COMMIT was counted");

    transfer_completes_with_every_row_once(&server, &before).await;
    let status = transfer_status(&server);
    assert_eq!(status["state"], "done", "{status:#}");
}

/// A batch that committed, but whose COMMIT's answer was lost with the
/// connection: the transfer connects again, reads from the cursor
/// (committed with the batch) that it committed, and goes on after it,
/// neither moving its ids again nor ending the run; it completes with
/// every row once.
#[tokio::test]
async fn a_commit_whose_answer_is_lost_is_read_from_the_cursor_and_the_transfer_goes_on() {
    let (server, _payload, _ctx, before) = upgraded_server(5_000).await;
    let (code, output) = run_under_root(
        HELPER,
        &server,
        &["transfer", "run"],
        Some("transfer-batch-committed=1*return"),
    );
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("the batch whose COMMIT got no answer committed"),
        "{output}"
    );
    assert!(output.contains("The older history is in 9.1"), "{output}");
    assert_every_row_once(&server, &before).await;
    let status = transfer_status(&server);
    assert_eq!(status["state"], "done", "{status:#}");
}

/// 9.1's word for an action code goes into the query that turns 7.1's
/// rows into 9.1's on PostgreSQL 10, and 7.1's server may read literals
/// with `standard_conforming_strings` off, where a backslash escapes the
/// next character: a word with a backslash and a quote in it (here 9.1's
/// word for code 1, which an old 7.1 event has) arrives in 9.1 exactly as
/// written, and neither ends the query early nor becomes SQL of its own.
#[tokio::test]
async fn an_action_word_with_a_backslash_and_a_quote_is_moved_as_written_without_conforming_strings()
 {
    const WORD: &str = r"delete\'; DROP TABLE tb_archive; --\";
    let (server, _payload, ctx) = server(3_000);
    let root = server.root();
    let settings = DbSettings::load(&root).unwrap();
    let source = pg::connect(&settings).await.unwrap();
    source
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET standard_conforming_strings = off",
            settings.database
        ))
        .await
        .unwrap();
    drop(source);
    let deleted = add_late_old_event(&root, 1).await;
    let history = capture_71(&server).await;
    let before = upgrade_checked(&server, &ctx, history).await;

    let target = pg::connect(&settings).await.unwrap();
    let word: String = value(&target, "SELECT quote_literal($1::text)", &[&WORD]).await;
    target
        .batch_execute(&format!(
            "ALTER TABLE policy_event DROP CONSTRAINT policy_event_action_check; \
             CREATE OR REPLACE FUNCTION compat71.policy_action_names() RETURNS text[] \
             LANGUAGE sql IMMUTABLE AS $$ \
                 SELECT ARRAY['pass', {word}, 'quarantine', 'archive', 'tag', 'strip'] $$"
        ))
        .await
        .unwrap();

    let (code, output) = helper(&server, &["transfer", "run"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("0 rejected"), "{output}");
    let moved: String = value(
        &target,
        "SELECT action FROM policy_event WHERE event_id = $1",
        &[&deleted],
    )
    .await;
    assert_eq!(moved, WORD);
    // The window moved with the words 9.1 had then, the older rows with
    // code 1's new word.
    let mut new_words = Piece::standard(Part::Older(before.cutoff));
    new_words.actions[1].1 = WORD.to_string();
    assert_eq!(new_words.actions[1].0, 1);
    assert_91_holds(
        &server,
        &before,
        &[Piece::standard(Part::Window(before.cutoff)), new_words],
    )
    .await;
}

/// 9.1's database stopping under the transfer is a stall with its cause,
/// "target down"; once it runs again the transfer goes on by itself and
/// completes with every row once.
#[tokio::test]
async fn a_target_down_is_a_stall_with_its_cause_and_the_transfer_goes_on_after_it() {
    let (server, _payload, ctx, before) = upgraded_server(20_000).await;
    let transfer = start_transfer(
        &server,
        &["--max-rows-per-sec", "2000", "--stall-after", "2"],
    );
    wait_for_status(&server, "rows moved", |s| rows_done(s) > 0);
    let target = imss_upgrade::flow::clusters::target_91(&ctx).unwrap();
    target.stop(pg::StopMode::Fast).unwrap();
    let stalled = wait_for_status(&server, "a stall", stalled_past_start);
    let cause = stalled["progress"]["cause"].as_str().unwrap_or_default();
    assert!(cause.starts_with("target down"), "{stalled:#}");
    assert!(
        stalled["progress"]["stalled_seconds"].as_u64() >= Some(2),
        "{stalled:#}"
    );
    target.start().unwrap();
    let ended = transfer.wait(Duration::from_secs(120)).unwrap();
    assert!(ended.status.success(), "{}", ended.output);
    assert!(
        ended.output.contains("committed no batch for"),
        "{}",
        ended.output
    );
    assert_every_row_once(&server, &before).await;
}

/// 9.1's file system filling up under the transfer is a stall with its
/// cause, "disk full", and what to do; the failed batch is rolled back, so
/// the cursor stays after the last committed one. Once there is room again
/// the transfer goes on by itself and completes with every row once.
#[tokio::test]
async fn a_full_target_disk_is_a_stall_with_its_cause_and_the_transfer_goes_on_after_it() {
    let (server, _payload, ctx, before) = upgraded_server(20_000).await;
    // The recipients on a small file system of their own: 9.1's WAL stays
    // on the large one, so the full disk fails a batch, as a full data
    // file system does, instead of stopping the server, as a full pg_wal
    // would.
    let full = TmpfsMount::mount(&server.root_dir().join("full-disk"), "1m").unwrap();
    harness::chown(full.dir(), ctx.service_user().unwrap()).unwrap();
    let target = server.database().await.unwrap();
    target
        .batch_execute(&format!(
            "CREATE TABLESPACE full_disk LOCATION '{}'",
            full.dir().display()
        ))
        .await
        .unwrap();
    target
        .batch_execute("ALTER TABLE policy_event_recipient SET TABLESPACE full_disk")
        .await
        .unwrap();

    let events_from_71 = "SELECT count(*) FROM policy_event WHERE source = '7.1'";
    let window = value::<i64>(&target, events_from_71, &[]).await;

    let transfer = start_transfer(&server, &["--stall-after", "2"]);
    let stalled = wait_for_status(&server, "a stall", stalled_past_start);
    let cause = stalled["progress"]["cause"].as_str().unwrap_or_default();
    assert!(cause.starts_with("disk full"), "{stalled:#}");
    assert!(cause.contains("free space there"), "{stalled:#}");
    // The failed batches left nothing: 9.1 holds the window's events and
    // those the cursor counts, and no recipient without its event.
    let (moved, rejected): (i64, i64) = {
        let row = target
            .query_one(
                "SELECT rows_done, rows_rejected FROM upgrade_transfer.cursor \
                  WHERE table_name = 'tb_policy_event'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(
        value::<i64>(&target, events_from_71, &[]).await,
        window + moved - rejected
    );
    let orphans = value::<i64>(
        &target,
        "SELECT count(*) FROM policy_event_recipient r \
          WHERE NOT EXISTS (SELECT FROM policy_event e WHERE e.event_id = r.event_id)",
        &[],
    )
    .await;
    assert_eq!(orphans, 0);
    // It keeps trying, and keeps failing, without moving the cursor.
    std::thread::sleep(Duration::from_secs(6));
    let still = transfer_status(&server);
    assert_eq!(still["state"], "stalled", "{still:#}");
    assert_eq!(rows_done(&still), rows_done(&stalled), "{still:#}");

    full.resize("64m").unwrap();
    let ended = transfer.wait(Duration::from_secs(120)).unwrap();
    assert!(ended.status.success(), "{}", ended.output);
    assert_every_row_once(&server, &before).await;
}

/// 9.1 under load (more sessions running queries than `--max-load`) holds
/// the transfer back: it commits nothing, and the stall names the load as
/// its cause. Once the load is gone it goes on and completes.
#[tokio::test(flavor = "multi_thread")]
async fn a_busy_target_holds_the_transfer_back_until_the_load_is_gone() {
    let (server, _payload, _ctx, before) = upgraded_server(5_000).await;
    let root = server.root();
    let settings = DbSettings::load(&root).unwrap();
    let monitor = pg::connect(&settings).await.unwrap();
    let busy = || {
        value::<i64>(
            &monitor,
            "SELECT count(*) FROM pg_stat_activity \
              WHERE application_name = 'euq-console' AND state = 'active'",
            &[],
        )
    };
    for _ in 0..2 {
        let client = pg::connect(&settings).await.unwrap();
        client
            .batch_execute("SET application_name = 'euq-console'")
            .await
            .unwrap();
        tokio::spawn(async move { client.batch_execute("SELECT pg_sleep(600)").await });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while busy().await < 2 {
        assert!(Instant::now() < deadline, "the load never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let transfer = start_transfer(&server, &["--max-load", "1", "--stall-after", "1"]);
    let stalled = wait_for_status(&server, "a stall once started", |s| {
        s["state"] == "stalled" && !s["progress"]["tables"].as_array().unwrap().is_empty()
    });
    let cause = stalled["progress"]["cause"].as_str().unwrap_or_default();
    assert!(
        cause.starts_with("throttled: 9.1 is busy, 2 other sessions"),
        "{stalled:#}"
    );
    assert_eq!(rows_done(&stalled), 0, "{stalled:#}");

    monitor
        .batch_execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
              WHERE application_name = 'euq-console'",
        )
        .await
        .unwrap();
    let ended = transfer.wait(Duration::from_secs(120)).unwrap();
    assert!(ended.status.success(), "{}", ended.output);
    assert_every_row_once(&server, &before).await;
}

/// A 7.1 database in the backup that PostgreSQL 10 cannot read ends the
/// transfer with a message that says so and what to do; the cursor stays
/// where it was, and once the cause is gone the transfer resumes there.
#[tokio::test]
async fn an_unreadable_source_ends_the_transfer_saying_so_and_keeps_the_cursor() {
    use std::os::unix::fs::PermissionsExt;
    let (server, _payload, _ctx, before) = upgraded_server(20_000).await;
    let root = server.root();
    let transfer = start_transfer(&server, &["--max-rows-per-sec", "3000"]);
    wait_for_status(&server, "rows moved", |s| rows_done(s) > 0);
    let ended = transfer.terminate().unwrap();
    assert!(ended.status.success(), "{}", ended.output);
    let done = rows_done(&transfer_status(&server));

    let base = root
        .resolve(format!("{BACKUP_DIR}/pgdata-71/base"))
        .unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o000)).unwrap();
    let (code, output) = helper(&server, &["transfer", "run"]);
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("source unreadable"), "{output}");
    assert!(output.contains("the cursor stays where it was"), "{output}");
    let failed = transfer_status(&server);
    assert_eq!(failed["state"], "failed", "{failed:#}");
    assert!(
        failed["progress"]["cause"]
            .as_str()
            .is_some_and(|cause| cause.contains("source unreadable")),
        "{failed:#}"
    );
    assert_eq!(rows_done(&failed), done, "{failed:#}");

    transfer_completes_with_every_row_once(&server, &before).await;
}

/// An `imss-rollback` that is refused (here: the snapshot manifest changed
/// after the upgrade registered it) has stopped the transfer first; it then
/// says so, and how to start it again, rather than leave it stopped in
/// silence.
#[tokio::test]
async fn a_refused_rollback_says_how_to_start_the_transfer_it_stopped_again() {
    let (server, _payload, ctx) = server(20_000);
    flow::upgrade(&ctx).await.expect("the upgrade succeeds");
    let transfer = start_transfer(&server, &["--max-rows-per-sec", "2000"]);
    wait_for_status(&server, "the middle", |s| rows_done(s) > 0);
    let manifest = server
        .root()
        .resolve(BACKUP_DIR)
        .unwrap()
        .join("snapshot-manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let changed = text.replacen("\"mtime_sec\":", "\"mtime_sec\":1", 1);
    assert_ne!(changed, text, "no entry's mtime to change");
    std::fs::write(&manifest, changed).unwrap();

    let (code, said) = run_under_root(env!("CARGO_BIN_EXE_imss-rollback"), &server, &[], None);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("changed after the upgrade registered it"),
        "{said}"
    );
    assert!(
        said.contains("start it again with `imss-upgrade transfer run`"),
        "{said}"
    );
    // It was stopped, and stays so until started again.
    transfer.wait(Duration::from_secs(30)).unwrap();
}
