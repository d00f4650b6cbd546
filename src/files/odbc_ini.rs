//! `odbc.ini`: how the IMSS services reach the admin database, in the
//! layouts of 7.1 and 9.1, read and written as unixODBC and psqlODBC (the
//! driver the file names) read them: [`crate::files::ini`] in its unixODBC
//! dialect, the password through [`crate::files::odbc_password`].

use std::path::Path;

use anyhow::{Context, Result};

use crate::files::ini::{Dialect, IniFile};
use crate::files::odbc_password::{DsnPassword, PasswordReading, ReadingKind};
use crate::support::constants::ODBC_INI;
use crate::support::root::Root;
use crate::support::secret::Secret;

/// Reads the `odbc.ini` at `path` as unixODBC reads it.
pub fn load(path: &Path) -> Result<IniFile> {
    IniFile::load_as(path, Dialect::UnixOdbc)
}

/// Parses `text` as unixODBC reads an `odbc.ini`; `origin` names it in errors.
pub fn parse(text: &str, origin: &Path) -> Result<IniFile> {
    IniFile::parse_as(text, origin, Dialect::UnixOdbc)
}

/// How one version's `odbc.ini` names the admin database settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OdbcLayout {
    /// The data source section.
    pub section: &'static str,
    /// Key of the server address.
    pub host: &'static str,
    /// Key of the account.
    pub user: &'static str,
}

/// 7.1: `[IMSS]` with `Servername` and `UserName`.
pub const ODBC_71: OdbcLayout = OdbcLayout {
    section: "IMSS",
    host: "Servername",
    user: "UserName",
};

/// 9.1: `[imss_pgsql]` with psqlODBC's own data source keys, `Servername`
/// and `Username` (`Server` is a connection-string keyword: psqlODBC
/// ignores it in a data source and goes to the local Unix socket).
pub const ODBC_91: OdbcLayout = OdbcLayout {
    section: "imss_pgsql",
    host: "Servername",
    user: "Username",
};

/// The data source section of the 7.1 `odbc.ini`.
pub const ODBC_SECTION: &str = ODBC_71.section;

/// The 9.1 `odbc.ini` the switch writes; the settings go in with
/// [`DbSettings::store_as`].
pub const ODBC_INI_91_TEMPLATE: &str = "\
; IMSS 9.1 admin database connection, used by every IMSS service
[ODBC Data Sources]
imss_pgsql = PostgreSQL 15 driver for IMSS 9.1

[imss_pgsql]
Driver      = /opt/trend/imss/PostgreSQL/lib/psqlodbcw.so
Description = IMSS 9.1 admin database
Servername  =
Port        =
Database    =
Username    =
Password    =
SSLmode     = disable
";

/// How to reach the admin database, as `odbc.ini` says.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// Server address (`Servername`).
    pub host: String,
    /// Server port (`Port`).
    pub port: u16,
    /// Database name (`Database`).
    pub database: String,
    /// Account (`UserName`; 9.1: `Username`).
    pub user: String,
    /// The password sent to the server: the first of the readings of
    /// [`DbSettings::password_in_file`], or the one the server accepted
    /// ([`DbSettings::with_reading`]).
    pub password: Secret,
    /// How [`DbSettings::password`] was read from the file.
    pub password_reading: ReadingKind,
    /// `Password` exactly as the file holds it.
    pub password_in_file: DsnPassword,
}

impl DbSettings {
    /// Settings for `password`, held in a file as psqlODBC's setup writes it.
    pub fn new(host: &str, port: u16, database: &str, user: &str, password: Secret) -> Self {
        Self {
            host: host.to_string(),
            port,
            database: database.to_string(),
            user: user.to_string(),
            password_in_file: DsnPassword::encode(&password),
            password,
            password_reading: ReadingKind::Decoded,
        }
    }

    /// Reads the settings from `odbc.ini` under `root`.
    pub fn load(root: &Root) -> Result<Self> {
        Self::load_from(&root.resolve(ODBC_INI)?)
    }

    /// Reads the settings from the `odbc.ini` at `path`.
    pub fn load_from(path: &Path) -> Result<Self> {
        Self::from_ini(&load(path)?)
    }

