//! The product's own files: `odbc.ini` and `imss.ini`, read and rewritten
//! verbatim, the payload's list of files, and the systemd units. May use [`crate::support`]
//! only.

pub mod imss_ini;
pub mod ini;
pub mod odbc_ini;
pub mod odbc_password;
pub mod payload_list;
pub mod units;
