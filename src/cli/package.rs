//! `imss-upgrade package SCRIPTLET RPM_ARG`: what the upgrade package's
//! scriptlets run (`rpm/`). The decision is [`flow::package`]'s; this does
//! it and says what happened, on stdout, which dnf prints once the
//! scriptlet ends.
//!
//! Under systemd the upgrade and the rollback run as oneshot units
//! (`imss-upgrade-run.service`, `imss-upgrade-rollback.service`) that
//! this waits for: a dropped SSH session kills dnf's scriptlets, never the
//! work, and the work's output is in the journal as it happens. The
//! terminal, if there is one, is told where to follow it before it starts.
//! Without systemd (a container, `--root`) the work runs here, with a
//! hang-up ignored.

use std::io::Write;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::files::units::{self, Unit};
use crate::flow::context::Context;
use crate::flow::journal::{RunState, StepJournal};
use crate::flow::package::{self, Decision, Scriptlet};
use crate::support::exit;
use crate::system::systemd;

use super::upgrade;

/// Runs `scriptlet` with rpm's first argument `rpm_arg`.
pub async fn scriptlet(ctx: &Context, scriptlet: Scriptlet, rpm_arg: u32) -> Result<u8> {
    // A hang-up must not end a scriptlet that waits for, or does, the
    // work; tokio's handler replaces the default action (termination).
    let _hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut recovered = false;
    loop {
        // Read only where `rpm_arg` leaves the decision to it.
        let mut state = None;
        let decision = package::decide(scriptlet, rpm_arg, || {
            state = run_state(ctx)?;
            Ok(state)
        })?;
        match decision {
            Decision::Nothing(why) => {
                println!("imss-upgrade: {why}");
                return Ok(exit::OK);
            }
            Decision::Refuse(why) => {
                eprintln!("imss-upgrade: {why}");
                return Ok(exit::FAILED);
            }
            // A run whose dnf went away (a hang-up) may still be at work.
            Decision::RecoverFirst if still_working(ctx)? => {}
            Decision::RecoverFirst if !recovered => {
                println!("imss-upgrade: an earlier run was interrupted; settling it first");
                upgrade::recover(ctx).await?;
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
                do_work(ctx, &units::RUN, "upgrading IMSS 7.1 to 9.1").await?;
                let code = ended_on(ctx, since, RunState::Completed, "9.1", "7.1")?;
                // Between the upgrade and the end of rpm's transaction.
                crate::fail_point!("package-upgraded");
                return Ok(code);
            }
            Decision::RollBack => {
                do_work(ctx, &units::ROLLBACK, "rolling IMSS back to 7.1").await?;
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
fn still_working(ctx: &Context) -> Result<bool> {
    if !systemd::manages(&ctx.root) {
        return Ok(false);
    }
    let mut waited = false;
    for unit in units::PACKAGE {
        if systemd::wait_while_running(unit.name)? {
            println!("imss-upgrade: waited for {} to end", unit.name);
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
/// systemd, here without it. Its outcome is read from the journal after.
async fn do_work(ctx: &Context, unit: &Unit, what: &str) -> Result<()> {
    if !systemd::manages(&ctx.root) {
        println!("imss-upgrade: {what} (no systemd here: the work runs in this scriptlet)");
        let result = if *unit == units::RUN {
            upgrade::run(ctx, false).await
        } else {
            upgrade::roll_back(ctx).await
        };
        if let Err(err) = result {
            println!("imss-upgrade: {err:#}");
        }
        return Ok(());
    }
    let follow = format!(
        "imss-upgrade: {what} in {name}; rpm shows its output when it ends. \
         Follow it live with `journalctl -f -u {name}` or `imss-upgrade status`.",
        name = unit.name
    );
    tell_terminal(&follow);
    println!("{follow}");
    let run = ctx
        .unblock({
            let name = unit.name;
            move |_| systemd::run_unit(name)
        })
        .await?;
    print!("{}", run.output);
    if !run.succeeded {
        println!(
            "imss-upgrade: {} ended with exit status {}; `journalctl -u {}` has every line",
            unit.name, run.exit_status, unit.name
        );
    }
    Ok(())
}

/// Exit 0 when the step journal of a run begun after `since` says
/// `wanted` (the server runs `on`), 1 with the reason when not (it runs
/// `otherwise`; an earlier attempt's journal is not this run's).
fn ended_on(
    ctx: &Context,
    since: DateTime<Utc>,
    wanted: RunState,
    on: &str,
    otherwise: &str,
) -> Result<u8> {
    let journal = StepJournal::of(ctx)?.filter(|journal| journal.started_at >= since);
    let state = journal.as_ref().map(|journal| journal.state);
    if state == Some(wanted) {
        println!("imss-upgrade: IMSS {on} runs");
        return Ok(exit::OK);
    }
    let why = journal
        .and_then(|journal| journal.failure)
        .unwrap_or_else(|| "see the report above".to_string());
    eprintln!(
        "imss-upgrade: IMSS stays on {otherwise} (upgrade: {}): {why}",
        state.map_or("not started", RunState::describe)
    );
    Ok(exit::FAILED)
}

/// Writes `line` to the controlling terminal, if there is one: dnf holds
/// a scriptlet's own output until it ends.
fn tell_terminal(line: &str) {
    if let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/tty") {
        let _ = writeln!(tty, "{line}");
    }
}
