//! The journal message catalog (`systemd/imss-upgrade.catalog`) has one
//! entry for each event id of the product and no other, and `journalctl`
//! compiles it and shows each entry.

use std::collections::BTreeSet;
use std::path::Path;

use imss_upgrade::support::logging::events;

fn catalog() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/imss-upgrade.catalog"),
    )
    .unwrap()
}

fn catalog_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("-- "))
        .map(|id| id.trim().to_string())
        .collect()
}

#[test]
fn every_event_has_one_catalog_entry_and_every_entry_an_event() {
    let text = catalog();
    let in_catalog = catalog_ids(&text);
    let unique: BTreeSet<&String> = in_catalog.iter().collect();
    assert_eq!(
        unique.len(),
        in_catalog.len(),
        "an id appears twice in the catalog"
    );
    let in_code: BTreeSet<String> = events::ALL.iter().map(|(_, id)| id.to_string()).collect();
    assert_eq!(
        in_code.len(),
        events::ALL.len(),
        "an event id is given twice in the code"
    );
    assert_eq!(
        unique.into_iter().cloned().collect::<BTreeSet<_>>(),
        in_code,
        "the catalog and src/support/logging.rs disagree"
    );
    for (name, id) in events::ALL {
        assert!(
            id.len() == 32
                && id
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{name}: {id} is not a 128-bit id in lowercase hex"
        );
    }
}

/// Needs `journalctl` (systemd).
#[test]
fn journalctl_compiles_the_catalog_and_shows_every_entry() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("usr/lib/systemd/catalog");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("imss-upgrade.catalog"), catalog()).unwrap();
    let update = std::process::Command::new("journalctl")
        .arg(format!("--root={}", root.path().display()))
        .arg("--update-catalog")
        .output()
        .expect("journalctl is missing: apt-get install systemd");
    assert!(
        update.status.success(),
        "journalctl --update-catalog: {}",
        String::from_utf8_lossy(&update.stderr)
    );
    let listed = std::process::Command::new("journalctl")
        .arg(format!("--root={}", root.path().display()))
        .arg("--list-catalog")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    for (name, id) in events::ALL {
        assert!(
            listed.contains(id),
            "{name} ({id}) is not in the compiled catalog:\n{listed}"
        );
    }
}
