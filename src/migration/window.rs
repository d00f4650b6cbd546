//! The last 24 hours' policy events across the switch: the presync's fence
//! (a low-water mark below which every event is in its copy), and the
//! migrate step's search for the events the presync did not see, by
//! counting ids per block on both servers.

use anyhow::{Context, Result, bail};
use chrono::NaiveDateTime;
use tokio_postgres::{Client, GenericClient};

use super::copy::copy_selection_to_staging;
use super::schema::{STAGING_SCHEMA, clear_staging_history, create_indexes};
use super::selection::{Filter, Selection, timestamp_literal};
use super::tables::Table71;
use super::transform::transform_history;
use super::verify::{ChecksumMismatch, checksum_source, checksum_target};

/// The presync's copy of the window: the policy events at or after
/// `cutoff`, copied from 7.1 (live) into the 9.1 tables and checked by
/// checksum, read in one snapshot of 7.1 that is taken behind a fence
/// ([`fence_low_water`]), so that every event the copy misses has a higher
/// id than the mark it records. Builds the 9.1 indexes once the rows are in.
pub async fn copy_fenced_window(
    source_71: &Client,
    target_91: &Client,
    cutoff: NaiveDateTime,
) -> Result<PresyncMark> {
    let low_water = fence_low_water(source_71).await?;
    source_71
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .context("starting the snapshot the presync reads 7.1 in")?;
    let window = Selection::new(Table71::PolicyEvent, Filter::Since(cutoff))?;
    let copied = copy_selection_to_staging(source_71, target_91, &window).await?;
    crate::fail_point!("presync-window-copied");
    let on_71 = checksum_source(source_71, &window).await?;
    source_71
        .batch_execute("COMMIT")
        .await
        .context("ending the presync's snapshot of 7.1")?;

    transform_history(target_91).await?;
    create_indexes(target_91).await?;
    let on_91 = checksum_target(target_91, &window).await?;
    if on_71 != on_91 {
        return Err(ChecksumMismatch {
            selection: window,
            on_71,
            on_91,
        }
        .into());
    }
    clear_staging_history(target_91).await?;
    let mark = PresyncMark {
        low_water,
        policy_events: copied as i64,
    };
    mark.record(target_91).await?;
    Ok(mark)
}

/// Which server's policy events a window query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventSide {
    /// The 7.1 table.
    Source71,
    /// The 9.1 table, rows migrated from 7.1 only.
    Target91,
}

impl EventSide {
    /// `FROM … WHERE …` of the window's policy events on this side, those
    /// with ids above `above` only when it is given.
    fn window_from(self, cutoff: NaiveDateTime, above: Option<i64>) -> String {
        let at = timestamp_literal(cutoff);
        let above = above
            .map(|id| format!(" AND event_id > {id}"))
            .unwrap_or_default();
        match self {
            EventSide::Source71 => format!(
                "FROM {} WHERE event_time >= {at}{above}",
                Table71::PolicyEvent.name()
            ),
            EventSide::Target91 => format!(
                "FROM public.policy_event WHERE source = '7.1' AND event_time >= {at} AT TIME ZONE 'UTC'{above}"
            ),
        }
    }

    fn name(self) -> &'static str {
        match self {
            EventSide::Source71 => "7.1",
            EventSide::Target91 => "9.1",
        }
    }
}

/// Ids are compared in blocks of this many: counts per block first, ids
/// only in the blocks whose counts differ.
const ID_BLOCK: i64 = 4096;

