//! How 9.1 runs once it is in place: as systemd units where systemd
//! manages the server (every RHEL 7 to 9 host), through the 9.1 control
//! script otherwise (a server under a `--root` directory, for the tests
//! that need no booted host).
//!
//! The units are the ones compiled in from `systemd/`: the switch writes
//! them to [`UNIT_DIR`], enables and starts the core ones, and the EUQ ones
//! only where 7.1 had EUQ enabled (seed: the EUQ console showed
//! "unavailable" after the vendor's upgrade until two settings were ticked
//! by hand). Its undo stops and disables them and removes every file the
//! switch created outside the program tree.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::files::units::{self, Unit};
use crate::flow::context::Context;
use crate::flow::layout::UNIT_DIR;
use crate::flow::upgrade::health;
use crate::migration::probe;
use crate::support::fsutil;
use crate::support::logging::events;
use crate::system::imssctl::Action;
use crate::system::pg::{self, StopMode};
use crate::system::systemd;

/// How often the scanner is asked whether it takes mail yet.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// Whether to wait for the units to be up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Start and wait: the switch, and a recovery run by hand.
    UntilUp,
    /// Queue the starts and return: the boot-time recovery unit, which
    /// the units are ordered after, so waiting for them would never end.
    No,
}

/// The paths outside the program tree that the switch creates, for its
/// undo note ([`layout::paths_the_switch_creates`]). Fails, naming it,
/// when one of them exists already (preflight says so first).
pub fn paths_to_create(ctx: &Context) -> Result<Vec<PathBuf>> {
    let units = systemd::manages(&ctx.root);
    if let Some((on_server, entry)) = ctx.layout.switch_targets_in_the_way(units)?.first() {
        bail!(
            "{} exists already ({}), and the switch creates it: move it away (it is not \
             7.1's), then run the upgrade again",
            on_server.display(),
            entry.describe()
        );
    }
    Ok(crate::flow::layout::Layout::paths_the_switch_creates(units))
}

/// Starts 9.1 in place: its units where systemd manages the server (the
/// cluster the migrate step left running is handed over to its unit),
/// else its control script. Returns the units started.
pub async fn start(ctx: &Context, wait: Wait) -> Result<Vec<&'static str>> {
    if !systemd::manages(&ctx.root) {
        ctx.unblock(|ctx| health::control_services(ctx, Action::Start))
            .await?;
        return Ok(Vec::new());
    }
    if wait == Wait::No {
        // At boot, before the database's unit may start: the switch chose
        // the units already, and enabled them.
        return ctx.unblock(|_| queue_enabled_units()).await;
    }
    let euq = euq_in_use(ctx).await?;
    ctx.unblock(move |ctx| start_units(ctx, euq)).await
}

/// Queues the start of the 9.1 units the switch enabled.
fn queue_enabled_units() -> Result<Vec<&'static str>> {
    let names: Vec<&'static str> = units::names(&units::SERVICES_91)
        .into_iter()
        .filter(|name| systemd::is_enabled(name))
        .collect();
    if !names.contains(&units::SCANNER.name) {
        bail!(
            "the 9.1 scanner's unit {} is not enabled, though the switch finished: \
             enable the 9.1 units (systemctl enable imss-postgresql imss-named imss-policy imss-scanner), \
             then run `imss-upgrade recover` again",
            units::SCANNER.name
        );
    }
    systemd::start_queued(&names)?;
    Ok(names)
}

fn start_units(ctx: &Context, euq: bool) -> Result<Vec<&'static str>> {
    for unit in units::SERVICES_91 {
        let path = ctx.root.resolve(unit_path(&unit))?;
        fsutil::atomic_write(&path, unit.text.as_bytes(), 0o644)?;
    }
    systemd::daemon_reload()?;
    let mut started = units::CORE_91.to_vec();
    if euq {
        started.extend(units::EUQ_91);
    }
    let names = units::names(&started);
    // The database runs under its unit from now on, reading its own
    // configuration: the server the migrate step started goes first.
    let cluster = crate::flow::clusters::target_91(ctx)?;
    if cluster.is_running()? {
        cluster.stop(StopMode::Fast)?;
    }
    systemd::enable(&names)?;
    systemd::start(&names, ctx.service_timeout)?;
    wait_until_accepting(ctx)?;
    tracing::info!(
        message_id = events::UNITS_STARTED,
        imss_units = names.join(" "),
        imss_euq = if euq { "enabled" } else { "disabled" },
        "the 9.1 units run: {}; EUQ {}",
        names.join(", "),
        if euq {
            "enabled, as 7.1 had it"
        } else {
            "left disabled, as 7.1 had it"
        }
    );
    Ok(names)
}

/// Waits until the scanner accepts mail: its unit is up once its process
/// runs, which is before it listens.
fn wait_until_accepting(ctx: &Context) -> Result<()> {
    let deadline = Instant::now() + ctx.service_timeout;
    loop {
        match health::check_accepting(ctx) {
            Ok(()) => return Ok(()),
            Err(err) if Instant::now() > deadline => {
                return Err(err.context(format!(
                    "the 9.1 scanner did not take mail within {:?} of its unit's start: \
                     `journalctl -u {}` says why",
                    ctx.service_timeout,
                    units::SCANNER.name
                )));
            }
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
}

/// Stops 9.1 (its units, or its control script) and removes what the
/// switch created outside the tree among `created`. Goes on when 9.1 is
/// not running or half-installed; every removal may run again.
pub fn stop_and_remove(ctx: &Context, created: &[PathBuf]) -> Result<()> {
    if systemd::manages(&ctx.root) {
        let names = units::names(&units::SERVICES_91);
        systemd::stop(&names, ctx.service_timeout)?;
        systemd::disable(&names)?;
    }
    for path in created {
        let on_server = ctx.root.resolve_parent(path)?;
        if on_server.is_dir() {
            fsutil::remove_tree_if_present(&on_server)?;
        } else if std::fs::symlink_metadata(&on_server).is_ok() {
            std::fs::remove_file(&on_server)
                .with_context(|| format!("removing {}", on_server.display()))?;
        }
    }
    if systemd::manages(&ctx.root) {
        systemd::daemon_reload()?;
    }
    Ok(())
}

/// Whether 7.1 used EUQ: both of the seed's settings, end-user access and
/// EUQ itself, as the configuration import carried them into 9.1.
async fn euq_in_use(ctx: &Context) -> Result<bool> {
    let client = pg::connect(&ctx.database()?).await?;
    probe::euq_in_use_91(&client).await
}

fn unit_path(unit: &Unit) -> PathBuf {
    Path::new(UNIT_DIR).join(unit.name)
}
