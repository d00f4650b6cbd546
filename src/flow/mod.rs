//! The upgrade flow (DESIGN.md section 3): preflight, the steps in order,
//! the step journal that makes them crash-safe, the layout that alone knows
//! where every cluster and backup file lives, and the ways into the
//! journal: run, rollback (on failure and on request) and recover.

pub mod compress;
pub mod context;
pub mod failpoints;
pub mod finalize;
pub mod health;
pub mod journal;
pub mod layout;
pub mod lock;
pub mod package;
pub mod preflight;
pub mod recover;
pub mod rollback;
pub mod rollback_manifest;
pub mod run;
pub mod server_units;
pub mod steps;
pub mod transfer;
