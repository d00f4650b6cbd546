//! The 9.1 admin schema and the staging schema `v71`, loaded from the SQL
//! files in `sql/` (compiled in):
//!
//! - `91/001_schema.sql`, `91/002_indexes.sql`: the 9.1 tables
//!   ([`load_tables`]) and, after the bulk load, their secondary indexes
//!   ([`create_indexes`]);
//! - `91/003_compat71.sql`: schema `compat71`, which maps 7.1 values to 9.1
//!   values and back, with views shaped exactly like the 7.1 tables;
//! - `91/010_transform_config.sql`, `91/011_id_floors.sql` and the
//!   history's mapping ([`super::history_mapping`]): the transformation, as
//!   functions in the staging schema `v71`, which holds tables with exactly
//!   the 7.1 definitions of `71/001_schema.sql` ([`create_staging`]).

use anyhow::{Context, Result};
use tokio_postgres::GenericClient;

use super::history_mapping::transform_history_function;
use super::tables::Table71;

/// The 9.1 tables with their primary keys and reference rows.
pub const SCHEMA_SQL: &str = include_str!("../../sql/91/001_schema.sql");

/// The secondary indexes of the 9.1 history tables and the recipients'
/// foreign key, built after the bulk load.
pub const INDEXES_SQL: &str = include_str!("../../sql/91/002_indexes.sql");

/// Schema `compat71`: value mappings and the 7.1-shaped views.
pub const COMPAT71_SQL: &str = include_str!("../../sql/91/003_compat71.sql");

/// `v71.transform_config()`.
pub const TRANSFORM_CONFIG_SQL: &str = include_str!("../../sql/91/010_transform_config.sql");

/// `v71.set_id_floors()`.
pub const ID_FLOORS_SQL: &str = include_str!("../../sql/91/011_id_floors.sql");

/// The 7.1 table definitions, which the staging schema reuses.
const SCHEMA_71_SQL: &str = include_str!("../../sql/71/001_schema.sql");

/// The staging schema in the 9.1 database.
pub const STAGING_SCHEMA: &str = "v71";

/// Loads the whole 9.1 schema (tables, `compat71`, indexes) into an empty
/// database, all or nothing: for a fresh 9.1 server.
pub async fn load_schema(client: &impl GenericClient) -> Result<()> {
    client
        .batch_execute(&[SCHEMA_SQL, COMPAT71_SQL, INDEXES_SQL].join("\n"))
        .await
        .context(
            "loading the 9.1 schema (sql/91/001_schema.sql, 003_compat71.sql, 002_indexes.sql)",
        )?;
    tracing::info!("9.1 schema loaded");
    Ok(())
}

/// Loads the 9.1 tables with their primary keys, and `compat71`, into an
/// empty database, but not the secondary indexes and the recipients'
/// foreign key: the bulk load of the last 24 hours goes faster without
/// them. [`create_indexes`] completes the schema afterwards.
pub async fn load_tables(client: &impl GenericClient) -> Result<()> {
    client
        .batch_execute(&[SCHEMA_SQL, COMPAT71_SQL].join("\n"))
        .await
        .context("loading the 9.1 schema (sql/91/001_schema.sql, 003_compat71.sql)")?;
    tracing::info!("9.1 tables loaded");
    Ok(())
}

/// Builds the secondary indexes and the recipients' foreign key
/// (`sql/91/002_indexes.sql`), after the bulk load.
pub async fn create_indexes(client: &impl GenericClient) -> Result<()> {
    client
        .batch_execute(INDEXES_SQL)
        .await
        .context("building the 9.1 indexes (sql/91/002_indexes.sql)")?;
    tracing::info!("9.1 indexes built");
    Ok(())
}

/// Creates the staging schema `v71`: the 7.1 tables exactly as
/// `sql/71/001_schema.sql` defines them, and the transform functions. A
/// staging schema left by an earlier run is replaced. Needs the 9.1 schema.
pub async fn create_staging(client: &impl GenericClient) -> Result<()> {
    let sql = format!(
        "DROP SCHEMA IF EXISTS {STAGING_SCHEMA} CASCADE;\n\
         CREATE SCHEMA {STAGING_SCHEMA};\n\
         SET search_path = {STAGING_SCHEMA};\n\
         {SCHEMA_71_SQL}\n\
         RESET search_path;\n\
         {TRANSFORM_CONFIG_SQL}\n\
         {ID_FLOORS_SQL}\n\
         {}",
        transform_history_function()
    );
    client
        .batch_execute(&sql)
        .await
        .context("creating the staging schema v71 in the 9.1 database")?;
    Ok(())
}

/// Whether the staging schema exists.
pub async fn staging_exists(client: &impl GenericClient) -> Result<bool> {
    let row = client
        .query_one("SELECT to_regnamespace($1) IS NOT NULL", &[&STAGING_SCHEMA])
        .await
        .context("looking for the staging schema v71")?;
    Ok(row.get(0))
}

/// Drops the staging schema with its tables and functions, if it exists.
pub async fn drop_staging(client: &impl GenericClient) -> Result<()> {
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {STAGING_SCHEMA} CASCADE"))
        .await
        .context("dropping the staging schema v71")
}

/// Empties the staging history tables (before the next window or batch).
pub async fn clear_staging_history(client: &impl GenericClient) -> Result<()> {
    let tables: Vec<String> = Table71::HISTORY
        .iter()
        .map(|t| format!("{STAGING_SCHEMA}.{}", t.name()))
        .collect();
    client
        .batch_execute(&format!("TRUNCATE {}", tables.join(", ")))
        .await
        .context("emptying the staging history tables")
}

/// Creates the admin database on a new 9.1 server.
pub async fn create_database(admin: &impl GenericClient, name: &str) -> Result<()> {
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {} ENCODING 'UTF8'",
            quote_identifier(name)
        ))
        .await
        .with_context(|| format!("creating the 9.1 database {name}"))
}

/// Gathers the planner's statistics after a bulk load.
pub async fn analyze(client: &impl GenericClient) -> Result<()> {
    client
        .batch_execute("ANALYZE")
        .await
        .context("gathering statistics on the 9.1 database")
}

/// `name` as an SQL identifier, double-quoted.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
