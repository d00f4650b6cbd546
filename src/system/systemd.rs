//! systemd, through `systemctl`: whether it manages this server, and
//! loading, enabling, starting and stopping units. Only for the server the
//! helper runs on: a `--root` directory has no service manager of its own.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::support::cmd::Cmd;
use crate::support::root::Root;

/// Whether systemd is PID 1 here and `root` is this server's `/`: the
/// test `sd_booted()` makes, a directory systemd creates at boot.
pub fn manages(root: &Root) -> bool {
    root.dir() == Path::new("/") && Path::new("/run/systemd/system").is_dir()
}

/// `systemctl daemon-reload`: unit files written or removed take effect.
pub fn daemon_reload() -> Result<()> {
    systemctl(&["daemon-reload"], None)
}

/// Enables `units` to start at boot.
pub fn enable(units: &[&str]) -> Result<()> {
    systemctl_on("enable", units, None)
}

/// Disables `units`; units that are not installed are no error.
pub fn disable(units: &[&str]) -> Result<()> {
    let installed: Vec<&str> = units.iter().copied().filter(|u| is_loaded(u)).collect();
    systemctl_on("disable", &installed, None)
}

/// Starts `units` and waits until each is up (a failed start names the
/// unit and points at its journal), within `limit`.
pub fn start(units: &[&str], limit: Duration) -> Result<()> {
    systemctl_on("start", units, Some(limit))
}

/// Queues the start of `units` and returns at once (`--no-block`).
pub fn start_queued(units: &[&str]) -> Result<()> {
    let mut argv = vec!["--no-block"];
    argv.extend_from_slice(units);
    systemctl_on("start", &argv, None)
}

/// Stops `units` and waits until each is down, within `limit`; units that
/// are not installed are no error.
pub fn stop(units: &[&str], limit: Duration) -> Result<()> {
    let installed: Vec<&str> = units.iter().copied().filter(|u| is_loaded(u)).collect();
    systemctl_on("stop", &installed, Some(limit))
}

/// Whether `unit` is active now.
pub fn is_active(unit: &str) -> bool {
    Cmd::new("systemctl")
        .args(["is-active", "--quiet", unit])
        .run()
        .is_ok()
}

/// Whether systemd knows `unit` (it has a unit file, loaded or not).
pub fn is_loaded(unit: &str) -> bool {
    Cmd::new("systemctl")
        .args(["show", "--property=LoadState", "--value", unit])
        .output_text()
        .is_ok_and(|state| state.trim() == "loaded")
}

fn systemctl_on(verb: &str, units: &[&str], limit: Option<Duration>) -> Result<()> {
    if units.is_empty() {
        return Ok(());
    }
    let mut argv = vec![verb];
    argv.extend_from_slice(units);
    systemctl(&argv, limit).with_context(|| {
        format!(
            "systemctl {verb} {}: `journalctl -u UNIT` says why",
            units.join(" ")
        )
    })
}

fn systemctl(argv: &[&str], limit: Option<Duration>) -> Result<()> {
    let mut cmd = Cmd::new("systemctl").args(argv);
    if let Some(limit) = limit {
        cmd = cmd.timeout(limit);
    }
    cmd.run()?;
    Ok(())
}
