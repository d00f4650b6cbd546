//! The runbook: the steps of the upgrade in one table, each with what it
//! does, how it is undone and the titles of both, and the one wrapper that
//! the step loop ([`run_steps`]) and the undo loop ([`undo_steps`]) both go
//! through: the journal's record before and after, the step line, the
//! journal events and the fail points `before-STEP` and `after-STEP` (or
//! `before-undo-STEP` and `after-undo-STEP`).
//!
//! Adding a step: its module under `steps/`, its row here, and its name in
//! the journal ([`Step`], with the [`Undo`] note it records before its first
//! change).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::flow::context::Context;
use crate::flow::journal::{Step, StepJournal, StepRecord, Undo};
use crate::flow::upgrade::steps::migrate::MigrateReport;
use crate::flow::upgrade::steps::{migrate, presync, quiesce, register_rollback, snapshot, switch};
use crate::migration::selection::window_cutoff;
use crate::support::logging::events;
use crate::support::step_lines::StepLines;

/// One row of the runbook.
pub struct Entry {
    /// The step, as the journal records it.
    pub step: Step,
    /// What the step does, in a few words, for step lines and `status`.
    pub title: &'static str,
    /// What undoing it does, for step lines.
    pub undo_title: &'static str,
    /// Whether the senders' mail downtime begins before this step or ends
    /// after it.
    pub downtime: Downtime,
    run: RunFn,
    undo: UndoFn,
}

/// Where a step stands in the mail downtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downtime {
    /// Mail flows through it (7.1's before, 9.1's after).
    Outside,
    /// The downtime begins as it begins (the 7.1 scanner stops).
    Begins,
    /// Inside it.
    Inside,
    /// The downtime ends as it ends (9.1 took its health-check mail).
    Ends,
}

/// What a step hands back for the report.
pub enum StepOutput {
    /// Nothing.
    Nothing,
    /// The migrate step's counts and checksums.
    Migrated(MigrateReport),
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;
type RunFn = for<'a> fn(&'a Context, &'a mut StepJournal) -> Boxed<'a, StepOutput>;
type UndoFn = for<'a> fn(&'a Context, &'a Undo, &'a StepJournal) -> Boxed<'a, ()>;

/// The steps, in the order they run.
pub const RUNBOOK: [Entry; 6] = [
    Entry {
        step: Step::Presync,
        title: "Copying the last 24 hours while 7.1 takes mail",
        undo_title: "Removing the staged 9.1 database",
        downtime: Downtime::Outside,
        run: |ctx, journal| Box::pin(nothing(presync::run(ctx, journal))),
        undo: |ctx, undo, _| {
            Box::pin(async move {
                match undo {
                    Undo::RemoveStagedCluster { data_dir } => presync::undo(ctx, data_dir).await,
                    other => mismatched(Step::Presync, other),
                }
            })
        },
    },
    Entry {
        step: Step::Quiesce,
        title: "Stopping the 7.1 services",
        undo_title: "Starting 7.1 and checking that it takes mail",
        downtime: Downtime::Begins,
        run: |ctx, journal| Box::pin(nothing(quiesce::run(ctx, journal))),
        undo: |ctx, undo, _| {
            Box::pin(async move {
                match undo {
                    Undo::Restart71 { disabled_71_units } => {
                        quiesce::undo(ctx, disabled_71_units).await
                    }
                    other => mismatched(Step::Quiesce, other),
                }
            })
        },
    },
    Entry {
        step: Step::Snapshot,
        title: "Snapshotting the 7.1 program tree and database",
        undo_title: "Moving the 7.1 database back",
        downtime: Downtime::Inside,
        run: |ctx, journal| Box::pin(nothing(snapshot::run(ctx, journal))),
        undo: |ctx, undo, _| {
            Box::pin(async move {
                match undo {
                    Undo::MoveDataDirBack { original, moved_to } => {
                        snapshot::undo(ctx, original, moved_to).await
                    }
                    other => mismatched(Step::Snapshot, other),
                }
            })
        },
    },
    Entry {
        step: Step::Migrate,
        title: "Migrating configuration and the last 24 hours",
        undo_title: "Removing the 9.1 database",
        downtime: Downtime::Inside,
        run: |ctx, journal| {
            Box::pin(async move { Ok(StepOutput::Migrated(migrate::run(ctx, journal).await?)) })
        },
        undo: |ctx, undo, journal| {
            Box::pin(async move {
                match undo {
                    Undo::RemoveTargetCluster { data_dir } => {
                        // 9.1 took mail once the switch began: it goes back to 7.1.
                        let carry_back = journal
                            .record(Step::Switch)
                            .map(|_| window_cutoff(journal.started_at));
                        migrate::undo(ctx, data_dir, carry_back).await
                    }
                    other => mismatched(Step::Migrate, other),
                }
            })
        },
    },
    Entry {
        step: Step::Switch,
        title: "Switching to 9.1 and checking that it takes mail",
        undo_title: "Restoring the 7.1 program tree",
        downtime: Downtime::Ends,
        run: |ctx, journal| Box::pin(nothing(switch::run(ctx, journal))),
        undo: |ctx, undo, journal| {
            Box::pin(async move {
                match undo {
                    Undo::RestoreProgramTree {
                        staging,
                        replaced,
                        created,
                    } => {
                        let pin = journal.snapshot.as_ref();
                        switch::undo(ctx, staging, replaced, created, pin).await
                    }
                    other => mismatched(Step::Switch, other),
                }
            })
        },
    },
    Entry {
        step: Step::RegisterRollback,
        title: "Registering the rollback",
        undo_title: "Removing the rollback registration",
        downtime: Downtime::Outside,
        run: |ctx, journal| Box::pin(nothing(register_rollback::run(ctx, journal))),
        undo: |ctx, undo, _| {
            Box::pin(async move {
                match undo {
                    Undo::RemoveRollbackManifest { path } => {
                        register_rollback::undo(ctx, path).await
                    }
                    other => mismatched(Step::RegisterRollback, other),
                }
            })
        },
    },
];

