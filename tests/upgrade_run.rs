//! The whole upgrade on model 7.1 servers: `upgrade::run` under mail
//! traffic, then 9.1 serving mail from PostgreSQL 15 with the 7.1
//! configuration and the last 24 hours; and `imss-rollback`'s revert of a
//! completed upgrade back to 7.1 exactly as it was.

use std::collections::BTreeSet;
use std::time::Duration;

use imss_fixture::harness::query::{column, missing, value};
use imss_fixture::harness::scenario::{Scenario, Upgradable};
use imss_fixture::harness::traffic::{LoggedSender, TrafficOptions};
use imss_fixture::harness::{FixtureServer, Payload, flow, oracle};
use imss_upgrade::cli::render;
use imss_upgrade::files::imss_ini::ProductInfo;
use imss_upgrade::files::odbc_ini::DbSettings;
use imss_upgrade::flow::journal::{RunState, StepJournal};
use imss_upgrade::flow::layout::{BACKUP_DIR, STATE_DIR};
use imss_upgrade::flow::upgrade::health;
use imss_upgrade::flow::upgrade::run::Outcome;
use imss_upgrade::snapshot;
use imss_upgrade::support::constants::ODBC_INI;
use imss_upgrade::system::pg;

/// What 9.1 must show of 7.1's configuration, read as sorted text rows.
async fn configuration(settings: &DbSettings, queries: &[&str]) -> Vec<Vec<String>> {
    let client = pg::connect(settings).await.unwrap();
    let mut tables = Vec::new();
    for query in queries {
        let mut lines: Vec<String> = column(&client, query, &[]).await;
        lines.sort();
        tables.push(lines);
    }
    tables
}

const CONFIG_71: &[&str] = &[
    "SELECT login_name || '/' || password_hash FROM tb_admin_account",
    "SELECT component || '/' || version FROM tb_component_version",
    "SELECT CASE WHEN lower(value) IN ('1', 'yes', 'true', 'on') THEN 'yes' ELSE 'no' END \
     FROM tb_euq_setting WHERE name = 'enable_euq'",
];

const CONFIG_91: &[&str] = &[
    "SELECT login_name || '/' || password_hash FROM admin_account",
    "SELECT component || '/' || version FROM component_version",
    "SELECT CASE WHEN enabled THEN 'yes' ELSE 'no' END FROM euq_settings",
];

/// A 7.1 server with `history_rows` policy events over `days` and
/// `tree_mb` MiB of extra program files, to build.
fn scenario(history_rows: u64, tree_mb: u64, days: u64) -> Scenario {
    Scenario::new()
        .history_rows(history_rows)
        .tree_mb(tree_mb)
        .days(days)
}

/// 20 mails a second to the scanner of `server`, for at most ten minutes.
fn mail_at_20_a_second(server: &FixtureServer) -> TrafficOptions {
    TrafficOptions::loopback(server.smtp_port, 20.0, Duration::from_secs(600))
}

/// The pattern files and engines `imss-upgrade status --json` shows.
fn status_versions(root: &std::path::Path) -> serde_json::Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_imss-upgrade"))
        .arg("--root")
        .arg(root)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let versions = status["pattern_and_engine_versions"].clone();
    assert!(
        versions.as_array().is_some_and(|list| list.len() > 3),
        "status shows no versions: {status}"
    );
    versions
}

