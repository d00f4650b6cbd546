//! `imss-upgrade package SCRIPTLET RPM_ARG`: what the upgrade package's
//! scriptlets run (`rpm/`). What is done is [`crate::flow::package`]'s; this says
//! what happens, on stdout, which dnf prints once the scriptlet ends, and
//! on the terminal, if there is one, where to follow the work before it
//! starts.

use std::io::Write;

use anyhow::Result;

use crate::flow::context::Context;
use crate::flow::journal::RunState;
use crate::flow::package::{self, Ending, Note, Scriptlet};
use crate::support::exit;
use crate::support::step_lines::StepLines;

use super::upgrade;

/// Runs `scriptlet` with rpm's first argument `rpm_arg`.
pub async fn scriptlet(ctx: &Context, scriptlet: Scriptlet, rpm_arg: u32) -> Result<u8> {
    let ending = package::run(ctx, scriptlet, rpm_arg, &StepLines::stderr(), say).await?;
    Ok(match ending {
        Ending::Nothing(why) => {
            println!("imss-upgrade: {why}");
            exit::OK
        }
        Ending::Refused(why) => {
            eprintln!("imss-upgrade: {why}");
            exit::FAILED
        }
        Ending::Runs { on } => {
            println!("imss-upgrade: IMSS {on} runs");
            exit::OK
        }
        Ending::StaysOn { on, state, failure } => {
            eprintln!(
                "imss-upgrade: IMSS stays on {on} (upgrade: {}): {}",
                state.map_or("not started", RunState::describe),
                failure.as_deref().unwrap_or("see the report above")
            );
            exit::FAILED
        }
    })
}

/// Prints what the scriptlet has to say as it happens.
fn say(note: Note<'_>) -> Result<()> {
    match note {
        Note::WaitedFor(unit) => println!("imss-upgrade: waited for {unit} to end"),
        Note::Settling => {
            println!("imss-upgrade: an earlier run was interrupted; settling it first")
        }
        Note::Settled(recovery) => upgrade::print_recovery(recovery),
        Note::Begins { what, unit: None } => {
            println!("imss-upgrade: {what} (no systemd here: the work runs in this scriptlet)")
        }
        Note::Begins {
            what,
            unit: Some(name),
        } => {
            let follow = format!(
                "imss-upgrade: {what} in {name}; rpm shows its output when it ends. \
                 Follow it live with `journalctl -f -u {name}` or `imss-upgrade status`."
            );
            tell_terminal(&follow);
            println!("{follow}");
        }
        Note::Preflight(report) => upgrade::print_preflight(report, false)?,
        Note::Upgraded(report) => upgrade::print_upgrade(report),
        Note::RolledBack => upgrade::print_rolled_back(),
        Note::Failed(err) => println!("imss-upgrade: {err:#}"),
        Note::UnitEnded { unit, run } => {
            print!("{}", run.output);
            if !run.succeeded {
                println!(
                    "imss-upgrade: {unit} ended with exit status {}; `journalctl -u {unit}` has \
                     every line",
                    run.exit_status
                );
            }
        }
    }
    Ok(())
}

/// Writes `line` to the controlling terminal, if there is one: dnf holds
/// a scriptlet's own output until it ends.
fn tell_terminal(line: &str) {
    if let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/tty") {
        let _ = writeln!(tty, "{line}");
    }
}
