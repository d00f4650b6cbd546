//! The only module that speaks to PostgreSQL: server control (`initdb`,
//! `pg_ctl`) as the service user, and client connections.
//!
//! Passwords reach `initdb` on its standard input and the client through
//! `tokio_postgres::Config::password`, never through argv or the environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use thiserror::Error;
use tokio_postgres::{Client, NoTls};

use crate::cmd::Cmd;
use crate::config::DbSettings;
use crate::constants::{BUNDLED_PG_DIR, DATABASE_HOST, PG71_DATA_DIR, RUN_DIR};
use crate::logging::events;
use crate::root::Root;
use crate::secret::Secret;
use crate::user::ServiceUser;

/// A PostgreSQL installation: a directory with `bin/initdb`, `bin/pg_ctl`
/// and `bin/postgres`.
#[derive(Debug, Clone)]
pub struct PgInstall {
    bin_dir: PathBuf,
}

impl PgInstall {
    /// The installation whose programs are in `bin_dir`. `install_hint` says
    /// how to get it, for the error when it is not there.
    pub fn at(bin_dir: impl AsRef<Path>, install_hint: &str) -> Result<Self> {
        let bin_dir = bin_dir.as_ref().to_path_buf();
        for program in ["initdb", "pg_ctl", "postgres"] {
            let path = bin_dir.join(program);
            if !path.is_file() {
                bail!(
                    "PostgreSQL program {} is missing: {install_hint}",
                    path.display()
                );
            }
        }
        Ok(Self { bin_dir })
    }

    /// The directory holding the programs.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The path of one of the installation's programs.
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// The major version, from `postgres --version` ("10", "15").
    pub fn major_version(&self) -> Result<String> {
        let text = Cmd::new(self.program("postgres"))
            .arg("--version")
            .output_text()?;
        // "postgres (PostgreSQL) 10.23"
        let number = text
            .split_whitespace()
            .last()
            .with_context(|| format!("unexpected output of postgres --version: {text:?}"))?;
        Ok(number.split('.').next().unwrap_or(number).to_string())
    }
}

/// How to stop a server (`pg_ctl -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Wait for clients to disconnect.
    Smart,
    /// Disconnect clients, then a clean shutdown with a checkpoint.
    Fast,
    /// No checkpoint: crash recovery at the next start.
    Immediate,
}

impl StopMode {
    fn as_arg(self) -> &'static str {
        match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// A database cluster: a data directory, the installation that runs it, the
/// account it runs as, and where it listens.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The programs.
    pub install: PgInstall,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Directory for the Unix socket.
    pub socket_dir: PathBuf,
    /// TCP address to listen on (empty: Unix socket only).
    pub listen_address: String,
    /// Port, for TCP and for the socket's name.
    pub port: u16,
    /// The account the server runs as.
    pub owner: ServiceUser,
}

/// What `initdb` should set up.
pub struct InitOptions<'a> {
    /// The superuser's name.
    pub superuser: &'a str,
    /// The superuser's password.
    pub password: &'a Secret,
    /// Skip fsync in initdb (test clusters only).
    pub no_sync: bool,
    /// Extra `postgresql.conf` settings, as `name = value` lines.
    pub settings: &'a [(&'a str, &'a str)],
}

impl Cluster {
    /// The 7.1 server's bundled cluster under `root`: programs in the 7.1
    /// tree, data in `/var/imss/pgdata`, listening where `port` says, run by
    /// `owner`.
    pub fn bundled_71(root: &Root, owner: &ServiceUser, port: u16) -> Result<Self> {
        let install = PgInstall::at(
            root.resolve(BUNDLED_PG_DIR)?.join("bin"),
            "the 7.1 program tree lacks its bundled PostgreSQL; is IMSS 7.1 installed whole?",
        )?;
        Ok(Self {
            install,
            data_dir: root.resolve(PG71_DATA_DIR)?,
            socket_dir: root.resolve(RUN_DIR)?,
            listen_address: DATABASE_HOST.to_string(),
            port,
            owner: owner.clone(),
        })
    }

