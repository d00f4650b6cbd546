//! `odbc.ini`: how the IMSS services reach the admin database, in the
//! layouts of 7.1 and 9.1, read and written through [`crate::files::ini`].

use anyhow::{Context, Result};

use crate::files::ini::IniFile;
use crate::support::constants::ODBC_INI;
use crate::support::root::Root;
use crate::support::secret::Secret;

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

/// 9.1: `[imss_pgsql]` with `Server` and `Username` (the PostgreSQL ODBC
/// driver's own keys).
pub const ODBC_91: OdbcLayout = OdbcLayout {
    section: "imss_pgsql",
    host: "Server",
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
Server      =
Port        =
Database    =
Username    =
Password    =
SSLMode     = disable
";

/// How to reach the admin database, as `odbc.ini` says.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// Server address (`Servername`; 9.1: `Server`).
    pub host: String,
    /// Server port (`Port`).
    pub port: u16,
    /// Database name (`Database`).
    pub database: String,
    /// Account (`UserName`; 9.1: `Username`).
    pub user: String,
    /// Password (`Password`), exactly as written.
    pub password: Secret,
}

impl DbSettings {
    /// Reads the settings from `odbc.ini` under `root`.
    pub fn load(root: &Root) -> Result<Self> {
        let path = root.resolve(ODBC_INI)?;
        Self::from_ini(&IniFile::load(&path)?)
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
        Ok(Self {
            host: ini.require(section, layout.host)?,
            port,
            database: ini.require(section, "Database")?,
            user: ini.require(section, layout.user)?,
            password: Secret::new(ini.require(section, "Password")?),
        })
    }

    /// The 9.1 `odbc.ini` holding these settings; `origin` names it in errors.
    pub fn odbc_ini_91(&self, origin: &std::path::Path) -> Result<IniFile> {
        let mut ini = IniFile::parse(ODBC_INI_91_TEMPLATE, origin)?;
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
        }
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
    /// password goes in byte for byte.
    pub fn store_as(&self, ini: &mut IniFile, layout: OdbcLayout) -> Result<()> {
        let section = layout.section;
        ini.set(section, layout.host, &self.host)?;
        ini.set(section, "Port", &self.port.to_string())?;
        ini.set(section, "Database", &self.database)?;
        ini.set(section, layout.user, &self.user)?;
        let password = String::from_utf8(self.password.expose().to_vec())
            .context("the database password is not UTF-8 text")?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_91_layout_carries_every_setting_and_the_password_byte_for_byte() {
        let password = "p%w;d#=\"q' \u{00e9}\\";
        let settings = DbSettings {
            host: "127.0.0.1".into(),
            port: 5433,
            database: "imss".into(),
            user: "sa".into(),
            password: Secret::new(password),
        };
        let ini = settings
            .odbc_ini_91(std::path::Path::new("odbc.ini"))
            .unwrap();
        let text = ini.text().to_string();
        assert!(
            text.contains("[imss_pgsql]") && !text.contains("Servername"),
            "{text}"
        );
        let read =
            DbSettings::from_ini(&IniFile::parse(&text, std::path::Path::new("odbc.ini")).unwrap())
                .unwrap();
        assert_eq!(read.password.expose(), password.as_bytes());
        assert_eq!(
            (read.host.as_str(), read.port, read.user.as_str()),
            ("127.0.0.1", 5433, "sa")
        );
    }
}
