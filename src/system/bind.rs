//! The bundled BIND (`named` and `rndc`) that 9.1 always installs and
//! starts (seed item 6: on a server that already runs a DNS server, its
//! ports collided and had to be changed by hand).

use serde::Serialize;

use crate::support::constants::{DNS_PORT, RNDC_PORT};
use crate::system::listeners::{Listener, Protocol};

/// Ports tried, in order, when the standard one is taken.
const DNS_FALLBACKS: [u16; 3] = [10053, 20053, 30053];
/// See [`DNS_FALLBACKS`].
const RNDC_FALLBACKS: [u16; 3] = [10953, 20953, 30953];

/// The ports the bundled BIND will use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BindPorts {
    /// `named`'s DNS port (TCP and UDP).
    pub dns: u16,
    /// `rndc`'s control port (TCP).
    pub rndc: u16,
}

/// The standard ports where nothing listens on them, else the first free
/// fallback.
pub fn choose_ports(listeners: &[Listener]) -> BindPorts {
    let taken = |port: u16, protocols: &[Protocol]| {
        listeners
            .iter()
            .any(|l| l.port == port && protocols.contains(&l.protocol))
    };
    let pick = |standard: u16, fallbacks: &[u16], protocols: &[Protocol]| {
        std::iter::once(standard)
            .chain(fallbacks.iter().copied())
            .find(|port| !taken(*port, protocols))
            .unwrap_or(fallbacks[fallbacks.len() - 1])
    };
    BindPorts {
        dns: pick(DNS_PORT, &DNS_FALLBACKS, &[Protocol::Tcp, Protocol::Udp]),
        rndc: pick(RNDC_PORT, &RNDC_FALLBACKS, &[Protocol::Tcp]),
    }
}

/// Every port [`choose_ports`] may pick, to ask who listens on them.
pub fn candidate_ports() -> Vec<u16> {
    let mut ports = vec![DNS_PORT, RNDC_PORT];
    ports.extend(DNS_FALLBACKS);
    ports.extend(RNDC_FALLBACKS);
    ports
}
