//! `imss-upgrade preflight` on model 7.1 servers, one for each failure of
//! the vendor's Q&A: each asserts the finding id, its severity, that the
//! text names the fix, and the documented exit code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use imss_fixture::harness::{FixtureServer, Payload};
use imss_fixture::model::named::NamedServer;
use imss_upgrade::files::ini::IniFile;
use imss_upgrade::support::cmd::Cmd;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What one preflight run gave: exit code, JSON report, text report.
struct Outcome {
    code: i32,
    report: Value,
    text: String,
}

impl Outcome {
    fn finding(&self, id: &str) -> &Value {
        self.report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("no finding {id} in:\n{}", self.text))
    }

    fn has(&self, id: &str) -> bool {
        self.report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == id)
    }

    fn assert_finding(&self, id: &str, severity: &str, fix_words: &[&str]) {
        let finding = self.finding(id);
        assert_eq!(finding["severity"], severity, "{id}:\n{}", self.text);
        for word in fix_words {
            assert!(
                finding["remediation"].as_str().unwrap().contains(word),
                "the fix for {id} should mention {word:?}: {finding}"
            );
            assert!(
                self.text.contains(word),
                "the text should name the fix {word:?}:\n{}",
                self.text
            );
        }
    }
}

/// One 9.1 payload for every test here: preflight checks it, whole.
fn payload() -> &'static Payload {
    static PAYLOAD: std::sync::OnceLock<Payload> = std::sync::OnceLock::new();
    PAYLOAD.get_or_init(|| Payload::build().unwrap())
}

fn preflight_with(program: &Path, cwd: &Path, root: &Path) -> Outcome {
    let pg15 = imss_fixture::model::pgbin::pg15().unwrap();
    preflight_of(program, cwd, root, &payload().dir(), Some(pg15.bin_dir()))
}

/// Preflight with the payload in `payload_dir`, and PostgreSQL 15 in
/// `pg_bin` (or, without it, the payload's own).
fn preflight_of(
    program: &Path,
    cwd: &Path,
    root: &Path,
    payload_dir: &Path,
    pg_bin: Option<&Path>,
) -> Outcome {
    let run = |json: bool| {
        let mut command = std::process::Command::new(program);
        command
            .current_dir(cwd)
            .arg("preflight")
            .arg("--root")
            .arg(root)
            .arg("--payload")
            .arg(payload_dir);
        if let Some(bin) = pg_bin {
            command.arg("--target-pg-bin").arg(bin);
        }
        if json {
            command.arg("--json");
        }
        command.output().unwrap()
    };
    let json = run(true);
    let text = run(false);
    let report: Value = serde_json::from_slice(&json.stdout).unwrap_or_else(|err| {
        panic!(
            "preflight --json printed no report ({err}); stderr:\n{}",
            String::from_utf8_lossy(&json.stderr)
        )
    });
    assert_eq!(json.status.code(), text.status.code());
    Outcome {
        code: json.status.code().unwrap(),
        report,
        text: String::from_utf8_lossy(&text.stdout).into_owned(),
    }
}

fn preflight(server: &FixtureServer) -> Outcome {
    let program = PathBuf::from(env!("CARGO_BIN_EXE_imss-upgrade"));
    preflight_with(&program, Path::new("/"), &server.root_dir())
}

fn started(extra: &[&str]) -> FixtureServer {
    let mut args = vec!["--history-rows", "1000", "--tree-mb", "0"];
    args.extend_from_slice(extra);
    let server = FixtureServer::build(&args).unwrap();
    server.start().unwrap();
    server
}

#[test]
fn a_healthy_server_with_a_percent_password_is_ready() {
    let server = started(&["--password", "p%(ss)s%;#w=rd"]);
    let outcome = preflight(&server);
    assert_eq!(outcome.code, 0, "{}", outcome.text);
    assert_eq!(outcome.report["ready"], true);
    assert_eq!(outcome.report["schema_version"], 1);
    assert!(
        outcome.text.contains("Checking source build ....."),
        "{}",
        outcome.text
    );
    assert!(
        outcome.text.contains("Ready to upgrade"),
        "{}",
        outcome.text
    );
    let summary = outcome.finding("database-summary");
    assert!(
        summary["found"]
            .as_str()
            .unwrap()
            .contains("PostgreSQL 10."),
        "{summary}"
    );
    assert!(
        summary["found"]
            .as_str()
            .unwrap()
            .contains("tb_policy_event"),
        "{summary}"
    );
    // A mask of one width for every password: it tells nothing of the length.
    assert_eq!(
        outcome.report["database"]["password"],
        imss_upgrade::support::secret::MASK
    );
    assert_ne!(
        imss_upgrade::support::secret::MASK.len(),
        "p%(ss)s%;#w=rd".len()
    );
    assert!(
        !outcome.text.contains("p%(ss)s"),
        "the password must never be shown"
    );
    let components = outcome.finding("installed-components");
    for name in [
        "Central Controller",
        "Scanner Service",
        "EUQ Service",
        "Email Reputation Services",
        "IP Profiler",
    ] {
        assert!(
            components["found"].as_str().unwrap().contains(name),
            "{components}"
        );
    }
    assert_eq!(outcome.finding("euq-enabled")["severity"], "info");
    let saved = std::fs::read_to_string(
        server
            .root_dir()
            .join("var/log/imss-upgrade/preflight.json"),
    )
    .unwrap();
    let saved: Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["findings"], outcome.report["findings"]);
}

