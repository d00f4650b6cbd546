//! `imss.ini`: the installed product's version, build and components.

use anyhow::{Context, Result};

use std::path::Path;

use crate::files::ini::IniFile;
use crate::support::constants::{COMPONENTS, IMSS_INI, TARGET_BUILD, TARGET_VERSION};
use crate::support::root::Root;

/// The 9.1 `imss.ini` before version, build and the carried sections.
const IMSS_INI_91_TEMPLATE: &str = "\
; IMSS 9.1 product settings
[general]
product = InterScan Messaging Security Suite
version =
build =
";

/// `imss.ini` sections that 9.1 keeps as 7.1 had them.
const CARRIED_SECTIONS: &[&str] = &[IMSS_COMPONENTS_SECTION, "ports"];

/// The 9.1 `imss.ini` for a server whose 7.1 `imss.ini` is `imss_71`: 9.1,
/// build 1195, the same components and ports. `origin` names it in errors.
pub fn imss_ini_91(imss_71: &IniFile, origin: &Path) -> Result<IniFile> {
    let mut imss = IniFile::parse(IMSS_INI_91_TEMPLATE, origin)?;
    imss.set(IMSS_GENERAL_SECTION, "version", TARGET_VERSION)?;
    imss.set(IMSS_GENERAL_SECTION, "build", &TARGET_BUILD.to_string())?;
    for section in CARRIED_SECTIONS {
        for (key, value) in imss_71.entries(section) {
            imss.set(section, &key, &value)?;
        }
    }
    Ok(imss)
}

/// The section of `imss.ini` with version and build.
pub const IMSS_GENERAL_SECTION: &str = "general";

/// The section of `imss.ini` listing installed components (`key = yes|no`).
pub const IMSS_COMPONENTS_SECTION: &str = "components";

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
