//! The bundled BIND (`named` and `rndc`) that 9.1 always installs and
//! starts (seed item 6: on a server that already runs a DNS server, its
//! ports collided and had to be changed by hand).
//!
//! Here: which ports it takes, its configuration (`named.conf`,
//! `rndc.conf`, the localhost zone) and control key, and the checks that
//! prove it (`named-checkconf` before it starts, `rndc status` and a lookup
//! through it after). Where the files go is the caller's to say
//! ([`BindFiles`]); this module knows the programs and their formats.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde::Serialize;

use crate::support::cmd::Cmd;
use crate::support::constants::{DNS_PORT, RNDC_PORT};
use crate::support::secret::Secret;
use crate::system::listeners::Listener;

/// The pairs of ports the bundled BIND may take, in the order tried: the
/// standard pair, then fallbacks that no common service uses. A pair is
/// taken whole or not at all, so that the DNS and control ports always
/// read as one choice (`10053` with `10953`).
pub const PORT_PAIRS: [BindPorts; 4] = [
    BindPorts {
        dns: DNS_PORT,
        rndc: RNDC_PORT,
    },
    BindPorts {
        dns: 10053,
        rndc: 10953,
    },
    BindPorts {
        dns: 20053,
        rndc: 20953,
    },
    BindPorts {
        dns: 30053,
        rndc: 30953,
    },
];

/// The name of the control key in `named.conf` and `rndc.conf`.
const RNDC_KEY_NAME: &str = "imss-rndc-key";

/// How long a lookup through the bundled BIND may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The ports the bundled BIND will use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BindPorts {
    /// `named`'s DNS port (TCP and UDP).
    pub dns: u16,
    /// `rndc`'s control port (TCP).
    pub rndc: u16,
}

/// The ports chosen, and why: for the report, `status` and the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortChoice {
    /// The pair taken.
    pub ports: BindPorts,
    /// Why this pair: free, or which listeners took the ones before it.
    pub reason: String,
}

/// The first pair of [`PORT_PAIRS`] on which nothing listens, TCP or UDP,
/// on any address (a stub resolver on 127.0.0.53 or a UDP-only server
/// takes a port as surely as a server on every address: `named` would
/// fail to bind it, or answer only some of the queries). `listeners` is
/// what [`crate::system::listeners::listeners_on`] found on
/// [`candidate_ports`].
pub fn choose_ports(listeners: &[Listener]) -> Result<PortChoice> {
    let holding = |port: u16| -> Vec<String> {
        listeners
            .iter()
            .filter(|listener| listener.port == port)
            .map(Listener::to_string)
            .collect()
    };
    let mut passed_over = Vec::new();
    for pair in PORT_PAIRS {
        let taken: Vec<String> = [pair.dns, pair.rndc]
            .into_iter()
            .flat_map(holding)
            .collect();
        if taken.is_empty() {
            let reason = if passed_over.is_empty() {
                format!(
                    "{} and {} are free on every address, TCP and UDP",
                    pair.dns, pair.rndc
                )
            } else {
                format!(
                    "{}; {}/{} is the first free pair",
                    passed_over.join("; "),
                    pair.dns,
                    pair.rndc
                )
            };
            return Ok(PortChoice {
                ports: pair,
                reason,
            });
        }
        passed_over.push(format!(
            "{}/{} taken ({})",
            pair.dns,
            pair.rndc,
            taken.join(", ")
        ));
    }
    bail!(
        "no pair of ports is free for the bundled BIND: {}. Free one of these pairs (stop or move \
         the program listening there), then run the upgrade again",
        passed_over.join("; ")
    )
}

/// Every port [`choose_ports`] may pick, to ask who listens on them.
pub fn candidate_ports() -> Vec<u16> {
    PORT_PAIRS
        .iter()
        .flat_map(|pair| [pair.dns, pair.rndc])
        .collect()
}

/// Where the bundled BIND's files are, as `named` and `rndc` will read
/// them (paths on the server, not under a `--root`).
#[derive(Debug, Clone)]
pub struct BindFiles {
    /// `named.conf`.
    pub named_conf: PathBuf,
    /// `rndc.conf`.
    pub rndc_conf: PathBuf,
    /// The control key, included by both.
    pub rndc_key: PathBuf,
    /// `named`'s working directory: its zone file, pid file and the keys
    /// it manages itself.
    pub working_dir: PathBuf,
}

impl BindFiles {
    /// The localhost zone's file, in the working directory.
    pub fn localhost_zone(&self) -> PathBuf {
        self.working_dir.join("localhost.zone")
    }

    /// Where `rndc stats` has `named` write its counters.
    pub fn statistics(&self) -> PathBuf {
        self.working_dir.join("named.stats")
    }
}

