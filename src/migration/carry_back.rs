//! The rollback's carry-back: the mail 9.1 processed, back into the 7.1
//! database before 7.1 takes mail again, so that going back loses no log
//! and no quarantined message:
//!
//! - 9.1's own policy events (recipients joined again), quarantine and
//!   archive records, read through the `compat71` views (the 7.1 columns
//!   rebuilt from the 9.1 ones) and copied into the 7.1 tables with their
//!   9.1 ids, which the migration set above every 7.1 id; the 7.1
//!   sequences are then moved past them;
//! - what 9.1 did to the records it had from 7.1: quarantined messages
//!   released through the EUQ, and quarantine and archive records deleted
//!   there, among the rows that reached 9.1: those of the last 24 hours,
//!   which the migration took, and the older ones the background transfer
//!   moved (up to its cursor, less the rows 9.1 refused); older rows the
//!   transfer has not moved yet were never in 9.1, and stay.
//!
//! The upgrade's own health-check mails stay behind: they are the
//! upgrade's, not the customer's. Every table is copied in one transaction
//! ([`carry_rows`]), above the highest id 7.1 has, so running this again
//! after an interruption neither loses nor duplicates a row; what 9.1 did
//! to 7.1's records is applied after the rows ([`apply_91_changes`]).
//! [`verify_carried_back`] compares counts and checksums on both sides.

use anyhow::{Context, Result, ensure};
use chrono::NaiveDateTime;
use serde::Serialize;
use tokio_postgres::Client;

use super::selection::{Filter, Selection, timestamp_literal};
use super::tables::Table71;
use super::transfer;
use super::transform::IdFloors;
use super::verify::{Checksum, checksum_rows};
use crate::system::pg;

/// Mail the upgrade sent itself (`health::send_test_mail`): not carried.
const NOT_A_HEALTH_CHECK: &str = "message_id NOT LIKE '<imss-upgrade-%'";

/// What was carried back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CarriedBack {
    /// 9.1's policy events.
    pub policy_events: u64,
    /// 9.1's quarantine records.
    pub quarantine: u64,
    /// 9.1's archive records.
    pub archive: u64,
    /// Migrated quarantine records 9.1 released.
    pub released: u64,
    /// Migrated quarantine and archive records 9.1 deleted.
    pub deleted: u64,
}

/// Where each history table of 7.1 stood before anything was carried: the
/// highest id 7.1 had, so the rows above it are 9.1's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdsBefore {
    policy_event: i64,
    quarantine: i64,
    archive: i64,
}

impl IdsBefore {
    fn of(&self, table: Table71) -> i64 {
        match table {
            Table71::PolicyEvent => self.policy_event,
            Table71::Quarantine => self.quarantine,
            _ => self.archive,
        }
    }

    /// The rows of `table` above 7.1's ids, where 9.1's carried rows go.
    fn carried(&self, table: Table71) -> Selection {
        Selection::new(
            table,
            Filter::Ids {
                first: self.of(table) + 1,
                last: i64::MAX,
            },
        )
        .expect("history tables take id filters")
    }
}

/// The highest id of each history table of 7.1 that is not 9.1's: below
/// the lowest id 9.1 handed out (`first_91_ids`, read from 9.1), so that a
/// carry-back interrupted and run again finds the same line.
pub async fn ids_before(client_71: &Client, client_91: &Client) -> Result<IdsBefore> {
    let mut below = [0i64; 3];
    for (slot, table) in below.iter_mut().zip(Table71::HISTORY) {
        let id = table.id_column().expect("history tables have ids");
        let first_91: Option<i64> = client_91
            .query_one(
                &format!(
                    "SELECT min({id})::bigint FROM compat71.{} WHERE source = '9.1'",
                    table.name()
                ),
                &[],
            )
            .await
            .with_context(|| format!("reading 9.1's first id of {table}"))?
            .get(0);
        let bound = first_91.unwrap_or(i64::MAX);
        *slot = client_71
            .query_one(
                &format!(
                    "SELECT coalesce(max({id}), 0)::bigint FROM {} WHERE {id} < $1::bigint",
                    table.name()
                ),
                &[&bound],
            )
            .await
            .with_context(|| format!("reading 7.1's highest id of {table}"))?
            .get(0);
    }
    Ok(IdsBefore {
        policy_event: below[0],
        quarantine: below[1],
        archive: below[2],
    })
}

/// The highest ids 9.1 handed out, over its rows and sequences: a later
/// attempt's 9.1 must start above them.
pub async fn used_91_ids(client_91: &Client) -> Result<IdFloors> {
    let mut highest = [0i64; 3];
    let tables = [
        ("policy_event", "event_id"),
        ("quarantine_message", "quarantine_id"),
        ("archive_message", "archive_id"),
    ];
    for (slot, (table, id)) in highest.iter_mut().zip(tables) {
        *slot = client_91
            .query_one(
                &format!(
                    "SELECT greatest((SELECT coalesce(max({id}), 0) FROM public.{table}), \
                                     coalesce(pg_sequence_last_value(\
                                         pg_get_serial_sequence('public.{table}', '{id}')::regclass), 0))"
                ),
                &[],
            )
            .await
            .with_context(|| format!("reading the highest {id} 9.1 handed out"))?
            .get(0);
    }
    Ok(IdFloors {
        policy_event: highest[0],
        quarantine: highest[1],
        archive: highest[2],
    })
}

