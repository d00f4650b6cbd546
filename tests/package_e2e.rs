//! The upgrade as an administrator meets it: `dnf install imss-upgrade` on
//! a booted 7.1 server (its units running, packages served from a local
//! repository), then `journalctl` to review, and `rpm -e` or `dnf remove`
//! to go back. The packages are this build's (`tools/rpm.sh --profile
//! dev`, with the fail points the failure cases arm through a drop-in of
//! the unit the upgrade runs in).
//!
//! Needs root, `systemd-container`, rpm, dnf, createrepo-c, rpmlint and
//! cargo-generate-rpm (`make setup`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use imss_fixture::hosts::model_host::{
    Baseline, ModelHost, STOP_FILE, units_71, units_91, wait_for,
};
use imss_fixture::hosts::package_repo::{self, PackageRepo};
use imss_upgrade::files::units;
use imss_upgrade::flow::journal::RunState;
use imss_upgrade::support::logging::events;

/// One booted host at a time: each builds and upgrades a whole server, and
/// the machine has few cores.
static ONE_HOST_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const DNF_TIMEOUT: Duration = Duration::from_secs(900);

fn one_host_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_HOST_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// This build's packages, built once per test binary.
fn packages() -> &'static [PathBuf] {
    static PACKAGES: OnceLock<Vec<PathBuf>> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        package_repo::build_test_packages(target_dir())
            .unwrap_or_else(|err| panic!("building the packages: {err:#}"))
    })
}

/// The same packages as [`packages`], as release 2.
fn newer_release() -> &'static [PathBuf] {
    static PACKAGES: OnceLock<Vec<PathBuf>> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        package_repo::build_test_packages_of_release(target_dir(), Some("2"))
            .unwrap_or_else(|err| panic!("building release 2 of the packages: {err:#}"))
    })
}

/// The target directory this build's programs are in.
fn target_dir() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_imss-upgrade"))
        .parent()
        .and_then(Path::parent)
        .expect("the programs are in the target directory's profile folder")
}

/// A booted host running 7.1 (built with `extra` options) that serves
/// this build's packages.
fn host_serving_packages(name: &str, extra: &[&str]) -> (ModelHost, PackageRepo) {
    let packages = packages();
    let host = ModelHost::with_71(name, extra);
    let repo = package_repo::serve_packages(&host.host, packages)
        .unwrap_or_else(|err| panic!("serving the packages: {err:#}"));
    (host, repo)
}

/// `argv` inside the host: exit code and stdout with stderr after it.
fn inside(host: &ModelHost, argv: &[&str]) -> (Option<i32>, String) {
    let (code, stdout, stderr) = host.run_inside(argv, DNF_TIMEOUT);
    (code, format!("{stdout}{stderr}"))
}

/// Whether rpm has `package` installed inside the host.
fn installed(host: &ModelHost, package: &str) -> bool {
    host.probe(&["rpm", "-q", package]).0 == Some(0)
}

/// Sets `FAILPOINTS` (the `fail` crate's syntax) for the work in `unit`
/// through a drop-in, or removes it (`None`).
fn arm_unit(host: &ModelHost, unit: &str, failpoints: Option<&str>) {
    let drop_in = failpoints.map(|points| format!("[Service]\nEnvironment=FAILPOINTS={points}\n"));
    write_drop_in(host, unit, drop_in.as_deref());
    host.host.run(&["systemctl", "daemon-reload"]).unwrap();
}

/// Writes the test's drop-in for `unit` (`None` removes it), from outside.
fn write_drop_in(host: &ModelHost, unit: &str, text: Option<&str>) {
    let dir = host
        .host
        .root()
        .join("etc/systemd/system")
        .join(format!("{unit}.d"));
    let file = dir.join("imss-test.conf");
    match text {
        Some(text) => {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&file, text).unwrap();
        }
        None => {
            let _ = std::fs::remove_file(&file);
        }
    }
}

