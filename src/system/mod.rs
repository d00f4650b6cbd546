//! One module per external thing the upgrade works with: PostgreSQL
//! servers and clients, the rpm database, the product's control script,
//! SMTP, the bundled BIND, socket listeners, `/proc` and systemd. Each knows its own
//! program's command line; nobody else builds one. May use
//! [`crate::support`] and [`crate::files`].

pub mod bind;
pub mod imssctl;
pub mod listeners;
pub mod pg;
pub mod procfs;
pub mod rpmdb;
pub mod smtp;
pub mod systemd;
