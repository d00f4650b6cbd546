//! `odbc.ini` as the real driver reads it. The oracle is unixODBC's `isql`
//! with Debian's psqlODBC, the driver the file names: for every password,
//! the fixture writes the value psqlODBC expects, and `isql` connects with
//! the 7.1 file before the upgrade, with the 9.1 file after it and with the
//! 7.1 file again after `imss-rollback`. A value psqlODBC would read as
//! another password is stopped by preflight with a message that says how to
//! write it; one it cannot decode at all is tried as written.

use imss_fixture::harness::{FixtureServer, Payload, flow};
use imss_fixture::model::odbc::{self, HARD_PASSWORDS};
use imss_upgrade::cli::render;
use imss_upgrade::files::odbc_ini::{DbSettings, ODBC_91, ODBC_SECTION};
use imss_upgrade::files::odbc_password::{DsnPassword, ReadingKind};
use imss_upgrade::flow::upgrade::preflight;
use imss_upgrade::flow::upgrade::run::Outcome;
use imss_upgrade::support::constants::ODBC_INI;
use imss_upgrade::support::secret::Secret;

/// Passwords `isql` was tried with by hand (the server's password is the
/// same text), the fixture's default, and preflight's test password.
const TABLE_PASSWORDS: &[&str] = &[
    "plain",
    "ab;cd",
    "ab#cd",
    "a\"b",
    "a'b",
    "a\\b",
    "a b",
    "x{y}",
    "{xy}",
    "abc%41def",
    "a+b",
    imss_fixture::model::build::DEFAULT_PASSWORD,
    "p%(ss)s%;#w=rd",
];

/// What `imss-upgrade config export` says of the database it read.
fn config_export_output(server: &FixtureServer) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("imsx_config.dat");
    let root = server.root_dir();
    imss_upgrade::support::cmd::Cmd::new(env!("CARGO_BIN_EXE_imss-upgrade"))
        .arg("--root")
        .arg(&root)
        .arg("config")
        .arg("export")
        .arg(&file)
        .output_text()
        .unwrap()
}

/// One password through the whole cycle; `Err` says where it broke.
async fn connects_before_after_and_after_rollback(
    payload: &Payload,
    password: &str,
) -> Result<(), String> {
    let server = FixtureServer::build_with_password(password, &[]).unwrap();
    let root = server.root();
    let settings = DbSettings::load(&root).map_err(|e| format!("{e:#}"))?;
    if settings.password_in_file != DsnPassword::encode(&Secret::new(password)) {
        return Err("the fixture did not write the password as psqlODBC's setup does".into());
    }
    server.start().map_err(|e| format!("start: {e:#}"))?;
    odbc::isql_connect(&root, ODBC_INI, ODBC_SECTION).map_err(|e| format!("7.1, before: {e:#}"))?;

    let ctx = payload.context(&server).map_err(|e| format!("{e:#}"))?;
    match flow::upgrade(&ctx).await {
        Ok(Outcome::Upgraded(_)) => {}
        other => return Err(format!("the upgrade did not complete: {other:?}")),
    }
    let settings_91 = DbSettings::load(&root).map_err(|e| format!("{e:#}"))?;
    if settings_91.password_in_file != settings.password_in_file {
        return Err("the 9.1 odbc.ini does not hold the 7.1 value byte for byte".into());
    }
    if settings_91.password != Secret::new(password) {
        return Err("the 9.1 odbc.ini does not read back as the password".into());
    }
    odbc::isql_connect(&root, ODBC_INI, ODBC_91.section)
        .map_err(|e| format!("9.1, after: {e:#}"))?;

    flow::roll_back(&ctx)
        .await
        .map_err(|e| format!("rollback: {e:#}"))?;
    odbc::isql_connect(&root, ODBC_INI, ODBC_SECTION)
        .map_err(|e| format!("7.1, after rollback: {e:#}"))?;
    server.stop().map_err(|e| format!("stop: {e:#}"))
}

/// Servers cycled at once: each waits on its databases and services much
/// of the time.
const CYCLES_AT_ONCE: usize = 3;

