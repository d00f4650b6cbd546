//! The upgrade run (DESIGN.md section 3): preflight, then the steps in
//! order, each recorded in the step journal before and after; on any
//! failure after the first change, the steps begun are undone newest first
//! and the server is back on 7.1 before the command returns. Also the two
//! other ways into the journal: [`recover`] (an interrupted run, at boot)
//! and [`roll_back_completed`] (`imss-rollback`).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::ProductInfo;
use crate::constants::{BACKUP_DIR, SOURCE_VERSION};
use crate::context::Context;
use crate::exit;
use crate::logging::events;
use crate::preflight;
use crate::schema91::WindowCounts;
use crate::step_journal::{RunState, Step, StepJournal, StepRecord, StepStatus};
use crate::steps::register_rollback::RollbackManifest;
use crate::steps::{migrate, presync, quiesce, register_rollback, snapshot, switch};

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
            Outcome::Inhibited(_) => exit::INHIBITED,
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
}

impl UpgradeReport {
    /// The report as text.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "IMSS upgraded from 7.1 to 9.1 in {:.1} s; mail downtime {:.1} s.\n",
            (self.finished_at - self.started_at).num_milliseconds() as f64 / 1000.0,
            self.mail_downtime_ms as f64 / 1000.0
        );
        for (step, ms) in &self.steps {
            text.push_str(&format!(
                "  {:<18} {:>8.2} s\n",
                step.name(),
                *ms as f64 / 1000.0
            ));
        }
        text.push_str(&format!(
            "  last 24 hours migrated: {} policy events, {} quarantine and {} archive records\n",
            self.window.policy_events, self.window.quarantine, self.window.archive
        ));
        text.push_str(&format!(
            "  {} selections verified by count and checksum\n\
             Rollback: imss-rollback (until the upgrade is finalized).\n",
            self.verified
        ));
        text
    }
}

/// Runs the whole upgrade of the server under the context's root.
pub async fn run(ctx: &Context) -> Result<Outcome> {
    let report = preflight::run(ctx).await?;
    preflight::save(ctx, &report)?;
    if report.exit_code() != exit::OK {
        return Ok(Outcome::Inhibited(report));
    }
    let product = ProductInfo::load(&ctx.root)?;
    let backup = prepare_backup_dir(ctx)?;
    let mut journal = StepJournal::create(&backup)?;
    tracing::info!(
        message_id = events::STEP_STARTED,
        imss_journal = %journal.path().display(),
        "upgrade of IMSS {SOURCE_VERSION} build {} begins",
        product.build
    );
    let mut progress = Progress::default();
    match run_steps(ctx, &mut journal, &mut progress).await {
        Ok(()) => Ok(Outcome::Upgraded(progress.report(&journal))),
        Err(err) => Err(fail_and_roll_back(ctx, &mut journal, err).await),
    }
}

/// The backup directory, root's and 0700, with nothing of an earlier run in
/// the way: a rolled-back attempt is kept beside it under another name.
fn prepare_backup_dir(ctx: &Context) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let backup = ctx.root.resolve_parent(BACKUP_DIR)?;
    if let Some(earlier) = StepJournal::load(&backup)? {
        match earlier.state {
            RunState::RolledBack => {
                let kept = backup.with_file_name(format!(
                    "imss_backup_71_to_91.rolled-back-{}",
                    earlier.started_at.format("%Y%m%dT%H%M%S%.6fZ")
                ));
                std::fs::rename(&backup, &kept).with_context(|| {
                    format!(
                        "keeping the earlier attempt's {} as {}",
                        backup.display(),
                        kept.display()
                    )
                })?;
                tracing::info!(
                    "the rolled-back earlier attempt is kept in {}",
                    kept.display()
                );
            }
            RunState::Completed => bail!(
                "this server was already upgraded ({} says so): run imss-rollback to go back to 7.1 first",
                earlier.path().display()
            ),
            RunState::InProgress | RunState::RollingBack => bail!(
                "an earlier upgrade run was interrupted ({}): run `imss-upgrade recover` first",
                earlier.path().display()
            ),
        }
    }
    std::fs::create_dir_all(&backup).with_context(|| format!("creating {}", backup.display()))?;
    std::fs::set_permissions(&backup, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("setting the mode of {}", backup.display()))?;
    Ok(backup)
}