#[test]
fn a_build_older_than_sp2_patch_1_is_an_inhibitor() {
    let server = started(&["--build", "1720"]);
    let outcome = preflight(&server);
    assert_eq!(outcome.code, 2, "{}", outcome.text);
    outcome.assert_finding(
        "source-build-too-old",
        "inhibitor",
        &["Service Pack 2 Patch 1", "1808"],
    );
    assert!(
        outcome.finding("source-build-too-old")["found"]
            .as_str()
            .unwrap()
            .contains("1720")
    );
    assert!(outcome.text.contains("1 inhibitor"), "{}", outcome.text);
}

#[test]
fn rhel_5_is_an_inhibitor_with_the_migration_advice() {
    let server = started(&["--os", "rhel5"]);
    let outcome = preflight(&server);
    assert_eq!(outcome.code, 2, "{}", outcome.text);
    outcome.assert_finding("os-unsupported", "inhibitor", &["config export", "fresh"]);
    assert!(
        outcome.finding("os-unsupported")["found"]
            .as_str()
            .unwrap()
            .contains("5.11")
    );
}

#[test]
fn a_missing_package_is_named_with_the_dnf_line() {
    let server = started(&["--missing-packages", "wget,perl"]);
    let outcome = preflight(&server);
    assert_eq!(outcome.code, 2, "{}", outcome.text);
    outcome.assert_finding(
        "packages-missing",
        "inhibitor",
        &["dnf install -y wget perl"],
    );
}

#[test]
fn a_wrong_password_is_an_inhibitor() {
    let server = started(&[]);
    let odbc = server.root_dir().join("opt/trend/imss/config/odbc.ini");
    let mut ini = IniFile::load(&odbc).unwrap();
    ini.set("IMSS", "Password", "not-the-password").unwrap();
    ini.save(&odbc, 0o640, None).unwrap();
    let outcome = preflight(&server);
    assert_eq!(outcome.code, 2, "{}", outcome.text);
    outcome.assert_finding(
        "database-password-refused",
        "inhibitor",
        &["Password in odbc.ini"],
    );
}

#[test]
fn a_stopped_database_is_an_inhibitor() {
    let server = FixtureServer::build(&["--history-rows", "100", "--tree-mb", "0"]).unwrap();
    let outcome = preflight(&server);
    assert_eq!(outcome.code, 2, "{}", outcome.text);
    outcome.assert_finding(
        "database-unreachable",
        "inhibitor",
        &["start the 7.1 database"],
    );
}

#[test]
fn euq_off_is_reported() {
    let server = started(&["--euq", "off"]);
    let outcome = preflight(&server);
    assert_eq!(outcome.code, 0, "{}", outcome.text);
    assert_eq!(outcome.finding("euq-disabled")["severity"], "info");
    assert!(!outcome.has("euq-enabled"), "{}", outcome.text);
}

/// Moves `/var/imss` of a built (stopped) server onto a tmpfs of `size`.
struct SmallFileSystem {
    mount_point: PathBuf,
}

impl SmallFileSystem {
    fn move_data_onto(server: &FixtureServer, size: &str) -> Self {
        let root = server.root_dir();
        let data = root.join("var/imss");
        let moved = root.join("var/imss.big");
        std::fs::rename(&data, &moved).unwrap();
        std::fs::create_dir(&data).unwrap();
        Cmd::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&data)
            .run()
            .expect("mounting a tmpfs needs root (CI runs the tests as root)");
        Cmd::new("cp")
            .arg("-a")
            .arg(moved.join("."))
            .arg(&data)
            .run()
            .unwrap();
        std::fs::remove_dir_all(&moved).unwrap();
        Self { mount_point: data }
    }
}

impl Drop for SmallFileSystem {
    fn drop(&mut self) {
        // Lazy: the server on it may still be stopping.
        let _ = Cmd::new("umount").arg("-l").arg(&self.mount_point).run();
    }
}

