//! `imss-upgrade status`: what is installed, as the vendor's step 3 and
//! step 5 screens show it (components; database with the password masked).

use anyhow::Result;
use serde::Serialize;

use crate::files::imss_ini::ProductInfo;
use crate::files::odbc_ini::{DatabaseView, DbSettings};
use crate::support::exit;
use crate::support::root::Root;

/// What `status` reports.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Product version from imss.ini.
    pub version: String,
    /// Build from imss.ini.
    pub build: u32,
    /// Installed components, by display name.
    pub components: Vec<&'static str>,
    /// The admin database.
    pub database: DatabaseView,
}

/// Prints the status of the server under `root`.
pub async fn run(root: &Root, json: bool) -> Result<u8> {
    let product = ProductInfo::load(root)?;
    let database = DbSettings::load(root)?;
    let status = Status {
        version: product.version.clone(),
        build: product.build,
        components: product.component_names(),
        database: database.view(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!("IMSS {} build {}", status.version, status.build);
        println!("\nInstalled components:");
        for name in &status.components {
            println!("    {name}");
        }
        print!("\n{}", status.database);
    }
    Ok(exit::OK)
}