/// Carries 9.1's own rows of `table` back into 7.1 (see the module's
/// text), in one transaction, above what an interrupted carry-back brought
/// already; then 7.1's ids of `table` are moved past them. The rows
/// carried.
pub async fn carry_rows(
    client_71: &Client,
    client_91: &Client,
    before: &IdsBefore,
    table: Table71,
) -> Result<u64> {
    let id = table.id_column().expect("history tables have ids");
    // What an interrupted carry-back already brought stays: above it.
    let done: i64 = client_71
        .query_one(
            &format!(
                "SELECT coalesce(max({id}), 0)::bigint FROM {}",
                table.name()
            ),
            &[],
        )
        .await
        .with_context(|| format!("reading 7.1's highest id of {table}"))?
        .get(0);
    let from = done.max(before.of(table));
    let columns = table.column_list();
    let rows = pg::copy_pipe(
        client_91,
        &format!(
            "COPY (SELECT {columns} FROM compat71.{name} WHERE source = '9.1' AND {NOT_A_HEALTH_CHECK} \
             AND {id} > {from} ORDER BY {id}) TO STDOUT",
            name = table.name()
        ),
        client_71,
        &format!("COPY {} ({columns}) FROM STDIN", table.name()),
    )
    .await
    .with_context(|| format!("carrying 9.1's {table} back to 7.1"))?;
    // 7.1 hands out ids after the carried ones.
    if rows > 0 {
        client_71
            .query_one(
                &format!(
                    "SELECT setval(s, greatest((SELECT coalesce(max({id}), 1) FROM {name}), \
                                         coalesce(pg_sequence_last_value(s::regclass), 1))) \
                   FROM (SELECT pg_get_serial_sequence('{name}', '{id}') AS s) AS serial",
                    name = table.name(),
                ),
                &[],
            )
            .await
            .with_context(|| format!("moving 7.1's ids of {table} past the carried rows"))?;
    }
    Ok(rows)
}

/// Applies to 7.1 what 9.1 did to the records it had from 7.1 (see the
/// module's text): the releases, then the deletions; each may run again.
/// `cutoff` is the start of the window the migration took. The records
/// released and deleted.
pub async fn apply_91_changes(
    client_71: &Client,
    client_91: &Client,
    before: &IdsBefore,
    cutoff: NaiveDateTime,
) -> Result<(u64, u64)> {
    let released: Vec<i32> = client_91
        .query(
            "SELECT quarantine_id::integer FROM compat71.tb_quarantine WHERE source = '7.1' AND released",
            &[],
        )
        .await
        .context("reading which migrated messages 9.1 released")?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let released = client_71
        .execute(
            "UPDATE tb_quarantine SET released = true WHERE quarantine_id = ANY($1) AND NOT released",
            &[&released],
        )
        .await
        .context("marking in 7.1 the messages 9.1 released")?;

    let mut deleted = 0;
    for table in [Table71::Quarantine, Table71::Archive] {
        let id = table.id_column().expect("history tables have ids");
        let time = table.time_column().expect("history tables have times");
        let moved = transfer::moved_rows(client_91, table)
            .await
            .with_context(|| format!("reading which older {table} rows the transfer moved"))?;
        let kept: Vec<i32> = client_91
            .query(
                &format!(
                    "SELECT {id}::integer FROM compat71.{} WHERE source = '7.1'",
                    table.name()
                ),
                &[],
            )
            .await
            .with_context(|| format!("reading which migrated {table} rows 9.1 kept"))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        // Every row 9.1 had from 7.1 may be in `kept`: an anti-join, not
        // a search of the array for each row.
        deleted += client_71
            .execute(
                &format!(
                    "DELETE FROM {name} AS t WHERE {id} <= $1::bigint \
                        AND ({time} >= {cutoff} OR ({id} <= $3::bigint AND {id} <> ALL ($4::bigint[]))) \
                        AND NOT EXISTS (SELECT FROM unnest($2::integer[]) AS kept(id) WHERE kept.id = t.{id})",
                    name = table.name(),
                    cutoff = timestamp_literal(cutoff),
                ),
                &[&before.of(table), &kept, &moved.through_id, &moved.rejected],
            )
            .await
            .with_context(|| format!("removing from 7.1 the {table} rows 9.1 deleted"))?;
    }
    Ok((released, deleted))
}

/// Compares, table by table, 9.1's own rows (the health checks left out)
/// with the rows carried into 7.1, by count and checksum.
pub async fn verify_carried_back(
    client_71: &Client,
    client_91: &Client,
    before: &IdsBefore,
) -> Result<Vec<Checksum>> {
    let mut checked = Vec::new();
    for table in Table71::HISTORY {
        let carried = before.carried(table);
        let on_91 = checksum_rows(
            client_91,
            &carried,
            &format!("compat71.{}", table.name()),
            Some(&format!("source = '9.1' AND {NOT_A_HEALTH_CHECK}")),
        )
        .await?;
        let on_71 = checksum_rows(client_71, &carried, table.name(), None).await?;
        ensure!(
            on_71 == on_91,
            "the mail carried back differs in {table}: 9.1 has {on_91}, 7.1 now has {on_71}; the 9.1 \
             database is kept in place: roll back again, or report this"
        );
        checked.push(on_71);
    }
    Ok(checked)
}