/// `bind/named.conf.in`, `bind/rndc.conf.in` and `bind/localhost.zone`,
/// compiled in.
const NAMED_CONF_TEMPLATE: &str = include_str!("../../bind/named.conf.in");
const RNDC_CONF_TEMPLATE: &str = include_str!("../../bind/rndc.conf.in");
const LOCALHOST_ZONE: &str = include_str!("../../bind/localhost.zone");

/// `named.conf` for `ports`: answers (and recurses) for this machine only,
/// on loopback, with its control channel on loopback under the generated
/// key. Serves the `localhost` zone itself, which the health check looks
/// up through it.
pub fn named_conf(files: &BindFiles, ports: BindPorts) -> String {
    fill(NAMED_CONF_TEMPLATE, files, ports)
}

/// `rndc.conf`: the control key and where `named` listens for it.
pub fn rndc_conf(files: &BindFiles, ports: BindPorts) -> String {
    fill(RNDC_CONF_TEMPLATE, files, ports)
}

/// The `localhost` zone: `localhost.` is 127.0.0.1 and ::1.
pub fn localhost_zone() -> &'static str {
    LOCALHOST_ZONE
}

/// `template` with its `@NAME@` placeholders filled in; paths quoted.
fn fill(template: &str, files: &BindFiles, ports: BindPorts) -> String {
    let quote = |path: &Path| conf_quote(&path.to_string_lossy());
    let work = &files.working_dir;
    [
        ("@KEY_FILE@", quote(&files.rndc_key)),
        ("@WORKING_DIR@", quote(work)),
        ("@PID_FILE@", quote(&work.join("named.pid"))),
        ("@SESSION_KEY_FILE@", quote(&work.join("session.key"))),
        ("@STATISTICS_FILE@", quote(&files.statistics())),
        ("@ZONE_FILE@", quote(&files.localhost_zone())),
        ("@DNS_PORT@", ports.dns.to_string()),
        ("@RNDC_PORT@", ports.rndc.to_string()),
        ("@KEY_NAME@", RNDC_KEY_NAME.to_string()),
    ]
    .iter()
    .fold(template.to_string(), |text, (name, value)| {
        text.replace(name, value)
    })
}

/// A new control key: 256 random bits for HMAC-SHA256, as the `key`
/// statement both `named.conf` and `rndc.conf` include. Generated on the
/// server at the switch, never shipped in a package.
pub fn new_rndc_key() -> Result<Secret> {
    let mut bits = [0u8; 32];
    getrandom::fill(&mut bits).context("reading random bytes for the rndc key")?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bits);
    Ok(Secret::new(format!(
        "key \"{RNDC_KEY_NAME}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{encoded}\";\n}};\n"
    )))
}

/// The BIND programs of the 9.1 tree.
#[derive(Debug, Clone)]
pub struct BindPrograms {
    /// `named-checkconf`.
    pub checkconf: PathBuf,
    /// `rndc`.
    pub rndc: PathBuf,
}

impl BindPrograms {
    /// Checks `named_conf` (and what it includes) as `named` would read
    /// it, zones loaded, from inside `chroot` when given (a server under a
    /// root directory): a configuration that `named` would refuse fails
    /// here, before anything starts, with `named-checkconf`'s words.
    pub fn check(&self, named_conf: &Path, chroot: Option<&Path>) -> Result<()> {
        let mut cmd = Cmd::new(&self.checkconf).arg("-z");
        if let Some(dir) = chroot {
            cmd = cmd.arg("-t").arg(dir);
        }
        let cmd = cmd.arg(named_conf);
        let checked = cmd.run_unchecked()?;
        if !checked.status.success() {
            // named-checkconf says what is wrong on stdout, not stderr.
            let said = [checked.stdout.as_slice(), checked.stderr.as_slice()]
                .map(String::from_utf8_lossy)
                .join("")
                .trim()
                .to_string();
            bail!(
                "the bundled BIND's configuration {} does not pass named-checkconf ({}, {}): {said}",
                named_conf.display(),
                cmd.display_argv(),
                checked.status
            );
        }
        Ok(())
    }

    /// `rndc status` over the control channel: `named` runs and obeys the
    /// generated key. Returns what it printed.
    pub fn status(&self, files: &BindFiles) -> Result<String> {
        self.rndc(files, "status")
            .output_text()
            .context("rndc status of the bundled BIND failed: named is not running, or not under the generated key")
    }

