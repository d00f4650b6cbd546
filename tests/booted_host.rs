//! The booted test host's own tests: it boots with systemd as PID 1, runs
//! commands inside, writes only to its upper layer, has a network of its
//! own, dies whole in a power loss, boots again on what it wrote, and
//! leaves no mount, process or cgroup behind: when dropped, when its test
//! panics, and when its test process is killed before it could drop it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use imss_fixture::hosts::booted_host::{self, BootedHost, HOSTS_DIR};
use imss_upgrade::support::processes::is_alive;

/// One host at a time: every boot sweeps up hosts whose owner is gone,
/// which would race the test that checks the sweep.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a host leaves behind once torn down: nothing of these may remain.
struct Traces {
    dir: PathBuf,
    cgroups: Vec<PathBuf>,
    leader: u32,
}

impl Traces {
    fn of(host: &BootedHost) -> Self {
        Self {
            dir: Path::new(HOSTS_DIR).join(host.name()),
            cgroups: host.cgroups(),
            leader: host.leader().expect("the host is up"),
        }
    }

    fn assert_gone(&self) {
        assert!(
            booted_host::mounts_under(&self.dir).is_empty(),
            "mounts left: {:?}",
            booted_host::mounts_under(&self.dir)
        );
        assert!(!self.dir.exists(), "{} is left", self.dir.display());
        assert!(
            !is_alive(self.leader),
            "the host's systemd {} lives on",
            self.leader
        );
        for cgroup in &self.cgroups {
            assert!(!cgroup.exists(), "the cgroup {} is left", cgroup.display());
        }
    }
}

#[test]
fn a_host_boots_runs_commands_inside_and_leaves_nothing_behind() {
    let _serial = one_at_a_time();
    // A directory under /tmp, which the host's own /tmp would hide.
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("marker"), "from outside\n").unwrap();
    let host = BootedHost::boot("bh-basic", &[shared.path().to_path_buf()]).unwrap();
    let traces = Traces::of(&host);

    assert_eq!(
        host.run(&["systemctl", "is-system-running"])
            .unwrap()
            .trim(),
        "running"
    );
    assert_eq!(
        host.run(&["cat", "/proc/1/comm"]).unwrap().trim(),
        "systemd"
    );
    assert_eq!(
        host.run(&["systemctl", "is-active", "systemd-journald"])
            .unwrap()
            .trim(),
        "active"
    );
    let marker = shared.path().join("marker");
    assert_eq!(
        host.run(&[Path::new("cat"), &marker]).unwrap(),
        "from outside\n"
    );
    assert!(
        host.command(&["touch", &marker.to_string_lossy()])
            .unwrap()
            .run()
            .is_err(),
        "a bound directory is read-only inside"
    );

    // What the host writes stays in its upper layer.
    let probe = "/etc/imss-booted-host-probe";
    host.run(&["sh", "-c", &format!("echo inside > {probe}")])
        .unwrap();
    assert!(
        !Path::new(probe).exists(),
        "the host wrote through to this machine"
    );
    assert_eq!(
        std::fs::read_to_string(host.root().join(&probe[1..])).unwrap(),
        "inside\n"
    );
    assert!(host.upper_layer().join(&probe[1..]).exists());

    // A network of its own: loopback only.
    let links = host.run(&["ip", "-o", "link", "show"]).unwrap();
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(names, ["lo:"], "{links}");

    // Its own cgroup holds its systemd.
    assert!(booted_host::processes_in(&host.cgroups()).contains(&traces.leader));

    drop(host);
    traces.assert_gone();
}

#[test]
fn a_power_loss_kills_every_process_and_the_host_boots_again_on_what_it_wrote() {
    let _serial = one_at_a_time();
    let mut host = BootedHost::boot("bh-power", &[]).unwrap();
    host.run(&["sh", "-c", "echo kept > /var/lib/imss-probe && sync"])
        .unwrap();
    host.run(&["systemd-run", "--unit=imss-sleeper", "sleep", "infinity"])
        .unwrap();
    let first_boot = host
        .run(&["cat", "/proc/sys/kernel/random/boot_id"])
        .unwrap();
    let before = booted_host::processes_in(&host.cgroups());
    let leader = host.leader().unwrap();
    assert!(
        before.len() > 3,
        "a booted host runs more than its systemd: {before:?}"
    );

    host.power_loss().unwrap();
    assert!(!is_alive(leader));
    for pid in &before {
        assert!(!is_alive(*pid), "process {pid} outlived the power loss");
    }
    assert!(booted_host::processes_in(&host.cgroups()).is_empty());
    assert!(
        host.run(&["true"]).is_err(),
        "a host that is down runs nothing"
    );

    host.boot_again().unwrap();
    assert_eq!(host.boots(), 2);
    assert_eq!(host.run(&["cat", "/var/lib/imss-probe"]).unwrap(), "kept\n");
    let second_boot = host
        .run(&["cat", "/proc/sys/kernel/random/boot_id"])
        .unwrap();
    assert_ne!(
        first_boot, second_boot,
        "a boot after a power loss is a new boot"
    );
    let sleeper = host
        .command(&["systemctl", "is-active", "imss-sleeper"])
        .unwrap()
        .run_unchecked()
        .unwrap();
    assert_ne!(
        String::from_utf8_lossy(&sleeper.stdout).trim(),
        "active",
        "a transient unit does not survive a power loss"
    );
    let traces = Traces::of(&host);
    drop(host);
    traces.assert_gone();
}

#[test]
fn a_failing_test_tears_its_host_down_as_it_unwinds() {
    let _serial = one_at_a_time();
    let mut traces = None;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let host = BootedHost::boot("bh-panic", &[]).unwrap();
        traces = Some(Traces::of(&host));
        panic!("the test failed with its host up");
    }));
    assert!(outcome.is_err());
    traces.expect("the host booted").assert_gone();
}

#[test]
fn a_host_left_by_a_killed_test_process_is_torn_down_by_the_next_boot() {
    let _serial = one_at_a_time();
    let fixture = imss_fixture::harness::fixture_exe().unwrap();
    let mut owner = Command::new(fixture)
        .args(["boot-host", "--name", "bh-orphan"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Kept open: a closed pipe would end boot-host, and its host with it.
    let mut output = BufReader::new(owner.stdout.take().unwrap());
    let mut first = String::new();
    output.read_line(&mut first).unwrap();
    let words: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"up"), "boot-host printed {first:?}");
    let leader: u32 = words[2].parse().unwrap();
    let dir = Path::new(HOSTS_DIR).join("bh-orphan");

    owner.kill().unwrap();
    owner.wait().unwrap();
    assert!(
        is_alive(leader),
        "the orphaned host is still up before the sweep"
    );
    assert!(!booted_host::mounts_under(&dir).is_empty());

    booted_host::sweep_stale().unwrap();
    drop(output);
    assert!(
        !is_alive(leader),
        "the sweep left the orphan's systemd running"
    );
    assert!(booted_host::mounts_under(&dir).is_empty());
    assert!(!dir.exists());
}
