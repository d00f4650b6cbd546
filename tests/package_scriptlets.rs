//! `imss-upgrade package`, what the packages' scriptlets run, on a model
//! 7.1 server under a root directory, where no systemd manages it: the
//! work runs in the scriptlet itself. Each scriptlet is called as rpm
//! calls it, with its `$1`, and its exit code is what rpm would act on.

use imss_fixture::harness::{FixtureServer, Payload};
use imss_upgrade::files::imss_ini::ProductInfo;
use imss_upgrade::flow::journal::{RunState, StepJournal};
use imss_upgrade::flow::layout::{STATE_DIR, STEP_JOURNAL_FILE};
use imss_upgrade::support::cmd::Cmd;

/// `imss-upgrade package SCRIPTLET RPM_ARG` on `server`: exit code and
/// stdout with stderr after it.
fn scriptlet(
    server: &FixtureServer,
    payload: &Payload,
    target_pg_bin: &std::path::Path,
    name: &str,
    rpm_arg: &str,
) -> (Option<i32>, String) {
    let output = Cmd::new(env!("CARGO_BIN_EXE_imss-upgrade"))
        .args(["package", name, rpm_arg, "--root"])
        .arg(server.root().dir())
        .arg("--payload")
        .arg(payload.dir())
        .arg("--target-pg-bin")
        .arg(target_pg_bin)
        .run_unchecked()
        .unwrap();
    (
        output.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn state(server: &FixtureServer) -> Option<RunState> {
    StepJournal::load(&server.root().resolve(STATE_DIR).unwrap())
        .unwrap()
        .map(|journal| journal.state)
}

#[tokio::test(flavor = "multi_thread")]
async fn install_reinstall_and_erase_as_rpm_calls_the_scriptlets() {
    let server =
        FixtureServer::build(&["--history-rows", "2000", "--tree-mb", "1", "--days", "3"]).unwrap();
    server.start().unwrap();
    let payload = Payload::build().unwrap();
    let target_pg_bin = payload.context(&server).unwrap().target_pg_bin.clone();
    let tree_before = server.tree_state("/opt/trend/imss").unwrap();
    let dump_before = server.dump_all().unwrap();
    let run = |name: &str, arg: &str| scriptlet(&server, &payload, &target_pg_bin, name, arg);

    // Nothing to roll back yet, and nothing holds the helpers.
    let (code, output) = run("pre-uninstall", "0");
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("nothing to roll back"), "{output}");
    let (code, output) = run("helpers-pre-uninstall", "0");
    assert_eq!(code, Some(0), "{output}");

    // %pre on install: the upgrade, here in the scriptlet.
    let (code, output) = run("pre-install", "1");
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("IMSS upgraded from 7.1 to 9.1"), "{output}");
    assert!(output.contains("no systemd here"), "{output}");
    assert_eq!(state(&server), Some(RunState::Completed));
    assert_eq!(ProductInfo::load(&server.root()).unwrap().version, "9.1");
    let upgraded_at = StepJournal::load(&server.root().resolve(STATE_DIR).unwrap())
        .unwrap()
        .unwrap()
        .started_at;

    // A reinstall, a newer release, or an install after a power loss that
    // came after the upgrade: nothing runs again.
    for (name, arg) in [
        ("pre-install", "2"),
        ("pre-install", "1"),
        ("pre-uninstall", "1"),
    ] {
        let (code, output) = run(name, arg);
        assert_eq!(code, Some(0), "{name} {arg}: {output}");
        let journal = StepJournal::load(&server.root().resolve(STATE_DIR).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(journal.state, RunState::Completed, "{name} {arg}");
        assert_eq!(
            journal.started_at, upgraded_at,
            "{name} {arg} ran the upgrade again"
        );
    }

    // The helpers stay while a rollback is possible.
    let (code, output) = run("helpers-pre-uninstall", "0");
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("can still be rolled back"), "{output}");

    // %preun on erase: the rollback.
    let (code, output) = run("pre-uninstall", "0");
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("IMSS 7.1 runs"), "{output}");
    assert_eq!(state(&server), Some(RunState::RolledBack));
    assert!(server.tree_state("/opt/trend/imss").unwrap() == tree_before);
    assert!(server.dump_all().unwrap() == dump_before);
    let (code, output) = run("helpers-pre-uninstall", "0");
    assert_eq!(code, Some(0), "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inhibited_install_fails_the_scriptlet_with_the_report() {
    let server =
        FixtureServer::build(&["--history-rows", "200", "--tree-mb", "1", "--build", "1720"])
            .unwrap();
    server.start().unwrap();
    let payload = Payload::build().unwrap();
    let target_pg_bin = payload.context(&server).unwrap().target_pg_bin.clone();

    let (code, output) = scriptlet(&server, &payload, &target_pg_bin, "pre-install", "1");
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("1808"), "{output}");
    assert!(
        output.contains("IMSS stays on 7.1 (upgrade: not started)"),
        "{output}"
    );
    assert_eq!(state(&server), None);
}

/// A step journal that cannot be read (here not JSON) does not stop the
/// scriptlets whose decision never reads it: `%pre 2` (an upgrade of the
/// package), `%preun 1` (the old package erased in that upgrade) and the
/// helpers' `%preun 1` succeed and do nothing, so that `dnf upgrade`
/// leaves one version in the rpm database. `%pre 1`, which decides from
/// the journal, fails with the journal's error, naming the file.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_journal_fails_only_the_scriptlets_that_decide_from_it() {
    let server =
        FixtureServer::build(&["--history-rows", "200", "--tree-mb", "0", "--days", "2"]).unwrap();
    let payload = Payload::build().unwrap();
    let target_pg_bin = payload.context(&server).unwrap().target_pg_bin.clone();
    let state = server.root().resolve(STATE_DIR).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let journal = state.join(STEP_JOURNAL_FILE);
    std::fs::write(&journal, "{\"format\": 1, \"state\": ").unwrap();
    let run = |name: &str, arg: &str| scriptlet(&server, &payload, &target_pg_bin, name, arg);

    for (name, arg) in [
        ("pre-install", "2"),
        ("pre-uninstall", "1"),
        ("helpers-pre-uninstall", "1"),
    ] {
        let (code, output) = run(name, arg);
        assert_eq!(code, Some(0), "{name} {arg}: {output}");
        assert!(
            output.contains("being upgraded or reinstalled")
                || output.contains("being reinstalled or upgraded"),
            "{name} {arg}: {output}"
        );
    }

    let (code, output) = run("pre-install", "1");
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains(&format!(
            "{} is not a readable upgrade journal",
            journal.display()
        )),
        "{output}"
    );
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap(),
        "{\"format\": 1, \"state\": "
    );
}
