//! Crash windows outside the upgrade's steps, proven as the kill matrix
//! proves the steps': the real binaries (built with the fail points) are
//! stopped at a named point, seen standing there alive, and killed with
//! SIGKILL; then the command an administrator would run next settles it,
//! and oracles that share no code with the product (find and sha256sum,
//! GNU tar and xz, plain SQL written here) say what is left. The windows:
//! a lock taken before its holder wrote its name; the background
//! transfer's source start and the moment after a COMMIT; finalize's
//! export, the moment between the transfer's stop and the backup's rename,
//! and its delete; the rollback's carry-back; the compression's swap of
//! archive and manifest.
//!
//! And the ends of the lifecycle that had no test: finalize stopping a
//! transfer that runs, `imss-rollback` after a completed transfer, and
//! every journal event, with its documented fields, on a booted host.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use imss_fixture::harness::oracle::tree_state;
use imss_fixture::harness::query::{column, value};
use imss_fixture::harness::scenario::Scenario;
use imss_fixture::harness::site::{HELPER_TIMEOUT, Programs, Site};
use imss_fixture::harness::traffic::{self, TrafficOptions};
use imss_upgrade::flow::journal::RunState;
use imss_upgrade::flow::layout::{BACKUP_DIR, STATE_DIR};
use imss_upgrade::support::cmd::Cmd;
use imss_upgrade::support::constants::PROGRAM_DIR;
use imss_upgrade::support::processes;
use imss_upgrade::system::procfs;

const UPGRADE: &str = env!("CARGO_BIN_EXE_imss-upgrade");
const ROLLBACK: &str = env!("CARGO_BIN_EXE_imss-rollback");

/// The history tables: 7.1's name and id, 9.1's name and id.
const HISTORY: [(&str, &str, &str, &str); 3] = [
    ("tb_policy_event", "event_id", "policy_event", "event_id"),
    (
        "tb_quarantine",
        "quarantine_id",
        "quarantine_message",
        "quarantine_id",
    ),
    ("tb_archive", "archive_id", "archive_message", "archive_id"),
];

const PROGRAMS: Programs = Programs {
    upgrade: UPGRADE,
    rollback: ROLLBACK,
};

/// A started 7.1 server with `history_rows` policy events over `days` and
/// no extra program files, the payload to upgrade it with, and what it was
/// before.
fn site(history_rows: u64, days: u64) -> Site {
    let scenario = Scenario::new()
        .needs_failpoints(cfg!(feature = "failpoints"))
        .tree_mb(0)
        .history_rows(history_rows)
        .days(days);
    Site::new(PROGRAMS, scenario)
}

/// A site with `history_rows` policy events over 30 days, upgraded; and
/// per history table the ids 7.1 held before, and those 9.1 holds from
/// 7.1 after the upgrade (its window).
async fn upgraded_site(history_rows: u64) -> (Site, Vec<BTreeSet<i64>>, Vec<BTreeSet<i64>>) {
    let site = site(history_rows, 30);
    let history_71 = ids_71(&site).await;
    site.complete(UPGRADE, &["run"], "the upgrade");
    let window = ids_91_from_71(&site).await;
    (site, history_71, window)
}

/// Per history table, the ids 7.1 holds.
async fn ids_71(site: &Site) -> Vec<BTreeSet<i64>> {
    let client = site.database().await;
    let mut ids = Vec::new();
    for (table, id, _, _) in HISTORY {
        ids.push(
            column::<i64, _>(&client, &format!("SELECT {id}::bigint FROM {table}"), &[]).await,
        );
    }
    ids
}

/// Per history table, the ids of the rows 9.1 holds from 7.1.
async fn ids_91_from_71(site: &Site) -> Vec<BTreeSet<i64>> {
    let client = site.database().await;
    let mut ids = Vec::new();
    for (_, _, table, id) in HISTORY {
        ids.push(
            column::<i64, _>(
                &client,
                &format!("SELECT {id} FROM {table} WHERE source = '7.1'"),
                &[],
            )
            .await,
        );
    }
    ids
}

