//! Who listens on a port on this machine, and which process that is, read
//! from `/proc` (preflight: the ports the bundled BIND would take). Reads
//! only; binds nothing.
//!
//! Always the host's `/proc`, never one under `--root`: a root directory has
//! no processes. The sockets come from `/proc/net/{tcp,tcp6,udp,udp6}` (this
//! process's network namespace); the owner of a socket is the process with
//! a file descriptor linking to `socket:[INODE]`, which only root can see
//! for other users' processes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// `/proc/net/tcp*` state of a listening socket (`TCP_LISTEN`).
const TCP_LISTEN: u8 = 0x0A;
/// `/proc/net/udp*` state of a bound, unconnected socket (`TCP_CLOSE`).
const UDP_BOUND: u8 = 0x07;

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (listening sockets).
    Tcp,
    /// UDP (bound sockets).
    Udp,
}

/// The process that holds a socket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Owner {
    /// Its process id.
    pub pid: u32,
    /// Its name (`/proc/PID/comm`).
    pub name: String,
}

/// A socket that listens (TCP) or is bound (UDP) on a local port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Listener {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The local address (`0.0.0.0` or `::` for all).
    pub address: IpAddr,
    /// The local port.
    pub port: u16,
    /// The process holding it, where this user may see it.
    pub process: Option<Owner>,
}

/// Every listener on any of `ports`, TCP and UDP, IPv4 and IPv6, sorted by
/// port, protocol and address, each once.
pub fn listeners_on(ports: &[u16]) -> Result<Vec<Listener>> {
    let mut sockets = Vec::new();
    for (file, protocol) in [
        ("/proc/net/tcp", Protocol::Tcp),
        ("/proc/net/tcp6", Protocol::Tcp),
        ("/proc/net/udp", Protocol::Udp),
        ("/proc/net/udp6", Protocol::Udp),
    ] {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            // No tcp6/udp6 where IPv6 is disabled in the kernel.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && file.ends_with('6') => {
                continue;
            }
            Err(err) => return Err(err).with_context(|| format!("reading {file}")),
        };
        sockets.extend(
            parse_socket_table(&text, protocol)
                .with_context(|| format!("reading {file}"))?
                .into_iter()
                .filter(|socket| socket.is_listening() && ports.contains(&socket.port)),
        );
    }
    let owners = if sockets.is_empty() {
        BTreeMap::new()
    } else {
        socket_owners(
            Path::new("/proc"),
            &sockets.iter().map(|s| s.inode).collect(),
        )
    };
    let mut listeners: Vec<Listener> = sockets
        .into_iter()
        .map(|socket| Listener {
            protocol: socket.protocol,
            address: socket.address,
            port: socket.port,
            process: owners.get(&socket.inode).cloned(),
        })
        .collect();
    listeners.sort_by(|a, b| {
        (a.port, a.protocol, a.address, &a.process)
            .cmp(&(b.port, b.protocol, b.address, &b.process))
    });
    // A server with one socket per thread (named with SO_REUSEPORT) shows
    // the same listener many times.
    listeners.dedup();
    Ok(listeners)
}

/// Whether nothing listens on `port` for `protocol`, on any address. Reads
/// `/proc` only, so it answers for ports below 1024 and for other users too.
/// When `/proc` cannot be read the port counts as taken (the warning says
/// why), so that a check never passes on what it could not see.
pub fn port_is_free(protocol: Protocol, port: u16) -> bool {
    match listeners_on(&[port]) {
        Ok(listeners) => !listeners.iter().any(|l| l.protocol == protocol),
        Err(err) => {
            tracing::warn!(port, error = %format!("{err:#}"), "cannot tell whether the port is free; taking it as taken");
            false
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, pid {}", self.name, self.pid)
    }
}

/// `udp 127.0.0.1:53 (named, pid 1234)`, `tcp [::]:953 (owner not visible)`.
impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            IpAddr::V4(address) => write!(f, "{} {address}:{}", self.protocol, self.port)?,
            IpAddr::V6(address) => write!(f, "{} [{address}]:{}", self.protocol, self.port)?,
        }
        match &self.process {
            Some(owner) => write!(f, " ({owner})"),
            None => f.write_str(" (owner not visible)"),
        }
    }
}

