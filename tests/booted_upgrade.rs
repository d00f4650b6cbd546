//! The whole upgrade on a booted host, as an administrator runs it on a
//! RHEL server: a 7.1 server on `/` running as units, beside the host's
//! own DNS server on port 53; `imss-upgrade run` leaves 9.1 running as
//! units (the bundled BIND on the first free pair of ports, EUQ's units
//! where 7.1 used EUQ) with the host's DNS server untouched and answering;
//! the journal holds each event with its fields; `imss-rollback` removes
//! every IMSS 9.1 unit and puts 7.1 back exactly as it was.
//!
//! Needs root and `systemd-container` (see `imss_fixture::hosts::booted_host`),
//! and bind9 on this machine, whose `named.service` the host boots with.

use std::time::Duration;

use imss_fixture::hosts::model_host::{ModelHost, STOP_FILE, units_71, units_91, wait_for};
use imss_fixture::model::build::DEFAULT_PASSWORD;
use imss_upgrade::files::units;
use imss_upgrade::flow::journal::RunState;
use imss_upgrade::support::logging::events;

/// One booted host at a time: each builds and upgrades a whole server, and
/// the machine has few cores.
static ONE_HOST_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const UPGRADE: &str = env!("CARGO_BIN_EXE_imss-upgrade");
const ROLLBACK: &str = env!("CARGO_BIN_EXE_imss-rollback");

/// Where the upgrade package puts the 9.1 payload and its helper; the
/// recovery and compression units run the helper from there.
const PAYLOAD: &str = imss_upgrade::flow::context::PAYLOAD_DIR;
const HELPER_ON_HOST: &str = "usr/sbin/imss-upgrade";

const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(900);

fn one_host_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_HOST_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A booted host with a running 7.1 server built on its `/` with `extra`
/// build options, and the 9.1 payload written inside it.
fn host_with_71(name: &str, extra: &[&str]) -> ModelHost {
    let host = ModelHost::with_71(name, extra);
    host.fixture(&["payload", "--out", PAYLOAD], BUILD_TIMEOUT)
        .unwrap_or_else(|err| panic!("writing the payload on the host: {err}"));
    // What the package installs beside the payload: the helper its units run.
    std::fs::copy(UPGRADE, host.host.root().join(HELPER_ON_HOST)).unwrap();
    host
}

/// The pattern files and engines the stand-in console (the policy
/// service's page, port 15505) lists, with their versions.
fn console_versions(host: &ModelHost) -> Vec<String> {
    let request = "exec 3<>/dev/tcp/127.0.0.1/15505 || exit 1; \
        printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3";
    let (code, page) = host.probe(&["bash", "-c", request]);
    assert_eq!(code, Some(0), "the console does not answer: {page}");
    let listed: Vec<String> = page
        .lines()
        .filter(|line| line.starts_with("  "))
        .map(|line| line.trim().to_string())
        .collect();
    assert!(listed.len() > 3, "the console lists no versions:\n{page}");
    listed
}

/// `dig` inside the host: the A records of `localhost.` from the DNS
/// server on 127.0.0.1:`port`.
fn dig_localhost(host: &ModelHost, port: u16) -> String {
    host.probe(&[
        "dig",
        "@127.0.0.1",
        "-p",
        &port.to_string(),
        "localhost",
        "A",
        "+short",
    ])
    .1
}

