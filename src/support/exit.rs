//! Exit codes: part of the interface, documented in `--help` and the README.

/// Success: the command did what was asked (for preflight: ready to upgrade).
pub const OK: u8 = 0;
/// The command itself failed; the message says what and what to do.
pub const FAILED: u8 = 1;
/// Preflight found inhibitors; nothing was changed.
pub const INHIBITED: u8 = 2;
/// The command line was wrong (clap's own code).
pub const USAGE: u8 = 64;

/// The text `--help` shows after the options.
pub const HELP: &str = "Exit codes:\n  0   success\n  1   failed (the message says what failed and what to do)\n  2   inhibited: preflight found a problem to fix first; nothing was changed\n  64  wrong command line";
