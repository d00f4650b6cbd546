//! The 7.1 model: `imss-fixture build|start|traffic|stop` run as a person
//! runs them, checked against what lands on disk and in PostgreSQL 10.

use std::collections::HashSet;

use imss_fixture::harness::{FixtureServer, fixture_exe};
use imss_fixture::model::odbc::{self, HARD_PASSWORDS};
use imss_upgrade::files::imss_ini::ProductInfo;
use imss_upgrade::files::odbc_ini::{self, DbSettings, ODBC_SECTION};
use imss_upgrade::files::odbc_password::DsnPassword;
use imss_upgrade::support::cmd::Cmd;
use imss_upgrade::support::constants::ODBC_INI;
use imss_upgrade::support::secret::Secret;
use imss_upgrade::system::pg;

async fn count(settings: &DbSettings, table: &str) -> i64 {
    let client = pg::connect(settings).await.unwrap();
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// Builds, starts, and checks the history against `rows`.
async fn check_built_server(rows: u64, tree_mb: u64) {
    let server = FixtureServer::build(&[
        "--history-rows",
        &rows.to_string(),
        "--tree-mb",
        &tree_mb.to_string(),
        "--days",
        "7",
    ])
    .unwrap();
    let root = server.root();
    let product = ProductInfo::load(&root).unwrap();
    assert_eq!((product.version.as_str(), product.build), ("7.1", 1808));
    assert_eq!(product.components.len(), 5);
    let os_release = std::fs::read_to_string(root.resolve("/etc/os-release").unwrap()).unwrap();
    assert!(os_release.contains("VERSION_ID=\"8.10\""), "{os_release}");
    let passwd = std::fs::read_to_string(root.resolve("/etc/passwd").unwrap()).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("imss:")), "{passwd}");
    let tree_bytes: u64 = walk_size(&root.resolve("/opt/trend/imss/lib/modules").unwrap());
    assert!(
        tree_bytes + 8 * 1024 * 1024 >= tree_mb * 1024 * 1024,
        "padding {tree_bytes} bytes for --tree-mb {tree_mb}"
    );

    server.start().unwrap();
    // Nothing the model installs names the checkout it was built from:
    // sandboxed units would not see it, and a server must not need it.
    let checkout = env!("CARGO_MANIFEST_DIR");
    // grep exits 1 when nothing matches: the list is what counts.
    let naming = std::process::Command::new("grep")
        .args(["-rIl", "--fixed-strings", "--", checkout])
        .arg(server.root_dir())
        .output()
        .unwrap();
    assert!(
        naming.stdout.is_empty(),
        "files of the model name the checkout {checkout}:\n{}",
        String::from_utf8_lossy(&naming.stdout)
    );
    let control =
        std::fs::read_to_string(root.resolve("/opt/trend/imss/script/imssctl.sh").unwrap())
            .unwrap();
    assert!(control.contains("IMSS 7.1 service control"), "{control}");
    let settings = DbSettings::load(&root).unwrap();
    assert_eq!(count(&settings, "tb_policy_event").await, rows as i64);
    let client = pg::connect(&settings).await.unwrap();
    let version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .unwrap()
        .get(0);
    assert!(version.starts_with("10."), "{version}");
    let paths = client
        .query("SELECT file_path, file_size FROM tb_quarantine UNION ALL SELECT file_path, file_size FROM tb_archive", &[])
        .await
        .unwrap();
    // One event in 50 is quarantined (index 0, 50, …), one in 200 archived (index 1, 201, …).
    let expected = rows.div_ceil(50) + (rows - 2) / 200 + 1;
    assert_eq!(paths.len() as u64, expected);
    for row in &paths {
        let inside: String = row.get(0);
        let size: i32 = row.get(1);
        let file = root.resolve(&inside).unwrap();
        let meta = std::fs::metadata(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(meta.len(), size as u64, "{inside}");
    }
    let span: (chrono::NaiveDateTime, chrono::NaiveDateTime) = {
        let row = client
            .query_one(
                "SELECT min(event_time), max(event_time) FROM tb_policy_event",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    let days = (span.1 - span.0).num_hours() as f64 / 24.0;
    assert!((6.5..=7.1).contains(&days), "history spans {days} days");
    let versions: i64 = client
        .query_one(
            "SELECT count(*) FROM tb_component_version WHERE version ~ '^[0-9]+\\.[0-9]+'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, 8);
    drop(client);
    server.stop().unwrap();
}

fn walk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let meta = e.metadata().unwrap();
                    if meta.is_dir() {
                        walk_size(&e.path())
                    } else {
                        meta.len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn a_small_server_is_built_whole() {
    check_built_server(2_000, 1).await;
}

#[tokio::test]
async fn a_larger_server_is_built_whole() {
    check_built_server(200_000, 16).await;
}

#[tokio::test]
async fn the_scanner_accepts_mail_and_its_rows_land_in_postgres_10() {
    let server = FixtureServer::build(&["--history-rows", "100"]).unwrap();
    server.start().unwrap();
    let settings = DbSettings::load(&server.root()).unwrap();
    let before = count(&settings, "tb_policy_event").await;
    let accepted_log = server.root_dir().join("accepted.txt");
    let report: serde_json::Value = serde_json::from_str(
        &server
            .run(&[
                "traffic",
                "--port",
                &server.smtp_port.to_string(),
                "--rate",
                "40",
                "--duration",
                "2",
                "--accepted-log",
                &accepted_log.to_string_lossy(),
                "--json",
            ])
            .unwrap(),
    )
    .unwrap();
    let accepted = report["accepted"].as_u64().unwrap();
    assert_eq!(report["sent"].as_u64().unwrap(), 80, "{report}");
    assert_eq!(accepted, 80, "{report}");
    assert_eq!(
        report["refused"].as_u64().unwrap() + report["failed"].as_u64().unwrap(),
        0
    );

    let after = count(&settings, "tb_policy_event").await;
    assert_eq!(after - before, accepted as i64);
    let client = pg::connect(&settings).await.unwrap();
    let logged: HashSet<String> = client
        .query(
            "SELECT message_id FROM tb_policy_event WHERE event_id > $1",
            &[&(before as i32)],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    let sent: Vec<String> = std::fs::read_to_string(&accepted_log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(sent.len() as u64, accepted);
    for id in &sent {
        assert!(
            logged.contains(id),
            "accepted mail {id} has no policy event"
        );
    }
    let quarantined: i64 = client
        .query_one(
            "SELECT count(*) FROM tb_quarantine q JOIN tb_policy_event e USING (event_id) WHERE e.event_id > $1",
            &[&(before as i32)],
        )
        .await
        .unwrap()
        .get(0);
    assert!(quarantined > 0, "a share of the mail should be quarantined");
}

/// A hard password: the fixture writes it as psqlODBC's setup writes it,
/// the real driver connects with the file (`isql`), and the stand-in
/// scanner, which reads it through the product's reader, connects too and
/// records mail.
async fn password_works_end_to_end(password: &str) {
    let server = FixtureServer::build_with_password(password, &[]).unwrap();
    let root = server.root();
    let odbc = odbc_ini::load(&root.resolve(ODBC_INI).unwrap()).unwrap();
    let encoded = DsnPassword::encode(&Secret::new(password));
    assert_eq!(
        odbc.get("IMSS", "Password").map(String::into_bytes),
        Some(encoded.written().expose().to_vec()),
        "the fixture writes the password as psqlODBC's setup does"
    );
    server.start().unwrap();
    odbc::isql_connect(&root, ODBC_INI, ODBC_SECTION).unwrap();
    let report: serde_json::Value = serde_json::from_str(
        &server
            .run(&[
                "traffic",
                "--port",
                &server.smtp_port.to_string(),
                "--rate",
                "10",
                "--duration",
                "0.5",
                "--json",
            ])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        report["accepted"].as_u64(),
        Some(5),
        "{password:?}: {report}"
    );
    let settings = DbSettings::load(&root).unwrap();
    assert_eq!(settings.password.expose(), password.as_bytes());
    assert_eq!(count(&settings, "tb_policy_event").await, 15);
}

#[tokio::test]
async fn hard_passwords_work_end_to_end() {
    let mut failures = Vec::new();
    for password in HARD_PASSWORDS {
        if let Err(err) = tokio::spawn(password_works_end_to_end(password)).await {
            failures.push(format!("{password:?}: {err}"));
        }
    }
    assert!(failures.is_empty(), "these passwords failed: {failures:?}");
}

#[test]
fn a_non_empty_root_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
    let err = Cmd::new(fixture_exe().unwrap())
        .args(["build", "--root"])
        .arg(dir.path())
        .run()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is not empty") && err.contains("new or empty directory"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_missing_postgres_10_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = Cmd::new(fixture_exe().unwrap())
        .args(["build", "--root"])
        .arg(dir.path().join("new"))
        .env("IMSS_PG10_BIN", "/nonexistent/pg10/bin")
        .run()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/pg10/bin/initdb") && err.contains("make setup"),
        "{err}"
    );
    assert!(
        !dir.path().join("new").exists(),
        "nothing should be created"
    );
}

#[test]
fn a_port_in_use_is_named_with_the_fix() {
    let server = FixtureServer::build(&["--history-rows", "10", "--tree-mb", "0"]).unwrap();
    let taken = std::net::TcpListener::bind(("127.0.0.1", server.smtp_port)).unwrap();
    let err = server.start().unwrap_err().to_string();
    assert!(err.contains(&format!("port {}", server.smtp_port)), "{err}");
    assert!(err.contains("--smtp-port"), "{err}");
    drop(taken);
    server.start().unwrap();
    server.stop().unwrap();
}
