//! The top-level error path of every binary: an error raised before
//! anything else (a root that does not exist) reaches the operator on
//! stderr, once, with its cause and the fix, and exits 1.

use std::process::Command;

/// Runs `program` with `args`; returns its exit code and stderr.
fn run(program: &str, args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(program)
        .args(args)
        .env_remove("IMSS_LOG")
        .output()
        .unwrap_or_else(|err| panic!("running {program}: {err}"));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_missing_root_is_reported(program: &str, args: &[&str], missing: &str) {
    let (code, stderr) = run(program, args);
    assert_eq!(code, Some(1), "{program} {args:?}: {stderr}");
    assert_eq!(
        stderr.matches(missing).count(),
        1,
        "{program} {args:?} must name {missing} exactly once on stderr:\n{stderr}"
    );
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{program} {args:?} must give the cause exactly once:\n{stderr}"
    );
    assert!(
        stderr.contains("--root"),
        "{program} {args:?}: the fix is missing:\n{stderr}"
    );
}

#[test]
fn imss_upgrade_reports_a_missing_root_for_every_command() {
    let program = env!("CARGO_BIN_EXE_imss-upgrade");
    for command in [
        &["preflight"][..],
        &["preflight", "--json"],
        &["run"],
        &["recover"],
        &["status"],
        &["compress-snapshot"],
        &["config", "export", "/tmp/imsx_config.dat"],
    ] {
        let mut args = command.to_vec();
        args.extend(["--root", "/missing"]);
        assert_missing_root_is_reported(program, &args, "/missing");
    }
}

#[test]
fn imss_rollback_reports_a_missing_root() {
    assert_missing_root_is_reported(
        env!("CARGO_BIN_EXE_imss-rollback"),
        &["--root", "/nonexistent"],
        "/nonexistent",
    );
}

#[test]
fn imss_fixture_reports_a_missing_root() {
    let program = imss_fixture::harness::fixture_exe().unwrap();
    for command in ["start", "stop"] {
        assert_missing_root_is_reported(
            &program.to_string_lossy(),
            &[command, "--root", "/nonexistent"],
            "/nonexistent",
        );
    }
}

#[test]
fn a_wrong_command_line_exits_64_and_says_why() {
    let (code, stderr) = run(env!("CARGO_BIN_EXE_imss-upgrade"), &["no-such-command"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("no-such-command"), "{stderr}");
}

#[test]
fn status_with_the_database_down_says_so_and_shows_the_rest() {
    // Built and left stopped: the files answer, the database does not.
    let server = imss_fixture::harness::FixtureServer::build(&["--history-rows", "10"]).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_imss-upgrade"))
        .arg("--root")
        .arg(server.root().dir())
        .arg("status")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(stdout.contains("IMSS 7.1 build 1808"), "{stdout}");
    assert!(
        stdout
            .contains("Pattern files and engines:\n    not read: the admin database at 127.0.0.1:")
            && stdout.contains("does not answer: start IMSS (imssctl.sh start) and ask again"),
        "{stdout}"
    );
}
