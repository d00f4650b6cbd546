//! What preflight and every step of the flow are handed: where the server
//! is, the programs this run installs, and what the run reads once about
//! the server (the admin database settings from `odbc.ini`, the service
//! account).
//!
//! It lives in the flow, not in `support`: it carries the product's own
//! settings (`files`), which the plumbing below may not know.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Result;

use crate::files::odbc_ini::DbSettings;
use crate::flow::layout::Layout;
use crate::support::account::ServiceUser;
use crate::support::constants::SERVICE_USER;
use crate::support::root::Root;
use crate::system::imssctl;

/// Where the upgrade package puts the 9.1 program tree it installs (its
/// payload), when the caller names no other. Not under the root: the
/// payload belongs to the running upgrade, not to the server it upgrades.
pub const PAYLOAD_DIR: &str = "/usr/share/imss-upgrade/payload";

/// Where the payload's bundled PostgreSQL 15 keeps its programs, inside it.
pub const PAYLOAD_PG_BIN: &str = "PostgreSQL/bin";

/// Where the payload's bundled BIND keeps `named`, `rndc` and
/// `named-checkconf`, inside it.
pub const PAYLOAD_BIND_SBIN: &str = "bind/sbin";

/// The context of one run.
#[derive(Debug, Clone)]
pub struct Context {
    /// The root the server is installed under.
    pub root: Root,
    /// Where the upgrade keeps and moves everything under the root.
    pub layout: Layout,
    /// The 9.1 program tree the switch lays down at `/opt/trend/imss`.
    pub payload_dir: PathBuf,
    /// The PostgreSQL 15 programs that create and run the 9.1 cluster.
    pub target_pg_bin: PathBuf,
    /// How long the services may take to start or stop before the upgrade
    /// gives up on them and rolls back.
    pub service_timeout: Duration,
    /// Run by the boot-time recovery unit: the 9.1 units it starts are
    /// ordered after it, so their starts are queued, not waited for.
    pub at_boot: bool,
    /// Shared by the clones a run hands to its blocking tasks, so that what
    /// preflight settles holds for all of them.
    database: Arc<Mutex<Option<DbSettings>>>,
    service_user: OnceLock<ServiceUser>,
}

impl Context {
    /// A context for the server under `root`, with the package's payload.
    pub fn new(root: Root) -> Self {
        Self::with_payload(root, PAYLOAD_DIR)
    }

    /// A context for the server under `root` with the payload in `dir`.
    pub fn with_payload(root: Root, dir: impl Into<PathBuf>) -> Self {
        let payload_dir = dir.into();
        Self {
            layout: Layout::new(root.clone()),
            root,
            target_pg_bin: payload_dir.join(PAYLOAD_PG_BIN),
            service_timeout: imssctl::DEFAULT_TIMEOUT,
            at_boot: false,
            payload_dir,
            database: Arc::default(),
            service_user: OnceLock::new(),
        }
    }

    /// The same, run by the boot-time recovery unit.
    pub fn at_boot(mut self, at_boot: bool) -> Self {
        self.at_boot = at_boot;
        self
    }

    /// The same, with `limit` for the services' starts and stops.
    pub fn with_service_timeout(mut self, limit: Duration) -> Self {
        self.service_timeout = limit;
        self
    }

    /// The same, creating the 9.1 cluster with the programs in `bin_dir`.
    pub fn with_target_pg(mut self, bin_dir: impl Into<PathBuf>) -> Self {
        self.target_pg_bin = bin_dir.into();
        self
    }

    /// The admin database settings, read from `odbc.ini` the first time
    /// they are asked for and kept for the rest of the run. The switch
    /// writes the same settings into 9.1's `odbc.ini` (and reads them back
    /// before it swaps the tree in), so they hold on both sides of it.
    pub fn database(&self) -> Result<DbSettings> {
        let mut held = self.held_database();
        if let Some(settings) = held.as_ref() {
            return Ok(settings.clone());
        }
        let settings = DbSettings::load(&self.root)?;
        *held = Some(settings.clone());
        Ok(settings)
    }

    /// Keeps `settings` for the rest of the run: preflight's, with the
    /// reading of the password that the server accepted.
    pub fn settle_database(&self, settings: DbSettings) {
        *self.held_database() = Some(settings);
    }

    fn held_database(&self) -> std::sync::MutexGuard<'_, Option<DbSettings>> {
        // A panic while the lock was held left the settings whole: they are
        // replaced in one assignment.
        self.database
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The `imss` account the services and the bundled PostgreSQL run as,
    /// looked up once.
    pub fn service_user(&self) -> Result<&ServiceUser> {
        if let Some(user) = self.service_user.get() {
            return Ok(user);
        }
        let user = ServiceUser::lookup(&self.root, SERVICE_USER)?;
        Ok(self.service_user.get_or_init(|| user))
    }
}

impl Context {
    /// Runs `work` (programs, file trees: anything that blocks) on a thread
    /// of its own, so that it does not stall the async runtime the
    /// database connections and the caller's other tasks run on. A panic
    /// in `work` (a fail point's, say) goes on as a panic here.
    pub async fn unblock<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Context) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let ctx = self.clone();
        match tokio::task::spawn_blocking(move || work(&ctx)).await {
            Ok(result) => result,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => Err(anyhow::anyhow!(
                "a blocking task of the upgrade was cancelled: {err}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_settings_are_read_once_per_run() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("opt/trend/imss/config");
        std::fs::create_dir_all(&config).unwrap();
        let odbc = config.join("odbc.ini");
        std::fs::write(
            &odbc,
            "[IMSS]\nServername = 127.0.0.1\nPort = 5432\nDatabase = imss\nUserName = sa\nPassword = p%ss\n",
        )
        .unwrap();
        let ctx = Context::new(Root::new(dir.path()).unwrap());
        assert_eq!(ctx.database().unwrap().port, 5432);
        // Gone (or rewritten by the switch) later in the run: the run keeps
        // what it read.
        std::fs::remove_file(&odbc).unwrap();
        assert_eq!(ctx.database().unwrap().password.expose(), b"p%ss");
        assert!(
            Context::new(Root::new(dir.path()).unwrap())
                .database()
                .is_err()
        );
    }
}
