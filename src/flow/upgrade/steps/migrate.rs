//! Step 4, migrate: the 9.1 cluster that the presync made ready takes the
//! 7.1 cluster's place (same address, port and password), PostgreSQL 10
//! starts read-only from the backup directory, the 7.1 configuration is
//! exported to `imsx_config.dat` and imported, and the rest of the last 24
//! hours is copied and transformed: the quarantine and archive records,
//! and the policy events the presync did not see. Checksums of every
//! selection, and the window's policy events counted per block of ids,
//! must match before the step is done. The 9.1 cluster is left running for
//! the switch; the 7.1 one is stopped again. Older history is left to the
//! background transfer.
//!
//! May touch: `/var/imss/pgdata` (the 9.1 cluster moved there; removed on
//! undo), the backup directory (`imsx_config.dat`; the 7.1 cluster is only
//! read, started so that it writes nothing of the database there:
//! [`crate::flow::clusters::start_backup_71_read_only`]).

use std::path::Path;

use anyhow::{Context as _, Result};
use chrono::NaiveDateTime;

use crate::files::imss_ini::ProductInfo;
use crate::flow::context::Context;
use crate::flow::journal::{StepJournal, Undo};
use crate::flow::layout::USED_91_IDS_FILE;
use crate::migration::copy::{WindowCounts, copy_selection_to_staging};
use crate::migration::schema::clear_staging_history;
use crate::migration::selection::{Filter, Selection, config_selections, window_cutoff};
use crate::migration::tables::Table71;
use crate::migration::transform::{IdFloors, set_id_floors, source_id_floors, transform_history};
use crate::migration::verify::{Verified, verify};
use crate::migration::window::{
    EventWindow, PresyncMark, check_window_events, missing_window_events,
};
use crate::migration::{carry_back, config_export};
use crate::support::fsutil::{self, atomic_write};
use crate::support::no_follow;
use crate::system::pg::{self, Cluster, StopMode};

/// What the migrate step moved, for the report.
#[derive(Debug, Clone)]
pub struct MigrateReport {
    /// Rows of the last 24 hours copied per history table.
    pub window: WindowCounts,
    /// Every selection verified, with its checksum.
    pub verified: Vec<Verified>,
}

/// Moves the staged 9.1 cluster into place and brings it up to date.
pub async fn run(ctx: &Context, journal: &mut StepJournal) -> Result<MigrateReport> {
    let old = crate::flow::clusters::backup_71(ctx)?;
    let new = crate::flow::clusters::target_91(ctx)?;
    let staged = crate::flow::clusters::staged_91(ctx)?;
    journal.note_undo(Undo::RemoveTargetCluster {
        data_dir: ctx.layout.data_dir_in_place()?,
    })?;
    let (opened, placed) = (old.clone(), new.clone());
    ctx.unblock(move |ctx| {
        crate::flow::clusters::open_backup_to(ctx, &opened)?;
        // The place is empty since the snapshot moved 7.1's away; a link
        // the service account put there meanwhile goes (a directory is not
        // renamed over a link).
        no_follow::remove_planted_link(&placed.data_dir)?;
        fsutil::rename_durably(&staged.data_dir, &placed.data_dir)?;
        placed.start()?;
        crate::flow::clusters::start_backup_71_read_only(&opened)
    })
    .await?;
    let result = load_target(ctx, &old, &new, journal.started_at).await;
    ctx.unblock(move |_| crate::flow::clusters::stop_backup_71(&old))
        .await?;
    result
}

async fn load_target(
    ctx: &Context,
    old: &Cluster,
    new: &Cluster,
    started_at: chrono::DateTime<chrono::Utc>,
) -> Result<MigrateReport> {
    let settings = ctx.database()?;
    let source =
        pg::connect(&old.private_socket_settings(&settings.database, &settings.user)).await?;
    let mut target =
        pg::connect(&new.socket_settings(&settings.database, &settings.user, &settings.password))
            .await?;

    let product = ProductInfo::load(&ctx.root)?;
    let export = config_export::export(&source, &product).await?;
    config_export::write(&ctx.layout.config_export()?, &export)?;
    config_export::import(&mut target, &export).await?;
    crate::fail_point!("migrate-config-imported");

    // Quarantine and archive records whole; of the policy events, those the
    // presync did not see.
    let cutoff = window_cutoff(started_at);
    clear_staging_history(&target).await?;
    let mut selections: Vec<Selection> = [Table71::Quarantine, Table71::Archive]
        .into_iter()
        .map(|table| Selection::new(table, Filter::Since(cutoff)))
        .collect::<Result<_>>()?;
    let presynced = PresyncMark::read(&target).await?;
    let events = EventWindow {
        cutoff,
        above: presynced.low_water,
    };
    let missing = missing_window_events(&source, &target, &events).await?;
    selections.extend(missing.selections.iter().cloned());
    let mut window = WindowCounts::default();
    for selection in &selections {
        let rows = copy_selection_to_staging(&source, &target, selection).await?;
        match selection.table() {
            Table71::Quarantine => window.quarantine = rows,
            Table71::Archive => window.archive = rows,
            _ => {}
        }
    }
    crate::fail_point!("migrate-window-copied");
    let added = transform_history(&target).await?;
    window.policy_events = presynced.policy_events as u64 + added.policy_events;
    let floors = source_id_floors(&source).await?.max(earlier_91_ids(ctx)?);
    set_id_floors(&target, &floors).await?;

    selections.extend(config_selections());
    let verified = verify(&source, &target, &selections).await?;
    check_window_events(&target, &events, &missing).await?;
    clear_staging_history(&target).await?;
    Ok(MigrateReport { window, verified })
}