/// Whatever runs with its working directory in `dir`, or with `dir` on
/// its command line: a database server and its backends, a helper.
fn working_in_or_naming(dir: &Path) -> Vec<String> {
    let text = dir.to_string_lossy().into_owned();
    let mut found: Vec<String> = procfs::working_in(dir)
        .into_iter()
        .map(|pid| format!("{pid} working in {text}"))
        .collect();
    found.extend(
        procfs::processes()
            .into_iter()
            .filter(|p| p.cmdline.contains(&text) && p.pid != std::process::id())
            .map(|p| format!("{} {}", p.pid, p.cmdline)),
    );
    found
}

/// The names in `dir` (not below it), by `find`.
fn names_in(dir: &Path) -> BTreeSet<String> {
    Cmd::new("find")
        .arg(dir)
        .args(["-mindepth", "1", "-maxdepth", "1", "-printf", "%f\n"])
        .output_text()
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `sha256sum` of what `command` (a shell line of the test's own) prints.
fn sha256_of_output(command: &str) -> String {
    Cmd::new("bash")
        .args(["-c", &format!("set -o pipefail; {command} | sha256sum")])
        .output_text()
        .unwrap_or_else(|err| panic!("{command}: {err}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The lines of one [`tree_state`] that the other lacks, both ways: what
/// a failure shows instead of two whole trees.
fn tree_differences(found: &str, expected: &str) -> Vec<String> {
    let found: BTreeSet<&str> = found.lines().collect();
    let expected: BTreeSet<&str> = expected.lines().collect();
    let mut differences: Vec<String> = expected
        .difference(&found)
        .map(|line| format!("missing: {line}"))
        .collect();
    differences.extend(
        found
            .difference(&expected)
            .map(|line| format!("extra:   {line}")),
    );
    differences
}

/// A [`tree_state`] without the mtimes: what a tar archive, which keeps
/// whole seconds, gives back.
fn without_mtimes(state: &str) -> String {
    state
        .lines()
        .map(|line| {
            let mut fields: Vec<&str> = line.split('\t').collect();
            match fields.get(1) {
                Some(&"dir") | Some(&"file") => drop(fields.remove(4)),
                Some(&"link") => drop(fields.remove(3)),
                _ => {}
            }
            fields.join("\t")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The pid a lock file's first line names (`pid N, …`).
fn pid_named_in(lock: &Path) -> u32 {
    let text = std::fs::read_to_string(lock).unwrap();
    text.strip_prefix("pid ")
        .and_then(|rest| rest.split(',').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("{} names no pid: {text:?}", lock.display()))
}

/// After a completed upgrade, on one server: a lock held before its
/// holder wrote its name, the transfer killed as its source started and
/// right after a COMMIT, and finalize killed in its export, between the
/// transfer's stop and the backup's rename, and in its delete. After each
/// kill the next command settles what is left, and in the end 9.1 holds
/// every 7.1 row once, the backup is gone without a trace, and the export
/// holds it whole.
#[tokio::test]
async fn kills_in_the_lock_the_transfer_and_finalize_are_settled_by_the_next_command() {
    let (site, history_71, window) = upgraded_site(5000).await;
    assert!(
        window[0].len() * 10 < history_71[0].len(),
        "the upgrade moved more than the window: {} of {} policy events",
        window[0].len(),
        history_71[0].len()
    );

    // The lock: `recover` stands between its flock and writing its name,
    // the file still holding the finished run's. A second command is
    // refused without naming that run, which is gone.
    let lock = site.root_path(STATE_DIR).join("upgrade.lock");
    let finished_run = pid_named_in(&lock);
    assert!(!processes::is_alive(finished_run));
    let holder = site.stop_at(UPGRADE, &["recover"], "lock-taken-unnamed");
    let ended = site.finish(UPGRADE, &["recover"]);
    let (code, refused) = (ended.code(), ended.output);
    assert_eq!(code, 1, "a second recover was not refused:\n{refused}");
    assert!(
        refused.contains("a command that has not said who it is yet"),
        "{refused}"
    );
    assert!(
        !refused.contains(&format!("pid {finished_run},")),
        "the refusal names the finished run (pid {finished_run}) as the holder:\n{refused}"
    );
    holder.kill9().unwrap();
    let recovered = site
        .complete(
            UPGRADE,
            &["recover"],
            "recover after the lock's holder died",
        )
        .output;
    assert!(recovered.contains("completed"), "{recovered}");
    assert_eq!(site.journal_state(), Some(RunState::Completed));

    // The transfer's source start: PostgreSQL 10 runs on the backup, no
    // batch has begun. The next start settles the server the kill left.
    let starting = site.stop_at(UPGRADE, &["transfer", "run"], "transfer-source-started");
    assert!(
        !procfs::working_in(&site.backup_71()).is_empty(),
        "PostgreSQL 10 does not run on the backup at transfer-source-started"
    );
    starting.kill9().unwrap();

    // Right after a COMMIT: another session sees the batch in 9.1.
    let committing = site.stop_at(UPGRADE, &["transfer", "run"], "transfer-batch-committed");
    let seen = ids_91_from_71(&site).await;
    let moved: usize = seen
        .iter()
        .zip(&window)
        .map(|(s, w)| s.len() - w.len())
        .sum();
    assert!(
        moved > 0,
        "no committed batch is visible at transfer-batch-committed"
    );
    committing.kill9().unwrap();

    let output = site
        .complete(
            UPGRADE,
            &["transfer", "run"],
            "the transfer after two kills",
        )
        .output;
    assert!(output.contains("0 rejected"), "{output}");
    assert_eq!(
        ids_91_from_71(&site).await,
        history_71,
        "9.1 does not hold every 7.1 row's id once"
    );
    let left = working_in_or_naming(&site.backup_71());
    assert!(left.is_empty(), "the done transfer left {left:?}");

    // Finalize. What the backup is before: nothing may change it until
    // it is set aside.
    let backup_before = tree_state(&site.backup()).unwrap();
    let export_dir = tempfile::tempdir().unwrap();
    let export = export_dir.path().join("backup-export");
    let export_arg = export.to_string_lossy().into_owned();
    let unchanged = |case: &str| {
        let changed = tree_differences(&tree_state(&site.backup()).unwrap(), &backup_before);
        assert!(
            changed.is_empty(),
            "{case}: the backup changed: {changed:#?}"
        );
        assert_eq!(site.journal_state(), Some(RunState::Completed), "{case}");
        assert!(site.takes_mail(), "{case}: 9.1 takes no mail");
    };

    // In the export: the archive and manifest written, not verified.
    site.kill_at(
        UPGRADE,
        &["finalize", "--export", &export_arg],
        "finalize-exported",
    );
    unchanged("finalize killed in its export");
    site.complete(UPGRADE, &["recover"], "recover after finalize-exported");

    // The transfer stopped, its lock held, the backup not set aside; the
    // export begun again in the same place, and done.
    site.kill_at(
        UPGRADE,
        &["finalize", "--export", &export_arg],
        "finalize-transfer-stopped",
    );
    unchanged("finalize killed before the rename");
    site.complete(
        UPGRADE,
        &["recover"],
        "recover after finalize-transfer-stopped",
    );

    // That export is finished: a finalize asked to write it again is
    // refused, changing nothing, and says how to go on.
    let ended = site.finish(UPGRADE, &["finalize", "--export", &export_arg]);
    let (code, refused) = (ended.code(), ended.output);
    assert_eq!(code, 1, "{refused}");
    assert!(refused.contains("without --export"), "{refused}");
    unchanged("finalize refused an export directory holding an export");

    // In the delete: the backup set aside, its snapshot gone, the rest
    // not. Nothing looks like a backup: imss-rollback refuses, 9.1 runs.
    site.kill_at(UPGRADE, &["finalize"], "finalize-backup-deleting");
    let var_imss = site.root_path("/var/imss");
    let setting_aside = var_imss.join("imss_backup_71_to_91.finalizing");
    assert!(!site.backup().exists(), "the backup was not set aside");
    let left = names_in(&setting_aside);
    assert!(
        left.contains("pgdata-71") && !left.iter().any(|name| name.starts_with("snapshot")),
        "the delete was not half done: {left:?}"
    );
    let ended = site.finish(ROLLBACK, &[]);
    let (code, refused) = (ended.code(), ended.output);
    assert_eq!(
        code, 1,
        "imss-rollback went on with half a backup:\n{refused}"
    );
    assert!(
        site.takes_mail(),
        "9.1 takes no mail after finalize was killed"
    );
    site.complete(
        UPGRADE,
        &["recover"],
        "recover after finalize-backup-deleting",
    );
    let output = site
        .complete(UPGRADE, &["finalize"], "the finalize after the kills")
        .output;
    assert!(output.contains("finalized"), "{output}");

    // Nothing of the backup or the run is left, and 9.1 runs on.
    let backups: Vec<String> = names_in(&var_imss)
        .into_iter()
        .filter(|name| name.starts_with("imss_backup_71_to_91"))
        .collect();
    assert!(backups.is_empty(), "left in /var/imss: {backups:?}");
    assert_eq!(
        site.journal_state(),
        None,
        "the step journal outlived finalize"
    );
    assert!(site.takes_mail(), "9.1 takes no mail after finalize");
    let running = working_in_or_naming(&site.backup());
    assert!(running.is_empty(), "still running: {running:?}");

    // The export holds the backup as it was: GNU tar unpacks it, and find
    // and sha256sum see the same tree.
    let unpacked = tempfile::tempdir().unwrap();
    Cmd::new("tar")
        .arg("-xpf")
        .arg(export.join("snapshot.tar"))
        .arg("-C")
        .arg(unpacked.path())
        .run()
        .unwrap();
    let exported = tree_state(&unpacked.path().join(BACKUP_DIR.trim_start_matches('/'))).unwrap();
    let differences = tree_differences(&without_mtimes(&exported), &without_mtimes(&backup_before));
    assert!(
        differences.is_empty(),
        "the export does not hold the backup as it was: {differences:#?}"
    );
}

/// `finalize --force` while the transfer runs as a process of its own:
/// finalize stops it and finishes; nothing of the transfer runs after
/// that, and 9.1 holds the window and whole batches only: every older 7.1
/// row up to the highest id moved, none above it, none twice.
#[tokio::test]
async fn finalize_stops_a_running_transfer_and_9_1_keeps_whole_batches_only() {
    let (site, history_71, window) = upgraded_site(20000).await;
    let transfer = site.start(
        UPGRADE,
        &["transfer", "run", "--max-rows-per-sec", "2000"],
        None,
    );
    // Until its first batch is in 9.1 (the cursor's table is the
    // transfer's own, made at its start).
    let client = site.database().await;
    let deadline = std::time::Instant::now() + HELPER_TIMEOUT;
    loop {
        let moved = client
            .query_one(
                "SELECT coalesce(sum(rows_done), 0)::bigint FROM upgrade_transfer.cursor",
                &[],
            )
            .await
            .map_or(0, |row| row.get::<_, i64>(0));
        if moved > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the transfer moved nothing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(client);
    let transfer_pid = transfer.pid();

    let output = site
        .complete(
            UPGRADE,
            &["finalize", "--force"],
            "finalize during the transfer",
        )
        .output;
    assert!(output.contains("finalized"), "{output}");
    let ended = transfer.wait(Duration::from_secs(30)).unwrap();
    assert!(
        ended.status.success(),
        "the transfer did not stop cleanly ({}):\n{}",
        ended.status,
        ended.output
    );
    assert!(!processes::is_alive(transfer_pid));
    let running = working_in_or_naming(&site.backup());
    assert!(running.is_empty(), "still running: {running:?}");
    let aside = site.root_path("/var/imss/imss_backup_71_to_91.finalizing");
    assert!(
        !site.backup().exists() && !aside.exists(),
        "the backup is left"
    );

    let now = ids_91_from_71(&site).await;
    for (index, (table, _, _, _)) in HISTORY.iter().enumerate() {
        let unknown: Vec<_> = now[index].difference(&history_71[index]).collect();
        assert!(
            unknown.is_empty(),
            "{table}: 9.1 holds ids 7.1 never had: {unknown:?}"
        );
        let moved: BTreeSet<i64> = now[index].difference(&window[index]).copied().collect();
        let Some(&highest) = moved.last() else {
            continue;
        };
        let older_71: BTreeSet<i64> = history_71[index]
            .difference(&window[index])
            .copied()
            .filter(|id| *id <= highest)
            .collect();
        assert_eq!(
            moved, older_71,
            "{table}: the transfer's rows in 9.1 are not every older 7.1 row up to {highest}"
        );
    }
    let moved_events = now[0].len() - window[0].len();
    assert!(
        moved_events > 0 && now[0].len() < history_71[0].len(),
        "finalize came before or after the transfer, not in its middle: {moved_events} moved"
    );
}

/// Per history table of 7.1, every row as text by its id.
async fn rows_71(site: &Site) -> Vec<BTreeMap<i64, String>> {
    imss_fixture::harness::oracle::history_71_by_id(&site.database().await)
        .await
        .unwrap()
}

/// What 9.1 did after an upgrade, for a rollback to carry back.
struct MailOn91 {
    /// 7.1's history before the upgrade.
    before: Vec<BTreeMap<i64, String>>,
    /// The Message-IDs of the mails 9.1 accepted.
    accepted: BTreeSet<String>,
    /// A quarantine record of 7.1's that 9.1 released.
    released: i64,
    /// An archive record of 7.1's that 9.1 deleted.
    deleted: i64,
}

/// Upgrades the site; 9.1 then takes 20 mails, releases one of the
/// quarantined messages it has from 7.1 and deletes one of the archive
/// records it has from 7.1, as its users would.
async fn upgrade_and_take_mail(site: &Site) -> MailOn91 {
    let before = rows_71(site).await;
    site.complete(UPGRADE, &["run"], "the upgrade");
    let (report, accepted) = traffic::run_logged(&TrafficOptions::loopback(
        site.server.smtp_port,
        20.0,
        Duration::from_secs(1),
    ))
    .await
    .unwrap();
    assert_eq!(report.refused + report.failed, 0, "{report:?}");
    assert!(
        accepted.len() >= 10,
        "9.1 accepted {} mails",
        accepted.len()
    );
    let client = site.database().await;
    let released = value::<i64>(&client, "UPDATE quarantine_message SET released = true WHERE quarantine_id = \
           (SELECT min(quarantine_id) FROM quarantine_message WHERE source = '7.1' AND NOT released) \
         RETURNING quarantine_id", &[])
    .await;
    let deleted = value::<i64>(
        &client,
        "DELETE FROM archive_message WHERE archive_id = \
           (SELECT min(archive_id) FROM archive_message WHERE source = '7.1') \
         RETURNING archive_id",
        &[],
    )
    .await;
    MailOn91 {
        before,
        accepted,
        released,
        deleted,
    }
}

/// Checks that the site is back on 7.1 after `mail`: the program tree as
/// before the first upgrade, mail taken, the step journal rolled back,
/// nothing left running in the backup; 7.1's history as before the
/// upgrade but for what 9.1 did: each accepted mail's policy event once,
/// its quarantine and archive records, the release and the deletion.
async fn check_back_on_71_with(site: &Site, mail: &MailOn91, case: &str) {
    let tree = site.server.tree_state(PROGRAM_DIR).unwrap();
    let changed = tree_differences(&tree, site.baseline.tree());
    assert!(
        changed.is_empty(),
        "{case}: the 7.1 program tree differs: {changed:#?}"
    );
    assert_eq!(site.journal_state(), Some(RunState::RolledBack), "{case}");
    assert!(site.takes_mail(), "{case}: 7.1 takes no mail");
    let running = working_in_or_naming(&site.backup_71());
    assert!(running.is_empty(), "{case}: still running: {running:?}");

    let after = rows_71(site).await;
    let client = site.database().await;
    for (index, (table, id, _, _)) in HISTORY.iter().enumerate() {
        let (before, now) = (&mail.before[index], &after[index]);
        let changed: Vec<i64> = before
            .iter()
            .filter(|(row, text)| now.get(row) != Some(text))
            .map(|(row, _)| *row)
            .collect();
        let expected: Vec<i64> = match *table {
            "tb_quarantine" => vec![mail.released],
            "tb_archive" => vec![mail.deleted],
            _ => vec![],
        };
        assert_eq!(
            changed, expected,
            "{case}: {table}: rows 7.1 had that changed"
        );
        let highest = before.keys().next_back().copied().unwrap_or(0);
        let carried: Vec<String> = column(
            &client,
            &format!("SELECT message_id::text FROM {table} WHERE {id} > $1 ORDER BY message_id"),
            &[&(highest as i32)],
        )
        .await;
        let unknown: Vec<&String> = carried
            .iter()
            .filter(|m| !mail.accepted.contains(*m))
            .collect();
        assert!(
            unknown.is_empty(),
            "{case}: {table}: carried rows of no accepted mail: {unknown:?}"
        );
        if *table == "tb_policy_event" {
            let expected: Vec<String> = mail.accepted.iter().cloned().collect();
            assert_eq!(
                carried, expected,
                "{case}: the accepted mails' events, each once"
            );
        }
    }
    let released: bool = value(
        &client,
        "SELECT released FROM tb_quarantine WHERE quarantine_id = $1",
        &[&(mail.released as i32)],
    )
    .await;
    assert!(released, "{case}: the release 9.1 made is not in 7.1");
    assert!(
        !after[2].contains_key(&mail.deleted),
        "{case}: the archive record 9.1 deleted is back"
    );
}

/// The snapshot's archives, each by the SHA-256 of the tar it holds (xz
/// unpacked by xz itself).
fn archives_in(backup: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for name in names_in(backup) {
        let path = backup.join(&name);
        let quoted = format!("'{}'", path.display());
        match name.as_str() {
            "snapshot.tar" => found.insert(name, sha256_of_output(&format!("cat {quoted}"))),
            "snapshot.tar.xz" => found.insert(name, sha256_of_output(&format!("xz -dc {quoted}"))),
            _ => None,
        };
    }
    found
}

/// Upgrades the site and has 9.1 take mail ([`upgrade_and_take_mail`]),
/// then kills the snapshot's compression at `point`: what 9.1 did, and the
/// SHA-256 of the tar the snapshot held before.
async fn upgrade_then_kill_the_compression_at(site: &Site, point: &str) -> (MailOn91, String) {
    let mail = upgrade_and_take_mail(site).await;
    let tar = archives_in(&site.backup())["snapshot.tar"].clone();
    site.kill_at(UPGRADE, &["compress-snapshot", "--preset", "0"], point);
    (mail, tar)
}

/// Rollbacks on one server, each after an upgrade: one after a completed
/// transfer, with no mail on 9.1, brings 7.1 back exactly, the transferred
/// history in it as it was. Then three, each after 9.1 took mail, killed
/// in the carry-back (before it carried anything, after the policy events
/// only, after every row and 9.1's releases and deletions) and finished by
/// `recover`: 7.1 holds the mail 9.1 took, each row once. Before them the
/// compression is killed while it swaps archive and manifest (the
/// rollback restores from the half-swapped snapshot, or from the xz that
/// the next compression finishes), and a transfer stands between its
/// flock and its record, whose lock file still names an earlier holder's
/// pid that another program got: the rollback waits for it and signals
/// no one by that stale pid.
#[tokio::test]
async fn rollbacks_killed_in_the_carry_back_after_a_compression_cut_short_end_on_71_with_the_mail()
{
    let site = site(2000, 3);

    // After a completed transfer.
    let history_71 = ids_71(&site).await;
    site.complete(UPGRADE, &["run"], "the upgrade");
    site.complete(UPGRADE, &["transfer", "run"], "the transfer");
    assert_eq!(
        ids_91_from_71(&site).await,
        history_71,
        "the transfer did not move every older row"
    );
    site.complete(ROLLBACK, &[], "imss-rollback after the transfer");
    if let Err(err) = site.baseline.check_back_on_71(&site.server, &site.payload) {
        panic!("imss-rollback after a completed transfer: {err:#}");
    }
    assert_eq!(ids_71(&site).await, history_71);

    // The compression killed with the xz in place and the manifest still
    // naming the tar; a transfer between its flock and its record.
    let (mail, tar) = upgrade_then_kill_the_compression_at(&site, "compress-archive-swapped").await;
    let half_swapped = archives_in(&site.backup());
    assert_eq!(
        half_swapped,
        BTreeMap::from([
            ("snapshot.tar".to_string(), tar.clone()),
            ("snapshot.tar.xz".to_string(), tar.clone())
        ]),
        "the swap was not half done"
    );
    let mut bystander = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    std::fs::write(
        site.root_path(STATE_DIR).join("transfer.lock"),
        format!(
            "pid {}, `imss-upgrade transfer run`, since 2026-01-01 00:00:00 UTC\n",
            bystander.id()
        ),
    )
    .unwrap();
    let transfer = site.stop_at(UPGRADE, &["transfer", "run"], "lock-taken-unnamed");
    let mut rollback = site.start(ROLLBACK, &[], Some("carry-back-begun"));
    std::thread::sleep(Duration::from_secs(3));
    let bystander_ended = bystander.try_wait().unwrap();
    transfer.kill9().unwrap();
    rollback.wait_stopped(HELPER_TIMEOUT).unwrap();
    rollback.kill9().unwrap();
    let _ = bystander.kill();
    let _ = bystander.wait();
    assert_eq!(
        bystander_ended, None,
        "the rollback signalled the pid an earlier transfer's record named"
    );
    site.complete(UPGRADE, &["recover"], "recover after carry-back-begun");
    check_back_on_71_with(&site, &mail, "killed at carry-back-begun").await;

    // The compression killed with the manifest naming the xz, the tar not
    // removed; the next one finishes it.
    let (mail, tar) =
        upgrade_then_kill_the_compression_at(&site, "compress-manifest-written").await;
    site.complete(
        UPGRADE,
        &["compress-snapshot", "--preset", "0"],
        "the compression after a kill",
    );
    assert_eq!(
        archives_in(&site.backup()),
        BTreeMap::from([("snapshot.tar.xz".to_string(), tar)]),
        "the compression did not end with the xz of the same tar alone"
    );
    site.kill_at(ROLLBACK, &[], "carry-back-events-carried");
    site.complete(
        UPGRADE,
        &["recover"],
        "recover after carry-back-events-carried",
    );
    check_back_on_71_with(&site, &mail, "killed at carry-back-events-carried").await;

    let mail = upgrade_and_take_mail(&site).await;
    site.kill_at(ROLLBACK, &[], "carry-back-applied");
    site.complete(UPGRADE, &["recover"], "recover after carry-back-applied");
    check_back_on_71_with(&site, &mail, "killed at carry-back-applied").await;
}

/// The README's table of journal events: each `MESSAGE_ID` with the
/// `IMSS_*` fields it documents.
fn documented_events() -> BTreeMap<String, Vec<String>> {
    let readme =
        std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let table = readme
        .split("| event | `MESSAGE_ID` | fields |")
        .nth(1)
        .expect("the README has the table of journal events");
    table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').collect();
            let quoted = |cell: &str| -> Vec<String> {
                cell.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect()
            };
            let id = quoted(cells[2])
                .into_iter()
                .next()
                .expect("an id in each row");
            let fields = quoted(cells[3])
                .into_iter()
                .filter(|name| name.starts_with("IMSS_"))
                .collect();
            (id, fields)
        })
        .collect()
}

/// Every journal event id the source defines is documented, and logged
/// at least once, with every field the README gives it, in what one
/// server goes through on a booted host (journald, systemd units): an
/// upgrade that fails and whose rollback fails too, `recover`, an upgrade
/// that completes, its transfer (a row 9.1 refuses, a pause long enough to
/// be a stall, the resume) and `finalize`; `imss-fixture` built the server.
/// Read back with `journalctl -o json MESSAGE_ID=…`.
#[test]
fn every_journal_event_is_logged_with_its_documented_fields() {
    use imss_fixture::hosts::model_host::{ModelHost, wait_for};
    use imss_upgrade::support::logging::events;
    let documented = documented_events();
    let undocumented: Vec<&str> = events::ALL
        .iter()
        .filter(|(_, id)| !documented.contains_key(*id))
        .map(|(name, _)| *name)
        .collect();
    assert!(
        undocumented.is_empty(),
        "events the README's table lacks: {undocumented:?}"
    );

    let host = ModelHost::with_71("journal-events", &["--history-rows", "2000", "--days", "3"]);
    host.fixture(
        &["payload", "--out", imss_upgrade::flow::context::PAYLOAD_DIR],
        HELPER_TIMEOUT,
    )
    .unwrap_or_else(|err| panic!("writing the payload on the host: {err}"));
    // What the package installs beside the payload: the helper its units run.
    std::fs::copy(UPGRADE, host.host.root().join("usr/sbin/imss-upgrade")).unwrap();
    // An older event with an action code 9.1 has no word for: refused.
    host.query(
        "INSERT INTO tb_policy_event (event_time, message_id, scanner_host, sender, recipients, action) \
         VALUES (now() AT TIME ZONE 'UTC' - interval '2 days', '<refused@example.com>', 'imss71', \
                 'a@example.com', 'b@example.com', 9)",
    );
    // A slow transfer that reports every second and calls a second without
    // a batch a stall, so that a pause is seen as one.
    let drop_in = host
        .host
        .root()
        .join("etc/systemd/system/imss-upgrade-transfer.service.d");
    std::fs::create_dir_all(&drop_in).unwrap();
    std::fs::write(
        drop_in.join("test.conf"),
        "[Service]\nExecStart=\nExecStart=/usr/sbin/imss-upgrade transfer run \
         --max-rows-per-sec 300 --report-every 1 --stall-after 1\n",
    )
    .unwrap();
    let run = |argv: &[&str], expected: i32| {
        let (code, stdout, stderr) = host.run_inside(argv, HELPER_TIMEOUT);
        assert_eq!(code, Some(expected), "{argv:?}:\n{stdout}\n{stderr}");
    };

    // A run that fails after the quiesce, and whose rollback fails too;
    // recover finishes the rollback.
    run(
        &[
            "env",
            "FAILPOINTS=after-quiesce=return;before-undo-quiesce=return",
            UPGRADE,
            "run",
        ],
        1,
    );
    run(&[UPGRADE, "recover"], 0);
    // The upgrade, then its transfer, paused and resumed, and finalize.
    run(&[UPGRADE, "run"], 0);
    run(&[UPGRADE, "transfer", "pause"], 0);
    wait_for(Duration::from_secs(120), "a stall while paused", || {
        !host.journal_events(events::TRANSFER_STALLED).is_empty()
    });
    run(&[UPGRADE, "transfer", "resume"], 0);
    wait_for(Duration::from_secs(300), "the transfer to complete", || {
        !host.journal_events(events::TRANSFER_COMPLETED).is_empty()
    });
    run(&[UPGRADE, "finalize"], 0);

    let mut never_seen = Vec::new();
    let mut without_fields = Vec::new();
    for (name, id) in events::ALL {
        let logged = host.journal_events(id);
        if logged.is_empty() {
            never_seen.push(*name);
            continue;
        }
        let fields = &documented[*id];
        if !logged
            .iter()
            .any(|event| fields.iter().all(|field| event[field.as_str()].is_string()))
        {
            without_fields.push(format!("{name} ({fields:?}): {}", logged[0]));
        }
    }
    assert!(
        never_seen.is_empty() && without_fields.is_empty(),
        "events never logged: {never_seen:?}; events never logged with all their documented \
         fields: {without_fields:#?}"
    );
}
