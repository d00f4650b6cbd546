//! The background transfer (`imss-upgrade transfer run`, the unit
//! `imss-upgrade-transfer.service`): after a completed upgrade, the history
//! older than the 24-hour window moves from the 7.1 database kept in the
//! backup directory into 9.1, while 9.1 takes mail.
//!
//! PostgreSQL 10 runs from the backup read-only, on a socket there only,
//! with 7.1's own programs taken out of the snapshot (the program tree is
//! 9.1's by now). Every table goes in batches by id, each committed with
//! its cursor in one 9.1 transaction ([`crate::migration::transfer`]): a
//! kill at any moment neither loses nor duplicates a row, and the next
//! start resumes after the last committed batch. The batch size adapts so
//! that each transaction stays short; the 9.1 server process doing the
//! work runs at the lowest CPU priority, so live mail goes first; a rate
//! limit holds it back further. A pause is a file, so it outlives restarts.
//! What the transfer cannot reach (either server down, a full disk) it
//! waits for, saying so; anything else ends it with the cursor where it
//! was. At the end, counts and checksums of both sides are compared, and
//! the done file keeps the unit from starting again.
//!
//! May touch: the backup directory (the extracted PostgreSQL 10 programs,
//! the transfer's lock, pause, progress and done files; the 7.1 data
//! directory is only read), the 9.1 database (the history tables, schema
//! `upgrade_transfer`).

pub mod control;
pub mod progress;
mod servers;
mod stop;
mod throttle;

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use self::progress::{Tracker, TransferState};
use self::servers::{Servers, target_settings};
use self::stop::StopRequest;
use self::throttle::Throttle;
use crate::files::odbc_ini::DbSettings;
use crate::flow::context::Context;
use crate::flow::gate;
use crate::flow::journal::{RunState, StepJournal};
use crate::flow::lock::UpgradeLock;
use crate::migration::selection::window_cutoff;
use crate::migration::transfer as batches;
use crate::migration::verify::Verified;
use crate::support::fsutil;
use crate::support::logging::events;
use crate::system::pg::{self, StopMode};

/// How the transfer runs.
#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// At most this many rows a second, over the run; `None`: as fast as
    /// the 9.1 server takes them.
    pub max_rows_per_sec: Option<u64>,
    /// Back off while more than this many other sessions run a query on
    /// 9.1 (its load, as MySQL's online schema changers read theirs from
    /// `Threads_running`); `None`: never.
    pub max_load: Option<u32>,
    /// No batch committed for this long is a stall, reported with its cause.
    pub stall_after: Duration,
    /// How often progress goes to the journal and the progress file.
    pub report_every: Duration,
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self {
            max_rows_per_sec: None,
            max_load: None,
            stall_after: Duration::from_secs(60),
            report_every: Duration::from_secs(5),
        }
    }
}

/// How a transfer run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferEnd {
    /// Every table is across and verified.
    Done(TransferSummary),
    /// It was done before this run.
    AlreadyDone,
    /// Stopped by a signal; the next start resumes.
    Stopped,
}

/// What a completed transfer moved; also the done file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferSummary {
    /// Rows moved or rejected, all tables.
    pub rows_done: i64,
    /// Of those, rejected.
    pub rows_rejected: i64,
    /// Per table: the rows compared and their checksum.
    pub verified: Vec<VerifiedTable>,
    /// When it completed.
    pub completed_at: chrono::DateTime<chrono::Utc>,
}

/// One table's final comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedTable {
    /// The 7.1 table.
    pub table: String,
    /// Rows older than the window, on both sides (rejected ones left out).
    pub rows: i64,
    /// Their checksum, equal on both sides.
    pub checksum: String,
}

impl From<&Verified> for VerifiedTable {
    fn from(verified: &Verified) -> Self {
        Self {
            table: verified.selection.table().name().to_string(),
            rows: verified.checksum.rows,
            checksum: verified.checksum.sum.clone(),
        }
    }
}

/// Reads the done file: the summary of a completed transfer, or `None`.
/// One that cannot be read (a disk error, an editor) is not taken as done,
/// and blocks nothing (not `status`, not `finalize --force`): it is named,
/// with how to let the transfer verify again.
pub fn completed(ctx: &Context) -> Result<Option<TransferSummary>> {
    let path = ctx.layout.transfer_files()?.done;
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    match serde_json::from_slice(&bytes) {
        Ok(summary) => Ok(Some(summary)),
        Err(err) => {
            tracing::warn!(
                "{} is not a readable summary of the transfer ({err}), so the transfer is not \
                 taken as done: remove it, and the transfer runs again and verifies what moved",
                path.display()
            );
            Ok(None)
        }
    }
}

