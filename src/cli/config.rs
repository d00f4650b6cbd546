//! `imss-upgrade config export|import`: the seed's other path, carrying the
//! 7.1 settings to a fresh 9.1 server as `imsx_config.dat`.

use std::path::Path;

use anyhow::{Context, Result, ensure};

use crate::files::imss_ini::ProductInfo;
use crate::files::odbc_ini::DbSettings;
use crate::migration::config_export;
use crate::support::constants::{SOURCE_VERSION, TARGET_VERSION};
use crate::support::exit;
use crate::support::root::Root;
use crate::system::pg;

/// Writes the configuration of the running 7.1 server under `root` to `file`.
pub async fn export(root: &Root, file: &Path) -> Result<u8> {
    let product = ProductInfo::load(root)?;
    ensure!(
        product.version == SOURCE_VERSION,
        "this server runs IMSS {}: config export reads a {SOURCE_VERSION} server",
        product.version
    );
    let (client, settings) = pg::connect_as_configured(&DbSettings::load(root)?).await?;
    println!("reading the configuration as {}", settings.describe());
    let export = config_export::export(&client, &product).await?;
    config_export::write(file, &export)?;
    println!(
        "configuration of IMSS {SOURCE_VERSION} build {} written to {}",
        product.build,
        file.display()
    );
    Ok(exit::OK)
}

/// Replaces the configuration of the running 9.1 server under `root` with
/// the one in `file`.
pub async fn import(root: &Root, file: &Path) -> Result<u8> {
    let product = ProductInfo::load(root)?;
    ensure!(
        product.version == TARGET_VERSION,
        "this server runs IMSS {}: config import writes to a {TARGET_VERSION} server",
        product.version
    );
    let export = config_export::read(file)?;
    let (mut client, settings) = pg::connect_as_configured(&DbSettings::load(root)?).await?;
    println!("writing the configuration as {}", settings.describe());
    let counts = config_export::import(&mut client, &export)
        .await
        .with_context(|| format!("importing {}", file.display()))?;
    println!("configuration from {} imported: {counts:?}", file.display());
    Ok(exit::OK)
}
