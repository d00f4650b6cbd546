//! The processes of this machine, from `/proc` (always the host's: a root
//! directory has no processes of its own).

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
}
