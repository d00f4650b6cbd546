//! Which rows of a 7.1 table: the unit that is copied and checksummed, and
//! the 24-hour window that moves during the downtime.

use std::fmt;

use anyhow::{Result, bail};
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use serde::Serialize;

use super::tables::Table71;
use crate::support::constants::CRITICAL_HISTORY_HOURS;

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

    /// The policy events with ids `first..=last`.
    pub fn event_ids(first: i64, last: i64) -> Self {
        Self {
            table: Table71::PolicyEvent,
            filter: Filter::Ids { first, last },
        }
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

pub(super) fn timestamp_literal(at: NaiveDateTime) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
