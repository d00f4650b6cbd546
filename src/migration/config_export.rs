//! The portable configuration export, `imsx_config.dat` (the file name of
//! the vendor's Q&A): the 7.1 configuration in a file, so that the upgrade
//! keeps a copy in the backup directory (the migrate step) and an
//! administrator can carry the same settings to a fresh 9.1 server.
//!
//! # Format, version 1
//!
//! UTF-8 JSON, one object:
//!
//! | field | meaning |
//! | --- | --- |
//! | `format` | always `"imsx-config"` |
//! | `version` | `1`; a reader refuses a higher one ("made by a newer imss-upgrade") |
//! | `exported_from` | `product` (`"InterScan Messaging Security Suite"`), `version` (`"7.1"`), `build` (e.g. `1808`), `components` (the `imss.ini` keys of the installed components) |
//! | `exported_at` | when, UTC, RFC 3339 |
//! | `content_sha256` | hex SHA-256 of one compact JSON object of every other field, in the order of this table; catches damage and hand edits (it is not a signature) |
//! | `global_settings` | `tb_global_setting` rows: `section`, `name`, `value`, `inifile` |
//! | `policy_rules` | `tb_policy_rule` rows: `rule_id`, `rule_name`, `enabled`, `priority`, `route_type`, `senders`, `recipients`, `scan_condition`, `action`, `notification`, `created_time`, `modified_time` |
//! | `euq_settings` | `tb_euq_setting` rows: `name`, `value` |
//! | `euq_approved_senders` | `tb_euq_approved_sender` rows: `owner_address`, `sender_pattern`, `created_time` |
//! | `component_versions` | `tb_component_version` rows: `component`, `kind`, `version`, `updated_time` |
//! | `admin_accounts` | `tb_admin_account` rows: `account_id`, `login_name`, `password_hash`, `role`, `enabled`, `last_login` (or `null`) |
//! | `scheduled_tasks` | `tb_scheduled_task` rows: `task_id`, `task_name`, `task_kind`, `schedule`, `enabled`, `last_run` (or `null`) |
//!
//! Rows carry the 7.1 column names and values unchanged (codes stay codes);
//! times are the UTC wall-clock times 7.1 stores, as `YYYY-MM-DDTHH:MM:SS[.ffffff]`.
//! Importing goes through the same 7.1 → 9.1 transformation as the upgrade
//! ([`crate::migration::transform::transform_config`]). Within version 1 the set of
//! fields is fixed: a reader refuses unknown ones, and any change bumps the
//! version.
//!
//! The file holds the administrators' password hashes: it is written with
//! mode 0600, atomically.

use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio_postgres::{Client, GenericClient};

use super::transform::{self, ConfigCounts};
use crate::files::imss_ini::ProductInfo;
use crate::support::fsutil::atomic_write;

/// The value of `format`.
pub const FORMAT: &str = "imsx-config";

/// The format version this program writes and the highest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// The product an export comes from, as `exported_from.product` names it.
pub const PRODUCT_NAME: &str = "InterScan Messaging Security Suite";

/// The whole export. [`export`] makes one (with its `content_sha256`),
/// [`read`] reads and checks one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigExport {
    /// [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written by this program.
    pub version: u32,
    /// The server the configuration comes from.
    pub exported_from: ExportedFrom,
    /// When it was exported.
    pub exported_at: DateTime<Utc>,
    /// SHA-256 over every other field (see the module documentation).
    pub content_sha256: String,
    /// `tb_global_setting`.
    pub global_settings: Vec<GlobalSetting>,
    /// `tb_policy_rule`.
    pub policy_rules: Vec<PolicyRule>,
    /// `tb_euq_setting`.
    pub euq_settings: Vec<EuqSetting>,
    /// `tb_euq_approved_sender`.
    pub euq_approved_senders: Vec<EuqApprovedSender>,
    /// `tb_component_version`.
    pub component_versions: Vec<ComponentVersion>,
    /// `tb_admin_account`.
    pub admin_accounts: Vec<AdminAccount>,
    /// `tb_scheduled_task`.
    pub scheduled_tasks: Vec<ScheduledTask>,
}

/// Where an export comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedFrom {
    /// [`PRODUCT_NAME`].
    pub product: String,
    /// The product version (`7.1`).
    pub version: String,
    /// The build (1808 is 7.1 SP2 Patch 1).
    pub build: u32,
    /// The installed components, by their `imss.ini` keys.
    pub components: Vec<String>,
}

