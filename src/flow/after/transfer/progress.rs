//! Where the transfer is, for people and scripts: per table rows done and
//! left, rate, ETA and the last committed batch, and why it waits. The
//! transfer keeps it in memory ([`Tracker`]) and every few seconds logs it
//! to the journal and writes it to the backup directory ([`TransferReport`],
//! which `imss-upgrade status` reads); a stall (no batch committed for a
//! while) is reported with its cause.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::migration::transfer::TableCursor;
use crate::support::fsutil;
use crate::support::logging::events;
use crate::support::processes;

/// What the transfer is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferState {
    /// Starting the 7.1 database in the backup, connecting, counting.
    Starting,
    /// Moving batches.
    Copying,
    /// Paused (`imss-upgrade transfer pause`).
    Paused,
    /// Waiting on purpose: the rate limit.
    Throttled,
    /// Waiting for something outside it (the cause says what).
    Waiting,
    /// No batch committed for the stall time (the cause says why).
    Stalled,
    /// Comparing counts and checksums at the end.
    Verifying,
    /// Every table is across and verified.
    Done,
    /// Stopped by a signal; the next start resumes.
    Stopped,
    /// Ended with an error (the cause); the next start resumes.
    Failed,
}

/// Rows done and left, and how fast: of one table, or of all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rows {
    /// Rows moved or rejected.
    pub rows_done: i64,
    /// Rows older than the window on 7.1.
    pub rows_total: i64,
    /// Rows still to move.
    pub rows_left: i64,
    /// Of the rows done, refused and kept in the reject table.
    pub rows_rejected: i64,
    /// Rows per second over the last report interval.
    pub rate_rows_per_sec: f64,
    /// Seconds left at that rate.
    pub eta_seconds: Option<u64>,
}

impl Rows {
    fn new(rows_done: i64, rows_total: i64, rows_rejected: i64, rate: f64) -> Self {
        let rows_left = (rows_total - rows_done).max(0);
        let rate = (rate * 10.0).round() / 10.0;
        Self {
            rows_done,
            rows_total,
            rows_left,
            rows_rejected,
            rate_rows_per_sec: rate,
            eta_seconds: if rows_left == 0 {
                Some(0)
            } else {
                (rate > 0.0).then(|| (rows_left as f64 / rate).ceil() as u64)
            },
        }
    }

    fn sum<'a>(all: impl Iterator<Item = &'a Rows>) -> Self {
        let (done, total, rejected, rate) = all.fold((0, 0, 0, 0.0), |(d, t, r, v), rows| {
            (
                d + rows.rows_done,
                t + rows.rows_total,
                r + rows.rows_rejected,
                v + rows.rate_rows_per_sec,
            )
        });
        Self::new(done, total, rejected, rate)
    }
}

/// One table's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableProgress {
    /// The 7.1 table.
    pub table: String,
    /// Its rows.
    #[serde(flatten)]
    pub rows: Rows,
    /// When its last batch committed.
    pub last_commit_at: Option<DateTime<Utc>>,
    /// Every row is across.
    pub done: bool,
}

/// The transfer's report, as `transfer-progress.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferReport {
    /// What it is doing.
    pub state: TransferState,
    /// Why it waits, stalled or failed.
    pub cause: Option<String>,
    /// The transfer's process, and the boot it ran in.
    pub pid: u32,
    /// See `pid`.
    pub boot_id: String,
    /// When this run of it started.
    pub started_at: DateTime<Utc>,
    /// When this report was written.
    pub updated_at: DateTime<Utc>,
    /// When the last batch of any table committed.
    pub last_commit_at: Option<DateTime<Utc>>,
    /// Seconds since then, once that is longer than the stall time.
    pub stalled_seconds: Option<u64>,
    /// The rate limit, if any.
    pub max_rows_per_sec: Option<u64>,
    /// Totals over the tables.
    #[serde(flatten)]
    pub rows: Rows,
    /// Per table.
    pub tables: Vec<TableProgress>,
}