    /// Reads the settings from a parsed `odbc.ini` of 7.1 or 9.1 (told apart
    /// by their data source sections).
    pub fn from_ini(ini: &IniFile) -> Result<Self> {
        let layout = if ini.get(ODBC_91.section, "Port").is_some() {
            ODBC_91
        } else {
            ODBC_71
        };
        let section = layout.section;
        let port_text = ini.require(section, "Port")?;
        let port = port_text.trim().parse().with_context(|| {
            format!(
                "{}: Port in [{section}] is {port_text:?}, not a port number: correct it, then run again",
                ini.origin().display()
            )
        })?;
        let password_in_file = DsnPassword::as_written(ini.require(section, "Password")?);
        let first = password_in_file
            .readings()
            .into_iter()
            .next()
            .expect("a password has at least one reading");
        Ok(Self {
            host: ini.require(section, layout.host)?,
            port,
            database: ini.require(section, "Database")?,
            user: ini.require(section, layout.user)?,
            password: first.password,
            password_reading: first.kind,
            password_in_file,
        })
    }

    /// The readings of the file's password, in the order to try them
    /// ([`DsnPassword::readings`]).
    pub fn password_readings(&self) -> Vec<PasswordReading> {
        self.password_in_file.readings()
    }

    /// The same settings, sending the password of `reading`.
    pub fn with_reading(&self, reading: PasswordReading) -> Self {
        Self {
            password: reading.password,
            password_reading: reading.kind,
            ..self.clone()
        }
    }

    /// The `Password` value a file written now holds: the one read, byte for
    /// byte, where psqlODBC reads it as the password sent; otherwise the
    /// password encoded as psqlODBC's setup writes it, which it reads back.
    pub fn password_for_file(&self) -> DsnPassword {
        match self.password_in_file.decoded() {
            Some(decoded) if decoded == self.password => self.password_in_file.clone(),
            _ => DsnPassword::encode(&self.password),
        }
    }

    /// The 9.1 `odbc.ini` holding these settings; `origin` names it in errors.
    pub fn odbc_ini_91(&self, origin: &Path) -> Result<IniFile> {
        let mut ini = parse(ODBC_INI_91_TEMPLATE, origin)?;
        self.store_as(&mut ini, ODBC_91)?;
        Ok(ini)
    }

    /// The settings as people may see them: the password only as a mask.
    pub fn view(&self) -> DatabaseView {
        DatabaseView {
            address: self.host.clone(),
            port: self.port,
            database: self.database.clone(),
            user: self.user.clone(),
            password: self.password.masked(),
            password_reading: self.password_reading,
        }
    }

    /// One line for people: whom the settings reach, and how the password
    /// was read (masked, whatever its length).
    pub fn describe(&self) -> String {
        format!(
            "user {} at {}, password {} ({})",
            self.user,
            self.target(),
            self.password.masked(),
            self.password_reading.describe()
        )
    }

    /// host:port/database, for messages.
    pub fn target(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }

    /// Writes these settings into a 7.1 `ini` (the other keys stay as they are).
    pub fn store(&self, ini: &mut IniFile) -> Result<()> {
        self.store_as(ini, ODBC_71)
    }

    /// Writes these settings into `ini` with the keys of `layout`; the
    /// password as [`DbSettings::password_for_file`] has it.
    pub fn store_as(&self, ini: &mut IniFile, layout: OdbcLayout) -> Result<()> {
        let section = layout.section;
        ini.set(section, layout.host, &self.host)?;
        ini.set(section, "Port", &self.port.to_string())?;
        ini.set(section, "Database", &self.database)?;
        ini.set(section, layout.user, &self.user)?;
        let password = String::from_utf8(self.password_for_file().written().expose().to_vec())
            .context("the Password value of odbc.ini is not UTF-8 text")?;
        ini.set(section, "Password", &password)
    }
}