/// Starts `dnf install -y imss-upgrade` inside the host, stopped dead at
/// fail point `point` (inside the upgrade's unit, or for
/// `package-upgraded` in the scriptlet), then cuts the host's power and
/// boots it again: the recovery unit settles the run at boot.
fn dnf_install_cut_at(host: &mut ModelHost, point: &str) {
    let stop = [
        format!("IMSS_STOP_AT={point}"),
        format!("IMSS_STOP_FILE={STOP_FILE}"),
    ];
    let mut argv = vec!["env".to_string()];
    if point == "package-upgraded" {
        argv.extend(stop.iter().cloned());
    } else {
        let stop_dir = Path::new(STOP_FILE).parent().unwrap().display();
        let drop_in = format!(
            "[Service]\nEnvironment={} {}\nReadWritePaths={stop_dir}\n",
            stop[0], stop[1]
        );
        write_drop_in(host, units::RUN.name, Some(&drop_in));
        host.host.run(&["systemctl", "daemon-reload"]).unwrap();
    }
    argv.extend(["dnf", "install", "-y", "imss-upgrade"].map(String::from));
    host.power_loss_once_stopped(&argv, &format!("dnf install reaching {point}"));
    write_drop_in(host, units::RUN.name, None);
    host.host.run(&["systemctl", "daemon-reload"]).unwrap();
}

/// Checks that the host ended on 7.1 exactly as `before` it was, with its
/// units running (`when` names the moment).
fn assert_on_71(host: &ModelHost, before: &Baseline, when: &str) {
    assert_eq!(host.step_journal().state, RunState::RolledBack, "{when}");
    wait_for(Duration::from_secs(120), "7.1's units to run", || {
        units_71().iter().all(|unit| host.active(unit) == "active")
    });
    host.assert_back_on_71_exactly(before, when);
}

/// Checks that the host ended on 9.1, its units running and taking mail.
fn assert_on_91(host: &ModelHost, when: &str) {
    assert_eq!(host.step_journal().state, RunState::Completed, "{when}");
    wait_for(Duration::from_secs(120), "9.1's units to run", || {
        units_91(true)
            .iter()
            .all(|unit| host.active(unit) == "active")
    });
    wait_for(Duration::from_secs(60), "9.1 to take mail", || {
        host.takes_mail()
    });
}

/// `rpm -qp ARGS PACKAGE` on this machine: its stdout.
fn query_package(package: &Path, args: &[&str]) -> String {
    imss_upgrade::support::cmd::Cmd::new("rpm")
        .arg("-qp")
        .args(args)
        .arg(package)
        .output_text()
        .unwrap_or_else(|err| panic!("rpm -qp {args:?} {}: {err}", package.display()))
}

/// The built package named `name`.
fn package_file(name: &str) -> &'static Path {
    packages()
        .iter()
        .find(|file| query_package(file, &["--qf", "%{NAME}"]) == name)
        .unwrap_or_else(|| panic!("no package {name} among {:?}", packages()))
}

#[test]
fn each_scriptlet_is_its_file_under_rpm_and_nothing_else() {
    // cargo-generate-rpm takes a script path that does not exist as the
    // script's text: a typo would ship a scriptlet that runs the path.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let expected = [
        ("imss-upgrade", "PREIN", "rpm/imss-upgrade.pre"),
        ("imss-upgrade", "PREUN", "rpm/imss-upgrade.preun"),
        (
            "imss-upgrade-helpers",
            "PREUN",
            "rpm/imss-upgrade-helpers.preun",
        ),
        (
            "imss-upgrade-helpers",
            "POSTIN",
            "rpm/imss-upgrade-helpers.reload",
        ),
        (
            "imss-upgrade-helpers",
            "POSTUN",
            "rpm/imss-upgrade-helpers.reload",
        ),
    ];
    for (name, tag, file) in expected {
        let script = query_package(package_file(name), &["--qf", &format!("%{{{tag}}}")]);
        let text = std::fs::read_to_string(workspace.join(file)).unwrap();
        assert_eq!(script.trim_end(), text.trim_end(), "{name} {tag}");
    }
    for (name, tag) in [
        ("imss-upgrade", "POSTIN"),
        ("imss-upgrade-helpers", "PREIN"),
    ] {
        let script = query_package(package_file(name), &["--qf", &format!("%{{{tag}}}")]);
        assert_eq!(
            script, "(none)",
            "{name} has a {tag} scriptlet it should not have"
        );
    }
}

