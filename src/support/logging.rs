//! Logging: the journal is the review tool after an upgrade.
//!
//! Three layers, set up once by [`init`], before anything that can fail:
//! - the systemd journal, with fields unprefixed (`MESSAGE_ID`, `IMSS_STEP`,
//!   …) so `journalctl MESSAGE_ID=… -o json` finds them; silently off where
//!   there is no journald;
//! - standard error, short lines for people;
//! - the plain-text install log (`/var/log/imss-upgrade/install.log` under
//!   the root), once [`open_install_log`] has the root; what was logged
//!   before that is in the journal and on stderr.
//!
//! Every event of a kind that an operator searches for carries a fixed
//! `message_id` from [`events`], each with its own meaning and fields
//! (README, "Journal events"; `systemd/imss-upgrade.catalog` explains
//! each to `journalctl -x`).

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::{FmtSpan, Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, field::MakeExt};

use super::constants::INSTALL_LOG;
use super::root::Root;

/// Fixed 128-bit ids, one per kind of event, as systemd's catalog uses
/// them, each made once with `systemd-id128 new`. Never change one, never
/// give one another meaning: operators and scripts search for them.
pub mod events {
    /// An upgrade run began (`IMSS_BUILD`: the 7.1 build; `IMSS_JOURNAL`).
    pub const UPGRADE_STARTED: &str = "470d4fee3f9c47f382eb6b1c4acccc62";
    /// The upgrade completed: 9.1 runs (`IMSS_DURATION_MS`, `IMSS_DOWNTIME_MS`).
    pub const UPGRADE_COMPLETED: &str = "4037ce924d6b4feba861fd0911882642";
    /// The upgrade failed at a step (`IMSS_STEP`, `IMSS_ROLLED_BACK`: yes or no).
    pub const UPGRADE_FAILED: &str = "665c8ba22f4b4692a82b653bd72880cd";
    /// A step of the flow began (`IMSS_STEP`).
    pub const STEP_STARTED: &str = "a6c4d48d03714809aba5878b10ede12e";
    /// A step of the flow finished (`IMSS_STEP`, `IMSS_DURATION_MS`).
    pub const STEP_FINISHED: &str = "2fd4ba53c0bb436684dc085aef6e1726";
    /// A step of the flow failed (`IMSS_STEP`); the cause is in the
    /// `COMMAND_FAILED` event that follows.
    pub const STEP_FAILED: &str = "5ae9f9fee6764ca9baf41b3deb0541da";
    /// A rollback to 7.1 began (`IMSS_CAUSE`).
    pub const ROLLBACK_STARTED: &str = "cacbc5be06cc4a48a4ee4bed94af6c89";
    /// Undoing one step began (`IMSS_STEP`).
    pub const UNDO_STARTED: &str = "8a4d5add8fea45aea9cefa885f752958";
    /// Undoing one step finished (`IMSS_STEP`, `IMSS_DURATION_MS`).
    pub const UNDO_FINISHED: &str = "df2b869607194f048fb98172136bfd6f";
    /// The rollback finished: 7.1 runs and takes mail again.
    pub const ROLLBACK_COMPLETED: &str = "58b053c1f42f42be81d555ed95f4cabe";
    /// The rollback stopped at a step (`IMSS_STEP`): mail may be down.
    pub const ROLLBACK_FAILED: &str = "8551326a5ab2472a8f4cf1cec0c40a8a";
    /// `recover` looked at the step journal (`IMSS_STATE`: the run's state).
    pub const RECOVERY_STARTED: &str = "2bacca0a459c4e16a7a6ed2a20db9b90";
    /// `recover` settled the run (`IMSS_RECOVERY`: nothing, settled,
    /// finished, rolled-back).
    pub const RECOVERY_FINISHED: &str = "6dc1235e841d488a846fa00c03b0949d";
    /// A command failed; the message is the whole cause chain
    /// (`IMSS_COMMAND`, `IMSS_EXIT_CODE`).
    pub const COMMAND_FAILED: &str = "5ad3584cddbd4f1f94e0fed2358bdaac";
    /// A preflight finding (`IMSS_FINDING`, `IMSS_SEVERITY`).
    pub const PREFLIGHT_FINDING: &str = "cc6dc349166a4316afdb77997d06731d";
    /// Preflight finished (`IMSS_READY`, `IMSS_INHIBITORS`, `IMSS_WARNINGS`).
    pub const PREFLIGHT_FINISHED: &str = "9053281cb35a4548ae7eb46c7938c908";
    /// A database server was started (`IMSS_DATA_DIR`, `IMSS_PORT`).
    pub const DATABASE_STARTED: &str = "bee2cd5cf220443a8118ad9f99adf25f";
    /// A database server was stopped (`IMSS_DATA_DIR`).
    pub const DATABASE_STOPPED: &str = "93bdc057c7b848068e3ceaf9439816d7";
    /// Progress of long work (`IMSS_FILES`, `IMSS_BYTES`, `IMSS_SECONDS`).
    pub const PROGRESS: &str = "8975b7a319d24978920ab4d5442704d5";
    /// The switch chose the bundled BIND's ports (`IMSS_DNS_PORT`,
    /// `IMSS_RNDC_PORT`, `IMSS_REASON`).
    pub const BIND_PORTS_CHOSEN: &str = "5e23ab6bf56a4ce89dbda6f246a87184";
    /// The switch started the 9.1 units (`IMSS_UNITS`, `IMSS_EUQ`).
    pub const UNITS_STARTED: &str = "843f40cfb9374de2a1c4eb066f130730";
    /// The 7.1 model (fixture) built or changed a server.
    pub const FIXTURE: &str = "1d48b11a276849f196153b27c62e341f";
    /// The background transfer of the older history started or resumed
    /// (`IMSS_ROWS_DONE`, `IMSS_ROWS_TOTAL`, `IMSS_MAX_ROWS_PER_SEC`).
    pub const TRANSFER_STARTED: &str = "f8ff60795f154698b7a9c8f637663c8f";
    /// Where the transfer of one table is, every few seconds (`IMSS_TABLE`,
    /// `IMSS_ROWS_DONE`, `IMSS_ROWS_LEFT`, `IMSS_RATE`, `IMSS_ETA_S`,
    /// `IMSS_LAST_COMMIT`).
    pub const TRANSFER_PROGRESS: &str = "acfb2f662749415e8c71f6991a0da66e";
    /// No batch committed for the stall time (`IMSS_CAUSE`: paused,
    /// throttled, source down, target down, lock wait, disk full, …;
    /// `IMSS_STALLED_S`).
    pub const TRANSFER_STALLED: &str = "30292c6f3e734733ab287779b99475de";
    /// The transformation refused rows, kept in the reject table
    /// (`IMSS_TABLE`, `IMSS_ROWS`).
    pub const TRANSFER_REJECTED: &str = "d348981d8f6b42e7b2e90efb16ec95b7";
    /// The transfer was paused or resumed (`IMSS_PAUSED`: yes or no).
    pub const TRANSFER_PAUSED: &str = "2c4a1b2ada0a46e49e43031a2c6fa49c";
    /// Every table is across and its counts and checksums agree with 7.1
    /// (`IMSS_ROWS_DONE`, `IMSS_REJECTED`, `IMSS_DURATION_MS`).
    pub const TRANSFER_COMPLETED: &str = "f99e732fad2e4025b2a08d40bb6a4735";
    /// The upgrade was finalized: the backup is gone, rollback no longer
    /// offered (`IMSS_EXPORT`, `IMSS_FORCED`).
    pub const FINALIZED: &str = "c1e0ace59a88446ab59374d7f2d1b67e";

