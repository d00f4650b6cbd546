//! The database-migration layer: the 9.1 admin schema, the staging schema
//! `v71`, the 7.1 → 9.1 transformation, and its verification.
//!
//! Used by the migrate step (DESIGN.md section 3, step 4: configuration and
//! the last 24 hours during the downtime) and by the background transfer
//! (older history, in batches). It reads the 7.1 server and never writes to
//! it; it writes the 9.1 server. The SQL lives in `sql/91/` and is compiled
//! in:
//!
//! - `001_schema.sql`, `002_indexes.sql`: the 9.1 tables ([`load_tables`])
//!   and, after the bulk load, their secondary indexes ([`create_indexes`]);
//! - `003_compat71.sql`: schema `compat71`, which maps 7.1 values to 9.1
//!   values and back, with views shaped exactly like the 7.1 tables;
//! - `010_transform_config.sql`, `011_transform_history.sql`: the
//!   transformation, as functions in the staging schema `v71`, which holds
//!   tables with exactly the 7.1 definitions ([`create_staging`]).
//!
//! Rows reach the staging tables by binary `COPY` from the 7.1 server
//! ([`copy_selection_to_staging`]) or from an `imsx_config.dat` export
//! ([`import_config_json`]); one SQL transformation serves both.
//!
//! During the downtime the migrate step runs, in this order:
//! [`load_tables`], [`create_staging`], the configuration
//! ([`crate::config_export::export`], written as `imsx_config.dat`, then
//! [`crate::config_export::import`]), [`copy_window_to_staging`] with
//! [`window_cutoff`], [`transform_history`], [`create_indexes`],
//! [`source_id_floors`] and [`set_id_floors`], and [`verify`] over
//! [`window_selections`] and [`config_selections`]. The background transfer
//! then repeats [`copy_selection_to_staging`] and [`transform_history`] per
//! batch, and [`drop_staging`] when it is done.
//!
//! Verification ([`checksum_source`], [`checksum_target`], [`verify`])
//! computes, on each server, the row count and an order-independent sum of
//! a 60-bit prefix of `md5(canonical text of the 7.1 columns)`. On 7.1 it
//! reads the tables; on 9.1 it reads the `compat71` views, which rebuild the
//! 7.1 columns from the 9.1 ones (recipients re-joined in order, words back
//! to codes, `timestamptz` back to UTC wall-clock time). Equal checksums mean
//! the same logical rows.

use std::fmt;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use serde::Serialize;
use thiserror::Error;
use tokio_postgres::{Client, GenericClient};

use crate::constants::CRITICAL_HISTORY_HOURS;
use crate::pg::copy_pipe;

/// The 9.1 tables with their primary keys and reference rows.
pub const SCHEMA_SQL: &str = include_str!("../sql/91/001_schema.sql");
/// The secondary indexes of the 9.1 history tables and the recipients'
/// foreign key, built after the bulk load.
pub const INDEXES_SQL: &str = include_str!("../sql/91/002_indexes.sql");
/// Schema `compat71`: value mappings and the 7.1-shaped views.
pub const COMPAT71_SQL: &str = include_str!("../sql/91/003_compat71.sql");
/// `v71.transform_config()`.
pub const TRANSFORM_CONFIG_SQL: &str = include_str!("../sql/91/010_transform_config.sql");
/// `v71.transform_history()` and `v71.set_id_floors()`.
pub const TRANSFORM_HISTORY_SQL: &str = include_str!("../sql/91/011_transform_history.sql");
/// The 7.1 table definitions, which the staging schema reuses.
const SCHEMA_71_SQL: &str = include_str!("../sql/71/001_schema.sql");

/// The staging schema in the 9.1 database.
pub const STAGING_SCHEMA: &str = "v71";

/// How far above the highest 7.1 id the ids 9.1 hands out start: room for
/// rows the 7.1 server may still have written after its maxima were read.
pub const ID_GAP: i64 = 1_000_000;

