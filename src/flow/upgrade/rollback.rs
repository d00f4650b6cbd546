//! Rolling back to 7.1: every step begun is undone, newest first, each
//! undo recorded in the step journal before and after, so that a rollback
//! that is itself interrupted is finished by `recover`. Three ways in: a
//! step of a run failed ([`after_failure`]), `recover` found a run
//! interrupted before the switch, or the administrator asked for it with
//! `imss-rollback` ([`roll_back_completed`]).

use anyhow::{Context as _, Result, bail};

use crate::flow::context::Context;
use crate::flow::gate;
use crate::flow::journal::{RollbackCause, RunState, Step, StepJournal, StepStatus, Undo};
use crate::flow::upgrade::rollback_manifest::RollbackManifest;
use crate::flow::upgrade::runbook::undo_steps;
use crate::flow::upgrade::server_units;
use crate::snapshot::EntryKind;
use crate::support::constants::{BUNDLED_PG_DIR, PROGRAM_DIR};
use crate::support::filesystems::file_system_of;
use crate::support::logging::events;
use crate::support::step_lines::StepLines;

/// Rolls back after `err` failed a run; returns the error to report, which
/// says which step failed, why, and where the server is now.
pub(super) async fn after_failure(
    ctx: &Context,
    journal: &mut StepJournal,
    err: anyhow::Error,
    lines: &StepLines,
) -> anyhow::Error {
    let failed_step = journal
        .steps
        .iter()
        .rev()
        .find(|r| r.status == StepStatus::Started)
        .map_or("start", |r| r.step.name());
    let cause = RollbackCause::StepFailed(format!("{err:#}"));
    let rolled_back = roll_back(ctx, journal, Some(cause), lines).await;
    tracing::error!(
        message_id = events::UPGRADE_FAILED,
        imss_step = failed_step,
        imss_rolled_back = if rolled_back.is_ok() { "yes" } else { "no" },
        "the upgrade failed at step {failed_step}"
    );
    match rolled_back {
        Ok(()) => err.context(format!(
            "the upgrade failed at step {failed_step} and was rolled back: 7.1 runs and takes mail \
             again, exactly as before; fix the cause below, then run the upgrade again"
        )),
        Err(rollback_err) => err.context(format!(
            "the upgrade failed at step {failed_step}, and the rollback stopped too ({rollback_err:#}): \
             mail may be down; fix that, then run `imss-upgrade recover` to finish the rollback"
        )),
    }
}

/// Undoes every step begun, newest first, each recorded in the journal.
/// With a `cause`, a rollback begins (the journal checks that the cause
/// fits the run's state); without one, an interrupted rollback is taken up
/// and finished.
pub async fn roll_back(
    ctx: &Context,
    journal: &mut StepJournal,
    cause: Option<RollbackCause>,
    lines: &StepLines,
) -> Result<()> {
    ctx.unblock(settle_survivors).await?;
    let line = lines.begin("Checking what the rollback needs");
    let ready = ctx.unblock({
        let journal = journal.clone();
        move |ctx| check_ready(ctx, &journal)
    });
    let ready = ready.await;
    lines.end(line, if ready.is_ok() { "ok" } else { "refused" });
    ready?;
    match cause {
        Some(cause) => journal.begin_rollback(cause)?,
        None => journal.resume_rollback()?,
    }
    tracing::info!(
        message_id = events::ROLLBACK_STARTED,
        imss_cause = journal.failure.as_deref().unwrap_or("unknown"),
        "rolling back to 7.1"
    );
    undo_steps(ctx, journal, lines).await?;
    journal.finish_rollback()?;
    tracing::info!(
        message_id = events::ROLLBACK_COMPLETED,
        "rollback done: IMSS 7.1 runs and takes mail again"
    );
    Ok(())
}

/// Stops what a killed run left working before anything is undone or
/// finished: the programs its control script started (the record of the
/// script's process group names them), and it waits for a database server
/// left shutting down, which would otherwise go down under the restart
/// that follows.
pub(super) fn settle_survivors(ctx: &Context) -> Result<()> {
    let stopped = crate::support::cmd::stop_recorded_group(&ctx.layout.control_record()?)
        .context("stopping what the interrupted run's control script left running")?;
    if stopped > 0 {
        tracing::warn!(
            "stopped {stopped} processes the interrupted run's control script left running"
        );
    }
    for data_dir in [
        ctx.layout.data_dir_in_place()?,
        ctx.layout.staged_91_data_dir()?,
        ctx.layout.moved_71_data_dir(),
    ] {
        crate::system::pg::wait_for_shutdown(&ctx.root.resolve_parent(&data_dir)?)?;
    }
    Ok(())
}

/// Room kept free beyond the 7.1 tree a restore writes.
const RESTORE_MARGIN: u64 = 64 << 20;

