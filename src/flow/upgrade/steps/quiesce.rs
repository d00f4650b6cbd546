//! Step 2, quiesce: stop the 7.1 services, the scanner first (mail downtime
//! starts), let the mail in flight finish, then the other services, then
//! the bundled PostgreSQL with a clean shutdown, and make sure it is down
//! before anything moves its files.
//!
//! Where systemd manages the server, the 7.1 units are disabled once
//! stopped, so that a boot during the upgrade (or after it) never starts
//! 7.1 over what the upgrade moved; the undo enables them again.
//!
//! May touch: the 7.1 services and database (stop, and start on undo),
//! and their units.

use anyhow::{Result, ensure};

use crate::flow::context::Context;
use crate::flow::journal::{StepJournal, Undo};
use crate::flow::upgrade::health;
use crate::flow::upgrade::server_units;
use crate::system::imssctl::Action;

/// Stops the 7.1 server, and disables its units where systemd manages it.
pub async fn run(ctx: &Context, journal: &mut StepJournal) -> Result<()> {
    let units_71 = server_units::enabled_71_units(ctx);
    journal.note_undo(Undo::Restart71 {
        disabled_71_units: units_71.clone(),
    })?;
    ctx.unblock(move |ctx| {
        health::control_services(ctx, Action::Stop)?;
        let cluster = crate::flow::clusters::source_71(ctx)?;
        ensure!(
            !cluster.is_running()?,
            "PostgreSQL 10 still runs on {} after the 7.1 services were stopped: stop it \
             (pg_ctl -D {} -m fast stop, as the imss user), then run the upgrade again",
            cluster.data_dir.display(),
            cluster.data_dir.display()
        );
        server_units::disable_71_units(ctx, &units_71)
    })
    .await
}

/// Starts the 7.1 server again and checks that it accepts mail, without a
/// message: the 7.1 database must come back exactly as it was.
pub async fn undo(ctx: &Context, disabled_71_units: &[String]) -> Result<()> {
    let units_71 = disabled_71_units.to_vec();
    ctx.unblock(move |ctx| {
        server_units::enable_71_units(ctx, &units_71)?;
        health::control_services(ctx, Action::Start)?;
        health::check_accepting(ctx)
    })
    .await
}