/// A 7.1 table the migration carries over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Table71 {
    /// `tb_global_setting`: key/value settings.
    GlobalSetting,
    /// `tb_policy_rule`.
    PolicyRule,
    /// `tb_euq_setting`: key/value EUQ settings.
    EuqSetting,
    /// `tb_euq_approved_sender`.
    EuqApprovedSender,
    /// `tb_component_version`.
    ComponentVersion,
    /// `tb_admin_account`.
    AdminAccount,
    /// `tb_scheduled_task`.
    ScheduledTask,
    /// `tb_policy_event`: the policy event log.
    PolicyEvent,
    /// `tb_quarantine`: the quarantine index.
    Quarantine,
    /// `tb_archive`: the archive index.
    Archive,
}

/// One 7.1 column: its name, and whether it is a `timestamp` (whose text
/// form is pinned with `to_char`, independent of `DateStyle`).
#[derive(Debug, Clone, Copy)]
struct Column {
    name: &'static str,
    timestamp: bool,
}

const fn value(name: &'static str) -> Column {
    Column {
        name,
        timestamp: false,
    }
}

const fn time(name: &'static str) -> Column {
    Column {
        name,
        timestamp: true,
    }
}

impl Table71 {
    /// The configuration tables, in the order an export lists them.
    pub const CONFIG: [Table71; 7] = [
        Table71::GlobalSetting,
        Table71::PolicyRule,
        Table71::EuqSetting,
        Table71::EuqApprovedSender,
        Table71::ComponentVersion,
        Table71::AdminAccount,
        Table71::ScheduledTask,
    ];

    /// The history tables.
    pub const HISTORY: [Table71; 3] = [Table71::PolicyEvent, Table71::Quarantine, Table71::Archive];

