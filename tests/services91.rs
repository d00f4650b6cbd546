//! The 9.1 model: the program tree that `imss-fixture payload` writes, laid
//! over a 7.1 model whose database the migrate step moved into PostgreSQL
//! 15, runs the stand-in services in their 9.1 form. Checked against what
//! lands in PostgreSQL 15 and on disk, and against the processes left.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use imss_fixture::harness::{FixtureServer, fixture_exe, processes_mentioning};
use imss_fixture::model::lifecycle;
use imss_fixture::model::services::scanner::{RULE_NAME, quarantine_reason};
use imss_fixture::model::services::{Ports, ServiceKind};
use imss_upgrade::files::imss_ini::{ProductInfo, imss_ini_91};
use imss_upgrade::files::ini::IniFile;
use imss_upgrade::files::odbc_ini::DbSettings;
use imss_upgrade::flow::context::Context;
use imss_upgrade::flow::journal::{Step, StepJournal};
use imss_upgrade::flow::upgrade::steps::{migrate, presync, quiesce, snapshot};
use imss_upgrade::support::account::ServiceUser;
use imss_upgrade::support::cmd::{Cmd, CmdError};
use imss_upgrade::support::constants::{
    DATABASE_HOST, IMSS_INI, ODBC_INI, PROGRAM_DIR, SERVICE_USER,
};
use imss_upgrade::support::root::Root;
use imss_upgrade::system::imssctl::{self, Action};
use imss_upgrade::system::pg::{self, Cluster, StopMode};

/// The PostgreSQL 15 programs the tests use.
fn pg15_bin() -> PathBuf {
    imss_fixture::model::pgbin::pg15()
        .unwrap()
        .bin_dir()
        .to_path_buf()
}

/// `imss-fixture payload --out OUT --pg-bin PG_BIN`, run in `dir`.
fn write_payload(out: &Path, pg_bin: &Path, dir: &Path) -> Result<String, CmdError> {
    Cmd::new(fixture_exe().unwrap())
        .arg("payload")
        .arg("--out")
        .arg(out)
        .arg("--pg-bin")
        .arg(pg_bin)
        .current_dir(dir)
        .output_text()
}

/// A directory the service account may pass through, removed on drop.
fn shared_tempdir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Every entry under `dir` (not following links), `dir` included.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = vec![dir.to_path_buf()];
    let mut index = 0;
    while index < found.len() {
        let path = found[index].clone();
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                found.push(entry.unwrap().path());
            }
        }
        index += 1;
    }
    found
}

