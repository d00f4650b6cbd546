//! What every step of the flow is handed: where the server is, and the
//! settings of this run.

use crate::root::Root;

/// The context of one run of a step.
#[derive(Debug, Clone)]
pub struct Context {
    /// The root the server is installed under.
    pub root: Root,
}

impl Context {
    /// A context for the server under `root`.
    pub fn new(root: Root) -> Self {
        Self { root }
    }
}