/// The configuration tables, as [`transform::read_config_json`] gives them
/// and [`transform::import_config_json`] takes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigTables {
    global_settings: Vec<GlobalSetting>,
    policy_rules: Vec<PolicyRule>,
    euq_settings: Vec<EuqSetting>,
    euq_approved_senders: Vec<EuqApprovedSender>,
    component_versions: Vec<ComponentVersion>,
    admin_accounts: Vec<AdminAccount>,
    scheduled_tasks: Vec<ScheduledTask>,
}

/// A `tb_global_setting` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalSetting {
    /// Ini-style section.
    pub section: String,
    /// Key.
    pub name: String,
    /// Value, as written.
    pub value: String,
    /// The ini file 7.1 mirrored it to.
    pub inifile: String,
}

/// A `tb_policy_rule` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// Id (kept in 9.1).
    pub rule_id: i32,
    /// Name.
    pub rule_name: String,
    /// Whether the rule applies.
    pub enabled: bool,
    /// Evaluation order.
    pub priority: i32,
    /// 0 incoming, 1 outgoing, 2 both.
    pub route_type: i16,
    /// Sender scope.
    pub senders: String,
    /// Recipient scope.
    pub recipients: String,
    /// Scan condition.
    pub scan_condition: String,
    /// 0 pass, 1 delete, 2 quarantine, 3 archive, 4 tag, 5 strip.
    pub action: i16,
    /// Notification.
    pub notification: String,
    /// Created (UTC).
    pub created_time: NaiveDateTime,
    /// Last changed (UTC).
    pub modified_time: NaiveDateTime,
}

/// A `tb_euq_setting` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EuqSetting {
    /// Key.
    pub name: String,
    /// Value, as written.
    pub value: String,
}

/// A `tb_euq_approved_sender` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EuqApprovedSender {
    /// The end user.
    pub owner_address: String,
    /// The sender (pattern) the end user approved.
    pub sender_pattern: String,
    /// When (UTC).
    pub created_time: NaiveDateTime,
}

/// A `tb_component_version` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentVersion {
    /// Pattern file or engine.
    pub component: String,
    /// `pattern` or `engine`.
    pub kind: String,
    /// Version string, as the last update left it.
    pub version: String,
    /// When it was updated (UTC).
    pub updated_time: NaiveDateTime,
}

/// A `tb_admin_account` row. `Debug` masks the password hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminAccount {
    /// Id (kept in 9.1).
    pub account_id: i32,
    /// Login.
    pub login_name: String,
    /// The console's password hash.
    pub password_hash: String,
    /// Role.
    pub role: String,
    /// Whether the account may log in.
    pub enabled: bool,
    /// Last login (UTC).
    pub last_login: Option<NaiveDateTime>,
}

impl std::fmt::Debug for AdminAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAccount")
            .field("account_id", &self.account_id)
            .field("login_name", &self.login_name)
            .field("password_hash", &"***")
            .field("role", &self.role)
            .field("enabled", &self.enabled)
            .field("last_login", &self.last_login)
            .finish()
    }
}

/// A `tb_scheduled_task` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledTask {
    /// Id (kept in 9.1).
    pub task_id: i32,
    /// Name.
    pub task_name: String,
    /// Kind (`update`, `maintenance`, …).
    pub task_kind: String,
    /// Cron-style schedule.
    pub schedule: String,
    /// Whether it runs.
    pub enabled: bool,
    /// Last run (UTC).
    pub last_run: Option<NaiveDateTime>,
}

/// Every field but `content_sha256`, borrowed: what the digest covers.
#[derive(Serialize)]
struct Covered<'a> {
    format: &'a str,
    version: u32,
    exported_from: &'a ExportedFrom,
    exported_at: &'a DateTime<Utc>,
    #[serde(flatten)]
    tables: TablesRef<'a>,
}

#[derive(Serialize)]
struct TablesRef<'a> {
    global_settings: &'a [GlobalSetting],
    policy_rules: &'a [PolicyRule],
    euq_settings: &'a [EuqSetting],
    euq_approved_senders: &'a [EuqApprovedSender],
    component_versions: &'a [ComponentVersion],
    admin_accounts: &'a [AdminAccount],
    scheduled_tasks: &'a [ScheduledTask],
}

