//! The upgrade run: preflight, then the steps in
//! order, each recorded in the step journal before and after; on any
//! failure after the first change, the steps begun are undone newest first
//! ([`crate::flow::upgrade::rollback`]) and the server is back on 7.1 before the command
//! returns.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::files::imss_ini::ProductInfo;
use crate::flow::context::Context;
use crate::flow::gate;
use crate::flow::journal::{RunState, Step, StepJournal};
use crate::flow::lock::UpgradeLock;
use crate::flow::upgrade::runbook::{Progress, run_steps};
use crate::flow::upgrade::steps::switch::{self, BindChoice};
use crate::flow::upgrade::{preflight, rollback, server_units};
use crate::migration::copy::WindowCounts;
use crate::migration::probe::{self, InstalledComponent};
use crate::support::constants::{SOURCE_VERSION, TARGET_VERSION};
use crate::support::exit;
use crate::support::logging::events;
use crate::support::step_lines::StepLines;
use crate::system::pg;

/// How a run ended without an error.
#[derive(Debug)]
pub enum Outcome {
    /// 9.1 runs and takes mail.
    Upgraded(UpgradeReport),
    /// Preflight found inhibitors; nothing was changed.
    Inhibited(preflight::Report),
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Upgraded(_) => exit::OK,
            Outcome::Inhibited(report) => report.exit_code(),
        }
    }
}

/// What a completed upgrade did, for the administrator and for automation.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeReport {
    /// When the run began.
    pub started_at: DateTime<Utc>,
    /// When the last step finished.
    pub finished_at: DateTime<Utc>,
    /// From stopping the 7.1 scanner to the 9.1 scanner's accepted
    /// health-check mail, in milliseconds.
    pub mail_downtime_ms: u64,
    /// Each step and how long it took, in milliseconds.
    pub steps: Vec<(Step, u64)>,
    /// Rows of the last 24 hours migrated.
    pub window: WindowCounts,
    /// Selections whose counts and checksums matched.
    pub verified: usize,
    /// Pattern files and engines as 9.1 lists them after the upgrade: 7.1's
    /// versions, carried over (empty when they could not be read; the
    /// journal says why).
    pub pattern_and_engine_versions: Vec<InstalledComponent>,
    /// The bundled BIND's ports and why (none where the payload has none).
    pub bundled_bind: Option<BindChoice>,
    /// Whether 9.1 runs EUQ: where 7.1 had it enabled (none when the
    /// database did not say).
    pub euq_enabled: Option<bool>,
}

/// Runs the whole upgrade of the server under the context's root. The
/// preflight report goes to `show_preflight` once, before any change; step
/// lines go to `lines`.
pub async fn run(
    ctx: &Context,
    lines: &StepLines,
    show_preflight: impl FnOnce(&preflight::Report) -> Result<()>,
) -> Result<Outcome> {
    // A second run is refused here, naming the command at work, rather
    // than inhibited by the journal that command writes.
    let held = UpgradeLock::take_existing(ctx)?;
    let line = lines.begin("Checking the server (preflight)");
    let report = preflight::run(ctx).await?;
    preflight::save(ctx, &report)?;
    lines.end(line, report.outcome_word());
    show_preflight(&report)?;
    if report.exit_code() != exit::OK {
        return Ok(Outcome::Inhibited(report));
    }
    let product = ProductInfo::load(&ctx.root)?;
    // Held until the run returns: no recover or rollback starts under it.
    let _lock = prepare_backup_dir(ctx, held)?;
    // Before the journal exists: a boot at any later moment settles the run.
    server_units::install_upgrade_units(ctx)?;
    let mut journal = StepJournal::create(&ctx.layout.state_dir()?)?;
    tracing::info!(
        message_id = events::UPGRADE_STARTED,
        imss_build = product.build,
        imss_journal = %journal.path().display(),
        "upgrade of IMSS {SOURCE_VERSION} build {} to 9.1 begins",
        product.build
    );
    let mut progress = Progress::default();
    let ran = async {
        crate::fail_point!("run-journal-created");
        run_steps(ctx, &mut journal, &mut progress, lines).await
    }
    .await;
    match ran {
        Ok(()) => {
            let mut report = upgrade_report(progress, &journal);
            add_what_91_says(ctx, &mut report).await;
            queue_after_work(ctx);
            report.bundled_bind = switch::bind_choice(&ctx.root).unwrap_or_else(|err| {
                tracing::warn!("reading the bundled BIND's ports for the report: {err:#}");
                None
            });
            tracing::info!(
                message_id = events::UPGRADE_COMPLETED,
                imss_duration_ms = (report.finished_at - report.started_at).num_milliseconds(),
                imss_downtime_ms = report.mail_downtime_ms,
                "the upgrade to 9.1 is complete: 9.1 runs and takes mail"
            );
            Ok(Outcome::Upgraded(report))
        }
        Err(err) => Err(rollback::after_failure(ctx, &mut journal, err, lines).await),
    }
}

