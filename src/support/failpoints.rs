//! Named fail points (crate `fail`) at every step boundary, inside every
//! long step, around every undo and at the start of every recovery, so that
//! tests can make the upgrade fail, or stop dead, at a chosen place. Built
//! only with the `failpoints` cargo feature; without it
//! [`fail_point!`](crate::fail_point) compiles to nothing and
//! [`arm_from_environment`] does nothing.
//!
//! A test that runs a binary built with the feature arms them through the
//! environment:
//! - `FAILPOINTS=name=return` (the `fail` crate's syntax, `;` between
//!   points) makes the point fail the step it is in;
//! - `IMSS_STOP_AT=name` with `IMSS_STOP_FILE=PATH`: at that point the
//!   process writes its pid and the point's name to `PATH` and stops there,
//!   for the test to kill it with SIGKILL, as a power loss or the OOM
//!   killer would end it.
//!
//! [`POINTS`] lists every point a run, a rollback and a recovery pass, in
//! that order (`presync-fence-waiting` is passed only while a 7.1
//! transaction is open, so it is not listed). One more, `tree-move-copied`
//! (between the copy of a tree across file systems and its verification),
//! is passed only when the data directory and the backup are on different
//! file systems, so it is not listed either. Nor is `package-upgraded`,
//! passed by the package's `%pre` (`imss-upgrade package pre-install`)
//! once the upgrade it waited for ended on 9.1, before rpm records the
//! package. The background transfer has four of its own:
//! `transfer-source-started` (PostgreSQL 10 up on the backup, no batch
//! begun), `transfer-batch-settled` (a batch with its cursor, not yet
//! committed), `transfer-batch-committed` (a batch committed; armed with
//! `return`, the connection is lost before the COMMIT's answer) and
//! `transfer-verifying` (every batch committed, the final comparison not
//! yet made). The work after an upgrade has its own too, each named in
//! the README's table and used by `tests/lifecycle_points.rs`: the lock's
//! (`lock-taken-unnamed`), the rollback's carry-back (`carry-back-*`),
//! the compression's swap (`compress-*`) and finalize's (`finalize-*`).

/// Every fail point, in the order a run, then its rollback, passes them.
pub const POINTS: &[&str] = &[
    "run-journal-created",
    "before-presync",
    "presync-window-copied",
    "after-presync",
    "before-quiesce",
    "after-quiesce",
    "before-snapshot",
    "snapshot-archived",
    "after-snapshot",
    "before-migrate",
    "migrate-config-imported",
    "migrate-window-copied",
    "after-migrate",
    "before-switch",
    "switch-staged",
    "switch-swapped",
    "switch-health-check",
    "switch-71-tree-removing",
    "after-switch",
    "before-register-rollback",
    "after-register-rollback",
    "rollback-checked",
    "before-undo-register-rollback",
    "after-undo-register-rollback",
    "before-undo-switch",
    "undo-switch-91-stopped",
    "after-undo-switch",
    "before-undo-migrate",
    "after-undo-migrate",
    "before-undo-snapshot",
    "after-undo-snapshot",
    "before-undo-quiesce",
    "after-undo-quiesce",
    "before-undo-presync",
    "after-undo-presync",
];

/// The environment variable naming the point to stop at.
pub const STOP_AT_VAR: &str = "IMSS_STOP_AT";

/// The environment variable naming the file a stopped process writes.
pub const STOP_FILE_VAR: &str = "IMSS_STOP_FILE";

/// Arms the fail points the environment names (see the module's text).
#[cfg(feature = "failpoints")]
pub fn arm_from_environment() {
    // The scenario holds the points for the whole life of the process.
    std::mem::forget(fail::FailScenario::setup());
    if let (Ok(point), Ok(file)) = (std::env::var(STOP_AT_VAR), std::env::var(STOP_FILE_VAR)) {
        let name = point.clone();
        if let Err(err) = fail::cfg_callback(point, move || stop_here(&name, &file)) {
            eprintln!("{STOP_AT_VAR}: {err}");
        }
    }
}

/// Arms nothing: this build has no fail points.
#[cfg(not(feature = "failpoints"))]
pub fn arm_from_environment() {}

/// Says where this process stopped, then waits to be killed.
#[cfg(feature = "failpoints")]
fn stop_here(point: &str, file: &str) {
    let said = format!("{} {point}\n", std::process::id());
    if let Err(err) =
        crate::support::fsutil::atomic_write(std::path::Path::new(file), said.as_bytes(), 0o644)
    {
        eprintln!("{STOP_FILE_VAR}: {err:#}");
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// At this point, fail with an error naming the point if the test asked for
/// it (action `return`), or panic, sleep, pause or stop as armed.
#[macro_export]
macro_rules! fail_point {
    ($name:expr) => {
        ::fail::fail_point!($name, |_| {
            Err(::anyhow::anyhow!(
                "fail point {} was triggered: a test injected this failure",
                $name
            ))
        })
    };
}
