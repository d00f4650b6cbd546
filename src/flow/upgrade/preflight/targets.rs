//! What the switch will create outside the program tree (the bundled
//! BIND's working directory, the 9.1 unit files) must not exist yet: the
//! switch never overwrites a file it did not write, and finding one there
//! during the downtime would only roll the upgrade back. And the 7.1 data
//! directory must not be a link root did not make: `/var/imss` is the
//! service account's, and the upgrade moves what that link leads to.

use anyhow::Result;

use super::{Facts, Finding, Severity};
use crate::flow::context::Context;
use crate::support::no_follow;
use crate::system::systemd;

/// An inhibitor for each path the upgrade creates where something stands
/// already, a link (dangling or not) included: the switch's, and the
/// directory the presync stages the 9.1 cluster in (a run that was rolled
/// back removed it).
pub async fn check(ctx: &Context, _facts: &mut Facts, out: &mut Vec<Finding>) -> Result<()> {
    let mut in_the_way = ctx
        .layout
        .switch_targets_in_the_way(systemd::manages(&ctx.root))?;
    let staged = ctx.root.resolve_parent(ctx.layout.staged_91_data_dir()?)?;
    if let Some(entry) = no_follow::entry_at(&staged)? {
        in_the_way.push((staged, entry));
    }
    for (on_server, entry) in in_the_way {
        out.push(Finding::new(
            "switch-target-exists",
            Severity::Inhibitor,
            "A file the upgrade creates exists already",
            format!(
                "{} exists ({}); the upgrade creates it for 9.1",
                on_server.display(),
                entry.describe()
            ),
            format!(
                "move {} away (it is neither 7.1's nor the upgrade's), then run the upgrade again",
                on_server.display()
            ),
        ));
    }
    if let Some((link, entry)) = ctx.layout.untrusted_data_dir_link()? {
        out.push(Finding::new(
            "data-dir-link-untrusted",
            Severity::Inhibitor,
            "The 7.1 data directory is a link root did not make",
            format!(
                "{} is {}; the service account owns its directory and could have planted it",
                link.display(),
                entry.describe()
            ),
            format!(
                "if the data directory was moved on purpose, make the link again as root \
                 (ln -sfn TARGET {}); otherwise put the data directory back in its place; then \
                 run the upgrade again",
                link.display()
            ),
        ));
    }
    Ok(())
}
