//! Verification: on each server, the row count and an order-independent
//! sum of a 60-bit prefix of `md5(canonical text of the 7.1 columns)`. On
//! 7.1 it reads the tables; on 9.1 it reads the `compat71` views, which
//! rebuild the 7.1 columns from the 9.1 ones (recipients re-joined in
//! order, words back to codes, `timestamptz` back to UTC wall-clock time).
//! Equal checksums mean the same logical rows.

use std::fmt;

use anyhow::{Context, Result};
use serde::Serialize;
use thiserror::Error;
use tokio_postgres::GenericClient;

use super::schema::STAGING_SCHEMA;
use super::selection::Selection;

/// A row count and an order-independent sum over the rows' canonical text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checksum {
    /// Rows.
    pub rows: i64,
    /// Sum of the first 60 bits of each row's md5, as a decimal number.
    pub sum: String,
}

impl Checksum {
    /// The checksum of no rows.
    pub fn none() -> Self {
        Self {
            rows: 0,
            sum: "0".into(),
        }
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rows, sum {}", self.rows, self.sum)
    }
}

/// The checksum query over `relation`, which has the 7.1 columns.
fn checksum_sql(selection: &Selection, relation: &str, extra_condition: Option<&str>) -> String {
    let mut where_clause = selection.where_clause();
    if let Some(condition) = extra_condition {
        if where_clause.is_empty() {
            where_clause = format!("WHERE {condition}");
        } else {
            where_clause.push_str(&format!(" AND {condition}"));
        }
    }
    format!(
        "SELECT count(*)::bigint, \
                coalesce(sum(('x' || substr(md5({}), 1, 15))::bit(60)::bigint), 0)::text \
           FROM {relation} {where_clause}",
        selection.table().canonical_text()
    )
}

async fn run_checksum(client: &impl GenericClient, sql: &str, what: &str) -> Result<Checksum> {
    let row = client
        .query_one(sql, &[])
        .await
        .with_context(|| format!("computing the checksum of {what}"))?;
    Ok(Checksum {
        rows: row.get(0),
        sum: row.get(1),
    })
}

/// The checksum of the rows of `selection` in `relation` (which has the
/// 7.1 columns), with `extra_condition` if any.
pub async fn checksum_rows(
    client: &impl GenericClient,
    selection: &Selection,
    relation: &str,
    extra_condition: Option<&str>,
) -> Result<Checksum> {
    let sql = checksum_sql(selection, relation, extra_condition);
    run_checksum(client, &sql, &format!("{selection} in {relation}")).await
}

/// The checksum of `selection` on the 7.1 server.
pub async fn checksum_source(
    client_71: &impl GenericClient,
    selection: &Selection,
) -> Result<Checksum> {
    let sql = checksum_sql(selection, selection.table().name(), None);
    run_checksum(client_71, &sql, &format!("{selection} on 7.1")).await
}

/// The checksum of `selection` on the 9.1 server, over the `compat71` view
/// of the table; for history, over the rows migrated from 7.1 only.
pub async fn checksum_target(
    client_91: &impl GenericClient,
    selection: &Selection,
) -> Result<Checksum> {
    checksum_target_where(client_91, selection, None).await
}

/// [`checksum_target`] of the rows that also meet `extra_condition` (on
/// the 7.1 columns).
pub async fn checksum_target_where(
    client_91: &impl GenericClient,
    selection: &Selection,
    extra_condition: Option<&str>,
) -> Result<Checksum> {
    let relation = format!("compat71.{}", selection.table().name());
    let migrated = selection.table().is_history().then_some("source = '7.1'");
    let condition = match (migrated, extra_condition) {
        (Some(migrated), Some(extra)) => Some(format!("{migrated} AND {extra}")),
        (one, other) => one.or(other).map(str::to_string),
    };
    let sql = checksum_sql(selection, &relation, condition.as_deref());
    run_checksum(client_91, &sql, &format!("{selection} on 9.1")).await
}

/// The checksum of `selection` in the staging tables of the 9.1 database
/// (what the copy brought over, before the transform).
pub async fn checksum_staging(
    client_91: &impl GenericClient,
    selection: &Selection,
) -> Result<Checksum> {
    let relation = format!("{STAGING_SCHEMA}.{}", selection.table().name());
    let sql = checksum_sql(selection, &relation, None);
    run_checksum(client_91, &sql, &format!("{selection} in staging")).await
}

/// 7.1 and 9.1 disagree about a selection.
#[derive(Debug, Error)]
#[error(
    "the migrated rows of {selection} differ: 7.1 has {on_71}, 9.1 has {on_91}; \
     the 9.1 database does not hold what 7.1 had, so the upgrade must not switch to it"
)]
pub struct ChecksumMismatch {
    /// What was compared.
    pub selection: Selection,
    /// On 7.1.
    pub on_71: Checksum,
    /// On 9.1.
    pub on_91: Checksum,
}

/// One selection whose checksums agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// What was compared.
    pub selection: Selection,
    /// The checksum both sides have.
    pub checksum: Checksum,
}

/// Compares the checksums of each selection on both servers; the first
/// difference is a [`ChecksumMismatch`] error.
pub async fn verify(
    client_71: &impl GenericClient,
    client_91: &impl GenericClient,
    selections: &[Selection],
) -> Result<Vec<Verified>> {
    let mut verified = Vec::with_capacity(selections.len());
    for selection in selections {
        let source = checksum_source(client_71, selection).await?;
        let target = checksum_target(client_91, selection).await?;
        if source != target {
            return Err(ChecksumMismatch {
                selection: *selection,
                on_71: source,
                on_91: target,
            }
            .into());
        }
        tracing::info!(
            imss_table = selection.table().name(),
            imss_rows = source.rows,
            "checksums agree: {selection}"
        );
        verified.push(Verified {
            selection: *selection,
            checksum: source,
        });
    }
    Ok(verified)
}
