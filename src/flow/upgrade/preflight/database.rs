//! The admin database (seed items 3 and 5, and the wizard's step 5 screen):
//! reached with `odbc.ini` read as psqlODBC reads it (and, where its
//! password holds a `%` psqlODBC cannot decode, exactly as written too),
//! sized from the catalog (never by scanning a table), with its bloat and
//! what the logical copy reclaims.

use anyhow::Result;

use super::{Facts, Finding, Severity};
use crate::files::odbc_ini::{DatabaseView, DbSettings};
use crate::files::odbc_password::ReadingKind;
use crate::flow::context::Context;
use crate::migration::probe;
use crate::system::pg::{self, ConnectError, TableSize};

/// What preflight learned about the database.
#[derive(Debug, Clone)]
pub struct DatabaseInfo {
    /// How it was reached.
    pub settings: DbSettings,
    /// `server_version`.
    pub server_version: String,
    /// `pg_database_size`, bytes.
    pub size_bytes: i64,
    /// The tables, largest first.
    pub tables: Vec<TableSize>,
    /// Whether EUQ is enabled (`tb_euq_setting.enable_euq`), if readable.
    pub euq_enabled: Option<bool>,
}

impl DatabaseInfo {
    /// Bytes the dead rows of every table take: what a logical copy leaves
    /// behind.
    pub fn reclaimable_bytes(&self) -> i64 {
        self.tables.iter().map(reclaimable_bytes).sum()
    }

    /// Bytes of live data: what the 9.1 cluster will hold once every row is
    /// over.
    pub fn live_bytes(&self) -> i64 {
        (self.size_bytes - self.reclaimable_bytes()).max(0)
    }

    /// The settings as people may see them.
    pub fn view(&self) -> DatabaseView {
        self.settings.view()
    }
}

/// Bytes the dead rows of `table` take, in proportion.
fn reclaimable_bytes(table: &TableSize) -> i64 {
    let all = table.rows + table.dead_rows;
    if all <= 0 {
        0
    } else {
        (table.total_bytes as f64 * table.dead_rows as f64 / all as f64) as i64
    }
}

/// Connects, and reports the database or why it cannot be reached.
pub async fn check(ctx: &Context, facts: &mut Facts, out: &mut Vec<Finding>) -> Result<()> {
    let settings = match ctx.database() {
        Ok(settings) => settings.clone(),
        Err(err) => {
            out.push(Finding::new(
                "odbc-ini-unreadable",
                Severity::Inhibitor,
                "The database settings in odbc.ini cannot be read",
                format!("{err:#}"),
                "restore odbc.ini from the 7.1 installation, then run again",
            ));
            return Ok(());
        }
    };
    let (client, settings) = match pg::connect_as_configured(&settings).await {
        Ok(connected) => connected,
        Err(err) => {
            let (id, fix) = match &err {
                ConnectError::WrongPassword { .. } => (
                    "database-password-refused",
                    "set Password in odbc.ini to the database user's password as psqlODBC's setup writes \
                     it (every character but a letter or digit as %XX, a space as +; a '%' is %25, a '+' \
                     %2B), or reset the password in PostgreSQL to match",
                ),
                ConnectError::NotReachable { .. } => (
                    "database-unreachable",
                    "start the 7.1 database (as the imss user) and check Servername and Port in odbc.ini",
                ),
                ConnectError::Other { .. } => (
                    "database-error",
                    "see the cause above, fix it, then run again",
                ),
            };
            out.push(Finding::new(
                id,
                Severity::Inhibitor,
                "The admin database cannot be used",
                format!("{:#}", anyhow::Error::new(err)),
                fix,
            ));
            return Ok(());
        }
    };
    ctx.settle_database(settings.clone());
    if settings.password_reading == ReadingKind::AsWritten {
        out.push(Finding::new(
            "database-password-as-written",
            Severity::Warning,
            "The database password in odbc.ini is not written as psqlODBC reads it",
            "Password in odbc.ini holds a '%' that is not followed by two hex digits, which psqlODBC \
             cannot decode; the database accepted the value exactly as written",
            "nothing to do: the 9.1 odbc.ini gets the password encoded as psqlODBC's setup writes it \
             (every character but a letter or digit as %XX)",
        ));
    }
    let (server_version, size_bytes, tables) = pg::database_summary(&client).await?;
    let euq_enabled = probe::euq_enabled_71(&client).await;
    let info = DatabaseInfo {
        settings,
        server_version,
        size_bytes,
        tables,
        euq_enabled,
    };
    out.push(summary(&info));
    facts.database = Some(info);
    Ok(())
}

fn summary(info: &DatabaseInfo) -> Finding {
    let mut found = format!(
        "PostgreSQL {}, {}\ndatabase size {}; dead rows take about {}, which the logical copy to 9.1 leaves behind\nlargest tables:",
        info.server_version,
        info.settings.describe(),
        human_bytes(info.size_bytes),
        human_bytes(info.reclaimable_bytes()),
    );
    for table in info.tables.iter().take(5) {
        found.push_str(&format!(
            "\n  {:<28} {:>12} rows {:>10}  ({} dead rows)",
            table.name,
            table.rows,
            human_bytes(table.total_bytes),
            table.dead_rows
        ));
    }
    Finding::new(
        "database-summary",
        Severity::Info,
        "Admin database",
        found,
        "",
    )
}

/// Bytes for people: 1.5 GiB, 340.2 MiB, 12 KiB.
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
