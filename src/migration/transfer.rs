//! The background transfer's SQL: the history older than the 24-hour
//! window, moved from the 7.1 server in the backup to 9.1 in batches by
//! id. Each batch goes by binary `COPY` into the staging tables and through
//! the same transformation as the window, and commits together with its
//! cursor (`sql/91/012_transfer.sql`), so that a kill at any moment neither
//! loses nor duplicates a row. Rows the transformation refuses are kept in
//! a reject table with the reason.

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use super::schema::STAGING_SCHEMA;
use super::selection::{Filter, Selection, timestamp_literal};
use super::tables::Table71;
use super::verify::{ChecksumMismatch, Verified, checksum_rows, checksum_target};
use crate::system::pg::copy_pipe;

/// The cursor and reject tables and the batch function.
pub const TRANSFER_SQL: &str = include_str!("../../sql/91/012_transfer.sql");

/// Where one history table's transfer is, as its cursor says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCursor {
    /// The 7.1 table.
    pub table: Table71,
    /// Every row with an id up to here is in 9.1 or rejected.
    pub last_id: i64,
    /// Rows transferred or rejected.
    pub rows_done: i64,
    /// Of those, rejected.
    pub rows_rejected: i64,
    /// The rows older than the window on 7.1.
    pub rows_total: i64,
    /// When the last batch committed.
    pub committed_at: Option<DateTime<Utc>>,
    /// Every row is across.
    pub done: bool,
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Rows read from 7.1.
    pub rows: i64,
    /// Rows the 9.1 tables gained (recipients not counted).
    pub added: i64,
    /// Rows refused and kept in the reject table.
    pub rejected: i64,
}

/// The history older than `cutoff` (where the window began): what the
/// transfer moves, per history table.
pub fn older_history(cutoff: NaiveDateTime) -> Vec<Selection> {
    Table71::HISTORY
        .iter()
        .map(|&table| Selection::new(table, Filter::Before(cutoff)).expect("history tables"))
        .collect()
}

/// Creates the transfer's tables if they are missing and gives every
/// history table a cursor, counting its rows older than `cutoff` on 7.1
/// the first time; returns the cursors.
pub async fn prepare(
    source_71: &impl GenericClient,
    target_91: &impl GenericClient,
    cutoff: NaiveDateTime,
) -> Result<Vec<TableCursor>> {
    target_91
        .batch_execute(TRANSFER_SQL)
        .await
        .context("creating the transfer's tables in the 9.1 database (sql/91/012_transfer.sql)")?;
    let known = cursors(target_91).await?;
    for selection in older_history(cutoff) {
        let table = selection.table();
        if known.iter().any(|cursor| cursor.table == table) {
            continue;
        }
        let total: i64 = source_71
            .query_one(
                &format!(
                    "SELECT count(*) FROM {} {}",
                    table.name(),
                    selection.where_clause()
                ),
                &[],
            )
            .await
            .with_context(|| format!("counting {selection} on 7.1"))?
            .get(0);
        target_91
            .execute(
                "INSERT INTO upgrade_transfer.cursor (table_name, rows_total) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
                &[&table.name(), &total],
            )
            .await
            .with_context(|| format!("creating the transfer cursor of {table}"))?;
    }
    cursors(target_91).await
}

/// The cursors, in the order of [`Table71::HISTORY`]; none before
/// [`prepare`].
pub async fn cursors(target_91: &impl GenericClient) -> Result<Vec<TableCursor>> {
    if !transfer_table_exists(target_91, "cursor").await? {
        return Ok(Vec::new());
    }
    let rows = target_91
        .query(
            "SELECT table_name, last_id, rows_done, rows_rejected, rows_total, committed_at, done \
               FROM upgrade_transfer.cursor",
            &[],
        )
        .await
        .context("reading the transfer's cursor in the 9.1 database")?;
    Ok(Table71::HISTORY
        .iter()
        .filter_map(|&table| {
            let row = rows
                .iter()
                .find(|row| row.get::<_, &str>(0) == table.name())?;
            Some(TableCursor {
                table,
                last_id: row.get(1),
                rows_done: row.get(2),
                rows_rejected: row.get(3),
                rows_total: row.get(4),
                committed_at: row.get(5),
                done: row.get(6),
            })
        })
        .collect())
}