    /// Every event id with its constant's name, for the catalog and its test.
    pub const ALL: &[(&str, &str)] = &[
        ("UPGRADE_STARTED", UPGRADE_STARTED),
        ("UPGRADE_COMPLETED", UPGRADE_COMPLETED),
        ("UPGRADE_FAILED", UPGRADE_FAILED),
        ("STEP_STARTED", STEP_STARTED),
        ("STEP_FINISHED", STEP_FINISHED),
        ("STEP_FAILED", STEP_FAILED),
        ("ROLLBACK_STARTED", ROLLBACK_STARTED),
        ("UNDO_STARTED", UNDO_STARTED),
        ("UNDO_FINISHED", UNDO_FINISHED),
        ("ROLLBACK_COMPLETED", ROLLBACK_COMPLETED),
        ("ROLLBACK_FAILED", ROLLBACK_FAILED),
        ("RECOVERY_STARTED", RECOVERY_STARTED),
        ("RECOVERY_FINISHED", RECOVERY_FINISHED),
        ("COMMAND_FAILED", COMMAND_FAILED),
        ("PREFLIGHT_FINDING", PREFLIGHT_FINDING),
        ("PREFLIGHT_FINISHED", PREFLIGHT_FINISHED),
        ("DATABASE_STARTED", DATABASE_STARTED),
        ("DATABASE_STOPPED", DATABASE_STOPPED),
        ("PROGRESS", PROGRESS),
        ("BIND_PORTS_CHOSEN", BIND_PORTS_CHOSEN),
        ("UNITS_STARTED", UNITS_STARTED),
        ("FIXTURE", FIXTURE),
        ("TRANSFER_STARTED", TRANSFER_STARTED),
        ("TRANSFER_PROGRESS", TRANSFER_PROGRESS),
        ("TRANSFER_STALLED", TRANSFER_STALLED),
        ("TRANSFER_REJECTED", TRANSFER_REJECTED),
        ("TRANSFER_PAUSED", TRANSFER_PAUSED),
        ("TRANSFER_COMPLETED", TRANSFER_COMPLETED),
        ("FINALIZED", FINALIZED),
    ];
}

