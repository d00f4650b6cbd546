//! Step 5, switch: the 9.1 program tree from the package's payload takes
//! the place of the 7.1 one at `/opt/trend/imss`, with a 9.1 `odbc.ini`
//! (the password value carried byte for byte, re-encoded only where
//! psqlODBC would not read it as the database's password) and `imss.ini` (9.1, build 1195,
//! the same components and ports), and the 9.1 services start on the
//! PostgreSQL 15 cluster that the migrate step left running. The step is
//! done when the 9.1 scanner accepts a test mail and its policy event is in
//! PostgreSQL 15: mail downtime ends here.
//!
//! The new tree is staged beside the old one and swapped in with two
//! renames, so the program tree is never half-written.
//!
//! Where systemd manages the server, 9.1 runs as units, with the bundled
//! BIND on ports that collide with no DNS server already on the host and
//! the EUQ units where 7.1 used EUQ ([`services`], [`bundled_bind`]).
//!
//! May touch: `/opt/trend/imss` (replaced; the 7.1 tree is in the snapshot),
//! its two staging siblings, the 9.1 services and units, the bundled
//! BIND's working directory.

mod bundled_bind;
mod services;

pub use bundled_bind::{BindChoice, load_choice as bind_choice};
pub use services::Wait;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, ensure};

use crate::files::imss_ini::{ProductInfo, imss_ini_91};
use crate::files::ini::IniFile;
use crate::files::odbc_ini::DbSettings;
use crate::files::odbc_password::ReadingKind;
use crate::flow::context::Context;
use crate::flow::journal::{StepJournal, Undo};
use crate::flow::layout::{PROGRAM_REMOVING_DIR, PROGRAM_REPLACED_DIR, PROGRAM_STAGING_DIR};
use crate::flow::upgrade::health;
use crate::snapshot::{self, tree_move};
use crate::support::constants::{DATABASE_HOST, IMSS_INI, ODBC_INI, PROGRAM_DIR, TARGET_VERSION};
use crate::support::fsutil;
use crate::support::no_follow;
use crate::system::imssctl::Action;
use crate::system::systemd;

/// The section of the 9.1 `imss.ini` naming the DNS server the scanner
/// asks: the bundled BIND.
const DNS_SECTION: &str = "dns";

/// The control script, inside a program tree.
const CONTROL_SCRIPT: &str = "script/imssctl.sh";

/// Lays down the 9.1 tree, starts 9.1 and checks that it takes mail.
pub async fn run(ctx: &Context, journal: &mut StepJournal) -> Result<()> {
    let created = services::paths_to_create(ctx)?;
    journal.note_undo(Undo::RestoreProgramTree {
        staging: PathBuf::from(PROGRAM_STAGING_DIR),
        replaced: PathBuf::from(PROGRAM_REPLACED_DIR),
        created,
    })?;
    let bind = ctx.unblock(stage_tree).await?;
    crate::fail_point!("switch-staged");
    ctx.unblock(swap_in).await?;
    crate::fail_point!("switch-swapped");
    ctx.unblock(bundled_bind::check).await?;
    start_91(ctx, Wait::UntilUp).await?;
    crate::fail_point!("switch-health-check");
    if systemd::manages(&ctx.root) {
        // The bundled BIND answers, and the scanner resolves through it.
        let bind = std::sync::Arc::new(bind);
        let proof = bind.clone();
        let before = ctx
            .unblock(move |ctx| {
                bundled_bind::prove_running(ctx, &proof)?;
                bundled_bind::queries_so_far(ctx)
            })
            .await?;
        health::check_91_takes_mail(ctx, "switch").await?;
        ctx.unblock(move |ctx| bundled_bind::check_scanner_resolved(ctx, before, &bind))
            .await?;
    } else {
        health::check_91_takes_mail(ctx, "switch").await?;
    }
    // The 9.1 tree (copied by `cp`, never synced) is on disk before the
    // 7.1 tree goes: past this step a power loss is settled by starting
    // 9.1 from it. Synced once mail flows again, so that the downtime does
    // not wait for it.
    let live = live_program_tree(ctx)?;
    ctx.unblock(move |_| fsutil::sync_tree(&live)).await?;
    // Renamed before it is deleted: a tree under the first name is whole,
    // and only a whole tree is ever renamed back.
    let removing = ctx.root.resolve_parent(PROGRAM_REMOVING_DIR)?;
    fsutil::rename_durably(&ctx.root.resolve_parent(PROGRAM_REPLACED_DIR)?, &removing)?;
    crate::fail_point!("switch-71-tree-removing");
    ctx.unblock(move |_| fsutil::remove_tree_if_present(&removing))
        .await
}

/// Starts the 9.1 services and database of the tree in place (those not
/// running yet): the switch's start, and recovery's after a power loss.
pub async fn start_91(ctx: &Context, wait: Wait) -> Result<()> {
    services::start(ctx, wait).await.map(drop)
}