/// Checks that what the undos left in `journal` will need is there, before
/// the first of them changes anything, and refuses naming every thing
/// missing: the 7.1 data directory (with PostgreSQL 10's `PG_VERSION`) at
/// one of its two places; where the 7.1 program tree comes back from the
/// archive, the archive whole against its manifest, the 7.1 PostgreSQL
/// programs in it, and the room to write it; where it comes back by
/// rename, its PostgreSQL programs there.
fn check_ready(ctx: &Context, journal: &StepJournal) -> Result<()> {
    let pending: Vec<Undo> = journal
        .steps_to_undo()
        .into_iter()
        .filter_map(|record| record.undo)
        .collect();
    let mut missing = Vec::new();
    let restores_tree = pending.iter().find_map(|undo| match undo {
        Undo::RestoreProgramTree { replaced, .. } => Some(replaced.clone()),
        _ => None,
    });
    let from_archive = match &restores_tree {
        Some(replaced) => !ctx.root.resolve_parent(replaced)?.exists(),
        None => false,
    };
    let starts_71 = pending
        .iter()
        .any(|undo| matches!(undo, Undo::Restart71 { .. }));
    if from_archive {
        match journal
            .snapshot_pin()
            .and_then(|pin| crate::snapshot::verify(&ctx.layout.backup_dir()?, pin))
        {
            Err(err) => missing.push(format!("{err:#}")),
            Ok(manifest) => {
                missing.extend(
                    POSTGRESQL_71_PROGRAMS
                        .iter()
                        .map(|program| format!("{BUNDLED_PG_DIR}/bin/{program}"))
                        .filter(|path| {
                            !manifest.entries.iter().any(|entry| {
                                &entry.path == path && matches!(entry.kind, EntryKind::File { .. })
                            })
                        })
                        .map(|path| format!("the snapshot holds no {path}, which 7.1 starts with")),
                );
                let need = manifest
                    .entries
                    .iter()
                    .map(|entry| match entry.kind {
                        EntryKind::File { size, .. } => size,
                        _ => 0,
                    })
                    .sum::<u64>()
                    + RESTORE_MARGIN;
                let (_, mount_point, free) =
                    file_system_of(&ctx.root.resolve_parent(PROGRAM_DIR)?)?;
                if free < need {
                    missing.push(format!(
                        "{} has {} MiB free, and restoring the 7.1 program tree needs {} MiB",
                        mount_point.display(),
                        free >> 20,
                        need >> 20
                    ));
                }
            }
        }
    } else if starts_71 {
        let tree = match &restores_tree {
            Some(replaced) => ctx.root.resolve_parent(replaced)?,
            None => ctx.root.resolve_parent(PROGRAM_DIR)?,
        };
        let bundled = tree.join(
            BUNDLED_PG_DIR
                .trim_start_matches(PROGRAM_DIR)
                .trim_start_matches('/'),
        );
        for program in POSTGRESQL_71_PROGRAMS {
            let path = bundled.join("bin").join(program);
            if !path.is_file() {
                missing.push(format!(
                    "{} is missing, and 7.1 starts with it",
                    path.display()
                ));
            }
        }
    }
    let carries_back = journal.record(Step::Switch).is_some();
    for undo in &pending {
        if let Undo::RemoveTargetCluster { data_dir } = undo
            && carries_back
        {
            let version = ctx.root.resolve_parent(data_dir)?.join("PG_VERSION");
            if std::fs::read_to_string(version).is_ok_and(|v| v.trim() == "15")
                && let Err(err) = crate::system::pg::PgInstall::at(
                    &ctx.target_pg_bin,
                    "the upgrade package's PostgreSQL 15 carries the mail 9.1 processed back to 7.1; \
                     reinstall the package",
                )
            {
                missing.push(format!("{err:#}"));
            }
        }
        if let Undo::MoveDataDirBack { original, moved_to } = undo {
            let at = |path: &std::path::Path| -> Result<bool> {
                let version = ctx.root.resolve_parent(path)?.join("PG_VERSION");
                Ok(std::fs::read_to_string(version).is_ok_and(|v| v.trim() == "10"))
            };
            if !at(original)? && !at(moved_to)? {
                missing.push(format!(
                    "the 7.1 data directory is neither at {} nor at {} (a PostgreSQL 10 PG_VERSION in either)",
                    original.display(),
                    moved_to.display()
                ));
            }
        }
    }
    if !missing.is_empty() {
        bail!(
            "the rollback cannot begin, so nothing was changed: {}; put back what is missing (or free the \
             space), then run it again",
            missing.join("; ")
        );
    }
    Ok(())
}

/// The programs of 7.1's bundled PostgreSQL that starting 7.1 needs.
const POSTGRESQL_71_PROGRAMS: [&str; 2] = ["initdb", "postgres"];

/// Reverts a completed upgrade (`imss-rollback`), after checking that the
/// backup is the one the upgrade registered.
pub async fn roll_back_completed(ctx: &Context, lines: &StepLines) -> Result<()> {
    let backup = ctx.layout.backup_dir()?;
    // The background compression gives way (it may be interrupted and run
    // again); it holds the lock while it works.
    server_units::stop_compression(ctx)?;
    // Held until the rollback returns; refused while a run or recovery works.
    let gate::Admitted {
        lock: _lock,
        mut journal,
    } = gate::require(ctx, &[RunState::Completed], "roll back")?;
    // The transfer reads the 7.1 database in the backup: it stops first,
    // and none starts until the rollback is done (its lock is held).
    let transfer = ctx
        .unblock(crate::flow::after::transfer::control::stop_transfer)
        .await?;
    let line = lines.begin("Checking the backup against its registration");
    let checked = ctx
        .unblock(move |ctx| RollbackManifest::load(&ctx.layout.state_dir()?, &backup).map(drop))
        .await;
    lines.end(line, if checked.is_ok() { "ok" } else { "failed" });
    let rolled_back = match checked {
        Err(err) => Err(err.context("the backup cannot be restored from; 9.1 keeps running")),
        Ok(()) => {
            crate::fail_point!("rollback-checked");
            roll_back(ctx, &mut journal, Some(RollbackCause::Requested), lines).await
        }
    };
    // Refused before any change (the journal still says completed): 9.1
    // keeps running, and so does the transfer.
    if rolled_back.is_err() && journal.state == RunState::Completed {
        transfer.go_on(ctx);
    }
    rolled_back
}
