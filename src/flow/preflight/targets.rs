//! What the switch will create outside the program tree (the bundled
//! BIND's working directory, the 9.1 unit files) must not exist yet: the
//! switch never overwrites a file it did not write, and finding one there
//! during the downtime would only roll the upgrade back.

use anyhow::Result;

use super::{Facts, Finding, Severity};
use crate::flow::context::Context;
use crate::flow::layout;
use crate::system::systemd;

/// An inhibitor for each path the switch creates where something stands
/// already, a link (dangling or not) included.
pub async fn check(ctx: &Context, _facts: &mut Facts, out: &mut Vec<Finding>) -> Result<()> {
    for (on_server, entry) in layout::switch_targets_in_the_way(ctx, systemd::manages(&ctx.root))? {
        out.push(Finding::new(
            "switch-target-exists",
            Severity::Inhibitor,
            "A file the upgrade creates exists already",
            format!(
                "{} exists ({}); the switch creates it for 9.1",
                on_server.display(),
                entry.describe()
            ),
            format!(
                "move {} away (it is neither 7.1's nor the upgrade's), then run the upgrade again",
                on_server.display()
            ),
        ));
    }
    Ok(())
}