/// Copies the payload to the staging directory and writes its ini files
/// and the bundled BIND's configuration; returns the BIND's ports.
fn stage_tree(ctx: &Context) -> Result<BindChoice> {
    let payload = &ctx.payload_dir;
    ensure!(
        payload.join(CONTROL_SCRIPT).is_file(),
        "{} is not a 9.1 program tree ({CONTROL_SCRIPT} is missing): reinstall the upgrade package",
        payload.display()
    );
    let staging = ctx.root.resolve_parent(PROGRAM_STAGING_DIR)?;
    fsutil::remove_tree_if_present(&staging)?;
    tree_move::copy_tree(payload, &staging)?;
    // The payload directory's own mode (a private temporary directory, say)
    // is not the program tree's, which the services' account must enter.
    no_follow::open_dir(&staging)?.set_owner_and_mode(0o755, None)?;
    let config_dir = staging.join("config");
    if !config_dir.exists() {
        fsutil::create_dir_with_mode(&config_dir, 0o755)?;
    }

    let bind = bundled_bind::configure(ctx, &staging)?;
    let imss_71 = IniFile::load(&ctx.root.resolve(IMSS_INI)?)?;
    let imss_path = config_dir.join(file_name(IMSS_INI));
    let mut imss_91 = imss_ini_91(&imss_71, &imss_path)?;
    // The scanner resolves through the bundled BIND.
    imss_91.set(DNS_SECTION, "server", DATABASE_HOST)?;
    imss_91.set(DNS_SECTION, "port", &bind.dns_port.to_string())?;
    imss_91.save(&imss_path, 0o644, None)?;

    let settings = ctx.database()?;
    let odbc_path = config_dir.join(file_name(ODBC_INI));
    // The services read it as the imss group; nobody else may.
    let group = ctx.service_user()?.gid;
    settings
        .odbc_ini_91(&odbc_path)?
        .save(&odbc_path, 0o640, Some((0, group)))?;
    let written = DbSettings::load_from(&odbc_path)?;
    ensure!(
        written.password == settings.password && written.password_reading == ReadingKind::Decoded,
        "the 9.1 odbc.ini at {} does not read back the 7.1 password as psqlODBC reads it: nothing was \
         switched; report this",
        odbc_path.display()
    );
    Ok(bind)
}

fn file_name(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}

/// Puts the staged tree at `/opt/trend/imss`, the 7.1 tree aside.
fn swap_in(ctx: &Context) -> Result<()> {
    let live = live_program_tree(ctx)?;
    let staging = ctx.root.resolve_parent(PROGRAM_STAGING_DIR)?;
    let replaced = ctx.root.resolve_parent(PROGRAM_REPLACED_DIR)?;
    fsutil::rename_durably(&live, &replaced)?;
    fsutil::rename_durably(&staging, &live)
}

/// Where the program tree itself is, the swap's and its undo's alike:
/// through a link at `/opt/trend/imss` (an administrator's, which root
/// owns: [`crate::support::root::Root::resolve`] follows no other), so that
/// the link stays and the tree behind it is swapped.
fn live_program_tree(ctx: &Context) -> Result<PathBuf> {
    Ok(ctx.root.resolve(PROGRAM_DIR)?)
}

/// Stops 9.1 if it was started, and puts the 7.1 program tree back,
/// whatever stage the switch reached: the tree the swap set aside is
/// renamed back when it is there (untouched, with its extended attributes,
/// capabilities, ACLs and hard links, and whether or not the archive still
/// reads); only once it is gone (the switch completed) is the tree
/// restored from the snapshot, verified first.
pub async fn undo(
    ctx: &Context,
    staging: &Path,
    replaced: &Path,
    created: &[PathBuf],
    snapshot: Option<&snapshot::Pin>,
) -> Result<()> {
    let (staging, replaced) = (staging.to_path_buf(), replaced.to_path_buf());
    let created = created.to_vec();
    let snapshot = snapshot.cloned();
    ctx.unblock(move |ctx| {
        let live = live_program_tree(ctx)?;
        if systemd::manages(&ctx.root) {
            services::stop_and_remove(ctx, &created)?;
        } else {
            if live.join(CONTROL_SCRIPT).is_file()
                && ProductInfo::load(&ctx.root).is_ok_and(|p| p.version == TARGET_VERSION)
                && let Err(err) = health::control_services(ctx, Action::Stop)
            {
                // The migrate step's undo stops the cluster itself; a
                // service left running shows when 7.1 starts.
                tracing::warn!("stopping 9.1 before the rollback: {err:#}");
            }
            services::stop_and_remove(ctx, &created)?;
        }
        crate::fail_point!("undo-switch-91-stopped");
        let staging = ctx.root.resolve_parent(&staging)?;
        let replaced = ctx.root.resolve_parent(&replaced)?;
        fsutil::remove_tree_if_present(&staging)?;
        fsutil::remove_tree_if_present(&ctx.root.resolve_parent(PROGRAM_REMOVING_DIR)?)?;
        if replaced.exists() {
            // Two renames put 7.1 back before anything is deleted; the 9.1
            // tree goes last, from where the switch staged it.
            if std::fs::symlink_metadata(&live).is_ok() {
                fsutil::rename_durably(&live, &staging)?;
            }
            fsutil::rename_durably(&replaced, &live)?;
            fsutil::remove_tree_if_present(&staging)?;
        } else {
            let pin = snapshot.as_ref().context(
                "the 7.1 program tree is gone and the upgrade journal records no snapshot to \
                 restore it from: restore /opt/trend/imss from your own backup, then run this again",
            )?;
            snapshot::restore(&ctx.root, &ctx.layout.backup_dir()?, pin)?;
        }
        Ok(())
    })
    .await
}
