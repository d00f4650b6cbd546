//! The payload's list of files, `payload.sha256` at the top of the 9.1
//! program tree the upgrade package installs: every file of the tree with
//! its SHA-256, one `HASH  PATH` line each, as `sha256sum` writes them (so
//! `sha256sum -c payload.sha256` in the payload checks it by hand too).
//! Written when the payload is made; preflight checks the payload against
//! it before anything changes, so that an incomplete or damaged package
//! stops the upgrade instead of failing it half-way.
//!
//! Links to directories are followed (9.1's bundled PostgreSQL may be one),
//! and the files behind them are listed under the link's name.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};

use crate::support::fsutil::atomic_write;

/// The list's file name at the top of the payload.
pub const LIST_FILE: &str = "payload.sha256";

/// How many problems a check names before it stops counting them out.
const NAMED_PROBLEMS: usize = 5;

/// Lists every file under `dir` into `dir/payload.sha256`; returns how many.
pub fn write(dir: &Path) -> Result<usize> {
    let mut files = Vec::new();
    collect(dir, Path::new(""), &mut files)?;
    files.sort();
    let mut text = String::new();
    for relative in &files {
        let hash = sha256_of(&dir.join(relative))?;
        text.push_str(&format!("{hash}  {}\n", relative.display()));
    }
    atomic_write(&dir.join(LIST_FILE), text.as_bytes(), 0o644)?;
    Ok(files.len())
}

/// Checks the payload in `dir` against its list: every file listed is
/// there with its hash. Returns what is wrong, at most a few named and the
/// rest counted; empty when the payload is whole.
pub fn check(dir: &Path) -> Result<Vec<String>> {
    let list = dir.join(LIST_FILE);
    let text = match std::fs::read_to_string(&list) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Ok(vec![format!("{} is missing", list.display())]);
        }
        Err(err) => return Err(err).with_context(|| format!("reading {}", list.display())),
    };
    let mut problems = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let Some((listed, relative)) = line.split_once("  ") else {
            problems.push(format!(
                "{}, line {}: not `HASH  PATH`",
                list.display(),
                number + 1
            ));
            continue;
        };
        let path = dir.join(relative);
        match sha256_of(&path) {
            Ok(hash) if hash == listed => {}
            Ok(hash) => problems.push(format!(
                "{relative} differs from the list (SHA-256 {hash}, listed {listed})"
            )),
            Err(err)
                if err
                    .downcast_ref::<io::Error>()
                    .is_some_and(|e| e.kind() == io::ErrorKind::NotFound) =>
            {
                problems.push(format!("{relative} is missing"))
            }
            Err(err) => problems.push(format!("{relative}: {err:#}")),
        }
    }
    if problems.len() > NAMED_PROBLEMS {
        let more = problems.len() - NAMED_PROBLEMS;
        problems.truncate(NAMED_PROBLEMS);
        problems.push(format!("and {more} more"));
    }
    Ok(problems)
}

fn collect(dir: &Path, relative: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let here = dir.join(relative);
    for entry in std::fs::read_dir(&here).with_context(|| format!("reading {}", here.display()))? {
        let entry = entry.with_context(|| format!("reading {}", here.display()))?;
        let name = relative.join(entry.file_name());
        if name == Path::new(LIST_FILE) {
            continue;
        }
        let path = dir.join(&name);
        // Followed: a link to PostgreSQL's programs is listed as its files.
        // A link that leads nowhere holds no file to list.
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(err)
                if err.kind() == io::ErrorKind::NotFound
                    && std::fs::symlink_metadata(&path).is_ok() =>
            {
                continue;
            }
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        if meta.is_dir() {
            collect(dir, &name, files)?;
        } else if meta.is_file() {
            files.push(name);
        }
    }
    Ok(())
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut file =
        File::open(path).with_context(|| format!("{} is missing or unreadable", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(read) => hasher.update(&buf[..read]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_payload_passes_and_a_missing_or_changed_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("PostgreSQL/bin")).unwrap();
        std::fs::write(dir.path().join("PostgreSQL/bin/postgres"), "server").unwrap();
        std::fs::write(dir.path().join("VERSION"), "9.1.0.1195\n").unwrap();
        assert_eq!(write(dir.path()).unwrap(), 2);
        assert!(check(dir.path()).unwrap().is_empty());

        std::fs::write(dir.path().join("VERSION"), "9.1.0.1196\n").unwrap();
        std::fs::remove_file(dir.path().join("PostgreSQL/bin/postgres")).unwrap();
        let problems = check(dir.path()).unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0], "PostgreSQL/bin/postgres is missing");
        assert!(problems[1].starts_with("VERSION differs"), "{problems:?}");

        std::fs::remove_file(dir.path().join(LIST_FILE)).unwrap();
        let problems = check(dir.path()).unwrap();
        assert!(
            problems[0].ends_with("payload.sha256 is missing"),
            "{problems:?}"
        );
    }
}