/// The runbook's row for `step`.
pub fn entry(step: Step) -> &'static Entry {
    RUNBOOK
        .iter()
        .find(|entry| entry.step == step)
        .expect("every step has a row in the runbook")
}

async fn nothing<T>(ran: impl Future<Output = Result<T>>) -> Result<StepOutput> {
    ran.await.map(|_| StepOutput::Nothing)
}

fn mismatched(step: Step, undo: &Undo) -> Result<()> {
    bail!(
        "the upgrade journal holds a note of step {} ({undo:?}) for step {step}: it was not \
         written by this imss-upgrade; leave it in place and contact support",
        undo.step()
    )
}

/// Timings and reports gathered while the steps run.
#[derive(Debug, Default)]
pub struct Progress {
    /// Each step done and how long it took.
    pub steps: Vec<(Step, Duration)>,
    /// The senders' mail downtime, once it ended in this process.
    pub downtime: Option<Duration>,
    /// The migrate step's report, when it ran in this process.
    pub migrate: Option<MigrateReport>,
    downtime_began: Option<Instant>,
}

/// Runs the steps from the journal's next one to the last.
pub async fn run_steps(
    ctx: &Context,
    journal: &mut StepJournal,
    progress: &mut Progress,
    lines: &StepLines,
) -> Result<()> {
    while let Some(step) = journal.next_step() {
        let entry = entry(step);
        let began = Instant::now();
        if entry.downtime == Downtime::Begins {
            progress.downtime_began = Some(began);
        }
        if let StepOutput::Migrated(report) =
            pass(ctx, journal, lines, step, Direction::Forward).await?
        {
            progress.migrate = Some(report);
        }
        if entry.downtime == Downtime::Ends {
            progress.downtime = progress.downtime_began.map(|t| t.elapsed());
        }
        progress.steps.push((step, began.elapsed()));
    }
    Ok(())
}

/// Undoes the steps the journal says are left, newest first. The journal
/// must be rolling back.
pub async fn undo_steps(ctx: &Context, journal: &mut StepJournal, lines: &StepLines) -> Result<()> {
    for record in journal.steps_to_undo() {
        pass(ctx, journal, lines, record.step, Direction::Back).await?;
    }
    Ok(())
}

