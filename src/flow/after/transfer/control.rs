//! Holding the background transfer back and stopping it: the pause (a file
//! in the backup directory, so it outlives restarts and reboots), and the
//! stop a rollback or a finalize makes before it changes anything.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::flow::context::Context;
use crate::flow::lock::UpgradeLock;
use crate::flow::upgrade::server_units;
use crate::support::fsutil;
use crate::support::logging::events;
use crate::support::processes;
use crate::system::systemd;

/// Whether the transfer is paused.
pub fn is_paused(ctx: &Context) -> Result<bool> {
    Ok(ctx.layout.transfer_files()?.paused.exists())
}

/// Pauses the transfer (a running one stops between two batches within a
/// second; one that starts later waits) until [`resume`]. Whether it was
/// running already is not needed: the pause is a file.
pub fn pause(ctx: &Context) -> Result<()> {
    check_transfer_possible(ctx)?;
    let paused = ctx.layout.transfer_files()?.paused;
    if paused.exists() {
        tracing::info!("the transfer is paused already");
        return Ok(());
    }
    let said = format!(
        "paused at {} by `{}`\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC"),
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    fsutil::atomic_write(&paused, said.as_bytes(), 0o600)?;
    tracing::info!(
        message_id = events::TRANSFER_PAUSED,
        imss_paused = "yes",
        "transfer of the older history paused: `imss-upgrade transfer resume` lets it go on"
    );
    Ok(())
}

/// Lets a paused transfer go on.
pub fn resume(ctx: &Context) -> Result<()> {
    check_transfer_possible(ctx)?;
    let paused = ctx.layout.transfer_files()?.paused;
    if !paused.exists() {
        tracing::info!("the transfer is not paused");
        return Ok(());
    }
    fsutil::remove_file_if_present(&paused)?;
    fsutil::sync_dir(paused.parent().expect("in the backup directory"))?;
    tracing::info!(
        message_id = events::TRANSFER_PAUSED,
        imss_paused = "no",
        "transfer of the older history resumed"
    );
    server_units::queue_transfer(ctx)
}

fn check_transfer_possible(ctx: &Context) -> Result<()> {
    let files = ctx.layout.transfer_files()?;
    let backup = ctx.layout.backup_dir()?;
    if !backup.exists() {
        bail!(
            "{} does not exist: no upgrade left history to transfer (or it was finalized)",
            backup.display()
        );
    }
    if files.done.exists() {
        bail!(
            "the transfer of the older history is done already: there is nothing to pause or resume"
        );
    }
    Ok(())
}

/// How long a transfer is given to stop by itself before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// A transfer stopped for a rollback or a finalize: its lock, held so that
/// none starts until the caller is done, and whether one was running.
#[derive(Debug)]
pub struct StoppedTransfer {
    _lock: UpgradeLock,
    was_running: bool,
}

impl StoppedTransfer {
    /// Lets the transfer go on after the command that stopped it refused or
    /// failed before changing anything: its lock goes, its unit is queued
    /// again (under systemd), and the administrator is told either way,
    /// never left with a transfer stopped in silence.
    pub fn go_on(self, ctx: &Context) {
        let was_running = self.was_running;
        drop(self);
        match server_units::queue_transfer(ctx) {
            Ok(()) if systemd::manages(&ctx.root) => tracing::warn!(
                "the transfer of the older history, stopped for this command, goes on again"
            ),
            Ok(()) if was_running => tracing::warn!(
                "the transfer of the older history was stopped for this command: start it \
                 again with `imss-upgrade transfer run`"
            ),
            Ok(()) => {}
            Err(err) => tracing::warn!(
                "the transfer of the older history stays stopped ({err:#}): start it again with \
                 `systemctl start imss-upgrade-transfer.service`"
            ),
        }
    }
}

/// Stops the transfer, if one runs (its unit, under systemd; the process
/// that holds its lock, elsewhere), and returns it stopped, its lock held,
/// so that none starts until the caller is done. The 7.1 database the
/// transfer started in the backup is stopped by the caller, by its data
/// directory: a transfer killed outright leaves it running.
pub fn stop_transfer(ctx: &Context) -> Result<StoppedTransfer> {
    let unit_was_active =
        systemd::manages(&ctx.root) && systemd::is_active(crate::files::units::TRANSFER.name);
    server_units::stop_transfer_unit(ctx)?;
    let deadline = Instant::now() + STOP_GRACE;
    let mut signalled = None;
    loop {
        let holder = match UpgradeLock::try_take_transfer(ctx)? {
            Ok(lock) => {
                return Ok(StoppedTransfer {
                    _lock: lock,
                    was_running: unit_was_active || signalled.is_some(),
                });
            }
            Err(holder) => holder,
        };
        let Some(pid) = holder.pid().filter(|&pid| processes::is_alive(pid)) else {
            // Between its flock and its record (the file may still name
            // an earlier holder, gone, whose pid is no one's to signal):
            // a moment.
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let signal = if Instant::now() < deadline {
            nix::sys::signal::Signal::SIGTERM
        } else {
            nix::sys::signal::Signal::SIGKILL
        };
        if signalled != Some(signal) {
            tracing::info!(
                "stopping the transfer of the older history ({}) with {signal}",
                holder.describe()
            );
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
                .with_context(|| format!("stopping the transfer (pid {pid})"))?;
            signalled = Some(signal);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