/// The first batch's size; later ones adapt to [`BATCH_TARGET`].
const FIRST_BATCH: i64 = 5_000;
/// The bounds of the batch size.
const BATCH_RANGE: (i64, i64) = (500, 200_000);
/// How long one batch's transaction should take.
const BATCH_TARGET: Duration = Duration::from_millis(500);
/// How often a paused, throttled or waiting transfer looks again.
const POLL: Duration = Duration::from_millis(500);
/// How long a transfer waits before it tries a server again.
const RETRY: Duration = Duration::from_secs(5);

/// Runs the transfer until every table is across and verified, or a
/// signal stops it. Refuses without a completed upgrade, and while another
/// transfer runs.
pub async fn run(ctx: &Context, options: &TransferOptions) -> Result<TransferEnd> {
    let files = ctx.layout.transfer_files()?;
    let _lock = match UpgradeLock::try_take_transfer(ctx) {
        Ok(Ok(lock)) => lock,
        Ok(Err(holder)) => bail!(
            "the transfer of the older history runs already ({}): `imss-upgrade status` shows \
             where it is",
            holder.describe()
        ),
        Err(err) => {
            check_completed_upgrade(ctx)?;
            return Err(err);
        }
    };
    // Read under the lock: a rollback or a finalize holds it while it works.
    let journal = check_completed_upgrade(ctx)?;
    if files.done.exists() {
        tracing::info!("the transfer of the older history is done already");
        return Ok(TransferEnd::AlreadyDone);
    }
    let cutoff = window_cutoff(journal.started_at);
    let tracker = Tracker::new(
        files.progress.clone(),
        options.max_rows_per_sec,
        options.stall_after,
    );
    let stop = StopRequest::listen()?;
    let reporter = tokio::spawn(report_every(
        tracker.clone(),
        options.report_every,
        target_settings(ctx)?,
    ));
    let began = Instant::now();
    let result = transfer(ctx, options, &tracker, &stop, cutoff).await;
    reporter.abort();
    let stopped = ctx
        .unblock(|ctx| {
            pg::stop_server(
                &ctx.root.resolve(ctx.layout.moved_71_data_dir())?,
                StopMode::Immediate,
            )
        })
        .await;
    match &result {
        Ok(TransferEnd::Done(summary)) => {
            tracker.set(TransferState::Done, None);
            tracing::info!(
                message_id = events::TRANSFER_COMPLETED,
                imss_rows_done = summary.rows_done,
                imss_rejected = summary.rows_rejected,
                imss_duration_ms = began.elapsed().as_millis() as u64,
                "transfer of the older history done: {} rows, {} rejected; 7.1 and 9.1 agree",
                summary.rows_done,
                summary.rows_rejected
            );
        }
        Ok(_) => tracker.set(TransferState::Stopped, None),
        Err(err) => tracker.set(TransferState::Failed, Some(format!("{err:#}"))),
    }
    tracker.write(&tracker.snapshot())?;
    stopped.context("stopping the 7.1 database in the backup")?;
    result
}

/// The step journal of a completed upgrade whose backup is still there;
/// refuses otherwise.
fn check_completed_upgrade(ctx: &Context) -> Result<StepJournal> {
    let journal = if ctx.layout.backup_dir()?.exists() {
        StepJournal::of(ctx)?
    } else {
        None
    };
    gate::admit(
        ctx,
        journal,
        &[RunState::Completed],
        "transfer the older history",
    )
}

/// The transfer itself: both servers up, every table's batches in turn
/// (each once the throttle lets it run, its outcome settled), then the
/// final comparison and the done file.
async fn transfer(
    ctx: &Context,
    options: &TransferOptions,
    tracker: &Tracker,
    stop: &StopRequest,
    cutoff: NaiveDateTime,
) -> Result<TransferEnd> {
    tracker.set(TransferState::Starting, None);
    let Some(mut servers) = Servers::connect(ctx, tracker, stop).await? else {
        return Ok(TransferEnd::Stopped);
    };
    let (plan, mut cursors) = batches::prepare(&servers.source, &servers.target, cutoff)
        .await
        .context("preparing the transfer")?;
    tracker.update(cursors.clone(), false);
    let (done, total) = cursors
        .iter()
        .fold((0, 0), |(d, t), c| (d + c.rows_done, t + c.rows_total));
    tracing::info!(
        message_id = events::TRANSFER_STARTED,
        imss_rows_done = done,
        imss_rows_total = total,
        imss_max_rows_per_sec = options.max_rows_per_sec.unwrap_or_default(),
        "transfer of the older history started: {done} of {total} rows across"
    );

    let mut throttle = Throttle::new(ctx, options, tracker, stop);
    let mut limit = FIRST_BATCH;
    for index in 0..cursors.len() {
        while !cursors[index].done {
            let Some(batch_limit) = throttle.wait(&servers.target, limit).await? else {
                return Ok(TransferEnd::Stopped);
            };
            tracker.set(TransferState::Copying, None);
            let began = Instant::now();
            let moved = batches::move_batch(
                &servers.source,
                &servers.target,
                &cursors[index],
                &plan,
                batch_limit,
            )
            .await;
            match moved {
                Ok(outcome) => {
                    throttle.moved(outcome.rows);
                    log_rejected(&outcome);
                    limit = next_batch_size(batch_limit, outcome.ids, began.elapsed());
                    cursors[index] = outcome.cursor;
                    tracker.update(cursors.clone(), true);
                }
                Err(err) => {
                    if !servers.recover(ctx, err, tracker, stop).await? {
                        return Ok(TransferEnd::Stopped);
                    }
                    limit = BATCH_RANGE.0.max(limit / 4);
                }
            }
        }
    }

    crate::fail_point!("transfer-verifying");
    tracker.set(TransferState::Verifying, None);
    let verified = batches::verify_transferred(&servers.source, &servers.target, &cursors, cutoff)
        .await
        .context(
            "comparing the transferred history with 7.1; the transfer is not marked done, and \
             9.1 keeps every row it received: report this with `imss-upgrade status --json`",
        )?;
    let summary = TransferSummary {
        rows_done: cursors.iter().map(|c| c.rows_done).sum(),
        rows_rejected: cursors.iter().map(|c| c.rows_rejected).sum(),
        verified: verified.iter().map(VerifiedTable::from).collect(),
        completed_at: chrono::Utc::now(),
    };
    fsutil::atomic_write(
        &ctx.layout.transfer_files()?.done,
        &serde_json::to_vec_pretty(&summary)?,
        0o600,
    )?;
    Ok(TransferEnd::Done(summary))
}

