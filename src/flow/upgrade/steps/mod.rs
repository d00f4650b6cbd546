//! The steps of the upgrade, one module each, in the order the runbook
//! ([`super::runbook`]) gives. Each has `run`, which notes in the step journal what
//! undoing it needs before its first effect and then does the step, and
//! `undo`, which reverses it from whatever stage it reached and may be run
//! again after an interruption.
//!
//! Steps never import each other: what two steps share (where a cluster
//! lives, where the backup keeps a file) is in [`crate::flow::layout`] and
//! [`crate::flow::clusters`]; how to check that mail flows is in
//! [`super::health`].

pub mod migrate;
pub mod presync;
pub mod quiesce;
pub mod register_rollback;
pub mod snapshot;
pub mod switch;
