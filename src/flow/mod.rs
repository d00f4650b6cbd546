//! The upgrade flow, in rooms by lifetime: [`upgrade`] (preflight, the
//! steps, run, rollback, recover), [`after`] (the transfer, compression,
//! finalize) and [`package`] (what the rpm scriptlets decide), over what
//! they share: the context, the layout of places, the step journal and
//! the lock.

pub mod after;
pub mod clusters;
pub mod context;
pub mod gate;
pub mod journal;
pub mod layout;
pub mod lock;
pub mod package;
pub mod upgrade;
