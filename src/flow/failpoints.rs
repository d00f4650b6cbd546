//! Named fail points (crate `fail`) at every step boundary and inside every
//! long step, so that tests can make the upgrade fail, or stop dead, at a
//! chosen place. Built only with the `failpoints` cargo feature; without it
//! [`fail_point!`](crate::fail_point) compiles to nothing.
//!
//! The names are `before-<step>`, `after-<step>` and the ones inside the
//! steps (`presync-fence-waiting` (only while a 7.1 transaction is open),
//! `presync-window-copied`, `snapshot-archived`, `migrate-config-imported`,
//! `migrate-window-copied`, `switch-staged`, `switch-swapped`,
//! `switch-health-check`); `FAILPOINTS=name=return` in the environment of a
//! binary built with the feature triggers one. One more, `tree-move-copied`
//! (between the copy of a tree across file systems and its verification),
//! is passed only when the data directory and the backup are on different
//! file systems, so it is not in [`POINTS`].

/// Every fail point, in the order a run passes them.
pub const POINTS: &[&str] = &[
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
    "after-switch",
    "before-register-rollback",
    "after-register-rollback",
];

/// At this point, fail with an error naming the point if the test asked for
/// it (action `return`), or panic, sleep or pause as `fail` allows.
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
