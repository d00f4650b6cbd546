//! The rpm database under the root: which of the packages 9.1 needs are
//! installed. Preflight asks; nothing here changes the database. This is the
//! only module that runs `rpm` to query it.
//!
//! The query is one `rpm -q --whatprovides` for all names: rpm prints a
//! package per name that something provides and `no package provides NAME`
//! per name nothing provides, and exits with the number of the latter. That
//! exit is an answer, not a failure, so the output is read whatever the
//! status, and checked against it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Output;

use thiserror::Error;

use crate::support::cmd::{self, Cmd, CmdError};
use crate::support::constants::RPM_DB_PATH;
use crate::support::root::{Root, RootError};

/// What rpm prints, in the C locale, for a name nothing installed provides.
const NOT_PROVIDED_PREFIX: &str = "no package provides ";

/// Why the rpm database could not be asked.
#[derive(Debug, Error)]
pub enum RpmDbError {
    /// There is no rpm database where a Red Hat system keeps it.
    #[error(
        "no rpm database in {path}: is this a Red Hat Enterprise Linux system with its rpm database in {RPM_DB_PATH}?"
    )]
    NoDatabase {
        /// The database directory, as a path on this machine.
        path: PathBuf,
    },
    /// The `rpm` program is not installed on this machine.
    #[error(
        "the rpm program is not installed, and reading the rpm database needs it (on Debian or Ubuntu: apt-get install rpm)"
    )]
    RpmNotInstalled {
        /// The failure to start it.
        source: std::io::Error,
    },
    /// rpm ran and failed, or answered something this module cannot read.
    #[error("asking the rpm database")]
    Query {
        /// The command, its exit status and the tail of its stderr.
        source: CmdError,
    },
    /// The database directory could not be found under the root.
    #[error(transparent)]
    Root(#[from] RootError),
    /// The database directory could not be read.
    #[error("reading {path}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The names in `names` (capabilities: package names, or anything a package
/// declares it provides) that no installed package provides, in the order
/// given, each once. One rpm query for all of them.
pub fn missing_capabilities(root: &Root, names: &[&str]) -> Result<Vec<String>, RpmDbError> {
    let mut seen = BTreeSet::new();
    let names: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| seen.insert(*name))
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    // rpm creates an empty database where there is none, and then reports
    // every name missing: check first, and never let a query write one.
    require_database(root)?;
    let query = Cmd::new("rpm")
        .arg("--root")
        .arg(root.dir())
        .args(["--dbpath", RPM_DB_PATH, "-q", "--whatprovides", "--"])
        .args(&names)
        // The "no package provides" lines are translated in other locales.
        .env("LC_ALL", "C");
    let output = query.run_unchecked().map_err(|err| match err {
        CmdError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            RpmDbError::RpmNotInstalled { source }
        }
        other => RpmDbError::Query { source: other },
    })?;
    let missing = not_provided(&String::from_utf8_lossy(&output.stdout), &names);
    if !exit_matches(&output, missing.len()) {
        return Err(RpmDbError::Query {
            source: cmd::failed(query.display_argv(), &output),
        });
    }
    tracing::debug!(root = %root.dir().display(), missing = ?missing, "asked the rpm database");
    Ok(missing)
}

/// The one command line that installs everything in `missing` (capability
/// names as rpm knows them), for the operator to run.
pub fn install_command(missing: &[String]) -> String {
    let mut line = String::from("dnf install -y");
    for name in missing {
        line.push(' ');
        line.push_str(name);
    }
    line
}

/// Fails unless the root has a non-empty rpm database directory.
fn require_database(root: &Root) -> Result<(), RpmDbError> {
    let path = root.resolve(RPM_DB_PATH)?;
    match std::fs::read_dir(&path) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                Ok(())
            } else {
                Err(RpmDbError::NoDatabase { path })
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            Err(RpmDbError::NoDatabase { path })
        }
        Err(source) => Err(RpmDbError::Io { path, source }),
    }
}

/// The names of `asked` that rpm's `--whatprovides` output says nothing
/// provides, in the order asked. Lines about anything not asked are ignored.
fn not_provided(stdout: &str, asked: &[&str]) -> Vec<String> {
    let reported: BTreeSet<&str> = stdout
        .lines()
        .filter_map(|line| line.trim_end().strip_prefix(NOT_PROVIDED_PREFIX))
        .collect();
    asked
        .iter()
        .filter(|name| reported.contains(**name))
        .map(|name| name.to_string())
        .collect()
}

/// Whether rpm's exit status is the one its output explains: 0 when
/// everything is provided, else the number of names that are not (a shell
/// status cannot go above 255). Anything else means rpm failed, for example
/// on a database it cannot open, and the missing list cannot be trusted.
fn exit_matches(output: &Output, missing: usize) -> bool {
    match output.status.code() {
        Some(0) => missing == 0,
        Some(code) => {
            missing > 0
                && (usize::try_from(code).is_ok_and(|code| code == missing) || missing >= 255)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn output(code: i32, stdout: &str, stderr: &str) -> Output {
        Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    #[test]
    fn not_provided_lines_name_the_missing_in_the_order_asked() {
        let stdout = "\
imss-model-base-8.10-1.noarch
no package provides wget
perl-interpreter-5.26.3-422.el8.x86_64
perl-5.26.3-422.el8.x86_64
no package provides libstdc++
no package provides something-not-asked
";
        assert_eq!(
            not_provided(stdout, &["libstdc++", "tar", "wget", "perl"]),
            ["libstdc++", "wget"]
        );
    }

    #[test]
    fn names_with_spaces_and_parentheses_are_matched_whole() {
        let stdout = "no package provides perl(File::Copy)\nno package provides a b\r\n";
        assert_eq!(
            not_provided(stdout, &["a b", "perl(File::Copy)", "a"]),
            ["a b", "perl(File::Copy)"]
        );
    }

    #[test]
    fn the_exit_status_must_agree_with_the_missing_count() {
        assert!(exit_matches(&output(0, "", ""), 0));
        assert!(exit_matches(&output(2, "", ""), 2));
        assert!(!exit_matches(
            &output(1, "", "error: cannot open Packages index"),
            0
        ));
        assert!(!exit_matches(&output(1, "", ""), 2));
        assert!(!exit_matches(&output(0, "", ""), 1));
    }

    #[test]
    fn install_command_is_one_line_for_all_missing() {
        let missing = vec!["wget".to_string(), "perl".to_string()];
        assert_eq!(install_command(&missing), "dnf install -y wget perl");
    }

    #[test]
    fn a_root_without_an_rpm_database_says_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let err = missing_capabilities(&root, &["wget"]).unwrap_err();
        assert!(matches!(err, RpmDbError::NoDatabase { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("var/lib/rpm"), "{text}");
        assert!(text.contains("Red Hat Enterprise Linux"), "{text}");
        // The query must not have created one.
        assert!(!dir.path().join("var/lib/rpm").exists());

        std::fs::create_dir_all(dir.path().join("var/lib/rpm")).unwrap();
        let err = missing_capabilities(&root, &["wget"]).unwrap_err();
        assert!(matches!(err, RpmDbError::NoDatabase { .. }), "{err}");
    }

    #[test]
    fn asking_for_nothing_needs_no_database() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        assert!(missing_capabilities(&root, &[]).unwrap().is_empty());
    }
}
