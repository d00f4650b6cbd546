//! The processes of this machine, from `/proc` (always the host's: a root
//! directory has no processes of its own): whether one is alive, when it
//! started, its process group, its command line, its program and its
//! working directory. The one reader of `/proc`: the command runner stops
//! by it what a killed helper left running, the system layer finds servers
//! by it.

use std::path::Path;

/// One process, as far as the upgrade looks at processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// Scheduler state letter (`R`, `S`, `D`, `Z`, …).
    pub state: char,
    /// The command line, arguments joined by spaces.
    pub cmdline: String,
}

/// What `/proc/PID/stat` says of a process, as far as the upgrade asks.
struct Stat {
    /// Scheduler state letter.
    state: char,
    /// Process group (field 5).
    group: u32,
    /// When it started, in clock ticks since boot (field 22).
    start_time: u64,
}

impl Stat {
    fn read(pid: u32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) S …": the command name may hold anything, blanks and
        // parentheses included; the fields follow the last ')'.
        let (_, rest) = text.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(Stat {
            state: fields.first()?.chars().next()?,
            group: fields.get(2)?.parse().ok()?,
            start_time: fields.get(19)?.parse().ok()?,
        })
    }

    /// A zombie (dead, not yet reaped by whoever adopted it) counts as gone.
    fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// Every process id `/proc` lists now.
fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
}

/// Whether process `pid` exists and has not exited: a zombie (dead, not
/// yet reaped by whoever adopted it) counts as gone.
pub fn is_alive(pid: u32) -> bool {
    Stat::read(pid).is_some_and(|stat| stat.is_alive())
}

/// When process `pid` started, in clock ticks since boot (field 22 of
/// `/proc/PID/stat`): with the boot id, a pid that names this process and
/// no later one that got the same number.
pub fn start_time(pid: u32) -> Option<u64> {
    Stat::read(pid).map(|stat| stat.start_time)
}

/// This boot's id: a record naming processes is stale after a reboot.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_string())
        .unwrap_or_default()
}

/// The live processes of process group `pgid`.
pub fn in_group(pgid: u32) -> Vec<u32> {
    pids()
        .filter(|&pid| Stat::read(pid).is_some_and(|stat| stat.group == pgid && stat.is_alive()))
        .collect()
}

/// Every process that can be read now; ones that exit while being read
/// are left out.
pub fn processes() -> Vec<Process> {
    pids()
        .filter_map(|pid| {
            let state = Stat::read(pid)?.state;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline)
                .replace('\0', " ")
                .trim_end()
                .to_string();
            Some(Process {
                pid,
                state,
                cmdline,
            })
        })
        .collect()
}

/// The file name of the program process `pid` runs, whatever its title
/// says now, and even if the program file was replaced or removed since it
/// started.
pub fn program_name(pid: u32) -> Option<String> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let name = exe.file_name()?.to_string_lossy();
    Some(name.strip_suffix(" (deleted)").unwrap_or(&name).to_string())
}

/// The live processes whose working directory is `dir` (a path on this
/// machine; compared after following its links, as the kernel shows a
/// working directory). Every process of a PostgreSQL server works in its
/// data directory, so this finds a server's postmaster, backends and
/// helpers, and the single-user or bootstrap server an `initdb` runs,
/// whoever their parent is now.
pub fn working_in(dir: &Path) -> Vec<u32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    pids()
        .filter(|&pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir)
                && is_alive(pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_listed_with_its_state_and_command_line() {
        let me = processes()
            .into_iter()
            .find(|p| p.pid == std::process::id())
            .expect("this process is in /proc");
        // The main thread waits for the test threads, or runs.
        assert!(matches!(me.state, 'R' | 'S'), "{me:?}");
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_string_lossy();
        assert!(me.cmdline.contains(name.as_ref()), "{me:?}");
        assert_eq!(program_name(me.pid).as_deref(), Some(name.as_ref()));
    }

    #[test]
    fn a_child_is_found_by_its_working_directory_and_group_until_it_exits() {
        let dir = tempfile::tempdir().unwrap();
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = crate::support::cmd::Cmd::new("sleep")
            .arg("30")
            .current_dir(dir.path())
            .spawn_daemon(log.path())
            .unwrap();
        let pid = child.id();
        assert!(is_alive(pid));
        assert_eq!(working_in(dir.path()), [pid]);
        // A daemon leads a process group of its own.
        assert_eq!(in_group(pid), [pid]);
        assert!(start_time(pid).is_some_and(|ticks| ticks > 0));
        child.kill().unwrap();
        // Killed but not reaped: a zombie is gone already.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while is_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!is_alive(pid));
        assert!(working_in(dir.path()).is_empty());
        assert!(in_group(pid).is_empty());
        child.wait().unwrap();
    }
}