/// Readies the transfer's 9.1 session: its foreign key checks off
/// (`session_replication_role = replica`, as `pg_restore
/// --disable-triggers` does), where the account may do that. A batch
/// inserts the recipients' events in the same transaction, so the key
/// holds by construction, and its check, one query per recipient, took
/// about half of each batch. Elsewhere the checks stay, and only cost time.
pub async fn prepare_session(target_91: &impl GenericClient) {
    if let Err(err) = target_91
        .batch_execute("SET session_replication_role = replica")
        .await
    {
        tracing::debug!("the transfer keeps 9.1's foreign key checks: {err}");
    }
}

/// Whether the transfer's table `name` exists (it is made at the first
/// start).
async fn transfer_table_exists(target_91: &impl GenericClient, name: &str) -> Result<bool> {
    Ok(target_91
        .query_one(
            "SELECT to_regclass(format('upgrade_transfer.%I', $1::text)) IS NOT NULL",
            &[&name],
        )
        .await
        .with_context(|| format!("looking for upgrade_transfer.{name} in the 9.1 database"))?
        .get(0))
}

/// Moves the next batch of `table` (at most `limit` rows older than
/// `cutoff` with ids above `cursor.last_id`) in one 9.1 transaction, with
/// its cursor. An empty batch marks the table done.
pub async fn move_batch(
    source_71: &Client,
    target_91: &Client,
    cursor: &TableCursor,
    cutoff: NaiveDateTime,
    limit: i64,
) -> Result<BatchOutcome> {
    let table = cursor.table;
    let id = table.id_column().expect("history tables have ids");
    let time = table.time_column().expect("history tables have times");
    let copy_out = format!(
        "COPY (SELECT {columns} FROM {name} WHERE {id} > {after} AND {time} < {cutoff} \
               ORDER BY {id} LIMIT {limit}) TO STDOUT (FORMAT binary)",
        columns = table.column_list(),
        name = table.name(),
        after = cursor.last_id,
        cutoff = timestamp_literal(cutoff),
    );
    let copy_in = format!(
        "COPY {STAGING_SCHEMA}.{} ({}) FROM STDIN (FORMAT binary)",
        table.name(),
        table.column_list()
    );
    target_91
        .batch_execute("BEGIN")
        .await
        .context("starting a transfer batch on 9.1")?;
    let moved = async {
        let began = std::time::Instant::now();
        copy_pipe(source_71, &copy_out, target_91, &copy_in)
            .await
            .with_context(|| format!("copying a batch of {table} from 7.1"))?;
        let copied = began.elapsed();
        let row = target_91
            .query_one(
                "SELECT staged, added, rejected FROM upgrade_transfer.settle_batch($1, $2)",
                &[&table.name(), &id],
            )
            .await
            .with_context(|| format!("moving a batch of {table} into the 9.1 tables"))?;
        let settled = began.elapsed();
        crate::fail_point!("transfer-batch-settled");
        target_91
            .batch_execute("COMMIT")
            .await
            .with_context(|| format!("committing a batch of {table} with its cursor"))?;
        tracing::debug!(
            imss_table = table.name(),
            "batch of {limit} rows: copied in {} ms, settled in {} ms, committed in {} ms",
            copied.as_millis(),
            (settled - copied).as_millis(),
            (began.elapsed() - settled).as_millis()
        );
        Ok::<_, anyhow::Error>(BatchOutcome {
            rows: row.get(0),
            added: row.get(1),
            rejected: row.get(2),
        })
    }
    .await;
    if moved.is_err() {
        // The connection may be gone; then the server rolled back already.
        let _ = target_91.batch_execute("ROLLBACK").await;
    }
    moved
}

