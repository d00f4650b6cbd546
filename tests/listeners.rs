//! Who listens on the DNS ports, against a real `named` on port 53 (needs
//! root and bind9; `make setup` installs it). The port must be free on this
//! machine: a DNS server already running there makes the test fail, naming
//! it.

use imss_fixture::model::named::{NamedServer, processes_using};
use imss_upgrade::support::constants::{DNS_PORT, RNDC_PORT};
use imss_upgrade::system::listeners::{Protocol, listeners_on, port_is_free};

#[test]
fn a_real_named_on_port_53_is_found_with_its_process_and_gone_after_drop() {
    let server = NamedServer::start_on_dns_port().unwrap_or_else(|err| panic!("{err:#}"));
    eprintln!("named answered on port 53 after {:?}", server.started_in());
    let pid = server.pid();
    let dir = server.dir().to_path_buf();

    let found = listeners_on(&[DNS_PORT, RNDC_PORT]).unwrap();
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let listener = found
            .iter()
            .find(|l| l.protocol == protocol && l.port == DNS_PORT)
            .unwrap_or_else(|| panic!("no {protocol} listener on 53 in {found:?}"));
        assert_eq!(listener.address, std::net::IpAddr::from([127, 0, 0, 1]));
        let owner = listener.process.as_ref().expect("root sees every owner");
        assert_eq!(owner.name, "named", "{listener}");
        assert_eq!(owner.pid, pid, "{listener}");
        assert_eq!(
            listener.to_string(),
            format!("{protocol} 127.0.0.1:53 (named, pid {pid})")
        );
    }
    // named's many UDP sockets (one per thread) are one listener each way.
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        !found.iter().any(|l| l.port == RNDC_PORT),
        "the test named opens no control channel: {found:?}"
    );
    assert!(!port_is_free(Protocol::Tcp, DNS_PORT));
    assert!(!port_is_free(Protocol::Udp, DNS_PORT));
    let second = NamedServer::start_on_dns_port()
        .err()
        .expect("a second named cannot have port 53");
    let text = format!("{second:#}");
    assert!(text.contains("port 53 is already taken"), "{text}");
    assert!(text.contains(&format!("(named, pid {pid})")), "{text}");

    drop(server);
    assert!(
        processes_using(&dir).is_empty(),
        "named outlived its NamedServer"
    );
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    let after = listeners_on(&[DNS_PORT]).unwrap();
    assert!(after.is_empty(), "still listening on 53: {after:?}");
    assert!(port_is_free(Protocol::Tcp, DNS_PORT));
    assert!(port_is_free(Protocol::Udp, DNS_PORT));
}