/// Undoes one step as its record's note says, and nothing when the step
/// made no change yet; the journal is left as it is (the undo loop records
/// the undo around this).
pub async fn undo_noted(ctx: &Context, record: &StepRecord, journal: &StepJournal) -> Result<()> {
    match &record.undo {
        Some(undo) => (entry(record.step).undo)(ctx, undo, journal).await,
        None => Ok(()),
    }
}

/// Which way a step is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Back,
}

/// Takes `step` one way: recorded in the journal before and after, with its
/// step line, its journal events and its fail points.
async fn pass(
    ctx: &Context,
    journal: &mut StepJournal,
    lines: &StepLines,
    step: Step,
    direction: Direction,
) -> Result<StepOutput> {
    let entry = entry(step);
    let title = match direction {
        Direction::Forward => entry.title,
        Direction::Back => entry.undo_title,
    };
    let line = lines.begin(title);
    let began = Instant::now();
    match direction {
        Direction::Forward => {
            journal.begin(step)?;
            tracing::info!(
                message_id = events::STEP_STARTED,
                imss_step = step.name(),
                "step {step} begins: {title}"
            );
        }
        Direction::Back => {
            journal.begin_undo(step)?;
            tracing::info!(
                message_id = events::UNDO_STARTED,
                imss_step = step.name(),
                "undoing step {step}: {title}"
            );
        }
    }
    let done = async {
        match direction {
            Direction::Forward => crate::fail_point!(&format!("before-{step}")),
            Direction::Back => crate::fail_point!(&format!("before-undo-{step}")),
        }
        let output = match direction {
            Direction::Forward => (entry.run)(ctx, journal).await?,
            Direction::Back => {
                let record = journal.record(step).cloned();
                if let Some(record) = record {
                    undo_noted(ctx, &record, journal).await?;
                }
                StepOutput::Nothing
            }
        };
        match direction {
            Direction::Forward => crate::fail_point!(&format!("after-{step}")),
            Direction::Back => crate::fail_point!(&format!("after-undo-{step}")),
        }
        Ok::<_, anyhow::Error>(output)
    }
    .await;
    let output = match done {
        Ok(output) => output,
        Err(err) => {
            lines.end(line, "failed");
            return Err(match direction {
                Direction::Forward => {
                    tracing::error!(
                        message_id = events::STEP_FAILED,
                        imss_step = step.name(),
                        "step {step} failed; the cause follows"
                    );
                    err.context(format!("step {step}"))
                }
                Direction::Back => {
                    tracing::error!(
                        message_id = events::ROLLBACK_FAILED,
                        imss_step = step.name(),
                        "the rollback stopped while undoing step {step}"
                    );
                    err.context(format!("undoing step {step}"))
                }
            });
        }
    };
    let took = began.elapsed();
    match direction {
        Direction::Forward => {
            journal.finish(step)?;
            lines.end(line, "ok");
            tracing::info!(
                message_id = events::STEP_FINISHED,
                imss_step = step.name(),
                imss_duration_ms = took.as_millis() as u64,
                "step {step} done in {:.2} s",
                took.as_secs_f64()
            );
        }
        Direction::Back => {
            journal.finish_undo(step)?;
            lines.end(line, "ok");
            tracing::info!(
                message_id = events::UNDO_FINISHED,
                imss_step = step.name(),
                imss_duration_ms = took.as_millis() as u64,
                "step {step} undone"
            );
        }
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runbook_has_every_step_once_in_the_journals_order() {
        let steps: Vec<Step> = RUNBOOK.iter().map(|entry| entry.step).collect();
        assert_eq!(steps, Step::ALL);
    }

    #[test]
    fn the_downtime_begins_once_and_ends_once_after_it_began() {
        let at = |kind| RUNBOOK.iter().position(|entry| entry.downtime == kind);
        let (begins, ends) = (at(Downtime::Begins).unwrap(), at(Downtime::Ends).unwrap());
        assert!(begins < ends);
        for (index, entry) in RUNBOOK.iter().enumerate() {
            let inside = index > begins && index < ends;
            assert_eq!(entry.downtime == Downtime::Inside, inside, "{}", entry.step);
        }
    }
}
