//! Step 1 of the flow: the pre-upgrade report. Every failure the vendor's
//! Q&A lists is looked for here, before anything changes, and reported like
//! Leapp's pre-upgrade report or `pg_upgrade --check`: findings with a
//! severity, what was found, and the exact fix.
//!
//! May touch: nothing but reads, and the report file
//! `/var/log/imss-upgrade/preflight.json` under the root.

mod database;
mod disk;
mod dns;
mod payload;
mod quiesce;
mod report;
mod source;
mod system;
mod targets;

use anyhow::{Context as _, Result};

pub use report::{CheckLine, Finding, Outcome, Report, SCHEMA_VERSION, Severity};

use crate::flow::context::Context;
use crate::support::fsutil::atomic_write;
use crate::support::logging::events;

/// What the checks learned that later checks (and the report) use.
#[derive(Debug, Default)]
struct Facts {
    database: Option<database::DatabaseInfo>,
}

/// One check: its line title, and the function that runs it.
type CheckFn = for<'a> fn(&'a Context, &'a mut Facts, &'a mut Vec<Finding>) -> CheckFuture<'a>;
type CheckFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>>;

/// The checks, in the order they run and print.
const CHECKS: &[(&str, &str, CheckFn)] = &[
    ("source", "source build", |c, f, out| {
        Box::pin(source::check(c, f, out))
    }),
    ("os", "operating system", |c, f, out| {
        Box::pin(system::check_os(c, f, out))
    }),
    ("packages", "required packages", |c, f, out| {
        Box::pin(system::check_packages(c, f, out))
    }),
    ("payload", "upgrade package payload", |c, f, out| {
        Box::pin(payload::check(c, f, out))
    }),
    ("database", "admin database", |c, f, out| {
        Box::pin(database::check(c, f, out))
    }),
    ("disk", "disk space", |c, f, out| {
        Box::pin(disk::check(c, f, out))
    }),
    ("components", "installed components", |c, f, out| {
        Box::pin(source::check_components(c, f, out))
    }),
    ("dns", "DNS ports", |c, f, out| {
        Box::pin(dns::check(c, f, out))
    }),
    ("targets", "files the upgrade creates", |c, f, out| {
        Box::pin(targets::check(c, f, out))
    }),
    ("quiesce", "mail queues and processes", |c, f, out| {
        Box::pin(quiesce::check(c, f, out))
    }),
];

/// Runs every check and returns the report. A check that cannot run is an
/// error line in the report (and [`Report::check_failed`]), not a panic of
/// the whole preflight: the other checks still run.
pub async fn run(ctx: &Context) -> Result<Report> {
    let mut facts = Facts::default();
    let mut report = Report::new(ctx);
    for (id, title, check) in CHECKS {
        let mut findings = Vec::new();
        let result = check(ctx, &mut facts, &mut findings).await;
        let outcome = match &result {
            Err(_) => Outcome::Failed,
            Ok(()) => Outcome::of(&findings),
        };
        for finding in &findings {
            tracing::info!(
                message_id = events::PREFLIGHT_FINDING,
                imss_finding = finding.id,
                imss_severity = finding.severity.as_str(),
                "{}: {}",
                finding.title,
                finding.found
            );
        }
        report.checks.push(CheckLine {
            id: (*id).to_string(),
            title: (*title).to_string(),
            outcome,
            error: result.err().map(|err| format!("{err:#}")),
        });
        report.findings.extend(findings);
    }
    report.database = facts.database.as_ref().map(database::DatabaseInfo::view);
    report.finish();
    tracing::info!(
        message_id = events::PREFLIGHT_FINISHED,
        imss_ready = report.ready,
        imss_inhibitors = report.inhibitors,
        imss_warnings = report.warnings,
        "preflight: {}",
        report.outcome_word()
    );
    Ok(report)
}

/// Writes the report as JSON to its place under the root.
pub fn save(ctx: &Context, report: &Report) -> Result<()> {
    let path = ctx.root.resolve(crate::flow::layout::PREFLIGHT_REPORT)?;
    let dir = path.parent().expect("the report has a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut json = serde_json::to_vec_pretty(report)?;
    json.push(b'\n');
    atomic_write(&path, &json, 0o644)
}