/// The name the journal files our lines under (`journalctl -t`).
pub const SYSLOG_IDENTIFIER: &str = "imss-upgrade";

/// How much of the log goes to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StderrLevel {
    /// Debug lines too (`--verbose`).
    Debug,
    /// Information, warnings and errors.
    Info,
    /// Warnings and errors: for commands that print step lines, whose
    /// details go to the journal and the install log.
    Warnings,
    /// Errors only: for commands whose standard output is the report.
    Errors,
}

/// How logging is set up.
pub struct LogOptions<'a> {
    /// Syslog identifier for the journal.
    pub identifier: &'a str,
    /// What standard error shows; `IMSS_LOG` (an `EnvFilter` directive)
    /// overrides it.
    pub stderr: StderrLevel,
}

/// Whether [`init`] set up the subscriber: until then an error would reach
/// nobody, so [`report_error`] writes it to stderr itself.
static INITIALISED: AtomicBool = AtomicBool::new(false);

/// The install log's file, once [`open_install_log`] has opened it.
static INSTALL_LOG_FILE: Mutex<Option<Arc<Mutex<File>>>> = Mutex::new(None);

/// What the journal and the install log keep: this project's debug lines
/// (every command's argv among them), and other crates' warnings only (the
/// database driver's per-query lines and notices are noise there).
fn record_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("imss_upgrade", LevelFilter::DEBUG)
        .with_target("imss_rollback", LevelFilter::DEBUG)
        .with_target("imss_fixture", LevelFilter::DEBUG)
        .with_target("imss_bench", LevelFilter::DEBUG)
}