/// The admin database as shown to people (status, the preflight report):
/// the password only as a mask of fixed width.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DatabaseView {
    /// Server address.
    pub address: String,
    /// Server port.
    pub port: u16,
    /// Database name.
    pub database: String,
    /// Account.
    pub user: String,
    /// [`Secret::masked`]: the same whatever the password.
    pub password: String,
    /// How the password was read from `odbc.ini`.
    pub password_reading: ReadingKind,
}

/// The block the preflight report and `status` show, as the wizard's step 5
/// screen laid it out.
impl std::fmt::Display for DatabaseView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Admin database:")?;
        writeln!(f, "    Server address:      {}", self.address)?;
        writeln!(f, "    Server port:         {}", self.port)?;
        writeln!(f, "    Database name:       {}", self.database)?;
        writeln!(f, "    User name:           {}", self.user)?;
        writeln!(
            f,
            "    Password:            {} ({})",
            self.password,
            self.password_reading.describe()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_71(password_value: &str) -> DbSettings {
        let text = format!(
            "[IMSS]\r\nDriver = /opt/trend/imss/PostgreSQL/lib/psqlodbc.so\r\nServername = 127.0.0.1\r\n\
             Port = 5433\r\nDatabase = imss\r\nUserName = sa\r\nPassword = {password_value}\r\n"
        );
        DbSettings::from_ini(&parse(&text, Path::new("odbc.ini")).unwrap()).unwrap()
    }

    fn reread_91(settings: &DbSettings) -> (String, DbSettings) {
        let text = settings
            .odbc_ini_91(Path::new("odbc.ini"))
            .unwrap()
            .text()
            .to_string();
        let read = DbSettings::from_ini(&parse(&text, Path::new("odbc.ini")).unwrap()).unwrap();
        (text, read)
    }

    #[test]
    fn the_91_file_uses_only_keys_psqlodbc_reads_in_a_data_source() {
        let (text, read) = reread_91(&settings_71("plain"));
        let keys: Vec<&str> = text
            .lines()
            .skip_while(|line| *line != "[imss_pgsql]")
            .skip(1)
            .filter_map(|line| line.split_once('=').map(|(key, _)| key.trim()))
            .collect();
        assert_eq!(
            keys,
            [
                "Driver",
                "Description",
                "Servername",
                "Port",
                "Database",
                "Username",
                "Password",
                "SSLmode"
            ]
        );
        assert_eq!(
            (
                read.host.as_str(),
                read.port,
                read.database.as_str(),
                read.user.as_str()
            ),
            ("127.0.0.1", 5433, "imss", "sa")
        );
    }

    #[test]
    fn the_91_file_keeps_a_value_psqlodbc_reads_byte_for_byte() {
        for value in [
            "abc%2541def",
            "a%2bb",
            "Imss%2571%28sa%29s%3b%23%3d%22%27%5c+pass",
            "ab;cd#ef\"g'h\\",
            "\"quoted\"",
            "ends in a backslash\\",
        ] {
            let settings = settings_71(value);
            let (text, read) = reread_91(&settings);
            assert!(
                text.contains(&format!("Password    = {value}\n")),
                "{value}: {text}"
            );
            assert_eq!(read.password, settings.password, "{value}");
            assert_eq!(read.password_reading, ReadingKind::Decoded);
        }
    }

    #[test]
    fn unixodbc_keeps_quotes_and_a_closing_backslash() {
        let settings = settings_71("\"quoted\"");
        assert_eq!(settings.password, Secret::new("\"quoted\""));
        let settings = settings_71("ends in a backslash\\");
        assert_eq!(settings.password, Secret::new("ends in a backslash\\"));
        assert_eq!(settings.user, "sa", "the next line is a line of its own");
    }

    #[test]
    fn a_value_read_as_written_is_encoded_for_the_91_file() {
        let settings = settings_71("Imss%(sa)s");
        assert_eq!(settings.password_reading, ReadingKind::AsWritten);
        let (text, read) = reread_91(&settings);
        assert!(text.contains("Password    = Imss%25%28sa%29s\n"), "{text}");
        assert_eq!(read.password, Secret::new("Imss%(sa)s"));
        assert_eq!(read.password_reading, ReadingKind::Decoded);
    }
}