    /// The server log file (next to the data directory, so a snapshot of the
    /// data directory does not carry it along).
    pub fn log_file(&self) -> PathBuf {
        let mut name = self
            .data_dir
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(".log");
        self.data_dir.with_file_name(name)
    }

    /// Creates the data directory with `initdb`, password authentication for
    /// every connection, and this cluster's address, port and socket.
    pub fn initdb(&self, options: &InitOptions<'_>) -> Result<()> {
        // initdb reads the password from a file. The server account cannot
        // open a pipe of ours (/dev/stdin), so the file is a 0600 one of its
        // own in a private directory, removed with the directory.
        let password_dir = tempfile::Builder::new()
            .prefix("imss-initdb-")
            .tempdir()
            .context("creating a private directory for initdb's password file")?;
        let password_file = password_dir.path().join("pwfile");
        let mut password_line = options.password.expose().to_vec();
        password_line.push(b'\n');
        write_private_file(&password_file, &password_line, &self.owner)?;
        std::os::unix::fs::chown(
            password_dir.path(),
            Some(self.owner.uid),
            Some(self.owner.gid),
        )
        .with_context(|| {
            format!(
                "giving {} to {}",
                password_dir.path().display(),
                self.owner.name
            )
        })?;
        let mut cmd = Cmd::new(self.install.program("initdb"))
            .arg("-D")
            .arg(&self.data_dir)
            .args([
                "-U",
                options.superuser,
                "--auth=md5",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", password_file.display()))
            .current_dir(self.data_dir.parent().unwrap_or(Path::new("/")))
            .as_user(&self.owner);
        if options.no_sync {
            cmd = cmd.arg("--no-sync");
        }
        cmd.run().with_context(|| {
            format!(
                "creating the database cluster in {}",
                self.data_dir.display()
            )
        })?;

        let mut conf = format!(
            "\n# Added by imss-upgrade\nport = {}\nlisten_addresses = {}\nunix_socket_directories = {}\n",
            self.port,
            conf_quote(&self.listen_address),
            conf_quote(&self.socket_dir.to_string_lossy()),
        );
        for (name, value) in options.settings {
            conf.push_str(&format!("{name} = {value}\n"));
        }
        let conf_path = self.data_dir.join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .with_context(|| format!("opening {}", conf_path.display()))?;
        std::io::Write::write_all(&mut file, conf.as_bytes())
            .with_context(|| format!("writing {}", conf_path.display()))?;
        Ok(())
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) -> Result<()> {
        self.start_with(&[])
    }

    /// Starts the server with extra `-c name=value` settings (for example a
    /// read-only start from the backup directory).
    pub fn start_with(&self, settings: &[(&str, &str)]) -> Result<()> {
        // Where the server listens is this struct's to say, whatever the
        // data directory's postgresql.conf was written with.
        let port = self.port.to_string();
        let socket_dir = self.socket_dir.to_string_lossy();
        let placement = [
            ("port", port.as_str()),
            ("listen_addresses", self.listen_address.as_str()),
            ("unix_socket_directories", socket_dir.as_ref()),
        ];
        let mut options = String::new();
        for (name, value) in placement.iter().chain(settings) {
            // pg_ctl hands -o to postgres, which splits it on blanks: refuse
            // values that would need quoting rather than quote them.
            if value.contains(char::is_whitespace) || name.contains(char::is_whitespace) {
                bail!("server setting {name}={value:?} may not contain blanks");
            }
            options.push_str(&format!(" -c {name}={value}"));
        }
        self.prepare_log_file()?;
        let mut cmd = Cmd::new(self.install.program("pg_ctl"))
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.log_file())
            .args(["-w", "-t", "120"])
            .current_dir(self.data_dir.parent().unwrap_or(Path::new("/")))
            .as_user(&self.owner);
        if !options.is_empty() {
            cmd = cmd.arg("-o").arg(options.trim_start());
        }
        cmd.arg("start").run().with_context(|| {
            format!(
                "starting PostgreSQL on {}; the end of its log {}:\n{}",
                self.data_dir.display(),
                self.log_file().display(),
                log_tail(&self.log_file(), 8)
            )
        })?;
        tracing::info!(
            message_id = events::DATABASE_SERVER,
            imss_data_dir = %self.data_dir.display(),
            imss_port = self.port,
            "PostgreSQL started"
        );
        Ok(())
    }

    /// The server account must be able to append to its log, whoever owns
    /// the directory it is in.
    fn prepare_log_file(&self) -> Result<()> {
        let path = self.log_file();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if !self.owner.is_current() {
            std::os::unix::fs::fchown(&file, Some(self.owner.uid), Some(self.owner.gid))
                .with_context(|| format!("giving {} to {}", path.display(), self.owner.name))?;
        }
        Ok(())
    }

    /// Stops the server and waits until it is down. Stopping a server that
    /// is not running is not an error.
    pub fn stop(&self, mode: StopMode) -> Result<()> {
        if !self.is_running()? {
            return Ok(());
        }
        Cmd::new(self.install.program("pg_ctl"))
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", mode.as_arg(), "-w", "-t", "120", "stop"])
            .current_dir(self.data_dir.parent().unwrap_or(Path::new("/")))
            .as_user(&self.owner)
            .run()
            .with_context(|| format!("stopping PostgreSQL on {}", self.data_dir.display()))?;
        tracing::info!(
            message_id = events::DATABASE_SERVER,
            imss_data_dir = %self.data_dir.display(),
            "PostgreSQL stopped"
        );
        Ok(())
    }

    /// Whether a server is running on this data directory (`pg_ctl status`).
    pub fn is_running(&self) -> Result<bool> {
        let result = Cmd::new(self.install.program("pg_ctl"))
            .arg("-D")
            .arg(&self.data_dir)
            .arg("status")
            .current_dir(self.data_dir.parent().unwrap_or(Path::new("/")))
            .as_user(&self.owner)
            .run();
        match result {
            Ok(_) => Ok(true),
            // 3: not running; 4: no usable data directory.
            Err(err) if matches!(err.exit_code(), Some(3) | Some(4)) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Connection settings for this cluster's Unix socket.
    pub fn socket_settings(&self, database: &str, user: &str, password: &Secret) -> DbSettings {
        DbSettings {
            host: self.socket_dir.to_string_lossy().into_owned(),
            port: self.port,
            database: database.to_string(),
            user: user.to_string(),
            password: password.clone(),
        }
    }
}

/// Writes a pgpass file at `path` (which must not exist; created 0600, as
/// libpq demands) that gives `password` for every server, database and
/// user; a client program finds it through `PGPASSFILE`, so the password is
/// never on its command line or in its environment. `\` and `:` are escaped
/// as the file format asks.
pub fn write_pgpass(path: &Path, password: &Secret) -> Result<()> {
    let bytes = password.expose();
    if bytes.iter().any(|byte| matches!(byte, b'\n' | b'\r')) {
        bail!("a database password with a line break cannot be written to a pgpass file");
    }
    let mut line = b"*:*:*:*:".to_vec();
    for &byte in bytes {
        if matches!(byte, b'\\' | b':') {
            line.push(b'\\');
        }
        line.push(byte);
    }
    line.push(b'\n');
    write_private_file(path, &line, &ServiceUser::current())
}

/// Creates `path` (which must not exist) with mode 0600, owned by `owner`.
fn write_private_file(path: &Path, contents: &[u8], owner: &ServiceUser) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid))
        .with_context(|| format!("giving {} to {}", path.display(), owner.name))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
}

