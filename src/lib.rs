//! imss-upgrade: upgrades an InterScan Messaging Security Suite 7.1 server
//! to 9.1 in place, unattended, with automatic rollback.
//!
//! The folders name the architecture (ARCHITECTURE.md has the map and the
//! rules between them), from the bottom up:
//! - [`support`]: plumbing every layer uses (the command runner, the root,
//!   atomic writes, logging, secrets, constants, exit codes);
//! - [`files`]: the product's own files (`odbc.ini`, `imss.ini`);
//! - [`system`]: one module per external thing (PostgreSQL, rpm, the
//!   control script, SMTP, BIND, listeners, `/proc`);
//! - [`migration`]: the 7.1 to 9.1 database migration (SQL lives here and
//!   in [`system::pg`] only);
//! - [`snapshot`]: the snapshot engine (archive, manifest, restore, tree moves);
//! - [`flow`]: the upgrade itself: preflight, the steps, the step journal,
//!   the layout of clusters and backup files, run, rollback and recovery;
//! - [`cli`]: the commands the binaries in `src/bin` dispatch to.

pub mod cli;
pub mod files;
pub mod flow;
pub mod migration;
pub mod snapshot;
pub mod support;
pub mod system;
