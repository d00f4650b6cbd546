//! What every step of the flow is handed: where the server is, and the
//! settings of this run.

use std::path::PathBuf;

use crate::root::Root;

/// Where the upgrade package puts the 9.1 program tree it installs (its
/// payload), when the caller names no other. Not under the root: the
/// payload belongs to the running upgrade, not to the server it upgrades.
pub const PAYLOAD_DIR: &str = "/usr/share/imss-upgrade/payload";

/// Where the payload's bundled PostgreSQL 15 keeps its programs, inside it.
pub const PAYLOAD_PG_BIN: &str = "PostgreSQL/bin";

/// The context of one run of a step.
#[derive(Debug, Clone)]
pub struct Context {
    /// The root the server is installed under.
    pub root: Root,
    /// The 9.1 program tree the switch lays down at `/opt/trend/imss`.
    pub payload_dir: PathBuf,
    /// The PostgreSQL 15 programs that create and run the 9.1 cluster.
    pub target_pg_bin: PathBuf,
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
            root,
            target_pg_bin: payload_dir.join(PAYLOAD_PG_BIN),
            payload_dir,
        }
    }

    /// The same, creating the 9.1 cluster with the programs in `bin_dir`.
    pub fn with_target_pg(mut self, bin_dir: impl Into<PathBuf>) -> Self {
        self.target_pg_bin = bin_dir.into();
        self
    }
}