/// Timings gathered while the steps run.
#[derive(Debug, Default)]
struct Progress {
    steps: Vec<(Step, u64)>,
    downtime_started: Option<Instant>,
    downtime: Option<Duration>,
    migrate: Option<migrate::MigrateReport>,
}

impl Progress {
    fn report(self, journal: &StepJournal) -> UpgradeReport {
        let migrate = self.migrate;
        UpgradeReport {
            started_at: journal.started_at,
            finished_at: Utc::now(),
            mail_downtime_ms: self.downtime.map_or(0, |d| d.as_millis() as u64),
            steps: self.steps,
            window: migrate.as_ref().map(|m| m.window).unwrap_or_default(),
            verified: migrate.map_or(0, |m| m.verified.len()),
        }
    }
}

/// Runs the steps from the journal's next one to the last.
async fn run_steps(
    ctx: &Context,
    journal: &mut StepJournal,
    progress: &mut Progress,
) -> Result<()> {
    while let Some(step) = journal.next_step() {
        let began = Instant::now();
        journal.begin(step)?;
        tracing::info!(
            message_id = events::STEP_STARTED,
            imss_step = step.name(),
            "step {step} begins"
        );
        if step == Step::Quiesce {
            progress.downtime_started = Some(began);
        }
        crate::fail_point!(&format!("before-{step}"));
        match step {
            Step::Presync => presync::run(ctx, journal).await.map(drop),
            Step::Quiesce => quiesce::run(ctx, journal).await,
            Step::Snapshot => snapshot::run(ctx, journal).await,
            Step::Migrate => migrate::run(ctx, journal)
                .await
                .map(|report| progress.migrate = Some(report)),
            Step::Switch => switch::run(ctx, journal).await,
            Step::RegisterRollback => register_rollback::run(ctx, journal).await,
        }
        .with_context(|| format!("step {step}"))?;
        crate::fail_point!(&format!("after-{step}"));
        journal.finish(step)?;
        let took = began.elapsed();
        if step == Step::Switch {
            progress.downtime = progress.downtime_started.map(|t| t.elapsed());
        }
        progress.steps.push((step, took.as_millis() as u64));
        tracing::info!(
            message_id = events::STEP_FINISHED,
            imss_step = step.name(),
            imss_duration_ms = took.as_millis() as u64,
            "step {step} done in {:.2} s",
            took.as_secs_f64()
        );
    }
    Ok(())
}