#[test]
fn the_payload_is_a_generic_91_tree_owned_by_root_and_readable_by_all() {
    let scratch = shared_tempdir("imss-payload-");
    let out = scratch.path().join("payload");
    let pg_bin = pg15_bin();
    // A relative --pg-bin becomes an absolute link.
    let report = write_payload(
        &out,
        Path::new(pg_bin.file_name().unwrap()),
        pg_bin.parent().unwrap(),
    )
    .unwrap();
    assert!(
        report.contains("Wrote the IMSS 9.1.0.1195 program tree (payload)"),
        "{report}"
    );

    let imssd = std::fs::metadata(out.join("bin/imssd")).unwrap();
    assert_eq!(imssd.permissions().mode() & 0o7777, 0o755);
    assert!(
        std::fs::read(out.join("bin/imssd")).unwrap()
            == std::fs::read(fixture_exe().unwrap()).unwrap(),
        "bin/imssd is a copy of imss-fixture"
    );
    let script_path = out.join("script/imssctl.sh");
    assert_eq!(
        std::fs::metadata(&script_path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o755
    );
    let script = std::fs::read_to_string(&script_path).unwrap();
    assert!(script.starts_with("#!/bin/sh\n"), "{script}");
    assert!(
        script.contains(r#"exec "$dir/../bin/imssd" "$1" --root "$root""#),
        "{script}"
    );
    assert!(
        !script.contains(&*scratch.path().to_string_lossy()),
        "the payload names no root: {script}"
    );
    assert_eq!(
        std::fs::read_link(out.join("PostgreSQL/bin")).unwrap(),
        pg_bin
    );
    assert!(out.join("PostgreSQL/bin/postgres").is_file());
    assert_eq!(std::fs::read_dir(out.join("config")).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_to_string(out.join("VERSION")).unwrap(),
        "9.1.0.1195\n"
    );
    for dir in ["lib", "UI"] {
        let files = walk(&out.join(dir))
            .into_iter()
            .filter(|path| path.is_file())
            .count();
        assert!(files >= 2, "{dir}/ holds {files} files");
    }
    let euid = nix::unistd::geteuid().as_raw();
    let everything = walk(&out);
    for path in &everything {
        let meta = std::fs::symlink_metadata(path).unwrap();
        assert_eq!(meta.uid(), euid, "{}", path.display());
        if euid == 0 {
            assert_eq!(meta.gid(), 0, "{}", path.display());
        }
        if !meta.file_type().is_symlink() {
            let wanted = if meta.is_dir() { 0o555 } else { 0o444 };
            assert_eq!(
                meta.permissions().mode() & wanted,
                wanted,
                "{} must be readable by all",
                path.display()
            );
        }
    }

    // A used directory is refused and left as it was.
    let err = write_payload(&out, &pg_bin, Path::new("/")).unwrap_err();
    assert_eq!(err.exit_code(), Some(1), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("{} is not empty", out.display())),
        "{err}"
    );
    assert_eq!(walk(&out), everything);

    // A directory without PostgreSQL is refused before anything is written.
    let elsewhere = scratch.path().join("other");
    let err = write_payload(&elsewhere, scratch.path(), Path::new("/")).unwrap_err();
    assert_eq!(err.exit_code(), Some(1), "{err}");
    assert!(
        err.to_string().contains("initdb is missing") && err.to_string().contains("--pg-bin"),
        "{err}"
    );
    assert!(!elsewhere.exists());
}

/// Stops a cluster when the test ends, however it ends: the 9.1 cluster
/// runs from the migrate step on, before the 9.1 tree that stops it is in
/// place.
struct StopOnDrop(Cluster);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Err(err) = self.0.stop(StopMode::Immediate) {
            eprintln!(
                "stopping the cluster in {}: {err:#}",
                self.0.data_dir.display()
            );
        }
    }
}

/// Presync, quiesce, snapshot and migrate on a started 7.1 model: afterwards its
/// database runs in PostgreSQL 15, in the 9.1 schema, where 7.1's did.
async fn migrate_to_postgres_15(ctx: &Context) -> StopOnDrop {
    imss_upgrade::flow::layout::backup::BackupDir::of(&ctx.layout)
        .create()
        .unwrap();
    let mut journal = StepJournal::create(&ctx.layout.state_dir().unwrap()).unwrap();
    journal.begin(Step::Presync).unwrap();
    presync::run(ctx, &mut journal).await.unwrap();
    journal.finish(Step::Presync).unwrap();
    journal.begin(Step::Quiesce).unwrap();
    quiesce::run(ctx, &mut journal).await.unwrap();
    journal.finish(Step::Quiesce).unwrap();
    journal.begin(Step::Snapshot).unwrap();
    snapshot::run(ctx, &mut journal).await.unwrap();
    journal.finish(Step::Snapshot).unwrap();
    journal.begin(Step::Migrate).unwrap();
    let guard = StopOnDrop(imss_upgrade::flow::clusters::target_91(ctx).unwrap());
    migrate::run(ctx, &mut journal).await.unwrap();
    journal.finish(Step::Migrate).unwrap();
    guard
}

