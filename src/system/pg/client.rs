//! Client connections: with the settings read from `odbc.ini`, each
//! reading of its password tried in turn, and the causes a caller acts on;
//! the pgpass file through which a client program gets the password.
//!
//! The password reaches the server through `tokio_postgres::Config::password`
//! and a client program through a 0600 pgpass file, never through argv or
//! the environment.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use thiserror::Error;
use tokio_postgres::{Client, NoTls};

use crate::files::odbc_ini::DbSettings;
use crate::support::account::ServiceUser;
use crate::support::secret::Secret;

/// Why a connection could not be made, for callers that act on the cause.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The server refused the password (SQLSTATE 28P01), in every reading
    /// tried.
    #[error(
        "the database at {target} refused the password for user {user} ({readings}): check Password in odbc.ini, \
         which psqlODBC reads with %XX as one byte and + as a space (a '%' is written %25, a '+' %2B)"
    )]
    WrongPassword {
        /// host:port/database.
        target: String,
        /// The account.
        user: String,
        /// How the password was read, each reading tried.
        readings: String,
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
                readings: settings.password_reading.describe().to_string(),
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

/// Connects with the settings read from `odbc.ini`, trying each reading of
/// its password in turn ([`DbSettings::password_readings`]); gives the
/// settings with the reading the server accepted.
pub async fn connect_as_configured(
    settings: &DbSettings,
) -> Result<(Client, DbSettings), ConnectError> {
    let mut refused = Vec::new();
    for reading in settings.password_readings() {
        let candidate = settings.with_reading(reading);
        match connect(&candidate).await {
            Ok(client) => return Ok((client, candidate)),
            Err(ConnectError::WrongPassword { readings, .. }) => refused.push(readings),
            Err(err) => return Err(err),
        }
    }
    Err(ConnectError::WrongPassword {
        target: settings.target(),
        user: settings.user.clone(),
        readings: refused.join("; then "),
    })
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
    let mut file = crate::support::fsutil::create_new_file(path, 0o600)
        .with_context(|| format!("creating {}", path.display()))?;
    std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid))
        .with_context(|| format!("giving {} to {}", path.display(), owner.name))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
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
