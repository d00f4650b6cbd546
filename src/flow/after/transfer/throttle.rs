//! What holds the transfer back between batches: the pause (a file, so it
//! outlives restarts; `imss-upgrade transfer resume` ends it), 9.1's load
//! (more other sessions running a query than `--max-load`) and the rate
//! limit (`--max-rows-per-sec`, over the run). Each says in the progress
//! report that it holds the transfer, and why; a stop ends every wait.

use std::time::{Duration, Instant};

use anyhow::Result;
use tokio_postgres::Client;

use super::progress::{Tracker, TransferState};
use super::stop::StopRequest;
use super::{POLL, TransferOptions, control};
use crate::flow::context::Context;
use crate::migration::transfer as batches;

/// The transfer's throttle, for one run.
pub(super) struct Throttle<'a> {
    ctx: &'a Context,
    tracker: &'a Tracker,
    stop: &'a StopRequest,
    max_load: Option<u32>,
    rate: Option<RateLimit>,
    /// Whether the last look found the transfer paused: the pause is
    /// logged when it begins, not at every look.
    was_paused: bool,
}

impl<'a> Throttle<'a> {
    /// The throttle `options` ask for; the rate limit counts from now.
    pub(super) fn new(
        ctx: &'a Context,
        options: &TransferOptions,
        tracker: &'a Tracker,
        stop: &'a StopRequest,
    ) -> Self {
        Self {
            ctx,
            tracker,
            stop,
            max_load: options.max_load,
            rate: options
                .max_rows_per_sec
                .filter(|&rate| rate > 0)
                .map(RateLimit::new),
            was_paused: false,
        }
    }

    /// Waits until the next batch may run (9.1's load read on `target`),
    /// and returns how many ids it may take: `limit`, at most a second's
    /// worth under the rate limit. `None`: a stop was requested.
    pub(super) async fn wait(&mut self, target: &Client, limit: i64) -> Result<Option<i64>> {
        loop {
            if self.stop.requested() {
                return Ok(None);
            }
            match self.holding_back(target).await? {
                Some(wait) => {
                    self.stop.sleep(wait).await;
                }
                None => {
                    return Ok(Some(
                        self.rate
                            .as_ref()
                            .map_or(limit, |rate| rate.batch_limit(limit)),
                    ));
                }
            }
        }
    }

    /// Counts a committed batch's rows against the rate limit.
    pub(super) fn moved(&mut self, rows: i64) {
        if let Some(rate) = &mut self.rate {
            rate.moved += rows;
        }
    }

    /// What holds the transfer back now, said to the tracker, and how long
    /// to wait before the next look; `None`: nothing.
    async fn holding_back(&mut self, target: &Client) -> Result<Option<Duration>> {
        if control::is_paused(self.ctx)? {
            if !self.was_paused {
                tracing::info!(
                    "the transfer is paused; `imss-upgrade transfer resume` lets it go on"
                );
            }
            self.was_paused = true;
            self.tracker.set(TransferState::Paused, None);
            return Ok(Some(POLL));
        }
        self.was_paused = false;
        if let Some(max_load) = self.max_load {
            // A failed look is no load: the batch then meets the cause.
            let busy = batches::busy_sessions(target).await.unwrap_or(0);
            if busy > i64::from(max_load) {
                self.tracker.set(
                    TransferState::Throttled,
                    Some(format!(
                        "throttled: 9.1 is busy, {busy} other sessions run queries (more than \
                         --max-load {max_load}); the transfer waits for them"
                    )),
                );
                return Ok(Some(POLL));
            }
        }
        if let Some(rate) = &self.rate
            && let Some(ahead) = rate.ahead_by(rate.started.elapsed())
        {
            self.tracker.set(
                TransferState::Throttled,
                Some(format!(
                    "throttled: the rate limit ({} rows/s) holds it back",
                    rate.rows_per_sec
                )),
            );
            return Ok(Some(ahead.min(POLL)));
        }
        Ok(None)
    }
}

/// At most so many rows a second, over the run.
struct RateLimit {
    rows_per_sec: u64,
    started: Instant,
    /// Rows the run moved so far.
    moved: i64,
}

impl RateLimit {
    fn new(rows_per_sec: u64) -> Self {
        Self {
            rows_per_sec,
            started: Instant::now(),
            moved: 0,
        }
    }

    /// How far the run is ahead of the rate `elapsed` after its start;
    /// `None`: not ahead.
    fn ahead_by(&self, elapsed: Duration) -> Option<Duration> {
        let due = Duration::from_secs_f64(self.moved as f64 / self.rows_per_sec as f64);
        (due > elapsed).then(|| due - elapsed)
    }

    /// One batch is at most a second's worth.
    fn batch_limit(&self, limit: i64) -> i64 {
        limit.min(self.rows_per_sec as i64).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_holds_a_run_back_until_its_rows_are_due_and_caps_a_batch() {
        let mut rate = RateLimit::new(500);
        assert_eq!(rate.ahead_by(Duration::ZERO), None);
        rate.moved = 1_000;
        // 1000 rows at 500 a second are due 2 s after the start.
        assert_eq!(
            rate.ahead_by(Duration::from_millis(1_500)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(rate.ahead_by(Duration::from_secs(2)), None);
        assert_eq!(rate.batch_limit(5_000), 500);
        assert_eq!(rate.batch_limit(200), 200);
        assert_eq!(rate.batch_limit(0), 1);
    }
}
