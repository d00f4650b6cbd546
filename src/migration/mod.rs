//! The database migration from 7.1 to 9.1: the 9.1 schema, the staging
//! schema `v71`, the transformation, the window of the last 24 hours, and
//! verification. It reads the 7.1 server and never writes to it during an
//! upgrade; it writes the 9.1 server. The one write to 7.1 is a rollback's
//! carry-back of the mail 9.1 processed ([`carry_back`]). With
//! [`crate::system::pg`], the only place SQL is written.
//!
//! Rows reach the staging tables by binary `COPY` from the 7.1 server
//! ([`copy::copy_selection_to_staging`]) or from an `imsx_config.dat`
//! export ([`transform::import_config_json`]); one SQL transformation
//! ([`transform`]) serves both. The presync copies the window's policy
//! events behind a fence ([`window::copy_fenced_window`]); the migrate step
//! then copies what the presync could not ([`window::missing_window_events`],
//! the quarantine and archive records) and verifies every selection
//! ([`verify::verify`]).

pub mod carry_back;
pub mod config_export;
pub mod copy;
pub mod history_mapping;
pub mod probe;
pub mod schema;
pub mod selection;
pub mod tables;
pub mod transfer;
pub mod transform;
pub mod verify;
pub mod window;
