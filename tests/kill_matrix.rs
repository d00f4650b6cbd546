//! Crash safety proven by killing: the real `imss-upgrade` and
//! `imss-rollback` binaries (built with the fail points, as `make test`
//! builds them) are stopped at a named point, or at a chosen moment, and
//! killed with SIGKILL: no `Drop` runs, nothing of theirs cleans up, as
//! after the OOM killer or a power loss. Then `imss-upgrade recover` runs
//! at once, as an administrator would run it, and the server must be
//! fully on 9.1 and taking mail, or fully on 7.1 with the program tree and
//! `pg_dumpall` equal to before, with nothing of the killed run still
//! working.
//!
//! `IMSS_KILL_SEED=N` replays the random sweep with the moments it printed.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use imss_fixture::harness::HelperProcess;
use imss_fixture::harness::site::{HELPER_TIMEOUT, Programs, Settled, Site};
use imss_upgrade::flow::journal::Step;
use imss_upgrade::support::failpoints::POINTS;
use imss_upgrade::system::procfs;

const UPGRADE: &str = env!("CARGO_BIN_EXE_imss-upgrade");
const ROLLBACK: &str = env!("CARGO_BIN_EXE_imss-rollback");

const PROGRAMS: Programs = Programs {
    upgrade: UPGRADE,
    rollback: ROLLBACK,
};

/// A started 7.1 server with `history_rows` policy events, its payload and
/// baseline.
fn site(history_rows: &str) -> Site {
    site_with(&["--history-rows", history_rows])
}

/// A site built with `extra` arguments to `imss-fixture build`.
fn site_with(extra: &[&str]) -> Site {
    if !cfg!(feature = "failpoints") {
        panic!(
            "the kill tests need the fail points: run them with `--features \
             imss-upgrade/failpoints` (make test does)"
        );
    }
    Site::build(PROGRAMS, extra)
}

fn is_undo_point(point: &str) -> bool {
    point.contains("undo") || point == "rollback-checked"
}

/// Every point of a forward run: the run is killed there, `recover`
/// settles it (rolled back before the switch is done, finished after),
/// and the server is whole on one side.
#[test]
fn recover_settles_a_run_killed_at_every_fail_point() {
    let site = site("2000");
    let switch_done_from = POINTS
        .iter()
        .position(|p| *p == "before-register-rollback")
        .unwrap();
    for (index, point) in POINTS.iter().enumerate() {
        if is_undo_point(point) {
            continue;
        }
        let case = format!("run killed at {point}");
        site.kill_at(UPGRADE, &["run"], point);
        let settled = site.recover_and_check(&case);
        let expected = if index < switch_done_from {
            Settled::On71
        } else {
            Settled::On91
        };
        assert_eq!(settled, expected, "{case}");
    }
}

/// Every point of a rollback: a completed upgrade is rolled back with
/// imss-rollback, killed there, and `recover` finishes the rollback (or,
/// killed before the rollback began, finds 9.1 running).
#[test]
fn recover_finishes_an_imss_rollback_killed_at_every_fail_point() {
    let site = site("2000");
    for point in POINTS.iter().filter(|p| is_undo_point(p)) {
        let case = format!("imss-rollback killed at {point}");
        site.complete(UPGRADE, &["run"], &case);
        site.kill_at(ROLLBACK, &[], point);
        let settled = site.recover_and_check(&case);
        let expected = if *point == "rollback-checked" {
            Settled::On91
        } else {
            Settled::On71
        };
        assert_eq!(settled, expected, "{case}");
    }
}

