//! `imss-upgrade status`: what is installed, as the vendor's step 3 and
//! step 5 screens show it (components; database with the password masked).

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

use std::io::IsTerminal;

use crate::flow::after::transfer::progress::TransferStatus;
use crate::flow::context::Context;
use crate::flow::journal::{RunState, Step, StepJournal, StepStatus};

use crate::files::imss_ini::ProductInfo;
use crate::files::odbc_ini::{DatabaseView, DbSettings};
use crate::flow::upgrade::steps::switch::{self, BindChoice};
use crate::migration::probe::{self, InstalledComponent};
use crate::support::exit;
use crate::support::root::Root;
use crate::system::pg;

use super::render;

/// Where the upgrade is, from its step journal: what `status` shows
/// while the upgrade runs (under dnf, whose scriptlets show nothing live)
/// and after it.
#[derive(Debug, Serialize)]
pub struct UpgradeProgress {
    /// The run's state.
    pub state: RunState,
    /// When the run began.
    pub started_at: DateTime<Utc>,
    /// The step last begun, or being undone.
    pub step: Option<Step>,
    /// Where that step is.
    pub step_status: Option<StepStatus>,
    /// Its number among the steps, from 1.
    pub step_number: Option<usize>,
    /// How many steps a run has.
    pub steps: usize,
    /// When that step last changed.
    pub step_since: Option<DateTime<Utc>>,
    /// Why the run failed, when it did.
    pub failure: Option<String>,
}

impl UpgradeProgress {
    /// From the step journal under `root`, if there is one.
    pub fn load(root: &Root) -> Result<Option<Self>> {
        let journal =
            StepJournal::load(&crate::flow::layout::Layout::new(root.clone()).state_dir()?)?;
        Ok(journal.map(|journal| {
            let last = journal.steps.last();
            Self {
                state: journal.state,
                started_at: journal.started_at,
                step: last.map(|record| record.step),
                step_status: last.map(|record| record.status),
                step_number: last
                    .and_then(|record| Step::ALL.iter().position(|step| *step == record.step))
                    .map(|index| index + 1),
                steps: Step::ALL.len(),
                step_since: last.map(|record| record.changed_at),
                failure: journal.failure,
            }
        }))
    }

    /// Where the step last begun is: "step 4 of 6: migrate (...), running
    /// for 12 s".
    pub fn step_line(&self) -> Option<String> {
        let (step, status, number, since) = (
            self.step?,
            self.step_status?,
            self.step_number?,
            self.step_since?,
        );
        let seconds = (Utc::now() - since).num_seconds().max(0);
        Some(format!(
            "step {number} of {}: {} ({}), {} for {seconds} s",
            self.steps,
            step.name(),
            crate::flow::upgrade::runbook::entry(step).title,
            status.describe(),
        ))
    }

    /// Where the upgrade is, for people.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "Upgrade to 9.1: {} (begun {})",
            self.state.describe(),
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
        if let Some(line) = self.step_line() {
            text.push_str(&format!("\n    {line}"));
        }
        if let Some(failure) = &self.failure {
            text.push_str(&format!("\n    failure: {failure}"));
        }
        text
    }
}

/// What `status` reports.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The upgrade, when one was run here.
    pub upgrade: Option<UpgradeProgress>,
    /// Product version from imss.ini.
    pub version: String,
    /// Build from imss.ini.
    pub build: u32,
    /// Installed components, by display name.
    pub components: Vec<&'static str>,
    /// The admin database.
    pub database: DatabaseView,
    /// Pattern files and engines with their versions, from the database
    /// (9.1 keeps 7.1's until its first update); absent when the database
    /// could not be read.
    pub pattern_and_engine_versions: Option<Vec<InstalledComponent>>,
    /// The bundled BIND's ports and why, once 9.1 is in place.
    pub bundled_bind: Option<BindChoice>,
    /// Why they could not be read, and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern_and_engine_versions_error: Option<String>,
    /// The background transfer of the older history, after an upgrade.
    pub transfer: Option<TransferStatus>,
}

/// Prints the status of the server under `root`.
pub async fn run(root: &Root, json: bool) -> Result<u8> {
    let upgrade = UpgradeProgress::load(root)?;
    let working = upgrade.as_ref().is_some_and(|progress| {
        matches!(progress.state, RunState::InProgress | RunState::RollingBack)
    });
    let product = match ProductInfo::load(root) {
        Ok(product) => product,
        // Mid-switch the program tree is being replaced: its files come
        // and go, and where the upgrade is tells what the server runs.
        Err(err) if working => {
            let progress = upgrade.expect("an upgrade is working");
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&WorkingStatus { upgrade: progress })?
                );
            } else {
                println!("{}", progress.to_text());
                println!(
                    "
The installed version is not readable while the upgrade works: {err:#}"
                );
            }
            return Ok(exit::OK);
        }
        Err(err) => return Err(err),
    };
    let database = DbSettings::load(root)?;
    let versions = installed_components(&database, &product.version).await;
    let status = Status {
        upgrade,
        version: product.version.clone(),
        build: product.build,
        components: product.component_names(),
        database: database.view(),
        pattern_and_engine_versions: versions.as_ref().ok().cloned(),
        bundled_bind: switch::bind_choice(root)?,
        pattern_and_engine_versions_error: versions.as_ref().err().map(|err| format!("{err:#}")),
        transfer: TransferStatus::load(&Context::new(root.clone()))?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        if let Some(progress) = &status.upgrade {
            println!("{}\n", progress.to_text());
        }
        if let Some(transfer) = &status.transfer {
            println!(
                "{}\n",
                render::transfer(transfer, std::io::stdout().is_terminal())
            );
        }
        println!("IMSS {} build {}", status.version, status.build);
        println!("\nInstalled components:");
        for name in &status.components {
            println!("    {name}");
        }
        print!("\n{}", status.database);
        if let Some(bind) = &status.bundled_bind {
            println!(
                "\nBundled BIND: DNS port {}, rndc port {} ({})",
                bind.dns_port, bind.rndc_port, bind.reason
            );
        }
        println!("\nPattern files and engines:");
        match (
            &status.pattern_and_engine_versions,
            &status.pattern_and_engine_versions_error,
        ) {
            (Some(list), _) => {
                for item in list {
                    println!("    {:<32} {}", item.component, item.version);
                }
            }
            (None, error) => println!("    not read: {}", error.as_deref().unwrap_or_default()),
        }
    }
    Ok(exit::OK)
}

/// What `status --json` prints while the program tree is being replaced.
#[derive(Serialize)]
struct WorkingStatus {
    upgrade: UpgradeProgress,
}

/// The versions the database lists, or why they could not be read.
async fn installed_components(
    database: &DbSettings,
    version: &str,
) -> Result<Vec<InstalledComponent>> {
    let (client, _) = pg::connect_as_configured(database).await.map_err(|err| {
        anyhow::Error::new(err).context(format!(
            "the admin database at {}:{} does not answer: start IMSS (imssctl.sh start) and ask again",
            database.host, database.port
        ))
    })?;
    probe::installed_components(&client, version).await
}
