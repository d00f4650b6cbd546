//! The units around the upgrade's steps, where systemd manages the server:
//! the 7.1 server's own units (disabled from the quiesce on, so that a boot
//! in the middle of an upgrade, or after it, never starts 7.1 over what the
//! upgrade moved; enabled again by a rollback), and the upgrade's own
//! units (the boot-time recovery and the snapshot's compression), installed
//! before a run's first change so that a power loss at any later moment is
//! settled at the next boot. Elsewhere (a server under `--root`) all of
//! this does nothing.

use anyhow::Result;

use crate::files::units::{self, Unit};
use crate::flow::context::Context;
use crate::flow::layout::UNIT_DIR;
use crate::support::constants::PROGRAM_DIR;
use crate::support::fsutil;
use crate::system::systemd;

/// The 7.1 server's enabled units: those whose unit file names the program
/// tree (whatever they are called), other than the product's own.
pub fn enabled_71_units(ctx: &Context) -> Vec<String> {
    if !systemd::manages(&ctx.root) {
        return Vec::new();
    }
    let mut ours = units::names(&units::ALL);
    ours.extend(units::names(&units::PACKAGE));
    systemd::enabled_units_naming(PROGRAM_DIR)
        .into_iter()
        .filter(|name| !ours.contains(&name.as_str()))
        .collect()
}

/// Disables the 7.1 units `names`.
pub fn disable_71_units(ctx: &Context, names: &[String]) -> Result<()> {
    if !systemd::manages(&ctx.root) {
        return Ok(());
    }
    systemd::disable(&names.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Enables the 7.1 units `names` again.
pub fn enable_71_units(ctx: &Context, names: &[String]) -> Result<()> {
    if !systemd::manages(&ctx.root) || names.is_empty() {
        return Ok(());
    }
    systemd::enable(&names.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Installs the recovery, transfer and compression units, enabled, unless
/// they are there as they should be. Inert without a step journal to
/// settle, history to transfer or a snapshot to compress; `finalize`
/// disables them.
pub fn install_upgrade_units(ctx: &Context) -> Result<()> {
    if !systemd::manages(&ctx.root) {
        return Ok(());
    }
    let mut changed = false;
    for unit in [units::RECOVER, units::COMPRESS, units::TRANSFER] {
        changed |= write_unit(ctx, &unit)?;
    }
    if changed {
        systemd::daemon_reload()?;
    }
    for unit in [units::RECOVER, units::TRANSFER, units::COMPRESS] {
        if !systemd::is_enabled(unit.name) {
            systemd::enable(&[unit.name])?;
        }
    }
    Ok(())
}

/// Disables the upgrade's own units once `finalize` ended the upgrade:
/// nothing of it runs at boot any more. Their files stay, inert: the
/// package owns none of them, and a new upgrade writes them again.
pub fn retire_upgrade_units(ctx: &Context) -> Result<()> {
    if !systemd::manages(&ctx.root) {
        return Ok(());
    }
    let enabled: Vec<&str> = [units::RECOVER, units::TRANSFER, units::COMPRESS]
        .iter()
        .map(|unit| unit.name)
        .filter(|name| systemd::is_enabled(name))
        .collect();
    if enabled.is_empty() {
        return Ok(());
    }
    systemd::disable(&enabled)
}

/// Queues the snapshot's compression (idle priority) after a completed
/// upgrade; returns at once.
pub fn queue_compression(ctx: &Context) -> Result<()> {
    if !systemd::manages(&ctx.root) {
        return Ok(());
    }
    systemd::start_queued(&[units::COMPRESS.name])
}

/// Queues the background transfer of the older history; returns at once.
/// The unit does nothing once the transfer is done.
pub fn queue_transfer(ctx: &Context) -> Result<()> {
    if !systemd::manages(&ctx.root) {
        return Ok(());
    }
    systemd::start_queued(&[units::TRANSFER.name])
}

/// Stops the background transfer's unit if it runs, and waits until it has.
pub fn stop_transfer_unit(ctx: &Context) -> Result<()> {
    if !systemd::manages(&ctx.root) {
        return Ok(());
    }
    systemd::stop(&[units::TRANSFER.name], ctx.service_timeout)
}

/// Stops the snapshot's compression if it runs, and waits until it has.
pub fn stop_compression(ctx: &Context) -> Result<()> {
    if !systemd::manages(&ctx.root) {
        return Ok(());
    }
    systemd::stop(&[units::COMPRESS.name], ctx.service_timeout)
}

/// Writes `unit` to the unit directory unless it holds it already;
/// whether it wrote.
fn write_unit(ctx: &Context, unit: &Unit) -> Result<bool> {
    let path = ctx
        .root
        .resolve(std::path::Path::new(UNIT_DIR).join(unit.name))?;
    if std::fs::read_to_string(&path).is_ok_and(|text| text == unit.text) {
        return Ok(false);
    }
    fsutil::atomic_write(&path, unit.text.as_bytes(), 0o644)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::layout::{ROLLBACK_MANIFEST, TRANSFER_DONE};

    #[test]
    fn the_transfer_unit_runs_only_between_a_completed_upgrade_and_the_done_file() {
        let text = units::TRANSFER.text;
        assert!(
            text.contains(&format!("ConditionPathExists={ROLLBACK_MANIFEST}\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("ConditionPathExists=!{TRANSFER_DONE}\n")),
            "{text}"
        );
        assert!(text.contains("WantedBy=multi-user.target"), "{text}");
    }

    #[test]
    fn a_transfer_that_keeps_failing_is_not_restarted_for_ever() {
        let text = units::TRANSFER.text;
        let unit_section = &text[..text.find("[Service]").unwrap()];
        let setting = |name: &str| {
            unit_section
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("no {name} in [Unit]: {text}"))
        };
        assert_eq!(setting("StartLimitBurst"), "5");
        assert_eq!(setting("StartLimitIntervalSec"), "6h");
        // Five tries fit in the interval: the limit is reached.
        assert!(text.contains("RestartSec=60s"), "{text}");
    }
}
