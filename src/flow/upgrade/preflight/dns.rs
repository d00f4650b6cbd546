//! DNS ports (seed item 6): who listens on 53 and 953 now, and which ports
//! the bundled BIND will take instead.

use anyhow::Result;

use super::{Facts, Finding, Severity};
use crate::flow::context::Context;
use crate::system::bind;
use crate::system::listeners;

/// Reports listeners on the bundled BIND's ports and the pair it will
/// use; no free pair at all is an inhibitor.
pub async fn check(_ctx: &Context, _facts: &mut Facts, out: &mut Vec<Finding>) -> Result<()> {
    let found = listeners::listeners_on(&bind::candidate_ports())?;
    let choice = match bind::choose_ports(&found) {
        Ok(choice) => choice,
        Err(no_pair) => {
            out.push(Finding::new(
                "dns-ports-exhausted",
                Severity::Inhibitor,
                "No ports are free for the bundled BIND",
                format!("{no_pair:#}"),
                "free one of the pairs listed (stop or move the program listening there), then run the upgrade again",
            ));
            return Ok(());
        }
    };
    let ports = choice.ports;
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
                "the bundled BIND will use {} and rndc {}: {}",
                ports.dns, ports.rndc, choice.reason
            ),
            "",
        ));
    } else {
        out.push(Finding::new(
            "dns-port-in-use",
            Severity::Warning,
            "A DNS server already runs on this host",
            format!(
                "listening now: {}\nthe bundled BIND will use port {} and rndc port {} instead ({}), checked with named-checkconf",
                standard.join(", "),
                ports.dns,
                ports.rndc,
                choice.reason
            ),
            "nothing to do: the upgrade configures the other ports; the existing DNS server is left alone",
        ));
    }
    Ok(())
}
