//! The work after an upgrade ended on 9.1: the background transfer of
//! older history, the backup's compression and `finalize`.

pub mod compress;
pub mod finalize;
pub mod transfer;
