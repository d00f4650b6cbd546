//! The 9.1 systemd units in `systemd/`: the folder holds exactly the
//! expected ones; each passes `systemd-analyze verify` with the programs it
//! runs in place (a typo in a directive, a dependency or a program's path
//! fails); `systemd-analyze security` rates each at most 4.0, except the
//! recovery, upgrade and rollback units, which must keep root's power and
//! say why at their top.
//!
//! Needs `systemd-analyze` (package systemd); no booted systemd.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use imss_upgrade::support::cmd::Cmd;

/// Every unit the 9.1 package installs.
const UNITS: [&str; 11] = [
    "imss-postgresql.service",
    "imss-policy.service",
    "imss-scanner.service",
    "imss-euq.service",
    "imss-euq-console.service",
    "imss-named.service",
    "imss-upgrade-recover.service",
    "imss-upgrade-compress.service",
    "imss-upgrade-transfer.service",
    "imss-upgrade-run.service",
    "imss-upgrade-rollback.service",
];

/// The programs the units run: the 9.1 program tree's, the upgrade
/// helper, and the host's `kill`. A unit naming any other fails `verify`.
const PROGRAMS: [&str; 7] = [
    "/opt/trend/imss/PostgreSQL/bin/postgres",
    "/opt/trend/imss/bin/imssd",
    "/opt/trend/imss/bind/sbin/named",
    "/opt/trend/imss/bind/sbin/rndc",
    "/usr/sbin/imss-upgrade",
    "/usr/sbin/imss-rollback",
    "/bin/kill",
];

/// The highest `systemd-analyze security` exposure a unit may have.
const EXPOSURE_LIMIT: f64 = 4.0;

/// The units allowed above [`EXPOSURE_LIMIT`]: recovery, the upgrade and
/// the rollback restore or replace the program tree and move data
/// directories as root.
const ABOVE_THE_LIMIT: [&str; 3] = [
    "imss-upgrade-recover.service",
    "imss-upgrade-run.service",
    "imss-upgrade-rollback.service",
];

/// Where the host's own units are (sysinit.target, multi-user.target, …),
/// which the units order themselves against.
const HOST_UNIT_DIR: &str = "/usr/lib/systemd/system";

/// Where the package installs its units, inside a root.
const PACKAGE_UNIT_DIR: &str = "usr/lib/systemd/system";

fn unit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

/// `systemd-analyze ARGS`: exit status, stdout and stderr.
fn systemd_analyze(args: &[&str]) -> (bool, String, String) {
    let output = Cmd::new("systemd-analyze")
        .args(args)
        .run_unchecked()
        .unwrap_or_else(|err| panic!("{err}: systemd-analyze is missing: apt-get install systemd"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Copies `from` into `to` (created), symbolic links as links.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source).unwrap(), &target).unwrap();
        } else if kind.is_dir() {
            copy_tree(&source, &target);
        } else {
            std::fs::copy(&source, &target).unwrap();
        }
    }
}