#[test]
fn the_packages_hold_what_the_scriptlets_run_and_require_each_other_exactly() {
    let main = package_file("imss-upgrade");
    let helpers = package_file("imss-upgrade-helpers");
    assert_eq!(query_package(main, &["--qf", "%{ARCH}"]), "noarch");
    assert_eq!(
        query_package(main, &["--list"]).trim(),
        "(contains no files)"
    );
    let version = query_package(helpers, &["--qf", "%{VERSION}-%{RELEASE}"]);
    let requires = query_package(main, &["--requires"]);
    assert!(
        requires
            .lines()
            .any(|line| line == format!("imss-upgrade-helpers = {version}")),
        "{requires}"
    );
    let files = query_package(helpers, &["--list"]);
    for path in [
        "/usr/sbin/imss-upgrade",
        "/usr/sbin/imss-rollback",
        "/usr/lib/systemd/system/imss-upgrade-run.service",
        "/usr/lib/systemd/system/imss-upgrade-rollback.service",
        "/usr/lib/systemd/catalog/imss-upgrade.catalog",
        "/usr/share/doc/imss-upgrade/README.md",
        "/usr/share/imss-upgrade/payload/payload.sha256",
        "/usr/share/imss-upgrade/payload/PostgreSQL/bin/postgres",
        "/usr/share/imss-upgrade/payload/bind/sbin/named",
    ] {
        assert!(
            files.lines().any(|line| line == path),
            "{path} is not in the helpers"
        );
    }
    // No 9.1 file is a package's: the switch copies the tree and writes the units.
    for line in files.lines() {
        assert!(
            !line.starts_with("/opt/") && !line.starts_with("/etc/systemd/system/"),
            "the helpers own {line}"
        );
    }
    for field in ["%{LICENSE}", "%{URL}", "%{VENDOR}", "%{SUMMARY}"] {
        for package in [main, helpers] {
            let value = query_package(package, &["--qf", field]);
            assert!(
                !value.is_empty() && value != "(none)",
                "{field} of {}",
                package.display()
            );
        }
    }
}

/// The oldest glibc the shipped programs may need: RHEL 7's.
const GLIBC_FLOOR: (u32, u32) = (2, 17);

/// The release packages `make rpm` writes.
fn release_packages() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/rpm");
    let packages = package_repo::upgrade_packages_in(&dir).unwrap_or_else(|err| panic!("{err:#}"));
    assert_eq!(
        packages.len(),
        2,
        "{} should hold the two release packages alone: run `make rpm`",
        dir.display()
    );
    packages
}