/// Recovery killed at its own points and run again: a run killed in the
/// migration is being rolled back by `recover` when that is killed too;
/// one killed after the switch is being finished by `recover` when that is
/// killed. The next `recover` ends each cleanly.
#[test]
fn a_recovery_killed_at_its_own_points_is_finished_by_the_next() {
    let site = site("2000");
    for (run_point, recover_point, expected) in [
        (
            "migrate-window-copied",
            "before-undo-snapshot",
            Settled::On71,
        ),
        ("switch-swapped", "undo-switch-91-stopped", Settled::On71),
        (
            "before-register-rollback",
            "after-register-rollback",
            Settled::On91,
        ),
        ("before-quiesce", "before-undo-presync", Settled::On71),
    ] {
        let case = format!("run killed at {run_point}, recover killed at {recover_point}");
        site.kill_at(UPGRADE, &["run"], run_point);
        site.kill_at(UPGRADE, &["recover"], recover_point);
        assert_eq!(site.recover_and_check(&case), expected, "{case}");
    }
}

/// Waits until `found` holds (polling every 5 ms), at most `timeout`.
fn wait_for(timeout: Duration, mut found: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if found() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Kills `imss-upgrade run` as soon as `moment` holds, then recovers at
/// once.
fn kill_when(site: &Site, case: &str, moment: impl FnMut() -> bool) -> Settled {
    let helper = site.start(UPGRADE, &["run"], None);
    let reached = wait_for(HELPER_TIMEOUT, moment);
    let ended = helper.kill9().unwrap();
    assert!(
        reached,
        "{case}: the moment never came; the run wrote:\n{}",
        ended.output
    );
    site.recover_and_check(case)
}

/// Item 1 of the issue: killed while the presync's `initdb` runs, the
/// helper left `initdb` and its single-user server working, and `recover`
/// failed on `pg_ctl: cannot stop server; single-user server is running`.
#[test]
fn a_run_killed_during_initdb_is_rolled_back_with_nothing_left_running() {
    let site = site("20000");
    let staged = site.server.root_dir().join("var/imss/pgdata-91.staged");
    let root_text = site.server.root_dir().to_string_lossy().into_owned();
    for attempt in 0..2 {
        let settled = kill_when(&site, &format!("killed in initdb, try {attempt}"), || {
            !procfs::working_in(&staged).is_empty()
                || procfs::processes()
                    .iter()
                    .any(|p| p.cmdline.contains("initdb") && p.cmdline.contains(&root_text))
        });
        assert_eq!(settled, Settled::On71);
    }
}

/// Item 1 of the issue: killed while the 7.1 cluster in the backup serves
/// the migration, `recover` failed on `pg_ctl: server does not shut down`
/// with 7.1 stopped, so mail stayed down.
#[test]
fn a_run_killed_while_the_backup_cluster_serves_the_migration_is_rolled_back() {
    let site = site("20000");
    let moved = site.backup().join("pgdata-71");
    let settled = kill_when(&site, "killed in the migration", || {
        !procfs::working_in(&moved).is_empty()
    });
    assert_eq!(settled, Settled::On71);
}

/// Kills at random moments of a run, not at fail points: each moment is
/// printed, and `IMSS_KILL_SEED` replays a sweep.
#[test]
fn recover_settles_runs_killed_at_random_moments() {
    use rand::{Rng, SeedableRng};
    const KILLS: usize = 10;
    let site = site("2000");
    let began = Instant::now();
    site.complete(UPGRADE, &["run"], "the measured run");
    let run_time = began.elapsed();
    site.complete(ROLLBACK, &[], "the measured run's rollback");
    site.check_on_71("the measured run");
    let seed = std::env::var("IMSS_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let moments: Vec<Duration> = (0..KILLS)
        .map(|_| run_time.mul_f64(rng.random_range(0.0..1.0)))
        .collect();
    println!(
        "kill sweep: IMSS_KILL_SEED={seed}, a run takes {:.2} s, kills at {:?}",
        run_time.as_secs_f64(),
        moments
    );
    let mut sides = Vec::new();
    for moment in &moments {
        let case = format!(
            "run killed {:.3} s in (IMSS_KILL_SEED={seed})",
            moment.as_secs_f64()
        );
        let helper = site.start(UPGRADE, &["run"], None);
        std::thread::sleep(*moment);
        match helper.kill9_whatever_its_state().unwrap() {
            Ok(_) => sides.push(site.recover_and_check(&case)),
            // Faster than the measured run: it finished, and is rolled
            // back for the next kill; not counted as one.
            Err(ended) => {
                println!("kill sweep: {case}: the run had ended ({})", ended.status);
                site.complete(UPGRADE, &["recover"], &format!("recover after {case}"));
                if site.check_settled(&case) == Settled::On91 {
                    site.complete(ROLLBACK, &[], &format!("imss-rollback after {case}"));
                }
            }
        }
    }
    println!(
        "kill sweep: {} kills landed, settled on {sides:?}",
        sides.len()
    );
    assert!(
        sides.len() * 2 >= KILLS,
        "only {} of {KILLS} kills came while the run was alive (IMSS_KILL_SEED={seed})",
        sides.len()
    );
}

/// The README's table of fail points is every fail point in the source:
/// the named ones (`fail_point!("name")`) and the steps' boundaries
/// (`before-{step}`, `after-{step}`, `before-undo-{step}`,
/// `after-undo-{step}`), read from the source text itself, not from a list
/// kept beside this test. This test's own list, which the kill matrix
/// walks, must be among them, and every other point must be named by a
/// test.
#[test]
fn the_readme_lists_every_fail_point_in_the_source() {
    let top = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{top}/README.md")).unwrap();
    let table = readme
        .split("| point | where |")
        .nth(1)
        .expect("the README has the table of fail points");
    let listed: std::collections::BTreeSet<String> = table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .flat_map(|line| {
            let first_cell = line.split('|').nth(1).unwrap_or_default();
            first_cell
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();

    let mut in_source = std::collections::BTreeSet::new();
    let mut boundaries = Vec::new();
    // Every Rust file below `dir`, by `find`: its path and its text.
    let rust_files = |dir: &str| -> Vec<(String, String)> {
        let found = std::process::Command::new("find")
            .args([&format!("{top}/{dir}"), "-name", "*.rs"])
            .output()
            .unwrap();
        String::from_utf8(found.stdout)
            .unwrap()
            .lines()
            .map(|file| (file.to_string(), std::fs::read_to_string(file).unwrap()))
            .collect()
    };
    for (_, text) in rust_files("src") {
        for call in text.split("fail_point!(").skip(1) {
            let argument = call.trim_start();
            if let Some(quoted) = argument.strip_prefix('"') {
                in_source.insert(quoted.split('"').next().unwrap().to_string());
            } else if let Some(pattern) = argument.strip_prefix("&format!(\"") {
                boundaries.push(pattern.split('"').next().unwrap().to_string());
            }
        }
    }
    boundaries.sort();
    assert_eq!(
        boundaries,
        [
            "after-undo-{step}",
            "after-{step}",
            "before-undo-{step}",
            "before-{step}"
        ],
        "the source has other formatted fail points: teach this test their names"
    );
    for step in Step::ALL {
        for pattern in &boundaries {
            in_source.insert(pattern.replace("{step}", &step.to_string()));
        }
    }
    let missing: Vec<_> = in_source.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&in_source).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "the README's table of fail points misses {missing:?} and names {stale:?}, which the source lacks"
    );
    let unknown: Vec<_> = POINTS.iter().filter(|p| !in_source.contains(**p)).collect();
    assert!(
        unknown.is_empty(),
        "the kill matrix names points the source lacks: {unknown:?}"
    );
    assert!(in_source.len() >= 25, "{} fail points", in_source.len());

    // Every point is used: walked by this matrix, or named by a test.
    let test_text: String = rust_files("tests")
        .into_iter()
        .filter(|(file, _)| !file.ends_with("/kill_matrix.rs"))
        .map(|(_, text)| text)
        .collect();
    let unused: Vec<_> = in_source
        .iter()
        .filter(|point| {
            !POINTS.contains(&point.as_str()) && !test_text.contains(&format!("\"{point}"))
        })
        .collect();
    assert!(unused.is_empty(), "no test uses the fail points {unused:?}");
}

/// Item 9 of the issue: with no lock, `recover`, `imss-rollback` or a
/// second `run` could start while a run was live and undo under it. Each
/// is refused, naming the live run's pid and command; once it is killed,
/// `recover` settles it.
#[test]
fn a_second_command_is_refused_while_a_run_works_and_names_it() {
    let site = site("500");
    let mut live = site.start(UPGRADE, &["run"], Some("before-migrate"));
    live.wait_stopped(HELPER_TIMEOUT).unwrap();
    let holder = format!("pid {}", live.pid());
    for (exe, command) in [
        (UPGRADE, &["recover"][..]),
        (ROLLBACK, &[][..]),
        (UPGRADE, &["run"][..]),
    ] {
        let ended = site.start(exe, command, None).wait(HELPER_TIMEOUT).unwrap();
        assert!(
            !ended.status.success(),
            "{exe} {command:?} ran beside a live run:\n{}",
            ended.output
        );
        assert!(
            ended.output.contains(&holder) && ended.output.contains("imss-upgrade run"),
            "{exe} {command:?} does not name the live run ({holder}):\n{}",
            ended.output
        );
    }
    live.kill9().unwrap();
    assert_eq!(
        site.recover_and_check("the live run, killed"),
        Settled::On71
    );
}

/// Item 5 of the issue: after a power loss past the switch nothing started
/// 9.1 again, so `recover`'s health checks failed and it rolled the
/// upgrade back, throwing away the mail 9.1 had accepted. It must start
/// what the journal says runs, then check it.
#[test]
fn after_a_power_loss_past_the_switch_recover_starts_91_and_keeps_its_mail() {
    let site = site("500");
    site.kill_at(UPGRADE, &["run"], "before-register-rollback");
    assert!(site.server.kill_everything().unwrap() > 0);
    let ended = site.complete(UPGRADE, &["recover"], "recover after the power loss");
    assert!(
        ended.output.contains("finished: 9.1 runs"),
        "recover did not finish the upgrade:\n{}",
        ended.output
    );
    assert_eq!(
        site.check_settled("power loss past the switch"),
        Settled::On91
    );
    // The mail of the switch's health check, accepted by 9.1 before the
    // power went, is still in PostgreSQL 15.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kept: i64 = runtime.block_on(async {
        let settings =
            imss_upgrade::files::odbc_ini::DbSettings::load(&site.server.root()).unwrap();
        imss_upgrade::system::pg::connect(&settings)
            .await
            .unwrap()
            .query_one(
                "SELECT count(*) FROM policy_event WHERE message_id LIKE '<imss-upgrade-switch-%'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(
        kept, 1,
        "the mail 9.1 accepted before the power loss is gone"
    );
    site.check_91_as_uninterrupted_then_roll_back("power loss past the switch");
}

/// Item 8 of the issue: across file systems the copy of the 7.1 data
/// directory was not synced before the original was deleted, so a power
/// loss could leave empty files in the only copy. Traced with strace: the
/// copy's file system is synced after `cp` ends and before the copy takes
/// its name (and so before the original goes).
#[test]
fn across_file_systems_the_copy_is_synced_before_it_replaces_the_original() {
    let site = site("500");
    let _tmpfs = imss_fixture::harness::TmpfsMount::mount(&site.backup(), "1g").unwrap();
    let trace_dir = tempfile::tempdir().unwrap();
    let trace = trace_dir.path().join("trace");
    // -I1: strace takes SIGTERM, detaching, rather than blocking it;
    // -s4096: paths whole.
    let mut args: Vec<OsString> = vec![
        "-I1".into(),
        "-s4096".into(),
        "-f".into(),
        "-o".into(),
        trace.clone().into(),
        "-e".into(),
        "trace=execve,syncfs,fsync,rename,renameat,renameat2".into(),
        "--".into(),
        UPGRADE.into(),
    ];
    args.extend(site.args(&["run"]));
    let mut traced = HelperProcess::start(Path::new("strace"), &args, None, None)
        .expect("strace runs the upgrade (apt-get install strace)");
    // strace follows the services the run starts, which stay: it is
    // stopped (and detaches) once the run's report is out.
    traced
        .wait_for_output("Rollback: imss-rollback", HELPER_TIMEOUT)
        .unwrap();
    traced.terminate().unwrap();
    let lines: Vec<String> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let pid_of = |line: &str| line.split_whitespace().next().unwrap_or("").to_string();
    let copy = lines
        .iter()
        .find(|l| l.contains("execve(\"") && l.contains("cp\"") && l.contains("pgdata-71.partial"))
        .expect("the data directory was copied with cp");
    let cp_pid = pid_of(copy);
    let copied = lines
        .iter()
        .position(|l| pid_of(l) == cp_pid && l.contains("+++ exited with 0 +++"))
        .expect("cp ended");
    let named = lines
        .iter()
        .position(|l| l.contains("rename") && l.contains("pgdata-71.partial\", "))
        .expect("the copy was renamed into place");
    assert!(copied < named, "the copy took its name before cp ended");
    assert!(
        lines[copied..named].iter().any(|l| l.contains("syncfs(")),
        "nothing synced the copy between the end of cp and its rename:\n{}",
        lines[copied..=named].join("\n")
    );
    site.complete(ROLLBACK, &[], "imss-rollback after the traced run");
    site.check_on_71("the traced run, rolled back");
}

/// Item 2 of the issue: no undo may need what its step needed to go
/// forward. A run killed in the migration (the staged cluster moved into
/// place, the 7.1 cluster running from the backup) is rolled back by a
/// `recover` that has neither the payload nor PostgreSQL 15.
#[test]
fn a_rollback_needs_neither_the_payload_nor_postgresql_15() {
    let site = site("500");
    site.kill_at(UPGRADE, &["run"], "migrate-window-copied");
    let payload = site.payload.dir();
    let aside = payload.with_file_name("payload-gone");
    std::fs::rename(&payload, &aside).unwrap();
    let args: Vec<OsString> = vec![
        "recover".into(),
        "--root".into(),
        site.server.root_dir().into(),
        "--payload".into(),
        payload.clone().into(),
    ];
    let ended = HelperProcess::start(Path::new(UPGRADE), &args, None, None)
        .unwrap()
        .wait(HELPER_TIMEOUT)
        .unwrap();
    std::fs::rename(&aside, &payload).unwrap();
    assert!(
        ended.status.success(),
        "recover without the payload failed:\n{}",
        ended.output
    );
    site.check_on_71("recover without the payload");
}

/// Reads every process's command line and environment, over and over,
/// until told to stop; gives back each one that held any of `needles`.
struct ProcessSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl ProcessSampler {
    fn start(needles: Vec<Vec<u8>>) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut rounds = 0;
            let mut found = Vec::new();
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                rounds += 1;
                for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                    for file in ["cmdline", "environ"] {
                        let Ok(bytes) = std::fs::read(entry.path().join(file)) else {
                            continue;
                        };
                        if needles.iter().any(|n| contains(&bytes, n)) {
                            found.push(format!(
                                "{}/{file}: {}",
                                entry.path().display(),
                                String::from_utf8_lossy(&bytes).replace('\0', " ")
                            ));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (rounds, found)
        });
        Self { stop, thread }
    }

    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Files under `dir` (links not followed) holding any of `needles`, but
/// the ones `allowed` says may.
fn files_holding(dir: &Path, needles: &[Vec<u8>], allowed: &dyn Fn(&Path) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|e| e.path()));
            }
        } else if meta.is_file()
            && meta.len() < 64 << 20
            && !allowed(&path)
            && let Ok(bytes) = std::fs::read(&path)
            && needles.iter().any(|n| contains(&bytes, n))
        {
            found.push(path.display().to_string());
        }
    }
    found
}