#[test]
fn a_too_small_file_system_is_an_inhibitor_naming_need_and_free() {
    let server = FixtureServer::build(&["--history-rows", "1000", "--tree-mb", "0"]).unwrap();
    let small = SmallFileSystem::move_data_onto(&server, "96m");
    server.start().unwrap();
    let outcome = preflight(&server);
    assert_eq!(outcome.code, 2, "{}", outcome.text);
    let mount = small.mount_point.display().to_string();
    outcome.assert_finding("disk-space-insufficient", "inhibitor", &[&mount]);
    let found = outcome.finding("disk-space-insufficient")["found"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        found.contains("9.1 database cluster") && found.contains("snapshot"),
        "{found}"
    );
    server.stop().unwrap();
}

#[test]
fn a_symlinked_var_imss_is_reported_not_refused() {
    let server = FixtureServer::build(&["--history-rows", "1000", "--tree-mb", "0"]).unwrap();
    let root = server.root_dir();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::rename(root.join("var/imss"), root.join("data/imss")).unwrap();
    // Relative, so that it leads to the same place from inside the root and
    // for the server processes, which see host paths.
    std::os::unix::fs::symlink("../data/imss", root.join("var/imss")).unwrap();
    server.start().unwrap();
    let outcome = preflight(&server);
    assert_eq!(outcome.code, 0, "{}", outcome.text);
    let link = outcome.finding("path-is-symlink");
    assert_eq!(link["severity"], "info");
    assert!(
        link["found"].as_str().unwrap().contains("/data/imss"),
        "{link}"
    );
}

/// The switch renames the program tree and the staged 9.1 tree beside
/// `/opt/trend/imss`; through a link to another file system it could
/// not, and would fail in the downtime. Preflight says so first.
#[test]
fn a_program_tree_linked_to_another_file_system_is_an_inhibitor() {
    let server = FixtureServer::build(&["--history-rows", "1000", "--tree-mb", "0"]).unwrap();
    let root = server.root_dir();
    let elsewhere = root.join("srv/imss-disk");
    std::fs::create_dir_all(&elsewhere).unwrap();
    Cmd::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512m,mode=0755", "tmpfs"])
        .arg(&elsewhere)
        .run()
        .expect("mounting a tmpfs needs root (CI runs the tests as root)");
    let unmount = Unmount(elsewhere.clone());
    Cmd::new("cp")
        .arg("-a")
        .arg(root.join("opt/trend/imss"))
        .arg(&elsewhere)
        .run()
        .unwrap();
    std::fs::remove_dir_all(root.join("opt/trend/imss")).unwrap();
    std::os::unix::fs::symlink("../../srv/imss-disk/imss", root.join("opt/trend/imss")).unwrap();
    server.start().unwrap();
    let outcome = preflight(&server);
    server.stop().unwrap();
    drop(unmount);
    assert_eq!(outcome.code, 2, "{}", outcome.text);
    outcome.assert_finding(
        "program-tree-on-another-file-system",
        "inhibitor",
        &["link the directory above instead", "/opt/trend"],
    );
    let found = &outcome.finding("program-tree-on-another-file-system")["found"];
    assert!(
        found.as_str().unwrap().contains("/srv/imss-disk/imss"),
        "{found}"
    );
}

/// Unmounts, lazily, when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Cmd::new("umount").arg("-l").arg(&self.0).run();
    }
}

#[test]
fn a_dns_server_on_port_53_is_a_warning_with_the_ports_bind_will_use() {
    let named = NamedServer::start(53).unwrap();
    let server = started(&[]);
    let outcome = preflight(&server);
    assert_eq!(outcome.code, 0, "{}", outcome.text);
    outcome.assert_finding(
        "dns-port-in-use",
        "warning",
        &["the upgrade configures the other ports"],
    );
    let found = outcome.finding("dns-port-in-use")["found"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        found.contains("named") && found.contains("10053"),
        "{found}"
    );
    drop(named);
}