/// One line of a `/proc/net/{tcp,udp}{,6}` table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Socket {
    protocol: Protocol,
    address: IpAddr,
    port: u16,
    state: u8,
    inode: u64,
}

impl Socket {
    fn is_listening(&self) -> bool {
        match self.protocol {
            Protocol::Tcp => self.state == TCP_LISTEN,
            Protocol::Udp => self.state == UDP_BOUND,
        }
    }
}

/// Parses a `/proc/net/{tcp,udp}{,6}` table: a header line, then one line
/// per socket whose fields are `sl local_address rem_address st tx:rx tr:when
/// retrnsmt uid timeout inode …`, addresses as `HEX:PORT`.
fn parse_socket_table(text: &str, protocol: Protocol) -> Result<Vec<Socket>> {
    let mut sockets = Vec::new();
    for (number, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 10 {
            bail!("line {}: too few fields: {line:?}", number + 1);
        }
        let (address, port) = parse_endpoint(fields[1])
            .with_context(|| format!("line {}: local address {:?}", number + 1, fields[1]))?;
        let state = u8::from_str_radix(fields[3], 16)
            .with_context(|| format!("line {}: state {:?}", number + 1, fields[3]))?;
        let inode = fields[9]
            .parse()
            .with_context(|| format!("line {}: inode {:?}", number + 1, fields[9]))?;
        sockets.push(Socket {
            protocol,
            address,
            port,
            state,
            inode,
        });
    }
    Ok(sockets)
}

/// Parses `0100007F:0035` or a 32-digit IPv6 form. The kernel prints each
/// 32-bit word of the address, which is in network byte order in memory, as
/// a host-order number: on the little-endian machines IMSS runs on, the
/// bytes of each word read backwards. The port is printed as a number.
fn parse_endpoint(text: &str) -> Result<(IpAddr, u16)> {
    let (hex, port) = text.split_once(':').context("no ':' before the port")?;
    let port = u16::from_str_radix(port, 16).context("port is not hexadecimal")?;
    let mut bytes = Vec::with_capacity(16);
    if hex.len() != 8 && hex.len() != 32 {
        bail!("address is neither 8 nor 32 hexadecimal digits");
    }
    for chunk in hex.as_bytes().chunks(8) {
        let word = std::str::from_utf8(chunk).context("address is not ASCII")?;
        let word = u32::from_str_radix(word, 16).context("address is not hexadecimal")?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let address = match <[u8; 4]>::try_from(bytes.as_slice()) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => {
            let v6: [u8; 16] = bytes.as_slice().try_into().expect("32 digits are 16 bytes");
            IpAddr::V6(Ipv6Addr::from(v6))
        }
    };
    Ok((address, port))
}

/// The process holding each of `inodes`, found by reading the descriptor
/// links of every process under `proc`. Processes this user may not look
/// into, or that exit meanwhile, are skipped. A socket shared by several
/// processes (a forking server) is given to the lowest pid, the parent.
fn socket_owners(proc: &Path, inodes: &BTreeSet<u64>) -> BTreeMap<u64, Owner> {
    let mut owners: BTreeMap<u64, Owner> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(proc) else {
        return owners;
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let process_dir = proc.join(pid.to_string());
        let Ok(descriptors) = std::fs::read_dir(process_dir.join("fd")) else {
            continue;
        };
        let held: Vec<u64> = descriptors
            .flatten()
            .filter_map(|fd| socket_inode(&std::fs::read_link(fd.path()).ok()?))
            .filter(|inode| inodes.contains(inode) && !owners.contains_key(inode))
            .collect();
        if held.is_empty() {
            continue;
        }
        let name = std::fs::read_to_string(process_dir.join("comm"))
            .map(|comm| comm.trim_end().to_string())
            .unwrap_or_else(|_| "?".to_string());
        for inode in held {
            owners.insert(
                inode,
                Owner {
                    pid,
                    name: name.clone(),
                },
            );
        }
        if owners.len() == inodes.len() {
            break;
        }
    }
    owners
}

