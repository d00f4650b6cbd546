//! What the switch will create outside the program tree (the bundled
//! BIND's working directory, the 9.1 unit files) must not exist yet: the
//! switch never overwrites a file it did not write, and finding one there
//! during the downtime would only roll the upgrade back.

use anyhow::Result;

use super::{Facts, Finding, Severity};
use crate::flow::context::Context;
use crate::flow::layout;
use crate::system::systemd;

/// An inhibitor for each path the switch creates that exists already.
pub async fn check(ctx: &Context, _facts: &mut Facts, out: &mut Vec<Finding>) -> Result<()> {
    for path in layout::paths_the_switch_creates(systemd::manages(&ctx.root)) {
        let on_server = ctx.root.resolve(&path)?;
        if std::fs::symlink_metadata(&on_server).is_ok() {
            out.push(Finding::new(
                "switch-target-exists",
                Severity::Inhibitor,
                "A file the upgrade creates exists already",
                format!("{} exists; the switch creates it for 9.1", on_server.display()),
                format!(
                    "move {} away (it is neither 7.1's nor the upgrade's), then run the upgrade again",
                    on_server.display()
                ),
            ));
        }
    }
    Ok(())
}