#[tokio::test]
async fn the_whole_upgrade_under_mail_traffic_leaves_91_serving_with_every_accepted_mail() {
    let site = scenario(6000, 2, 3).build();
    let Upgradable { server, ctx, .. } = &site;
    let root = server.root();
    let settings_71 = DbSettings::load(&root).unwrap();
    let config_before = configuration(&settings_71, CONFIG_71).await;
    let versions_before = status_versions(root.dir());

    let traffic = LoggedSender::start(&mail_at_20_a_second(server)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let outcome = flow::upgrade(ctx).await.expect("the upgrade succeeds");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (traffic, accepted) = traffic.finish().unwrap();
    let Outcome::Upgraded(report) = outcome else {
        panic!("the upgrade was inhibited: {outcome:?}")
    };

    // 9.1 runs, with the 7.1 password carried over, and takes mail.
    let product = ProductInfo::load(&root).unwrap();
    assert_eq!((product.version.as_str(), product.build), ("9.1", 1195));
    let settings_91 = DbSettings::load(&root).unwrap();
    assert_eq!(settings_91.password.expose(), settings_71.password.expose());
    assert_eq!(settings_91.port, settings_71.port);
    let probe = health::send_test_mail(ctx, "after").unwrap();
    let client = pg::connect(&settings_91).await.unwrap();
    let version: String = value(&client, "SHOW server_version", &[]).await;
    assert!(version.starts_with("15."), "{version}");

    // Configuration, EUQ, component versions and admin accounts moved.
    assert_eq!(configuration(&settings_91, CONFIG_91).await, config_before);
    assert!(report.verified >= 3, "{report:?}");
    assert!(report.window.policy_events > 0, "{report:?}");
    // The bundled BIND's configuration, its private key and its working
    // directory; the scanner's imss.ini names its port.
    let etc = root.resolve("/opt/trend/imss/bind/etc").unwrap();
    let choice: serde_json::Value =
        serde_json::from_slice(&std::fs::read(etc.join("ports.json")).unwrap()).unwrap();
    let dns_port = choice["dns_port"].as_u64().unwrap();
    assert!(
        std::fs::read_to_string(etc.join("named.conf"))
            .unwrap()
            .contains(&format!("listen-on port {dns_port} ")),
        "{choice}"
    );
    let key = std::fs::metadata(etc.join("rndc.key")).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(key.permissions().mode() & 0o777, 0o640);
    assert_eq!(key.uid(), 0);
    assert!(
        root.resolve("/var/imss/bind/localhost.zone")
            .unwrap()
            .is_file()
    );
    let imss_ini =
        std::fs::read_to_string(root.resolve("/opt/trend/imss/config/imss.ini").unwrap()).unwrap();
    assert!(
        imss_ini.contains("[dns]") && imss_ini.contains(&format!("port = {dns_port}")),
        "{imss_ini}"
    );

    let reported = report
        .bundled_bind
        .as_ref()
        .expect("the report names the BIND's ports");
    assert_eq!(u64::from(reported.dns_port), dns_port);
    assert!(!reported.reason.is_empty());
    assert_eq!(
        report.euq_enabled,
        Some(true),
        "the fixture's 7.1 has EUQ on"
    );
    assert!(render::upgrade(&report).contains("EUQ: enabled and running, as 7.1 had it"));

    // 9.1 shows 7.1's pattern and engine versions, not its own defaults
    // (seed: "after the upgrade"), in status and in the report.
    assert_eq!(status_versions(root.dir()), versions_before);
    assert_eq!(
        serde_json::to_value(&report.pattern_and_engine_versions).unwrap(),
        versions_before
    );

    // Every mail the sender saw accepted, before, during and after the
    // switch, is in PostgreSQL 15 (all of them are within 24 hours).
    assert_eq!(accepted.len() as u64, traffic.accepted);
    assert!(traffic.accepted > 20, "{traffic:?}");
    // Mail was offered during the outage too, and turned away there (not
    // held back and sent in a burst afterwards): the switch was tested
    // under traffic.
    assert!(
        traffic.refused + traffic.failed > 0,
        "no mail met the outage: {traffic:?}"
    );
    assert_eq!(
        traffic.sent,
        traffic.accepted + traffic.refused + traffic.failed,
        "{traffic:?}"
    );
    let in_91: BTreeSet<String> = column(
        &client,
        "SELECT message_id FROM policy_event WHERE message_id LIKE '<traffic-%' OR message_id = $1",
        &[&probe],
    )
    .await;
    let missing: Vec<_> = accepted.difference(&in_91).collect();
    assert!(
        missing.is_empty(),
        "accepted but in neither database: {missing:?}"
    );
    assert!(in_91.contains(&probe));

    // The backup holds the snapshot, its manifest, the configuration
    // export and the untouched 7.1 data directory; the state directory,
    // root's alone, the rollback manifest and the journal.
    let backup = root.resolve(BACKUP_DIR).unwrap();
    let state = root.resolve(STATE_DIR).unwrap();
    let journal = StepJournal::load(&state).unwrap().unwrap();
    let manifest = snapshot::verify(&backup, journal.snapshot_pin().unwrap()).unwrap();
    assert!(manifest.entries.len() > 10);
    for file in ["imsx_config.dat", "pgdata-71/PG_VERSION"] {
        assert!(
            backup.join(file).is_file(),
            "{file} missing from the backup"
        );
    }
    assert!(state.join("rollback-manifest.json").is_file());
    assert_eq!(
        std::fs::read_to_string(backup.join("pgdata-71/PG_VERSION")).unwrap(),
        "10\n"
    );
    let journal = StepJournal::load(&state).unwrap().unwrap();
    assert_eq!(journal.state, RunState::Completed);
}

/// `imss-rollback` on the server under `root`, as an administrator runs it.
fn imss_rollback(
    root: &imss_upgrade::support::root::Root,
    payload: &Payload,
    ctx: &imss_upgrade::flow::context::Context,
) -> imss_upgrade::support::cmd::Cmd {
    imss_upgrade::support::cmd::Cmd::new(env!("CARGO_BIN_EXE_imss-rollback"))
        .arg("--root")
        .arg(root.dir())
        .arg("--payload")
        .arg(payload.dir())
        .arg("--target-pg-bin")
        .arg(ctx.target_pg_bin.as_path())
}

#[tokio::test]
async fn imss_rollback_after_a_completed_upgrade_restores_71_exactly_from_the_compressed_snapshot()
{
    let site = scenario(2000, 1, 3).build();
    let Upgradable {
        server,
        payload,
        ctx,
        ..
    } = &site;
    let root = server.root();
    let tree_before = server.tree_state("/opt/trend/imss").unwrap();
    let dump_before = server.dump_all().unwrap();

    let outcome = flow::upgrade(ctx).await.unwrap();
    assert!(matches!(outcome, Outcome::Upgraded(_)), "{outcome:?}");
    assert_eq!(ProductInfo::load(&root).unwrap().version, "9.1");

    // The background unit compresses the snapshot; rollback reads the xz.
    imss_upgrade::support::cmd::Cmd::new(env!("CARGO_BIN_EXE_imss-upgrade"))
        .args(["compress-snapshot", "--preset", "0", "--root"])
        .arg(root.dir())
        .run()
        .unwrap();
    let backup = root.resolve(BACKUP_DIR).unwrap();
    assert!(backup.join("snapshot.tar.xz").is_file() && !backup.join("snapshot.tar").exists());

    let rollback = imss_rollback(&root, payload, ctx).output_text().unwrap();
    assert!(rollback.contains("rolled back"), "{rollback}");

    assert_eq!(ProductInfo::load(&root).unwrap().version, "7.1");
    health::check_accepting(ctx).unwrap();
    assert!(server.tree_state("/opt/trend/imss").unwrap() == tree_before);
    assert!(server.dump_all().unwrap() == dump_before);
    assert!(
        !root.resolve("/var/imss/bind").unwrap().exists(),
        "the bundled BIND's working directory outlived the rollback"
    );
    let journal = StepJournal::load(&root.resolve(STATE_DIR).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(journal.state, RunState::RolledBack);

    // A second rollback has nothing to do, and says so.
    let again = imss_upgrade::support::cmd::Cmd::new(env!("CARGO_BIN_EXE_imss-rollback"))
        .arg("--root")
        .arg(root.dir())
        .run()
        .unwrap_err();
    assert!(
        format!("{again:#}").contains("rolled back already"),
        "{again:#}"
    );
}

/// Upgrades a small server, edits its snapshot manifest with `tamper`,
/// and checks that imss-rollback refuses it as tampered, with 9.1 still
/// taking mail and nothing written to `/etc`.
async fn refused_after_tampering(tamper: impl Fn(&str) -> String) {
    let site = scenario(500, 0, 2).build();
    let Upgradable { server, ctx, .. } = &site;
    flow::upgrade(ctx).await.unwrap();
    let etc_before = server.tree_state("/etc").unwrap();
    let backup = server.root().resolve(BACKUP_DIR).unwrap();
    let manifest_path = backup.join("snapshot-manifest.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    let tampered = tamper(&text);
    assert!(text != tampered, "the edit changed nothing");
    std::fs::write(&manifest_path, tampered).unwrap();

    let err = flow::roll_back(ctx).await.unwrap_err();
    assert!(format!("{err:#}").contains("tampered"), "{err:#}");
    assert_eq!(ProductInfo::load(&server.root()).unwrap().version, "9.1");
    health::send_test_mail(ctx, "after-refusal").unwrap();
    assert_eq!(server.tree_state("/etc").unwrap(), etc_before);
}

#[tokio::test]
async fn a_tampered_snapshot_is_refused_by_imss_rollback_and_9_1_keeps_running() {
    refused_after_tampering(|text| text.replacen("\"mode\":\"0755\"", "\"mode\":\"0777\"", 1))
        .await;
}

/// Item 10 of the crash-safety issue: the registered hash covered the
/// entries but not the paths they are restored to, so pointing `resolved`
/// at `/etc` passed the tamper check.
#[tokio::test]
async fn a_snapshot_manifest_pointed_at_another_directory_is_refused() {
    refused_after_tampering(|text| {
        text.replacen(
            "\"resolved\": \"/opt/trend/imss\"",
            "\"resolved\": \"/etc\"",
            1,
        )
    })
    .await;
}

/// Build item 4 of the crash-safety issue: the backup directory is root's
/// (0710, its group the service account's, which PostgreSQL 10 runs as and
/// must pass through to its data directory and socket; it may not list it),
/// every file in it root's and 0600 but PostgreSQL 10's start configuration
/// (0640, readable by its group) and its log (the service account's, 0640),
/// the 7.1 data directory and the socket directories the service account's
/// and 0700. And a backup replaced by a
/// consistent forgery (a new snapshot, archive and manifest agreeing) is
/// refused against the hash the upgrade registered, 9.1 still running.
#[tokio::test]
async fn the_backup_is_roots_and_a_consistent_forgery_is_refused() {
    use std::os::unix::fs::MetadataExt;
    let site = scenario(300, 0, 2).build();
    let Upgradable { server, ctx, .. } = &site;
    flow::upgrade(ctx).await.unwrap();
    let root = server.root();
    let backup = root.resolve(BACKUP_DIR).unwrap();
    let imss = imss_upgrade::support::account::ServiceUser::lookup(&root, "imss").unwrap();
    let meta = std::fs::metadata(&backup).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o710, 0, imss.gid),
        "the backup directory"
    );
    for entry in std::fs::read_dir(&backup).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        let expected = match name.as_str() {
            _ if meta.is_dir() => (0o700, imss.uid, imss.gid),
            // What PostgreSQL 10 reads when it starts from the backup (its
            // configuration and who it lets in), and the log it writes.
            "pgdata-71.conf" | "pgdata-71.hba.conf" => (0o640, 0, imss.gid),
            "pgdata-71.log" => (0o640, imss.uid, imss.gid),
            _ => (0o600, 0, 0),
        };
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            expected,
            "{name} in the backup directory"
        );
    }

    snapshot::create(&root, &backup, imss_upgrade::flow::layout::SNAPSHOT_PATHS).unwrap();
    let err = flow::roll_back(ctx).await.unwrap_err();
    assert!(format!("{err:#}").contains("tampered"), "{err:#}");
    assert_eq!(ProductInfo::load(&root).unwrap().version, "9.1");
    health::send_test_mail(ctx, "after-forgery").unwrap();
}

