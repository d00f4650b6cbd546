//! The test harness itself: PostgreSQL 10 and 15 servers start as an
//! unprivileged user and leave nothing behind, panics included.

use imss_fixture::harness::{PgVersion, TestServer, processes_mentioning};
use imss_upgrade::system::pg;

async fn server_version(server: &TestServer) -> String {
    let client = pg::connect(&server.settings("postgres")).await.unwrap();
    let row = client.query_one("SHOW server_version", &[]).await.unwrap();
    row.get(0)
}

#[tokio::test]
async fn postgres_10_and_15_run_side_by_side_as_an_unprivileged_user() {
    let old = TestServer::start(PgVersion::V10).unwrap();
    let new = TestServer::start(PgVersion::V15).unwrap();
    assert!(server_version(&old).await.starts_with("10."));
    assert!(server_version(&new).await.starts_with("15."));
    let client = pg::connect(&old.settings("postgres")).await.unwrap();
    let user: String = client
        .query_one(
            "SELECT usename::text FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "sa");
    let owner = std::fs::metadata(&old.cluster().data_dir).unwrap();
    assert_ne!(
        std::os::unix::fs::MetadataExt::uid(&owner),
        0,
        "the server must not run as root"
    );
}

#[test]
fn shut_down_leaves_no_process_or_directory() {
    let server = TestServer::start(PgVersion::V15).unwrap();
    let dir = server.dir().to_path_buf();
    let needle = dir.to_string_lossy().into_owned();
    assert!(
        !processes_mentioning(&needle).is_empty(),
        "the server should be running"
    );
    let removed = server.shut_down().unwrap();
    assert_eq!(removed, dir);
    assert!(!dir.exists(), "{} is left behind", dir.display());
    assert!(
        processes_mentioning(&needle).is_empty(),
        "a server process is left behind"
    );
}

#[test]
fn a_panicking_test_leaves_no_process_or_directory() {
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let server = TestServer::start(PgVersion::V10).unwrap();
        tx.send(server.dir().to_path_buf()).unwrap();
        panic!("a test failing while its server runs");
    })
    .join();
    assert!(outcome.is_err(), "the thread should have panicked");
    let dir = rx.recv().unwrap();
    assert!(!dir.exists(), "{} is left behind", dir.display());
    assert!(
        processes_mentioning(&dir.to_string_lossy()).is_empty(),
        "a server process is left behind"
    );
}

#[test]
fn a_missing_postgres_10_says_how_to_install_it() {
    // SAFETY of the env change: this test binary's other tests read IMSS_PG10_BIN
    // too, so the variable is only changed inside a child process.
    let exe = std::env::current_exe().unwrap();
    if std::env::var_os("IMSS_HARNESS_CHILD").is_some() {
        let err = PgVersion::V10.install().unwrap_err().to_string();
        assert!(err.contains("make setup"), "{err}");
        assert!(err.contains("/nonexistent/bin/initdb"), "{err}");
        return;
    }
    // The child's output is captured: its own "test result" line would
    // otherwise be counted with this binary's.
    let child = std::process::Command::new(exe)
        .args([
            "--exact",
            "a_missing_postgres_10_says_how_to_install_it",
            "--nocapture",
        ])
        .env("IMSS_HARNESS_CHILD", "1")
        .env("IMSS_PG10_BIN", "/nonexistent/bin")
        .output()
        .unwrap();
    assert!(
        child.status.success(),
        "{}{}",
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
    assert!(
        String::from_utf8_lossy(&child.stdout).contains("1 passed"),
        "the child ran no test"
    );
}