/// Build item 5 of the issue: the database password, one no file or
/// program holds by chance, never appears in a process's command line or
/// environment (sampled from /proc while the helpers run), in what the
/// helpers print (reports, step lines, errors), in the install log or the
/// preflight report, or in a file left anywhere under the root or in /tmp,
/// through a run killed in initdb and recovered, a run that fails and
/// rolls back, a completed run, and imss-rollback. The only files that
/// hold it are `odbc.ini` (encoded, as psqlODBC reads it) and the
/// snapshot's archive of the 7.1 tree that holds that file.
#[test]
fn the_password_never_leaves_odbc_ini() {
    const PASSWORD: &str = "Zq7!unlikely-secret-4711";
    let site = site_with(&["--history-rows", "2000", "--password", PASSWORD]);
    let encoded = imss_upgrade::files::odbc_password::DsnPassword::encode(
        &imss_upgrade::support::secret::Secret::new(PASSWORD),
    );
    let needles: Vec<Vec<u8>> = vec![
        PASSWORD.as_bytes().to_vec(),
        encoded.written().expose().to_vec(),
    ];
    let began = std::time::SystemTime::now();
    let sampler = ProcessSampler::start(needles.clone());
    let mut printed = Vec::new();

    // Killed while initdb has the password, then recovered.
    let root_text = site.server.root_dir().to_string_lossy().into_owned();
    let helper = site.start(UPGRADE, &["run"], None);
    let reached = wait_for(HELPER_TIMEOUT, || {
        procfs::processes()
            .iter()
            .any(|p| p.cmdline.contains("initdb") && p.cmdline.contains(&root_text))
    });
    printed.push(helper.kill9().unwrap().output);
    assert!(reached, "initdb never ran");
    printed.push(site.complete(UPGRADE, &["recover"], "recover").output);
    // A run that fails and rolls back: its error is printed.
    let failed = HelperProcess::start(
        Path::new(UPGRADE),
        &site.args(&["run"]),
        None,
        Some("migrate-window-copied=return"),
    )
    .unwrap()
    .wait(HELPER_TIMEOUT)
    .unwrap();
    assert!(!failed.status.success(), "{}", failed.output);
    printed.push(failed.output);
    // A completed run, and imss-rollback.
    printed.push(site.complete(UPGRADE, &["run"], "the run").output);
    printed.push(site.complete(ROLLBACK, &[], "imss-rollback").output);
    let (rounds, in_processes) = sampler.finish();
    site.check_on_71("the password test");

    assert!(
        rounds > 10,
        "the processes were sampled {rounds} times only"
    );
    assert!(
        in_processes.is_empty(),
        "the password is in a process's argv or environment:\n{}",
        in_processes.join("\n")
    );
    for output in &printed {
        assert!(
            !needles.iter().any(|n| contains(output.as_bytes(), n)),
            "a helper printed the password:\n{output}"
        );
    }
    let in_root = files_holding(&site.server.root_dir(), &needles, &|path| {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        name == "odbc.ini" || name == "snapshot.tar"
    });
    assert!(
        in_root.is_empty(),
        "files under the root hold the password: {in_root:?}"
    );
    let in_tmp = files_holding(Path::new("/tmp"), &needles, &|path| {
        path.starts_with(site.server.root_dir())
            || std::fs::metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified < began)
    });
    assert!(
        in_tmp.is_empty(),
        "files in /tmp hold the password: {in_tmp:?}"
    );
}

