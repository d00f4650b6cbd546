//! What `/proc` says of one process: whether it is alive, when it
//! started, its process group. The command runner needs these to stop what
//! a killed helper left running; the system layer's `procfs` builds on them.

/// Whether process `pid` exists and has not exited: a zombie (dead, not
/// yet reaped by whoever adopted it) counts as gone.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| !matches!(state, 'Z' | 'X')),
        Err(_) => false,
    }
}

/// The fields of `/proc/PID/stat` after the command name (state first).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// When process `pid` started, in clock ticks since boot (field 22 of
/// `/proc/PID/stat`): with the boot id, a pid that names this process and
/// no later one that got the same number.
pub fn start_time(pid: u32) -> Option<u64> {
    // The 20th field after the command name.
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// This boot's id: a record naming processes is stale after a reboot.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_string())
        .unwrap_or_default()
}

/// The live processes of process group `pgid`.
pub fn in_group(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let fields = stat_fields(pid)?;
            // Field 5 of stat, the process group; the 3rd after the name.
            let group: u32 = fields.get(2)?.parse().ok()?;
            (group == pgid && is_alive(pid)).then_some(pid)
        })
        .collect()
}
