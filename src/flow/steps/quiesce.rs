//! Step 2, quiesce: stop the 7.1 services, the scanner first (mail downtime
//! starts), let the mail in flight finish, then the other services, then
//! the bundled PostgreSQL with a clean shutdown, and make sure it is down
//! before anything moves its files.
//!
//! May touch: the 7.1 services and database (stop, and start on undo).

use anyhow::{Result, ensure};

use crate::flow::context::Context;
use crate::flow::health;
use crate::flow::journal::{StepJournal, Undo};
use crate::flow::layout;
use crate::system::imssctl::Action;

/// Stops the 7.1 server.
pub async fn run(ctx: &Context, journal: &mut StepJournal) -> Result<()> {
    journal.note_undo(Undo::Restart71)?;
    ctx.unblock(|ctx| {
        health::control_services(ctx, Action::Stop)?;
        let cluster = layout::source_71(ctx)?;
        ensure!(
            !cluster.is_running()?,
            "PostgreSQL 10 still runs on {} after the 7.1 services were stopped: stop it \
             (pg_ctl -D {} -m fast stop, as the imss user), then run the upgrade again",
            cluster.data_dir.display(),
            cluster.data_dir.display()
        );
        Ok(())
    })
    .await
}

/// Starts the 7.1 server again and checks that it accepts mail, without a
/// message: the 7.1 database must come back exactly as it was.
pub async fn undo(ctx: &Context) -> Result<()> {
    ctx.unblock(|ctx| {
        health::control_services(ctx, Action::Start)?;
        health::check_accepting(ctx)
    })
    .await
}