#[test]
fn a_whole_upgrade_and_its_rollback_on_a_booted_host_beside_the_hosts_own_dns_server() {
    let _one = one_host_at_a_time();
    let host = host_with_71("e2e-upgrade", &[]);
    // The host runs its own DNS server (bind9's named.service) on 53/953.
    assert_eq!(host.active("named.service"), "active");
    assert_eq!(dig_localhost(&host, 53), "127.0.0.1");
    host.assert_units(&units_71(), "active", "before the upgrade");
    let before = host.baseline();
    let versions_before = console_versions(&host);

    let (code, stdout, stderr) =
        host.run_inside(&[UPGRADE, "run", "--root", "/", "--json"], UPGRADE_TIMEOUT);
    assert_eq!(code, Some(0), "the upgrade failed:\n{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("the report is not JSON ({err}):\n{stdout}"));

    // 9.1 runs as units, EUQ's included, as 7.1 had EUQ on; 7.1's are off.
    host.assert_units(&units_91(true), "active", "after the upgrade");
    // Starting them started the recovery unit they want, while the run
    // held the lock: it had nothing to do, and no unit of ours failed.
    assert!(
        monotonic(
            &host,
            units::RECOVER.name,
            "ExecMainStartTimestampMonotonic"
        ) > 0,
        "the 9.1 units did not start the recovery unit"
    );
    let (_, failed) = host.probe(&[
        "systemctl",
        "list-units",
        "--failed",
        "--plain",
        "--no-legend",
        "imss*",
    ]);
    assert!(
        failed.trim().is_empty(),
        "units failed during the upgrade:\n{failed}"
    );
    for unit in units_91(true) {
        assert_eq!(host.enabled(&unit), "enabled", "{unit} after the upgrade");
    }
    for unit in units_71() {
        assert_eq!(host.active(&unit), "inactive", "{unit} after the upgrade");
        assert_eq!(host.enabled(&unit), "disabled", "{unit} after the upgrade");
    }
    assert_eq!(host.unit_user("imss-postgresql.service"), "imss");
    assert_eq!(host.unit_user("imss-named.service"), "imss");
    // Checked without a message: mail 9.1 took would be carried back to
    // 7.1 by the rollback, and the database would rightly differ.
    assert!(host.takes_mail(), "9.1 takes no mail");
    assert!(host.listens("8447"), "the EUQ console does not answer");
    // 9.1's console shows 7.1's pattern and engine versions, not its own
    // defaults, and so does the report.
    assert_eq!(console_versions(&host), versions_before);
    let reported: Vec<String> = report["pattern_and_engine_versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            format!(
                "{} {}",
                item["component"].as_str().unwrap(),
                item["version"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(reported, versions_before);

    // The host's DNS server keeps 53 and answers; the bundled one took
    // the first free pair and answers there.
    assert_eq!(host.active("named.service"), "active");
    assert_eq!(dig_localhost(&host, 53), "127.0.0.1");
    assert_eq!(report["bundled_bind"]["dns_port"], 10053, "{report}");
    assert_eq!(report["bundled_bind"]["rndc_port"], 10953, "{report}");
    let reason = report["bundled_bind"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("53/953 taken") && reason.contains("named"),
        "{reason}"
    );
    assert_eq!(dig_localhost(&host, 10053), "127.0.0.1");
    assert_eq!(report["euq_enabled"], true, "{report}");
    let (code, status, _) = host.run_inside(
        &[UPGRADE, "status", "--json", "--root", "/"],
        UPGRADE_TIMEOUT,
    );
    assert_eq!(code, Some(0), "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["bundled_bind"]["dns_port"], 10053, "{status}");

    // The journal tells the story, with fields.
    let bind_events = host.journal_events(events::BIND_PORTS_CHOSEN);
    assert_eq!(bind_events.len(), 1, "{bind_events:?}");
    assert_eq!(bind_events[0]["IMSS_DNS_PORT"], "10053");
    let unit_events = host.journal_events(events::UNITS_STARTED);
    assert_eq!(unit_events.len(), 1, "{unit_events:?}");
    assert_eq!(unit_events[0]["IMSS_EUQ"], "enabled");
    for id in [events::UPGRADE_STARTED, events::UPGRADE_COMPLETED] {
        assert_eq!(host.journal_events(id).len(), 1, "MESSAGE_ID={id}");
    }
    let finished: Vec<String> = host
        .journal_events(events::STEP_FINISHED)
        .iter()
        .map(|event| {
            assert!(event["IMSS_DURATION_MS"].is_string(), "{event}");
            event["IMSS_STEP"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        finished,
        [
            "presync",
            "quiesce",
            "snapshot",
            "migrate",
            "switch",
            "register-rollback"
        ],
        "each step's event, in order"
    );

    // The upgrade's own units: recovery enabled for every boot, and the
    // snapshot's compression started in the background once the upgrade
    // completed (the rollback below stops it if it still works: either
    // form of the snapshot restores).
    assert_eq!(host.enabled(units::RECOVER.name), "enabled");
    wait_for(
        Duration::from_secs(60),
        "the snapshot's compression to start",
        || {
            monotonic(
                &host,
                units::COMPRESS.name,
                "ExecMainStartTimestampMonotonic",
            ) > 0
        },
    );

    let (code, stdout, stderr) = host.run_inside(&[ROLLBACK, "--root", "/"], UPGRADE_TIMEOUT);
    assert_eq!(code, Some(0), "imss-rollback failed:\n{stdout}\n{stderr}");

    // Every IMSS 9.1 unit is gone, 7.1's run and are enabled again, and
    // the server is what it was.
    for unit in units_91(true) {
        assert_ne!(host.active(&unit), "active", "{unit} after the rollback");
    }
    host.assert_units(&units_71(), "active", "after the rollback");
    host.assert_back_on_71_exactly(&before, "after the rollback");
    assert_eq!(host.active("named.service"), "active");
    assert_eq!(dig_localhost(&host, 53), "127.0.0.1");
    assert!(
        host.mail_accepted() > 0,
        "7.1 takes no mail after the rollback"
    );

    // The database password is nowhere in the journal: neither as it is
    // nor as odbc.ini writes it. Export keeps values as logged; the
    // password's first part has no character any format would escape.
    let odbc_ini =
        std::fs::read_to_string(host.host.root().join("opt/trend/imss/config/odbc.ini")).unwrap();
    let written = odbc_ini
        .lines()
        .find_map(|line| line.trim().strip_prefix("Password"))
        .and_then(|rest| rest.trim_start().strip_prefix('='))
        .map(str::trim)
        .expect("odbc.ini has a Password line");
    let journal = host
        .host
        .run(&["journalctl", "--no-pager", "-o", "export", "--all"])
        .unwrap();
    assert!(
        journal.contains("SYSLOG_IDENTIFIER=imss-upgrade"),
        "the journal holds nothing of the upgrade"
    );
    let first_part = &DEFAULT_PASSWORD[..DEFAULT_PASSWORD.find('"').unwrap()];
    for form in [DEFAULT_PASSWORD, first_part, written] {
        assert!(
            !journal.contains(form),
            "the password ({form:?} form) is in the journal"
        );
    }
}

/// Starts `imss-upgrade run` inside the host, stopped dead at fail point
/// `point`, then cuts the host's power and boots it again: the recovery
/// unit settles the run at boot.
fn power_loss_at(host: &mut ModelHost, point: &str) {
    host.power_loss_once_stopped(
        &[
            "env",
            &format!("IMSS_STOP_AT={point}"),
            &format!("IMSS_STOP_FILE={STOP_FILE}"),
            UPGRADE,
            "run",
            "--root",
            "/",
        ],
        &format!("the run reaching {point}"),
    );
}

/// When `unit`'s main process started or exited (`property`), in
/// microseconds since boot.
fn monotonic(host: &ModelHost, unit: &str, property: &str) -> u64 {
    host.probe(&[
        "systemctl",
        "show",
        &format!("--property={property}"),
        "--value",
        unit,
    ])
    .1
    .parse()
    .unwrap_or_else(|err| panic!("{unit} {property}: {err}"))
}

#[test]
fn a_power_loss_inside_the_migration_is_rolled_back_at_boot_to_71_exactly() {
    let _one = one_host_at_a_time();
    let mut host = host_with_71("e2e-power-migrate", &[]);
    let before = host.baseline();

    power_loss_at(&mut host, "migrate-window-copied");

    assert_eq!(host.step_journal().state, RunState::RolledBack);
    assert_eq!(
        host.probe(&[
            "systemctl",
            "show",
            "--property=Result",
            "--value",
            units::RECOVER.name
        ])
        .1,
        "success"
    );
    wait_for(Duration::from_secs(120), "7.1's units to run", || {
        units_71().iter().all(|unit| host.active(unit) == "active")
    });
    host.assert_back_on_71_exactly(&before, "after the recovery");
}

#[test]
fn a_power_loss_after_the_switch_is_finished_at_boot_before_any_imss_unit_starts() {
    let _one = one_host_at_a_time();
    let mut host = host_with_71("e2e-power-switch", &[]);

    power_loss_at(&mut host, "before-register-rollback");

    assert_eq!(host.step_journal().state, RunState::Completed);
    wait_for(Duration::from_secs(120), "9.1's units to run", || {
        units_91(true)
            .iter()
            .all(|unit| host.active(unit) == "active")
    });
    let settled = monotonic(&host, units::RECOVER.name, "ExecMainExitTimestampMonotonic");
    for unit in units_91(true) {
        let started = monotonic(&host, &unit, "ExecMainStartTimestampMonotonic");
        assert!(
            settled <= started,
            "{unit} started ({started}) before the recovery ended ({settled})"
        );
    }
    for unit in units_71() {
        assert_eq!(host.active(&unit), "inactive", "{unit} after the recovery");
    }
    wait_for(Duration::from_secs(60), "the scanner to take mail", || {
        host.takes_mail()
    });
    assert!(
        host.host
            .root()
            .join(&imss_upgrade::flow::layout::STATE_DIR[1..])
            .join("rollback-manifest.json")
            .is_file(),
        "the recovery registered the rollback"
    );
    // What follows a completed upgrade follows one a boot finished too.
    let compressed = host
        .host
        .root()
        .join(&imss_upgrade::flow::layout::BACKUP_DIR[1..])
        .join("snapshot.tar.xz");
    wait_for(
        Duration::from_secs(180),
        "the snapshot's compression",
        || compressed.is_file(),
    );
}

/// Upgrades the host's 7.1 server; panics with the output on a failure.
/// Returns the report.
fn upgrade(host: &ModelHost) -> serde_json::Value {
    let (code, stdout, stderr) =
        host.run_inside(&[UPGRADE, "run", "--root", "/", "--json"], UPGRADE_TIMEOUT);
    assert_eq!(code, Some(0), "the upgrade failed:\n{stdout}\n{stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("the report is not JSON ({err}):\n{stdout}"))
}

#[test]
fn without_a_dns_server_on_the_host_bind_takes_53_and_with_euq_off_its_units_stay_off() {
    let _one = one_host_at_a_time();
    let host = host_with_71("e2e-no-dns", &["--euq", "off"]);
    host.host
        .run(&["systemctl", "disable", "--now", "named.service"])
        .unwrap();
    assert!(!host.listens("53"));

    let report = upgrade(&host);

    assert_eq!(report["bundled_bind"]["dns_port"], 53, "{report}");
    assert_eq!(report["bundled_bind"]["rndc_port"], 953, "{report}");
    assert_eq!(dig_localhost(&host, 53), "127.0.0.1");
    assert_eq!(report["euq_enabled"], false, "{report}");
    host.assert_units(&units_91(false), "active", "after the upgrade");
    for unit in units::EUQ_91 {
        assert_ne!(
            host.active(unit.name),
            "active",
            "{} with EUQ off",
            unit.name
        );
        assert_ne!(
            host.enabled(unit.name),
            "enabled",
            "{} with EUQ off",
            unit.name
        );
    }
    assert!(
        !host.listens("8447"),
        "the EUQ console answers with EUQ off"
    );
    assert!(host.takes_mail());
}

#[test]
fn a_stub_resolver_a_udp_only_listener_and_a_taken_fallback_are_stepped_around() {
    let _one = one_host_at_a_time();
    let host = host_with_71("e2e-stub-dns", &[]);
    host.host
        .run(&["systemctl", "disable", "--now", "named.service"])
        .unwrap();
    // A stub resolver on 127.0.0.53 only (as systemd-resolved has one),
    // and a UDP-only listener on the first fallback's DNS port.
    for (unit, script) in [
        (
            "stub-resolver",
            "import socket, time\n\
             u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.53', 53))\n\
             t = socket.socket(); t.bind(('127.0.0.53', 53)); t.listen()\n\
             time.sleep(10**6)",
        ),
        (
            "udp-only",
            "import socket, time\n\
             u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 10053))\n\
             time.sleep(10**6)",
        ),
    ] {
        host.host
            .run(&[
                "systemd-run",
                &format!("--unit={unit}"),
                "python3",
                "-c",
                script,
            ])
            .unwrap();
    }
    wait_for(Duration::from_secs(30), "the listeners", || {
        let sockets = host.probe(&["ss", "-lnu"]).1;
        sockets.contains("127.0.0.53:53") && sockets.contains("127.0.0.1:10053")
    });

    let report = upgrade(&host);

    assert_eq!(report["bundled_bind"]["dns_port"], 20053, "{report}");
    assert_eq!(report["bundled_bind"]["rndc_port"], 20953, "{report}");
    let reason = report["bundled_bind"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("127.0.0.53:53") && reason.contains("udp 127.0.0.1:10053"),
        "{reason}"
    );
    assert_eq!(dig_localhost(&host, 20053), "127.0.0.1");
    assert_eq!(host.active("stub-resolver.service"), "active");
    assert_eq!(host.active("udp-only.service"), "active");
    assert!(host.takes_mail());
}

#[test]
fn a_bind_configuration_made_invalid_is_caught_by_named_checkconf_and_rolled_back_exactly() {
    let _one = one_host_at_a_time();
    let host = host_with_71("e2e-bad-named-conf", &[]);
    let before = host.baseline();
    // The run pauses right after the swap, before named-checkconf; the
    // test breaks the configuration the switch wrote while it waits.
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut run = host
        .host
        .command(&[
            "env",
            "FAILPOINTS=switch-swapped=sleep(5000)",
            UPGRADE,
            "run",
            "--root",
            "/",
        ])
        .unwrap()
        .spawn_daemon(log.path())
        .unwrap();
    let named_conf = host.host.root().join("opt/trend/imss/bind/etc/named.conf");
    wait_for(Duration::from_secs(600), "the switch's swap", || {
        assert!(
            run.try_wait().unwrap().is_none(),
            "the run ended before the swap: {}",
            std::fs::read_to_string(log.path()).unwrap_or_default()
        );
        named_conf.exists()
    });
    let text = std::fs::read_to_string(&named_conf).unwrap();
    std::fs::write(
        &named_conf,
        text.replace("recursion yes;", "recursion perhaps;"),
    )
    .unwrap();
    let status = run.wait().unwrap();
    let output = std::fs::read_to_string(log.path()).unwrap();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("does not pass named-checkconf"), "{output}");
    assert!(
        output.contains("perhaps"),
        "named-checkconf's words: {output}"
    );
    assert!(output.contains("was rolled back: 7.1 runs"), "{output}");

    assert_eq!(host.step_journal().state, RunState::RolledBack);
    host.assert_units(&units_71(), "active", "after the rollback");
    host.assert_back_on_71_exactly(&before, "after the rollback");
}

#[test]
fn a_udp_only_listener_on_53_takes_the_standard_pair() {
    let _one = one_host_at_a_time();
    let host = host_with_71("e2e-udp-53", &["--euq", "off"]);
    host.host
        .run(&["systemctl", "disable", "--now", "named.service"])
        .unwrap();
    let script = "import socket, time\n\
                  u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 53))\n\
                  time.sleep(10**6)";
    host.host
        .run(&["systemd-run", "--unit=udp-only-53", "python3", "-c", script])
        .unwrap();
    wait_for(Duration::from_secs(30), "the UDP listener", || {
        host.probe(&["ss", "-lnu"]).1.contains("127.0.0.1:53")
    });
    assert!(!host.listens("53"), "nothing listens on TCP 53");

    let report = upgrade(&host);

    assert_eq!(report["bundled_bind"]["dns_port"], 10053, "{report}");
    let reason = report["bundled_bind"]["reason"].as_str().unwrap();
    assert!(reason.contains("udp 127.0.0.1:53"), "{reason}");
    assert_eq!(dig_localhost(&host, 10053), "127.0.0.1");
    assert_eq!(host.active("udp-only-53.service"), "active");
}

/// The rows of each history table: 7.1's before the upgrade, or 9.1's
/// from 7.1 after it (`source = '7.1'`).
fn history_counts(host: &ModelHost, on_91: bool) -> Vec<String> {
    let tables: [(&str, &str); 3] = if on_91 {
        [
            ("policy_event", "source = '7.1'"),
            ("quarantine_message", "source = '7.1'"),
            ("archive_message", "source = '7.1'"),
        ]
    } else {
        [
            ("tb_policy_event", "true"),
            ("tb_quarantine", "true"),
            ("tb_archive", "true"),
        ]
    };
    tables
        .iter()
        .flat_map(|(table, condition)| {
            host.query(&format!("SELECT count(*) FROM {table} WHERE {condition}"))
        })
        .collect()
}

/// After `imss-upgrade run`, the transfer's unit starts by itself; a power
/// loss in its middle is survived: at the next boot the unit starts again
/// and resumes where the last committed batch left it, finishes with every
/// 7.1 row in 9.1, and does not start again.
#[test]
fn the_transfer_unit_runs_after_the_upgrade_and_resumes_after_a_power_loss() {
    let _one = one_host_at_a_time();
    let mut host = host_with_71(
        "e2e-transfer",
        &["--history-rows", "60000", "--days", "30", "--euq", "off"],
    );
    let before = history_counts(&host, false);
    // Slow, so that the power loss falls in its middle.
    let drop_in = host
        .host
        .root()
        .join("etc/systemd/system")
        .join(format!("{}.d", units::TRANSFER.name));
    std::fs::create_dir_all(&drop_in).unwrap();
    std::fs::write(
        drop_in.join("rate.conf"),
        "[Service]\nExecStart=\nExecStart=/usr/sbin/imss-upgrade transfer run \
         --max-rows-per-sec 3000 --report-every 1\n",
    )
    .unwrap();

    upgrade(&host);
    let moved = host.wait_for_transfer(UPGRADE, "to move rows", |status| {
        status["progress"]["rows_done"]
            .as_i64()
            .filter(|&rows| rows > 0)
    });
    assert_eq!(host.active(units::TRANSFER.name), "active");
    assert_eq!(host.enabled(units::TRANSFER.name), "enabled");

    host.host.power_loss().unwrap();
    host.host.boot_again().unwrap();
    host.wait_for_transfer(UPGRADE, "to finish", |status| {
        (status["state"] == "done").then_some(())
    });
    let started = host.journal_events(events::TRANSFER_STARTED);
    let resumed_at: Vec<i64> = started
        .iter()
        .map(|event| {
            event["IMSS_ROWS_DONE"]
                .as_str()
                .and_then(|rows| rows.parse().ok())
                .unwrap_or(-1)
        })
        .collect();
    assert_eq!(resumed_at.len(), 2, "{started:#?}");
    assert_eq!(resumed_at[0], 0, "{resumed_at:?}");
    assert!(
        resumed_at[1] >= moved,
        "after the power loss the transfer began at {} rows, before it {moved} were done",
        resumed_at[1]
    );
    assert_eq!(host.journal_events(events::TRANSFER_COMPLETED).len(), 1);
    assert!(!host.journal_events(events::TRANSFER_PROGRESS).is_empty());
    assert_eq!(history_counts(&host, true), before);

    // Done is done: the unit's condition keeps it from running again.
    assert_eq!(condition_when_started(&host, units::TRANSFER.name), "no");
    assert_eq!(host.journal_events(events::TRANSFER_STARTED).len(), 2);

    forged_state_after_finalize_steers_nothing_at_the_next_boot(&host);
}

/// Starts `unit` as a boot would, and says whether its conditions held
/// (`yes`), or kept it from running (`no`).
fn condition_when_started(host: &ModelHost, unit: &str) -> String {
    host.host.run(&["systemctl", "start", unit]).unwrap();
    host.probe(&[
        "systemctl",
        "show",
        "--property=ConditionResult",
        "--value",
        unit,
    ])
    .1
}

/// The service account cannot steer root across a boot. After `finalize`,
/// `imss` makes the backup directory again, with a step journal "rolling
/// back" whose undo removes `/etc` and a record naming process group 1 (on
/// the host machine this plant could signal every process, so it is made
/// only here). The recovery unit a boot would start does not run (it is
/// disabled, and its condition, the journal in the state directory, is
/// false); `imss-upgrade recover --at-boot` run by hand acts on none of it
/// either: a bystander unit lives, `/etc` is as it was and 9.1 runs.
fn forged_state_after_finalize_steers_nothing_at_the_next_boot(host: &ModelHost) {
    let (code, stdout, stderr) = host
        .output_of(&["imss-upgrade", "finalize"], Duration::from_secs(300))
        .unwrap();
    assert_eq!(code, Some(0), "finalize: {stdout}{stderr}");
    for unit in [
        units::RECOVER.name,
        units::TRANSFER.name,
        units::COMPRESS.name,
    ] {
        assert_eq!(host.enabled(unit), "disabled", "{unit} after finalize");
    }
    let plant = r#"set -e
        mkdir /var/imss/imss_backup_71_to_91
        cd /var/imss/imss_backup_71_to_91
        printf '%s' '{"format": 2, "started_at": "2026-01-01T00:00:00Z", "state": "rolling-back", "steps": [{"step": "presync", "status": "done", "started_at": "2026-01-01T00:00:00Z", "changed_at": "2026-01-01T00:00:00Z", "undo": {"undo": "remove-staged-cluster", "data_dir": "/etc"}}]}' > upgrade-state.json
        printf '1 %s 0
' "$(cat /proc/sys/kernel/random/boot_id)" > control-script.group"#;
    let (code, stdout, stderr) = host
        .output_of(
            &["runuser", "-u", "imss", "--", "sh", "-c", plant],
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(code, Some(0), "planting as imss: {stdout}{stderr}");
    let etc = "find /etc -xdev -printf '%p %y %U %m %s %l\n' | sort | sha256sum";
    let etc_before = host.probe(&["sh", "-c", etc]).1;

    // What the next boot would do: the recovery unit (disabled, its
    // condition now false) does not run.
    assert_eq!(
        condition_when_started(host, units::RECOVER.name),
        "no",
        "the recovery would run at boot"
    );
    host.host
        .run(&["systemd-run", "--unit=bystander", "sleep", "infinity"])
        .unwrap();
    let (code, stdout, stderr) = host
        .output_of(
            &["imss-upgrade", "recover", "--at-boot"],
            Duration::from_secs(120),
        )
        .unwrap();
    assert_eq!(code, Some(0), "recover: {stdout}{stderr}");
    assert!(stdout.contains("nothing to recover"), "{stdout}{stderr}");
    assert_eq!(host.active("bystander.service"), "active");
    assert_eq!(host.probe(&["sh", "-c", etc]).1, etc_before, "/etc changed");
    for unit in units_91(false) {
        assert_eq!(host.active(&unit), "active", "{unit} after the plant");
    }
    println!(
        "attack: a forged journal and process group 1 after finalize, then a boot: never acted on"
    );
}
