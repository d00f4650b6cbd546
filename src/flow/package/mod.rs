//! What the upgrade package's scriptlets do (README, "The package"):
//! [`decide`] from rpm's first argument and the step journal, then [`run()`]
//! the decision, settling an interrupted run first and deciding again,
//! and read how it ended from the step journal, never from an exit status.
//!
//! Under systemd the upgrade and the rollback run as oneshot units
//! (`imss-upgrade-run.service`, `imss-upgrade-rollback.service`) that the
//! scriptlet waits for: a dropped SSH session kills dnf's scriptlets, never
//! the work, and the work's output is in the journal as it happens.
//! Without systemd (a container, `--root`) the work runs in the scriptlet,
//! with a hang-up ignored. What there is to say on the way is handed to the
//! caller as [`Note`]s, in order.

mod decision;

pub use decision::{Decision, HELPERS_PACKAGE, MAIN_PACKAGE, Scriptlet, decide};

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::files::units::{self, Unit};
use crate::flow::context::Context;
use crate::flow::journal::{RunState, StepJournal};
use crate::flow::upgrade::recover::{self, Recovery};
use crate::flow::upgrade::run::{self, Outcome, UpgradeReport};
use crate::flow::upgrade::{preflight, rollback};
use crate::support::step_lines::StepLines;
use crate::system::systemd::{self, UnitRun};