    /// The 7.1 table name (also the name of its staging table and of its
    /// `compat71` view).
    pub fn name(self) -> &'static str {
        match self {
            Table71::GlobalSetting => "tb_global_setting",
            Table71::PolicyRule => "tb_policy_rule",
            Table71::EuqSetting => "tb_euq_setting",
            Table71::EuqApprovedSender => "tb_euq_approved_sender",
            Table71::ComponentVersion => "tb_component_version",
            Table71::AdminAccount => "tb_admin_account",
            Table71::ScheduledTask => "tb_scheduled_task",
            Table71::PolicyEvent => "tb_policy_event",
            Table71::Quarantine => "tb_quarantine",
            Table71::Archive => "tb_archive",
        }
    }

    /// Every column of the 7.1 table, in table order.
    fn columns(self) -> &'static [Column] {
        match self {
            Table71::GlobalSetting => {
                const {
                    &[
                        value("section"),
                        value("name"),
                        value("value"),
                        value("inifile"),
                    ]
                }
            }
            Table71::PolicyRule => {
                const {
                    &[
                        value("rule_id"),
                        value("rule_name"),
                        value("enabled"),
                        value("priority"),
                        value("route_type"),
                        value("senders"),
                        value("recipients"),
                        value("scan_condition"),
                        value("action"),
                        value("notification"),
                        time("created_time"),
                        time("modified_time"),
                    ]
                }
            }
            Table71::EuqSetting => const { &[value("name"), value("value")] },
            Table71::EuqApprovedSender => {
                const {
                    &[
                        value("owner_address"),
                        value("sender_pattern"),
                        time("created_time"),
                    ]
                }
            }
            Table71::ComponentVersion => {
                const {
                    &[
                        value("component"),
                        value("kind"),
                        value("version"),
                        time("updated_time"),
                    ]
                }
            }
            Table71::AdminAccount => {
                const {
                    &[
                        value("account_id"),
                        value("login_name"),
                        value("password_hash"),
                        value("role"),
                        value("enabled"),
                        time("last_login"),
                    ]
                }
            }
            Table71::ScheduledTask => {
                const {
                    &[
                        value("task_id"),
                        value("task_name"),
                        value("task_kind"),
                        value("schedule"),
                        value("enabled"),
                        time("last_run"),
                    ]
                }
            }
            Table71::PolicyEvent => {
                const {
                    &[
                        value("event_id"),
                        time("event_time"),
                        value("message_id"),
                        value("scanner_host"),
                        value("sender"),
                        value("recipients"),
                        value("subject"),
                        value("rule_id"),
                        value("rule_name"),
                        value("action"),
                        value("reason"),
                        value("message_size"),
                    ]
                }
            }
            Table71::Quarantine => {
                const {
                    &[
                        value("quarantine_id"),
                        value("event_id"),
                        time("quarantine_time"),
                        value("area_name"),
                        value("message_id"),
                        value("sender"),
                        value("recipient"),
                        value("subject"),
                        value("reason"),
                        value("file_path"),
                        value("file_size"),
                        value("released"),
                    ]
                }
            }
            Table71::Archive => {
                const {
                    &[
                        value("archive_id"),
                        value("event_id"),
                        time("archive_time"),
                        value("area_name"),
                        value("message_id"),
                        value("sender"),
                        value("recipient"),
                        value("subject"),
                        value("file_path"),
                        value("file_size"),
                    ]
                }
            }
        }
    }

    /// The column names, comma-separated, in table order.
    pub fn column_list(self) -> String {
        self.columns()
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The time column of a history table: what the 24-hour window and the
    /// background transfer's age split look at.
    pub fn time_column(self) -> Option<&'static str> {
        match self {
            Table71::PolicyEvent => Some("event_time"),
            Table71::Quarantine => Some("quarantine_time"),
            Table71::Archive => Some("archive_time"),
            _ => None,
        }
    }

    /// The id column of a history table (kept as the 9.1 id).
    pub fn id_column(self) -> Option<&'static str> {
        match self {
            Table71::PolicyEvent => Some("event_id"),
            Table71::Quarantine => Some("quarantine_id"),
            Table71::Archive => Some("archive_id"),
            _ => None,
        }
    }

    /// Whether this is a history table (the rest is configuration).
    pub fn is_history(self) -> bool {
        self.time_column().is_some()
    }

    /// The key of this table in an `imsx_config.dat` export, for the
    /// configuration tables.
    pub fn export_key(self) -> Option<&'static str> {
        match self {
            Table71::GlobalSetting => Some("global_settings"),
            Table71::PolicyRule => Some("policy_rules"),
            Table71::EuqSetting => Some("euq_settings"),
            Table71::EuqApprovedSender => Some("euq_approved_senders"),
            Table71::ComponentVersion => Some("component_versions"),
            Table71::AdminAccount => Some("admin_accounts"),
            Table71::ScheduledTask => Some("scheduled_tasks"),
            _ => None,
        }
    }

    /// The order rows are exported in: the primary key.
    fn export_order(self) -> &'static str {
        match self {
            Table71::GlobalSetting => "section, name",
            Table71::PolicyRule => "rule_id",
            Table71::EuqSetting => "name",
            Table71::EuqApprovedSender => "owner_address, sender_pattern",
            Table71::ComponentVersion => "component",
            Table71::AdminAccount => "account_id",
            Table71::ScheduledTask => "task_id",
            Table71::PolicyEvent => "event_id",
            Table71::Quarantine => "quarantine_id",
            Table71::Archive => "archive_id",
        }
    }

    /// The canonical text of a row: every 7.1 column as text (timestamps
    /// as `YYYY-MM-DD HH24:MI:SS.US`), quoted as an SQL literal or `NULL`,
    /// joined with commas. Unambiguous, and the same SQL on PostgreSQL 10
    /// and 15.
    fn canonical_text(self) -> String {
        self.columns()
            .iter()
            .map(|c| {
                if c.timestamp {
                    format!(
                        "quote_nullable(to_char({}, 'YYYY-MM-DD HH24:MI:SS.US'))",
                        c.name
                    )
                } else {
                    format!("quote_nullable(({})::text)", c.name)
                }
            })
            .collect::<Vec<_>>()
            .join(" || ',' || ")
    }
}