/// A root as the installed package leaves it, for `verify --root`: the
/// host's units, ours beside them, and an executable at each of
/// [`PROGRAMS`].
fn installed_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let units = root.path().join(PACKAGE_UNIT_DIR);
    copy_tree(Path::new(HOST_UNIT_DIR), &units);
    for unit in UNITS {
        std::fs::copy(unit_dir().join(unit), units.join(unit)).unwrap();
    }
    for program in PROGRAMS {
        let path = root.path().join(program.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    root
}

/// The overall exposure in `systemd-analyze security`'s report.
fn overall_exposure(unit: &str, report: &str) -> f64 {
    let prefix = format!("Overall exposure level for {unit}:");
    let line = report
        .lines()
        .find_map(|line| line.split_once(&prefix).map(|(_, rest)| rest.trim()))
        .unwrap_or_else(|| panic!("{unit}: no overall exposure in the report:\n{report}"));
    let figure = line.split_whitespace().next().unwrap_or_default();
    figure
        .parse()
        .unwrap_or_else(|err| panic!("{unit}: exposure {figure:?} in {line:?}: {err}"))
}

#[test]
fn the_folder_holds_exactly_the_91_units_beside_the_catalog() {
    let found: BTreeSet<String> = std::fs::read_dir(unit_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "imss-upgrade.catalog")
        .collect();
    let expected: BTreeSet<String> = UNITS.iter().map(ToString::to_string).collect();
    assert_eq!(
        found, expected,
        "systemd/ and the units the package installs disagree"
    );
}

/// What `systemd-analyze verify --root=ROOT UNIT` objects to, if anything.
/// verify only warns about an unknown directive and exits 0: any word
/// from it counts.
fn verify_complaint(root: &Path, unit: &str) -> Option<String> {
    let root_arg = format!("--root={}", root.display());
    let (ok, stdout, stderr) = systemd_analyze(&["verify", &root_arg, unit]);
    let said = format!("{stdout}{stderr}");
    (!ok || !said.trim().is_empty()).then(|| format!("exit status ok: {ok}\n{said}"))
}

#[test]
fn each_unit_passes_systemd_analyze_verify_with_its_programs_installed() {
    let root = installed_root();
    for unit in UNITS {
        if let Some(complaint) = verify_complaint(root.path(), unit) {
            panic!("systemd-analyze verify {unit}: {complaint}");
        }
    }
}

#[test]
fn systemd_analyze_verify_fails_a_misspelt_directive_and_a_missing_program() {
    // The check above would prove nothing if verify let these through.
    let root = installed_root();
    let unit = root
        .path()
        .join(PACKAGE_UNIT_DIR)
        .join("imss-policy.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(&unit, text.replace("Group=", "Gruop=")).unwrap();
    let complaint = verify_complaint(root.path(), "imss-policy.service");
    assert!(
        complaint.as_deref().is_some_and(|c| c.contains("Gruop")),
        "a misspelt directive passed: {complaint:?}"
    );

    std::fs::write(&unit, text).unwrap();
    std::fs::remove_file(root.path().join("opt/trend/imss/bin/imssd")).unwrap();
    let complaint = verify_complaint(root.path(), "imss-policy.service");
    assert!(
        complaint
            .as_deref()
            .is_some_and(|c| c.contains("/opt/trend/imss/bin/imssd")),
        "a missing program passed: {complaint:?}"
    );
}

#[test]
fn each_unit_is_exposed_at_most_4_0_and_the_upgrades_own_say_why_they_are_more() {
    let mut above = Vec::new();
    for unit in UNITS {
        let path = unit_dir().join(unit);
        let (ok, report, stderr) = systemd_analyze(&[
            "security",
            "--offline=true",
            "--no-pager",
            &path.display().to_string(),
        ]);
        assert!(ok, "systemd-analyze security {unit}:\n{report}{stderr}");
        let exposure = overall_exposure(unit, &report);
        println!("{unit:<32} exposure {exposure:.1}");
        if exposure > EXPOSURE_LIMIT {
            above.push(format!("{unit} {exposure:.1}"));
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with("# Exposure above 4.0"),
                "{unit} ({exposure:.1}) does not say at its top why it needs more than {EXPOSURE_LIMIT}"
            );
        }
    }
    let too_exposed: Vec<&String> = above
        .iter()
        .filter(|entry| !ABOVE_THE_LIMIT.iter().any(|unit| entry.starts_with(unit)))
        .collect();
    assert!(
        too_exposed.is_empty(),
        "exposure above {EXPOSURE_LIMIT}: {too_exposed:?} (only {ABOVE_THE_LIMIT:?} may be)"
    );
}

/// The units that run an `imss-upgrade` command, which takes the upgrade's
/// lock and records who holds it with this boot's id
/// (`/proc/sys/kernel/random/boot_id`): `ProcSubset=pid` hides that file,
/// and a record without it is never believed, so that every other command
/// called the holder "a command that has not said who it is yet".
#[test]
fn the_units_that_take_the_upgrade_lock_can_read_the_boot_id() {
    let hidden: Vec<String> = UNITS
        .iter()
        .filter_map(|unit| {
            let text = std::fs::read_to_string(unit_dir().join(unit)).unwrap();
            let runs_the_helper = text
                .lines()
                .any(|line| line.starts_with("ExecStart=/usr/sbin/imss-"));
            let hides = text.lines().any(|line| line.trim() == "ProcSubset=pid");
            (runs_the_helper && hides).then(|| unit.to_string())
        })
        .collect();
    assert!(
        hidden.is_empty(),
        "these units run the helper with ProcSubset=pid, which hides the boot id: {hidden:?}"
    );
}
