//! The 7.1 model on a host whose PID 1 is systemd, as a real 7.1 server on
//! RHEL 7 runs: `imss-fixture build --root /` in a booted host writes and
//! enables `imss71.target` with the database and the stand-in services as
//! units, `imss-fixture start|stop` (and so the control script the upgrade
//! stops and starts 7.1 with) start and stop them, and the scanner takes
//! mail on port 25. With EUQ off, the EUQ units are neither enabled nor
//! started. Also the EUQ service stand-in itself, on a server under a
//! directory: it reports the quarantine held for end users, or that EUQ is
//! disabled.
//!
//! The booted-host tests need root and `systemd-container` (see
//! `imss_fixture::hosts::booted_host`); they build the server with the workspace's
//! PostgreSQL 10 (`make setup`).

use std::time::Duration;

use imss_fixture::harness::FixtureServer;
use imss_fixture::hosts::model_host::ModelHost;
use imss_fixture::model::services::{Ports, ServiceKind, euq};
use imss_fixture::model::units::{self, DATABASE_UNIT, TARGET};
use imss_upgrade::files::odbc_ini::DbSettings;
use imss_upgrade::system::pg;

/// One booted host at a time: each builds and runs a whole server, and the
/// machine has few cores.
static ONE_HOST_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The scanner's port on `/` (the build's default there).
const SMTP_PORT: &str = "25";

/// The database's and the EUQ console's and service's default ports.
const DATABASE_PORT: &str = "5432";
const EUQ_CONSOLE_PORT: &str = "8447";
const EUQ_SERVICE_PORT: &str = "8448";

/// How long a build of a small server inside the host may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a start or stop of the whole server may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(300);

/// The EUQ service's answer to `STATUS` on its default port.
fn euq_status(host: &ModelHost) -> String {
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{EUQ_SERVICE_PORT} && printf 'STATUS\\r\\n' >&3 && cat <&3"
    );
    let (code, answer) = host.probe(&["bash", "-c", &script]);
    assert_eq!(
        code,
        Some(0),
        "the EUQ service on port {EUQ_SERVICE_PORT} inside the host does not answer"
    );
    answer
}

fn one_host_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_HOST_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The units a 7.1 server with EUQ on runs: the database and every
/// service.
fn server_units() -> Vec<String> {
    let mut list = vec![DATABASE_UNIT.to_string()];
    list.extend(ServiceKind::ALL.into_iter().map(units::service_unit));
    list
}

/// Builds a small 7.1 server on the host's `/` with `extra` build options;
/// the units the build reports it enabled.
fn build_on_root(host: &ModelHost, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["build", "--root", "/", "--history-rows", "2000", "--json"];
    args.extend_from_slice(extra);
    let text = host
        .fixture(&args, BUILD_TIMEOUT)
        .unwrap_or_else(|err| panic!("building the 7.1 server on / of the booted host: {err}"));
    let report: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("the build report is not JSON ({err}): {text}"));
    report["systemd_units"]
        .as_array()
        .unwrap_or_else(|| panic!("the build report names no systemd units: {text}"))
        .iter()
        .map(|unit| unit.as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn on_a_systemd_host_the_71_server_runs_as_units_that_its_control_script_stops_and_starts() {
    let _one = one_host_at_a_time();
    let host = ModelHost::boot("fx-71");

    let enabled = build_on_root(&host, &[]);
    let mut expected = vec![TARGET.to_string()];
    expected.extend(server_units());
    assert_eq!(
        enabled, expected,
        "the build enables the target and every unit"
    );
    for unit in &expected {
        assert_eq!(host.enabled(unit), "enabled", "{unit} after the build");
    }
    host.assert_units(&server_units(), "inactive", "after the build");

    host.fixture(&["start", "--root", "/"], CONTROL_TIMEOUT)
        .unwrap_or_else(|err| panic!("{err}"));
    host.assert_units(
        &server_units(),
        "active",
        "after `imss-fixture start --root /`",
    );
    assert_eq!(host.active(TARGET), "active");
    for unit in server_units() {
        assert_eq!(
            host.unit_user(&unit),
            "imss",
            "{unit} runs as the service account"
        );
    }
    let accepted = host.mail_accepted();
    assert!(accepted > 0, "the scanner accepted no mail on port 25");
    let answer = euq_status(&host);
    let held: u64 = answer
        .strip_prefix("EUQ 7.1 ready: ")
        .and_then(|rest| rest.strip_suffix(" messages in quarantine"))
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("the EUQ service answered {answer:?}"));
    assert!(
        held > 0,
        "2000 policy events quarantine some mail: {answer}"
    );

    // The control script the upgrade stops 7.1 with.
    let script = "/opt/trend/imss/script/imssctl.sh";
    host.host
        .command(&[script, "stop"])
        .unwrap()
        .timeout(CONTROL_TIMEOUT)
        .run()
        .unwrap_or_else(|err| panic!("{script} stop: {err}"));
    host.assert_units(&server_units(), "inactive", "after `imssctl.sh stop`");
    assert_eq!(host.active(TARGET), "inactive");
    for port in [SMTP_PORT, DATABASE_PORT, EUQ_CONSOLE_PORT, EUQ_SERVICE_PORT] {
        assert!(
            !host.listens(port),
            "port {port} still answers after `imssctl.sh stop`"
        );
    }

    // And the one a rollback starts it again with.
    host.host
        .command(&[script, "start"])
        .unwrap()
        .timeout(CONTROL_TIMEOUT)
        .run()
        .unwrap_or_else(|err| panic!("{script} start: {err}"));
    host.assert_units(&server_units(), "active", "after `imssctl.sh start`");
    assert!(
        host.mail_accepted() > 0,
        "the scanner accepted no mail after `imssctl.sh start`"
    );
}

