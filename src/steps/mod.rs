//! The steps of the upgrade, one module each, in the order DESIGN.md
//! section 3 gives: each has `run`, which does the step and notes in the
//! step journal what undoing it needs before each effect, and `undo`, which
//! reverses it and may be run again after an interruption.

pub mod migrate;
pub mod presync;
pub mod quiesce;
pub mod register_rollback;
pub mod snapshot;
pub mod switch;

use std::os::unix::fs::PermissionsExt;

use anyhow::{Context as _, Result};

use crate::config::{DbSettings, ProductInfo};
use crate::constants::SERVICE_USER;
use crate::context::Context;
use crate::pg::{Cluster, StopMode};
use crate::step_journal::StepRecord;
use crate::user::ServiceUser;

/// The 7.1 bundled cluster of the server under the context's root, where
/// `odbc.ini` places it.
pub fn source_cluster(ctx: &Context) -> Result<Cluster> {
    let owner = ServiceUser::lookup(&ctx.root, SERVICE_USER)?;
    let settings = DbSettings::load(&ctx.root)?;
    Cluster::bundled_71(&ctx.root, &owner, settings.port)
}

/// Checks that the installed scanner takes mail (sender and recipient
/// accepted) without sending a message, so nothing is logged.
pub fn check_scanner_accepting(ctx: &Context) -> Result<()> {
    let port = ProductInfo::smtp_port(&ctx.root)?;
    crate::smtp::check_accepting(crate::constants::DATABASE_HOST, port)
}

/// Sends the health-check mail to the installed scanner; returns its
/// Message-ID once the scanner accepted it.
pub fn send_health_mail(ctx: &Context, purpose: &str) -> Result<String> {
    let port = ProductInfo::smtp_port(&ctx.root)?;
    let message_id = format!(
        "<imss-upgrade-{purpose}-{}@localhost>",
        chrono::Utc::now().format("%Y%m%d%H%M%S%.6f")
    );
    crate::smtp::send_probe(crate::constants::DATABASE_HOST, port, &message_id)?;
    Ok(message_id)
}

/// The service account must reach its data directories and sockets inside
/// the backup directory: the directory stays root's, and only the imss group may pass
/// through it (0710; it may not list it). The socket directory is the
/// account's own.
pub(crate) fn open_backup_to_service(cluster: &Cluster) -> Result<()> {
    let backup = cluster
        .socket_dir
        .parent()
        .context("the backup socket directory has a parent")?;
    std::os::unix::fs::chown(backup, None, Some(cluster.owner.gid))
        .with_context(|| format!("giving {} to group {}", backup.display(), cluster.owner.gid))?;
    std::fs::set_permissions(backup, std::fs::Permissions::from_mode(0o710))
        .with_context(|| format!("setting the mode of {}", backup.display()))?;
    if !cluster.socket_dir.exists() {
        std::fs::create_dir(&cluster.socket_dir)
            .with_context(|| format!("creating {}", cluster.socket_dir.display()))?;
    }
    std::os::unix::fs::chown(
        &cluster.socket_dir,
        Some(cluster.owner.uid),
        Some(cluster.owner.gid),
    )
    .with_context(|| {
        format!(
            "giving {} to {}",
            cluster.socket_dir.display(),
            cluster.owner.name
        )
    })?;
    std::fs::set_permissions(&cluster.socket_dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Undoes a step that created `cluster`'s data directory (and whatever else
/// its record lists as created): a cluster a crash left running is stopped
/// first (only a started cluster has a pid file), then each path goes.
pub(crate) fn remove_created(ctx: &Context, record: &StepRecord, cluster: &Cluster) -> Result<()> {
    for created in &record.undo.created {
        let path = ctx.root.resolve_parent(created)?;
        if path == cluster.data_dir && path.join("postmaster.pid").exists() {
            cluster.stop(StopMode::Immediate)?;
        }
        remove_if_present(&path)?;
    }
    Ok(())
}

/// Removes the directory tree at `path`, if there is one.
pub(crate) fn remove_if_present(path: &std::path::Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => {
            std::fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}
