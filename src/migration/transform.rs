//! The 7.1 to 9.1 transformation: what the staging tables hold goes into
//! the 9.1 tables (configuration and history), the ids 9.1 hands out are
//! set above 7.1's, and the configuration travels as JSON for
//! `imsx_config.dat`.

use anyhow::{Context, Result};
use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use super::schema::{STAGING_SCHEMA, create_staging, drop_staging, staging_exists};
use super::tables::Table71;

/// How far above the highest 7.1 id the ids 9.1 hands out start: room for
/// rows the 7.1 server may still have written after its maxima were read.
pub const ID_GAP: i64 = 1_000_000;

/// What [`transform_config`] wrote into the 9.1 tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConfigCounts {
    /// 7.1 settings that went into typed 9.1 columns.
    pub typed_settings: u64,
    /// 7.1 settings 9.1 has no column for, kept as written.
    pub legacy_settings: u64,
    /// Policy rules.
    pub policy_rules: u64,
    /// EUQ approved senders.
    pub euq_approved_senders: u64,
    /// Pattern and engine versions.
    pub component_versions: u64,
    /// Administrator accounts.
    pub admin_accounts: u64,
    /// Scheduled tasks.
    pub scheduled_tasks: u64,
}

/// Replaces the 9.1 configuration with what the staging tables hold, in
/// one statement (all or nothing). A setting 9.1 cannot store (a port that
/// is not a number, say) fails it with a message naming the setting.
pub async fn transform_config(client: &impl GenericClient) -> Result<ConfigCounts> {
    let row = client
        .query_one("SELECT * FROM v71.transform_config()", &[])
        .await
        .context("transforming the 7.1 configuration into the 9.1 tables")?;
    let count = |i: usize| row.get::<_, i64>(i) as u64;
    let counts = ConfigCounts {
        typed_settings: count(0),
        legacy_settings: count(1),
        policy_rules: count(2),
        euq_approved_senders: count(3),
        component_versions: count(4),
        admin_accounts: count(5),
        scheduled_tasks: count(6),
    };
    tracing::info!(?counts, "7.1 configuration transformed");
    Ok(counts)
}

/// What [`transform_history`] added to the 9.1 tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HistoryCounts {
    /// Policy events added.
    pub policy_events: u64,
    /// Recipient rows of those events.
    pub recipients: u64,
    /// Quarantine records added.
    pub quarantine_messages: u64,
    /// Archive records added.
    pub archive_messages: u64,
}

/// Moves whatever history the staging tables hold into the 9.1 tables, in
/// one statement. Idempotent: rows whose 7.1 id is already in 9.1 are left
/// alone, so a re-run adds nothing; the counts are the rows added.
pub async fn transform_history(client: &impl GenericClient) -> Result<HistoryCounts> {
    let row = client
        .query_one("SELECT * FROM v71.transform_history()", &[])
        .await
        .context("transforming the 7.1 history into the 9.1 tables")?;
    let count = |i: usize| row.get::<_, i64>(i) as u64;
    let counts = HistoryCounts {
        policy_events: count(0),
        recipients: count(1),
        quarantine_messages: count(2),
        archive_messages: count(3),
    };
    tracing::info!(?counts, "7.1 history transformed");
    Ok(counts)
}

/// The highest ids handed out, per history table: 7.1's, over all its
/// rows and sequences; or those a rolled-back attempt's 9.1 used (its
/// message files, named by id, stay on disk, so no later attempt may hand
/// out those ids again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct IdFloors {
    /// Highest `tb_policy_event.event_id`.
    pub policy_event: i64,
    /// Highest `tb_quarantine.quarantine_id`.
    pub quarantine: i64,
    /// Highest `tb_archive.archive_id`.
    pub archive: i64,
}

impl IdFloors {
    /// The higher of two floors, table by table.
    pub fn max(self, other: IdFloors) -> IdFloors {
        IdFloors {
            policy_event: self.policy_event.max(other.policy_event),
            quarantine: self.quarantine.max(other.quarantine),
            archive: self.archive.max(other.archive),
        }
    }
}

