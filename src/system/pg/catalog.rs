//! What the catalog says of a database (preflight sizes it with this),
//! and a checkpoint asked for before a shutdown.

use anyhow::{Context, Result};
use tokio_postgres::Client;

/// One table of a database, from the catalog.
#[derive(Debug, Clone)]
pub struct TableSize {
    /// Table name.
    pub name: String,
    /// Estimated live rows (`reltuples`).
    pub rows: i64,
    /// Heap, indexes and TOAST, bytes.
    pub total_bytes: i64,
    /// Dead rows the statistics collector counts.
    pub dead_rows: i64,
}

/// What the catalog says of the connected database: the server's version,
/// the database's size, and its tables, largest first. Reads no table.
pub async fn database_summary(client: &Client) -> Result<(String, i64, Vec<TableSize>)> {
    let version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .context("reading the server version")?
        .get(0);
    let size: i64 = client
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .context("reading the database size")?
        .get(0);
    let tables = client
        .query(
            "SELECT c.relname::text, GREATEST(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid), \
                    COALESCE(s.n_dead_tup, 0) \
               FROM pg_class c \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
               LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
              WHERE c.relkind = 'r' AND n.nspname = 'public' \
              ORDER BY 3 DESC",
            &[],
        )
        .await
        .context("reading the table sizes from the catalog")?
        .into_iter()
        .map(|row| TableSize {
            name: row.get(0),
            rows: row.get(1),
            total_bytes: row.get(2),
            dead_rows: row.get(3),
        })
        .collect();
    Ok((version, size, tables))
}

/// Asks the server for a checkpoint, so that a shutdown soon after has
/// little to write.
pub async fn checkpoint(client: &Client) -> Result<()> {
    client
        .batch_execute("CHECKPOINT")
        .await
        .context("asking the server for a checkpoint")
}