/// Build item 3 of the crash-safety issue: rolling back after 9.1 took
/// mail loses nothing. With mail arriving through the whole upgrade, a
/// while on 9.1 and the rollback, every mail the sender saw accepted is in
/// the 7.1 database afterwards, and what 9.1 did to the quarantine records
/// it had from 7.1 (one released through the EUQ, one deleted) holds in
/// 7.1 too. The 7.1 database goes on handing out ids after the carried
/// ones.
#[tokio::test]
async fn imss_rollback_carries_the_mail_91_processed_back_to_71() {
    let site = scenario(3000, 0, 3).build();
    let Upgradable { server, ctx, .. } = &site;
    let root = server.root();
    let before = server.dump_all().unwrap();

    let traffic = LoggedSender::start(&mail_at_20_a_second(server)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    flow::upgrade(ctx).await.expect("the upgrade succeeds");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // On 9.1, as its EUQ console would: one migrated message released, one
    // deleted.
    let client_91 = server.database().await.unwrap();
    let migrated: Vec<i64> = column(
        &client_91,
        "SELECT quarantine_id FROM quarantine_message WHERE source = '7.1' AND NOT released \
             ORDER BY quarantine_id LIMIT 2",
        &[],
    )
    .await;
    assert_eq!(migrated.len(), 2, "the window holds quarantined messages");
    let (released, deleted) = (migrated[0], migrated[1]);
    let changed_on_91: BTreeSet<String> = column(
        &client_91,
        "SELECT message_id FROM quarantine_message WHERE quarantine_id = ANY($1)",
        &[&migrated],
    )
    .await;
    client_91
        .execute(
            "UPDATE quarantine_message SET released = true, released_at = now() WHERE quarantine_id = $1",
            &[&released],
        )
        .await
        .unwrap();
    client_91
        .execute(
            "DELETE FROM quarantine_message WHERE quarantine_id = $1",
            &[&deleted],
        )
        .await
        .unwrap();
    let own_quarantine: Vec<i32> = column(
        &client_91,
        "SELECT quarantine_id::integer FROM quarantine_message \
             WHERE source = '9.1' AND message_id LIKE '<traffic-%'",
        &[],
    )
    .await;
    assert!(!own_quarantine.is_empty(), "9.1 quarantined no mail yet");
    drop(client_91);

    flow::roll_back(ctx).await.expect("the rollback succeeds");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (traffic, accepted) = traffic.finish().unwrap();
    assert_eq!(ProductInfo::load(&root).unwrap().version, "7.1");

    let client_71 = server.database().await.unwrap();
    assert!(traffic.accepted > 40, "{traffic:?}");
    let missing = missing(
        &accepted,
        &client_71,
        "SELECT message_id FROM tb_policy_event WHERE message_id LIKE '<traffic-%'",
    )
    .await;
    assert!(
        missing.is_empty(),
        "accepted but not in 7.1 after the rollback ({} of {}): {missing:?}",
        missing.len(),
        accepted.len()
    );
    // Apart from the mails taken since and the two messages 9.1 changed,
    // 7.1's database is as it was before the upgrade.
    let set_aside: BTreeSet<String> = accepted.union(&changed_on_91).cloned().collect();
    let (before, after) = (
        oracle::dump_71_without_mails(&before, &set_aside),
        oracle::dump_71_without_mails(&server.dump_all().unwrap(), &set_aside),
    );
    assert!(
        before == after,
        "pg_dumpall of 7.1 after the rollback differs from before the upgrade, apart from \
         the {} mails taken since and the 2 messages 9.1 changed:\n{}",
        accepted.len(),
        oracle::state_difference(&before, &after, 10)
    );
    let quarantined = |id: i64| {
        let client = &client_71;
        async move {
            client
                .query_opt(
                    "SELECT released FROM tb_quarantine WHERE quarantine_id = $1",
                    &[&(id as i32)],
                )
                .await
                .unwrap()
                .map(|row| row.get::<_, bool>(0))
        }
    };
    assert_eq!(
        quarantined(released).await,
        Some(true),
        "the release on 9.1 holds"
    );
    assert_eq!(
        quarantined(deleted).await,
        None,
        "the deletion on 9.1 holds"
    );
    let carried: i64 = value(
        &client_71,
        "SELECT count(*) FROM tb_quarantine WHERE quarantine_id = ANY($1)",
        &[&own_quarantine],
    )
    .await;
    assert_eq!(
        carried,
        own_quarantine.len() as i64,
        "9.1's quarantine records are not all in 7.1"
    );
    // 7.1 writes after the carried rows: a new mail gets a new id.
    let probe = health::send_test_mail(ctx, "after-carry-back").unwrap();
    let ids = client_71
        .query_one(
            "SELECT (SELECT event_id FROM tb_policy_event WHERE message_id = $1), \
                    (SELECT max(event_id) FROM tb_policy_event WHERE message_id <> $1)",
            &[&probe],
        )
        .await
        .unwrap();
    let (probe_id, highest_carried): (i32, i32) = (ids.get(0), ids.get(1));
    assert!(
        probe_id > highest_carried,
        "{probe_id} <= {highest_carried}"
    );
}

/// An administrator changes `sa`'s password on 9.1 after the upgrade, as
/// the 9.1 console does: in the database and in 9.1's `odbc.ini`. The 7.1
/// cluster in the backup keeps the old one. `imss-rollback` still starts
/// both clusters for the carry-back, reaches each, and puts 7.1 back
/// exactly as it was, reachable with its own password again.
#[tokio::test]
async fn imss_rollback_after_the_sa_password_changed_on_91_reaches_both_clusters() {
    let site = scenario(1000, 0, 3).with_baseline().build();
    let (payload, ctx) = (&site.payload, &site.ctx);
    let root = site.server.root();
    let settings_71 = DbSettings::load(&root).unwrap();

    let outcome = flow::upgrade(ctx).await.unwrap();
    assert!(matches!(outcome, Outcome::Upgraded(_)), "{outcome:?}");

    // On 9.1, as its console would: the role's password, then odbc.ini.
    const NEW_PASSWORD: &str = "Changed91Pass7";
    let client_91 = site.server.database().await.unwrap();
    client_91
        .batch_execute(&format!(
            "ALTER ROLE {} PASSWORD '{NEW_PASSWORD}'",
            settings_71.user
        ))
        .await
        .unwrap();
    drop(client_91);
    let odbc_ini = root.resolve(ODBC_INI).unwrap();
    let text = std::fs::read_to_string(&odbc_ini).unwrap();
    let rewritten: String = text
        .split_inclusive('\n')
        .map(|line| {
            if line.trim_start().starts_with("Password") && line.contains('=') {
                let end = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
                format!("Password    = {NEW_PASSWORD}{end}")
            } else {
                line.to_string()
            }
        })
        .collect();
    assert_ne!(
        rewritten,
        text,
        "{} holds no Password line",
        odbc_ini.display()
    );
    std::fs::write(&odbc_ini, rewritten).unwrap();
    let settings_91 = DbSettings::load(&root).unwrap();
    assert_eq!(settings_91.password.expose(), NEW_PASSWORD.as_bytes());
    pg::connect(&settings_91)
        .await
        .expect("9.1 takes its new password");

    let rollback = imss_rollback(&root, payload, ctx).output_text();
    let rollback = match rollback {
        Ok(output) => output,
        Err(err) => panic!("imss-rollback failed: {err:#}"),
    };
    assert!(rollback.contains("rolled back"), "{rollback}");
    assert!(
        !rollback.contains(NEW_PASSWORD),
        "the password is in the rollback's output: {rollback}"
    );

    site.check_back_on_71().unwrap();
    let back = DbSettings::load(&root).unwrap();
    assert_eq!(back.password.expose(), settings_71.password.expose());
    pg::connect(&back)
        .await
        .expect("7.1 takes its own password after the rollback");
}