impl fmt::Display for Table71 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which rows of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// Every row.
    All,
    /// Rows whose time is at or after this UTC time (the 24-hour window).
    Since(NaiveDateTime),
    /// Rows whose time is before this UTC time (the background transfer).
    Before(NaiveDateTime),
    /// Rows whose id is in `first..=last` (a background transfer batch).
    Ids {
        /// The lowest id.
        first: i64,
        /// The highest id.
        last: i64,
    },
}

/// A table and which of its rows: what is copied, and what a checksum
/// covers. The same selection gives the same rows on 7.1 (the table) and
/// 9.1 (its `compat71` view, migrated rows only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Selection {
    table: Table71,
    filter: Filter,
}

impl Selection {
    /// `filter` of `table`; time and id filters need a history table.
    pub fn new(table: Table71, filter: Filter) -> Result<Self> {
        if filter != Filter::All && !table.is_history() {
            bail!("{table} is a configuration table: only all of its rows can be selected");
        }
        Ok(Self { table, filter })
    }

    /// Every row of `table`.
    pub fn all(table: Table71) -> Self {
        Self {
            table,
            filter: Filter::All,
        }
    }

    /// The table.
    pub fn table(&self) -> Table71 {
        self.table
    }

    /// The filter.
    pub fn filter(&self) -> Filter {
        self.filter
    }

    /// The `WHERE` clause (empty for every row). Values are rendered as
    /// literals, because `COPY (SELECT …)` takes no parameters; they are
    /// numbers and formatted times, never text from outside.
    pub fn where_clause(&self) -> String {
        let time_column = self.table.time_column().unwrap_or("NULL");
        let id_column = self.table.id_column().unwrap_or("NULL");
        match self.filter {
            Filter::All => String::new(),
            Filter::Since(at) => format!("WHERE {time_column} >= {}", timestamp_literal(at)),
            Filter::Before(at) => format!("WHERE {time_column} < {}", timestamp_literal(at)),
            Filter::Ids { first, last } => {
                format!("WHERE {id_column} BETWEEN {first} AND {last}")
            }
        }
    }

    /// The query that reads the selection from the 7.1 server, every 7.1
    /// column in table order.
    pub fn source_select_sql(&self) -> String {
        format!(
            "SELECT {} FROM {} {}",
            self.table.column_list(),
            self.table.name(),
            self.where_clause()
        )
    }
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.filter {
            Filter::All => write!(f, "{} (all rows)", self.table),
            _ => write!(f, "{} ({})", self.table, &self.where_clause()[6..]),
        }
    }
}

fn timestamp_literal(at: NaiveDateTime) -> String {
    format!("'{}'::timestamp", at.format("%Y-%m-%d %H:%M:%S%.6f"))
}

/// The start of the window that moves during the downtime: 24 hours
/// ([`CRITICAL_HISTORY_HOURS`]) before `now`, as the UTC wall-clock time
/// 7.1 stores.
pub fn window_cutoff(now: DateTime<Utc>) -> NaiveDateTime {
    (now - Duration::hours(CRITICAL_HISTORY_HOURS)).naive_utc()
}

/// The history newer than `cutoff`, one selection per history table.
pub fn window_selections(cutoff: NaiveDateTime) -> Vec<Selection> {
    Table71::HISTORY
        .iter()
        .map(|&table| Selection {
            table,
            filter: Filter::Since(cutoff),
        })
        .collect()
}

/// Every configuration table, all rows.
pub fn config_selections() -> Vec<Selection> {
    Table71::CONFIG.iter().map(|&t| Selection::all(t)).collect()
}

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
         {TRANSFORM_HISTORY_SQL}"
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

/// The highest ids 7.1 has handed out, over all its rows and sequences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IdFloors {
    /// Highest `tb_policy_event.event_id`.
    pub policy_event: i64,
    /// Highest `tb_quarantine.quarantine_id`.
    pub quarantine: i64,
    /// Highest `tb_archive.archive_id`.
    pub archive: i64,
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

/// Which server's policy events a window query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventSide {
    /// The 7.1 table.
    Source71,
    /// The 9.1 table, rows migrated from 7.1 only.
    Target91,
}

