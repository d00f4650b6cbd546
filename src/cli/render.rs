//! The reports the flow returns, as text for people: the preflight report,
//! the upgrade's report and where the background transfer is. The flow
//! keeps them as data (and JSON); what they look like on a terminal is
//! decided here.

use std::fmt::Write as _;

use crate::flow::after::transfer::progress::{TransferState, TransferStatus};
use crate::flow::upgrade::preflight::{Outcome, Report};
use crate::flow::upgrade::run::UpgradeReport;

/// The preflight report for people: aligned check lines, the findings, one
/// closing line.
pub fn preflight(report: &Report) -> String {
    let mut out = String::new();
    for check in &report.checks {
        let label = format!("Checking {} ", check.title);
        let _ = writeln!(out, "{label:.<48} {}", check_word(check.outcome));
    }
    for check in report.checks.iter().filter(|c| c.error.is_some()) {
        let _ = writeln!(
            out,
            "\nThe {} check could not run: {}",
            check.title,
            check.error.as_deref().unwrap_or_default()
        );
    }
    if !report.findings.is_empty() {
        let _ = writeln!(out, "\nFindings:");
    }
    for finding in &report.findings {
        let _ = writeln!(
            out,
            "\n  [{}] {} ({})",
            finding.severity.as_str(),
            finding.title,
            finding.id
        );
        for line in finding.found.lines() {
            let _ = writeln!(out, "      {line}");
        }
        if !finding.remediation.is_empty() {
            let _ = writeln!(out, "      Fix: {}", finding.remediation);
        }
    }
    if let Some(db) = &report.database {
        let _ = write!(out, "\n{db}");
    }
    let _ = writeln!(out);
    if report.check_failed() {
        let _ = writeln!(
            out,
            "Preflight could not finish: see the check that failed above, fix what it names, then run again."
        );
    } else if report.ready {
        let _ = writeln!(out, "Ready to upgrade ({} warnings).", report.warnings);
    } else {
        let _ = writeln!(
            out,
            "{} inhibitor{} ({} warnings): fix {}, then run again. Nothing was changed.",
            report.inhibitors,
            if report.inhibitors == 1 { "" } else { "s" },
            report.warnings,
            if report.inhibitors == 1 { "it" } else { "them" }
        );
    }
    out
}

/// How one check came out, at the end of its line.
fn check_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "ok",
        Outcome::Warning => "warning",
        Outcome::Inhibitor => "inhibitor",
        Outcome::Failed => "FAILED",
    }
}

/// What a completed upgrade did, for people.
pub fn upgrade(report: &UpgradeReport) -> String {
    let mut text = format!(
        "IMSS upgraded from 7.1 to 9.1 in {:.1} s; mail downtime {:.1} s.\n",
        (report.finished_at - report.started_at).num_milliseconds() as f64 / 1000.0,
        report.mail_downtime_ms as f64 / 1000.0
    );
    for (step, ms) in &report.steps {
        text.push_str(&format!(
            "  {:<18} {:>8.2} s\n",
            step.name(),
            *ms as f64 / 1000.0
        ));
    }
    text.push_str(&format!(
        "  last 24 hours migrated: {} policy events, {} quarantine and {} archive records\n",
        report.window.policy_events, report.window.quarantine, report.window.archive
    ));
    text.push_str(&format!(
        "  {} selections verified by count and checksum\n",
        report.verified
    ));
    if let Some(bind) = &report.bundled_bind {
        text.push_str(&format!(
            "  bundled BIND: DNS port {}, rndc port {} ({})\n",
            bind.dns_port, bind.rndc_port, bind.reason
        ));
    }
    if let Some(euq) = report.euq_enabled {
        text.push_str(if euq {
            "  EUQ: enabled and running, as 7.1 had it\n"
        } else {
            "  EUQ: left disabled, as 7.1 had it\n"
        });
    }
    if !report.pattern_and_engine_versions.is_empty() {
        text.push_str("  pattern files and engines, as 7.1 had them:\n");
        for item in &report.pattern_and_engine_versions {
            text.push_str(&format!("    {:<32} {}\n", item.component, item.version));
        }
    }
    text.push_str("Rollback: imss-rollback (until the upgrade is finalized).\n");
    text
}

