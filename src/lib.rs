//! imss-upgrade: upgrades an InterScan Messaging Security Suite 7.1 server
//! to 9.1 in place, unattended, with automatic rollback.
//!
//! The flow (DESIGN.md section 3) is preflight, quiesce, snapshot, migrate,
//! switch, register rollback, background transfer, finalize. This crate holds
//! the plumbing every step shares; each step is a module of its own.

pub mod bind;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod config_commands;
pub mod config_export;
pub mod constants;
pub mod context;
pub mod exit;
pub mod failpoints;
pub mod fsutil;
pub mod imssctl;
pub mod ini;
pub mod listeners;
pub mod logging;
pub mod pg;
pub mod preflight;
pub mod procfs;
pub mod root;
pub mod rpmdb;
pub mod schema91;
pub mod secret;
pub mod smtp;
pub mod snapshot;
pub mod status;
pub mod step_journal;
pub mod steps;
pub mod upgrade;
pub mod user;
