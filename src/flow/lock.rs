//! The one lock of an upgrade: `run`, `recover` and `imss-rollback` each
//! hold it for as long as they change anything, so that no second command
//! starts undoing (or redoing) under a live one. It is an exclusive
//! `flock` on `upgrade.lock` in the state directory (root's alone): the
//! kernel drops it when its holder exits, however it exits (`kill -9`
//! included), so it is never stale. The file also says who holds it, for
//! the refusal.
//!
//! May touch: the state directory (created by `run`) and the lock files.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::flow::context::Context;
use crate::support::processes;

/// The lock file's name in the state directory.
pub const LOCK_FILE: &str = "upgrade.lock";

/// The lock, held until dropped.
#[derive(Debug)]
pub struct UpgradeLock {
    /// Held, never read: dropping it unlocks.
    _file: Flock<File>,
    path: PathBuf,
}

impl UpgradeLock {
    /// Takes the lock in the state directory, which `run` creates (root's,
    /// 0700) if it is missing. Refuses, naming the holder, when another
    /// command holds it.
    pub fn take_creating(ctx: &Context) -> Result<Self> {
        Self::take_in(&ctx.layout.state_dir_creating()?)
    }

    /// Takes the lock of an existing state directory; `None` when there is
    /// none (no upgrade was ever made, so there is nothing to lock).
    pub fn take_existing(ctx: &Context) -> Result<Option<Self>> {
        Self::try_take_existing(ctx)?
            .map(|taken| taken.map_err(|holder| holder.refusal()))
            .transpose()
    }

    /// [`Self::take_existing`], but says who holds it instead of refusing.
    pub fn try_take_existing(
        ctx: &Context,
    ) -> Result<Option<std::result::Result<Self, LockHolder>>> {
        let state = ctx.layout.state_dir()?;
        if !state.exists() {
            return Ok(None);
        }
        Self::try_take(&state.join(LOCK_FILE)).map(Some)
    }

    fn take_in(state: &Path) -> Result<Self> {
        Self::try_take(&state.join(LOCK_FILE))?.map_err(|holder| holder.refusal())
    }

    /// Takes the background transfer's lock (`layout::TransferFiles::lock`),
    /// or says who holds it. The running transfer holds it; a rollback or a
    /// finalize holds it once it stopped the transfer, so that none starts
    /// under it.
    pub fn try_take_transfer(ctx: &Context) -> Result<std::result::Result<Self, LockHolder>> {
        Self::try_take(&ctx.layout.transfer_files()?.lock)
    }

    fn try_take(path: &Path) -> Result<std::result::Result<Self, LockHolder>> {
        loop {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(locked) => locked,
                Err((mut file, Errno::EWOULDBLOCK)) => {
                    let mut record = String::new();
                    let _ = file.read_to_string(&mut record);
                    return Ok(Err(LockHolder {
                        record,
                        lock: path.to_path_buf(),
                    }));
                }
                Err((_, errno)) => {
                    return Err(errno).with_context(|| format!("locking {}", path.display()));
                }
            };
            // Removed and made again meanwhile (by hand): lock the one at
            // the path now.
            let here = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
            let held = file.metadata().ok().map(|m| (m.dev(), m.ino()));
            if here.is_none() || here != held {
                continue;
            }
            crate::fail_point!("lock-taken-unnamed");
            let pid = std::process::id();
            let said = format!(
                "pid {pid}, `{}`, since {}\n{}",
                std::env::args().collect::<Vec<_>>().join(" "),
                chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC"),
                process_line(pid)
            );
            file.set_len(0)
                .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
                .and_then(|()| file.write_all(said.as_bytes()))
                .with_context(|| format!("writing {}", path.display()))?;
            return Ok(Ok(Self {
                _file: file,
                path: path.to_path_buf(),
            }));
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The lock file's second line: which process of which boot wrote it
/// (`process BOOT_ID START_TICKS`), so that a record is believed only of
/// the process that wrote it, never of a later one that got its pid.
fn process_line(pid: u32) -> String {
    format!(
        "process {} {}\n",
        processes::boot_id(),
        processes::start_time(pid).unwrap_or(0)
    )
}

/// What a lock file says of its holder. The kernel hands the lock to the
/// next taker the moment its holder dies, and the taker writes its own
/// record only after it has the lock: until then the file still holds a
/// dead holder's record, whose pid may meanwhile be another program's.
#[derive(Debug, Clone)]
pub struct LockHolder {
    record: String,
    lock: PathBuf,
}

impl LockHolder {
    /// Who holds it, for a message.
    pub fn describe(&self) -> String {
        match self.writer() {
            Some(_) => self.record.lines().next().unwrap_or_default().to_string(),
            None => "a command that has not said who it is yet".to_string(),
        }
    }

    /// The error of a command refused because this holder works.
    pub fn refusal(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "another imss-upgrade command is working on this server ({}; it holds {}): \
             wait until it ends, then run this again; `imss-upgrade status` shows where \
             the upgrade is",
            self.describe(),
            self.lock.display()
        )
    }

    /// The holder's process id, once it has written it.
    pub fn pid(&self) -> Option<u32> {
        self.writer()
    }

    /// The pid of the process that wrote the record, if it still runs: its
    /// start, on this boot, is the one recorded.
    fn writer(&self) -> Option<u32> {
        let mut lines = self.record.lines();
        let pid: u32 = lines
            .next()?
            .strip_prefix("pid ")?
            .split(',')
            .next()?
            .parse()
            .ok()?;
        let recorded = lines.next()?;
        (processes::is_alive(pid) && format!("{recorded}\n") == process_line(pid)).then_some(pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::root::Root;

    #[test]
    fn a_second_holder_is_refused_with_the_first_one_named_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::new(Root::new(dir.path()).unwrap());
        assert!(UpgradeLock::take_existing(&ctx).unwrap().is_none());
        let first = UpgradeLock::take_creating(&ctx).unwrap();
        // A second open file description conflicts, even in this process.
        let err = UpgradeLock::take_existing(&ctx).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("another imss-upgrade command"), "{err}");
        drop(first);
        let again = UpgradeLock::take_existing(&ctx).unwrap();
        assert!(again.is_some());
    }
}
