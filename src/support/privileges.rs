//! Least privilege for the helpers: at start, before any thread exists,
//! each keeps only the capabilities its work uses (capabilities are per
//! thread, and threads inherit them). Programs the helpers start as root
//! get theirs back from the bounding set, which is left alone: the 9.1
//! services the switch starts must not be limited by the upgrade.

use anyhow::{Context, Result};
use caps::{CapSet, Capability, CapsHashSet};

/// What a helper that changes the server uses, and why.
const TO_CHANGE_THE_SERVER: [Capability; 9] = [
    // Files and directories given to the service account; trees copied and
    // restored with their owners, modes and times.
    Capability::CAP_CHOWN,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    // Reading and writing the 7.1 and 9.1 trees whatever their modes (the
    // data directories are the service account's, 0700).
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_DAC_READ_SEARCH,
    // initdb and PostgreSQL started as the service account.
    Capability::CAP_SETUID,
    Capability::CAP_SETGID,
    // Stopping the service account's servers and what a killed run left.
    Capability::CAP_KILL,
    // Reading which directory another account's process works in
    // (/proc/PID/cwd), to find a server's processes.
    Capability::CAP_SYS_PTRACE,
];

/// What the background transfer uses besides: lowering the CPU priority
/// of the 9.1 server process that serves it (the service account's).
const TO_TRANSFER: [Capability; 1] = [Capability::CAP_SYS_NICE];

/// What a helper that only looks uses.
const TO_LOOK: [Capability; 2] = [Capability::CAP_DAC_READ_SEARCH, Capability::CAP_SYS_PTRACE];

/// Which work a helper does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// run, recover, imss-rollback, compress-snapshot, config import.
    ChangesTheServer,
    /// preflight, status, config export.
    Looks,
    /// The background transfer: changes the server, and yields to mail.
    Transfers,
}

impl Work {
    fn needs(self) -> CapsHashSet {
        match self {
            Work::ChangesTheServer => TO_CHANGE_THE_SERVER.into_iter().collect(),
            Work::Looks => TO_LOOK.into_iter().collect(),
            Work::Transfers => TO_CHANGE_THE_SERVER
                .into_iter()
                .chain(TO_TRANSFER)
                .collect(),
        }
    }
}

/// Keeps only what `work` needs in this thread's effective, permitted and
/// inheritable sets (of what it has: an unprivileged helper has nothing to
/// drop). Call it before any other thread starts.
pub fn keep_only(work: Work) -> Result<()> {
    let permitted =
        caps::read(None, CapSet::Permitted).context("reading this process's capabilities")?;
    let kept: CapsHashSet = permitted.intersection(&work.needs()).copied().collect();
    // Inheritable first and permitted last: the effective set may not hold
    // more than the permitted one at any moment.
    for (set, value) in [
        (CapSet::Inheritable, CapsHashSet::new()),
        (CapSet::Effective, kept.clone()),
        (CapSet::Permitted, kept),
    ] {
        let name = format!("{set:?}");
        caps::set(None, set, &value)
            .with_context(|| format!("dropping capabilities from the {name} set"))?;
    }
    Ok(())
}

/// The capabilities `work` keeps, as the bit mask `/proc/PID/status` shows.
pub fn mask(work: Work) -> u64 {
    work.needs()
        .iter()
        .map(|cap| cap.bitmask())
        .fold(0, |a, b| a | b)
}