#[test]
fn where_the_helper_was_unpacked_does_not_matter() {
    // The vendor's upgrade failed with code 16 when unpacked under a 0700
    // home directory; nothing here hands a path to another user's process.
    use std::os::unix::fs::PermissionsExt;
    let server = started(&[]);
    let home = tempfile::tempdir().unwrap();
    let unpacked = home.path().join("home/admin/imss");
    std::fs::create_dir_all(&unpacked).unwrap();
    std::fs::set_permissions(
        home.path().join("home/admin"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let program = unpacked.join("imss-upgrade");
    std::fs::copy(env!("CARGO_BIN_EXE_imss-upgrade"), &program).unwrap();
    let payload_dir = unpacked.join("payload");
    Cmd::new("cp")
        .arg("-a")
        .arg(payload().dir())
        .arg(&payload_dir)
        .run()
        .unwrap();
    let outcome = preflight_of(&program, &unpacked, &server.root_dir(), &payload_dir, None);
    assert_eq!(outcome.code, 0, "{}", outcome.text);
    assert_eq!(outcome.report["ready"], true);
}

/// Item 2 of the crash-safety issue: a payload without PostgreSQL 15
/// passed preflight, the presync failed, and its undo failed on the same
/// missing program. Every file of the payload's list must be there with
/// its hash, and its PostgreSQL 15 must run: otherwise an inhibitor names
/// what is wrong, and nothing changes.
#[test]
fn an_incomplete_or_damaged_payload_is_an_inhibitor_naming_what_is_wrong() {
    let server = started(&[]);
    let copies = tempfile::tempdir().unwrap();
    let program = PathBuf::from(env!("CARGO_BIN_EXE_imss-upgrade"));
    let copy = |name: &str| {
        let dir = copies.path().join(name);
        Cmd::new("cp")
            .arg("-a")
            .arg(payload().dir())
            .arg(&dir)
            .run()
            .unwrap();
        dir
    };
    let without_pg = copy("without-postgresql");
    std::fs::remove_file(without_pg.join("PostgreSQL/bin")).unwrap();
    let damaged = copy("damaged");
    std::fs::write(damaged.join("VERSION"), "9.1.0.1194\n").unwrap();
    for (dir, named) in [
        (&without_pg, "does not run"),
        (&damaged, "VERSION differs from the list"),
    ] {
        let outcome = preflight_of(&program, Path::new("/"), &server.root_dir(), dir, None);
        assert_eq!(outcome.code, 2, "{}", outcome.text);
        outcome.assert_finding(
            "payload-incomplete",
            "inhibitor",
            &["reinstall the upgrade package"],
        );
        let found = outcome.finding("payload-incomplete")["found"]
            .as_str()
            .unwrap();
        assert!(found.contains(named), "{named} is not named: {found}");
    }
    assert!(
        !server
            .root_dir()
            .join("var/imss/imss_backup_71_to_91")
            .exists(),
        "an inhibited preflight changed the server"
    );
}

/// sha256 of every file and link under `dir`, with mode and owner, except
/// what a running server changes by itself.
fn tree_digest(dir: &Path, skip: &[&str]) -> BTreeMap<String, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let relative = path
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if skip
            .iter()
            .any(|s| relative == *s || relative.starts_with(&format!("{s}/")))
        {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let content = if meta.is_file() {
            hex::encode(Sha256::digest(std::fs::read(&path).unwrap()))
        } else if meta.file_type().is_symlink() {
            std::fs::read_link(&path).unwrap().display().to_string()
        } else {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            String::new()
        };
        out.insert(
            relative,
            format!("{:o} {}:{} {content}", meta.mode(), meta.uid(), meta.gid()),
        );
    }
    out
}

#[test]
fn preflight_changes_nothing() {
    let server = started(&["--password", "plain-for-pgpass"]);
    // What a running server changes by itself, the report preflight writes,
    // and SQLite's shared-memory index of the rpm database, which every
    // reader (`rpm -q` included) rewrites without changing the database.
    let skip = [
        "var/imss/pgdata",
        "var/imss/pgdata.log",
        "var/imss/run",
        "var/log/imss-upgrade",
        "var/lib/rpm/rpmdb.sqlite-shm",
    ];
    let tree_before = tree_digest(&server.root_dir(), &skip);
    let dump_before = server.dump_all().unwrap();
    let outcome = preflight(&server);
    assert_eq!(outcome.code, 0, "{}", outcome.text);
    let tree_after = tree_digest(&server.root_dir(), &skip);
    let changed: Vec<&String> = tree_before
        .keys()
        .chain(tree_after.keys())
        .filter(|path| tree_before.get(*path) != tree_after.get(*path))
        .collect();
    assert!(changed.is_empty(), "preflight changed: {changed:?}");
    let dump_after = server.dump_all().unwrap();
    let differing: Vec<(&str, &str)> = dump_before
        .lines()
        .zip(dump_after.lines())
        .filter(|(before, after)| before != after)
        .take(5)
        .collect();
    assert!(
        differing.is_empty() && dump_before.len() == dump_after.len(),
        "the database changed: {differing:?}"
    );
}

#[test]
fn a_file_the_switch_would_create_is_an_inhibitor_that_names_it() {
    let server = started(&[]);
    let working_dir = server.root().resolve("/var/imss/bind").unwrap();
    std::fs::create_dir(&working_dir).unwrap();
    let outcome = preflight(&server);
    assert_eq!(outcome.code, 2, "{}", outcome.text);
    outcome.assert_finding(
        "switch-target-exists",
        "inhibitor",
        &["move", "/var/imss/bind away"],
    );
}