impl TransferReport {
    /// Reads the report the transfer wrote last; `None` before its first.
    pub fn load(path: &std::path::Path) -> Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("reading {}", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Whether the process that wrote it still works on it (a state other
    /// than done, stopped or failed, and the process alive in this boot).
    pub fn is_running(&self) -> bool {
        !matches!(
            self.state,
            TransferState::Done | TransferState::Stopped | TransferState::Failed
        ) && self.boot_id == processes::boot_id()
            && processes::is_alive(self.pid)
    }

    /// The fraction done, 0 to 1.
    pub fn fraction(&self) -> f64 {
        if self.rows.rows_total <= 0 {
            return 1.0;
        }
        (self.rows.rows_done as f64 / self.rows.rows_total as f64).clamp(0.0, 1.0)
    }
}

/// What the transfer knows of itself, shared by its loop and its reporter.
#[derive(Debug)]
struct Inner {
    state: TransferState,
    cause: Option<String>,
    cursors: Vec<TableCursor>,
    last_commit: Option<(Instant, DateTime<Utc>)>,
    /// Rows done per table at the previous report, and when.
    previous: Option<(Instant, Vec<i64>)>,
    rates: Vec<f64>,
    stall_reported: bool,
}

/// The transfer's progress, updated by its loop, reported by
/// [`Tracker::report`].
#[derive(Debug, Clone)]
pub struct Tracker {
    inner: Arc<Mutex<Inner>>,
    path: std::path::PathBuf,
    started_at: DateTime<Utc>,
    started: Instant,
    max_rows_per_sec: Option<u64>,
    stall_after: Duration,
    /// What the last run reported per table: shown until this run has
    /// read its cursors, so a restart never reads as a fresh start.
    earlier: Vec<TableProgress>,
}

impl Tracker {
    /// A tracker writing its reports to `path`.
    pub fn new(
        path: std::path::PathBuf,
        max_rows_per_sec: Option<u64>,
        stall_after: Duration,
    ) -> Self {
        let earlier = TransferReport::load(&path)
            .ok()
            .flatten()
            .map(|report| report.tables)
            .unwrap_or_default()
            .into_iter()
            .map(|table| TableProgress {
                rows: Rows {
                    rate_rows_per_sec: 0.0,
                    eta_seconds: None,
                    ..table.rows
                },
                ..table
            })
            .collect();
        Self {
            inner: Arc::new(Mutex::new(Inner {
                state: TransferState::Starting,
                cause: None,
                cursors: Vec::new(),
                last_commit: None,
                previous: None,
                rates: Vec::new(),
                stall_reported: false,
            })),
            path,
            started_at: Utc::now(),
            started: Instant::now(),
            max_rows_per_sec,
            stall_after,
            earlier,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets what the transfer does, and why when it waits.
    pub fn set(&self, state: TransferState, cause: Option<String>) {
        let mut inner = self.lock();
        inner.state = state;
        inner.cause = cause;
    }

    /// The state now.
    pub fn state(&self) -> TransferState {
        self.lock().state.clone()
    }

    /// The cursors as they are now (after a batch committed or at start).
    pub fn update(&self, cursors: Vec<TableCursor>, committed: bool) {
        let mut inner = self.lock();
        if inner.rates.len() != cursors.len() {
            inner.rates = vec![0.0; cursors.len()];
        }
        inner.cursors = cursors;
        if committed {
            inner.last_commit = Some((Instant::now(), Utc::now()));
            inner.stall_reported = false;
        }
    }

    /// How long since the last batch committed (or since the start).
    pub fn since_last_commit(&self) -> Duration {
        let inner = self.lock();
        inner
            .last_commit
            .map_or(self.started, |(at, _)| at)
            .elapsed()
    }

    /// Whether no batch committed for the stall time while work is left.
    pub fn is_stalled(&self) -> bool {
        let state = self.state();
        !matches!(
            state,
            TransferState::Done
                | TransferState::Stopped
                | TransferState::Failed
                | TransferState::Verifying
        ) && self.since_last_commit() >= self.stall_after
    }

    /// Builds the report now, updating the rates.
    pub fn snapshot(&self) -> TransferReport {
        let stalled = self.is_stalled();
        let since = self.since_last_commit();
        let mut inner = self.lock();
        let now = Instant::now();
        let done_now: Vec<i64> = inner.cursors.iter().map(|c| c.rows_done).collect();
        if let Some((at, before)) = &inner.previous {
            let seconds = now.duration_since(*at).as_secs_f64();
            if seconds > 0.0 && before.len() == done_now.len() {
                inner.rates = done_now
                    .iter()
                    .zip(before)
                    .map(|(now, then)| (now - then).max(0) as f64 / seconds)
                    .collect();
            }
        }
        inner.previous = Some((now, done_now));
        let mut tables: Vec<TableProgress> = inner
            .cursors
            .iter()
            .zip(inner.rates.iter().copied().chain(std::iter::repeat(0.0)))
            .map(|(cursor, rate)| TableProgress {
                table: cursor.table.name().to_string(),
                rows: Rows::new(
                    cursor.rows_done,
                    cursor.rows_total,
                    cursor.rows_rejected,
                    rate,
                ),
                last_commit_at: cursor.committed_at,
                done: cursor.done,
            })
            .collect();
        if tables.is_empty() {
            tables = self.earlier.clone();
        }
        let (state, cause) = if stalled {
            let cause = match inner.state {
                TransferState::Paused => {
                    Some("paused: `imss-upgrade transfer resume` lets it go on".to_string())
                }
                TransferState::Starting => Some(
                    "starting: PostgreSQL 10 is being started on the backup, and at the first \
                     start the rows to move counted"
                        .to_string(),
                ),
                _ => inner.cause.clone(),
            };
            (TransferState::Stalled, cause)
        } else {
            (inner.state.clone(), inner.cause.clone())
        };
        TransferReport {
            state,
            cause,
            pid: std::process::id(),
            boot_id: processes::boot_id(),
            started_at: self.started_at,
            updated_at: Utc::now(),
            last_commit_at: inner.last_commit.map(|(_, at)| at),
            stalled_seconds: stalled.then_some(since.as_secs()),
            max_rows_per_sec: self.max_rows_per_sec,
            rows: Rows::sum(tables.iter().map(|table| &table.rows)),
            tables,
        }
    }

    /// Logs where the transfer is (one event per table with work left, and
    /// a stall with its cause, once per stall) and writes the report file.
    pub fn report(&self, stall_cause: Option<String>) -> Result<TransferReport> {
        let mut report = self.snapshot();
        if report.state == TransferState::Stalled {
            if report.cause.is_none() {
                report.cause = stall_cause;
            }
            let first = {
                let mut inner = self.lock();
                !std::mem::replace(&mut inner.stall_reported, true)
            };
            if first {
                let cause = report.cause.clone().unwrap_or_else(|| {
                    format!(
                        "a batch has run for {} s",
                        report.stalled_seconds.unwrap_or_default()
                    )
                });
                tracing::warn!(
                    message_id = events::TRANSFER_STALLED,
                    imss_cause = %cause,
                    imss_stalled_s = report.stalled_seconds.unwrap_or_default(),
                    "the transfer committed no batch for {} s: {cause}",
                    report.stalled_seconds.unwrap_or_default()
                );
            }
        }
        for table in report.tables.iter().filter(|t| !t.done) {
            let last_commit = table
                .last_commit_at
                .map(|at| at.to_rfc3339())
                .unwrap_or_else(|| "never".to_string());
            tracing::info!(
                message_id = events::TRANSFER_PROGRESS,
                imss_table = %table.table,
                imss_rows_done = table.rows.rows_done,
                imss_rows_left = table.rows.rows_left,
                imss_rate = table.rows.rate_rows_per_sec,
                imss_eta_s = table.rows.eta_seconds.unwrap_or_default(),
                imss_last_commit = %last_commit,
                "transfer of {}: {} rows done, {} left, {} rows/s",
                table.table,
                table.rows.rows_done,
                table.rows.rows_left,
                table.rows.rate_rows_per_sec
            );
        }
        self.write(&report)?;
        Ok(report)
    }

    /// Writes `report` to the report file.
    pub fn write(&self, report: &TransferReport) -> Result<()> {
        fsutil::atomic_write(&self.path, &serde_json::to_vec_pretty(report)?, 0o600)
    }
}

/// What `imss-upgrade status` shows of the transfer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransferStatus {
    /// What it does, as it last reported (done once the done file exists).
    pub state: TransferState,
    /// Whether a transfer process works on it now.
    pub running: bool,
    /// Whether it is paused (it outlives restarts).
    pub paused: bool,
    /// Its last report, once it wrote one.
    #[serde(rename = "progress")]
    pub report: Option<TransferReport>,
    /// The final comparison, once done.
    pub completed: Option<super::TransferSummary>,
}

impl TransferStatus {
    /// From the backup directory's transfer files; `None` when no upgrade
    /// left history to transfer.
    pub fn load(ctx: &crate::flow::context::Context) -> Result<Option<Self>> {
        let files = ctx.layout.transfer_files()?;
        if !ctx.layout.backup_dir()?.exists() {
            return Ok(None);
        }
        let report = TransferReport::load(&files.progress)?;
        let completed = super::completed(ctx)?;
        let paused = files.paused.exists();
        if report.is_none() && completed.is_none() && !paused {
            return Ok(None);
        }
        let running = report.as_ref().is_some_and(TransferReport::is_running);
        let state = match (&completed, &report) {
            (Some(_), _) => TransferState::Done,
            (None, Some(report)) if running => report.state.clone(),
            (None, Some(report)) if matches!(report.state, TransferState::Failed) => {
                TransferState::Failed
            }
            _ if paused => TransferState::Paused,
            _ => TransferState::Stopped,
        };
        Ok(Some(Self {
            state,
            running,
            paused,
            report,
            completed,
        }))
    }
}
