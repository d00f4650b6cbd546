//! Step 2, quiesce: stop the 7.1 services, the scanner first (mail downtime
//! starts), let the mail in flight finish, then the other services, then
//! the bundled PostgreSQL with a clean shutdown, and make sure it is down
//! before anything moves its files.
//!
//! May touch: the 7.1 services and database (stop, and start on undo).

use anyhow::{Result, ensure};

use crate::context::Context;
use crate::imssctl::{self, Action};
use crate::step_journal::{Step, StepJournal, StepRecord};

/// What undo restarts: the whole 7.1 server, through its control script.
const SERVER: &str = "imss-7.1";

/// Stops the 7.1 server.
pub async fn run(ctx: &Context, journal: &mut StepJournal) -> Result<()> {
    journal.note_undo(Step::Quiesce, |undo| {
        undo.services_to_restart = vec![SERVER.to_string()];
    })?;
    imssctl::control(&ctx.root, Action::Stop)?;
    let cluster = super::source_cluster(ctx)?;
    ensure!(
        !cluster.is_running()?,
        "PostgreSQL 10 still runs on {} after the 7.1 services were stopped: stop it \
         (pg_ctl -D {} -m fast stop, as the imss user), then run the upgrade again",
        cluster.data_dir.display(),
        cluster.data_dir.display()
    );
    Ok(())
}

/// Starts the 7.1 server again and checks that it accepts mail, without a
/// message: the 7.1 database must come back exactly as it was.
pub async fn undo(ctx: &Context, record: &StepRecord) -> Result<()> {
    if record.undo.services_to_restart.is_empty() {
        return Ok(());
    }
    imssctl::control(&ctx.root, Action::Start)?;
    super::check_scanner_accepting(ctx)
}