/// Lays the 9.1 tree in `payload` at `/opt/trend/imss` (the 7.1 tree
/// renamed aside) with a 9.1 `odbc.ini` and `imss.ini`, as the switch step
/// does.
fn install_91_tree(root: &Root, payload: &Path) {
    let settings = DbSettings::load(root).unwrap();
    let imss_71 = IniFile::load(&root.resolve(IMSS_INI).unwrap()).unwrap();
    let live = root.resolve(PROGRAM_DIR).unwrap();
    std::fs::rename(&live, live.with_file_name("imss.71-aside")).unwrap();
    Cmd::new("cp")
        .args(["-a", "--"])
        .arg(payload)
        .arg(&live)
        .run()
        .unwrap();

    let imss_path = root.resolve(IMSS_INI).unwrap();
    imss_ini_91(&imss_71, &imss_path)
        .unwrap()
        .save(&imss_path, 0o644, None)
        .unwrap();

    let odbc_path = root.resolve(ODBC_INI).unwrap();
    settings
        .odbc_ini_91(&odbc_path)
        .unwrap()
        .save(&odbc_path, 0o640, None)
        .unwrap();
    let owner = ServiceUser::lookup(root, SERVICE_USER).unwrap();
    std::os::unix::fs::chown(&odbc_path, Some(0), Some(owner.gid)).unwrap();
}

