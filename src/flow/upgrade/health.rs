//! Whether the server takes mail: the check a rolled-back 7.1 must pass
//! (sender and recipient accepted, no message, so its database stays as it
//! was), and the one that ends the downtime on 9.1 (a mail accepted, and
//! its policy event in PostgreSQL 15).

use std::time::Duration;

use anyhow::{Result, bail};

use crate::files::imss_ini::ProductInfo;
use crate::flow::context::Context;
use crate::migration::probe;
use crate::support::constants::DATABASE_HOST;
use crate::system::imssctl::{self, Action};
use crate::system::{pg, smtp};

/// Starts or stops the installed server through its control script,
/// within the run's time limit for services, the script's process group
/// recorded in the state directory while it runs, so that a recovery can
/// stop what a killed run's script left working.
pub fn control_services(ctx: &Context, action: Action) -> Result<()> {
    // Without a state directory there is no upgrade to recover either.
    let record = ctx.layout.control_record()?;
    let record = record
        .parent()
        .is_some_and(std::path::Path::is_dir)
        .then_some(record);
    imssctl::control(&ctx.root, action, ctx.service_timeout, record.as_deref())
}

/// The installed scanner accepts a sender and a recipient; no message is
/// sent, so nothing is logged.
pub fn check_accepting(ctx: &Context) -> Result<()> {
    let port = ProductInfo::smtp_port(&ctx.root)?;
    smtp::check_accepting(DATABASE_HOST, port)
}

/// Sends a test mail to the installed scanner (`purpose` names the check in
/// its Message-ID); returns the Message-ID once the scanner accepted it.
pub fn send_test_mail(ctx: &Context, purpose: &str) -> Result<String> {
    let port = ProductInfo::smtp_port(&ctx.root)?;
    let message_id = format!(
        "<imss-upgrade-{purpose}-{}@localhost>",
        chrono::Utc::now().format("%Y%m%d%H%M%S%.6f")
    );
    smtp::send_probe(DATABASE_HOST, port, &message_id)?;
    Ok(message_id)
}

/// The installed 9.1 scanner accepts a test mail (`purpose` names the
/// check in its Message-ID), and its policy event is in the 9.1 database.
pub async fn check_91_takes_mail(ctx: &Context, purpose: &str) -> Result<()> {
    let purpose = purpose.to_string();
    let message_id = ctx
        .unblock(move |ctx| send_test_mail(ctx, &purpose))
        .await?;
    let client = pg::connect(&ctx.database()?).await?;
    let found = probe::policy_events_for_message(&client, &message_id).await?;
    if found != 1 {
        bail!(
            "the 9.1 scanner accepted the health-check mail {message_id} but PostgreSQL 15 has {found} \
             policy events for it: check the scanner's log under /var/imss/run"
        );
    }
    Ok(())
}

/// [`check_91_takes_mail`], retried a few times as a sender retries a
/// temporary refusal: after a crash, 9.1's services may still be settling.
pub async fn check_91_settled(ctx: &Context) -> Result<()> {
    const ATTEMPTS: u32 = 3;
    let mut attempt = 1;
    loop {
        match check_91_takes_mail(ctx, "recover").await {
            Ok(()) => return Ok(()),
            Err(err) if attempt < ATTEMPTS => {
                tracing::warn!("9.1 health check after recovery, attempt {attempt}: {err:#}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                attempt += 1;
            }
            Err(err) => return Err(err.context("9.1 does not take mail after the recovery")),
        }
    }
}