/// The newest `GLIBC_x.y` symbol version the ELF file `path` needs.
fn newest_glibc_needed(path: &Path) -> Option<(u32, u32)> {
    let symbols = imss_upgrade::support::cmd::Cmd::new("objdump")
        .arg("-T")
        .arg(path)
        .output_text()
        .unwrap_or_else(|err| {
            panic!(
                "objdump -T {}: {err} (apt-get install binutils)",
                path.display()
            )
        });
    symbols
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let version: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = version.split('.').map(|part| part.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
}

#[test]
#[ignore = "checks make rpm's release packages; make rpm runs it"]
fn the_programs_the_release_packages_ship_need_at_most_glibc_2_17() {
    let ours = [
        "/usr/sbin/imss-upgrade",
        "/usr/sbin/imss-rollback",
        "/usr/share/imss-upgrade/payload/bin/imssd",
    ];
    let mut checked = Vec::new();
    for package in release_packages() {
        let unpacked = tempfile::tempdir().unwrap();
        // Installed into a scratch root as rpm installs them (Debian's
        // rpm2cpio exits 1 on a whole payload).
        imss_upgrade::support::cmd::Cmd::new("rpm")
            .arg("--root")
            .arg(unpacked.path())
            .args([
                "--dbpath",
                "/rpmdb",
                "-i",
                "--nodeps",
                "--noscripts",
                "--notriggers",
            ])
            .arg(&package)
            .run()
            .unwrap_or_else(|err| panic!("unpacking {}: {err}", package.display()));
        for program in ours {
            let path = unpacked.path().join(&program[1..]);
            if !path.exists() {
                continue;
            }
            let needed = newest_glibc_needed(&path)
                .unwrap_or_else(|| panic!("{program} names no glibc version"));
            assert!(
                needed <= GLIBC_FLOOR,
                "{program} needs glibc {}.{}, more than RHEL 7's {}.{}",
                needed.0,
                needed.1,
                GLIBC_FLOOR.0,
                GLIBC_FLOOR.1
            );
            checked.push(program);
        }
    }
    checked.sort();
    let mut expected = ours.to_vec();
    expected.sort();
    assert_eq!(
        checked, expected,
        "not every shipped program was found in the packages"
    );
}

#[test]
fn dnf_install_under_mail_upgrades_journalctl_tells_the_story_and_rpm_e_loses_nothing() {
    let _one = one_host_at_a_time();
    let (host, mut repo) = host_serving_packages("pkg-install", &[]);
    let before = host.baseline();

    let sender = host.send_mail("install", 20);
    std::thread::sleep(Duration::from_secs(2));
    let (code, output) = inside(&host, &["dnf", "install", "-y", "imss-upgrade"]);
    assert_eq!(code, Some(0), "dnf install failed:\n{output}");
    assert!(
        output.contains("IMSS upgraded from 7.1 to 9.1"),
        "dnf does not show the upgrade report:\n{output}"
    );
    let during_install = sender.finish();
    assert!(
        during_install.count("refused") + during_install.count("failed") > 0,
        "no mail met the downtime: dnf install ran outside the traffic: {}",
        during_install.tally
    );
    // Mail 7.1 took during the run is within the last 24 hours, which the
    // upgrade migrates: every mail accepted is in 9.1's database.
    during_install.assert_all_in(&host.traffic_in("policy_event"), "9.1 after dnf install");
    assert!(installed(&host, "imss-upgrade") && installed(&host, "imss-upgrade-helpers"));
    assert_eq!(host.step_journal().state, RunState::Completed);
    host.assert_units(&units_91(true), "active", "after dnf install");
    assert!(host.takes_mail(), "9.1 takes no mail after dnf install");

    // The story: the upgrade's unit holds every line of the run, the events
    // carry their fields, and -x adds the catalog's text.
    let (_, unit_log) = inside(&host, &["journalctl", "--no-pager", "-u", units::RUN.name]);
    assert!(unit_log.contains("switch"), "{unit_log}");
    let completed = host.journal_events(events::UPGRADE_COMPLETED);
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0]["_SYSTEMD_UNIT"], units::RUN.name);
    assert!(
        completed[0]["IMSS_DOWNTIME_MS"].is_string(),
        "{}",
        completed[0]
    );
    for step in [
        "presync",
        "quiesce",
        "snapshot",
        "migrate",
        "switch",
        "register-rollback",
    ] {
        assert!(
            host.journal_events(events::STEP_FINISHED)
                .iter()
                .any(|event| event["IMSS_STEP"] == step),
            "no STEP_FINISHED event for {step}"
        );
    }
    let (_, explained) = inside(
        &host,
        &[
            "journalctl",
            "--no-pager",
            "-x",
            &format!("MESSAGE_ID={}", events::UPGRADE_COMPLETED),
        ],
    );
    assert!(
        explained.contains("Defined-By: imss-upgrade") && explained.contains("imss-rollback puts"),
        "journalctl -x shows no catalog text:\n{explained}"
    );

    // A reinstall, and an upgrade of the package to a newer release,
    // change nothing: the old %preun sees 1, the new %pre 2.
    let (code, output) = inside(&host, &["dnf", "reinstall", "-y", "imss-upgrade"]);
    assert_eq!(code, Some(0), "dnf reinstall failed:\n{output}");
    assert_eq!(host.step_journal().state, RunState::Completed);
    assert_eq!(host.journal_events(events::UPGRADE_STARTED).len(), 1);
    host.assert_units(&units_91(true), "active", "after dnf reinstall");
    repo.replace(&host.host, newer_release()).unwrap();
    let (code, output) = inside(&host, &["dnf", "upgrade", "-y", "imss-upgrade"]);
    assert_eq!(code, Some(0), "dnf upgrade failed:\n{output}");
    assert_eq!(
        host.probe(&["rpm", "-q", "--qf", "%{RELEASE}", "imss-upgrade"])
            .1,
        "2",
        "{output}"
    );
    assert_eq!(host.step_journal().state, RunState::Completed);
    assert_eq!(host.journal_events(events::UPGRADE_STARTED).len(), 1);
    assert!(
        host.journal_events(events::ROLLBACK_STARTED).is_empty(),
        "{output}"
    );
    host.assert_units(
        &units_91(true),
        "active",
        "after dnf upgrade of the package",
    );

    // The helpers stay while a rollback is possible.
    let (code, output) = inside(&host, &["rpm", "-e", "--nodeps", "imss-upgrade-helpers"]);
    assert_ne!(code, Some(0), "the helpers went:\n{output}");
    assert!(output.contains("can still be rolled back"), "{output}");
    assert!(installed(&host, "imss-upgrade-helpers"));

    let sender = host.send_mail("erase", 15);
    std::thread::sleep(Duration::from_secs(2));
    let (code, output) = inside(&host, &["rpm", "-e", "imss-upgrade"]);
    assert_eq!(code, Some(0), "rpm -e failed:\n{output}");
    let during_erase = sender.finish();
    assert!(!installed(&host, "imss-upgrade"));
    assert_eq!(host.step_journal().state, RunState::RolledBack);
    let taken: BTreeSet<String> = during_install
        .accepted
        .union(&during_erase.accepted)
        .cloned()
        .collect();
    host.assert_back_on_71_with_mails(&before, &taken, "after rpm -e");
    host.assert_units(&units_71(), "active", "after rpm -e");
    // Nothing lost: what 9.1 took is carried back into 7.1.
    let in_71 = host.traffic_in("tb_policy_event");
    during_install.assert_all_in(&in_71, "7.1 after rpm -e");
    during_erase.assert_all_in(&in_71, "7.1 after rpm -e");

    let (code, output) = inside(&host, &["rpm", "-e", "imss-upgrade-helpers"]);
    assert_eq!(
        code,
        Some(0),
        "the helpers stay after the rollback:\n{output}"
    );
}