/// The ids of `table`'s rejected rows.
pub async fn rejected_ids(target_91: &impl GenericClient, table: Table71) -> Result<Vec<i64>> {
    let rows = target_91
        .query(
            "SELECT row_id FROM upgrade_transfer.rejected WHERE table_name = $1 ORDER BY row_id",
            &[&table.name()],
        )
        .await
        .with_context(|| format!("reading the rejected rows of {table}"))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// One rejected row, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedRow {
    /// The 7.1 table.
    pub table: String,
    /// Its id there.
    pub row_id: i64,
    /// Why 9.1 refused it.
    pub reason: String,
}

/// The first `limit` rejected rows, by table and id.
pub async fn rejected_rows(target_91: &impl GenericClient, limit: i64) -> Result<Vec<RejectedRow>> {
    if !transfer_table_exists(target_91, "rejected").await? {
        return Ok(Vec::new());
    }
    let rows = target_91
        .query(
            "SELECT table_name, row_id, reason FROM upgrade_transfer.rejected \
              ORDER BY table_name, row_id LIMIT $1",
            &[&limit],
        )
        .await
        .context("reading the transfer's reject table")?;
    Ok(rows
        .iter()
        .map(|row| RejectedRow {
            table: row.get(0),
            row_id: row.get(1),
            reason: row.get(2),
        })
        .collect())
}

/// Compares, per history table, the count and checksum of the rows older
/// than `cutoff` on 7.1 (less the rejected ones) with the migrated rows
/// older than `cutoff` on 9.1.
pub async fn verify_transferred(
    source_71: &impl GenericClient,
    target_91: &impl GenericClient,
    cutoff: NaiveDateTime,
) -> Result<Vec<Verified>> {
    let mut verified = Vec::new();
    for selection in older_history(cutoff) {
        let table = selection.table();
        let rejected = rejected_ids(target_91, table).await?;
        let id = table.id_column().expect("history tables have ids");
        let not_rejected = (!rejected.is_empty()).then(|| {
            let ids: Vec<String> = rejected.iter().map(i64::to_string).collect();
            format!("{id} <> ALL ('{{{}}}'::bigint[])", ids.join(","))
        });
        let on_71 =
            checksum_rows(source_71, &selection, table.name(), not_rejected.as_deref()).await?;
        let on_91 = checksum_target(target_91, &selection).await?;
        if on_71 != on_91 {
            return Err(ChecksumMismatch {
                selection,
                on_71,
                on_91,
            }
            .into());
        }
        tracing::info!(
            imss_table = table.name(),
            imss_rows = on_71.rows,
            imss_rejected = rejected.len(),
            "transferred rows agree: {selection}"
        );
        verified.push(Verified {
            selection,
            checksum: on_71,
        });
    }
    Ok(verified)
}

/// The id of the 9.1 server process serving `client`.
pub async fn backend_pid(client: &impl GenericClient) -> Result<i32> {
    Ok(client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .context("asking 9.1 for the transfer's server process")?
        .get(0))
}

/// What a transfer's batch waits for on 9.1, if anything: the wait event
/// type and name of another active session of the upgrade
/// (`pg_stat_activity`), seen from a monitoring connection.
pub async fn batch_waits_for(monitor: &impl GenericClient) -> Result<Option<(String, String)>> {
    let row = monitor
        .query_opt(
            "SELECT wait_event_type, wait_event FROM pg_stat_activity \
              WHERE application_name = 'imss-upgrade' AND state = 'active' \
                AND wait_event_type IS NOT NULL AND pid <> pg_backend_pid() LIMIT 1",
            &[],
        )
        .await
        .context("asking 9.1 what the transfer waits for")?;
    Ok(row.map(|row| (row.get(0), row.get(1))))
}
