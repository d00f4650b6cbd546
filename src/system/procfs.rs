//! The processes of this machine, from `/proc` (always the host's: a root
//! directory has no processes of its own).

pub use crate::support::processes::{boot_id, in_group, is_alive};

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

/// Every process that can be read now; ones that exit while being read
/// are left out.
pub fn processes() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "pid (comm) S …": the state follows the last ')'.
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
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

/// Whether process `pid` is alive and a PostgreSQL server process (its
/// program is `postgres`, whatever its title says now, and even if the
/// program file was replaced since it started).
pub fn is_postgres(pid: u32) -> bool {
    is_alive(pid)
        && std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
            exe.file_name().is_some_and(|name| {
                let name = name.to_string_lossy();
                name.strip_suffix(" (deleted)").unwrap_or(&name) == "postgres"
            })
        })
}

/// The live processes whose working directory is `dir` (a path on this
/// machine; compared after following its links, as the kernel shows a
/// working directory). Every process of a PostgreSQL server works in its
/// data directory, so this finds a server's postmaster, backends and
/// helpers, and the single-user or bootstrap server an `initdb` runs,
/// whoever their parent is now.
pub fn working_in(dir: &std::path::Path) -> Vec<u32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
            (cwd == dir && is_alive(pid)).then_some(pid)
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
    }

    #[test]
    fn a_child_is_found_by_its_working_directory_until_it_exits() {
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
        child.kill().unwrap();
        // Killed but not reaped: a zombie is gone already.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while is_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!is_alive(pid));
        assert!(working_in(dir.path()).is_empty());
        child.wait().unwrap();
    }
}
