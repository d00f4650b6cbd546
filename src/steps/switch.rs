//! Step 5, switch: the 9.1 program tree from the package's payload takes
//! the place of the 7.1 one at `/opt/trend/imss`, with a 9.1 `odbc.ini`
//! (the password carried byte for byte) and `imss.ini` (9.1, build 1195,
//! the same components and ports), and the 9.1 services start on the
//! PostgreSQL 15 cluster that the migrate step left running. The step is
//! done when the 9.1 scanner accepts a test mail and its policy event is in
//! PostgreSQL 15: mail downtime ends here.
//!
//! The new tree is staged beside the old one and swapped in with two
//! renames, so the program tree is never half-written.
//!
//! May touch: `/opt/trend/imss` (replaced; the 7.1 tree is in the snapshot),
//! its two staging siblings, the 9.1 services.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail, ensure};

use crate::cmd::Cmd;
use crate::config::{
    DbSettings, IMSS_COMPONENTS_SECTION, IMSS_GENERAL_SECTION, ODBC_91, ODBC_INI_91_TEMPLATE,
    ProductInfo,
};
use crate::constants::{
    BACKUP_DIR, IMSS_INI, ODBC_INI, PROGRAM_DIR, SERVICE_USER, TARGET_BUILD, TARGET_VERSION,
};
use crate::context::Context;
use crate::imssctl::{self, Action};
use crate::ini::IniFile;
use crate::snapshot;
use crate::step_journal::{Step, StepJournal, StepRecord};
use crate::user::ServiceUser;

/// Where the 9.1 tree is put together before it is swapped in.
pub const STAGING_DIR: &str = "/opt/trend/imss.91-staging";

/// Where the 7.1 tree waits between the swap and its removal.
pub const REPLACED_DIR: &str = "/opt/trend/imss.71-replaced";

/// The 9.1 `imss.ini` before version, build and the carried sections.
const IMSS_INI_91_TEMPLATE: &str = "\
; IMSS 9.1 product settings
[general]
product = InterScan Messaging Security Suite
version =
build =
";

/// `imss.ini` sections that 9.1 keeps as 7.1 had them.
const CARRIED_IMSS_SECTIONS: &[&str] = &[IMSS_COMPONENTS_SECTION, "ports"];

/// Lays down the 9.1 tree, starts 9.1 and checks that it takes mail.
pub async fn run(ctx: &Context, journal: &mut StepJournal) -> Result<()> {
    let settings = DbSettings::load(&ctx.root)?;
    let imss_71 = IniFile::load(&ctx.root.resolve(IMSS_INI)?)?;
    journal.note_undo(Step::Switch, |undo| {
        undo.created = vec![PathBuf::from(STAGING_DIR), PathBuf::from(REPLACED_DIR)];
        undo.restore_snapshot = true;
    })?;
    stage_tree(ctx, &settings, &imss_71)?;
    crate::fail_point!("switch-staged");
    swap_in(ctx)?;
    crate::fail_point!("switch-swapped");
    imssctl::control(&ctx.root, Action::Start)?;
    crate::fail_point!("switch-health-check");
    check_health(ctx).await?;
    super::remove_if_present(&ctx.root.resolve_parent(REPLACED_DIR)?)
}

