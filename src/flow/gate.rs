//! The one gate a command passes before it works on an upgrade: the
//! upgrade's lock taken, the step journal read under it, and a refusal
//! unless the run is in a state the command works on. The refusal names
//! what was asked, where the upgrade is, and what to run instead.

use anyhow::{Result, anyhow};

use crate::flow::context::Context;
use crate::flow::journal::{RunState, StepJournal};
use crate::flow::lock::UpgradeLock;

/// What a command holds once the gate let it in.
#[derive(Debug)]
pub struct Admitted {
    /// Held until the command returns: no other command works meanwhile.
    pub lock: UpgradeLock,
    /// The run, in one of the states the command asked for.
    pub journal: StepJournal,
}

/// Takes the upgrade's lock and reads the step journal, refusing unless
/// there is a run in one of `states`. `purpose` says what the command
/// does, as in "nothing to `purpose`" ("roll back", "finalize").
pub fn require(ctx: &Context, states: &[RunState], purpose: &str) -> Result<Admitted> {
    let lock = UpgradeLock::take_existing(ctx)?;
    let journal = match lock {
        Some(_) => StepJournal::of(ctx)?,
        None => None,
    };
    let journal = admit(ctx, journal, states, purpose)?;
    let lock = lock.expect("a journal is read only under the lock");
    Ok(Admitted { lock, journal })
}

/// `journal` if it is a run in one of `states`, or the refusal, for a
/// command that holds a lock of its own (the transfer's).
pub fn admit(
    ctx: &Context,
    journal: Option<StepJournal>,
    states: &[RunState],
    purpose: &str,
) -> Result<StepJournal> {
    let Some(journal) = journal else {
        return Err(anyhow!(
            "nothing to {purpose}: no upgrade was made under {}, or it was finalized (no upgrade \
             journal in {})",
            ctx.root.dir().display(),
            crate::flow::layout::STATE_DIR
        ));
    };
    if states.contains(&journal.state) {
        return Ok(journal);
    }
    let where_it_is = match journal.state {
        RunState::InProgress | RunState::RollingBack => {
            "did not end: unless a command works on it now, `imss-upgrade recover` settles it"
        }
        RunState::Completed => {
            "is complete: 9.1 runs (`imss-rollback` goes back to 7.1 until it is finalized)"
        }
        RunState::RolledBack => "was rolled back already: 7.1 runs",
    };
    Err(anyhow!(
        "cannot {purpose}: the upgrade {} records {where_it_is}",
        journal.path().display()
    ))
}