#[test]
fn an_inhibitor_fails_dnf_install_with_the_report_and_changes_nothing() {
    let _one = one_host_at_a_time();
    let (host, _repo) = host_serving_packages("pkg-inhibit", &["--build", "1720"]);
    let before = host.baseline();

    let (code, output) = inside(&host, &["dnf", "install", "-y", "imss-upgrade"]);
    assert_ne!(
        code,
        Some(0),
        "dnf install of an inhibited upgrade succeeded:\n{output}"
    );
    assert!(
        output.contains("1808"),
        "dnf does not show the inhibitor:\n{output}"
    );
    assert!(output.contains("IMSS stays on 7.1"), "{output}");
    assert!(!installed(&host, "imss-upgrade"), "{output}");
    host.assert_back_on_71_exactly(&before, "after an inhibited dnf install");
    host.assert_units(&units_71(), "active", "after an inhibited dnf install");
}

#[test]
fn failures_under_dnf_install_and_dnf_remove_leave_the_server_whole_and_a_retry_works() {
    let _one = one_host_at_a_time();
    let (host, _repo) = host_serving_packages("pkg-failures", &[]);
    let before = host.baseline();
    arm_unit(&host, units::RUN.name, Some("switch-health-check=return"));

    let (code, output) = inside(&host, &["dnf", "install", "-y", "imss-upgrade"]);
    assert_ne!(
        code,
        Some(0),
        "dnf install of a failing upgrade succeeded:\n{output}"
    );
    assert!(
        output.contains("switch-health-check"),
        "dnf does not show the cause:\n{output}"
    );
    assert!(output.contains("IMSS stays on 7.1"), "{output}");
    assert!(!installed(&host, "imss-upgrade"), "{output}");
    assert_eq!(host.step_journal().state, RunState::RolledBack);
    host.assert_back_on_71_exactly(&before, "after a failed dnf install");
    host.assert_units(&units_71(), "active", "after a failed dnf install");

    // The cause gone, the same command upgrades.
    arm_unit(&host, units::RUN.name, None);
    let (code, output) = inside(&host, &["dnf", "install", "-y", "imss-upgrade"]);
    assert_eq!(code, Some(0), "the second dnf install failed:\n{output}");
    assert_eq!(host.step_journal().state, RunState::Completed);

    // dnf remove: a rollback that fails keeps both packages, and 9.1.
    arm_unit(&host, units::ROLLBACK.name, Some("rollback-checked=return"));
    let (code, output) = inside(&host, &["dnf", "remove", "-y", "imss-upgrade"]);
    assert_ne!(
        code,
        Some(0),
        "dnf remove with a failing rollback succeeded:\n{output}"
    );
    assert!(installed(&host, "imss-upgrade"), "{output}");
    assert!(installed(&host, "imss-upgrade-helpers"), "{output}");
    assert_eq!(host.step_journal().state, RunState::Completed);
    host.assert_units(&units_91(true), "active", "after a failed dnf remove");

    arm_unit(&host, units::ROLLBACK.name, None);
    let (code, output) = inside(&host, &["dnf", "remove", "-y", "imss-upgrade"]);
    assert_eq!(code, Some(0), "the second dnf remove failed:\n{output}");
    assert!(!installed(&host, "imss-upgrade"));
    // dnf takes the helpers with it only where it recorded them as a
    // dependency; the failed first install left them recorded as wanted.
    // Either way nothing holds them back now.
    if installed(&host, "imss-upgrade-helpers") {
        let (code, output) = inside(&host, &["dnf", "remove", "-y", "imss-upgrade-helpers"]);
        assert_eq!(
            code,
            Some(0),
            "the helpers stay after the rollback:\n{output}"
        );
    }
    assert!(!installed(&host, "imss-upgrade-helpers"));
    host.assert_back_on_71_exactly(&before, "after dnf remove");
    host.assert_units(&units_71(), "active", "after dnf remove");
}

