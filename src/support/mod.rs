//! Plumbing every other layer uses: the one command runner, the root every
//! path is resolved under, the one atomic writer, logging, secrets, the
//! seed's constants, exit codes and the service account programs run as.
//! Imports nothing else of this crate.

pub mod account;
pub mod cmd;
pub mod constants;
pub mod exit;
pub mod failpoints;
pub mod filesystems;
pub mod fsutil;
pub mod logging;
pub mod no_follow;
pub mod privileges;
pub mod processes;
pub mod root;
pub mod secret;
pub mod step_lines;
