//! `imss-upgrade`: upgrades an IMSS 7.1 server to 9.1 in place. The
//! commands and what each needs are in `cli::args`.

use std::process::ExitCode;

use imss_upgrade::cli::{self, args::UpgradeCli};

fn main() -> ExitCode {
    let cli: UpgradeCli = cli::parse();
    let profile = cli.profile();
    cli::execute(
        profile.identifier,
        profile.stderr,
        Some(profile.work),
        move || cli::imss_upgrade(cli, profile),
    )
}