/// What a scriptlet has to say as it works, in the order it happens (dnf
/// shows a scriptlet's output once it ends).
#[derive(Debug)]
pub enum Note<'a> {
    /// The unit of an earlier scriptlet (whose dnf went away) was still at
    /// work; it has ended now.
    WaitedFor(&'static str),
    /// An earlier run was interrupted: it is settled first.
    Settling,
    /// How it was settled.
    Settled(Recovery),
    /// The work begins: `what`, for people, in `unit` under systemd, or in
    /// this process where no systemd manages the server (`None`).
    Begins {
        /// The work, for people.
        what: &'static str,
        /// The unit it runs in.
        unit: Option<&'static str>,
    },
    /// The preflight report of an upgrade run in this process, before any
    /// change.
    Preflight(&'a preflight::Report),
    /// An upgrade run in this process ended on 9.1.
    Upgraded(&'a UpgradeReport),
    /// A rollback run in this process ended on 7.1.
    RolledBack,
    /// The work run in this process failed; the step journal says where
    /// the server is.
    Failed(&'a anyhow::Error),
    /// The work's unit ended.
    UnitEnded {
        /// The unit.
        unit: &'static str,
        /// How it ended, and what its program wrote.
        run: &'a UnitRun,
    },
}

/// How a scriptlet ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// There was nothing to do; why. The scriptlet succeeds.
    Nothing(String),
    /// The scriptlet refuses, so rpm keeps the package; why, and what to do.
    Refused(String),
    /// The step journal of this run says it ended as wanted: IMSS `on` runs.
    Runs {
        /// The version that runs.
        on: &'static str,
    },
    /// It did not end as wanted: IMSS stays on `on`.
    StaysOn {
        /// The version that runs.
        on: &'static str,
        /// This run's state (`None`: no run began).
        state: Option<RunState>,
        /// Why it failed, as the step journal recorded it.
        failure: Option<String>,
    },
}

/// Runs `scriptlet` with rpm's first argument `rpm_arg`: step lines of
/// work done in this process go to `lines`, everything else there is to
/// say to `say`, whose error is the scriptlet's.
pub async fn run(
    ctx: &Context,
    scriptlet: Scriptlet,
    rpm_arg: u32,
    lines: &StepLines,
    mut say: impl FnMut(Note<'_>) -> Result<()>,
) -> Result<Ending> {
    // A hang-up must not end a scriptlet that waits for, or does, the
    // work; tokio's handler replaces the default action (termination).
    let _hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut recovered = false;
    loop {
        // Read only where `rpm_arg` leaves the decision to it.
        let mut state = None;
        let decision = decide(scriptlet, rpm_arg, || {
            state = run_state(ctx)?;
            Ok(state)
        })?;
        match decision {
            Decision::Nothing(why) => return Ok(Ending::Nothing(why)),
            Decision::Refuse(why) => return Ok(Ending::Refused(why)),
            // A run whose dnf went away (a hang-up) may still be at work.
            Decision::RecoverFirst if still_working(ctx, &mut say)? => {}
            Decision::RecoverFirst if !recovered => {
                say(Note::Settling)?;
                say(Note::Settled(recover::recover(ctx, lines).await?))?;
                recovered = true;
            }
            Decision::RecoverFirst => anyhow::bail!(
                "the upgrade journal in {} still says {} after recovery: run \
                 `imss-upgrade recover` and read its message",
                ctx.layout.backup_dir()?.display(),
                state.map_or("nothing", RunState::describe)
            ),
            Decision::Upgrade => {
                let since = Utc::now();
                let what = "upgrading IMSS 7.1 to 9.1";
                do_work(ctx, &units::RUN, what, lines, &mut say).await?;
                let ending = ended_on(ctx, since, RunState::Completed, "9.1", "7.1")?;
                // Between the upgrade and the end of rpm's transaction.
                crate::fail_point!("package-upgraded");
                return Ok(ending);
            }
            Decision::RollBack => {
                let what = "rolling IMSS back to 7.1";
                do_work(ctx, &units::ROLLBACK, what, lines, &mut say).await?;
                return ended_on(
                    ctx,
                    DateTime::<Utc>::MIN_UTC,
                    RunState::RolledBack,
                    "7.1",
                    "9.1",
                );
            }
        }
    }
}

/// Whether the upgrade's or the rollback's unit was still at work, now
/// waited for: a second `dnf install` or `dnf remove` after the first one
/// went away finds the first one's work, not an interrupted run.
fn still_working(ctx: &Context, say: &mut impl FnMut(Note<'_>) -> Result<()>) -> Result<bool> {
    if !systemd::manages(&ctx.root) {
        return Ok(false);
    }
    let mut waited = false;
    for unit in units::PACKAGE {
        if systemd::wait_while_running(unit.name)? {
            say(Note::WaitedFor(unit.name))?;
            waited = true;
        }
    }
    Ok(waited)
}

/// The step journal's state, if there is a journal.
fn run_state(ctx: &Context) -> Result<Option<RunState>> {
    Ok(StepJournal::of(ctx)?.map(|journal| journal.state))
}

/// Does the work of `unit` (`what`, for people): in the unit under
/// systemd, here without it. Its outcome is read from the journal after,
/// so a failure of the work here is only said.
async fn do_work(
    ctx: &Context,
    unit: &Unit,
    what: &'static str,
    lines: &StepLines,
    say: &mut impl FnMut(Note<'_>) -> Result<()>,
) -> Result<()> {
    if !systemd::manages(&ctx.root) {
        say(Note::Begins { what, unit: None })?;
        let result = if *unit == units::RUN {
            match run::run(ctx, lines, |report| say(Note::Preflight(report))).await {
                Ok(Outcome::Upgraded(report)) => say(Note::Upgraded(&report)),
                Ok(Outcome::Inhibited(_)) => Ok(()),
                Err(err) => Err(err),
            }
        } else {
            rollback::roll_back_completed(ctx, lines)
                .await
                .and_then(|()| say(Note::RolledBack))
        };
        if let Err(err) = result {
            say(Note::Failed(&err))?;
        }
        return Ok(());
    }
    say(Note::Begins {
        what,
        unit: Some(unit.name),
    })?;
    let run = ctx
        .unblock({
            let name = unit.name;
            move |_| systemd::run_unit(name)
        })
        .await?;
    say(Note::UnitEnded {
        unit: unit.name,
        run: &run,
    })
}

/// How the run begun after `since` ended: `wanted` in the step journal (the
/// server runs `on`), or not (it runs `otherwise`; an earlier attempt's
/// journal is not this run's).
fn ended_on(
    ctx: &Context,
    since: DateTime<Utc>,
    wanted: RunState,
    on: &'static str,
    otherwise: &'static str,
) -> Result<Ending> {
    let journal = StepJournal::of(ctx)?.filter(|journal| journal.started_at >= since);
    let state = journal.as_ref().map(|journal| journal.state);
    if state == Some(wanted) {
        return Ok(Ending::Runs { on });
    }
    Ok(Ending::StaysOn {
        on: otherwise,
        state,
        failure: journal.and_then(|journal| journal.failure),
    })
}