/// The last `lines` lines of a server log, for an error message.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A value for `postgresql.conf`, single-quoted.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Why a connection could not be made, for callers that act on the cause.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The server refused the password (SQLSTATE 28P01).
    #[error(
        "the database at {target} refused the password for user {user}: check Password in odbc.ini (it is read exactly as written, '%' and all)"
    )]
    WrongPassword {
        /// host:port/database.
        target: String,
        /// The account.
        user: String,
    },
    /// Nothing answered, or the server is starting or shutting down.
    #[error("no database server answers at {target}: start it (as the imss user), then run again")]
    NotReachable {
        /// host:port/database.
        target: String,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Anything else the server said.
    #[error("connecting to the database at {target} as {user}")]
    Other {
        /// host:port/database.
        target: String,
        /// The account.
        user: String,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl DbSettings {
    /// host:port/database, for messages.
    pub fn target(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }
}

/// Connects with `settings`; the connection's driver runs on the current
/// tokio runtime until the client is dropped.
pub async fn connect(settings: &DbSettings) -> Result<Client, ConnectError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&settings.host)
        .port(settings.port)
        .dbname(&settings.database)
        .user(&settings.user)
        .password(settings.password.expose())
        .application_name("imss-upgrade")
        .connect_timeout(Duration::from_secs(10));
    let target = settings.target();
    let (client, connection) = config.connect(NoTls).await.map_err(|source| {
        if source.code() == Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD) {
            ConnectError::WrongPassword {
                target: target.clone(),
                user: settings.user.clone(),
            }
        } else if source.code().is_none()
            || source.code() == Some(&tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW)
        {
            ConnectError::NotReachable {
                target: target.clone(),
                source,
            }
        } else {
            ConnectError::Other {
                target: target.clone(),
                user: settings.user.clone(),
                source,
            }
        }
    })?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "database connection closed");
        }
    });
    Ok(client)
}