#[test]
fn power_losses_during_dnf_install_end_on_91_or_exactly_on_71_and_dnf_install_converges() {
    let _one = one_host_at_a_time();
    let (mut host, _repo) = host_serving_packages("pkg-power", &[]);
    let before = host.baseline();
    // What an uninterrupted dnf install makes of this 7.1, for the runs
    // the recovery at boot finishes.
    let (code, output) = inside(&host, &["dnf", "install", "-y", "imss-upgrade"]);
    assert_eq!(code, Some(0), "the uninterrupted dnf install:\n{output}");
    let uninterrupted = host.upgraded_91_with_history_moved("/usr/sbin/imss-upgrade");
    let (code, output) = inside(&host, &["rpm", "-e", "imss-upgrade"]);
    assert_eq!(
        code,
        Some(0),
        "rpm -e after the uninterrupted install:\n{output}"
    );
    assert_on_71(&host, &before, "after the uninterrupted install and rpm -e");

    // Before the switch is done, the recovery at boot rolls back, and the
    // next dnf install upgrades again from the 7.1 it left.
    for point in [
        "snapshot-archived",
        "migrate-window-copied",
        "switch-swapped",
    ] {
        dnf_install_cut_at(&mut host, point);
        assert_on_71(&host, &before, &format!("after a power loss at {point}"));
        assert!(
            !installed(&host, "imss-upgrade"),
            "after a power loss at {point}"
        );
    }

    // After it, the recovery finishes; dnf install then records the package
    // without redoing the upgrade.
    for point in ["after-register-rollback", "package-upgraded"] {
        dnf_install_cut_at(&mut host, point);
        let when = format!("after a power loss at {point}");
        assert_on_91(&host, &when);
        let finished = host.upgraded_91_with_history_moved("/usr/sbin/imss-upgrade");
        if let Err(err) = finished.check_same_as(&uninterrupted) {
            panic!("{when}: {err:#}");
        }
        let upgraded_at = host.step_journal().started_at;
        let (code, output) = inside(&host, &["dnf", "install", "-y", "imss-upgrade"]);
        assert_eq!(code, Some(0), "dnf install {when}:\n{output}");
        assert!(installed(&host, "imss-upgrade"), "{when}");
        assert_eq!(
            host.step_journal().started_at,
            upgraded_at,
            "the upgrade ran again {when}"
        );
        assert_on_91(&host, &format!("dnf install {when}"));

        let (code, output) = inside(&host, &["rpm", "-e", "imss-upgrade"]);
        assert_eq!(code, Some(0), "rpm -e {when}:\n{output}");
        assert_on_71(&host, &before, &format!("rpm -e {when}"));
    }
}

