//! The upgrade itself and the two ways back from it: `run` (preflight,
//! then the steps in order), `rollback` (on failure and on request) and
//! `recover` (a run that was interrupted).

pub mod health;
pub mod preflight;
pub mod recover;
pub mod rollback;
pub mod rollback_manifest;
pub mod run;
pub mod runbook;
pub mod server_units;
pub mod steps;
