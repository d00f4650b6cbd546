//! The process group of a program run with [`super::Cmd::record_group_in`],
//! named in a record before the program does anything, so that whoever
//! comes after a killed helper stops what the program left running.

use std::path::Path;
use std::time::Duration;

use crate::support::processes;

/// Writes the record of process group `pgid` (and this boot's id, since a
/// group id names nothing after a reboot, and when its leader started,
/// which ties the group to it), synced, atomically.
pub(super) fn write_group_record(record: &Path, pgid: u32) -> std::io::Result<()> {
    use crate::support::fsutil::atomic_write;
    let started = processes::start_time(pgid).unwrap_or(0);
    let text = format!("{pgid} {} {started}\n", processes::boot_id());
    atomic_write(record, text.as_bytes(), 0o600).map_err(std::io::Error::other)
}

/// Stops what a program run with [`super::Cmd::record_group_in`] by a
/// process that was killed left running: every process still in the group
/// the record names gets SIGKILL, and this waits until none is left; then
/// the record goes. A record from before a reboot names nothing and only goes. Returns
/// how many processes were stopped.
pub fn stop_recorded_group(record: &Path) -> std::io::Result<usize> {
    let text = match std::fs::read_to_string(record) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(err),
    };
    let mut fields = text.split_whitespace();
    let pgid: Option<u32> = fields.next().and_then(|f| f.parse().ok());
    let boot = fields.next().unwrap_or("");
    let started: Option<u64> = fields.next().and_then(|f| f.parse().ok());
    let mut stopped = 0;
    if let Some(pgid) = pgid.filter(|&pgid| {
        boot == processes::boot_id() && group_of_the_recorded_leader(record, pgid, started)
    }) {
        let group = nix::unistd::Pid::from_raw(-(pgid as i32));
        for _ in 0..500 {
            let members = processes::in_group(pgid);
            if members.is_empty() {
                break;
            }
            stopped = stopped.max(members.len());
            let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    std::fs::remove_file(record)?;
    Ok(stopped)
}

/// Whether process group `pgid` is still the one a record named: never
/// group 0 or 1 (`kill` would take this process's own group, or every
/// process), and, while a process with the group's number lives, it must
/// be the leader that started when the record says. A group whose leader
/// exited keeps its number until its last member is gone, so its members
/// are the recorded group's.
fn group_of_the_recorded_leader(record: &Path, pgid: u32, started: Option<u64>) -> bool {
    let tied = pgid >= 2
        && started.is_some()
        && (!processes::is_alive(pgid) || processes::start_time(pgid) == started);
    if !tied {
        tracing::warn!(
            "{} names process group {pgid}, which cannot be tied to the run that recorded it: \
             nothing is signalled",
            record.display()
        );
    }
    tied
}
