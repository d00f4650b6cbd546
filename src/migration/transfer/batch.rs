//! One batch of the transfer: a range of 7.1 ids of one table, its 9.1
//! rows made on the 7.1 server and copied into 9.1, its refused rows kept,
//! compared with 7.1 and committed with its cursor in one 9.1 transaction.

use anyhow::{Context, Result};
use tokio_postgres::Client;

use super::{CURSOR_COLUMNS, TableCursor, TransferMismatch, TransferPlan, cursor_of};
use crate::migration::history_mapping::{Rows71, Target91, has_action_word};
use crate::migration::selection::{Filter, Selection, timestamp_literal};
use crate::migration::tables::Table71;
use crate::migration::verify::{Checksum, checksum_rows, checksum_target_where};
use crate::system::pg::copy_pipe;

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

/// Where a batch's rows go on 9.1, and the 7.1 query that makes them.
struct Stream {
    target: String,
    select_71: String,
}

/// The 9.1 rows of the 7.1 rows of `table` that `range` (an SQL condition)
/// selects, one stream per 9.1 table, the table's own first, as the
/// history's mapping makes them ([`crate::migration::history_mapping`]).
/// Policy events with an action code 9.1 has no word for are left out:
/// [`refused_events`] takes them.
fn streams(table: Table71, range: &str, plan: &TransferPlan) -> Vec<Stream> {
    let condition = match table {
        Table71::PolicyEvent => format!("{range} AND {}", known_action(plan)),
        _ => range.to_string(),
    };
    let action_words = plan.action_words();
    Target91::of(table)
        .iter()
        .map(|target| Stream {
            target: target.with_columns(),
            select_71: target.select(&Rows71 {
                schema: None,
                action_words: &action_words,
                join: "",
                condition: Some(&condition),
            }),
        })
        .collect()
}

/// The condition on a 7.1 policy event that 9.1 has a word for its action
/// code.
fn known_action(plan: &TransferPlan) -> String {
    has_action_word(&plan.action_words())
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
