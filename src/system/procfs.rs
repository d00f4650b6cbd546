//! The processes of this machine, named here with the other external
//! things the upgrade looks at. `/proc` is read in one place,
//! [`crate::support::processes`], since the command runner needs it too
//! and may not import this layer.

pub use crate::support::processes::{
    Process, boot_id, in_group, is_alive, processes, program_name, working_in,
};
