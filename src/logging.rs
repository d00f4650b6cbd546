//! Logging: the journal is the review tool after an upgrade.
//!
//! Three layers, set up once by [`init`]:
//! - the systemd journal, with fields unprefixed (`MESSAGE_ID`, `IMSS_STEP`,
//!   …) so `journalctl MESSAGE_ID=… -o json` finds them; silently off where
//!   there is no journald;
//! - standard error, short lines for people;
//! - the plain-text install log (`/var/log/imss-upgrade/install.log` under the
//!   root), when the caller asks for it.
//!
//! Every event of a kind that an operator searches for carries a fixed
//! `message_id` from [`events`].

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use anyhow::{Context, Result};
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::fmt::format::{FmtSpan, Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, field::MakeExt};

use crate::constants::INSTALL_LOG;
use crate::root::Root;

/// Fixed 128-bit ids, one per kind of event, as systemd's catalog uses them.
/// Never change one: operators and scripts search for them.
pub mod events {
    /// A step of the flow started.
    pub const STEP_STARTED: &str = "4f1c2b7e9a6d4e0b8c3a5d7e9f1b2c40";
    /// A step of the flow finished.
    pub const STEP_FINISHED: &str = "4f1c2b7e9a6d4e0b8c3a5d7e9f1b2c41";
    /// A step of the flow failed.
    pub const STEP_FAILED: &str = "4f1c2b7e9a6d4e0b8c3a5d7e9f1b2c42";
    /// A preflight finding.
    pub const PREFLIGHT_FINDING: &str = "4f1c2b7e9a6d4e0b8c3a5d7e9f1b2c43";
    /// A database server was started or stopped.
    pub const DATABASE_SERVER: &str = "4f1c2b7e9a6d4e0b8c3a5d7e9f1b2c44";
    /// Progress of long work (rows copied, files archived).
    pub const PROGRESS: &str = "4f1c2b7e9a6d4e0b8c3a5d7e9f1b2c45";
    /// The 7.1 model (fixture) built or changed a server.
    pub const FIXTURE: &str = "4f1c2b7e9a6d4e0b8c3a5d7e9f1b2c46";
}

/// The name the journal files our lines under (`journalctl -t`).
pub const SYSLOG_IDENTIFIER: &str = "imss-upgrade";

/// Where log lines go besides the journal.
pub struct LogOptions<'a> {
    /// Syslog identifier for the journal.
    pub identifier: &'a str,
    /// Also append to the install log under this root.
    pub install_log: Option<&'a Root>,
    /// Show debug lines on stderr.
    pub verbose: bool,
    /// Show only errors on stderr (for commands whose stdout is the report).
    pub quiet: bool,
}

/// What the journal and the install log keep: this project's debug lines
/// (every command's argv among them), and other crates' warnings only (the
/// database driver's per-query lines and notices are noise there).
fn record_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("imss_upgrade", LevelFilter::DEBUG)
        .with_target("imss_rollback", LevelFilter::DEBUG)
        .with_target("imss_fixture", LevelFilter::DEBUG)
}

/// Sets up the global subscriber. `IMSS_LOG` (an `EnvFilter` directive)
/// overrides the stderr level.
pub fn init(options: LogOptions<'_>) -> Result<()> {
    let stderr_default = if options.verbose {
        LevelFilter::DEBUG
    } else if options.quiet {
        LevelFilter::ERROR
    } else {
        LevelFilter::INFO
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
        .fmt_fields(people_fields())
        .with_filter(stderr_filter);

    // No journald (a container, a test machine): the layer is off, not an error.
    let journal = tracing_journald::layer().ok().map(|layer| {
        layer
            .with_field_prefix(None)
            .with_syslog_identifier(options.identifier.to_string())
            .with_filter(record_filter())
    });

    let install_log = match options.install_log {
        Some(root) => {
            let path = root.resolve(INSTALL_LOG)?;
            let dir = path.parent().expect("install log has a directory");
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(Mutex::new(file))
                    .with_ansi(false)
                    .with_target(false)
                    .with_span_events(FmtSpan::NONE)
                    .fmt_fields(people_fields())
                    .with_filter(record_filter()),
            )
        }
        None => None,
    };

    tracing_subscriber::registry()
        .with(stderr)
        .with(journal)
        .with(install_log)
        .try_init()
        .context("setting up logging")?;
    Ok(())
}

/// Field formatting for people: the message as is, other fields as
/// `key=value`, and the `message_id` left to the journal.
fn people_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    tracing_subscriber::fmt::format::debug_fn(|writer: &mut Writer<'_>, field, value| {
        match field.name() {
            "message_id" => Ok(()),
            "message" => write!(writer, "{value:?}"),
            name => write!(writer, " {name}={value:?}"),
        }
    })
    .delimited("")
}
