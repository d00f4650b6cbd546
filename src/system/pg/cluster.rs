//! A database cluster as the upgrade sets it up and starts it: the
//! installation's programs, `initdb` as the service user, and `postgres`
//! started directly with an argument vector and a configuration file of
//! that start written beside the data directory.
//!
//! The superuser's password reaches `initdb` in a file that exists in
//! memory only, never through argv or the environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::server::{
    PID_FILE_STATUS_LINE, StopMode, is_postgres, remove_stale_pid_file, server_running, stop_server,
};
use crate::files::odbc_ini::DbSettings;
use crate::support::account::ServiceUser;
use crate::support::cmd::Cmd;
use crate::support::fsutil::atomic_write_as;
use crate::support::logging::events;
use crate::support::no_follow::{self, EntryKind};
use crate::support::secret::Secret;

/// A PostgreSQL installation: a directory with `bin/initdb` and
/// `bin/postgres`.
#[derive(Debug, Clone)]
pub struct PgInstall {
    bin_dir: PathBuf,
}

impl PgInstall {
    /// The installation whose programs are in `bin_dir`. `install_hint` says
    /// how to get it, for the error when it is not there.
    pub fn at(bin_dir: impl AsRef<Path>, install_hint: &str) -> Result<Self> {
        let bin_dir = bin_dir.as_ref().to_path_buf();
        for program in ["initdb", "postgres"] {
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
    /// The server log file (next to the data directory, so a snapshot of the
    /// data directory does not carry it along).
    pub fn log_file(&self) -> PathBuf {
        self.beside_data_dir(".log")
    }

    /// The configuration file a start runs with: it includes the data
    /// directory's own `postgresql.conf`, then says where this start
    /// listens and any settings of this start. Rewritten before each start,
    /// next to the data directory, so that the data directory itself (7.1's
    /// in the backup, above all) is never written to for a start.
    pub fn start_config_file(&self) -> PathBuf {
        self.beside_data_dir(".conf")
    }

    fn beside_data_dir(&self, suffix: &str) -> PathBuf {
        let mut name = self
            .data_dir
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(suffix);
        self.data_dir.with_file_name(name)
    }

    /// Gives the (new, empty) data directory to the cluster's account, as
    /// `initdb` needs it (0700), on a handle: it is in `/var/imss`, where
    /// that account could have put a link in its place.
    pub fn take_ownership_of_data_dir(&self) -> Result<()> {
        no_follow::open_dir(&self.data_dir)?
            .set_owner_and_mode(0o700, Some((self.owner.uid, self.owner.gid)))
            .with_context(|| format!("giving {} to {}", self.data_dir.display(), self.owner.name))
    }

    /// Creates the data directory with `initdb`, password authentication for
    /// every connection, and this cluster's address, port and socket in its
    /// own `postgresql.conf`: where it listens when it is started as it is.
    pub fn initdb(&self, options: &InitOptions<'_>) -> Result<()> {
        let mut password_line = options.password.expose().to_vec();
        password_line.push(b'\n');
        let password_line = Secret::new(password_line);
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
            // A file initdb opens by name, which exists in memory only:
            // nothing of the password is ever on a disk, even if either
            // process is killed.
            .arg("--pwfile=/dev/stdin")
            .stdin_secret_file(&password_line)
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

        let conf_path = self.data_dir.join("postgresql.conf");
        let mut conf = std::fs::read(&conf_path)
            .with_context(|| format!("reading {}", conf_path.display()))?;
        conf.extend_from_slice(b"\n# Added by imss-upgrade\n");
        conf.extend_from_slice(self.placement_settings().as_bytes());
        for (name, value) in options.settings {
            conf.extend_from_slice(format!("{name} = {value}\n").as_bytes());
        }
        atomic_write_as(
            &conf_path,
            &conf,
            0o600,
            Some((self.owner.uid, self.owner.gid)),
        )
    }

    /// `port`, `listen_addresses` and `unix_socket_directories` as
    /// configuration lines.
    fn placement_settings(&self) -> String {
        format!(
            "port = {}\nlisten_addresses = {}\nunix_socket_directories = {}\n",
            self.port,
            conf_quote(&self.listen_address),
            conf_quote(&socket_directory_item(&self.socket_dir)),
        )
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) -> Result<()> {
        self.start_with(&[])
    }

    /// Starts the server with extra settings for this start (for example a
    /// read-only start from the backup directory), and waits until it
    /// accepts connections.
    ///
    /// `postgres` is started directly, with an argument vector: `pg_ctl
    /// start` hands its data directory, log file and `-o` options to
    /// `/bin/sh` inside double quotes, which a `$`, a backquote or a double
    /// quote in a path under `--root` would break. Where the server listens
    /// is this struct's to say, whatever the data directory's own
    /// configuration was written with: it goes, with `settings`, into
    /// [`Cluster::start_config_file`].
    pub fn start_with(&self, settings: &[(&str, &str)]) -> Result<()> {
        self.remove_stale_lock_files()?;
        let own_conf = self.data_dir.join("postgresql.conf");
        let mut conf = format!(
            "# Written by imss-upgrade before this start of the cluster in the directory\n\
             # beside it: its own configuration, then where it listens for this start.\n\
             include = {}\n",
            conf_quote(&own_conf.to_string_lossy())
        );
        conf.push_str(&self.placement_settings());
        for (name, value) in settings {
            conf.push_str(&format!("{name} = {}\n", conf_quote(value)));
        }
        let conf_path = self.start_config_file();
        atomic_write_as(&conf_path, conf.as_bytes(), 0o640, self.start_file_owner())?;
        let log = self.log_file();
        let log_file = self.open_log_file()?;
        let log_end = log_file
            .metadata()
            .with_context(|| format!("reading {}", log.display()))?
            .len();
        let mut config_arg = std::ffi::OsString::from("config_file=");
        config_arg.push(&conf_path);
        let mut server = Cmd::new(self.install.program("postgres"))
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-c")
            .arg(config_arg)
            .current_dir(self.data_dir.parent().unwrap_or(Path::new("/")))
            .as_user(&self.owner)
            .spawn_daemon_into(
                log_file
                    .try_clone()
                    .with_context(|| format!("opening {}", log.display()))?,
                &log,
            )
            .with_context(|| format!("starting PostgreSQL on {}", self.data_dir.display()))?;
        if let Err(err) = self.wait_until_ready(&mut server) {
            return Err(err.context(format!(
                "starting PostgreSQL on {}; the end of its log {}:\n{}",
                self.data_dir.display(),
                log.display(),
                log_tail(&log_file, log_end, 8)
            )));
        }
        // The server outlives this call; a thread reaps it when it exits.
        std::thread::spawn(move || server.wait());
        tracing::info!(
            message_id = events::DATABASE_STARTED,
            imss_data_dir = %self.data_dir.display(),
            imss_port = self.port,
            "PostgreSQL started"
        );
        Ok(())
    }

    /// Starts the server as [`Cluster::start_with`] does, on its Unix socket
    /// alone, with a host-based authentication file of this start that
    /// trusts every connection there ([`Cluster::private_hba_file`]): for a
    /// cluster the upgrade starts on a socket in the backup directory, which
    /// only root and the service account reach (the backup directory is
    /// root's, 0710 to the account's group; the socket directory is the
    /// account's, 0700), and the account owns the data directory anyway.
    /// No password is asked for, so one changed on either side since the
    /// upgrade (9.1's console changes `sa`'s in the database and in 9.1's
    /// `odbc.ini`; the 7.1 cluster in the backup keeps the old one) does not
    /// lock the upgrade out of either cluster. Connect with
    /// [`Cluster::private_socket_settings`].
    ///
    /// Refused for a cluster that listens on TCP, or whose socket directory
    /// another account can reach.
    pub fn start_private_with(&self, settings: &[(&str, &str)]) -> Result<()> {
        if !self.listen_address.is_empty() {
            bail!(
                "PostgreSQL on {} would listen on {} too: it is started without passwords only \
                 on a socket the upgrade alone reaches. This is a defect of the upgrade; \
                 contact support",
                self.data_dir.display(),
                self.listen_address
            );
        }
        let sockets = no_follow::entry_at(&self.socket_dir)?;
        let private = sockets.as_ref().is_some_and(|entry| {
            entry.kind == EntryKind::Directory
                && entry.uid == self.owner.uid
                && entry.mode & 0o077 == 0
        });
        if !private {
            bail!(
                "{} is not a directory of {}'s that only it can reach ({}): PostgreSQL on {} is \
                 started without passwords only on a socket there; run this again, which makes \
                 it so",
                self.socket_dir.display(),
                self.owner.name,
                sockets.map_or_else(|| "absent".to_string(), |entry| entry.describe()),
                self.data_dir.display()
            );
        }
        let hba = self.private_hba_file();
        atomic_write_as(
            &hba,
            b"# Written by imss-upgrade for a start on a socket only the upgrade reaches.\n\
              local all all trust\n",
            0o640,
            self.start_file_owner(),
        )?;
        let hba_file = hba.to_string_lossy().into_owned();
        let mut all = settings.to_vec();
        all.push(("hba_file", &hba_file));
        self.start_with(&all)
    }

    /// Owner and group of the files a start writes beside the data
    /// directory (mode 0640): this process's user, and the server
    /// account's group, through which the server reads them; nobody else
    /// needs to. `None` when the server runs as this process's user.
    fn start_file_owner(&self) -> Option<(u32, u32)> {
        (!self.owner.is_current()).then_some((nix::unistd::getuid().as_raw(), self.owner.gid))
    }

    /// The host-based authentication file of a [`Cluster::start_private_with`]
    /// start, next to the data directory as [`Cluster::start_config_file`].
    pub fn private_hba_file(&self) -> PathBuf {
        self.beside_data_dir(".hba.conf")
    }

    /// Removes the lock files a server killed with SIGKILL (or a power
    /// loss) left: `postmaster.pid` when no process works in the data
    /// directory, and the socket's lock when the process it names is gone
    /// or is no PostgreSQL server. PostgreSQL itself refuses to start while
    /// the pid in either is any live process, a zombie not reaped yet or,
    /// after a reboot, an unrelated program that got the same pid.
    fn remove_stale_lock_files(&self) -> Result<()> {
        remove_stale_pid_file(&self.data_dir)?;
        // The socket directory may be in `/var/imss`: reached through a
        // handle, so that no link planted there leads root to remove
        // another server's lock.
        let sockets = match no_follow::open_dir(&self.socket_dir) {
            Ok(dir) => dir,
            Err(_) if std::fs::symlink_metadata(&self.socket_dir).is_err() => return Ok(()),
            Err(err) => return Err(err),
        };
        let socket = format!(".s.PGSQL.{}", self.port);
        let socket_lock = format!("{socket}.lock");
        let holder = sockets
            .read_file(&socket_lock)
            .ok()
            .flatten()
            .and_then(|bytes| {
                String::from_utf8_lossy(&bytes)
                    .lines()
                    .next()?
                    .trim()
                    .parse::<i64>()
                    .ok()
            })
            .and_then(|pid| u32::try_from(pid.unsigned_abs()).ok());
        if let Some(pid) = holder
            && !is_postgres(pid)
        {
            tracing::info!(
                "removing {}, left by a server that no longer runs",
                sockets.join(&socket_lock).display()
            );
            sockets.remove_file(&socket_lock)?;
            sockets.remove_file(&socket)?;
        }
        Ok(())
    }

    /// Waits until the postmaster `server` says in its pid file that it is
    /// ready (as `pg_ctl -w` does), or fails when it exits first.
    fn wait_until_ready(&self, server: &mut std::process::Child) -> Result<()> {
        let pid_file = self.data_dir.join("postmaster.pid");
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = server.try_wait().context("waiting for postgres")? {
                bail!("postgres exited ({status}) before it accepted connections");
            }
            if let Ok(text) = std::fs::read_to_string(&pid_file) {
                let lines: Vec<&str> = text.lines().collect();
                let ours =
                    lines.first().and_then(|l| l.trim().parse::<u32>().ok()) == Some(server.id());
                let status = lines.get(PID_FILE_STATUS_LINE).map(|l| l.trim());
                if ours && matches!(status, Some("ready") | Some("standby")) {
                    return Ok(());
                }
            }
            if std::time::Instant::now() > deadline {
                // Not left running half-started: the caller sees the failure.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(server.id() as i32),
                    nix::sys::signal::Signal::SIGQUIT,
                );
                let _ = server.wait();
                bail!(
                    "postgres did not accept connections within {} s",
                    START_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server account must be able to append to its log, whoever owns
    /// the directory it is in.
    /// The log sits beside the data directory, where the server account
    /// can write (`/var/imss`): it is opened as `no_follow` opens files
    /// there, so a link or FIFO planted in its place is never written
    /// through, and the start reads its end from this same handle.
    fn open_log_file(&self) -> Result<std::fs::File> {
        let (dir, name) = no_follow::open_parent(&self.log_file())?;
        dir.open_append_owned(&name, 0o640, (self.owner.uid, self.owner.gid))
    }

    /// Stops the server and waits until it is down. Stopping a server that
    /// is not running is not an error. Needs no program of the
    /// installation (see [`stop_server`]).
    pub fn stop(&self, mode: StopMode) -> Result<()> {
        if stop_server(&self.data_dir, mode)? {
            tracing::info!(
                message_id = events::DATABASE_STOPPED,
                imss_data_dir = %self.data_dir.display(),
                "PostgreSQL stopped"
            );
        }
        Ok(())
    }

    /// Whether a server is running on this data directory.
    pub fn is_running(&self) -> Result<bool> {
        Ok(server_running(&self.data_dir))
    }

    /// Settings to connect on this cluster's socket to a server started
    /// with [`Cluster::start_private_with`], which asks for no password:
    /// none is held.
    pub fn private_socket_settings(&self, database: &str, user: &str) -> DbSettings {
        self.socket_settings(database, user, &Secret::new(Vec::new()))
    }

    /// Connection settings for this cluster's Unix socket.
    pub fn socket_settings(&self, database: &str, user: &str, password: &Secret) -> DbSettings {
        DbSettings::new(
            &self.socket_dir.to_string_lossy(),
            self.port,
            database,
            user,
            password.clone(),
        )
    }
}

/// How long a server may take to accept connections (`pg_ctl -t`'s role).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// One directory of `unix_socket_directories`, double-quoted as the server
/// splits that list (a `"` inside doubled).
fn socket_directory_item(dir: &Path) -> String {
    format!("\"{}\"", dir.to_string_lossy().replace('"', "\"\""))
}

/// The last `lines` lines this start appended to its log (from `from`,
/// where the log ended before it), read from the handle it was opened as.
fn log_tail(log: &std::fs::File, from: u64, lines: usize) -> String {
    use std::os::unix::fs::FileExt;
    let end = log.metadata().map_or(from, |meta| meta.len());
    // A server that fails to start writes a few lines; 64 KiB holds them.
    let start = from.max(end.saturating_sub(64 * 1024));
    let mut bytes = vec![0; usize::try_from(end - start).unwrap_or(0)];
    let read = log.read_at(&mut bytes, start).unwrap_or(0);
    let text = String::from_utf8_lossy(&bytes[..read]);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A value for `postgresql.conf`: single-quoted, with a quote doubled and
/// a backslash escaped (the file's string syntax reads `\` escapes).
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}
