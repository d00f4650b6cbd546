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
    systemctl_on("disable", &loaded(units), None)
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
    systemctl_on("stop", &loaded(units), Some(limit))
}

/// How a oneshot unit started by [`run_unit`] ended.
#[derive(Debug, Clone)]
pub struct UnitRun {
    /// Whether its program exited 0.
    pub succeeded: bool,
    /// Its program's exit status (`ExecMainStatus`).
    pub exit_status: i32,
    /// What its program wrote to stdout and stderr, from the journal.
    pub output: String,
}

/// Starts the oneshot `unit` and waits until it has run, however long it
/// takes; when this process's `systemctl` dies (a dropped SSH session
/// takes the scriptlet's process group with it), the unit goes on under
/// systemd and this keeps waiting for it. Where the unit is running
/// already (a second caller), waits for that run instead of starting one.
pub fn run_unit(unit: &str) -> Result<UnitRun> {
    if let Err(err) = Cmd::new("systemctl").args(["start", unit]).run() {
        tracing::debug!("systemctl start {unit}: {err:#}");
    }
    wait_while_running(unit)?;
    let exit_status: i32 = unit_property(unit, "ExecMainStatus")?
        .parse()
        .with_context(|| format!("reading the exit status of {unit}"))?;
    let succeeded = unit_property(unit, "Result")? == "success" && exit_status == 0;
    let invocation = unit_property(unit, "InvocationID")?;
    Ok(UnitRun {
        succeeded,
        exit_status,
        output: unit_output(unit, &invocation),
    })
}

/// Waits while `unit` is starting or stopping (a oneshot at work);
/// whether it was.
pub fn wait_while_running(unit: &str) -> Result<bool> {
    let mut was_running = false;
    while matches!(
        unit_property(unit, "ActiveState")?.as_str(),
        "activating" | "deactivating" | "reloading"
    ) {
        was_running = true;
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(was_running)
}

/// One property of `unit`, as `systemctl show` gives it.
fn unit_property(unit: &str, property: &str) -> Result<String> {
    let value = Cmd::new("systemctl")
        .args(["show", &format!("--property={property}"), "--value", unit])
        .output_text()
        .with_context(|| format!("asking systemd for the {property} of {unit}"))?;
    Ok(value.trim().to_string())
}

/// What the run `invocation` of `unit` wrote to stdout and stderr, as
/// journald received it (empty when the journal cannot be read: the
/// caller points at `journalctl -u`).
fn unit_output(unit: &str, invocation: &str) -> String {
    // journald may still be storing the last lines of a unit that just
    // ended; a failure only means older journald (RHEL 7), which has none.
    let _ = Cmd::new("journalctl").arg("--sync").run();
    let mut cmd = Cmd::new("journalctl").args(["--no-pager", "-o", "cat", "_TRANSPORT=stdout"]);
    cmd = if invocation.is_empty() {
        cmd.args(["-u", unit, "-n", "200"])
    } else {
        cmd.arg(format!("_SYSTEMD_INVOCATION_ID={invocation}"))
    };
    cmd.output_text().unwrap_or_default()
}

/// Where unit files are looked for, highest priority first.
const UNIT_FILE_DIRS: [&str; 3] = [
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// The enabled service units whose unit file names `path` or a path
/// under it (a program tree, say): a server's own units, whatever they
/// are called.
pub fn enabled_units_naming(path: &str) -> Vec<String> {
    let mut found = Vec::new();
    for dir in UNIT_FILE_DIRS {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".service") || found.contains(&name) {
                continue;
            }
            let names_it =
                std::fs::read_to_string(entry.path()).is_ok_and(|text| names_path(&text, path));
            if names_it && is_enabled(&name) {
                found.push(name);
            }
        }
    }
    found.sort();
    found
}

/// Whether `text` names `path` itself or a path under it (not a sibling
/// that merely starts with the same characters).
fn names_path(text: &str, path: &str) -> bool {
    text.match_indices(path).any(|(at, _)| {
        text[at + path.len()..]
            .chars()
            .next()
            .is_none_or(|next| !(next.is_alphanumeric() || matches!(next, '.' | '-' | '_')))
    })
}

/// Whether `unit` is enabled to start at boot.
pub fn is_enabled(unit: &str) -> bool {
    Cmd::new("systemctl")
        .args(["is-enabled", unit])
        .output_text()
        .is_ok_and(|state| state.trim() == "enabled")
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

/// Those of `units` systemd knows.
fn loaded<'a>(units: &[&'a str]) -> Vec<&'a str> {
    units
        .iter()
        .copied()
        .filter(|unit| is_loaded(unit))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_names_a_tree_by_the_tree_or_a_path_under_it_only() {
        let tree = "/opt/trend/imss";
        assert!(names_path("WorkingDirectory=/opt/trend/imss\n", tree));
        assert!(names_path(
            "ExecStart=/opt/trend/imss/bin/imssd start",
            tree
        ));
        assert!(names_path("ExecStart=\"/opt/trend/imss\" x", tree));
        assert!(!names_path(
            "ExecStart=/opt/trend/imss.71-replaced/bin/x",
            tree
        ));
        assert!(!names_path("ExecStart=/opt/trend/imss2/bin/x", tree));
        assert!(!names_path("ReadWritePaths=/opt/trend /var/imss", tree));
    }
}