#[test]
fn on_a_systemd_host_with_euq_off_the_euq_units_are_neither_enabled_nor_started() {
    let _one = one_host_at_a_time();
    let host = ModelHost::boot("fx-71-euq-off");

    let enabled = build_on_root(&host, &["--euq", "off"]);
    let euq_units = [
        units::service_unit(ServiceKind::Euq),
        units::service_unit(ServiceKind::EuqConsole),
    ];
    let running: Vec<String> = server_units()
        .into_iter()
        .filter(|unit| !euq_units.contains(unit))
        .collect();
    for unit in &euq_units {
        assert!(
            !enabled.contains(unit),
            "the build enabled {unit} with EUQ off: {enabled:?}"
        );
        assert_eq!(host.enabled(unit), "disabled", "{unit} with EUQ off");
    }

    host.fixture(&["start", "--root", "/"], CONTROL_TIMEOUT)
        .unwrap_or_else(|err| panic!("{err}"));
    host.assert_units(&running, "active", "after a start with EUQ off");
    host.assert_units(&euq_units, "inactive", "after a start with EUQ off");
    for port in [EUQ_CONSOLE_PORT, EUQ_SERVICE_PORT] {
        assert!(!host.listens(port), "port {port} answers with EUQ off");
    }
    assert!(host.mail_accepted() > 0, "the scanner accepted no mail");

    host.fixture(&["stop", "--root", "/"], CONTROL_TIMEOUT)
        .unwrap_or_else(|err| panic!("{err}"));
    host.assert_units(&server_units(), "inactive", "after `imss-fixture stop`");
}

#[tokio::test]
async fn the_euq_service_reports_the_held_quarantine_or_that_euq_is_disabled() {
    let server = FixtureServer::build(&["--history-rows", "500", "--tree-mb", "0"]).unwrap();
    let root = server.root();
    server.start().unwrap();
    let ports = Ports::load(&root).unwrap();
    let settings = DbSettings::load(&root).unwrap();
    let client = pg::connect(&settings).await.unwrap();
    let held: i64 = client
        .query_one("SELECT count(*) FROM tb_quarantine WHERE NOT released", &[])
        .await
        .unwrap()
        .get(0);
    assert!(held > 0, "500 policy events quarantine some mail");
    assert_eq!(
        euq::ask_status(ports.euq_service).await.unwrap(),
        format!("EUQ 7.1 ready: {held} messages in quarantine")
    );

    client
        .execute(
            "UPDATE tb_euq_setting SET value = '0' WHERE name = 'enable_euq'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        euq::ask_status(ports.euq_service).await.unwrap(),
        "EUQ 7.1 disabled"
    );
    drop(client);

    // It stops with the others.
    server
        .run(&["stop", "--root", &root.dir().to_string_lossy()])
        .unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", ports.euq_service)).is_err(),
        "the EUQ service still answers after `imss-fixture stop`"
    );
    assert!(!root.resolve(ServiceKind::Euq.pid_file()).unwrap().exists());
}

#[test]
fn on_a_systemd_host_the_71_server_comes_back_by_itself_after_a_power_loss() {
    let _one = one_host_at_a_time();
    let mut host = ModelHost::boot("fx-71-power");
    build_on_root(&host, &[]);
    host.fixture(&["start", "--root", "/"], CONTROL_TIMEOUT)
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(host.mail_accepted() > 0, "the scanner accepted no mail");

    // imss71.target is wanted by multi-user.target: the boot starts it,
    // the database past the pid file its killed server left.
    host.host.power_loss().unwrap();
    host.host
        .boot_again()
        .unwrap_or_else(|err| panic!("booting the host again after a power loss: {err:#}"));
    host.assert_units(&server_units(), "active", "after a power loss and a boot");
    assert!(
        host.mail_accepted() > 0,
        "the scanner accepted no mail after a power loss and a boot"
    );
}
