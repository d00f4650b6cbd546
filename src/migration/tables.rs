//! The 7.1 tables the migration carries over, with their columns as 7.1
//! defines them: what is copied, exported and checksummed.

use std::fmt;

use serde::Serialize;

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
    pub(super) fn export_order(self) -> &'static str {
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
    pub(super) fn canonical_text(self) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
