//! The service account cannot steer root. `/var/imss` belongs to the
//! account the scanner runs as, and the scanner parses hostile mail: each
//! test here plants, as that account, what a compromised scanner would
//! (links, FIFOs, hard links, a substituted backup directory, forged state)
//! and runs the helpers as root over it. Each attack must be refused, or
//! gone around; nothing outside the data tree may change. The oracle is
//! `find` and `sha256sum` over a directory of files root must never touch
//! (stand-ins for `/etc/shadow`, `/etc/passwd`, a root service's drop-in
//! directory), taken before and after; it shares no code with the helpers.
//!
//! Each test prints one line per attack, and the count.

use std::path::{Path, PathBuf};

use imss_fixture::harness::{FixtureServer, Payload, flow, unprivileged_user};
use imss_upgrade::flow::run::Outcome;
use imss_upgrade::support::cmd::Cmd;

/// Files root must never change, outside the server's data tree.
struct Outside {
    dir: tempfile::TempDir,
}

impl Outside {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("imss-outside-")
            .tempdir()
            .unwrap();
        let path = dir.path();
        std::fs::write(path.join("shadow"), "root:$6$secret:19000::::::\n").unwrap();
        std::fs::write(path.join("passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        std::fs::create_dir(path.join("sshd.service.d")).unwrap();
        std::fs::write(path.join("sshd.service.d/keep.conf"), "[Service]\n").unwrap();
        run_checked(Cmd::new("chmod").args(["0600"]).arg(path.join("shadow")));
        // The service account must reach the targets to link to them, as
        // it reaches /etc.
        run_checked(Cmd::new("chmod").args(["0755"]).arg(path));
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn fingerprint(&self) -> String {
        tree_fingerprint(self.dir.path())
    }
}

fn run_checked(cmd: Cmd) -> String {
    cmd.output_text().unwrap()
}

/// Runs `argv` as the service account the model runs as, as a
/// compromised scanner would.
fn as_service_account(argv: &[&dyn AsRef<std::ffi::OsStr>]) {
    let user = unprivileged_user().unwrap();
    let mut cmd = Cmd::new(argv[0]).as_user(&user);
    for arg in &argv[1..] {
        cmd = cmd.arg(arg);
    }
    cmd.run().unwrap();
}

fn plant_link(target: &Path, at: &Path) {
    as_service_account(&[&"ln", &"-s", &target, &at]);
}

/// The attacks of one test, each named as it is planted and checked.
#[derive(Default)]
struct Attacks {
    names: Vec<String>,
}

impl Attacks {
    fn plant(&mut self, name: &str, plant: impl FnOnce()) {
        plant();
        self.names.push(name.to_string());
    }

    fn report(&self, outcome: &str) {
        for name in &self.names {
            println!("attack: {name}: {outcome}");
        }
        println!(
            "attacks: {} planted, 0 changed anything outside the data tree",
            self.names.len()
        );
    }
}

fn small_server() -> (FixtureServer, Payload) {
    let server =
        FixtureServer::build(&["--history-rows", "200", "--tree-mb", "0", "--days", "2"]).unwrap();
    server.start().unwrap();
    (server, Payload::build().unwrap())
}

/// Finding 1: `ln -s /etc/shadow /var/imss/pgdata-91.staged.log`, as the
/// service account before the upgrade, gave `/etc/shadow` to that account:
/// the presync opened its log with create and append, following the link,
/// and `fchown`ed it. The logs of every PostgreSQL start beside a data
/// directory in `/var/imss` are planted here, as links, a FIFO and a hard
/// link; the upgrade goes around each (the name is replaced by the
/// account's own file) and completes.
#[tokio::test]
async fn links_and_fifos_planted_at_the_database_logs_give_root_nothing() {
    let (server, payload) = small_server();
    let root = server.root_dir();
    let data = root.join("var/imss");
    let outside = Outside::new();
    let mut attacks = Attacks::default();
    attacks.plant("a link at the presync's log to a root-only file", || {
        plant_link(&outside.path("shadow"), &data.join("pgdata-91.staged.log"))
    });
    attacks.plant("a link at the presync's start configuration", || {
        plant_link(&outside.path("passwd"), &data.join("pgdata-91.staged.conf"))
    });
    attacks.plant("a FIFO in place of the cluster's log", || {
        let log = data.join("pgdata.log");
        as_service_account(&[&"rm", &"-f", &log]);
        as_service_account(&[&"mkfifo", &log]);
    });
    let before = outside.fingerprint();

    let outcome = flow::upgrade(&payload.context(&server).unwrap()).await;
    assert!(
        matches!(outcome, Ok(Outcome::Upgraded(_))),
        "the upgrade did not complete: {outcome:?}"
    );

    assert_eq!(
        outside.fingerprint(),
        before,
        "root changed a file outside the data tree"
    );
    let user = unprivileged_user().unwrap();
    for log in ["pgdata-91.staged.log", "pgdata.log"] {
        let meta = std::fs::symlink_metadata(data.join(log)).unwrap();
        assert!(
            meta.is_file(),
            "{log} is not the account's own file: {meta:?}"
        );
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            user.uid,
            "{log}"
        );
    }
    attacks.report("gone around");
}

/// The inhibitors a preflight found, by id, with what each says.
fn inhibitors(outcome: Result<Outcome, anyhow::Error>) -> Vec<String> {
    match outcome {
        Ok(Outcome::Inhibited(report)) => serde_json::to_value(&report).unwrap()["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|finding| finding["severity"] == "inhibitor")
            .map(|finding| format!("{} {}", finding["id"], finding["found"]))
            .collect(),
        other => panic!("the upgrade was not inhibited: {other:?}"),
    }
}

/// Finding 2: preflight and the switch followed the link at a path the
/// switch creates and asked whether its target existed, so a dangling
/// link read as "absent"; the switch then created the target (here a
/// drop-in directory of a root service), gave it to the service account
/// and wrote into it. A link there, dangling or not, is the
/// `switch-target-exists` inhibitor; nothing is created through it.
#[tokio::test]
async fn a_link_where_the_switch_creates_a_directory_is_an_inhibitor_dangling_or_not() {
    let (server, payload) = small_server();
    let working_dir = server.root_dir().join("var/imss/bind");
    let outside = Outside::new();
    let before = outside.fingerprint();
    let mut attacks = Attacks::default();
    for (name, target) in [
        (
            "a dangling link at the bundled BIND's working directory",
            outside.path("sshd.service.d/imss.conf.d"),
        ),
        (
            "a link at the bundled BIND's working directory to a root service's drop-ins",
            outside.path("sshd.service.d"),
        ),
    ] {
        attacks.plant(name, || plant_link(&target, &working_dir));
        let found = inhibitors(flow::upgrade(&payload.context(&server).unwrap()).await);
        assert!(
            found.iter().any(
                |line| line.contains("switch-target-exists") && line.contains("/var/imss/bind")
            ),
            "{name}: {found:?}"
        );
        assert_eq!(
            outside.fingerprint(),
            before,
            "{name}: root changed a file outside the data tree"
        );
        assert!(
            std::fs::symlink_metadata(&working_dir)
                .unwrap()
                .is_symlink()
        );
        std::fs::remove_file(&working_dir).unwrap();
    }
    attacks.report("refused by preflight");
}

/// Runs an `imss-upgrade` command (or `imss-rollback`) on `server` as an
/// administrator would; its exit code and what it printed.
fn helper(
    program: &str,
    server: &FixtureServer,
    payload: &Payload,
    args: &[&str],
) -> (i32, String) {
    let exe = match program {
        "imss-rollback" => env!("CARGO_BIN_EXE_imss-rollback"),
        _ => env!("CARGO_BIN_EXE_imss-upgrade"),
    };
    let mut command = std::process::Command::new(exe);
    command.arg("--root").arg(server.root_dir());
    command.args(args);
    if matches!(args.first(), Some(&"recover") | None) {
        command
            .arg("--payload")
            .arg(payload.dir())
            .arg("--target-pg-bin")
            .arg(imss_fixture::pgbin::pg15().unwrap().bin_dir());
    }
    let output = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

async fn upgraded_small_server() -> (FixtureServer, Payload) {
    let (server, payload) = small_server();
    let outcome = flow::upgrade(&payload.context(&server).unwrap()).await;
    assert!(
        matches!(outcome, Ok(Outcome::Upgraded(_))),
        "the upgrade did not complete: {outcome:?}"
    );
    (server, payload)
}

/// Finding 3, before finalize: the service account renames the real
/// backup directory away and puts its own in its place, with a lock file
/// that is a link to a root-only file and a socket directory that is a
/// link to a directory of root's. `imss-rollback`, `finalize` and
/// `recover` each refuse, naming the directory, and change nothing; put
/// back, the real backup still rolls the server back to 7.1.
#[tokio::test]
async fn a_backup_directory_substituted_before_rollback_finalize_or_recover_is_refused() {
    let (server, payload) = upgraded_small_server().await;
    let data = server.root_dir().join("var/imss");
    let backup = data.join("imss_backup_71_to_91");
    let aside = data.join("real-backup");
    let outside = Outside::new();
    let before = outside.fingerprint();
    let mut attacks = Attacks::default();
    as_service_account(&[&"mv", &backup, &aside]);
    as_service_account(&[&"mkdir", &backup]);
    attacks.plant(
        "a substituted backup directory with a lock linked to a root-only file",
        || plant_link(&outside.path("passwd"), &backup.join("upgrade.lock")),
    );
    attacks.plant(
        "a substituted backup directory with its socket directory linked to root's",
        || plant_link(&outside.path("sshd.service.d"), &backup.join("run")),
    );
    for (what, program, args) in [
        ("rollback", "imss-rollback", &[][..]),
        ("finalize", "imss-upgrade", &["finalize", "--force"][..]),
        ("recover", "imss-upgrade", &["recover"][..]),
        ("compress", "imss-upgrade", &["compress-snapshot"][..]),
    ] {
        let (code, text) = helper(program, &server, &payload, args);
        println!("{what}: exit {code}: {}", text.lines().last().unwrap_or(""));
        if what != "recover" {
            assert_ne!(code, 0, "{what} went on with a substituted backup: {text}");
            assert!(
                text.contains("is not the backup directory this upgrade made"),
                "{what}: {text}"
            );
        }
        assert_eq!(
            outside.fingerprint(),
            before,
            "{what} changed a file outside the data tree"
        );
    }
    attacks.report("refused");

    as_service_account(&[&"rm", &"-r", &backup]);
    as_service_account(&[&"mv", &aside, &backup]);
    let (code, text) = helper("imss-rollback", &server, &payload, &[]);
    assert_eq!(
        code, 0,
        "the real backup, put back, does not roll back: {text}"
    );
    assert_eq!(
        imss_upgrade::files::imss_ini::ProductInfo::load(&server.root())
            .unwrap()
            .version,
        "7.1"
    );
}

/// A process in a process group of its own, as a stand-in for every
/// process outside the upgrade: it must outlive every attack.
struct Bystander(std::process::Child);

impl Bystander {
    fn start() -> Self {
        use std::os::unix::process::CommandExt;
        Self(
            std::process::Command::new("sleep")
                .arg("600")
                .process_group(0)
                .spawn()
                .unwrap(),
        )
    }

    fn group(&self) -> u32 {
        self.0.id()
    }

    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Finding 3, after finalize: the service account makes a backup directory
/// again, with a step journal "rolling back" whose undo note removes a
/// directory of root's, and a record naming a process group outside the
/// upgrade. The next boot's `recover --at-boot`, `status` and
/// `imss-rollback` act on none of it. (A process group of 1 is planted
/// only inside a booted host.)
#[tokio::test]
async fn forged_state_after_finalize_is_never_acted_on() {
    let (server, payload) = upgraded_small_server().await;
    let (code, text) = helper("imss-upgrade", &server, &payload, &["finalize", "--force"]);
    assert_eq!(code, 0, "{text}");
    let root = server.root_dir();
    let backup = root.join("var/imss/imss_backup_71_to_91");
    let outside = Outside::new();
    let mut bystander = Bystander::start();
    let etc_before = tree_fingerprint(&root.join("etc"));
    let before = outside.fingerprint();
    let mut attacks = Attacks::default();
    as_service_account(&[&"mkdir", &backup]);
    let forged_journal = r#"{"format": 2, "started_at": "2026-01-01T00:00:00Z", "state": "rolling-back",
        "steps": [{"step": "presync", "status": "done",
                   "started_at": "2026-01-01T00:00:00Z", "changed_at": "2026-01-01T00:00:00Z",
                   "undo": {"undo": "remove-staged-cluster", "data_dir": "/etc"}}]}"#;
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let forged_group = format!("{} {} 0\n", bystander.group(), boot_id.trim());
    for (name, file, text) in [
        (
            "a forged journal rolling back with an undo that removes /etc",
            "upgrade-state.json",
            forged_journal,
        ),
        (
            "a forged record of the control script's group naming a bystander",
            "control-script.group",
            forged_group.as_str(),
        ),
    ] {
        attacks.plant(name, || {
            as_service_account(&[
                &"sh",
                &"-c",
                &"printf '%s' \"$1\" > \"$2\"",
                &"plant",
                &text,
                &backup.join(file),
            ])
        });
    }
    for (what, program, args) in [
        (
            "recover at boot",
            "imss-upgrade",
            &["recover", "--at-boot"][..],
        ),
        ("status", "imss-upgrade", &["status"][..]),
        ("rollback", "imss-rollback", &[][..]),
    ] {
        let (code, text) = helper(program, &server, &payload, args);
        println!("{what}: exit {code}: {}", text.lines().last().unwrap_or(""));
        assert!(
            bystander.alive(),
            "{what} signalled a process outside the upgrade"
        );
        assert_eq!(
            tree_fingerprint(&root.join("etc")),
            etc_before,
            "{what} changed /etc"
        );
        assert_eq!(
            outside.fingerprint(),
            before,
            "{what} changed a file outside the data tree"
        );
        if what == "recover at boot" {
            assert_eq!(code, 0, "{text}");
            assert!(text.contains("nothing to recover"), "{text}");
        }
    }
    attacks.report("never acted on");
}

/// `find` and `sha256sum` over a tree: every entry's type, owner, mode,
/// size and link target, every file's hash.
fn tree_fingerprint(dir: &Path) -> String {
    Cmd::new("sh")
        .arg("-c")
        .arg(
            "cd \"$1\" && find . -printf '%p %y %U:%G %m %s %l\\n' | sort && \
             find . -type f -print0 | sort -z | xargs -0 -r sha256sum",
        )
        .arg("fingerprint")
        .arg(dir)
        .output_text()
        .unwrap()
}
