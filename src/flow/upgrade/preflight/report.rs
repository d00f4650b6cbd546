//! The preflight report: its JSON schema (versioned, documented in the
//! README); its text form for people is `cli::render`'s.

use serde::Serialize;

use crate::files::odbc_ini::DatabaseView;
use crate::flow::context::Context;
use crate::support::exit;

/// Bumped when a field changes meaning or disappears (adding one does not).
pub const SCHEMA_VERSION: u32 = 1;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For information; nothing to do.
    Info,
    /// Worth knowing or fixing; the upgrade goes ahead.
    Warning,
    /// The upgrade will not start until this is fixed.
    Inhibitor,
}

impl Severity {
    /// The lowercase name used in JSON and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Inhibitor => "inhibitor",
        }
    }
}

/// One thing preflight found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Stable id (`source-build-too-old`, …): never changes meaning.
    pub id: &'static str,
    /// How much it matters.
    pub severity: Severity,
    /// One line saying what it is about.
    pub title: String,
    /// What was found, with the values.
    pub found: String,
    /// The exact fix (empty for information).
    pub remediation: String,
}

impl Finding {
    /// A finding; `remediation` may be empty for information.
    pub fn new(
        id: &'static str,
        severity: Severity,
        title: impl Into<String>,
        found: impl Into<String>,
        remediation: impl Into<String>,
    ) -> Self {
        Self {
            id,
            severity,
            title: title.into(),
            found: found.into(),
            remediation: remediation.into(),
        }
    }
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Nothing, or information only.
    Ok,
    /// At least one warning.
    Warning,
    /// At least one inhibitor.
    Inhibitor,
    /// The check itself could not run.
    Failed,
}

impl Outcome {
    /// The outcome of a check that ran and found `findings`.
    pub fn of(findings: &[Finding]) -> Self {
        match findings.iter().map(|f| f.severity).max() {
            Some(Severity::Inhibitor) => Outcome::Inhibitor,
            Some(Severity::Warning) => Outcome::Warning,
            _ => Outcome::Ok,
        }
    }
}

/// One check's line.
#[derive(Debug, Clone, Serialize)]
pub struct CheckLine {
    /// Stable id of the check.
    pub id: String,
    /// What is checked, for people.
    pub title: String,
    /// How it came out.
    pub outcome: Outcome,
    /// Why it could not run, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The version of imss-upgrade that wrote it.
    pub tool_version: String,
    /// The root directory inspected.
    pub root: String,
    /// When it was made (UTC, RFC 3339).
    pub generated_at: String,
    /// True when there is no inhibitor and every check ran.
    pub ready: bool,
    /// Count of inhibitors.
    pub inhibitors: usize,
    /// Count of warnings.
    pub warnings: usize,
    /// Every check, in order.
    pub checks: Vec<CheckLine>,
    /// Every finding, inhibitors first.
    pub findings: Vec<Finding>,
    /// The admin database as detected (password masked), when reachable
    /// settings were found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseView>,
}

impl Report {
    pub(super) fn new(ctx: &Context) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            root: ctx.root.dir().display().to_string(),
            generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ready: false,
            inhibitors: 0,
            warnings: 0,
            checks: Vec::new(),
            findings: Vec::new(),
            database: None,
        }
    }

    pub(super) fn finish(&mut self) {
        // Inhibitors first, then warnings, then information; stable within.
        self.findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        self.inhibitors = self.count(Severity::Inhibitor);
        self.warnings = self.count(Severity::Warning);
        self.ready = self.inhibitors == 0 && !self.check_failed();
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// Whether a check could not run.
    pub fn check_failed(&self) -> bool {
        self.checks.iter().any(|c| c.outcome == Outcome::Failed)
    }

    /// The finding with `id`, if any.
    pub fn finding(&self, id: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.id == id)
    }

    /// The documented exit code: 0 ready, 2 inhibited, 1 a check failed.
    pub fn exit_code(&self) -> u8 {
        if self.check_failed() {
            exit::FAILED
        } else if self.inhibitors > 0 {
            exit::INHIBITED
        } else {
            exit::OK
        }
    }

    /// One word for the outcome, for a step line: `ready`, `inhibited`,
    /// `failed`.
    pub fn outcome_word(&self) -> &'static str {
        if self.check_failed() {
            "failed"
        } else if self.inhibitors > 0 {
            "inhibited"
        } else {
            "ready"
        }
    }
}
