//! The bundled BIND's configuration with a real `named`, `named-checkconf`
//! and `rndc`: what the switch writes passes the check, starts, obeys its
//! generated control key and answers a lookup on the chosen port; a
//! configuration made invalid is caught before anything starts.

use std::path::Path;
use std::time::{Duration, Instant};

use imss_fixture::harness::free_ports;
use imss_upgrade::support::cmd::Cmd;
use imss_upgrade::system::bind::{self, BindFiles, BindPorts, BindPrograms};

const NAMED: &str = "/usr/sbin/named";

fn programs() -> BindPrograms {
    for program in [NAMED, "/usr/bin/named-checkconf", "/usr/sbin/rndc"] {
        assert!(
            Path::new(program).is_file(),
            "{program} is missing: install bind9 and bind9-utils (`make setup` does)"
        );
    }
    BindPrograms {
        checkconf: "/usr/bin/named-checkconf".into(),
        rndc: "/usr/sbin/rndc".into(),
    }
}

/// Writes the configuration as the switch does, into `dir`.
fn write_configuration(dir: &Path, ports: BindPorts) -> BindFiles {
    let files = BindFiles {
        named_conf: dir.join("etc/named.conf"),
        rndc_conf: dir.join("etc/rndc.conf"),
        rndc_key: dir.join("etc/rndc.key"),
        working_dir: dir.join("work"),
    };
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::create_dir_all(&files.working_dir).unwrap();
    std::fs::write(&files.named_conf, bind::named_conf(&files, ports)).unwrap();
    std::fs::write(&files.rndc_conf, bind::rndc_conf(&files, ports)).unwrap();
    std::fs::write(&files.rndc_key, bind::new_rndc_key().unwrap().expose()).unwrap();
    std::fs::write(files.localhost_zone(), bind::localhost_zone()).unwrap();
    files
}

/// `named` in the foreground; killed when dropped.
struct Named(std::process::Child);

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_named(files: &BindFiles, log: &Path) -> Named {
    let child = Cmd::new(NAMED)
        .args(["-f", "-c"])
        .arg(&files.named_conf)
        .spawn_daemon(log)
        .unwrap();
    Named(child)
}

#[test]
fn the_generated_configuration_passes_named_checkconf_starts_and_answers_on_its_ports() {
    let programs = programs();
    let dir = tempfile::tempdir().unwrap();
    let [dns, rndc] = free_ports::<2>().unwrap();
    let ports = BindPorts { dns, rndc };
    let files = write_configuration(dir.path(), ports);
    programs.check(&files.named_conf, None).unwrap();

    let log = dir.path().join("named.log");
    let _named = start_named(&files, &log);
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        match bind::look_up_localhost(dns) {
            Ok(answer) => break answer,
            Err(error) if Instant::now() > deadline => panic!(
                "named never answered on {dns}: {error:#}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(answer, [std::net::Ipv4Addr::LOCALHOST]);
    let status = programs.status(&files).unwrap();
    assert!(status.contains("server is up and running"), "{status}");

    // Another key than the one named loaded is refused.
    std::fs::write(&files.rndc_key, bind::new_rndc_key().unwrap().expose()).unwrap();
    assert!(
        programs.status(&files).is_err(),
        "rndc with a foreign key was obeyed"
    );
}

#[test]
fn a_configuration_made_invalid_is_caught_before_named_starts() {
    let programs = programs();
    let dir = tempfile::tempdir().unwrap();
    let [dns, rndc] = free_ports::<2>().unwrap();
    let files = write_configuration(dir.path(), BindPorts { dns, rndc });
    let text = std::fs::read_to_string(&files.named_conf).unwrap();
    std::fs::write(
        &files.named_conf,
        text.replace("recursion yes;", "recursion perhaps;"),
    )
    .unwrap();
    let error = format!("{:#}", programs.check(&files.named_conf, None).unwrap_err());
    assert!(error.contains("does not pass named-checkconf"), "{error}");
    assert!(
        error.contains("perhaps"),
        "named-checkconf's own words are kept: {error}"
    );

    // A zone file that does not load is caught too (-z).
    let files = write_configuration(&dir.path().join("second"), BindPorts { dns, rndc });
    std::fs::write(files.localhost_zone(), "not a zone\n").unwrap();
    assert!(programs.check(&files.named_conf, None).is_err());
}