impl ConfigExport {
    /// An export of `tables` from `exported_from`, made at `exported_at`,
    /// with its digest.
    fn new(exported_from: ExportedFrom, exported_at: DateTime<Utc>, tables: ConfigTables) -> Self {
        let mut export = Self {
            format: FORMAT.to_string(),
            version: FORMAT_VERSION,
            exported_from,
            exported_at,
            content_sha256: String::new(),
            global_settings: tables.global_settings,
            policy_rules: tables.policy_rules,
            euq_settings: tables.euq_settings,
            euq_approved_senders: tables.euq_approved_senders,
            component_versions: tables.component_versions,
            admin_accounts: tables.admin_accounts,
            scheduled_tasks: tables.scheduled_tasks,
        };
        export.content_sha256 = export.digest();
        export
    }

    fn tables(&self) -> TablesRef<'_> {
        TablesRef {
            global_settings: &self.global_settings,
            policy_rules: &self.policy_rules,
            euq_settings: &self.euq_settings,
            euq_approved_senders: &self.euq_approved_senders,
            component_versions: &self.component_versions,
            admin_accounts: &self.admin_accounts,
            scheduled_tasks: &self.scheduled_tasks,
        }
    }

    /// The SHA-256 the content should have.
    pub fn digest(&self) -> String {
        let covered = Covered {
            format: &self.format,
            version: self.version,
            exported_from: &self.exported_from,
            exported_at: &self.exported_at,
            tables: self.tables(),
        };
        let bytes = serde_json::to_vec(&covered).expect("an export always serializes");
        hex::encode(Sha256::digest(&bytes))
    }

    /// Checks `format`, `version` and `content_sha256`.
    pub fn check(&self) -> Result<(), ExportError> {
        if self.format != FORMAT {
            return Err(ExportError::NotAnExport {
                found: self.format.clone(),
            });
        }
        if self.version > FORMAT_VERSION {
            return Err(ExportError::NewerVersion {
                version: self.version,
            });
        }
        if self.version == 0 {
            return Err(ExportError::Invalid {
                reason: "format version 0 does not exist".into(),
            });
        }
        if self.digest() != self.content_sha256 {
            return Err(ExportError::Damaged);
        }
        Ok(())
    }
}

/// Why an export cannot be used. [`read`] wraps it with the file's name.
#[derive(Debug, Error)]
pub enum ExportError {
    /// `format` is not [`FORMAT`], or missing.
    #[error(
        "it is not an imss-upgrade configuration export (format {found:?}, expected \"imsx-config\")"
    )]
    NotAnExport {
        /// What `format` said.
        found: String,
    },
    /// A version this program does not know.
    #[error(
        "it was made by a newer imss-upgrade (format version {version}; this one reads up to version 1): \
         import it with the imss-upgrade that made it, or a newer one"
    )]
    NewerVersion {
        /// The file's version.
        version: u32,
    },
    /// Not JSON, or not the shape of version 1.
    #[error("it is not a valid configuration export: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
    /// The digest does not match the content.
    #[error(
        "its content does not match its content_sha256: it was changed or damaged after the export; \
         export the configuration from the 7.1 server again"
    )]
    Damaged,
}

/// Exports the configuration of the 7.1 server `client_71` (one snapshot),
/// recording `product` (from its `imss.ini`) as the source.
pub async fn export(client_71: &impl GenericClient, product: &ProductInfo) -> Result<ConfigExport> {
    let json = transform::read_config_json(client_71).await?;
    let tables: ConfigTables = serde_json::from_str(&json)
        .context("the 7.1 configuration tables do not have the columns 7.1 SP2 Patch 1 has")?;
    let exported_from = ExportedFrom {
        product: PRODUCT_NAME.to_string(),
        version: product.version.clone(),
        build: product.build,
        components: product.components.iter().map(|c| c.to_string()).collect(),
    };
    let export = ConfigExport::new(exported_from, Utc::now(), tables);
    tracing::info!(
        imss_rows = export.global_settings.len()
            + export.policy_rules.len()
            + export.euq_settings.len()
            + export.euq_approved_senders.len()
            + export.component_versions.len()
            + export.admin_accounts.len()
            + export.scheduled_tasks.len(),
        "7.1 configuration exported"
    );
    Ok(export)
}