/// Says that 9.1 refused rows of a committed batch, and where they are.
fn log_rejected(outcome: &batches::BatchOutcome) {
    if outcome.rejected > 0 {
        let table = outcome.cursor.table;
        tracing::warn!(
            message_id = events::TRANSFER_REJECTED,
            imss_table = table.name(),
            imss_rows = outcome.rejected,
            "9.1 refused {} rows of {}; they are kept in upgrade_transfer.rejected",
            outcome.rejected,
            table
        );
    }
}

/// The next batch's size in ids: as many as [`BATCH_TARGET`] took at the
/// last batch's pace, within [`BATCH_RANGE`], at most doubling. A batch
/// cut short by the table's end says nothing about the pace.
fn next_batch_size(limit: i64, ids: i64, took: Duration) -> i64 {
    if ids < limit {
        return limit;
    }
    let pace = ids as f64 / took.as_secs_f64().max(0.001);
    let wanted = (pace * BATCH_TARGET.as_secs_f64()) as i64;
    wanted.clamp(BATCH_RANGE.0, BATCH_RANGE.1).min(limit * 2)
}

/// Every `every`: the progress to the journal and the progress file, and
/// a stall's cause looked up on 9.1 when it is not known already.
async fn report_every(tracker: Tracker, every: Duration, target: DbSettings) {
    let mut monitor: Option<Client> = None;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut cause = None;
        if tracker.is_stalled() && tracker.state() == TransferState::Copying {
            if monitor.as_ref().is_none_or(Client::is_closed) {
                monitor = pg::connect_as_configured(&target)
                    .await
                    .ok()
                    .map(|(c, _)| c);
            }
            if let Some(client) = &monitor {
                cause = stall_cause(client).await;
            }
        }
        if let Err(err) = tracker.report(cause) {
            tracing::warn!("writing the transfer's progress: {err:#}");
        }
    }
}

/// What the transfer's 9.1 server process waits for, as a stall's cause.
async fn stall_cause(monitor: &Client) -> Option<String> {
    let (kind, event) = batches::batch_waits_for(monitor).await.ok()??;
    Some(match kind.as_str() {
        "Lock" => format!("lock wait: the batch waits for a lock on 9.1 ({kind}: {event})"),
        "IO" => format!("the batch waits for the 9.1 server's disk ({kind}: {event})"),
        _ => format!("the batch waits on 9.1 ({kind}: {event})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_grows_to_the_target_time_at_most_doubling_and_stays_in_range() {
        let ms = Duration::from_millis;
        // 5000 ids in a tenth of the target: 50000 would fill it, but a
        // batch at most doubles.
        assert_eq!(next_batch_size(5_000, 5_000, BATCH_TARGET / 10), 10_000);
        // 10000 ids in four times the target: 2500 fill it.
        assert_eq!(next_batch_size(10_000, 10_000, BATCH_TARGET * 4), 2_500);
        assert_eq!(next_batch_size(1_000, 1_000, ms(60_000)), BATCH_RANGE.0);
        assert_eq!(
            next_batch_size(BATCH_RANGE.1, BATCH_RANGE.1, ms(1)),
            BATCH_RANGE.1
        );
        // A short last batch says nothing of the pace.
        assert_eq!(next_batch_size(5_000, 12, ms(1)), 5_000);
    }
}
