//! The systemd units of 9.1 and of the upgrade itself, compiled in from
//! `systemd/` so that the helper that installs them cannot find them
//! missing. Which of them run, and when, is the flow's to decide.

/// A unit: its file name and its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    /// The unit's name, which is its file's (`imss-scanner.service`).
    pub name: &'static str,
    /// The unit file.
    pub text: &'static str,
}

macro_rules! unit {
    ($name:literal) => {
        Unit {
            name: $name,
            text: include_str!(concat!("../../systemd/", $name)),
        }
    };
}

/// The 9.1 database.
pub const POSTGRESQL: Unit = unit!("imss-postgresql.service");
/// The bundled BIND.
pub const NAMED: Unit = unit!("imss-named.service");
/// The policy service.
pub const POLICY: Unit = unit!("imss-policy.service");
/// The scanner: mail flows once it runs.
pub const SCANNER: Unit = unit!("imss-scanner.service");
/// The EUQ service.
pub const EUQ: Unit = unit!("imss-euq.service");
/// The EUQ console.
pub const EUQ_CONSOLE: Unit = unit!("imss-euq-console.service");
/// Settles an interrupted upgrade at boot, before any IMSS unit starts.
pub const RECOVER: Unit = unit!("imss-upgrade-recover.service");
/// Compresses the snapshot after a completed upgrade, at idle priority.
pub const COMPRESS: Unit = unit!("imss-upgrade-compress.service");
/// Moves the older history into 9.1 after a completed upgrade, started
/// by it and at every boot until the transfer is done.
pub const TRANSFER: Unit = unit!("imss-upgrade-transfer.service");

/// The upgrade, started by the package's `%pre` and waited for.
pub const RUN: Unit = unit!("imss-upgrade-run.service");
/// The rollback, started by the package's `%preun` on erase and waited for.
pub const ROLLBACK: Unit = unit!("imss-upgrade-rollback.service");

/// The units the helpers package installs (in `/usr/lib/systemd/system`);
/// the helper never writes them.
pub const PACKAGE: [Unit; 2] = [RUN, ROLLBACK];

/// The 9.1 services every server runs, in start order.
pub const CORE_91: [Unit; 4] = [POSTGRESQL, NAMED, POLICY, SCANNER];

/// The EUQ services, in start order: run where 7.1 had EUQ enabled.
pub const EUQ_91: [Unit; 2] = [EUQ, EUQ_CONSOLE];

/// Every 9.1 service unit (not the upgrade's own), in start order.
pub const SERVICES_91: [Unit; 6] = [POSTGRESQL, NAMED, POLICY, SCANNER, EUQ, EUQ_CONSOLE];

/// Every unit the upgrade may install.
pub const ALL: [Unit; 9] = [
    POSTGRESQL,
    NAMED,
    POLICY,
    SCANNER,
    EUQ,
    EUQ_CONSOLE,
    RECOVER,
    COMPRESS,
    TRANSFER,
];

/// The names of `units`.
pub fn names(units: &[Unit]) -> Vec<&'static str> {
    units.iter().map(|unit| unit.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_file_in_the_folder_is_compiled_in_once() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
        let mut on_disk: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".service"))
            .collect();
        on_disk.sort();
        let mut compiled: Vec<String> = names(&ALL)
            .iter()
            .chain(&names(&PACKAGE))
            .map(|n| n.to_string())
            .collect();
        compiled.sort();
        assert_eq!(compiled, on_disk);
        for unit in ALL.iter().chain(&PACKAGE) {
            assert!(unit.text.contains("[Service]"), "{}", unit.name);
        }
        let core_and_euq: Vec<Unit> = CORE_91.iter().chain(&EUQ_91).copied().collect();
        assert_eq!(SERVICES_91.to_vec(), core_and_euq);
    }
}
