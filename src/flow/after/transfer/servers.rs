//! The transfer's two servers: the 7.1 database in the backup, started
//! read-only from 7.1's own PostgreSQL 10 taken out of the snapshot, and
//! 9.1's, whose server process serving the transfer runs at the lowest CPU
//! priority; both connected, and connected again after a failed batch
//! where waiting mends the cause.

use anyhow::{Context as _, Result};
use tokio_postgres::Client;

use super::progress::{Tracker, TransferState};
use super::stop::StopRequest;
use super::{POLL, RETRY};
use crate::files::odbc_ini::DbSettings;
use crate::flow::context::Context;
use crate::flow::journal::StepJournal;
use crate::migration::transfer as batches;
use crate::support::constants::{BUNDLED_PG_DIR, RUN_DIR};
use crate::system::pg::{self, Cluster, StopMode};

/// The transfer's connections to 7.1 (the source) and 9.1 (the target).
pub(super) struct Servers {
    pub(super) source: Client,
    pub(super) target: Client,
    source_settings: DbSettings,
}

impl Servers {
    /// Starts the 7.1 database in the backup and connects to it, then to
    /// 9.1, waiting (and saying so) while 9.1 is down. `None`: a stop was
    /// requested meanwhile.
    pub(super) async fn connect(
        ctx: &Context,
        tracker: &Tracker,
        stop: &StopRequest,
    ) -> Result<Option<Self>> {
        let source_cluster = start_source(ctx).await?;
        let settings = ctx.database()?;
        let source_settings = DbSettings {
            host: source_cluster.socket_dir.to_string_lossy().into_owned(),
            ..settings.clone()
        };
        let source = connect_source(&source_settings).await?;
        let Some(target) = connect_target(ctx, tracker, stop).await? else {
            return Ok(None);
        };
        Ok(Some(Self {
            source,
            target,
            source_settings,
        }))
    }

