//! The operating system and the packages 9.1 needs (seed item 2: RHEL 5 is
//! not supported, and a missing package such as `wget` failed the wizard at
//! step 4).

use anyhow::Result;

use super::{Facts, Finding, Severity};
use crate::flow::context::Context;
use crate::support::constants::REQUIRED_PACKAGES;
use crate::system::rpmdb;

/// Red Hat Enterprise Linux and its rebuilds, by os-release `ID`.
const RHEL_FAMILY: &[&str] = &["rhel", "centos", "rocky", "almalinux", "ol", "scientific"];

/// The major releases 9.1 supports.
const SUPPORTED_MAJORS: &[u32] = &[7, 8, 9];

/// Which release the root holds: from `/etc/os-release`, else (RHEL 5 and 6
/// predate it) from `/etc/redhat-release`.
fn release(ctx: &Context) -> Result<Option<(String, String, u32)>> {
    let os_release = ctx.root.resolve("/etc/os-release")?;
    if let Ok(text) = std::fs::read_to_string(&os_release) {
        let field = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(&format!("{key}=")))
                .map(|v| v.trim().trim_matches('"').to_string())
        };
        let id = field("ID").unwrap_or_default();
        let pretty = field("PRETTY_NAME").unwrap_or_else(|| id.clone());
        let major = field("VERSION_ID")
            .and_then(|v| v.split('.').next().and_then(|m| m.parse().ok()))
            .unwrap_or(0);
        return Ok(Some((id, pretty, major)));
    }
    let redhat_release = ctx.root.resolve("/etc/redhat-release")?;
    if let Ok(text) = std::fs::read_to_string(&redhat_release) {
        let pretty = text.trim().to_string();
        let major = pretty
            .split_whitespace()
            .skip_while(|w| *w != "release")
            .nth(1)
            .and_then(|v| v.split('.').next().and_then(|m| m.parse().ok()))
            .unwrap_or(0);
        return Ok(Some(("rhel".to_string(), pretty, major)));
    }
    Ok(None)
}

/// RHEL 7 to 9 (and rebuilds) pass; 5 and 6 inhibit.
pub async fn check_os(ctx: &Context, _facts: &mut Facts, out: &mut Vec<Finding>) -> Result<()> {
    let migrate_instead = "install 9.1 on a fresh RHEL 8 or 9 server and carry the settings over: \
                           `imss-upgrade config export` here, `imss-upgrade config import` there";
    match release(ctx)? {
        None => out.push(Finding::new(
            "os-unknown",
            Severity::Warning,
            "The operating system release is unknown",
            "neither /etc/os-release nor /etc/redhat-release could be read under the root",
            "make sure this is Red Hat Enterprise Linux 7, 8 or 9",
        )),
        Some((id, pretty, major)) if RHEL_FAMILY.contains(&id.as_str()) => {
            if !SUPPORTED_MAJORS.contains(&major) {
                out.push(Finding::new(
                    "os-unsupported",
                    Severity::Inhibitor,
                    "IMSS 9.1 does not support this operating system release",
                    format!("{pretty} (release {major}); 9.1 supports releases 7, 8 and 9"),
                    migrate_instead,
                ));
            }
        }
        Some((_, pretty, _)) => out.push(Finding::new(
            "os-unknown",
            Severity::Warning,
            "The operating system is not Red Hat Enterprise Linux or a rebuild of it",
            pretty,
            "IMSS 9.1 is supported on Red Hat Enterprise Linux 7, 8 and 9 only",
        )),
    }
    Ok(())
}

/// Every package in [`REQUIRED_PACKAGES`] is provided by something installed.
pub async fn check_packages(
    ctx: &Context,
    _facts: &mut Facts,
    out: &mut Vec<Finding>,
) -> Result<()> {
    match rpmdb::missing_capabilities(&ctx.root, REQUIRED_PACKAGES) {
        Ok(missing) if missing.is_empty() => {}
        Ok(missing) => out.push(Finding::new(
            "packages-missing",
            Severity::Inhibitor,
            "Packages IMSS 9.1 depends on are not installed",
            format!("nothing installed provides: {}", missing.join(", ")),
            rpmdb::install_command(&missing),
        )),
        Err(err) => out.push(Finding::new(
            "rpmdb-unreadable",
            Severity::Inhibitor,
            "The rpm database could not be read",
            format!("{:#}", anyhow::Error::new(err)),
            "run preflight on the IMSS server itself (or with --root pointing at its root)",
        )),
    }
    Ok(())
}