    /// How many queries `named` has received since it started: `rndc
    /// stats` has it append its counters to its statistics file, and the
    /// incoming queries of the last dump there are summed by type.
    pub fn queries_received(&self, files: &BindFiles) -> Result<u64> {
        self.rndc(files, "stats")
            .run()
            .context("rndc stats of the bundled BIND")?;
        let stats_file = files.statistics();
        let text = std::fs::read_to_string(&stats_file).with_context(|| {
            format!(
                "reading the bundled BIND's statistics {}",
                stats_file.display()
            )
        })?;
        Ok(incoming_queries(&text))
    }

    /// `rndc` with the generated configuration, asked `verb`.
    fn rndc(&self, files: &BindFiles, verb: &str) -> Cmd {
        Cmd::new(&self.rndc)
            .arg("-c")
            .arg(&files.rndc_conf)
            .arg(verb)
            .timeout(LOOKUP_TIMEOUT * 2)
    }
}

/// The incoming queries of the last dump in a `named.stats` text.
fn incoming_queries(text: &str) -> u64 {
    let last_dump = text
        .rsplit("+++ Statistics Dump +++")
        .next()
        .unwrap_or_default();
    last_dump
        .lines()
        .skip_while(|line| line.trim() != "++ Incoming Queries ++")
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with("++"))
        .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Looks up `localhost. A` through the DNS server on 127.0.0.1:`port`
/// (one UDP query, as a resolver sends it) and returns the addresses of
/// the answer.
pub fn look_up_localhost(port: u16) -> Result<Vec<Ipv4Addr>> {
    look_up_a(port, "localhost")
}

/// Looks up `name`'s A records through the DNS server on
/// 127.0.0.1:`port`, one UDP query with recursion desired.
pub fn look_up_a(port: u16, name: &str) -> Result<Vec<Ipv4Addr>> {
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("opening a UDP socket")?;
    socket.set_read_timeout(Some(LOOKUP_TIMEOUT))?;
    socket.connect(server)?;
    let id: u16 = std::process::id() as u16;
    socket
        .send(&query_a(id, name))
        .with_context(|| format!("sending a DNS query to {server}"))?;
    let mut reply = [0u8; 512];
    let len = socket.recv(&mut reply).with_context(|| {
        format!("no answer from the DNS server on {server} within {LOOKUP_TIMEOUT:?}")
    })?;
    parse_a_answers(&reply[..len], id)
        .with_context(|| format!("the answer from the DNS server on {server}"))
}

/// A DNS query for `name`'s A records, recursion desired.
fn query_a(id: u16, name: &str) -> Vec<u8> {
    let mut packet = Vec::with_capacity(32);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00]); // RD
    packet.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.split('.').filter(|label| !label.is_empty()) {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    packet.extend_from_slice(&[0, 1, 0, 1]); // A, IN
    packet
}

