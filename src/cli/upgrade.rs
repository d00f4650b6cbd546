//! The commands that run the flow: `preflight`, `run`, `recover`,
//! `imss-rollback`, `compress-snapshot` and `finalize`. Each prints for people (or
//! JSON for automation) and returns the documented exit code.

use anyhow::Result;

use crate::flow::after::compress;
use crate::flow::after::finalize::FinalizeOptions;
use crate::flow::context::Context;
use crate::flow::upgrade::preflight::{self, Report};
use crate::flow::upgrade::recover::{self, Recovery};
use crate::flow::upgrade::rollback;
use crate::flow::upgrade::run::{self, Outcome, UpgradeReport};
use crate::support::exit;
use crate::support::step_lines::StepLines;

use super::render;

/// `imss-upgrade preflight`: the report on stdout, saved under the root.
pub async fn preflight(ctx: &Context, json: bool) -> Result<u8> {
    let report = preflight::run(ctx).await?;
    preflight::save(ctx, &report)?;
    print_preflight(&report, json)?;
    Ok(report.exit_code())
}

/// Prints the preflight report, as text or JSON.
pub(super) fn print_preflight(report: &Report, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", render::preflight(report));
    }
    Ok(())
}

/// `imss-upgrade run`: step lines on stderr; on stdout the preflight report
/// once, then the upgrade report (with `--json`, one JSON document: the
/// upgrade report, or the preflight report when it inhibited).
pub async fn run(ctx: &Context, json: bool) -> Result<u8> {
    let lines = StepLines::stderr();
    let outcome = run::run(ctx, &lines, |report| {
        if json {
            Ok(())
        } else {
            print_preflight(report, false)
        }
    })
    .await?;
    match &outcome {
        Outcome::Inhibited(report) if json => print_preflight(report, true)?,
        Outcome::Inhibited(_) => {}
        Outcome::Upgraded(report) if json => {
            println!("{}", serde_json::to_string_pretty(report)?)
        }
        Outcome::Upgraded(report) => print_upgrade(report),
    }
    Ok(outcome.exit_code())
}

/// Prints the report of a completed upgrade, after the preflight report.
pub(super) fn print_upgrade(report: &UpgradeReport) {
    print!("\n{}", render::upgrade(report));
}

/// `imss-upgrade recover`.
pub async fn recover(ctx: &Context) -> Result<u8> {
    print_recovery(recover::recover(ctx, &StepLines::stderr()).await?);
    Ok(exit::OK)
}

/// Prints what a recovery found and did.
pub(super) fn print_recovery(recovery: Recovery) {
    println!("{}", recovery.describe());
}

/// `imss-rollback`.
pub async fn roll_back(ctx: &Context) -> Result<u8> {
    rollback::roll_back_completed(ctx, &StepLines::stderr()).await?;
    print_rolled_back();
    Ok(exit::OK)
}

/// Prints that a rollback ended on 7.1.
pub(super) fn print_rolled_back() {
    println!("rolled back: IMSS 7.1 runs and takes mail again");
}

/// `imss-upgrade compress-snapshot`.
pub async fn compress_snapshot(ctx: &Context, preset: u32, threads: u32) -> Result<u8> {
    let size = ctx
        .unblock(move |ctx| compress::compress_snapshot(ctx, preset, threads))
        .await?;
    println!("snapshot compressed: {size} bytes");
    Ok(exit::OK)
}

/// `imss-upgrade finalize`: prints what it removed and exported.
pub async fn finalize(ctx: &Context, options: &FinalizeOptions) -> Result<u8> {
    let report = crate::flow::after::finalize::finalize(ctx, options).await?;
    if let Some((dir, size)) = &report.exported {
        println!(
            "The backup was exported to {} ({} MiB, archive and manifest, verified).",
            dir.display(),
            size >> 20
        );
    }
    match report.rows_left_behind {
        Some(rows) if rows >= 0 => println!(
            "Forced: {rows} rows of the older 7.1 history were not in 9.1 and went with the backup."
        ),
        Some(_) => println!("Forced: the older 7.1 history not yet in 9.1 went with the backup."),
        None => {}
    }
    println!(
        "The upgrade is finalized: {} is deleted, 9.1 keeps running, and rollback to 7.1 is no \
         longer offered.",
        report.removed.display()
    );
    Ok(exit::OK)
}
