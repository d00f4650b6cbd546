//! What 9.1's server says of its sessions, for the transfer: its load, the
//! process serving the transfer, and what a batch waits for.

use anyhow::{Context, Result};
use tokio_postgres::GenericClient;

/// How many sessions on 9.1 other than the upgrade's own run a query now:
/// the load the transfer backs off from.
pub async fn busy_sessions(target_91: &impl GenericClient) -> Result<i64> {
    Ok(target_91
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
              WHERE backend_type = 'client backend' AND state = 'active' \
                AND application_name <> 'imss-upgrade' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .context("asking 9.1 how many sessions run a query")?
        .get(0))
}

/// The id of the 9.1 server process serving `client`.
pub async fn backend_pid(client: &impl GenericClient) -> Result<i32> {
    Ok(client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .context("asking 9.1 for the transfer's server process")?
        .get(0))
}

/// What a transfer's batch waits for on 9.1, if anything: the wait event
/// type and name of another active session of the upgrade
/// (`pg_stat_activity`), seen from a monitoring connection.
pub async fn batch_waits_for(monitor: &impl GenericClient) -> Result<Option<(String, String)>> {
    let row = monitor
        .query_opt(
            "SELECT wait_event_type, wait_event FROM pg_stat_activity \
              WHERE application_name = 'imss-upgrade' AND state = 'active' \
                AND wait_event_type IS NOT NULL AND pid <> pg_backend_pid() LIMIT 1",
            &[],
        )
        .await
        .context("asking 9.1 what the transfer waits for")?;
    Ok(row.map(|row| (row.get(0), row.get(1))))
}