/// The A records of the answer section of `reply` to query `id`.
fn parse_a_answers(reply: &[u8], id: u16) -> Result<Vec<Ipv4Addr>> {
    let field = |at: usize| -> Result<u16> {
        reply
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .context("the answer is cut short")
    };
    if field(0)? != id {
        bail!("the answer is to another query");
    }
    let rcode = field(2)? & 0x000f;
    if rcode != 0 {
        bail!("the server answered with error code {rcode} (3: no such name, 5: refused)");
    }
    let (questions, answers) = (field(4)?, field(6)?);
    let mut at = 12;
    let skip_name = |mut at: usize| -> Result<usize> {
        loop {
            let len = *reply.get(at).context("the answer is cut short")? as usize;
            if len == 0 {
                return Ok(at + 1);
            }
            if len & 0xc0 == 0xc0 {
                return Ok(at + 2);
            }
            at += 1 + len;
        }
    };
    for _ in 0..questions {
        at = skip_name(at)? + 4;
    }
    let mut found = Vec::new();
    for _ in 0..answers {
        at = skip_name(at)?;
        let (kind, len) = (field(at)?, field(at + 8)? as usize);
        let data = reply
            .get(at + 10..at + 10 + len)
            .context("the answer is cut short")?;
        if kind == 1 && len == 4 {
            found.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    Ok(found)
}

/// A string as BIND's configuration reads it: double-quoted, with `"` and
/// `\` escaped.
fn conf_quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::system::listeners::{Owner, Protocol};

    fn listener(protocol: Protocol, address: &str, port: u16) -> Listener {
        Listener {
            protocol,
            address: address.parse::<IpAddr>().unwrap(),
            port,
            process: Some(Owner {
                pid: 34,
                name: "named".into(),
            }),
        }
    }

    #[test]
    fn the_standard_pair_is_taken_when_nothing_listens() {
        let choice = choose_ports(&[]).unwrap();
        assert_eq!(choice.ports, PORT_PAIRS[0]);
        assert_eq!(
            choice.reason,
            "53 and 953 are free on every address, TCP and UDP"
        );
    }

    #[test]
    fn a_stub_resolver_or_a_udp_only_server_takes_the_dns_port() {
        for taken in [
            listener(Protocol::Udp, "127.0.0.53", 53),
            listener(Protocol::Tcp, "127.0.0.53", 53),
            listener(Protocol::Udp, "0.0.0.0", 53),
            listener(Protocol::Udp, "::1", 53),
        ] {
            let choice = choose_ports(std::slice::from_ref(&taken)).unwrap();
            assert_eq!(choice.ports, PORT_PAIRS[1], "{taken}");
            assert!(
                choice.reason.contains(&taken.to_string()),
                "{}",
                choice.reason
            );
            assert!(
                choice
                    .reason
                    .ends_with("10053/10953 is the first free pair")
            );
        }
    }

    #[test]
    fn a_pair_goes_whole_when_either_port_is_taken() {
        let choice = choose_ports(&[
            listener(Protocol::Tcp, "127.0.0.1", 953),
            listener(Protocol::Udp, "127.0.0.1", 10053),
        ])
        .unwrap();
        assert_eq!(choice.ports, PORT_PAIRS[2]);
        assert!(
            choice
                .reason
                .starts_with("53/953 taken (tcp 127.0.0.1:953 (named, pid 34))")
        );
    }

    #[test]
    fn every_pair_taken_is_an_error_that_names_them() {
        let all: Vec<Listener> = candidate_ports()
            .into_iter()
            .map(|port| listener(Protocol::Tcp, "0.0.0.0", port))
            .collect();
        let error = format!("{:#}", choose_ports(&all).unwrap_err());
        for pair in PORT_PAIRS {
            assert!(
                error.contains(&format!("{}/{} taken", pair.dns, pair.rndc)),
                "{error}"
            );
        }
        assert!(error.contains("Free one of these pairs"), "{error}");
    }

    #[test]
    fn the_control_key_is_new_each_time_and_holds_256_bits() {
        let (first, second) = (new_rndc_key().unwrap(), new_rndc_key().unwrap());
        assert_ne!(first.expose(), second.expose());
        let text = String::from_utf8(first.expose().to_vec()).unwrap();
        let secret = text.split('"').nth(3).unwrap();
        let bits = base64::engine::general_purpose::STANDARD
            .decode(secret)
            .unwrap();
        assert_eq!(bits.len(), 32, "{text}");
        assert!(text.contains("algorithm hmac-sha256;"));
    }

    #[test]
    fn a_query_is_read_back_from_its_own_answer() {
        // An answer as named sends it: the question, then one A record
        // whose name points back at it.
        let mut reply = query_a(7, "localhost");
        reply[2] = 0x85;
        reply[3] = 0x80;
        reply[7] = 1;
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
        assert_eq!(parse_a_answers(&reply, 7).unwrap(), [Ipv4Addr::LOCALHOST]);
        assert!(parse_a_answers(&reply, 8).is_err());
        reply[3] = 0x83;
        assert!(format!("{:#}", parse_a_answers(&reply, 7).unwrap_err()).contains("no such name"));
    }

    #[test]
    fn the_incoming_queries_of_the_last_dump_are_summed() {
        let text = "+++ Statistics Dump +++ (1)\n++ Incoming Queries ++\n                   3 A\n\
                    --- Statistics Dump --- (1)\n\
                    +++ Statistics Dump +++ (2)\n++ Incoming Requests ++\n                   9 QUERY\n\
                    ++ Incoming Queries ++\n                   5 A\n                   2 AAAA\n\
                    ++ Outgoing Queries ++\n                   7 A\n--- Statistics Dump --- (2)\n";
        assert_eq!(incoming_queries(text), 7);
        assert_eq!(incoming_queries(""), 0);
    }

    #[test]
    fn every_placeholder_of_the_templates_is_filled() {
        let files = BindFiles {
            named_conf: "/e/named.conf".into(),
            rndc_conf: "/e/rndc.conf".into(),
            rndc_key: "/e/rndc.key".into(),
            working_dir: "/w".into(),
        };
        let ports = PORT_PAIRS[1];
        for text in [named_conf(&files, ports), rndc_conf(&files, ports)] {
            assert!(!text.contains('@'), "{text}");
            assert!(text.contains("include \"/e/rndc.key\";"), "{text}");
        }
        assert!(named_conf(&files, ports).contains("listen-on port 10053 { 127.0.0.1; };"));
        assert!(rndc_conf(&files, ports).contains("default-port 10953;"));
    }

    #[test]
    fn paths_with_quotes_are_escaped_in_the_configuration() {
        assert_eq!(conf_quote(r#"/var/a "b"\c"#), r#""/var/a \"b\"\\c""#);
    }
}
