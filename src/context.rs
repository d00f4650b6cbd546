//! What every step of the flow is handed: where the server is, and the
//! settings of this run.

use std::path::PathBuf;

use crate::root::Root;

/// Where the upgrade package puts the 9.1 bundled PostgreSQL's programs
/// (its payload), when the caller names no other.
pub const PAYLOAD_PG_BIN: &str = "/usr/share/imss-upgrade/payload/PostgreSQL/bin";

/// The context of one run of a step.
#[derive(Debug, Clone)]
pub struct Context {
    /// The root the server is installed under.
    pub root: Root,
    /// The PostgreSQL 15 programs that create and run the 9.1 cluster.
    pub target_pg_bin: PathBuf,
}

impl Context {
    /// A context for the server under `root`, with the payload's PostgreSQL.
    pub fn new(root: Root) -> Self {
        Self {
            root,
            target_pg_bin: PathBuf::from(PAYLOAD_PG_BIN),
        }
    }

    /// The same, creating the 9.1 cluster with the programs in `bin_dir`.
    pub fn with_target_pg(mut self, bin_dir: impl Into<PathBuf>) -> Self {
        self.target_pg_bin = bin_dir.into();
        self
    }
}
