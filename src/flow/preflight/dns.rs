//! DNS ports (seed item 6): who listens on 53 and 953 now, and which ports
//! the bundled BIND will take instead.

use anyhow::Result;

use super::{Facts, Finding, Severity};
use crate::flow::context::Context;
use crate::system::bind;
use crate::system::listeners;

/// Reports listeners on the DNS and rndc ports and the ports BIND will use.
pub async fn check(_ctx: &Context, _facts: &mut Facts, out: &mut Vec<Finding>) -> Result<()> {
    let found = listeners::listeners_on(&bind::candidate_ports())?;
    let ports = bind::choose_ports(&found);
    let standard: Vec<String> = found
        .iter()
        .filter(|l| {
            l.port == crate::support::constants::DNS_PORT
                || l.port == crate::support::constants::RNDC_PORT
        })
        .map(|l| l.to_string())
        .collect();
    if standard.is_empty() {
        out.push(Finding::new(
            "dns-ports-free",
            Severity::Info,
            "DNS ports are free",
            format!(
                "nothing listens on 53 or 953; the bundled BIND will use {} and rndc {}",
                ports.dns, ports.rndc
            ),
            "",
        ));
    } else {
        out.push(Finding::new(
            "dns-port-in-use",
            Severity::Warning,
            "A DNS server already runs on this host",
            format!(
                "listening now: {}\nthe bundled BIND will use port {} and rndc port {} instead, checked with named-checkconf",
                standard.join(", "),
                ports.dns,
                ports.rndc
            ),
            "nothing to do: the upgrade configures the other ports; the existing DNS server is left alone",
        ));
    }
    Ok(())
}