impl EventSide {
    /// `FROM … WHERE …` of the window's policy events on this side, those
    /// with ids above `above` only when it is given.
    fn window_from(self, cutoff: NaiveDateTime, above: Option<i64>) -> String {
        let at = timestamp_literal(cutoff);
        let above = above
            .map(|id| format!(" AND event_id > {id}"))
            .unwrap_or_default();
        match self {
            EventSide::Source71 => format!(
                "FROM {} WHERE event_time >= {at}{above}",
                Table71::PolicyEvent.name()
            ),
            EventSide::Target91 => format!(
                "FROM public.policy_event WHERE source = '7.1' AND event_time >= {at} AT TIME ZONE 'UTC'{above}"
            ),
        }
    }

    fn name(self) -> &'static str {
        match self {
            EventSide::Source71 => "7.1",
            EventSide::Target91 => "9.1",
        }
    }
}

/// Ids are compared in blocks of this many: counts per block first, ids
/// only in the blocks whose counts differ.
const ID_BLOCK: i64 = 4096;

/// The number of the window's policy events in each block of ids (or in
/// `only` that block).
async fn window_event_blocks(
    client: &impl GenericClient,
    side: EventSide,
    window: &EventWindow,
    only: Option<i64>,
) -> Result<std::collections::BTreeMap<i64, i64>> {
    let in_block = only
        .map(|block| {
            format!(
                " AND event_id BETWEEN {} AND {}",
                block * ID_BLOCK,
                block * ID_BLOCK + ID_BLOCK - 1
            )
        })
        .unwrap_or_default();
    let sql = format!(
        "SELECT event_id::bigint / {ID_BLOCK}, count(*) {}{in_block} GROUP BY 1",
        side.window_from(window.cutoff, window.above)
    );
    let rows = client.query(&sql, &[]).await.with_context(|| {
        format!(
            "counting the policy events of the last 24 hours on {}",
            side.name()
        )
    })?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// The ids of the window's policy events in one block, in order.
async fn window_event_ids(
    client: &impl GenericClient,
    side: EventSide,
    window: &EventWindow,
    block: i64,
) -> Result<Vec<i64>> {
    let sql = format!(
        "SELECT event_id::bigint {} AND event_id BETWEEN {} AND {} ORDER BY 1",
        side.window_from(window.cutoff, window.above),
        block * ID_BLOCK,
        block * ID_BLOCK + ID_BLOCK - 1
    );
    let rows = client.query(&sql, &[]).await.with_context(|| {
        format!(
            "listing the policy events of the last 24 hours on {}",
            side.name()
        )
    })?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Which policy events are compared: those of the window (at or after
/// `cutoff`), and of those only the ones with ids above `above` when the
/// presync could fence the lower ones off ([`fence_low_water`]).
#[derive(Debug, Clone, Copy)]
pub struct EventWindow {
    /// The start of the 24-hour window.
    pub cutoff: NaiveDateTime,
    /// Every 7.1 policy event with an id up to this was committed before the
    /// presync's snapshot, so the presync copied it.
    pub above: Option<i64>,
}

/// The policy events of the window that 7.1 has and 9.1 does not yet.
#[derive(Debug, Clone, Default)]
pub struct MissingEvents {
    /// Those not on 9.1, as selections of runs of consecutive ids.
    pub selections: Vec<Selection>,
    /// The blocks of ids whose counts differed, with 7.1's count.
    differing: Vec<(i64, i64)>,
}

/// Finds the window's policy events that 9.1 lacks. Cheap at any window
/// size: blocks of ids are counted on both sides (at once), and only the
/// blocks whose counts differ are listed id by id (a commit that landed out
/// of id order after the presync's snapshot is found too).
pub async fn missing_window_events(
    client_71: &impl GenericClient,
    client_91: &impl GenericClient,
    window: &EventWindow,
) -> Result<MissingEvents> {
    let (on_71, on_91) = tokio::try_join!(
        window_event_blocks(client_71, EventSide::Source71, window, None),
        window_event_blocks(client_91, EventSide::Target91, window, None),
    )?;
    let mut missing = MissingEvents::default();
    for (&block, &count) in &on_71 {
        if on_91.get(&block) == Some(&count) {
            continue;
        }
        missing.differing.push((block, count));
        let ids_71 = window_event_ids(client_71, EventSide::Source71, window, block).await?;
        let ids_91 = window_event_ids(client_91, EventSide::Target91, window, block).await?;
        missing
            .selections
            .extend(missing_event_selections(&ids_71, &ids_91));
    }
    if let Some(block) = on_91.keys().find(|block| !on_71.contains_key(block)) {
        missing.differing.push((*block, 0));
    }
    Ok(missing)
}

/// Checks that, once `missing` was copied, 9.1 holds exactly the window's
/// policy events that 7.1 has: the blocks that differed are counted again
/// on 9.1 (7.1 is read-only, and the other blocks agreed already).
pub async fn check_window_events(
    client_91: &impl GenericClient,
    window: &EventWindow,
    missing: &MissingEvents,
) -> Result<()> {
    for &(block, on_71) in &missing.differing {
        let on_91 = window_event_blocks(client_91, EventSide::Target91, window, Some(block))
            .await?
            .get(&block)
            .copied()
            .unwrap_or(0);
        if on_91 != on_71 {
            bail!(
                "9.1 holds {on_91} policy events of the last 24 hours with ids {} to {}, 7.1 has {on_71}: \
                 the 9.1 database does not hold what 7.1 had, so the upgrade must not switch to it",
                block * ID_BLOCK,
                block * ID_BLOCK + ID_BLOCK - 1
            );
        }
    }
    Ok(())
}

/// How long [`fence_low_water`] waits for the transactions open on 7.1.
const FENCE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads the highest policy event id 7.1 has handed out, then waits until
/// every transaction open at that moment has ended: any of them may hold a
/// lower id not yet committed. After that, every policy event with an id up
/// to the mark is committed (or never will be), so a snapshot taken next
/// sees all of them, and the rows it misses all have higher ids. `None`
/// when a transaction stays open longer than 30 s (the downtime then
/// compares the whole window, which is slower, not less exact).
pub async fn fence_low_water(client_71: &impl GenericClient) -> Result<Option<i64>> {
    let row = client_71
        .query_one(
            "SELECT s.last_value, s.cache_size, \
                    array(SELECT virtualtransaction FROM pg_locks \
                           WHERE locktype = 'virtualxid' AND granted AND pid <> pg_backend_pid()) \
               FROM pg_catalog.pg_sequences s \
              WHERE format('%I.%I', s.schemaname, s.sequencename) \
                  = pg_get_serial_sequence('tb_policy_event', 'event_id')",
            &[],
        )
        .await
        .context("reading the 7.1 policy event id sequence")?;
    // With a cache, a session hands out ids it took earlier: no mark holds.
    if row.get::<_, i64>(1) != 1 {
        return Ok(None);
    }
    let low_water: Option<i64> = row.get(0);
    let open: Vec<String> = row.get(2);
    let deadline = std::time::Instant::now() + FENCE_TIMEOUT;
    loop {
        let still_open: i64 = client_71
            .query_one(
                "SELECT count(*) FROM pg_locks \
                  WHERE locktype = 'virtualxid' AND granted AND virtualtransaction = ANY($1)",
                &[&open],
            )
            .await
            .context("waiting for the transactions open on 7.1")?
            .get(0);
        if still_open == 0 {
            return Ok(Some(low_water.unwrap_or(0)));
        }
        crate::fail_point!("presync-fence-waiting");
        if std::time::Instant::now() > deadline {
            tracing::warn!(
                still_open,
                "transactions on 7.1 stayed open for 30 s: the downtime compares the whole window"
            );
            return Ok(None);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// What the presync leaves for the migrate step, kept in the 9.1
/// database's staging schema with the rows it describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresyncMark {
    /// See [`EventWindow::above`].
    pub low_water: Option<i64>,
    /// Policy events of the window the presync copied.
    pub policy_events: i64,
}

impl PresyncMark {
    /// Records the mark.
    pub async fn record(&self, client_91: &impl GenericClient) -> Result<()> {
        client_91
            .execute(
                &format!(
                    "CREATE TABLE {STAGING_SCHEMA}.presync_mark AS \
                     SELECT $1::bigint AS low_water, $2::bigint AS policy_events"
                ),
                &[&self.low_water, &self.policy_events],
            )
            .await
            .context("recording what the presync copied")?;
        Ok(())
    }

    /// Reads the mark the presync recorded.
    pub async fn read(client_91: &impl GenericClient) -> Result<Self> {
        let row = client_91
            .query_one(
                &format!("SELECT low_water, policy_events FROM {STAGING_SCHEMA}.presync_mark"),
                &[],
            )
            .await
            .context("reading what the presync copied from the 9.1 database")?;
        Ok(Self {
            low_water: row.get(0),
            policy_events: row.get(1),
        })
    }
}

/// The policy events in `on_71` but not in `on_91` (both sorted), as
/// selections of runs of consecutive ids: every id of a run is one of
/// them, so the same selection gives exactly those rows on both servers.
pub fn missing_event_selections(on_71: &[i64], on_91: &[i64]) -> Vec<Selection> {
    let present: std::collections::HashSet<i64> = on_91.iter().copied().collect();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for id in on_71.iter().copied().filter(|id| !present.contains(id)) {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == id => *last = id,
            _ => runs.push((id, id)),
        }
    }
    runs.into_iter()
        .map(|(first, last)| Selection {
            table: Table71::PolicyEvent,
            filter: Filter::Ids { first, last },
        })
        .collect()
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

/// A row count and an order-independent sum over the rows' canonical text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checksum {
    /// Rows.
    pub rows: i64,
    /// Sum of the first 60 bits of each row's md5, as a decimal number.
    pub sum: String,
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
    let relation = format!("compat71.{}", selection.table().name());
    let migrated = selection.table().is_history().then_some("source = '7.1'");
    let sql = checksum_sql(selection, &relation, migrated);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_events_are_selected_as_runs_of_consecutive_ids() {
        let on_71 = [3, 5, 6, 7, 8, 9, 12, 13, 20];
        let on_91 = [3, 5, 6, 8];
        let runs: Vec<String> = missing_event_selections(&on_71, &on_91)
            .iter()
            .map(|s| s.where_clause())
            .collect();
        assert_eq!(
            runs,
            [
                "WHERE event_id BETWEEN 7 AND 7",
                "WHERE event_id BETWEEN 9 AND 9",
                "WHERE event_id BETWEEN 12 AND 13",
                "WHERE event_id BETWEEN 20 AND 20",
            ]
        );
        assert!(missing_event_selections(&on_91, &on_91).is_empty());
    }

    #[test]
    fn a_time_filter_needs_a_history_table() {
        let at = NaiveDateTime::parse_from_str("2024-05-01 10:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        let err = Selection::new(Table71::PolicyRule, Filter::Since(at)).unwrap_err();
        assert!(err.to_string().contains("tb_policy_rule"), "{err}");
        let window = Selection::new(Table71::Quarantine, Filter::Since(at)).unwrap();
        assert_eq!(
            window.where_clause(),
            "WHERE quarantine_time >= '2024-05-01 10:00:00.000000'::timestamp"
        );
        assert_eq!(
            window.to_string(),
            "tb_quarantine (quarantine_time >= '2024-05-01 10:00:00.000000'::timestamp)"
        );
    }

    #[test]
    fn the_window_starts_24_hours_before_now() {
        let now = DateTime::parse_from_rfc3339("2024-05-02T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(window_cutoff(now).to_string(), "2024-05-01 10:00:00");
    }

    #[test]
    fn canonical_text_pins_timestamps_and_quotes_every_column() {
        let text = Table71::ComponentVersion.canonical_text();
        assert_eq!(
            text,
            "quote_nullable((component)::text) || ',' || quote_nullable((kind)::text) || ',' || \
             quote_nullable((version)::text) || ',' || \
             quote_nullable(to_char(updated_time, 'YYYY-MM-DD HH24:MI:SS.US'))"
        );
    }
}
