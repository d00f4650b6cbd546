//! A running server, found by the processes working in its data directory
//! (a postmaster, its backends, the single-user server of an `initdb`),
//! whoever their parent is now, and stopped by signal as `pg_ctl stop`
//! does, with no program of the installation: an undo works when the
//! programs that started the server are gone. Also the lock files a killed
//! server left.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::support::fsutil;
use crate::support::no_follow::{self, EntryKind};
use crate::support::processes;

/// How to stop a server (`pg_ctl -m`'s modes, sent as the same signals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Wait for clients to disconnect (SIGTERM).
    Smart,
    /// Disconnect clients, then a clean shutdown with a checkpoint (SIGINT).
    Fast,
    /// No checkpoint: crash recovery at the next start (SIGQUIT).
    Immediate,
}

/// How long a smart or fast shutdown may take before the server is stopped
/// harder (`pg_ctl stop`'s default wait is 60 s; a checkpoint of a big
/// cluster on a slow disk may need more).
const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long an immediate shutdown, and then SIGKILL, may take.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether process `pid` is alive and a PostgreSQL server process (its
/// program is `postgres`, whatever its title says now, and even if the
/// program file was replaced since it started).
pub(super) fn is_postgres(pid: u32) -> bool {
    processes::is_alive(pid) && processes::program_name(pid).as_deref() == Some("postgres")
}

/// Whether any process of a server (a postmaster, a backend, the
/// single-user or bootstrap server of an `initdb`) works in `data_dir`.
pub fn server_running(data_dir: &Path) -> bool {
    !processes::working_in(data_dir).is_empty()
}

/// Waits until a server that is shutting down on `data_dir` (its pid file
/// says `stopping`) is gone, so that what comes next (a start, a move)
/// does not meet it half-way: a killed run may have left one shutting down.
pub fn wait_for_shutdown(data_dir: &Path) -> Result<()> {
    let stopping = || {
        std::fs::read_to_string(data_dir.join("postmaster.pid"))
            .ok()
            .and_then(|text| {
                text.lines()
                    .nth(PID_FILE_STATUS_LINE)
                    .map(|l| l.trim() == "stopping")
            })
            .unwrap_or(false)
            && server_running(data_dir)
    };
    if !stopping() {
        return Ok(());
    }
    tracing::info!(
        "waiting for PostgreSQL on {} to finish shutting down",
        data_dir.display()
    );
    let deadline = std::time::Instant::now() + STOP_TIMEOUT;
    while stopping() {
        if std::time::Instant::now() > deadline {
            bail!(
                "PostgreSQL on {} has been shutting down for {} s: stop it (kill its processes), then run again",
                data_dir.display(),
                STOP_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Removes the cluster in `data_dir`: whatever server runs on it stopped
/// at once, then the directory. For undoing a step that created it; needs
/// no program of the installation that made it.
pub fn remove_cluster(data_dir: &Path) -> Result<()> {
    stop_server(data_dir, StopMode::Immediate)?;
    fsutil::remove_tree_if_present(data_dir)
}

/// Stops whatever server runs on `data_dir` and waits until none of its
/// processes is left; returns whether one ran. Uses signals, as `pg_ctl
/// stop` does, but needs no program of the installation, so that an undo
/// works when the programs that started the server are gone, and it stops
/// what `pg_ctl` refuses to: the single-user server of an `initdb` whose
/// parent was killed, and backends whose postmaster died. The server the
/// pid file names gets `mode`'s signal; if it is not down in time it is
/// shut down immediately, and then every process left in the data
/// directory is killed.
pub fn stop_server(data_dir: &Path, mode: StopMode) -> Result<bool> {
    if !server_running(data_dir) {
        // A killed server's lock file would keep the next start, ours or
        // the owner's own unit after a reboot, from working.
        remove_stale_pid_file(data_dir)?;
        return Ok(false);
    }
    let (first_signal, first_wait) = match (pid_file_server(data_dir), mode) {
        (
            Some(PidFileServer {
                pid,
                single_user: true,
            }),
            _,
        ) => (vec![(pid, Signal::SIGTERM)], KILL_TIMEOUT),
        (Some(PidFileServer { pid, .. }), StopMode::Smart) => {
            (vec![(pid, Signal::SIGTERM)], STOP_TIMEOUT)
        }
        (Some(PidFileServer { pid, .. }), StopMode::Fast) => {
            (vec![(pid, Signal::SIGINT)], STOP_TIMEOUT)
        }
        (Some(PidFileServer { pid, .. }), StopMode::Immediate) => {
            (vec![(pid, Signal::SIGQUIT)], KILL_TIMEOUT)
        }
        // Backends whose postmaster is gone: they are ending anyway.
        (None, _) => (signal_all(data_dir, Signal::SIGTERM), KILL_TIMEOUT),
    };
    send(&first_signal);
    if wait_for_none_in(data_dir, first_wait) {
        return Ok(true);
    }
    if let Some(PidFileServer { pid, .. }) = pid_file_server(data_dir)
        && mode != StopMode::Immediate
    {
        tracing::warn!(
            "PostgreSQL on {} did not shut down within {} s: shutting it down immediately",
            data_dir.display(),
            first_wait.as_secs()
        );
        send(&[(pid, Signal::SIGQUIT)]);
        if wait_for_none_in(data_dir, KILL_TIMEOUT) {
            return Ok(true);
        }
    }
    let killed = signal_all(data_dir, Signal::SIGKILL);
    tracing::warn!(
        "PostgreSQL on {} did not stop: its processes {killed:?} were killed",
        data_dir.display()
    );
    send(&killed);
    if wait_for_none_in(data_dir, KILL_TIMEOUT) {
        return Ok(true);
    }
    bail!(
        "the PostgreSQL processes {:?} working in {} survive SIGKILL (stuck in the kernel, on a \
         hung disk perhaps): check them with `ps -o pid,stat,wchan -p PID`, then run again",
        processes::working_in(data_dir),
        data_dir.display()
    )
}

/// Removes `postmaster.pid` from `data_dir` when no process works there:
/// what a server killed with SIGKILL (or a power loss) left. PostgreSQL
/// refuses to start while the pid in it is any live process, and after a
/// reboot that may be an unrelated program that got the same pid.
pub(super) fn remove_stale_pid_file(data_dir: &Path) -> Result<()> {
    // A link planted where a data directory goes holds no pid file of ours.
    if !no_follow::entry_at(data_dir)?.is_some_and(|entry| entry.kind == EntryKind::Directory) {
        return Ok(());
    }
    // Through a handle: a data directory in `/var/imss` may have been
    // replaced by a link to another server's.
    let dir = no_follow::open_dir(data_dir)?;
    if dir.entry("postmaster.pid")?.is_some() && !server_running(data_dir) {
        tracing::info!(
            "removing {}, left by a server that no longer runs",
            dir.join("postmaster.pid").display()
        );
        dir.remove_file("postmaster.pid")?;
    }
    Ok(())
}

/// The server `postmaster.pid` names, when that process still works in
/// the data directory (a pid file a crash left names a dead process, or
/// after a reboot someone else's).
struct PidFileServer {
    pid: u32,
    /// A single-user or bootstrap server writes its pid negated.
    single_user: bool,
}

fn pid_file_server(data_dir: &Path) -> Option<PidFileServer> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let raw: i64 = text.lines().next()?.trim().parse().ok()?;
    let pid = u32::try_from(raw.unsigned_abs()).ok()?;
    processes::working_in(data_dir)
        .contains(&pid)
        .then_some(PidFileServer {
            pid,
            single_user: raw < 0,
        })
}

/// Every process working in `data_dir`, each paired with `signal`.
fn signal_all(data_dir: &Path, signal: Signal) -> Vec<(u32, Signal)> {
    processes::working_in(data_dir)
        .into_iter()
        .map(|pid| (pid, signal))
        .collect()
}

fn send(signals: &[(u32, Signal)]) {
    for (pid, signal) in signals {
        // One that exited meanwhile is what was wanted.
        let _ = nix::sys::signal::kill(Pid::from_raw(*pid as i32), *signal);
    }
}

/// Waits until no process works in `data_dir`, at most `timeout`.
fn wait_for_none_in(data_dir: &Path, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if !server_running(data_dir) {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The line of `postmaster.pid` (from 0) with the server's status, since
/// PostgreSQL 10 (`LOCK_FILE_LINE_PM_STATUS`).
pub(super) const PID_FILE_STATUS_LINE: usize = 7;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopping_a_server_that_no_longer_runs_removes_its_stale_lock_file() {
        let data_dir = tempfile::tempdir().unwrap();
        let pid_file = data_dir.path().join("postmaster.pid");
        // Pid 1 is alive, and works in no data directory.
        std::fs::write(&pid_file, "1\n/var/imss/pgdata\n").unwrap();
        assert!(!stop_server(data_dir.path(), StopMode::Fast).unwrap());
        assert!(!pid_file.exists(), "the stale postmaster.pid is left");
    }
}