/// Writes `export` to `path` atomically, mode 0600 (it holds password
/// hashes).
pub fn write(path: &Path, export: &ConfigExport) -> Result<()> {
    let mut bytes =
        serde_json::to_vec_pretty(export).context("serializing the configuration export")?;
    bytes.push(b'\n');
    atomic_write(path, &bytes, 0o600)
}

/// Reads and checks an export: its format, its version, and that its
/// content matches its digest. Errors name the file.
pub fn read(path: &Path) -> Result<ConfigExport> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&bytes).with_context(|| format!("{} cannot be imported", path.display()))
}

/// [`read`] without the file.
fn parse(bytes: &[u8]) -> Result<ConfigExport, ExportError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|err| ExportError::Invalid {
            reason: format!("not JSON ({err})"),
        })?;
    // Format and version first: a newer file may have another shape.
    let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("");
    if format != FORMAT {
        return Err(ExportError::NotAnExport {
            found: format.to_string(),
        });
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(version) if version > u64::from(FORMAT_VERSION) => {
            return Err(ExportError::NewerVersion {
                version: u32::try_from(version).unwrap_or(u32::MAX),
            });
        }
        Some(_) => {}
        None => {
            return Err(ExportError::Invalid {
                reason: "no format version".into(),
            });
        }
    }
    let export: ConfigExport =
        serde_json::from_value(value).map_err(|err| ExportError::Invalid {
            reason: err.to_string(),
        })?;
    export.check()?;
    Ok(export)
}

/// Replaces the configuration of the 9.1 server `client_91` with `export`,
/// in one transaction, through the same transformation as the upgrade.
pub async fn import(client_91: &mut Client, export: &ConfigExport) -> Result<ConfigCounts> {
    export
        .check()
        .context("the configuration export cannot be imported")?;
    let json = serde_json::to_string(&export.tables()).context("serializing the configuration")?;
    let counts = transform::import_config_json(client_91, &json).await?;
    tracing::info!(
        ?counts,
        imss_build = export.exported_from.build,
        "configuration imported"
    );
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ConfigExport {
        let at = NaiveDateTime::parse_from_str("2024-05-01 10:00:00.25", "%Y-%m-%d %H:%M:%S%.f")
            .unwrap();
        ConfigExport::new(
            ExportedFrom {
                product: PRODUCT_NAME.into(),
                version: "7.1".into(),
                build: 1808,
                components: vec!["scanner".into(), "euq".into()],
            },
            Utc::now(),
            ConfigTables {
                global_settings: vec![GlobalSetting {
                    section: "smtp".into(),
                    name: "MaxRecipients".into(),
                    value: "100".into(),
                    inifile: "imss.ini".into(),
                }],
                policy_rules: vec![],
                euq_settings: vec![EuqSetting {
                    name: "enable_euq".into(),
                    value: "1".into(),
                }],
                euq_approved_senders: vec![],
                component_versions: vec![ComponentVersion {
                    component: "Virus Scan Engine".into(),
                    kind: "engine".into(),
                    version: "9.850.1008".into(),
                    updated_time: at,
                }],
                admin_accounts: vec![AdminAccount {
                    account_id: 1,
                    login_name: "admin".into(),
                    password_hash: "sha256$abc".into(),
                    role: "administrator".into(),
                    enabled: true,
                    last_login: None,
                }],
                scheduled_tasks: vec![],
            },
        )
    }

    #[test]
    fn an_export_survives_its_own_file_format() {
        let export = sample();
        let bytes = serde_json::to_vec_pretty(&export).unwrap();
        assert_eq!(parse(&bytes).unwrap(), export);
    }

    #[test]
    fn a_changed_value_is_refused_as_damaged() {
        let text = serde_json::to_string_pretty(&sample()).unwrap();
        let changed = text.replace("\"100\"", "\"1000\"");
        assert_ne!(text, changed);
        let err = parse(changed.as_bytes()).unwrap_err();
        assert!(matches!(err, ExportError::Damaged), "{err}");
    }

    #[test]
    fn a_newer_version_is_refused_before_its_shape_is_read() {
        let bytes = br#"{"format": "imsx-config", "version": 2, "whatever": []}"#;
        let err = parse(bytes).unwrap_err();
        assert!(
            err.to_string().contains("made by a newer imss-upgrade"),
            "{err}"
        );
    }

    #[test]
    fn the_debug_form_hides_password_hashes() {
        let text = format!("{:?}", sample());
        assert!(!text.contains("sha256$abc"), "{text}");
    }
}
