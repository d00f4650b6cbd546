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

    /// Every entry's type, owner, group, mode, size and link target, and
    /// every file's SHA-256, by `find` and `sha256sum`.
    fn fingerprint(&self) -> String {
        let listing = Cmd::new("find")
            .arg(self.dir.path())
            .args(["-printf", "%P %y %U:%G %m %s %l\n"])
            .output_text()
            .unwrap();
        let hashes = Cmd::new("sh")
            .arg("-c")
            .arg("cd \"$1\" && find . -type f -print0 | sort -z | xargs -0 sha256sum")
            .arg("fingerprint")
            .arg(self.dir.path())
            .output_text()
            .unwrap();
        let mut lines: Vec<&str> = listing.lines().collect();
        lines.sort();
        format!("{}\n{hashes}", lines.join("\n"))
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
