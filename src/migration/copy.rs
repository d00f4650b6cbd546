//! Rows from the 7.1 server into the staging tables of the 9.1 database,
//! through a binary `COPY` pipe, without decoding a row.

use anyhow::{Context, Result};
use chrono::NaiveDateTime;
use serde::Serialize;
use tokio_postgres::Client;

use super::schema::{STAGING_SCHEMA, clear_staging_history};
use super::selection::{Selection, window_selections};
use crate::system::pg::copy_pipe;

/// Copies `selection` from the 7.1 server into its staging table through a
/// binary `COPY` pipe (the staging table has exactly the 7.1 definition).
/// Returns the rows copied.
pub async fn copy_selection_to_staging(
    source: &Client,
    target: &Client,
    selection: &Selection,
) -> Result<u64> {
    let table = selection.table();
    let copy_out = format!(
        "COPY ({}) TO STDOUT (FORMAT binary)",
        selection.source_select_sql()
    );
    let copy_in = format!(
        "COPY {STAGING_SCHEMA}.{} ({}) FROM STDIN (FORMAT binary)",
        table.name(),
        table.column_list()
    );
    let rows = copy_pipe(source, &copy_out, target, &copy_in)
        .await
        .with_context(|| format!("copying {selection} from 7.1 into the staging schema"))?;
    tracing::info!(
        imss_table = table.name(),
        imss_rows = rows,
        "copied into staging"
    );
    Ok(rows)
}

/// What [`copy_window_to_staging`] copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WindowCounts {
    /// Policy events.
    pub policy_events: u64,
    /// Quarantine records.
    pub quarantine: u64,
    /// Archive records.
    pub archive: u64,
}

/// Empties the staging history tables, then copies the history newer than
/// `cutoff` ([`window_selections`]) from the 7.1 server into them.
pub async fn copy_window_to_staging(
    source: &Client,
    target: &Client,
    cutoff: NaiveDateTime,
) -> Result<WindowCounts> {
    clear_staging_history(target).await?;
    let mut copied = [0u64; 3];
    for (slot, selection) in copied.iter_mut().zip(window_selections(cutoff)) {
        *slot = copy_selection_to_staging(source, target, &selection).await?;
    }
    Ok(WindowCounts {
        policy_events: copied[0],
        quarantine: copied[1],
        archive: copied[2],
    })
}