/// One `Name:\tvalue` line of `/proc/PID/status`.
fn status_field(pid: u32, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")).map(str::trim))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .to_string()
}

/// Build item 6 of the issue: the running helper holds only the
/// capabilities its work needs (read from its /proc/PID/status while it
/// stands in the migration), nothing inheritable, and every process of
/// both database servers runs as the service account, not root.
#[test]
fn the_helper_keeps_only_the_capabilities_it_needs_and_the_servers_run_as_imss() {
    use imss_upgrade::support::privileges::{Work, mask};
    let site = site("500");
    let mut helper = site.start(UPGRADE, &["run"], Some("migrate-config-imported"));
    helper.wait_stopped(HELPER_TIMEOUT).unwrap();
    let pid = helper.pid();
    let capabilities = |name: &str| u64::from_str_radix(&status_field(pid, name), 16).unwrap();
    let expected = mask(Work::ChangesTheServer);
    let (effective, permitted, inheritable, bounding) = (
        capabilities("CapEff"),
        capabilities("CapPrm"),
        capabilities("CapInh"),
        capabilities("CapBnd"),
    );
    let imss =
        imss_upgrade::support::account::ServiceUser::lookup(&site.server.root(), "imss").unwrap();
    let mut servers = Vec::new();
    for dir in [
        site.server.root_dir().join("var/imss/pgdata"),
        site.backup().join("pgdata-71"),
    ] {
        servers.extend(procfs::working_in(&dir));
    }
    let owners: Vec<String> = servers
        .iter()
        .map(|pid| status_field(*pid, "Uid"))
        .collect();
    helper.kill9().unwrap();
    site.recover_and_check("the helper whose capabilities were read");
    assert_eq!(
        effective, expected,
        "effective: {effective:x}, expected {expected:x}"
    );
    assert_eq!(permitted, expected, "permitted: {permitted:x}");
    assert_eq!(inheritable, 0, "inheritable: {inheritable:x}");
    assert_ne!(
        bounding & (1 << 10),
        0,
        "the bounding set keeps what the services it starts bind with"
    );
    assert!(servers.len() >= 2, "both servers run: {servers:?}");
    for uid_line in owners {
        let real = uid_line.split_whitespace().next().unwrap();
        assert_eq!(
            real,
            imss.uid.to_string(),
            "a server process runs as {uid_line}"
        );
    }
}