    /// After a failed batch (rolled back, the cursor where it was): waits
    /// for what it needs and connects again, or gives up on what waiting
    /// cannot mend. `false`: a stop was requested meanwhile.
    pub(super) async fn recover(
        &mut self,
        ctx: &Context,
        err: anyhow::Error,
        tracker: &Tracker,
        stop: &StopRequest,
    ) -> Result<bool> {
        let code = err
            .chain()
            .find_map(|cause| cause.downcast_ref::<tokio_postgres::Error>())
            .and_then(|cause| cause.code().cloned());
        if self.source.is_closed() {
            tracker.set(
                TransferState::Waiting,
                Some(format!(
                    "source down: the 7.1 database in the backup stopped ({err:#})"
                )),
            );
            tracing::warn!("the 7.1 database in the backup stopped; starting it again: {err:#}");
            stop.sleep(RETRY).await;
            start_source(ctx).await?;
            self.source = connect_source(&self.source_settings).await?;
            return Ok(true);
        }
        if self.target.is_closed() {
            tracker.set(
                TransferState::Waiting,
                Some(format!(
                    "target down: the 9.1 database closed the connection ({err:#})"
                )),
            );
            let Some(target) = connect_target(ctx, tracker, stop).await? else {
                return Ok(false);
            };
            self.target = target;
            return Ok(true);
        }
        if code == Some(tokio_postgres::error::SqlState::DISK_FULL) {
            tracker.set(
                TransferState::Waiting,
                Some(format!(
                    "disk full: the 9.1 database's file system has no room for the next batch; free \
                     space there ({err:#})"
                )),
            );
            tracing::warn!("the 9.1 database's disk is full; the transfer waits: {err:#}");
            stop.sleep(RETRY).await;
            return Ok(true);
        }
        if matches!(
            code,
            Some(tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
                | Some(tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED)
                | Some(tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE)
                | Some(tokio_postgres::error::SqlState::QUERY_CANCELED)
        ) {
            tracker.set(TransferState::Waiting, Some(format!("lock wait: {err:#}")));
            stop.sleep(POLL).await;
            return Ok(true);
        }
        Err(err.context(
            "the batch was rolled back and the cursor stays after the last committed batch; fix the \
             cause, then start the transfer again (systemctl start imss-upgrade-transfer.service, or \
             imss-upgrade transfer run)",
        ))
    }
}

/// Takes 7.1's PostgreSQL 10 out of the snapshot (once), settles a server
/// a killed transfer left running, and starts the 7.1 database in the
/// backup read-only on its socket there.
async fn start_source(ctx: &Context) -> Result<Cluster> {
    ctx.unblock(|ctx| {
        let programs = ctx.layout.extracted_71_postgresql()?;
        if !programs.join("bin").join("postgres").is_file() {
            let journal = StepJournal::of(ctx)?
                .context("the upgrade journal is gone: no snapshot is trusted to start 7.1 from")?;
            crate::snapshot::extract_subtree(
                &ctx.layout.backup_dir()?,
                journal.snapshot_pin()?,
                BUNDLED_PG_DIR,
                &programs,
            )
            .context("taking 7.1's PostgreSQL 10 out of the snapshot")?;
        }
        let cluster = crate::flow::clusters::backup_71_after_switch(ctx)?;
        pg::stop_server(&cluster.data_dir, StopMode::Immediate)?;
        crate::flow::clusters::open_backup_to(ctx, &cluster)?;
        crate::flow::clusters::start_backup_71_read_only(&cluster)?;
        crate::fail_point!("transfer-source-started");
        Ok(cluster)
    })
    .await
    .context(SOURCE_UNREADABLE)
}

/// What a transfer that cannot read 7.1 says.
const SOURCE_UNREADABLE: &str = "the 7.1 database in the backup cannot be read (source unreadable): \
     the cursor stays where it was; check the backup directory and the log beside its data \
     directory, then start the transfer again";

async fn connect_source(settings: &DbSettings) -> Result<Client> {
    let (client, _) = pg::connect_as_configured(settings)
        .await
        .context(SOURCE_UNREADABLE)?;
    Ok(client)
}

/// The 9.1 database where 9.1 runs it, on its Unix socket.
pub(super) fn target_settings(ctx: &Context) -> Result<DbSettings> {
    let settings = ctx.database()?;
    Ok(DbSettings {
        host: ctx.root.resolve(RUN_DIR)?.to_string_lossy().into_owned(),
        ..settings
    })
}

/// Connects to 9.1, waiting (and saying so) while it is down; the server
/// process then runs at the lowest CPU priority. `None`: a stop was
/// requested meanwhile.
async fn connect_target(
    ctx: &Context,
    tracker: &Tracker,
    stop: &StopRequest,
) -> Result<Option<Client>> {
    let settings = target_settings(ctx)?;
    loop {
        match pg::connect_as_configured(&settings).await {
            Ok((client, _)) => {
                lower_priority(&client).await;
                batches::prepare_session(&client).await;
                return Ok(Some(client));
            }
            Err(err @ pg::ConnectError::NotReachable { .. }) => {
                tracker.set(
                    TransferState::Waiting,
                    Some(format!(
                        "target down: {err:#}; the transfer goes on once imss-postgresql.service runs"
                    )),
                );
                if stop.sleep(RETRY).await {
                    return Ok(None);
                }
            }
            Err(err) => return Err(err).context("connecting to the 9.1 database"),
        }
    }
}

/// Gives the 9.1 server process that serves the transfer the lowest CPU
/// priority, so that live mail's processes go first. Best effort.
async fn lower_priority(client: &Client) {
    let Ok(pid) = batches::backend_pid(client).await else {
        return;
    };
    let pid = rustix::process::Pid::from_raw(pid);
    if let Err(err) = rustix::process::setpriority_process(pid, 19) {
        tracing::debug!("could not lower the transfer's 9.1 server process's priority: {err}");
    }
}
