//! The background transfer's SQL: the history older than the 24-hour
//! window, moved from the 7.1 server in the backup to 9.1 in batches, each
//! a range of 7.1 ids ([`move_batch`]). The 7.1 server itself turns a
//! batch's rows into 9.1 rows (the mapping the downtime uses too,
//! [`super::history_mapping`]), and binary `COPY` takes them straight into
//! the 9.1 tables; the batch commits together with its cursor
//! (`sql/91/012_transfer.sql`), so that a kill at any moment neither loses
//! nor duplicates a row, and each batch starts where that cursor is in 9.1,
//! so a COMMIT whose answer was lost is read there. Ranges never overlap and the window's rows are
//! outside every range, so no row can be there already: a duplicate would
//! fail the batch on the primary key rather than pass unseen. Rows the
//! transformation refuses are kept in a reject table with the reason.
//!
//! Each batch is compared before it commits: the checksum of its 7.1 rows
//! against that of what 9.1 now holds of them, read back through
//! `compat71`, so 9.1 reads the rows back as 7.1 has them.
//! The cursor adds up what each batch committed, and the final comparison
//! ([`verify_transferred`]) sets 7.1's checksum of every moved row against
//! that sum. It does not read the 9.1 tables again: 9.1 is live, and its
//! users may release a quarantined message, or its purge delete an old
//! event, once the row is across.

mod batch;
mod sessions;

pub use batch::{BatchOutcome, move_batch};
pub use sessions::{backend_pid, batch_waits_for, busy_sessions};

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

use super::selection::{Filter, Selection};
use super::tables::Table71;
use super::verify::{Checksum, Verified, checksum_rows};

/// The cursor and reject tables.
pub const TRANSFER_SQL: &str = include_str!("../../../sql/91/012_transfer.sql");

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
    /// The highest id among them: done once `last_id` reaches it.
    pub max_id: i64,
    /// When the last batch committed.
    pub committed_at: Option<DateTime<Utc>>,
    /// Every row is across.
    pub done: bool,
    /// What 9.1 held of the moved rows as each batch committed, added up.
    pub committed: Checksum,
}

