//! The background transfer's SQL: the history older than the 24-hour
//! window, moved from the 7.1 server in the backup to 9.1 in batches, each
//! a range of 7.1 ids. The 7.1 server itself turns a batch's rows into 9.1
//! rows (the mapping of `sql/91/011_transform_history.sql`, written as the
//! queries below), and binary `COPY` takes them straight into the 9.1
//! tables; the batch commits together with its cursor
//! (`sql/91/012_transfer.sql`), so that a kill at any moment neither loses
//! nor duplicates a row, and each batch starts where that cursor is in 9.1,
//! so a COMMIT whose answer was lost is read there. Ranges never overlap and the window's rows are
//! outside every range, so no row can be there already: a duplicate would
//! fail the batch on the primary key rather than pass unseen. Rows the
//! transformation refuses are kept in a reject table with the reason.
//!
//! Each batch is compared before it commits: the checksum of its 7.1 rows
//! against that of what 9.1 now holds of them, read back through
//! `compat71`; this is what proves the two statements of the mapping agree.
//! The cursor adds up what each batch committed, and the final comparison
//! sets 7.1's checksum of every moved row against that sum. It does not
//! read the 9.1 tables again: 9.1 is live, and its users may release a
//! quarantined message, or its purge delete an old event, once the row is
//! across.

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use super::selection::{Filter, Selection, timestamp_literal};
use super::tables::Table71;
use super::verify::{Checksum, Verified, checksum_rows, checksum_target_where};
use crate::system::pg::copy_pipe;

/// The cursor and reject tables.
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
    /// The highest id among them: done once `last_id` reaches it.
    pub max_id: i64,
    /// When the last batch committed.
    pub committed_at: Option<DateTime<Utc>>,
    /// Every row is across.
    pub done: bool,
    /// What 9.1 held of the moved rows as each batch committed, added up.
    pub committed: Checksum,
}

/// What one batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The 7.1 ids the batch covered (some may have no row).
    pub ids: i64,
    /// Rows read from 7.1.
    pub rows: i64,
    /// Rows the 9.1 tables gained (recipients not counted).
    pub added: i64,
    /// Rows refused and kept in the reject table.
    pub rejected: i64,
    /// The table's cursor after the batch.
    pub cursor: TableCursor,
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

/// Where a batch's rows go on 9.1, and the 7.1 query that makes them.
struct Stream {
    target: &'static str,
    select_71: String,
}

/// The 9.1 rows of the 7.1 rows of `table` that `range` (an SQL condition)
/// selects, one stream per 9.1 table, as `sql/91/011_transform_history.sql`
/// makes them: times from UTC wall clock to `timestamptz`, action codes to
/// words, recipients split off in their order, 7.1's narrower types
/// widened, and `source` '7.1'. Policy events with an action code 9.1 has
/// no word for are left out: [`refused_events`] takes them.
fn streams(table: Table71, range: &str, plan: &TransferPlan) -> Vec<Stream> {
    match table {
        Table71::PolicyEvent => {
            let known = known_action(plan);
            vec![
                Stream {
                    target: "public.policy_event (event_id, event_time, message_id, scanner_host, \
                             sender, subject, rule_id, rule_name, action, reason, message_size, source)",
                    select_71: format!(
                        "SELECT event_id::bigint, event_time AT TIME ZONE 'UTC', message_id::text, \
                                scanner_host::text, sender::text, subject::text, rule_id::bigint, \
                                rule_name::text, ({names})[action + 1], reason::text, \
                                message_size::bigint, '7.1'::text \
                           FROM tb_policy_event WHERE {range} AND {known}",
                        names = text_array_literal(&plan.action_names),
                    ),
                },
                Stream {
                    target: "public.policy_event_recipient (event_id, ordinal, recipient)",
                    select_71: format!(
                        "SELECT event_id::bigint, r.ordinal::integer, r.recipient \
                           FROM tb_policy_event \
                          CROSS JOIN LATERAL unnest(string_to_array(recipients, ',')) \
                                WITH ORDINALITY AS r(recipient, ordinal) \
                          WHERE {range} AND {known}"
                    ),
                },
            ]
        }
        Table71::Quarantine => vec![Stream {
            target: "public.quarantine_message (quarantine_id, event_id, quarantined_at, area_name, \
                     message_id, sender, recipient, subject, reason, file_path, file_size, released, \
                     source)",
            select_71: format!(
                "SELECT quarantine_id::bigint, event_id::bigint, quarantine_time AT TIME ZONE 'UTC', \
                        area_name::text, message_id::text, sender::text, recipient::text, \
                        subject::text, reason::text, file_path::text, file_size::bigint, released, \
                        '7.1'::text \
                   FROM tb_quarantine WHERE {range}"
            ),
        }],
        Table71::Archive => vec![Stream {
            target: "public.archive_message (archive_id, event_id, archived_at, area_name, \
                     message_id, sender, recipient, subject, file_path, file_size, source)",
            select_71: format!(
                "SELECT archive_id::bigint, event_id::bigint, archive_time AT TIME ZONE 'UTC', \
                        area_name::text, message_id::text, sender::text, recipient::text, \
                        subject::text, file_path::text, file_size::bigint, '7.1'::text \
                   FROM tb_archive WHERE {range}"
            ),
        }],
        other => unreachable!("{other} is not a history table"),
    }
}