/// The scanner's greeting line.
fn smtp_greeting(port: u16) -> String {
    let mut stream = TcpStream::connect((DATABASE_HOST, port)).unwrap();
    let mut line = String::new();
    BufReader::new(stream.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    stream.write_all(b"QUIT\r\n").unwrap();
    line.trim_end().to_string()
}

/// Sends one mail with `message_id` and `subject` to `recipients`, in that
/// envelope order.
fn send_mail(port: u16, message_id: &str, subject: &str, recipients: &[&str]) {
    use lettre::address::Envelope;
    use lettre::{Address, Message, SmtpTransport, Transport};
    let sender: Address = "sender@example.org".parse().unwrap();
    let mut builder = Message::builder()
        .from(sender.clone().into())
        .subject(subject)
        .message_id(Some(message_id.to_string()));
    for recipient in recipients {
        builder = builder.to(recipient.parse().unwrap());
    }
    let message = builder
        .body("A mail for the IMSS 9.1 model.\r\n".to_string())
        .unwrap();
    let envelope = Envelope::new(
        Some(sender),
        recipients.iter().map(|r| r.parse().unwrap()).collect(),
    )
    .unwrap();
    SmtpTransport::builder_dangerous(DATABASE_HOST)
        .port(port)
        .build()
        .send_raw(&envelope, &message.formatted())
        .unwrap();
}

/// A Message-ID that the scanner passes on with this `subject` (it
/// quarantines a share of mail by a hash of the Message-ID).
fn message_id_passed_on(subject: &str, tag: &str) -> String {
    (0..)
        .map(|n| format!("<services91-{tag}-{n}@localhost>"))
        .find(|id| quarantine_reason(subject, id).is_none())
        .unwrap()
}

/// `GET /` on a console: status and body.
fn http_get(port: u16) -> (u16, String) {
    let mut stream = TcpStream::connect((DATABASE_HOST, port)).unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    (status, body.to_string())
}

#[tokio::test]
async fn the_91_tree_runs_its_services_on_postgres_15_and_its_control_script_stops_them() {
    let server =
        FixtureServer::build(&["--history-rows", "300", "--tree-mb", "0", "--days", "2"]).unwrap();
    server.start().unwrap();
    let root = server.root();
    let ctx = Context::new(root.clone()).with_target_pg(pg15_bin());
    let _pg15 = migrate_to_postgres_15(&ctx).await;

    let payload = shared_tempdir("imss-payload-");
    let payload_dir = payload.path().join("payload");
    write_payload(&payload_dir, &pg15_bin(), Path::new("/")).unwrap();
    install_91_tree(&root, &payload_dir);
    assert_eq!(ProductInfo::load(&root).unwrap().version, "9.1");
    imssctl::control(&root, Action::Start, imssctl::DEFAULT_TIMEOUT, None).unwrap();
    let ports = Ports::load(&root).unwrap();
    let root_text = root.dir().to_string_lossy().into_owned();
    assert!(
        processes_mentioning(&root_text).len() >= 4,
        "three services and PostgreSQL run under the root"
    );

    let settings = DbSettings::load(&root).unwrap();
    let client = pg::connect(&settings).await.unwrap();
    let version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .unwrap()
        .get(0);
    assert!(version.starts_with("15."), "{version}");
    let rule_id: i64 = client
        .query_one(
            "INSERT INTO policy_rule (name, priority) VALUES ($1, 1000) RETURNING rule_id",
            &[&RULE_NAME],
        )
        .await
        .unwrap()
        .get(0);
    let newest_71_event: i64 = client
        .query_one(
            "SELECT max(event_id) FROM policy_event WHERE source = '7.1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    let greeting = smtp_greeting(server.smtp_port);
    assert!(
        greeting.starts_with("220 ") && greeting.ends_with(" ESMTP IMSS 9.1 scanner ready"),
        "{greeting}"
    );

    // A mail passed on: its event and its recipient, in the 9.1 tables.
    let probe_id = message_id_passed_on("imss-upgrade health check", "probe");
    let before_send = Utc::now();
    imss_upgrade::system::smtp::send_probe(DATABASE_HOST, server.smtp_port, &probe_id).unwrap();
    let after_send = Utc::now();
    let events = client
        .query(
            "SELECT event_id, event_time, sender, rule_id, rule_name, action, reason, source \
             FROM policy_event WHERE message_id = $1",
            &[&probe_id],
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "one policy event for {probe_id}");
    let event = &events[0];
    let probe_event: i64 = event.get("event_id");
    let event_time: DateTime<Utc> = event.get("event_time");
    assert!(
        probe_event > newest_71_event,
        "9.1 event ids start above 7.1's"
    );
    // Order, not a time limit: the event is stamped while the mail is
    // sent (to the microsecond the database keeps, hence the one of slack).
    let precision = chrono::Duration::microseconds(1);
    assert!(
        event_time >= before_send - precision && event_time <= after_send + precision,
        "{event_time} is not when the mail was sent ({before_send} to {after_send})"
    );
    assert_eq!(event.get::<_, &str>("sender"), "postmaster@localhost");
    assert_eq!(event.get::<_, Option<i64>>("rule_id"), Some(rule_id));
    assert_eq!(event.get::<_, &str>("rule_name"), RULE_NAME);
    assert_eq!(event.get::<_, &str>("action"), "pass");
    assert_eq!(event.get::<_, &str>("reason"), "");
    assert_eq!(event.get::<_, &str>("source"), "9.1");
    let recipients: Vec<(i32, String)> = client
        .query(
            "SELECT ordinal, recipient FROM policy_event_recipient WHERE event_id = $1 ORDER BY ordinal",
            &[&probe_event],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(recipients, [(1, "postmaster@localhost".to_string())]);
    let quarantined: i64 = client
        .query_one(
            "SELECT count(*) FROM quarantine_message WHERE message_id = $1",
            &[&probe_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(quarantined, 0);

    // A quarantined mail to two recipients: one quarantine record each, and
    // the message file they point at.
    let quarantine_id = "<services91-quarantine@localhost>";
    let to = ["first@example.com", "second@example.com"];
    send_mail(
        server.smtp_port,
        quarantine_id,
        "Invoice [quarantine] for 9.1",
        &to,
    );
    let event = client
        .query_one(
            "SELECT event_id, event_time, action, reason, message_size, source \
             FROM policy_event WHERE message_id = $1",
            &[&quarantine_id],
        )
        .await
        .unwrap();
    let event_id: i64 = event.get("event_id");
    let event_time: DateTime<Utc> = event.get("event_time");
    let message_size: i64 = event.get("message_size");
    assert_eq!(event.get::<_, &str>("action"), "quarantine");
    assert_eq!(
        event.get::<_, &str>("reason"),
        "Subject marked [quarantine]"
    );
    assert_eq!(event.get::<_, &str>("source"), "9.1");
    let recipients: Vec<(i32, String)> = client
        .query(
            "SELECT ordinal, recipient FROM policy_event_recipient WHERE event_id = $1 ORDER BY ordinal",
            &[&event_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(recipients, [(1, to[0].to_string()), (2, to[1].to_string())]);
    let records = client
        .query(
            "SELECT event_id, quarantined_at, sender, recipient, subject, reason, file_path, \
                    file_size, released, source \
             FROM quarantine_message WHERE message_id = $1 ORDER BY quarantine_id",
            &[&quarantine_id],
        )
        .await
        .unwrap();
    assert_eq!(records.len(), 2, "one quarantine record per recipient");
    let file_path: String = records[0].get("file_path");
    for (record, recipient) in records.iter().zip(to) {
        assert_eq!(record.get::<_, Option<i64>>("event_id"), Some(event_id));
        assert_eq!(record.get::<_, DateTime<Utc>>("quarantined_at"), event_time);
        assert_eq!(record.get::<_, &str>("sender"), "sender@example.org");
        assert_eq!(record.get::<_, &str>("recipient"), recipient);
        assert_eq!(
            record.get::<_, &str>("subject"),
            "Invoice [quarantine] for 9.1"
        );
        assert_eq!(
            record.get::<_, &str>("reason"),
            "Subject marked [quarantine]"
        );
        assert_eq!(record.get::<_, String>("file_path"), file_path);
        assert_eq!(record.get::<_, i64>("file_size"), message_size);
        assert!(!record.get::<_, bool>("released"));
        assert_eq!(record.get::<_, &str>("source"), "9.1");
    }
    assert!(
        file_path.starts_with("/var/imss/quarantine/")
            && file_path.ends_with(&format!("/{event_id:08}.eml")),
        "{file_path}"
    );
    let message = std::fs::read(root.resolve(&file_path).unwrap()).unwrap();
    assert_eq!(message.len() as i64, message_size);
    assert!(
        String::from_utf8_lossy(&message).contains(quarantine_id),
        "the message file holds the mail"
    );

    // The consoles answer as 7.1's do, from the 9.1 tables (7.1's are gone).
    let only_91: bool = client
        .query_one(
            "SELECT to_regclass('tb_policy_rule') IS NULL AND to_regclass('tb_euq_setting') IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(only_91, "PostgreSQL 15 has no 7.1 tables");
    // The policy service's page lists the pattern files and engines with
    // their versions, from 9.1's table.
    let (status, page) = http_get(ports.policy);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.starts_with("IMSS 9.1 policy service: ok\n")
            && page.contains("\n  Virus Scan Engine "),
        "{page}"
    );
    assert_eq!(
        http_get(ports.euq_console),
        (200, "IMSS 9.1 EUQ console: ok\n".to_string())
    );
    client
        .execute("UPDATE euq_settings SET enabled = false", &[])
        .await
        .unwrap();
    assert_eq!(
        http_get(ports.euq_console),
        (503, "IMSS 9.1 EUQ console: EUQ disabled\n".to_string())
    );
    drop(client);

    // The 9.1 control script stops every service and PostgreSQL 15.
    imssctl::control(&root, Action::Stop, imssctl::DEFAULT_TIMEOUT, None).unwrap();
    assert_eq!(
        processes_mentioning(&root_text),
        Vec::<u32>::new(),
        "processes left under {root_text}"
    );
    assert!(!lifecycle::cluster(&root).unwrap().is_running().unwrap());
    for port in [ports.smtp, ports.policy, ports.euq_console] {
        assert!(
            TcpStream::connect((DATABASE_HOST, port)).is_err(),
            "port {port} still answers"
        );
    }
    for kind in ServiceKind::ALL {
        assert!(
            !root.resolve(kind.pid_file()).unwrap().exists(),
            "{kind}'s pid file is left"
        );
    }

    // From cold, the control script starts PostgreSQL 15 from the tree's
    // link and the services again (as after a reboot), and stops them.
    imssctl::control(&root, Action::Start, imssctl::DEFAULT_TIMEOUT, None).unwrap();
    let restart_id = message_id_passed_on("imss-upgrade health check", "restart");
    imss_upgrade::system::smtp::send_probe(DATABASE_HOST, server.smtp_port, &restart_id).unwrap();
    let client = pg::connect(&settings).await.unwrap();
    let logged: i64 = client
        .query_one(
            "SELECT count(*) FROM policy_event WHERE message_id = $1 AND source = '9.1'",
            &[&restart_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(logged, 1);
    drop(client);
    imssctl::control(&root, Action::Stop, imssctl::DEFAULT_TIMEOUT, None).unwrap();
    assert_eq!(
        processes_mentioning(&root_text),
        Vec::<u32>::new(),
        "processes left under {root_text}"
    );
}
