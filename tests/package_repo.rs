//! Packages built here with `rpmbuild` and served to a booted host
//! (`imss_fixture::hosts::package_repo`) install there with `dnf`, as on a RHEL
//! server: a package with a `%pre` that runs a program of the helpers
//! package it requires, the helpers' automatic requirements on the C
//! library met by the host's stand-in base system; a second build of the
//! same version replaces the first; `dnf remove` takes them off again.
//!
//! Needs root (the booted host mounts an overlay and boots systemd in a
//! container) and `rpm`, `rpmbuild`, `createrepo_c`, `dnf` and
//! `systemd-nspawn` (`make setup` installs them).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use imss_fixture::hosts::booted_host::BootedHost;
use imss_fixture::hosts::package_repo::{REPO_DIR, serve_packages};
use imss_upgrade::support::cmd::Cmd;

/// How long one `dnf` command may take inside the host.
const DNF_TIMEOUT: Duration = Duration::from_secs(120);

/// The file the `%pre` scriptlet of `demo` writes, inside the host.
const MARKER: &str = "/var/lib/demo-pre-marker";

/// `demo-helpers`: one ELF program (this machine's `true`), so that
/// rpmbuild gives it automatic requirements on the C library.
const HELPERS_SPEC: &str = r#"Name: demo-helpers
Version: 0.1
Release: 1
Summary: The program the demo package's scriptlet runs
License: Apache-2.0

%description
A copy of true(1), with the requirements on the C library rpmbuild finds in it.

%install
mkdir -p %{buildroot}/usr/libexec/demo
cp /usr/bin/true %{buildroot}/usr/libexec/demo/helper

%files
/usr/libexec/demo/helper
"#;

/// `demo`: requires its helpers' exact build, and its `%pre` runs the
/// helper, then writes the marker with the build's label.
const DEMO_SPEC: &str = r#"Name: demo
Version: 0.1
Release: 1
Summary: A package whose scriptlet runs its helper
License: Apache-2.0
BuildArch: noarch
Requires: demo-helpers = %{version}-%{release}

%description
Runs /usr/libexec/demo/helper before it is installed.

%pre
/usr/libexec/demo/helper && echo %{build_label} > /var/lib/demo-pre-marker

%files
"#;

/// Builds the package of `spec` in `work` with `label` as its
/// `%{build_label}`, and returns the `.rpm` file.
fn build(work: &Path, spec: &str, label: &str) -> PathBuf {
    let name = spec
        .lines()
        .find_map(|line| line.strip_prefix("Name: "))
        .unwrap();
    let topdir = work.join(label);
    let spec_path = work.join(format!("{name}-{label}.spec"));
    std::fs::write(&spec_path, spec).unwrap();
    Cmd::new("rpmbuild")
        .args(["-bb", "--quiet"])
        .arg("--define")
        .arg(format!("_topdir {}", topdir.display()))
        .arg("--define")
        .arg(format!("build_label {label}"))
        // No debuginfo package and no build-id links for a copy of true.
        .args(["--define", "debug_package %{nil}"])
        .args(["--define", "_build_id_links none"])
        .arg(&spec_path)
        .env("LC_ALL", "C")
        .run()
        .unwrap_or_else(|err| panic!("building {name} (apt-get install rpm): {err}"));
    let rpms: Vec<PathBuf> = ["x86_64", "noarch"]
        .iter()
        .filter_map(|arch| std::fs::read_dir(topdir.join("RPMS").join(arch)).ok())
        .flat_map(|entries| entries.map(|entry| entry.unwrap().path()))
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{name}-0.1-1."))
        })
        .collect();
    assert_eq!(rpms.len(), 1, "rpmbuild wrote {rpms:?} for {name}");
    rpms.into_iter().next().unwrap()
}

/// `argv` inside the host; panics with its output unless it exits 0.
fn run_ok(host: &BootedHost, argv: &[&str]) -> String {
    let started = Instant::now();
    let output = host
        .command(argv)
        .unwrap()
        .timeout(DNF_TIMEOUT)
        .run_unchecked()
        .unwrap_or_else(|err| panic!("running {argv:?} inside the host: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{argv:?} inside the host ended {}:\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{argv:?} took {:?}", started.elapsed());
    stdout
}

/// Whether `rpm -q NAME` finds it installed inside the host.
fn installed(host: &BootedHost, name: &str) -> bool {
    host.command(&["rpm", "-q", name])
        .unwrap()
        .run_unchecked()
        .unwrap()
        .status
        .success()
}

#[test]
fn served_packages_install_with_dnf_run_their_scriptlet_and_come_off_again() {
    let work = tempfile::tempdir().unwrap();
    let helpers = build(work.path(), HELPERS_SPEC, "first");
    let demo = build(work.path(), DEMO_SPEC, "first");
    let name = format!("pkg-repo-{}", std::process::id());
    let host = BootedHost::boot(&name, &[]).unwrap_or_else(|err| {
        panic!("booting the test host {name} (needs root and systemd-nspawn): {err:#}")
    });

    let started = Instant::now();
    let mut repo = serve_packages(&host, &[demo, helpers.clone()]).unwrap();
    eprintln!("serving took {:?}", started.elapsed());
    let mut served: Vec<&str> = repo.packages().iter().map(|p| p.nevra.as_str()).collect();
    served.sort_unstable();
    assert_eq!(served, ["demo-0.1-1.noarch", "demo-helpers-0.1-1.x86_64"]);
    assert!(repo.packages().iter().all(|p| {
        p.file.starts_with(REPO_DIR)
            && host
                .root()
                .join(p.file.strip_prefix("/").unwrap())
                .is_file()
    }));
    // The scriptlet's shell and the helper's C library come from the base;
    // the helpers come from the repository, not from a stand-in.
    let base = repo.base_provides();
    assert!(base.contains("/bin/sh"), "{base:?}");
    assert!(base.contains("rtld(GNU_HASH)"), "{base:?}");
    assert!(base.contains("libc.so.6()(64bit)"), "{base:?}");
    assert!(
        base.iter()
            .all(|capability| !capability.starts_with("demo") && !capability.starts_with("rpmlib(")),
        "{base:?}"
    );

    run_ok(&host, &["dnf", "install", "-y", "demo"]);
    assert!(installed(&host, "demo"));
    assert!(installed(&host, "demo-helpers"));
    let marker = host.root().join(&MARKER[1..]);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "first\n");

    run_ok(&host, &["dnf", "remove", "-y", "demo"]);
    assert!(!installed(&host, "demo"));

    // A second build of the same version replaces the first.
    std::fs::remove_file(&marker).unwrap();
    let demo_again = build(work.path(), DEMO_SPEC, "second");
    repo.replace(&host, &[demo_again, helpers]).unwrap();
    run_ok(&host, &["dnf", "install", "-y", "demo"]);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "second\n");
    run_ok(&host, &["dnf", "remove", "-y", "demo"]);
    assert!(!installed(&host, "demo"));
}
