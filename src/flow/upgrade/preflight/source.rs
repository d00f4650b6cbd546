//! The installed product: version and build from `imss.ini` (seed item 1:
//! builds before 7.1 SP2 Patch 1 failed with "tool exited with code 13"),
//! an upgrade already under way, and the installed components and EUQ
//! state (the wizard's step 3 screen).

use anyhow::Result;

use super::{Facts, Finding, Severity};
use crate::files::imss_ini::ProductInfo;
use crate::flow::context::Context;
use crate::flow::journal::{RunState, StepJournal};
use crate::flow::layout::BACKUP_DIR;
use crate::support::constants::{IMSS_INI, MIN_SOURCE_BUILD, SOURCE_VERSION, TARGET_VERSION};

/// Version, build, and whether an upgrade is already in progress.
pub async fn check(ctx: &Context, _facts: &mut Facts, out: &mut Vec<Finding>) -> Result<()> {
    let backup = ctx.root.resolve_parent(BACKUP_DIR)?;
    let earlier = StepJournal::of(ctx);
    match earlier {
        Ok(Some(journal)) if journal.state == RunState::RolledBack => out.push(Finding::new(
            "earlier-attempt-rolled-back",
            Severity::Info,
            "An earlier upgrade attempt was rolled back",
            format!(
                "{} is the journal of a run that was rolled back{}",
                journal.path().display(),
                journal
                    .failure
                    .as_deref()
                    .map(|why| format!(" ({why})"))
                    .unwrap_or_default()
            ),
            "nothing to do: the next run keeps that backup beside the new one, \
             as imss_backup_71_to_91.rolled-back-<time>; delete it when no longer needed",
        )),
        Ok(None) if crate::flow::layout::backup::BackupDir::of(&ctx.layout).is_fresh()? => {}
        Ok(None) => out.push(Finding::new(
            "backup-dir-exists",
            Severity::Inhibitor,
            "A backup directory the upgrade did not make, or from an earlier attempt, exists",
            format!(
                "{} exists, and no upgrade journal names it (another account may have put it there)",
                backup.display()
            ),
            format!(
                "move {} to another file system or delete it, then run again",
                backup.display()
            ),
        )),
        Err(err) => out.push(Finding::new(
            "upgrade-state-unreadable",
            Severity::Inhibitor,
            "The upgrade's state cannot be trusted or read",
            format!("{err:#}"),
            "do as the message says, then run again",
        )),
        Ok(Some(journal)) => out.push(Finding::new(
            "upgrade-in-progress",
            Severity::Inhibitor,
            "An upgrade to 9.1 is in progress or not finalized",
            format!("{} is the journal of an earlier upgrade run", journal.path().display()),
            "run `imss-upgrade status` to see it; finish it with `imss-upgrade recover`, or revert with `imss-rollback`, \
             or once 9.1 runs well, `imss-upgrade finalize`",
        )),
    }

    let product = match ProductInfo::load(&ctx.root) {
        Ok(product) => product,
        Err(err) => {
            out.push(Finding::new(
                "source-not-found",
                Severity::Inhibitor,
                "No readable IMSS 7.1 installation",
                format!("{err:#}"),
                format!(
                    "check that IMSS 7.1 is installed under {} and that {IMSS_INI} is intact",
                    ctx.root.dir().display()
                ),
            ));
            return Ok(());
        }
    };
    let ini = ctx.root.resolve(IMSS_INI)?;
    if product.version == TARGET_VERSION {
        out.push(Finding::new(
            "source-already-upgraded",
            Severity::Inhibitor,
            "This server already runs IMSS 9.1",
            format!(
                "{} says version {} build {}",
                ini.display(),
                product.version,
                product.build
            ),
            "nothing to upgrade",
        ));
    } else if product.version != SOURCE_VERSION {
        out.push(Finding::new(
            "source-version-unsupported",
            Severity::Inhibitor,
            "Only IMSS 7.1 can be upgraded to 9.1 in place",
            format!("{} says version {}", ini.display(), product.version),
            "upgrade to 7.1 SP2 Patch 1 first, or install 9.1 on a fresh server and carry the settings over",
        ));
    } else if product.build < MIN_SOURCE_BUILD {
        out.push(Finding::new(
            "source-build-too-old",
            Severity::Inhibitor,
            "IMSS 7.1 is older than Service Pack 2 Patch 1",
            format!(
                "build {} found in {}; 9.1 needs 7.1 SP2 Patch 1 (build {MIN_SOURCE_BUILD}) or later",
                product.build,
                ini.display()
            ),
            format!("apply IMSS 7.1 Service Pack 2 Patch 1 (build {MIN_SOURCE_BUILD}), then run the upgrade again"),
        ));
    }
    Ok(())
}

/// The installed components and whether EUQ is in use, as the wizard's
/// step 3 screen listed them.
pub async fn check_components(
    ctx: &Context,
    facts: &mut Facts,
    out: &mut Vec<Finding>,
) -> Result<()> {
    let Ok(product) = ProductInfo::load(&ctx.root) else {
        // Reported by the source check already.
        return Ok(());
    };
    let names = product.component_names();
    out.push(Finding::new(
        "installed-components",
        Severity::Info,
        "IMSS 7.1 components and database installed on this machine",
        names.join("\n"),
        "",
    ));
    let euq_installed = product.components.contains(&"euq");
    let euq_enabled = facts.database.as_ref().and_then(|db| db.euq_enabled);
    let (id, found) = match (euq_installed, euq_enabled) {
        (false, _) => ("euq-not-installed", "the EUQ Service is not installed; 9.1 will not start EUQ units".to_string()),
        (true, Some(true)) => (
            "euq-enabled",
            "EUQ is enabled in 7.1: the upgrade enables and starts the 9.1 EUQ units, so the EUQ console stays available".to_string(),
        ),
        (true, Some(false)) => ("euq-disabled", "EUQ is installed but disabled in 7.1; it stays disabled in 9.1".to_string()),
        (true, None) => ("euq-unknown", "the EUQ setting could not be read from the database".to_string()),
    };
    out.push(Finding::new(
        id,
        Severity::Info,
        "End-user quarantine (EUQ)",
        found,
        "",
    ));
    Ok(())
}
