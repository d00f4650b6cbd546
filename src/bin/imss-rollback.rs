//! `imss-rollback`: puts a server that was upgraded to 9.1 back on 7.1.
//! Its command line and what it needs are in `cli::args`.

use std::process::ExitCode;

use imss_upgrade::cli::{self, args::RollbackCli};

fn main() -> ExitCode {
    let cli: RollbackCli = cli::parse();
    let profile = cli.profile();
    cli::execute(
        profile.identifier,
        profile.stderr,
        Some(profile.work),
        move || cli::imss_rollback(cli, profile),
    )
}