/// Reads [`IdFloors`] from the 7.1 server: the larger of the highest id in
/// the table and the sequence's last value, so ids 7.1 handed out for rows
/// that are gone count too.
pub async fn source_id_floors(client_71: &impl GenericClient) -> Result<IdFloors> {
    let mut highest = [0i64; 3];
    for (slot, table) in highest.iter_mut().zip(Table71::HISTORY) {
        let id = table.id_column().expect("history tables have ids");
        let sql = format!(
            "SELECT coalesce(greatest(\
                 (SELECT max({id})::bigint FROM {table}), \
                 (SELECT s.last_value FROM pg_sequences s \
                   WHERE format('%I.%I', s.schemaname, s.sequencename) \
                       = pg_get_serial_sequence('{table}', '{id}'))), 0)",
            table = table.name()
        );
        *slot = client_71
            .query_one(&sql, &[])
            .await
            .with_context(|| format!("reading the highest {id} of {table} on 7.1"))?
            .get(0);
    }
    Ok(IdFloors {
        policy_event: highest[0],
        quarantine: highest[1],
        archive: highest[2],
    })
}

/// The next id a 9.1 history table hands out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextId {
    /// The 9.1 table.
    pub table: String,
    /// Its next id.
    pub next_id: i64,
}

/// Makes the ids 9.1 hands out for new history rows start above `floors`
/// plus [`ID_GAP`], so they never collide with 7.1 rows still to come.
/// Never lowers an id. Needs the staging schema.
pub async fn set_id_floors(client: &impl GenericClient, floors: &IdFloors) -> Result<Vec<NextId>> {
    let rows = client
        .query(
            "SELECT table_name, next_id FROM v71.set_id_floors($1, $2, $3, $4)",
            &[
                &floors.policy_event,
                &floors.quarantine,
                &floors.archive,
                &ID_GAP,
            ],
        )
        .await
        .context("setting the 9.1 id floors above the 7.1 ids")?;
    let next: Vec<NextId> = rows
        .iter()
        .map(|row| NextId {
            table: row.get(0),
            next_id: row.get(1),
        })
        .collect();
    tracing::info!(?next, "9.1 ids start above the 7.1 ids");
    Ok(next)
}

/// Reads the 7.1 configuration tables as one JSON object (keys as in
/// [`Table71::export_key`], each an array of rows with the 7.1 column
/// names), in one statement, so in one snapshot.
pub async fn read_config_json(client_71: &impl GenericClient) -> Result<String> {
    let parts: Vec<String> = Table71::CONFIG
        .iter()
        .map(|table| {
            format!(
                "'{key}', (SELECT coalesce(json_agg(t ORDER BY {order}), '[]'::json) \
                             FROM (SELECT {columns} FROM {name}) t)",
                key = table
                    .export_key()
                    .expect("configuration tables have export keys"),
                order = table.export_order(),
                columns = table.column_list(),
                name = table.name(),
            )
        })
        .collect();
    let sql = format!("SELECT json_build_object({})::text", parts.join(", "));
    let row = client_71
        .query_one(&sql, &[])
        .await
        .context("reading the 7.1 configuration tables")?;
    Ok(row.get(0))
}

/// Replaces the 9.1 configuration with `config_json` (an object as
/// [`read_config_json`] gives), in one transaction: the rows go into the
/// staging tables (created for the occasion, and dropped again, when there
/// are none), then [`transform_config`] runs.
pub async fn import_config_json(client_91: &mut Client, config_json: &str) -> Result<ConfigCounts> {
    let transaction = client_91
        .transaction()
        .await
        .context("starting the configuration import")?;
    let created = !staging_exists(&transaction).await?;
    if created {
        create_staging(&transaction).await?;
    }
    let staged: Vec<String> = Table71::CONFIG
        .iter()
        .map(|t| format!("{STAGING_SCHEMA}.{}", t.name()))
        .collect();
    transaction
        .batch_execute(&format!("TRUNCATE {}", staged.join(", ")))
        .await
        .context("emptying the staging configuration tables")?;
    for table in Table71::CONFIG {
        let key = table
            .export_key()
            .expect("configuration tables have export keys");
        let sql = format!(
            "INSERT INTO {STAGING_SCHEMA}.{name} ({columns}) \
             SELECT {columns} FROM json_populate_recordset(NULL::{STAGING_SCHEMA}.{name}, $1::text::json -> '{key}')",
            name = table.name(),
            columns = table.column_list(),
        );
        transaction
            .execute(&sql, &[&config_json])
            .await
            .with_context(|| format!("staging the {key} of the configuration"))?;
    }
    let counts = transform_config(&transaction).await?;
    if created {
        drop_staging(&transaction).await?;
    }
    transaction
        .commit()
        .await
        .context("committing the configuration import")?;
    Ok(counts)
}
