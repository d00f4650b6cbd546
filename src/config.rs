//! Typed views of the two product ini files: `odbc.ini` (how to reach the
//! admin database) and `imss.ini` (version, build, installed components).

use anyhow::{Context, Result};

use crate::constants::{COMPONENTS, IMSS_INI, ODBC_INI};
use crate::ini::IniFile;
use crate::root::Root;
use crate::secret::Secret;

/// The data source section of `odbc.ini` that IMSS connects with.
pub const ODBC_SECTION: &str = "IMSS";

/// The section of `imss.ini` with version and build.
pub const IMSS_GENERAL_SECTION: &str = "general";

/// The section of `imss.ini` listing installed components (`key = yes|no`).
pub const IMSS_COMPONENTS_SECTION: &str = "components";

/// How to reach the admin database, as `odbc.ini` says.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// Server address (`Servername`).
    pub host: String,
    /// Server port (`Port`).
    pub port: u16,
    /// Database name (`Database`).
    pub database: String,
    /// Account (`UserName`).
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

    /// Reads the settings from a parsed `odbc.ini`.
    pub fn from_ini(ini: &IniFile) -> Result<Self> {
        let port_text = ini.require(ODBC_SECTION, "Port")?;
        let port = port_text.trim().parse().with_context(|| {
            format!(
                "{}: Port in [{ODBC_SECTION}] is {port_text:?}, not a port number: correct it, then run again",
                ini.origin().display()
            )
        })?;
        Ok(Self {
            host: ini.require(ODBC_SECTION, "Servername")?,
            port,
            database: ini.require(ODBC_SECTION, "Database")?,
            user: ini.require(ODBC_SECTION, "UserName")?,
            password: Secret::new(ini.require(ODBC_SECTION, "Password")?),
        })
    }

    /// Writes these settings into `ini` (the other keys stay as they are).
    pub fn store(&self, ini: &mut IniFile) -> Result<()> {
        ini.set(ODBC_SECTION, "Servername", &self.host)?;
        ini.set(ODBC_SECTION, "Port", &self.port.to_string())?;
        ini.set(ODBC_SECTION, "Database", &self.database)?;
        ini.set(ODBC_SECTION, "UserName", &self.user)?;
        let password = String::from_utf8(self.password.expose().to_vec())
            .context("the database password is not UTF-8 text")?;
        ini.set(ODBC_SECTION, "Password", &password)
    }
}

/// What `imss.ini` says about the installed product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductInfo {
    /// `7.1` or `9.1`.
    pub version: String,
    /// The build number (1808 is 7.1 SP2 Patch 1).
    pub build: u32,
    /// The keys of the installed components (see [`COMPONENTS`]), in that order.
    pub components: Vec<&'static str>,
}

impl ProductInfo {
    /// Reads `imss.ini` under `root`.
    pub fn load(root: &Root) -> Result<Self> {
        let path = root.resolve(IMSS_INI)?;
        Self::from_ini(&IniFile::load(&path)?)
    }

    /// Reads a parsed `imss.ini`.
    pub fn from_ini(ini: &IniFile) -> Result<Self> {
        let build_text = ini.require(IMSS_GENERAL_SECTION, "build")?;
        let build = build_text.trim().parse().with_context(|| {
            format!(
                "{}: build in [{IMSS_GENERAL_SECTION}] is {build_text:?}, not a build number",
                ini.origin().display()
            )
        })?;
        let components = COMPONENTS
            .iter()
            .filter(|(key, _)| {
                ini.get(IMSS_COMPONENTS_SECTION, key)
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("yes"))
            })
            .map(|(key, _)| *key)
            .collect();
        Ok(Self {
            version: ini
                .require(IMSS_GENERAL_SECTION, "version")?
                .trim()
                .to_string(),
            build,
            components,
        })
    }

    /// The scanner's SMTP port (`smtp` in `[ports]` of `imss.ini`; 25 when
    /// the file does not say).
    pub fn smtp_port(root: &Root) -> Result<u16> {
        let path = root.resolve(IMSS_INI)?;
        let ini = IniFile::load(&path)?;
        match ini.get("ports", "smtp") {
            None => Ok(25),
            Some(text) => text.trim().parse().with_context(|| {
                format!(
                    "{}: smtp in [ports] is {text:?}, not a port number",
                    path.display()
                )
            }),
        }
    }

    /// The display names of the installed components, as the vendor's step 3
    /// screen lists them.
    pub fn component_names(&self) -> Vec<&'static str> {
        COMPONENTS
            .iter()
            .filter(|(key, _)| self.components.contains(key))
            .map(|(_, name)| *name)
            .collect()
    }
}
