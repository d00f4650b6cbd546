//! What the flow's checks ask of the product's databases: preflight of
//! the 7.1 one, the health checks of the 9.1 one.

use anyhow::{Context, Result};
use tokio_postgres::GenericClient;

/// How many policy events the 9.1 database holds for the mail with
/// `message_id`: 1 once the scanner has accepted and logged it.
pub async fn policy_events_for_message(
    client_91: &impl GenericClient,
    message_id: &str,
) -> Result<i64> {
    let row = client_91
        .query_one(
            "SELECT count(*) FROM policy_event WHERE message_id = $1",
            &[&message_id],
        )
        .await
        .context("looking up the health-check mail in the 9.1 database")?;
    Ok(row.get(0))
}

/// Whether EUQ is enabled in the 7.1 database (`tb_euq_setting`
/// `enable_euq`), when that can be read.
pub async fn euq_enabled_71(client_71: &impl GenericClient) -> Option<bool> {
    let row = client_71
        .query_opt(
            "SELECT value FROM tb_euq_setting WHERE name = 'enable_euq'",
            &[],
        )
        .await
        .ok()??;
    let value: String = row.get(0);
    Some(!matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "0" | "false" | "no" | "off" | ""
    ))
}

/// A pattern file or engine and the version its last update installed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstalledComponent {
    /// Its name, as the console shows it (`Virus Scan Engine`).
    pub component: String,
    /// `pattern` or `engine`.
    pub kind: String,
    /// The version.
    pub version: String,
}

/// The pattern files and engines the database of product `version`
/// (`7.1` or `9.1`) lists, by name.
pub async fn installed_components(
    client: &impl GenericClient,
    version: &str,
) -> Result<Vec<InstalledComponent>> {
    let table = if version == crate::support::constants::TARGET_VERSION {
        "component_version"
    } else {
        "tb_component_version"
    };
    let rows = client
        .query(
            &format!("SELECT component, kind, version FROM {table} ORDER BY component"),
            &[],
        )
        .await
        .with_context(|| format!("reading the pattern and engine versions ({table})"))?;
    Ok(rows
        .iter()
        .map(|row| InstalledComponent {
            component: row.get(0),
            kind: row.get(1),
            version: row.get(2),
        })
        .collect())
}

/// Whether the 9.1 database says EUQ is in use: enabled, with end-user
/// access (the seed's two settings, which the configuration import carried
/// over from 7.1).
pub async fn euq_in_use_91(client_91: &impl GenericClient) -> Result<bool> {
    let row = client_91
        .query_opt("SELECT enabled AND end_user_access FROM euq_settings", &[])
        .await
        .context("reading the EUQ settings of the 9.1 database (euq_settings)")?;
    Ok(row.is_some_and(|row| row.get(0)))
}
