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
use imss_upgrade::flow::upgrade::run::Outcome;
use imss_upgrade::support::cmd::Cmd;

/// Files root must never change, outside the server's data tree: in the
/// server's root (so that a link the account plants leads to them whether
/// it is read on this machine or as under `--root`), root's.
struct Outside {
    dir: PathBuf,
}

impl Outside {
    fn new(server: &FixtureServer) -> Self {
        let dir = server.root_dir().join("outside");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("shadow"), "root:$6$secret:19000::::::\n").unwrap();
        std::fs::write(dir.join("passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        std::fs::create_dir(dir.join("sshd.service.d")).unwrap();
        std::fs::write(dir.join("sshd.service.d/keep.conf"), "[Service]\n").unwrap();
        run_checked(Cmd::new("chmod").args(["0600"]).arg(dir.join("shadow")));
        // The service account must reach the targets to link to them, as
        // it reaches /etc.
        run_checked(Cmd::new("chmod").args(["0755"]).arg(&dir));
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn fingerprint(&self) -> String {
        tree_fingerprint(&self.dir)
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

/// Plants a link at `at` to `target` (both on this machine), as the
/// service account, relative: it leads to the same file read on this
/// machine or under the server's `--root`.
fn plant_link(target: &Path, at: &Path) {
    let from = at.parent().unwrap();
    let common = from
        .ancestors()
        .find(|dir| target.starts_with(dir))
        .unwrap();
    let mut relative = PathBuf::new();
    for _ in from.strip_prefix(common).unwrap().components() {
        relative.push("..");
    }
    relative.push(target.strip_prefix(common).unwrap());
    as_service_account(&[&"ln", &"-s", &relative, &at]);
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
    let outside = Outside::new(&server);
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
    // fs.protected_hardlinks keeps the account from linking a file it does
    // not own; root plants this one, as the account could where it is off.
    attacks.plant(
        "a hard link to a root-only file in place of the cluster's start configuration",
        || {
            let conf = data.join("pgdata.conf");
            std::fs::remove_file(&conf).unwrap();
            std::fs::hard_link(outside.path("shadow"), &conf).unwrap();
        },
    );
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

/// Plants during the downtime, at the moment the 7.1 data directory has
/// moved into the backup and before the 9.1 cluster takes its place (the
/// fail point `before-migrate`): a link where the 9.1 cluster goes, and
/// one at its log. The migration puts the cluster in place by a rename,
/// which replaces a link and never follows it, and its log goes around
/// the planted one; the upgrade completes.
#[tokio::test]
async fn links_planted_during_the_downtime_are_replaced_not_followed() {
    needs_failpoints();
    let scenario = fail::FailScenario::setup();
    let (server, payload) = small_server();
    let data = server.root_dir().join("var/imss");
    let outside = Outside::new(&server);
    let before = outside.fingerprint();
    let mut attacks = Attacks::default();
    let (pgdata, pgdata_log) = (data.join("pgdata"), data.join("pgdata.log"));
    let pgdata_conf = data.join("pgdata.conf");
    let passwd = outside.path("passwd");
    let (drop_ins, shadow) = (outside.path("sshd.service.d"), outside.path("shadow"));
    let moved = data.join("imss_backup_71_to_91/pgdata-71");
    on_this_servers_downtime(moved, move || {
        plant_link(&drop_ins, &pgdata);
        as_service_account(&[&"rm", &"-f", &pgdata_log, &pgdata_conf]);
        plant_link(&shadow, &pgdata_log);
        plant_link(&passwd, &pgdata_conf);
    });
    attacks.plant(
        "a link where the 9.1 cluster takes the 7.1 one's place",
        || {},
    );
    attacks.plant(
        "a link at the 9.1 cluster's log, planted during the downtime",
        || {},
    );
    attacks.plant(
        "a link at the 9.1 cluster's start configuration, planted during the downtime",
        || {},
    );
    let outcome = flow::upgrade(&payload.context(&server).unwrap()).await;
    fail::remove("before-migrate");
    assert!(
        matches!(outcome, Ok(Outcome::Upgraded(_))),
        "the upgrade did not complete: {outcome:?}"
    );
    assert_eq!(
        outside.fingerprint(),
        before,
        "root changed a file outside the data tree"
    );
    assert!(
        std::fs::symlink_metadata(data.join("pgdata"))
            .unwrap()
            .is_dir()
    );
    scenario.teardown();
    attacks.report("gone around");
}

/// The socket directory of the 9.1 cluster (`/var/imss/run`) replaced, during
/// the downtime, by a link to a directory holding another server's socket
/// lock, which names a process that is no PostgreSQL server: the start of
/// the 9.1 cluster removed "stale" lock files through the link. It now
/// refuses the link; the upgrade rolls back, and nothing outside the data
/// tree changes. (7.1 may not take mail afterwards: its own services use
/// that directory, which the account broke.)
#[tokio::test]
async fn a_link_at_the_socket_directory_leads_root_to_remove_nothing_outside() {
    needs_failpoints();
    let scenario = fail::FailScenario::setup();
    let (server, payload) = small_server();
    let root = server.root();
    let port = imss_upgrade::files::odbc_ini::DbSettings::load(&root)
        .unwrap()
        .port;
    let outside = Outside::new(&server);
    std::fs::write(outside.path(&format!(".s.PGSQL.{port}.lock")), "1\n/tmp\n").unwrap();
    let before = outside.fingerprint();
    let mut attacks = Attacks::default();
    let sockets = server.root_dir().join("var/imss/run");
    let run_dir = sockets.clone();
    let target = outside.dir.clone();
    let moved = server
        .root_dir()
        .join("var/imss/imss_backup_71_to_91/pgdata-71");
    on_this_servers_downtime(moved, move || {
        as_service_account(&[&"mv", &sockets, &sockets.with_file_name("run.moved")]);
        plant_link(&target, &sockets);
    });
    attacks.plant(
        "a link at the 9.1 cluster's socket directory to another server's",
        || {},
    );
    let outcome = flow::upgrade(&payload.context(&server).unwrap()).await;
    fail::remove("before-migrate");
    let said = format!("{outcome:?}");
    assert!(
        outcome.is_err(),
        "the upgrade went on through the link: {said}"
    );
    assert!(said.contains("is a symbolic link"), "{said}");
    assert_eq!(
        outside.fingerprint(),
        before,
        "root changed a file outside the data tree: {said}"
    );
    // The account's link goes, so that the model's own services stop.
    std::fs::remove_file(&run_dir).unwrap();
    std::fs::rename(run_dir.with_file_name("run.moved"), &run_dir).unwrap();
    scenario.teardown();
    attacks.report("refused");
}

/// Runs `plant` once, at the fail point `before-migrate` of the upgrade of
/// the server whose 7.1 data directory has moved to `moved`. Fail points
/// are process-wide: the other tests' upgrades pass the same point, and
/// must find nothing planted in theirs.
fn on_this_servers_downtime(moved: PathBuf, plant: impl Fn() + Send + Sync + 'static) {
    let planted = std::sync::atomic::AtomicBool::new(false);
    fail::cfg_callback("before-migrate", move || {
        if moved.exists() && !planted.swap(true, std::sync::atomic::Ordering::SeqCst) {
            plant();
        }
    })
    .unwrap();
}

fn needs_failpoints() {
    if !cfg!(feature = "failpoints") {
        panic!(
            "these tests need the fail points: run them with `--features imss-upgrade/failpoints` \
             (make test does)"
        );
    }
}

/// An attack's name, how it is planted, what the refusal must say, and how
/// the plant is taken away again.
type Plant<'a> = (&'a str, Box<dyn Fn() + 'a>, &'a str, Box<dyn Fn() + 'a>);

/// What the upgrade said when it stopped before changing anything: its
/// inhibitors, or its error.
fn refusal(outcome: Result<Outcome, anyhow::Error>) -> String {
    match outcome {
        Ok(Outcome::Inhibited(report)) => serde_json::to_value(&report).unwrap()["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|finding| finding["severity"] == "inhibitor")
            .map(|finding| format!("{} {}", finding["id"], finding["found"]))
            .collect::<Vec<_>>()
            .join("\n"),
        Ok(Outcome::Upgraded(_)) => panic!("the upgrade went on"),
        Err(err) => format!("{err:#}"),
    }
}

/// Finding 2, and what else the account can put where the upgrade
/// creates or follows something before it starts. Preflight and the
/// switch followed the link at a path the switch creates and asked whether
/// its target existed, so a dangling link read as "absent"; the switch then
/// created the target (here a drop-in directory of a root service), gave
/// it to the service account and wrote into it. Each plant here stops the
/// upgrade before it changes anything (an inhibitor, or a refusal naming
/// the link), and nothing is created through it.
#[tokio::test]
async fn links_where_the_upgrade_creates_or_follows_a_path_stop_it_before_any_change() {
    let (server, payload) = small_server();
    let data = server.root_dir().join("var/imss");
    let working_dir = data.join("bind");
    let backup = data.join("imss_backup_71_to_91");
    let outside = Outside::new(&server);
    let before = outside.fingerprint();
    let mut attacks = Attacks::default();
    let plants: Vec<Plant> = vec![
        (
            "a dangling link at the bundled BIND's working directory",
            Box::new(|| plant_link(&outside.path("sshd.service.d/imss.conf.d"), &working_dir)),
            "switch-target-exists",
            Box::new(|| std::fs::remove_file(&working_dir).unwrap()),
        ),
        (
            "a link at the bundled BIND's working directory to a root service's drop-ins",
            Box::new(|| plant_link(&outside.path("sshd.service.d"), &working_dir)),
            "switch-target-exists",
            Box::new(|| std::fs::remove_file(&working_dir).unwrap()),
        ),
        (
            "a link at the backup directory to a directory of root's",
            Box::new(|| plant_link(&outside.path("sshd.service.d"), &backup)),
            "backup-dir-exists",
            Box::new(|| std::fs::remove_file(&backup).unwrap()),
        ),
        (
            "the account's own backup directory, its archive a link to a root-only file",
            Box::new(|| {
                as_service_account(&[&"mkdir", &backup]);
                plant_link(&outside.path("shadow"), &backup.join("snapshot.tar"));
            }),
            "backup-dir-exists",
            Box::new(|| std::fs::remove_dir_all(&backup).unwrap()),
        ),
        (
            "a dangling link where the presync stages the 9.1 cluster",
            Box::new(|| plant_link(&outside.path("new-cluster"), &data.join("pgdata-91.staged"))),
            "switch-target-exists",
            Box::new(|| std::fs::remove_file(data.join("pgdata-91.staged")).unwrap()),
        ),
        (
            "the account's link at the 7.1 data directory",
            Box::new(|| {
                as_service_account(&[&"mv", &data.join("pgdata"), &data.join("pgdata.moved")]);
                plant_link(&data.join("pgdata.moved"), &data.join("pgdata"));
            }),
            "data-dir-link-untrusted",
            Box::new(|| {
                std::fs::remove_file(data.join("pgdata")).unwrap();
                std::fs::rename(data.join("pgdata.moved"), data.join("pgdata")).unwrap();
            }),
        ),
    ];
    for (name, plant, expected, clean_up) in &plants {
        attacks.plant(name, plant);
        let said = refusal(flow::upgrade(&payload.context(&server).unwrap()).await);
        assert!(said.contains(expected), "{name}: {said}");
        assert_eq!(
            outside.fingerprint(),
            before,
            "{name}: root changed a file outside the data tree"
        );
        assert!(
            !server
                .root_dir()
                .join("var/lib/imss-upgrade/upgrade-state.json")
                .exists(),
            "{name}: the upgrade began"
        );
        clean_up();
    }
    attacks.report("refused before any change");
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
            .arg(imss_fixture::model::pgbin::pg15().unwrap().bin_dir());
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
/// link to a directory of root's. Each command that reads the backup
/// refuses, naming the directory, and changes nothing (`recover` of a
/// completed upgrade reads none of it, and goes on); put back, the real
/// backup still rolls the server back to 7.1.
#[tokio::test]
async fn a_backup_directory_substituted_before_each_command_is_refused() {
    let (server, payload) = upgraded_small_server().await;
    let data = server.root_dir().join("var/imss");
    let backup = data.join("imss_backup_71_to_91");
    let aside = data.join("real-backup");
    let outside = Outside::new(&server);
    let before = outside.fingerprint();
    let mut attacks = Attacks::default();
    as_service_account(&[&"mv", &backup, &aside]);
    for (program, args) in [
        ("imss-rollback", &[][..]),
        ("imss-upgrade", &["finalize", "--force"][..]),
        ("imss-upgrade", &["recover"][..]),
        ("imss-upgrade", &["compress-snapshot"][..]),
        ("imss-upgrade", &["transfer", "run"][..]),
        ("imss-upgrade", &["transfer", "pause"][..]),
    ] {
        let command = format!("{program} {}", args.join(" "));
        attacks.plant(
            &format!("a substituted backup directory, its lock and sockets linked out, before `{command}`"),
            || {
                as_service_account(&[&"mkdir", &backup]);
                plant_link(&outside.path("passwd"), &backup.join("upgrade.lock"));
                plant_link(&outside.path("sshd.service.d"), &backup.join("run"));
            },
        );
        let (code, text) = helper(program, &server, &payload, args);
        println!("{command}: exit {code}: {}", last_line(&text));
        if args != ["recover"] {
            assert_ne!(
                code, 0,
                "{command} went on with a substituted backup: {text}"
            );
            assert!(
                text.contains("is not the backup directory this upgrade made"),
                "{command}: {text}"
            );
        }
        assert_eq!(
            outside.fingerprint(),
            before,
            "{command} changed a file outside the data tree"
        );
        std::fs::remove_dir_all(&backup).unwrap();
    }
    attacks.report("refused");

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

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or("")
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
/// directory of root's, a record naming a process group outside the
/// upgrade, a rollback manifest naming `/etc` and a link where the 7.1
/// cluster waits. `recover --at-boot` (the next boot's), `status`,
/// `imss-rollback`, `transfer run` and `finalize` act on none of it. (A
/// process group of 1 is planted only inside a booted host.) Before the
/// finalize, a link where it sets the backup aside to delete it: only the
/// link goes.
#[tokio::test]
async fn forged_state_after_finalize_is_never_acted_on() {
    let (server, payload) = upgraded_small_server().await;
    let root = server.root_dir();
    let backup = root.join("var/imss/imss_backup_71_to_91");
    let outside = Outside::new(&server);
    let mut bystander = Bystander::start();
    let etc_before = tree_fingerprint(&root.join("etc"));
    let before = outside.fingerprint();
    let mut attacks = Attacks::default();
    attacks.plant(
        "a link to a directory of root's where finalize sets the backup aside to delete it",
        || {
            plant_link(
                &outside.path("sshd.service.d"),
                &root.join("var/imss/imss_backup_71_to_91.finalizing"),
            )
        },
    );
    let (code, text) = helper("imss-upgrade", &server, &payload, &["finalize", "--force"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        outside.fingerprint(),
        before,
        "finalize changed a file outside the data tree"
    );

    as_service_account(&[&"mkdir", &backup]);
    let forged_journal = r#"{"format": 2, "started_at": "2026-01-01T00:00:00Z", "state": "rolling-back",
        "steps": [{"step": "presync", "status": "done",
                   "started_at": "2026-01-01T00:00:00Z", "changed_at": "2026-01-01T00:00:00Z",
                   "undo": {"undo": "remove-staged-cluster", "data_dir": "/etc"}}]}"#;
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let forged_group = format!("{} {} 0\n", bystander.group(), boot_id.trim());
    let forged_manifest =
        r#"{"format": 1, "data_dir_91": "/etc", "data_dir_71": ["/etc", "/etc"]}"#;
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
        (
            "a forged rollback manifest naming /etc as the 9.1 data directory",
            "rollback-manifest.json",
            forged_manifest,
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
    attacks.plant(
        "a link where the 7.1 cluster waits, in a backup directory made after finalize",
        || plant_link(&root.join("etc"), &backup.join("pgdata-71")),
    );
    for (what, program, args) in [
        (
            "recover at boot",
            "imss-upgrade",
            &["recover", "--at-boot"][..],
        ),
        ("status", "imss-upgrade", &["status"][..]),
        ("rollback", "imss-rollback", &[][..]),
        ("transfer", "imss-upgrade", &["transfer", "run"][..]),
        ("finalize", "imss-upgrade", &["finalize", "--force"][..]),
    ] {
        let (code, text) = helper(program, &server, &payload, args);
        println!("{what}: exit {code}: {}", last_line(&text));
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
