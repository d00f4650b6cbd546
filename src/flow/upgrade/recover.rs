//! `imss-upgrade recover`: settles a run the step journal says was
//! interrupted (kill -9, power loss): once 9.1 took over (the switch is
//! done) the run is finished, and 9.1 must take mail; before that, and for
//! an interrupted rollback, it is rolled back.

use anyhow::{Context as _, Result};

use crate::flow::context::Context;
use crate::flow::journal::{RollbackCause, RunState, Step, StepJournal, StepStatus};
use crate::flow::lock::UpgradeLock;
use crate::flow::upgrade::run::queue_after_work;
use crate::flow::upgrade::runbook::{Progress, run_steps};
use crate::flow::upgrade::steps::switch;
use crate::flow::upgrade::{health, rollback};
use crate::support::logging::events;
use crate::support::step_lines::StepLines;

/// What [`recover`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// No journal: no upgrade was ever run here.
    NothingToDo,
    /// The journal's run had ended (completed or rolled back) already.
    AlreadySettled(RunState),
    /// The interrupted run was finished: 9.1 runs.
    Finished,
    /// The interrupted run was rolled back: 7.1 runs.
    RolledBack,
}

impl Recovery {
    /// One line for the administrator.
    pub fn describe(self) -> &'static str {
        match self {
            Recovery::NothingToDo => "no upgrade journal: nothing to recover",
            Recovery::AlreadySettled(RunState::RolledBack) => {
                "the last upgrade was rolled back already: 7.1 runs"
            }
            Recovery::AlreadySettled(_) => "the last upgrade completed: 9.1 runs",
            Recovery::Finished => "the interrupted upgrade was finished: 9.1 runs",
            Recovery::RolledBack => "the interrupted upgrade was rolled back: 7.1 runs",
        }
    }

    fn field(self) -> &'static str {
        match self {
            Recovery::NothingToDo => "nothing",
            Recovery::AlreadySettled(_) => "settled",
            Recovery::Finished => "finished",
            Recovery::RolledBack => "rolled-back",
        }
    }
}

/// Reads the step journal and settles an interrupted run.
pub async fn recover(ctx: &Context, lines: &StepLines) -> Result<Recovery> {
    // Held until recovery returns; refused while a run or rollback works.
    let _lock = match UpgradeLock::try_take_existing(ctx)? {
        None => return Ok(finished(Recovery::NothingToDo)),
        Some(Ok(lock)) => lock,
        // The 9.1 units want the recovery unit, so that it runs before them
        // at boot; a run or rollback that starts them starts it too. That
        // command is alive and settles the upgrade itself.
        Some(Err(holder)) if ctx.at_boot => {
            tracing::info!(
                "{} works on the upgrade and settles it: nothing for the recovery at boot to do",
                holder.describe()
            );
            return Ok(finished(Recovery::NothingToDo));
        }
        Some(Err(holder)) => return Err(holder.refusal()),
    };
    let Some(mut journal) = StepJournal::of(ctx)? else {
        return Ok(finished(Recovery::NothingToDo));
    };
    tracing::info!(
        message_id = events::RECOVERY_STARTED,
        imss_state = journal.state.describe(),
        "recovering the upgrade in {}, which is {}",
        journal.path().display(),
        journal.state.describe()
    );
    let recovery = match journal.state {
        RunState::Completed | RunState::RolledBack => Recovery::AlreadySettled(journal.state),
        RunState::RollingBack => {
            rollback::roll_back(ctx, &mut journal, None, lines).await?;
            Recovery::RolledBack
        }
        RunState::InProgress if switched(&journal) => {
            let mut progress = Progress::default();
            let finished = async {
                start_91_again(ctx, lines).await?;
                run_steps(ctx, &mut journal, &mut progress, lines).await
            }
            .await;
            if let Err(err) = finished {
                return Err(rollback::after_failure(ctx, &mut journal, err, lines).await);
            }
            queue_after_work(ctx);
            Recovery::Finished
        }
        RunState::InProgress => {
            let at = journal.steps.last().map_or("start", |r| r.step.name());
            let cause = RollbackCause::Interrupted(format!("the run was interrupted at step {at}"));
            rollback::roll_back(ctx, &mut journal, Some(cause), lines)
                .await
                .context("rolling back the interrupted upgrade")?;
            Recovery::RolledBack
        }
    };
    Ok(finished(recovery))
}

/// Starts 9.1 again after an interruption past the switch (after a power
/// loss nothing runs), once what the killed run left working is settled.
/// At boot the 9.1 units wait for this recovery to end: they are queued,
/// and start (and check themselves) once it exits; the steps left need
/// only files. Otherwise 9.1 must take mail before the steps left finish.
async fn start_91_again(ctx: &Context, lines: &StepLines) -> Result<()> {
    if ctx.at_boot {
        ctx.unblock(rollback::settle_survivors).await?;
        return switch::start_91(ctx, switch::Wait::No).await;
    }
    let line = lines.begin("Starting 9.1 and checking that it takes mail");
    let checked = async {
        ctx.unblock(rollback::settle_survivors).await?;
        switch::start_91(ctx, switch::Wait::UntilUp).await?;
        health::check_91_settled(ctx).await
    }
    .await;
    lines.end(line, if checked.is_ok() { "ok" } else { "failed" });
    checked
}

fn switched(journal: &StepJournal) -> bool {
    journal
        .record(Step::Switch)
        .is_some_and(|r| r.status == StepStatus::Done)
}

fn finished(recovery: Recovery) -> Recovery {
    tracing::info!(
        message_id = events::RECOVERY_FINISHED,
        imss_recovery = recovery.field(),
        "{}",
        recovery.describe()
    );
    recovery
}