#[test]
fn every_password_connects_through_psqlodbc_before_and_after_the_upgrade_and_after_rollback() {
    let payload = Payload::build().unwrap();
    let passwords: Vec<&str> = TABLE_PASSWORDS
        .iter()
        .chain(HARD_PASSWORDS)
        .copied()
        .collect();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CYCLES_AT_ONCE)
            .map(|worker| {
                let (payload, passwords) = (&payload, &passwords);
                scope.spawn(move || {
                    let runtime = tokio::runtime::Runtime::new().unwrap();
                    passwords
                        .iter()
                        .skip(worker)
                        .step_by(CYCLES_AT_ONCE)
                        .filter_map(|password| {
                            runtime
                                .block_on(connects_before_after_and_after_rollback(
                                    payload, password,
                                ))
                                .err()
                                .map(|err| format!("{password:?}: {err}"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `a+b` written as it stands: psqlODBC sends `a b`, which is not the
/// password. The real driver fails with it too, and preflight stops the
/// upgrade before any change, saying how psqlODBC reads the value.
#[tokio::test]
async fn a_value_psqlodbc_reads_as_another_password_is_an_inhibitor_that_says_why() {
    let server = FixtureServer::build_with_password("a+b", &["--odbc-password", "a+b"]).unwrap();
    server.start().unwrap();
    let root = server.root();
    let driver = odbc::isql_connect(&root, ODBC_INI, ODBC_SECTION).unwrap_err();
    assert!(
        format!("{driver:#}").contains("password authentication failed"),
        "{driver:#}"
    );

    let payload = Payload::build().unwrap();
    let ctx = payload.context(&server).unwrap();
    let report = preflight::run(&ctx).await.unwrap();
    let finding = report
        .finding("database-password-refused")
        .unwrap_or_else(|| panic!("no password finding: {}", render::preflight(&report)));
    assert_eq!(finding.severity, preflight::Severity::Inhibitor);
    let text = render::preflight(&report);
    for needed in ["psqlODBC", "+ as a space", "%2B", "%25"] {
        assert!(text.contains(needed), "{needed:?} missing from:\n{text}");
    }
    assert!(
        !text.contains("a+b") && !text.contains("a b"),
        "the password is shown:\n{text}"
    );
    server.stop().unwrap();
}

/// A value with a `%` psqlODBC cannot decode was not written for it: the
/// server accepts it as written, preflight says so, and the upgrade writes
/// 9.1's file in the form psqlODBC reads, which the real driver then uses.
#[tokio::test]
async fn a_value_psqlodbc_cannot_decode_is_tried_as_written_and_encoded_for_91() {
    // psqlODBC would read the + as a space; the server has it as a +.
    let password = "Imss%(sa)s+100%";
    let server =
        FixtureServer::build_with_password(password, &["--odbc-password", password]).unwrap();
    let root = server.root();
    let settings = DbSettings::load(&root).unwrap();
    assert_eq!(settings.password_readings().len(), 2);
    server.start().unwrap();

    let payload = Payload::build().unwrap();
    let ctx = payload.context(&server).unwrap();
    let report = preflight::run(&ctx).await.unwrap();
    let text = render::preflight(&report);
    assert!(report.ready, "{text}");
    assert!(
        report.finding("database-password-as-written").is_some(),
        "{text}"
    );
    assert_eq!(
        report.database.as_ref().unwrap().password_reading,
        ReadingKind::AsWritten
    );
    assert!(text.contains("read exactly as written"), "{text}");
    // config export reads the file the same way, and says so the same way.
    let database = report.database.as_ref().unwrap();
    let said = config_export_output(&server);
    let described = format!(
        "password {} ({})",
        database.password,
        ReadingKind::AsWritten.describe()
    );
    assert!(said.contains(&described), "{said}");
    assert!(
        text.contains(&format!(
            "{} ({})",
            database.password,
            ReadingKind::AsWritten.describe()
        )),
        "{text}"
    );
    assert!(
        !said.contains("Imss") && !text.contains("Imss"),
        "the password is shown"
    );

    let Outcome::Upgraded(_) = flow::upgrade(&ctx).await.unwrap() else {
        panic!("the upgrade did not complete")
    };
    let settings_91 = DbSettings::load(&root).unwrap();
    assert_eq!(
        settings_91.password_in_file,
        DsnPassword::encode(&Secret::new(password))
    );
    assert_eq!(settings_91.password_reading, ReadingKind::Decoded);
    odbc::isql_connect(&root, ODBC_INI, ODBC_91.section).unwrap();
    server.stop().unwrap();
}