/// Found by the random sweep: a run killed while its quiesce had PostgreSQL
/// 10 shutting down. `recover` started 7.1 again, found the server still
/// running (it was only stopping), and then 7.1's database went down under
/// it. `recover` waits for a shutdown under way before it undoes anything.
/// The shutdown is held for two seconds (its postmaster stopped with
/// SIGSTOP, as a slow disk would hold it) so that `recover` meets it.
#[test]
fn a_run_killed_while_71_shuts_down_is_rolled_back_with_71_serving() {
    let site = site("2000");
    let pid_file = site
        .server
        .root_dir()
        .join("var/imss/pgdata/postmaster.pid");
    let stopping = || {
        std::fs::read_to_string(&pid_file).ok().and_then(|text| {
            let lines: Vec<&str> = text.lines().collect();
            (lines.get(7).map(|l| l.trim()) == Some("stopping"))
                .then(|| lines[0].trim().parse::<i32>().ok())
                .flatten()
        })
    };
    let helper = site.start(UPGRADE, &["run"], None);
    let mut postmaster = None;
    let reached = wait_for(HELPER_TIMEOUT, || {
        postmaster = stopping();
        postmaster.is_some()
    });
    let postmaster = nix::unistd::Pid::from_raw(postmaster.unwrap_or(0));
    if reached {
        nix::sys::signal::kill(postmaster, nix::sys::signal::Signal::SIGSTOP).unwrap();
    }
    let ended = helper.kill9().unwrap();
    assert!(
        reached,
        "7.1 never shut down; the run wrote:\n{}",
        ended.output
    );
    let resume = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        nix::sys::signal::kill(postmaster, nix::sys::signal::Signal::SIGCONT).unwrap();
    });
    let settled = site.recover_and_check("killed while 7.1 shuts down");
    resume.join().unwrap();
    assert_eq!(settled, Settled::On71);
}
