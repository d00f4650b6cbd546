//! The product's own service control, `/opt/trend/imss/script/imssctl.sh`:
//! `stop` takes the scanner down first (mail stops being accepted), waits
//! for the mail in flight, then the other services and the bundled
//! PostgreSQL with a clean shutdown; `start` does the reverse. The 7.1 and
//! the 9.1 trees each carry their own.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::support::cmd::Cmd;
use crate::support::constants::PROGRAM_DIR;
use crate::support::root::Root;

/// What to ask the control script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start the database and the services.
    Start,
    /// Stop the services, the scanner first, then the database.
    Stop,
}

impl Action {
    fn as_arg(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
        }
    }
}

/// How long the services may take to start or stop by default before the
/// upgrade gives up on them (and rolls back): a scanner finishing the mail
/// in flight, a database's shutdown checkpoint.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the control script of the tree installed under `root`, stopped
/// after `limit` if it hangs; with a `record`, its process group is named
/// there while it runs ([`Cmd::record_group_in`]), so that what it started
/// can be stopped if this process is killed.
pub fn control(root: &Root, action: Action, limit: Duration, record: Option<&Path>) -> Result<()> {
    let script = root.resolve(format!("{PROGRAM_DIR}/script/imssctl.sh"))?;
    let mut cmd = Cmd::new(&script)
        .arg(action.as_arg())
        .current_dir("/")
        .timeout(limit);
    if let Some(record) = record {
        cmd = cmd.record_group_in(record);
    }
    cmd.run().with_context(|| {
        format!(
            "running {} {}: check the IMSS services' logs under /var/imss",
            script.display(),
            action.as_arg()
        )
    })?;
    Ok(())
}
