//! The rpm database query on a real rpm database: a model base system
//! built with `rpmbuild` and installed with `rpm --root`.

use imss_upgrade::support::constants::REQUIRED_PACKAGES;
use imss_upgrade::support::root::Root;
use imss_upgrade::system::rpmdb::missing_capabilities;

/// Needs `rpm` and `rpmbuild` (`make setup` installs them).
#[test]
fn a_model_base_system_lacking_two_packages_reports_exactly_those() {
    let dir = tempfile::tempdir().unwrap();
    let missing = vec!["wget".to_string(), "perl".to_string()];
    imss_fixture::model::rpmdb::install_base_system_in(
        dir.path(),
        imss_fixture::model::tree::OsFlavor::Rhel8,
        &missing,
    )
    .unwrap();
    let root = Root::new(dir.path()).unwrap();
    let mut asked: Vec<&str> = REQUIRED_PACKAGES.to_vec();
    asked.push("redhat-release");
    asked.push("wget");
    assert_eq!(
        missing_capabilities(&root, &asked).unwrap(),
        ["wget", "perl"]
    );
    assert!(
        missing_capabilities(&root, &["tar", "gzip", "redhat-release"])
            .unwrap()
            .is_empty()
    );
}