/// The number of the window's policy events in each block of ids (or in
/// `only` that block).
async fn window_event_blocks(
    client: &impl GenericClient,
    side: EventSide,
    window: &EventWindow,
    only: Option<i64>,
) -> Result<std::collections::BTreeMap<i64, i64>> {
    let in_block = only
        .map(|block| {
            format!(
                " AND event_id BETWEEN {} AND {}",
                block * ID_BLOCK,
                block * ID_BLOCK + ID_BLOCK - 1
            )
        })
        .unwrap_or_default();
    let sql = format!(
        "SELECT event_id::bigint / {ID_BLOCK}, count(*) {}{in_block} GROUP BY 1",
        side.window_from(window.cutoff, window.above)
    );
    let rows = client.query(&sql, &[]).await.with_context(|| {
        format!(
            "counting the policy events of the last 24 hours on {}",
            side.name()
        )
    })?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// The ids of the window's policy events in one block, in order.
async fn window_event_ids(
    client: &impl GenericClient,
    side: EventSide,
    window: &EventWindow,
    block: i64,
) -> Result<Vec<i64>> {
    let sql = format!(
        "SELECT event_id::bigint {} AND event_id BETWEEN {} AND {} ORDER BY 1",
        side.window_from(window.cutoff, window.above),
        block * ID_BLOCK,
        block * ID_BLOCK + ID_BLOCK - 1
    );
    let rows = client.query(&sql, &[]).await.with_context(|| {
        format!(
            "listing the policy events of the last 24 hours on {}",
            side.name()
        )
    })?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Which policy events are compared: those of the window (at or after
/// `cutoff`), and of those only the ones with ids above `above` when the
/// presync could fence the lower ones off ([`fence_low_water`]).
#[derive(Debug, Clone, Copy)]
pub struct EventWindow {
    /// The start of the 24-hour window.
    pub cutoff: NaiveDateTime,
    /// Every 7.1 policy event with an id up to this was committed before the
    /// presync's snapshot, so the presync copied it.
    pub above: Option<i64>,
}

/// The policy events of the window that 7.1 has and 9.1 does not yet.
#[derive(Debug, Clone, Default)]
pub struct MissingEvents {
    /// Those not on 9.1, as selections of runs of consecutive ids.
    pub selections: Vec<Selection>,
    /// The blocks of ids whose counts differed, with 7.1's count.
    differing: Vec<(i64, i64)>,
}

/// Finds the window's policy events that 9.1 lacks. Cheap at any window
/// size: blocks of ids are counted on both sides (at once), and only the
/// blocks whose counts differ are listed id by id (a commit that landed out
/// of id order after the presync's snapshot is found too).
pub async fn missing_window_events(
    client_71: &impl GenericClient,
    client_91: &impl GenericClient,
    window: &EventWindow,
) -> Result<MissingEvents> {
    let (on_71, on_91) = tokio::try_join!(
        window_event_blocks(client_71, EventSide::Source71, window, None),
        window_event_blocks(client_91, EventSide::Target91, window, None),
    )?;
    let mut missing = MissingEvents::default();
    for (&block, &count) in &on_71 {
        if on_91.get(&block) == Some(&count) {
            continue;
        }
        missing.differing.push((block, count));
        let ids_71 = window_event_ids(client_71, EventSide::Source71, window, block).await?;
        let ids_91 = window_event_ids(client_91, EventSide::Target91, window, block).await?;
        missing
            .selections
            .extend(missing_event_selections(&ids_71, &ids_91));
    }
    if let Some(block) = on_91.keys().find(|block| !on_71.contains_key(block)) {
        missing.differing.push((*block, 0));
    }
    Ok(missing)
}

/// Checks that, once `missing` was copied, 9.1 holds exactly the window's
/// policy events that 7.1 has: the blocks that differed are counted again
/// on 9.1 (7.1 is read-only, and the other blocks agreed already).
pub async fn check_window_events(
    client_91: &impl GenericClient,
    window: &EventWindow,
    missing: &MissingEvents,
) -> Result<()> {
    for &(block, on_71) in &missing.differing {
        let on_91 = window_event_blocks(client_91, EventSide::Target91, window, Some(block))
            .await?
            .get(&block)
            .copied()
            .unwrap_or(0);
        if on_91 != on_71 {
            bail!(
                "9.1 holds {on_91} policy events of the last 24 hours with ids {} to {}, 7.1 has {on_71}: \
                 the 9.1 database does not hold what 7.1 had, so the upgrade must not switch to it",
                block * ID_BLOCK,
                block * ID_BLOCK + ID_BLOCK - 1
            );
        }
    }
    Ok(())
}

/// How long [`fence_low_water`] waits for the transactions open on 7.1.
const FENCE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads the highest policy event id 7.1 has handed out, then waits until
/// every transaction open at that moment has ended: any of them may hold a
/// lower id not yet committed. After that, every policy event with an id up
/// to the mark is committed (or never will be), so a snapshot taken next
/// sees all of them, and the rows it misses all have higher ids. `None`
/// when a transaction stays open longer than 30 s (the downtime then
/// compares the whole window, which is slower, not less exact).
pub async fn fence_low_water(client_71: &impl GenericClient) -> Result<Option<i64>> {
    let row = client_71
        .query_one(
            "SELECT s.last_value, s.cache_size, \
                    array(SELECT virtualtransaction FROM pg_locks \
                           WHERE locktype = 'virtualxid' AND granted AND pid <> pg_backend_pid()) \
               FROM pg_catalog.pg_sequences s \
              WHERE format('%I.%I', s.schemaname, s.sequencename) \
                  = pg_get_serial_sequence('tb_policy_event', 'event_id')",
            &[],
        )
        .await
        .context("reading the 7.1 policy event id sequence")?;
    // With a cache, a session hands out ids it took earlier: no mark holds.
    if row.get::<_, i64>(1) != 1 {
        return Ok(None);
    }
    let low_water: Option<i64> = row.get(0);
    let open: Vec<String> = row.get(2);
    let deadline = std::time::Instant::now() + FENCE_TIMEOUT;
    loop {
        let still_open: i64 = client_71
            .query_one(
                "SELECT count(*) FROM pg_locks \
                  WHERE locktype = 'virtualxid' AND granted AND virtualtransaction = ANY($1)",
                &[&open],
            )
            .await
            .context("waiting for the transactions open on 7.1")?
            .get(0);
        if still_open == 0 {
            return Ok(Some(low_water.unwrap_or(0)));
        }
        crate::fail_point!("presync-fence-waiting");
        if std::time::Instant::now() > deadline {
            tracing::warn!(
                still_open,
                "transactions on 7.1 stayed open for 30 s: the downtime compares the whole window"
            );
            return Ok(None);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// What the presync leaves for the migrate step, kept in the 9.1
/// database's staging schema with the rows it describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresyncMark {
    /// See [`EventWindow::above`].
    pub low_water: Option<i64>,
    /// Policy events of the window the presync copied.
    pub policy_events: i64,
}

impl PresyncMark {
    /// Records the mark.
    pub async fn record(&self, client_91: &impl GenericClient) -> Result<()> {
        client_91
            .execute(
                &format!(
                    "CREATE TABLE {STAGING_SCHEMA}.presync_mark AS \
                     SELECT $1::bigint AS low_water, $2::bigint AS policy_events"
                ),
                &[&self.low_water, &self.policy_events],
            )
            .await
            .context("recording what the presync copied")?;
        Ok(())
    }

    /// Reads the mark the presync recorded.
    pub async fn read(client_91: &impl GenericClient) -> Result<Self> {
        let row = client_91
            .query_one(
                &format!("SELECT low_water, policy_events FROM {STAGING_SCHEMA}.presync_mark"),
                &[],
            )
            .await
            .context("reading what the presync copied from the 9.1 database")?;
        Ok(Self {
            low_water: row.get(0),
            policy_events: row.get(1),
        })
    }
}

/// The policy events in `on_71` but not in `on_91` (both sorted), as
/// selections of runs of consecutive ids: every id of a run is one of
/// them, so the same selection gives exactly those rows on both servers.
pub fn missing_event_selections(on_71: &[i64], on_91: &[i64]) -> Vec<Selection> {
    let present: std::collections::HashSet<i64> = on_91.iter().copied().collect();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for id in on_71.iter().copied().filter(|id| !present.contains(id)) {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == id => *last = id,
            _ => runs.push((id, id)),
        }
    }
    runs.into_iter()
        .map(|(first, last)| Selection::event_ids(first, last))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_events_are_selected_as_runs_of_consecutive_ids() {
        let on_71 = [3, 5, 6, 7, 8, 9, 12, 13, 20];
        let on_91 = [3, 5, 6, 8];
        let runs: Vec<String> = missing_event_selections(&on_71, &on_91)
            .iter()
            .map(|s| s.where_clause())
            .collect();
        assert_eq!(
            runs,
            [
                "WHERE event_id BETWEEN 7 AND 7",
                "WHERE event_id BETWEEN 9 AND 9",
                "WHERE event_id BETWEEN 12 AND 13",
                "WHERE event_id BETWEEN 20 AND 20",
            ]
        );
        assert!(missing_event_selections(&on_91, &on_91).is_empty());
    }
}