/// Copies the payload to the staging directory and writes its ini files.
fn stage_tree(ctx: &Context, settings: &DbSettings, imss_71: &IniFile) -> Result<()> {
    let payload = &ctx.payload_dir;
    ensure!(
        payload.join("script/imssctl.sh").is_file(),
        "{} is not a 9.1 program tree (script/imssctl.sh is missing): reinstall the upgrade package",
        payload.display()
    );
    let staging = ctx.root.resolve_parent(STAGING_DIR)?;
    super::remove_if_present(&staging)?;
    Cmd::new("cp")
        .args(["-a", "--reflink=auto", "--"])
        .arg(payload)
        .arg(&staging)
        .run()
        .with_context(|| {
            format!(
                "copying the 9.1 program tree from {} to {}: check the free space on {}",
                payload.display(),
                staging.display(),
                staging.parent().unwrap_or(&staging).display()
            )
        })?;
    let config_dir = staging.join("config");
    std::fs::create_dir_all(&config_dir)
        .with_context(|| format!("creating {}", config_dir.display()))?;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755))?;

    let imss_path = config_dir.join(file_name(IMSS_INI));
    let mut imss = IniFile::parse(IMSS_INI_91_TEMPLATE, &imss_path)?;
    imss.set(IMSS_GENERAL_SECTION, "version", TARGET_VERSION)?;
    imss.set(IMSS_GENERAL_SECTION, "build", &TARGET_BUILD.to_string())?;
    for section in CARRIED_IMSS_SECTIONS {
        for (key, value) in imss_71.entries(section) {
            imss.set(section, &key, &value)?;
        }
    }
    imss.save(&imss_path, 0o644)?;

    let odbc_path = config_dir.join(file_name(ODBC_INI));
    let mut odbc = IniFile::parse(ODBC_INI_91_TEMPLATE, &odbc_path)?;
    settings.store_as(&mut odbc, ODBC_91)?;
    odbc.save(&odbc_path, 0o640)?;
    // The services read it as the imss group; nobody else may.
    let owner = ServiceUser::lookup(&ctx.root, SERVICE_USER)?;
    std::os::unix::fs::chown(&odbc_path, Some(0), Some(owner.gid))
        .with_context(|| format!("giving {} to group {}", odbc_path.display(), owner.gid))?;
    let written = DbSettings::from_ini(&IniFile::load(&odbc_path)?)?;
    ensure!(
        written.password.expose() == settings.password.expose(),
        "the 9.1 odbc.ini at {} does not read back the 7.1 password: nothing was switched; report this",
        odbc_path.display()
    );
    Ok(())
}

fn file_name(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}

/// Puts the staged tree at `/opt/trend/imss`, the 7.1 tree aside.
fn swap_in(ctx: &Context) -> Result<()> {
    let live = ctx.root.resolve(PROGRAM_DIR)?;
    let staging = ctx.root.resolve_parent(STAGING_DIR)?;
    let replaced = ctx.root.resolve_parent(REPLACED_DIR)?;
    std::fs::rename(&live, &replaced)
        .with_context(|| format!("moving {} to {}", live.display(), replaced.display()))?;
    std::fs::rename(&staging, &live)
        .with_context(|| format!("moving {} to {}", staging.display(), live.display()))?;
    crate::fsutil::sync_dir(live.parent().unwrap_or(&live))
}

/// The 9.1 scanner accepts a test mail, and its policy event is in the
/// 9.1 database.
pub(crate) async fn check_health(ctx: &Context) -> Result<()> {
    let message_id = super::send_health_mail(ctx, "switch")?;
    let settings = DbSettings::load(&ctx.root)?;
    let client = crate::pg::connect(&settings).await?;
    let found: i64 = client
        .query_one(
            "SELECT count(*) FROM policy_event WHERE message_id = $1",
            &[&message_id],
        )
        .await
        .context("looking up the health-check mail in the 9.1 database")?
        .get(0);
    if found != 1 {
        bail!(
            "the 9.1 scanner accepted the health-check mail {message_id} but PostgreSQL 15 has {found} \
             policy events for it: check the scanner's log under /var/imss/run"
        );
    }
    Ok(())
}

/// Stops 9.1 if it was started, and puts the 7.1 program tree back from the
/// snapshot (verified first), whatever stage the switch reached.
pub async fn undo(ctx: &Context, record: &StepRecord) -> Result<()> {
    let live = ctx.root.resolve_parent(PROGRAM_DIR)?;
    if live.join("script/imssctl.sh").is_file()
        && ProductInfo::load(&ctx.root).is_ok_and(|p| p.version == TARGET_VERSION)
        && let Err(err) = imssctl::control(&ctx.root, Action::Stop)
    {
        // The migrate step's undo stops the cluster itself; a service left
        // running shows when 7.1 starts.
        tracing::warn!("stopping 9.1 before the rollback: {err:#}");
    }
    for created in &record.undo.created {
        super::remove_if_present(&ctx.root.resolve_parent(created)?)?;
    }
    if record.undo.restore_snapshot {
        snapshot::restore(&ctx.root, &ctx.root.resolve(BACKUP_DIR)?)?;
    }
    Ok(())
}