/// Rolls back after `err`; returns the error to report, which says which
/// step failed, why, and where the server is now.
async fn fail_and_roll_back(
    ctx: &Context,
    journal: &mut StepJournal,
    err: anyhow::Error,
) -> anyhow::Error {
    let failed_step = journal
        .steps
        .iter()
        .rev()
        .find(|r| r.status == StepStatus::Started)
        .map_or("start", |r| r.step.name());
    tracing::error!(
        message_id = events::STEP_FAILED,
        imss_step = failed_step,
        "the upgrade failed at step {failed_step}: {err:#}; rolling back to 7.1"
    );
    match roll_back(ctx, journal, &format!("{err:#}")).await {
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

/// Undoes every step begun, newest first, each recorded in the journal; may
/// be run again after an interruption and finishes what is left.
pub async fn roll_back(ctx: &Context, journal: &mut StepJournal, why: &str) -> Result<()> {
    journal.begin_rollback(why)?;
    for record in journal.steps_to_undo() {
        let step = record.step;
        journal.begin_undo(step)?;
        tracing::info!(
            message_id = events::STEP_STARTED,
            imss_step = step.name(),
            "undoing step {step}"
        );
        undo_step(ctx, &record)
            .await
            .with_context(|| format!("undoing step {step}"))?;
        journal.finish_undo(step)?;
    }
    tracing::info!(
        message_id = events::STEP_FINISHED,
        "rollback done: IMSS 7.1 runs again"
    );
    Ok(())
}

async fn undo_step(ctx: &Context, record: &StepRecord) -> Result<()> {
    match record.step {
        Step::Presync => presync::undo(ctx, record).await,
        Step::Quiesce => quiesce::undo(ctx, record).await,
        Step::Snapshot => snapshot::undo(ctx, record).await,
        Step::Migrate => migrate::undo(ctx, record).await,
        Step::Switch => switch::undo(ctx, record).await,
        Step::RegisterRollback => register_rollback::undo(ctx, record).await,
    }
}

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
}

/// Reads the step journal and settles an interrupted run: once 9.1 took
/// over (the switch is done) the run is finished; before that, and for an
/// interrupted rollback, it is rolled back.
pub async fn recover(ctx: &Context) -> Result<Recovery> {
    let backup = ctx.root.resolve(BACKUP_DIR)?;
    let Some(mut journal) = StepJournal::load(&backup)? else {
        return Ok(Recovery::NothingToDo);
    };
    match journal.state {
        RunState::Completed | RunState::RolledBack => Ok(Recovery::AlreadySettled(journal.state)),
        RunState::RollingBack => {
            roll_back(ctx, &mut journal, "").await?;
            Ok(Recovery::RolledBack)
        }
        RunState::InProgress => {
            let switched = journal
                .record(Step::Switch)
                .is_some_and(|r| r.status == StepStatus::Done);
            if switched {
                let mut progress = Progress::default();
                let finished = async {
                    run_steps(ctx, &mut journal, &mut progress).await?;
                    check_91_after_recovery(ctx).await
                }
                .await;
                match finished {
                    Ok(()) => return Ok(Recovery::Finished),
                    Err(err) => return Err(fail_and_roll_back(ctx, &mut journal, err).await),
                }
            }
            let at = journal.steps.last().map_or("start", |r| r.step.name());
            roll_back(
                ctx,
                &mut journal,
                &format!("the run was interrupted at step {at}"),
            )
            .await
            .context("rolling back the interrupted upgrade")?;
            Ok(Recovery::RolledBack)
        }
    }
}

/// After a crash, 9.1's services may still be settling: the health check
/// that the switch passed is repeated, a few times, as a sender retries a
/// temporary refusal.
async fn check_91_after_recovery(ctx: &Context) -> Result<()> {
    const ATTEMPTS: u32 = 3;
    let mut attempt = 1;
    loop {
        match switch::check_health(ctx).await {
            Ok(()) => return Ok(()),
            Err(err) if attempt < ATTEMPTS => {
                tracing::warn!("9.1 health check after recovery, attempt {attempt}: {err:#}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                attempt += 1;
            }
            Err(err) => {
                return Err(err.context("9.1 does not take mail after the recovery"));
            }
        }
    }
}

/// Rewrites the completed upgrade's snapshot as xz `preset` on `threads`
/// threads, off the critical path (the downtime writes a plain tar); safe
/// to interrupt and run again. Returns the archive's size in bytes.
pub fn compress_snapshot(ctx: &Context, preset: u32, threads: u32) -> Result<u64> {
    let backup = ctx.root.resolve(BACKUP_DIR)?;
    match StepJournal::load(&backup)?.map(|journal| journal.state) {
        Some(RunState::Completed) => {}
        _ => bail!(
            "{} holds no completed upgrade: the snapshot is compressed once the upgrade is done",
            backup.display()
        ),
    }
    let manifest = crate::snapshot::recompress_with(&backup, preset, threads)?;
    Ok(manifest.archive.size)
}

/// Reverts a completed upgrade (`imss-rollback`), after checking that the
/// backup is the one the upgrade registered.
pub async fn roll_back_completed(ctx: &Context) -> Result<()> {
    let backup = ctx.root.resolve(BACKUP_DIR)?;
    let Some(mut journal) = StepJournal::load(&backup)? else {
        bail!(
            "nothing to roll back: {} holds no upgrade journal, so no upgrade was made under {}",
            backup.display(),
            ctx.root.dir().display()
        );
    };
    match journal.state {
        RunState::Completed => {}
        RunState::RolledBack => bail!(
            "the upgrade in {} was rolled back already: 7.1 runs",
            backup.display()
        ),
        RunState::InProgress | RunState::RollingBack => bail!(
            "the upgrade in {} did not complete: run `imss-upgrade recover`, which rolls it back",
            backup.display()
        ),
    }
    RollbackManifest::load(&backup)?;
    crate::snapshot::verify(&backup)?;
    roll_back(ctx, &mut journal, "rollback requested with imss-rollback").await
}