/// What every batch needs to know: where the window began, and 9.1's words
/// for 7.1's policy action codes (`compat71.policy_action_names()`).
#[derive(Debug, Clone)]
pub struct TransferPlan {
    cutoff: NaiveDateTime,
    action_names: Vec<String>,
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
/// the first time; returns the plan and the cursors.
pub async fn prepare(
    source_71: &impl GenericClient,
    target_91: &impl GenericClient,
    cutoff: NaiveDateTime,
) -> Result<(TransferPlan, Vec<TableCursor>)> {
    target_91
        .batch_execute(TRANSFER_SQL)
        .await
        .context("creating the transfer's tables in the 9.1 database (sql/91/012_transfer.sql)")?;
    let action_names: Vec<String> = target_91
        .query_one("SELECT compat71.policy_action_names()", &[])
        .await
        .context("reading 9.1's policy action words (compat71.policy_action_names())")?
        .get(0);
    let plan = TransferPlan {
        cutoff,
        action_names,
    };
    let known = cursors(target_91).await?;
    for selection in older_history(cutoff) {
        let table = selection.table();
        if known.iter().any(|cursor| cursor.table == table) {
            continue;
        }
        let id = table.id_column().expect("history tables have ids");
        let counted = source_71
            .query_one(
                &format!(
                    "SELECT count(*), coalesce(max({id}), 0)::bigint FROM {} {}",
                    table.name(),
                    selection.where_clause()
                ),
                &[],
            )
            .await
            .with_context(|| format!("counting {selection} on 7.1"))?;
        let (total, max_id): (i64, i64) = (counted.get(0), counted.get(1));
        target_91
            .execute(
                "INSERT INTO upgrade_transfer.cursor (table_name, rows_total, max_id) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&table.name(), &total, &max_id],
            )
            .await
            .with_context(|| format!("creating the transfer cursor of {table}"))?;
    }
    Ok((plan, cursors(target_91).await?))
}

const CURSOR_COLUMNS: &str = "table_name, last_id, rows_done, rows_rejected, rows_total, max_id, \
     committed_at, done, committed_rows, committed_sum::text";

fn cursor_of(table: Table71, row: &tokio_postgres::Row) -> TableCursor {
    TableCursor {
        table,
        last_id: row.get("last_id"),
        rows_done: row.get("rows_done"),
        rows_rejected: row.get("rows_rejected"),
        rows_total: row.get("rows_total"),
        max_id: row.get("max_id"),
        committed_at: row.get("committed_at"),
        done: row.get("done"),
        committed: Checksum {
            rows: row.get("committed_rows"),
            sum: row.get("committed_sum"),
        },
    }
}

/// The cursors, in the order of [`Table71::HISTORY`]; none before
/// [`prepare`].
pub async fn cursors(target_91: &impl GenericClient) -> Result<Vec<TableCursor>> {
    if !transfer_table_exists(target_91, "cursor").await? {
        return Ok(Vec::new());
    }
    let rows = target_91
        .query(
            &format!("SELECT {CURSOR_COLUMNS} FROM upgrade_transfer.cursor"),
            &[],
        )
        .await
        .context("reading the transfer's cursor in the 9.1 database")?;
    Ok(Table71::HISTORY
        .iter()
        .filter_map(|&table| {
            let row = rows
                .iter()
                .find(|row| row.get::<_, &str>("table_name") == table.name())?;
            Some(cursor_of(table, row))
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

impl TransferPlan {
    /// The highest 7.1 action code 9.1 has a word for (they start at 0).
    fn last_action_code(&self) -> usize {
        self.action_names.len() - 1
    }

    /// 9.1's words for the action codes, as an SQL `text[]` literal that
    /// the 7.1 server reads as written ([`text_array_literal`]).
    fn action_words(&self) -> String {
        text_array_literal(&self.action_names)
    }
}

/// An SQL `text[]` literal of `items`, each an escape string (`E'…'`)
/// with its backslashes and quotes escaped: it reads the same whatever the
/// server's `standard_conforming_strings`, which 7.1's PostgreSQL 10 may
/// have off, where a backslash in a plain literal escapes the next
/// character, a quote too. (`COPY (SELECT …)` takes no parameters.)
fn text_array_literal(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| format!("E'{}'", item.replace('\\', r"\\").replace('\'', "''")))
        .collect();
    format!("ARRAY[{}]::text[]", quoted.join(", "))
}

/// 7.1 and 9.1 disagree about moved rows.
#[derive(Debug, thiserror::Error)]
#[error(
    "the moved rows of {what} differ: 7.1 has {on_71}, 9.1 {on_91}; the transfer keeps the \
     cursor where it was and stops, since 9.1's reading of these rows is not 7.1's: report this \
     with `imss-upgrade status --json`"
)]
pub struct TransferMismatch {
    /// Which rows.
    pub what: String,
    /// On 7.1.
    pub on_71: Checksum,
    /// On 9.1.
    pub on_91: Checksum,
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

/// Which of `table`'s 7.1 rows older than the window the transfer moved
/// into 9.1, as its cursor says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MovedRows {
    /// Every row older than the window with an id up to here was moved
    /// (0: none, the transfer never ran or has not reached the table).
    pub through_id: i64,
    /// Of those, the ones 9.1 refused, which never reached it.
    pub rejected: Vec<i64>,
}

/// Which of `table`'s older rows the transfer moved (see [`MovedRows`]):
/// read with the 9.1 tables, since a batch commits with its cursor.
pub async fn moved_rows(target_91: &impl GenericClient, table: Table71) -> Result<MovedRows> {
    let Some(cursor) = cursors(target_91)
        .await?
        .into_iter()
        .find(|cursor| cursor.table == table)
    else {
        return Ok(MovedRows::default());
    };
    Ok(MovedRows {
        through_id: cursor.last_id,
        rejected: rejected_ids(target_91, table).await?,
    })
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
/// than `cutoff` on 7.1 (less the rejected ones) with what the batches
/// committed into 9.1 (`cursors`), each compared as it committed.
pub async fn verify_transferred(
    source_71: &impl GenericClient,
    target_91: &impl GenericClient,
    cursors: &[TableCursor],
    cutoff: NaiveDateTime,
) -> Result<Vec<Verified>> {
    let mut verified = Vec::new();
    for selection in older_history(cutoff) {
        let table = selection.table();
        let committed = &cursors
            .iter()
            .find(|cursor| cursor.table == table)
            .with_context(|| format!("the transfer has no cursor for {table}"))?
            .committed;
        let rejected = rejected_ids(target_91, table).await?;
        let id = table.id_column().expect("history tables have ids");
        let not_rejected = (!rejected.is_empty()).then(|| {
            let ids: Vec<String> = rejected.iter().map(i64::to_string).collect();
            format!("{id} <> ALL ('{{{}}}'::bigint[])", ids.join(","))
        });
        let on_71 =
            checksum_rows(source_71, &selection, table.name(), not_rejected.as_deref()).await?;
        if on_71 != *committed {
            return Err(TransferMismatch {
                what: format!("{selection}, all batches together"),
                on_71,
                on_91: committed.clone(),
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