/// Where the background transfer is, for people; with a bar drawn when
/// `bar` (a terminal).
pub fn transfer(status: &TransferStatus, bar: bool) -> String {
    let mut text = format!("Transfer of the older history: {}", transfer_state(status));
    if status.paused && status.state != TransferState::Paused {
        text.push_str(" (paused: `imss-upgrade transfer resume` lets it go on)");
    }
    if let Some(done) = &status.completed {
        text.push_str(&format!(
            "\n    {} rows, {} rejected; 7.1 and 9.1 agree ({})",
            done.rows_done,
            done.rows_rejected,
            done.completed_at.format("%Y-%m-%d %H:%M:%S UTC")
        ));
        return text;
    }
    let Some(report) = &status.report else {
        return text;
    };
    if bar {
        const WIDTH: usize = 30;
        let filled = (report.fraction() * WIDTH as f64).round() as usize;
        text.push_str(&format!(
            "\n    [{}{}] {:.0}%",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            report.fraction() * 100.0
        ));
    }
    text.push_str(&format!(
        "\n    {} of {} rows ({} left, {} rejected), {} rows/s{}",
        report.rows.rows_done,
        report.rows.rows_total,
        report.rows.rows_left,
        report.rows.rows_rejected,
        report.rows.rate_rows_per_sec,
        report
            .rows
            .eta_seconds
            .filter(|_| status.running)
            .map(|s| format!(", about {s} s left"))
            .unwrap_or_default()
    ));
    if let Some(at) = report.last_commit_at {
        text.push_str(&format!(
            "\n    last batch committed {}",
            at.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    if let Some(cause) = &report.cause {
        text.push_str(&format!("\n    cause: {cause}"));
    }
    for table in &report.tables {
        text.push_str(&format!(
            "\n    {:<18} {:>10} of {:>10}{}",
            table.table,
            table.rows.rows_done,
            table.rows.rows_total,
            if table.done { "  done" } else { "" }
        ));
    }
    text
}

/// What the transfer does, in words.
fn transfer_state(status: &TransferStatus) -> String {
    let report = status.report.as_ref();
    match status.state {
        TransferState::Stalled => format!(
            "stalled for {} s",
            report.and_then(|r| r.stalled_seconds).unwrap_or_default()
        ),
        TransferState::Stopped if !status.running => {
            "not running (the unit starts it at boot; or `imss-upgrade transfer run`)".to_string()
        }
        TransferState::Failed => "failed (the unit tries again; the cause is below)".to_string(),
        ref state => serde_json::to_value(state)
            .ok()
            .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    //! The text as the administrator's terminal has shown it since before
    //! the flow returned data only: written out here, byte for byte.

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::flow::after::transfer::progress::TransferReport;
    use crate::flow::after::transfer::{TransferSummary, VerifiedTable};
    use crate::flow::journal::Step;
    use crate::flow::upgrade::preflight::{CheckLine, Finding, Severity};
    use crate::flow::upgrade::steps::switch::BindChoice;
    use crate::migration::copy::WindowCounts;
    use crate::migration::probe::InstalledComponent;

    fn check(title: &str, outcome: Outcome, error: Option<&str>) -> CheckLine {
        CheckLine {
            id: title.replace(' ', "-"),
            title: title.to_string(),
            outcome,
            error: error.map(str::to_string),
        }
    }

    fn preflight_report() -> Report {
        Report {
            schema_version: 1,
            tool_version: "0.1.0".into(),
            root: "/".into(),
            generated_at: "2024-01-01T00:00:00Z".into(),
            ready: false,
            inhibitors: 1,
            warnings: 1,
            checks: vec![
                check("the installed IMSS", Outcome::Ok, None),
                check("free disk space", Outcome::Warning, None),
                check("the admin database", Outcome::Inhibitor, None),
            ],
            findings: vec![
                Finding::new(
                    "disk-low",
                    Severity::Inhibitor,
                    "Not enough space",
                    "needs 3 GiB\nfree 1 GiB",
                    "free 2 GiB on /var",
                ),
                Finding::new("info-x", Severity::Info, "Something", "a fact", ""),
            ],
            database: None,
        }
    }

    #[test]
    fn the_preflight_report_aligns_its_checks_and_closes_with_what_to_do() {
        let mut report = preflight_report();
        assert_eq!(
            preflight(&report),
            "\
Checking the installed IMSS .................... ok
Checking free disk space ....................... warning
Checking the admin database .................... inhibitor

Findings:

  [inhibitor] Not enough space (disk-low)
      needs 3 GiB
      free 1 GiB
      Fix: free 2 GiB on /var

  [info] Something (info-x)
      a fact

1 inhibitor (1 warnings): fix it, then run again. Nothing was changed.
"
        );
        report.inhibitors = 2;
        assert!(preflight(&report).ends_with(
            "\n2 inhibitors (1 warnings): fix them, then run again. Nothing was changed.\n"
        ));
        report.checks.push(check(
            "the payload",
            Outcome::Failed,
            Some("cannot read /x: denied"),
        ));
        let failed = preflight(&report);
        assert!(
            failed.contains(
                "\nChecking the payload ........................... FAILED\n\
                 \nThe the payload check could not run: cannot read /x: denied\n\nFindings:\n"
            ),
            "{failed}"
        );
        assert!(failed.ends_with(
            "\nPreflight could not finish: see the check that failed above, fix what it names, \
             then run again.\n"
        ));
        report.checks.pop();
        report.findings.clear();
        (report.ready, report.inhibitors, report.warnings) = (true, 0, 3);
        assert!(preflight(&report).ends_with("inhibitor\n\nReady to upgrade (3 warnings).\n"));
    }

    #[test]
    fn the_upgrade_report_gives_the_times_and_what_was_carried_over() {
        let started_at = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let mut report = UpgradeReport {
            started_at,
            finished_at: started_at + chrono::Duration::milliseconds(123_456),
            mail_downtime_ms: 45_678,
            steps: vec![(Step::Presync, 1234), (Step::Switch, 56789)],
            window: WindowCounts {
                policy_events: 10,
                quarantine: 2,
                archive: 3,
            },
            verified: 7,
            pattern_and_engine_versions: vec![InstalledComponent {
                component: "Virus Scan Engine".into(),
                kind: "engine".into(),
                version: "9.850".into(),
            }],
            bundled_bind: Some(BindChoice {
                dns_port: 5353,
                rndc_port: 953,
                reason: "53 busy".into(),
            }),
            euq_enabled: Some(true),
        };
        assert_eq!(
            upgrade(&report),
            "\
IMSS upgraded from 7.1 to 9.1 in 123.5 s; mail downtime 45.7 s.
  presync                1.23 s
  switch                56.79 s
  last 24 hours migrated: 10 policy events, 2 quarantine and 3 archive records
  7 selections verified by count and checksum
  bundled BIND: DNS port 5353, rndc port 953 (53 busy)
  EUQ: enabled and running, as 7.1 had it
  pattern files and engines, as 7.1 had them:
    Virus Scan Engine                9.850
Rollback: imss-rollback (until the upgrade is finalized).
"
        );
        report.euq_enabled = Some(false);
        report.pattern_and_engine_versions.clear();
        assert!(upgrade(&report).ends_with(
            "  EUQ: left disabled, as 7.1 had it\n\
             Rollback: imss-rollback (until the upgrade is finalized).\n"
        ));
    }

    fn transfer_report() -> TransferReport {
        serde_json::from_value(serde_json::json!({
            "state": "copying", "cause": "9.1 busy", "pid": 1, "boot_id": "b",
            "started_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:01:00Z",
            "last_commit_at": "2024-01-01T00:00:30Z", "stalled_seconds": 77,
            "max_rows_per_sec": null, "rows_done": 250, "rows_total": 1000, "rows_left": 750,
            "rows_rejected": 3, "rate_rows_per_sec": 12.5, "eta_seconds": 60,
            "tables": [
                {"table": "tb_policy_event", "rows_done": 200, "rows_total": 200,
                 "rows_left": 0, "rows_rejected": 3, "rate_rows_per_sec": 0.0,
                 "eta_seconds": 0, "last_commit_at": null, "done": true},
                {"table": "tb_quarantine", "rows_done": 50, "rows_total": 800,
                 "rows_left": 750, "rows_rejected": 0, "rate_rows_per_sec": 12.5,
                 "eta_seconds": 60, "last_commit_at": null, "done": false}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn the_transfer_shows_a_bar_on_a_terminal_and_its_state_in_words() {
        let mut status = TransferStatus {
            state: TransferState::Copying,
            running: true,
            paused: false,
            report: Some(transfer_report()),
            completed: None,
        };
        let rest = "
    250 of 1000 rows (750 left, 3 rejected), 12.5 rows/s, about 60 s left
    last batch committed 2024-01-01 00:00:30 UTC
    cause: 9.1 busy
    tb_policy_event           200 of        200  done
    tb_quarantine              50 of        800";
        assert_eq!(
            transfer(&status, true),
            format!(
                "Transfer of the older history: copying\n    \
                 [########----------------------] 25%{rest}"
            )
        );
        assert_eq!(
            transfer(&status, false),
            format!("Transfer of the older history: copying{rest}")
        );
        status.state = TransferState::Stalled;
        assert!(
            transfer(&status, false)
                .starts_with("Transfer of the older history: stalled for 77 s\n")
        );
        (status.state, status.running, status.paused) = (TransferState::Stopped, false, true);
        assert!(transfer(&status, false).starts_with(
            "Transfer of the older history: not running (the unit starts it at boot; or \
             `imss-upgrade transfer run`) (paused: `imss-upgrade transfer resume` lets it go \
             on)\n    250 of 1000 rows (750 left, 3 rejected), 12.5 rows/s\n"
        ));
        (status.state, status.report) = (TransferState::Failed, None);
        assert_eq!(
            transfer(&status, true),
            "Transfer of the older history: failed (the unit tries again; the cause is below) \
             (paused: `imss-upgrade transfer resume` lets it go on)"
        );
        status.completed = Some(TransferSummary {
            rows_done: 1000,
            rows_rejected: 3,
            verified: vec![VerifiedTable {
                table: "t".into(),
                rows: 1,
                checksum: "c".into(),
            }],
            completed_at: Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap(),
        });
        (status.state, status.paused) = (TransferState::Done, false);
        assert_eq!(
            transfer(&status, true),
            "Transfer of the older history: done\n    1000 rows, 3 rejected; 7.1 and 9.1 agree \
             (2024-01-02 03:04:05 UTC)"
        );
    }
}