#[test]
fn a_hang_up_of_dnf_in_the_middle_of_the_upgrade_completes_it_and_dnf_reports_it() {
    let _one = one_host_at_a_time();
    let (host, _repo) = host_serving_packages("pkg-hangup", &[]);
    // A pause in the migration, for the hang-up to arrive in the middle.
    arm_unit(
        &host,
        units::RUN.name,
        Some("migrate-window-copied=sleep(4000)"),
    );
    let log = tempfile::NamedTempFile::new().unwrap();
    // In a session of its own, as a login's shell runs it.
    let mut dnf = host
        .host
        .command(&["setsid", "--wait", "dnf", "install", "-y", "imss-upgrade"])
        .unwrap()
        .spawn_daemon(log.path())
        .unwrap();
    wait_for(
        Duration::from_secs(600),
        "the upgrade reaching the migration",
        || {
            std::fs::read_to_string(
                host.host
                    .root()
                    .join("var/lib/imss-upgrade/upgrade-state.json"),
            )
            .is_ok_and(|journal| journal.contains("\"migrate\""))
        },
    );
    let (_, status) = inside(&host, &["imss-upgrade", "status"]);
    assert!(
        status.contains("Upgrade to 9.1: in progress") && status.contains("migrate"),
        "status does not say where the upgrade is:\n{status}"
    );
    // What a dropped SSH session does: SIGHUP to the session's processes.
    let (_, sessions) = inside(&host, &["pgrep", "-x", "dnf"]);
    let dnf_pid = sessions
        .trim()
        .lines()
        .next()
        .expect("dnf runs")
        .to_string();
    let (_, group) = inside(&host, &["ps", "-o", "pgid=", "-p", &dnf_pid]);
    let (code, output) = inside(
        &host,
        &["kill", "-HUP", "--", &format!("-{}", group.trim())],
    );
    assert_eq!(code, Some(0), "{output}");

    wait_for(
        Duration::from_secs(600),
        "the upgrade's unit to end",
        || {
            !matches!(
                host.active(units::RUN.name).as_str(),
                "activating" | "active"
            )
        },
    );
    let dnf_status = dnf.wait().unwrap();
    let dnf_said = std::fs::read_to_string(log.path()).unwrap_or_default();
    println!("dnf ended {dnf_status} after the hang-up and wrote:\n{dnf_said}");
    let (code, status) = inside(&host, &["imss-upgrade", "status"]);
    assert_eq!(code, Some(0), "{status}");
    // Nothing failed: the hang-up alone must not roll the upgrade back.
    assert_eq!(
        host.step_journal().state,
        RunState::Completed,
        "the upgrade did not complete after the hang-up, though nothing failed:\n{status}\n\
         dnf ended {dnf_status} and wrote:\n{dnf_said}"
    );
    assert!(status.contains("Upgrade to 9.1: completed"), "{status}");
    assert!(status.contains("IMSS 9.1"), "{status}");
    assert_on_91(&host, "after the hang-up");
    // The scriptlet survived the hang-up and reported the outcome, and rpm
    // recorded the package: dnf holds signals during its transaction, and
    // the hang-up ends it only after (or it ends well).
    assert!(
        dnf_said.contains("IMSS upgraded from 7.1 to 9.1") && dnf_said.contains("IMSS 9.1 runs"),
        "dnf's output lacks the upgrade's report:\n{dnf_said}"
    );
    let (code, installed) = inside(
        &host,
        &["rpm", "-q", "imss-upgrade", "imss-upgrade-helpers"],
    );
    assert_eq!(
        code,
        Some(0),
        "the packages are not recorded after the hang-up: {installed}\ndnf wrote:\n{dnf_said}"
    );
    {
        use std::os::unix::process::ExitStatusExt;
        assert!(
            dnf_status.success()
                || dnf_status.signal() == Some(nix::sys::signal::Signal::SIGHUP as i32),
            "dnf ended {dnf_status}, neither well nor by the hang-up:\n{dnf_said}"
        );
    }
}