/// Sets up the global subscriber: stderr and, where there is one, the
/// journal. Needs nothing that can be missing, so it is the first thing a
/// binary does; the install log joins with [`open_install_log`].
pub fn init(options: LogOptions<'_>) -> Result<()> {
    let stderr_default = match options.stderr {
        StderrLevel::Debug => LevelFilter::DEBUG,
        StderrLevel::Info => LevelFilter::INFO,
        StderrLevel::Warnings => LevelFilter::WARN,
        StderrLevel::Errors => LevelFilter::ERROR,
    };
    let stderr_filter = EnvFilter::builder()
        .with_default_directive(stderr_default.into())
        .with_env_var("IMSS_LOG")
        .from_env_lossy()
        .add_directive("tokio_postgres=warn".parse().expect("a valid directive"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .fmt_fields(people_fields(false))
        .with_filter(stderr_filter);

    // No journald (a container, a test machine): the layer is off, not an error.
    let journal = tracing_journald::layer().ok().map(|layer| {
        layer
            .with_field_prefix(None)
            .with_syslog_identifier(options.identifier.to_string())
            .with_filter(record_filter())
    });

    let install_log = tracing_subscriber::fmt::layer()
        .with_writer(InstallLogWriter)
        .with_ansi(false)
        .with_target(false)
        .with_span_events(FmtSpan::NONE)
        .fmt_fields(people_fields(true))
        .with_filter(record_filter());

    tracing_subscriber::registry()
        .with(stderr)
        .with(journal)
        .with(install_log)
        .try_init()
        .context("setting up logging")?;
    INITIALISED.store(true, Ordering::SeqCst);
    Ok(())
}

/// From now on, log lines go to the install log under `root` too
/// (appended; created 0640).
pub fn open_install_log(root: &Root) -> Result<()> {
    let path = root.resolve(INSTALL_LOG)?;
    let dir = path.parent().expect("install log has a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    *INSTALL_LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(Mutex::new(file)));
    Ok(())
}

/// Reports a command's failure once: the whole cause chain on stderr and
/// in the journal (`COMMAND_FAILED`), through the subscriber when [`init`]
/// set one up, on stderr by hand when it did not (logging itself failed).
pub fn report_error(command: &str, err: &anyhow::Error, exit_code: u8) {
    if INITIALISED.load(Ordering::SeqCst) {
        tracing::error!(
            message_id = events::COMMAND_FAILED,
            imss_command = command,
            imss_exit_code = exit_code,
            "{err:#}"
        );
    } else {
        let _ = writeln!(std::io::stderr(), "{command}: error: {err:#}");
    }
}

/// Writes to the install log once it is open, and nowhere before.
struct InstallLogWriter;

/// One line's worth of writing to the install log (or to nothing).
enum InstallLogLine {
    Open(Arc<Mutex<File>>),
    Closed,
}

impl Write for InstallLogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            InstallLogLine::Open(file) => file.lock().unwrap_or_else(|e| e.into_inner()).write(buf),
            InstallLogLine::Closed => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            InstallLogLine::Open(file) => file.lock().unwrap_or_else(|e| e.into_inner()).flush(),
            InstallLogLine::Closed => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for InstallLogWriter {
    type Writer = InstallLogLine;

    fn make_writer(&'a self) -> Self::Writer {
        match &*INSTALL_LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(file) => InstallLogLine::Open(Arc::clone(file)),
            None => InstallLogLine::Closed,
        }
    }
}

/// Field formatting for people: the message as is, other fields as
/// `key=value`, and the `message_id` left to the journal. The event fields
/// (`imss_…`, the journal's `IMSS_…`) go to the install log, not to stderr,
/// whose lines say the same in words.
fn people_fields(
    event_fields: bool,
) -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    tracing_subscriber::fmt::format::debug_fn(move |writer: &mut Writer<'_>, field, value| {
        match field.name() {
            "message_id" => Ok(()),
            "message" => write!(writer, "{value:?}"),
            name if name.starts_with("imss_") && !event_fields => Ok(()),
            name => write!(writer, " {name}={value:?}"),
        }
    })
    .delimited("")
}