/// The highest ids the 9.1 of every rolled-back attempt handed out.
fn earlier_91_ids(ctx: &Context) -> Result<IdFloors> {
    let mut floors = IdFloors::default();
    for file in ctx.layout.used_91_ids_files()? {
        match std::fs::read(&file) {
            Ok(bytes) => {
                let used: IdFloors = serde_json::from_slice(&bytes)
                    .with_context(|| format!("reading {}", file.display()))?;
                floors = floors.max(used);
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("reading {}", file.display())),
        }
    }
    Ok(floors)
}

/// Stops the 7.1 cluster in the backup if it was started, then stops and
/// removes the 9.1 cluster in 7.1's place. With `carry_back` (the start of
/// the window the migration took), 9.1 took mail: what it processed is
/// carried back into the 7.1 database in the backup first, and verified,
/// and the 9.1 cluster goes only after that.
pub async fn undo(ctx: &Context, data_dir: &Path, carry_back: Option<NaiveDateTime>) -> Result<()> {
    let place = ctx.root.resolve_parent(data_dir)?;
    // By data directory alone: neither PostgreSQL's programs are needed
    // unless there is mail to carry back.
    ctx.unblock({
        let place = place.clone();
        move |ctx| {
            pg::stop_server(
                &ctx.root.resolve(ctx.layout.moved_71_data_dir())?,
                StopMode::Immediate,
            )?;
            pg::stop_server(&place, StopMode::Fast).map(drop)
        }
    })
    .await?;
    let has_91 = std::fs::read_to_string(place.join("PG_VERSION")).is_ok_and(|v| v.trim() == "15");
    if let Some(cutoff) = carry_back
        && has_91
    {
        carry_mail_back(ctx, &place, cutoff).await?;
    }
    ctx.unblock(move |_| pg::remove_cluster(&place)).await
}

/// Starts both clusters where only the upgrade reaches them (the 9.1 one
/// where it is, the 7.1 one in the backup, each on a socket in the backup
/// directory), carries 9.1's mail back into 7.1, verifies it, and stops
/// both cleanly.
///
/// Neither start asks for a password ([`Cluster::start_private_with`]):
/// `sa`'s may have been changed on 9.1 since the upgrade (in the database
/// and in 9.1's `odbc.ini`, as 9.1's console does) while the 7.1 cluster
/// keeps the old one, and the settings this run read come from whichever
/// `odbc.ini` was in place first, 9.1's or the 7.1 one the rollback put
/// back. One password cannot open both.
async fn carry_mail_back(ctx: &Context, place: &Path, cutoff: NaiveDateTime) -> Result<()> {
    let old = crate::flow::clusters::backup_71(ctx)?;
    let new = Cluster {
        data_dir: place.to_path_buf(),
        ..crate::flow::clusters::staged_91(ctx)?
    };
    let (opened, started) = (old.clone(), new.clone());
    ctx.unblock(move |ctx| {
        crate::flow::clusters::open_backup_to(ctx, &opened)?;
        crate::flow::clusters::open_backup_to(ctx, &started)?;
        started.start_private_with(&[])?;
        opened.start_private_with(&[])
    })
    .await?;
    let carried = async {
        let settings = ctx.database()?;
        let client_71 =
            pg::connect(&old.private_socket_settings(&settings.database, &settings.user)).await?;
        let client_91 =
            pg::connect(&new.private_socket_settings(&settings.database, &settings.user)).await?;
        // Its message files stay on disk: no later attempt may reuse the
        // ids that name them.
        let used = carry_back::used_91_ids(&client_91).await?;
        atomic_write(
            &ctx.layout.backup_dir()?.join(USED_91_IDS_FILE),
            &serde_json::to_vec(&used)?,
            0o600,
        )?;
        let before = carry_back::ids_before(&client_71, &client_91).await?;
        crate::fail_point!("carry-back-begun");
        let carry = |table| carry_back::carry_rows(&client_71, &client_91, &before, table);
        let policy_events = carry(Table71::PolicyEvent).await?;
        crate::fail_point!("carry-back-events-carried");
        let quarantine = carry(Table71::Quarantine).await?;
        let archive = carry(Table71::Archive).await?;
        let (released, deleted) =
            carry_back::apply_91_changes(&client_71, &client_91, &before, cutoff).await?;
        crate::fail_point!("carry-back-applied");
        carry_back::verify_carried_back(&client_71, &client_91, &before).await?;
        Ok::<_, anyhow::Error>(carry_back::CarriedBack {
            policy_events,
            quarantine,
            archive,
            released,
            deleted,
        })
    }
    .await;
    ctx.unblock(move |_| {
        old.stop(StopMode::Fast)?;
        new.stop(StopMode::Fast)
    })
    .await?;
    let carried = carried.context("carrying the mail 9.1 processed back to 7.1")?;
    tracing::info!(
        imss_policy_events = carried.policy_events,
        imss_quarantine = carried.quarantine,
        imss_archive = carried.archive,
        imss_released = carried.released,
        imss_deleted = carried.deleted,
        "the mail 9.1 processed is back in 7.1: {} policy events, {} quarantine and {} archive records; \
         {} releases and {} deletions applied",
        carried.policy_events,
        carried.quarantine,
        carried.archive,
        carried.released,
        carried.deleted
    );
    Ok(())
}
