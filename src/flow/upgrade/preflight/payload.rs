//! The upgrade package's payload: the 9.1 program tree the switch lays
//! down and the PostgreSQL 15 that creates and runs the 9.1 cluster. An
//! incomplete package passed preflight and failed the presync, whose undo
//! then failed on the same missing program; now every file of the
//! payload's list must be there with its hash, and PostgreSQL 15 must run,
//! before anything changes.

use anyhow::Result;

use super::{Facts, Finding, Severity};
use crate::files::payload_list;
use crate::flow::context::Context;
use crate::system::pg::PgInstall;

/// The PostgreSQL major version 9.1 bundles.
const TARGET_PG_MAJOR: &str = "15";

/// Inhibits when the payload is not whole or its PostgreSQL does not run.
pub async fn check(ctx: &Context, _facts: &mut Facts, out: &mut Vec<Finding>) -> Result<()> {
    let (payload, pg_bin) = (ctx.payload_dir.clone(), ctx.target_pg_bin.clone());
    let problems = ctx
        .unblock(move |_| {
            let mut problems = payload_list::check(&payload)?;
            match PgInstall::at(&pg_bin, "").and_then(|pg| pg.major_version()) {
                Ok(major) if major == TARGET_PG_MAJOR => {}
                Ok(major) => problems.push(format!(
                    "{} holds PostgreSQL {major}, not {TARGET_PG_MAJOR}",
                    pg_bin.display()
                )),
                Err(err) => problems.push(format!(
                    "PostgreSQL {TARGET_PG_MAJOR} in {} does not run: {}",
                    pg_bin.display(),
                    format!("{err:#}").trim_end_matches(": ")
                )),
            }
            Ok(problems)
        })
        .await?;
    if !problems.is_empty() {
        out.push(Finding::new(
            "payload-incomplete",
            Severity::Inhibitor,
            "The upgrade package's 9.1 payload is incomplete or damaged",
            format!("in {}: {}", ctx.payload_dir.display(), problems.join("; ")),
            "reinstall the upgrade package (dnf reinstall imss-upgrade-helpers), then run again",
        ));
    }
    Ok(())
}