/// Bytes handed to the target server at a time. `COPY TO STDOUT` yields one
/// message per row; forwarding each on its own costs more than the copy.
const COPY_PIPE_CHUNK: usize = 256 * 1024;

/// Copies rows from one server to another through a raw binary `COPY` pipe:
/// `copy_out_sql` (`COPY … TO STDOUT (FORMAT binary)`) on `source` feeds
/// `copy_in_sql` (`COPY … FROM STDIN (FORMAT binary)`) on `target`, in
/// large chunks, without decoding a row. Returns the rows the target took.
pub async fn copy_pipe(
    source: &Client,
    copy_out_sql: &str,
    target: &Client,
    copy_in_sql: &str,
) -> Result<u64> {
    use futures_util::{SinkExt, TryStreamExt};
    let rows_out = source
        .copy_out(copy_out_sql)
        .await
        .with_context(|| format!("starting {copy_out_sql}"))?;
    let sink = target
        .copy_in::<_, bytes::Bytes>(copy_in_sql)
        .await
        .with_context(|| format!("starting {copy_in_sql}"))?;
    futures_util::pin_mut!(rows_out);
    futures_util::pin_mut!(sink);
    let mut pending = bytes::BytesMut::with_capacity(COPY_PIPE_CHUNK * 2);
    while let Some(row) = rows_out
        .try_next()
        .await
        .context("reading from the source server")?
    {
        pending.extend_from_slice(&row);
        if pending.len() >= COPY_PIPE_CHUNK {
            sink.send(pending.split().freeze())
                .await
                .context("writing to the target server")?;
        }
    }
    if !pending.is_empty() {
        sink.send(pending.freeze())
            .await
            .context("writing to the target server")?;
    }
    sink.finish()
        .await
        .context("finishing the copy on the target server")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_pgpass_file_is_private_and_escapes_backslash_and_colon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        write_pgpass(&path, &Secret::new("a:b\\c%(x)s;#= \"'")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "*:*:*:*:a\\:b\\\\c%(x)s;#= \"'\n"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Never over an existing file; never a line break.
        assert!(write_pgpass(&path, &Secret::new("x")).is_err());
        assert!(write_pgpass(&dir.path().join("other"), &Secret::new("a\nb")).is_err());
    }
}
