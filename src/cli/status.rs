//! `imss-upgrade status`: what is installed, as the vendor's step 3 and
//! step 5 screens show it (components; database with the password masked).

use anyhow::Result;
use serde::Serialize;

use crate::files::imss_ini::ProductInfo;
use crate::files::odbc_ini::{DatabaseView, DbSettings};
use crate::flow::steps::switch::{self, BindChoice};
use crate::migration::probe::{self, InstalledComponent};
use crate::support::exit;
use crate::support::root::Root;
use crate::system::pg;

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
    /// Pattern files and engines with their versions, from the database
    /// (9.1 keeps 7.1's until its first update); absent when the database
    /// could not be read.
    pub pattern_and_engine_versions: Option<Vec<InstalledComponent>>,
    /// The bundled BIND's ports and why, once 9.1 is in place.
    pub bundled_bind: Option<BindChoice>,
    /// Why they could not be read, and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern_and_engine_versions_error: Option<String>,
}

/// Prints the status of the server under `root`.
pub async fn run(root: &Root, json: bool) -> Result<u8> {
    let product = ProductInfo::load(root)?;
    let database = DbSettings::load(root)?;
    let versions = installed_components(&database, &product.version).await;
    let status = Status {
        version: product.version.clone(),
        build: product.build,
        components: product.component_names(),
        database: database.view(),
        pattern_and_engine_versions: versions.as_ref().ok().cloned(),
        bundled_bind: switch::bind_choice(root)?,
        pattern_and_engine_versions_error: versions.as_ref().err().map(|err| format!("{err:#}")),
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
        if let Some(bind) = &status.bundled_bind {
            println!(
                "\nBundled BIND: DNS port {}, rndc port {} ({})",
                bind.dns_port, bind.rndc_port, bind.reason
            );
        }
        println!("\nPattern files and engines:");
        match (
            &status.pattern_and_engine_versions,
            &status.pattern_and_engine_versions_error,
        ) {
            (Some(list), _) => {
                for item in list {
                    println!("    {:<32} {}", item.component, item.version);
                }
            }
            (None, error) => println!("    not read: {}", error.as_deref().unwrap_or_default()),
        }
    }
    Ok(exit::OK)
}

/// The versions the database lists, or why they could not be read.
async fn installed_components(
    database: &DbSettings,
    version: &str,
) -> Result<Vec<InstalledComponent>> {
    let (client, _) = pg::connect_as_configured(database).await.map_err(|err| {
        anyhow::Error::new(err).context(format!(
            "the admin database at {}:{} does not answer: start IMSS (imssctl.sh start) and ask again",
            database.host, database.port
        ))
    })?;
    probe::installed_components(&client, version).await
}