impl TransferPlan {
    /// The highest 7.1 action code 9.1 has a word for (they start at 0).
    fn last_action_code(&self) -> usize {
        self.action_names.len() - 1
    }
}

/// The condition on a 7.1 policy event that its action code has a word.
fn known_action(plan: &TransferPlan) -> String {
    format!("action BETWEEN 0 AND {}", plan.last_action_code())
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

/// Rows of a batch the transformation refuses, as columns of the reject
/// table.
#[derive(Default)]
struct Refused {
    ids: Vec<i64>,
    reasons: Vec<String>,
    /// Each whole 7.1 row, as JSON.
    rows_71: Vec<String>,
}

/// The policy events in `range` whose action code 9.1 has no word for.
async fn refused_events(source_71: &Client, range: &str, plan: &TransferPlan) -> Result<Refused> {
    let rows = source_71
        .query(
            &format!(
                "SELECT event_id::bigint, action, row_to_json(e)::text FROM tb_policy_event e \
                  WHERE {range} AND NOT ({known})",
                known = known_action(plan)
            ),
            &[],
        )
        .await
        .context("looking for policy events whose action code 9.1 does not know")?;
    Ok(Refused {
        ids: rows.iter().map(|row| row.get(0)).collect(),
        reasons: rows
            .iter()
            .map(|row| {
                format!(
                    "action code {} has no 9.1 name (9.1 knows 0 to {})",
                    row.get::<_, i16>(1),
                    plan.last_action_code()
                )
            })
            .collect(),
        rows_71: rows.iter().map(|row| row.get(2)).collect(),
    })
}

/// Moves the next batch of `cursor`'s table in one 9.1 transaction with
/// its cursor: the rows older than the plan's cutoff with ids after the
/// cursor's `last_id`, at most `span` ids on. A batch past the last id
/// marks the table done.
///
/// The batch starts where the cursor in 9.1 is, read (and locked) in its
/// own transaction, not where `cursor` (the caller's last sight of it)
/// says: a batch whose COMMIT got no answer, the connection lost, may have
/// committed, and its cursor with it; the next batch then goes on after
/// it instead of moving its ids again.
pub async fn move_batch(
    source_71: &Client,
    target_91: &Client,
    cursor: &TableCursor,
    plan: &TransferPlan,
    span: i64,
) -> Result<BatchOutcome> {
    let table = cursor.table;
    target_91
        .batch_execute("BEGIN")
        .await
        .context("starting a transfer batch on 9.1")?;
    let moved = async {
        let row = target_91
            .query_one(
                &format!(
                    "SELECT {CURSOR_COLUMNS} FROM upgrade_transfer.cursor \
                      WHERE table_name = $1 FOR UPDATE"
                ),
                &[&table.name()],
            )
            .await
            .with_context(|| format!("reading the transfer cursor of {table} in 9.1"))?;
        let at = cursor_of(table, &row);
        if at.last_id != cursor.last_id {
            tracing::warn!(
                imss_table = table.name(),
                "the transfer cursor of {table} is at id {}, not {}: the batch whose COMMIT got no \
                 answer committed; going on after it",
                at.last_id,
                cursor.last_id
            );
        }
        let after = at.last_id;
        let through = after.saturating_add(span.max(1)).min(at.max_id).max(after);
        let ids = format!(
            "{id} > {after} AND {id} <= {through}",
            id = table.id_column().expect("history tables have ids"),
        );
        let range = format!(
            "{ids} AND {time} < {cutoff}",
            time = table.time_column().expect("history tables have times"),
            cutoff = timestamp_literal(plan.cutoff),
        );
        let began = std::time::Instant::now();
        let mut added = 0;
        let mut refused = Refused::default();
        let mut committed = Checksum::none();
        if through > after {
            for (index, stream) in streams(table, &range, plan).iter().enumerate() {
                let copied = copy_pipe(
                    source_71,
                    &format!("COPY ({}) TO STDOUT (FORMAT binary)", stream.select_71),
                    target_91,
                    &format!("COPY {} FROM STDIN (FORMAT binary)", stream.target),
                )
                .await
                .with_context(|| {
                    format!(
                        "copying {table} ids {after} to {through} from 7.1 into {}",
                        stream.target
                    )
                })?;
                // The first stream is the table's own rows; the rest hang on them.
                if index == 0 {
                    added = copied as i64;
                }
            }
            if table == Table71::PolicyEvent {
                refused = refused_events(source_71, &range, plan).await?;
            }
            committed = compare_batch(source_71, target_91, table, &ids, plan).await?;
        }
        let moved_in = began.elapsed();
        let rejected = refused.ids.len() as i64;
        if rejected > 0 {
            target_91
                .execute(
                    "INSERT INTO upgrade_transfer.rejected (table_name, row_id, reason, row_71) \
                     SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[])",
                    &[
                        &table.name(),
                        &refused.ids,
                        &refused.reasons,
                        &refused.rows_71,
                    ],
                )
                .await
                .with_context(|| format!("keeping {rejected} refused rows of {table}"))?;
        }
        let row = target_91
            .query_opt(
                &format!(
                    "UPDATE upgrade_transfer.cursor \
                        SET last_id = $2, rows_done = rows_done + $3, \
                            rows_rejected = rows_rejected + $4, committed_at = now(), \
                            done = $2 >= max_id, committed_rows = committed_rows + $6, \
                            committed_sum = committed_sum + $7::text::numeric \
                      WHERE table_name = $1 AND last_id = $5 \
                  RETURNING {CURSOR_COLUMNS}"
                ),
                &[
                    &table.name(),
                    &through,
                    &(added + rejected),
                    &rejected,
                    &after,
                    &committed.rows,
                    &committed.sum,
                ],
            )
            .await
            .with_context(|| format!("moving the transfer cursor of {table}"))?
            .with_context(|| {
                format!(
                    "the transfer cursor of {table} is no longer at id {after}: another transfer \
                     moved it; this batch is rolled back"
                )
            })?;
        crate::fail_point!("transfer-batch-settled");
        let committed = target_91.batch_execute("COMMIT").await;
        #[cfg(feature = "failpoints")]
        let committed = lose_commit_answer(target_91, committed).await;
        committed.with_context(|| {
            format!(
                "committing the batch of {table} ids {after} to {through} with its cursor (with \
                 the connection lost, whether it committed is unknown: the next batch reads it \
                 from the cursor)"
            )
        })?;
        tracing::debug!(
            imss_table = table.name(),
            "batch of ids {after} to {through}: {added} rows copied and compared in {} ms, \
             committed in {} ms",
            moved_in.as_millis(),
            (began.elapsed() - moved_in).as_millis()
        );
        Ok::<_, anyhow::Error>(BatchOutcome {
            ids: through - after,
            rows: added + rejected,
            added,
            rejected,
            cursor: cursor_of(table, &row),
        })
    }
    .await;
    if moved.is_err() {
        // The connection may be gone; then the server rolled back already.
        let _ = target_91.batch_execute("ROLLBACK").await;
    }
    moved
}

/// Fail point `transfer-batch-committed`: the batch committed, and its
/// connection is lost before the COMMIT's answer arrives, as a network
/// failure or a restart of 9.1's server process would lose it. The server
/// ends the session, and the COMMIT's result is that loss.
#[cfg(feature = "failpoints")]
async fn lose_commit_answer(
    target_91: &Client,
    committed: Result<(), tokio_postgres::Error>,
) -> Result<(), tokio_postgres::Error> {
    fn armed() -> bool {
        fail::fail_point!("transfer-batch-committed", |_| true);
        false
    }
    if committed.is_ok() && armed() {
        return target_91
            .batch_execute("SELECT pg_terminate_backend(pg_backend_pid())")
            .await;
    }
    committed
}

/// Compares a batch before it commits: the checksum of the 7.1 rows with
/// `ids` (older than the cutoff, less those refused) against that of what
/// 9.1 holds from 7.1 with those ids (older than the cutoff) in the
/// batch's own transaction, through `compat71`; returns the checksum.
async fn compare_batch(
    source_71: &Client,
    target_91: &Client,
    table: Table71,
    ids: &str,
    plan: &TransferPlan,
) -> Result<Checksum> {
    let selection = Selection::new(table, Filter::Before(plan.cutoff)).expect("history tables");
    let moved_71 = match table {
        Table71::PolicyEvent => format!("{ids} AND {}", known_action(plan)),
        _ => ids.to_string(),
    };
    // Each on its own server: both at once.
    let (on_71, on_91) = tokio::try_join!(
        checksum_rows(source_71, &selection, table.name(), Some(&moved_71)),
        checksum_target_where(target_91, &selection, Some(ids))
    )?;
    if on_71 != on_91 {
        return Err(TransferMismatch {
            what: format!("the batch of {selection} with {ids}"),
            on_71,
            on_91,
        }
        .into());
    }
    Ok(on_91)
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

/// How many sessions on 9.1 other than the upgrade's own run a query now:
/// the load the transfer backs off from.
pub async fn busy_sessions(target_91: &impl GenericClient) -> Result<i64> {
    Ok(target_91
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
              WHERE backend_type = 'client backend' AND state = 'active' \
                AND application_name <> 'imss-upgrade' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .context("asking 9.1 how many sessions run a query")?
        .get(0))
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