/// The inode in a descriptor link `socket:[12345]`.
fn socket_inode(link: &Path) -> Option<u64> {
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 31337 1 0000000000000000 100 0 0 10 0
   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20001 1 0000000000000000 100 0 0 10 0
   2: 0100007F:0035 0100007F:D431 01 00000000:00000000 00:00000000 00000000   101        0 31400 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:03B9 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 31338 1 0000000000000000 100 0 0 10 0
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 40001 1 0000000000000000 100 0 0 10 0
   1: B80D0120000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 40002 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:0019 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 40003 1 0000000000000000 100 0 0 10 0
";

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 31339 2 0000000000000000 0
  101: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 31340 2 0000000000000000 0
  102: 0F02000A:A1B2 08080808:0035 01 00000000:00000000 00:00000000 00000000     0        0 31341 2 0000000000000000 0
";

    #[test]
    fn ipv4_words_are_read_backwards() {
        let sockets = parse_socket_table(TCP, Protocol::Tcp).unwrap();
        assert_eq!(sockets.len(), 4);
        assert_eq!(sockets[0].address, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(sockets[0].port, 53);
        assert_eq!(sockets[0].inode, 31337);
        assert!(sockets[0].is_listening());
        assert_eq!(sockets[1].address, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(sockets[1].port, 2024);
        assert!(!sockets[2].is_listening(), "an established connection");
        assert_eq!(sockets[3].port, 953);
    }

    #[test]
    fn ipv6_addresses_are_read_word_by_word() {
        let sockets = parse_socket_table(TCP6, Protocol::Tcp).unwrap();
        assert_eq!(sockets[0].address, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(sockets[0].port, 53);
        assert_eq!(sockets[1].address, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(sockets[1].port, 8080);
        assert_eq!(
            sockets[2].address,
            "::ffff:127.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn udp_bound_sockets_count_and_connected_ones_do_not() {
        let sockets = parse_socket_table(UDP, Protocol::Udp).unwrap();
        assert_eq!(sockets.len(), 3);
        assert!(sockets[0].is_listening() && sockets[1].is_listening());
        assert_eq!(sockets[2].address, IpAddr::from([10, 0, 2, 15]));
        assert!(!sockets[2].is_listening(), "a connected client socket");
        let tcp_like = Socket {
            protocol: Protocol::Tcp,
            ..sockets[0].clone()
        };
        assert!(!tcp_like.is_listening(), "07 is not a TCP listener");
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let text = "header\n   0: 0100007F 00000000:0000 0A 0 0 0 0 0 1\n";
        let err = parse_socket_table(text, Protocol::Tcp).unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
        let err = parse_socket_table("header\n   0: short line\n", Protocol::Tcp).unwrap_err();
        assert!(format!("{err:#}").contains("too few fields"), "{err:#}");
    }

    #[test]
    fn display_reads_like_ss() {
        let listener = Listener {
            protocol: Protocol::Udp,
            address: IpAddr::from([127, 0, 0, 1]),
            port: 53,
            process: Some(Owner {
                pid: 1234,
                name: "named".into(),
            }),
        };
        assert_eq!(listener.to_string(), "udp 127.0.0.1:53 (named, pid 1234)");
        let v6 = Listener {
            protocol: Protocol::Tcp,
            address: "::".parse().unwrap(),
            port: 953,
            process: None,
        };
        assert_eq!(v6.to_string(), "tcp [::]:953 (owner not visible)");
        let json = serde_json::to_string(&listener).unwrap();
        assert_eq!(
            json,
            r#"{"protocol":"udp","address":"127.0.0.1","port":53,"process":{"pid":1234,"name":"named"}}"#
        );
    }

    #[test]
    fn socket_links_name_their_inode() {
        assert_eq!(socket_inode(Path::new("socket:[31337]")), Some(31337));
        assert_eq!(socket_inode(Path::new("pipe:[31337]")), None);
        assert_eq!(socket_inode(Path::new("/dev/null")), None);
    }

    #[test]
    fn this_process_owns_the_socket_it_listens_on() {
        let socket = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = socket.local_addr().unwrap().port();
        let found = listeners_on(&[port]).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].protocol, Protocol::Tcp);
        assert_eq!(found[0].address, IpAddr::from([127, 0, 0, 1]));
        let owner = found[0]
            .process
            .as_ref()
            .expect("our own socket is visible");
        assert_eq!(owner.pid, std::process::id());
        assert!(!port_is_free(Protocol::Tcp, port));
        assert!(port_is_free(Protocol::Udp, port));
        drop(socket);
        assert!(port_is_free(Protocol::Tcp, port));
    }
}