/// What the 9.1 database says for the report: its pattern files and
/// engines (7.1's versions, carried over) and whether it runs EUQ, asked
/// on one connection. The upgrade is done either way: what cannot be read
/// is left out, with a warning.
async fn add_what_91_says(ctx: &Context, report: &mut UpgradeReport) {
    let connected = async { anyhow::Ok(pg::connect(&ctx.database()?).await?) };
    let client = match connected.await {
        Ok(client) => client,
        Err(err) => {
            tracing::warn!("reading 9.1's database for the report: {err:#}");
            return;
        }
    };
    match probe::installed_components(&client, TARGET_VERSION).await {
        Ok(listed) => report.pattern_and_engine_versions = listed,
        Err(err) => {
            tracing::warn!("reading 9.1's pattern and engine versions for the report: {err:#}")
        }
    }
    report.euq_enabled = probe::euq_in_use_91(&client)
        .await
        .inspect_err(|err| tracing::warn!("reading 9.1's EUQ setting for the report: {err:#}"))
        .ok();
}

/// The backup directory, root's and 0700, made for this run and recorded
/// in the state directory, with the upgrade locked and nothing of an
/// earlier run in the way: a rolled-back attempt is kept beside it under
/// another name.
fn prepare_backup_dir(ctx: &Context, held: Option<UpgradeLock>) -> Result<UpgradeLock> {
    let lock = match held {
        Some(lock) => lock,
        None => UpgradeLock::take_creating(ctx)?,
    };
    if let Some(earlier) = StepJournal::of(ctx)? {
        let earlier = gate::admit(ctx, Some(earlier), &[RunState::RolledBack], "upgrade")?;
        let kept = crate::flow::layout::backup::BackupDir::of(&ctx.layout)
            .keep_rolled_back_attempt(earlier.started_at)?;
        tracing::info!(
            "the rolled-back earlier attempt is kept in {}",
            kept.display()
        );
    }
    crate::flow::layout::backup::BackupDir::of(&ctx.layout).create()?;
    Ok(lock)
}

/// Queues what follows a completed upgrade in the background: the
/// snapshot's compression and the transfer of the older history. Neither
/// is needed for 9.1 to run, so a failure to queue one only says how to
/// start it.
pub(super) fn queue_after_work(ctx: &Context) {
    if let Err(err) = server_units::queue_compression(ctx) {
        tracing::warn!(
            "the snapshot stays a plain tar until `imss-upgrade compress-snapshot` runs: {err:#}"
        );
    }
    if let Err(err) = server_units::queue_transfer(ctx) {
        tracing::warn!(
            "the older history moves at the next boot, or with `systemctl start \
             imss-upgrade-transfer.service`: {err:#}"
        );
    }
}

/// The report of the steps `progress` saw run, in the run `journal` records.
fn upgrade_report(progress: Progress, journal: &StepJournal) -> UpgradeReport {
    let migrate = progress.migrate;
    UpgradeReport {
        started_at: journal.started_at,
        finished_at: Utc::now(),
        mail_downtime_ms: progress.downtime.map_or(0, |d| d.as_millis() as u64),
        steps: progress
            .steps
            .into_iter()
            .map(|(step, took)| (step, took.as_millis() as u64))
            .collect(),
        window: migrate.as_ref().map(|m| m.window).unwrap_or_default(),
        verified: migrate.map_or(0, |m| m.verified.len()),
        pattern_and_engine_versions: Vec::new(),
        bundled_bind: None,
        euq_enabled: None,
    }
}
