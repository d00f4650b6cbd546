//! The rules of ARCHITECTURE.md, checked on the source so that they stay
//! true: the layers import only downward, steps never import each other,
//! SQL is written in `migration/` and `system/pg` only, and only
//! `support/cmd` starts processes; the tests' oracle uses no code of the product.

use std::path::{Path, PathBuf};

/// The layers from the bottom up, and what each may import.
const LAYERS: &[(&str, &[&str])] = &[
    ("support", &[]),
    ("files", &["support"]),
    ("system", &["support", "files"]),
    ("snapshot", &["support"]),
    ("migration", &["support", "files", "system"]),
    (
        "flow",
        &["support", "files", "system", "snapshot", "migration"],
    ),
    (
        "cli",
        &[
            "support",
            "files",
            "system",
            "snapshot",
            "migration",
            "flow",
        ],
    ),
];

/// Words that begin an SQL statement, as they begin a string literal.
const SQL_WORDS: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "ALTER",
    "TRUNCATE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "COPY",
    "ANALYZE",
    "CHECKPOINT",
    "SHOW",
    "SET",
    "VACUUM",
];

/// Whether a string literal begins an SQL statement: a word of
/// [`SQL_WORDS`] alone, or followed by a blank or a semicolon.
fn is_sql(literal: &str) -> bool {
    SQL_WORDS.iter().any(|word| {
        literal
            .strip_prefix(word)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', ';']))
    })
}

fn source_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(source_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The crate's own source, relative paths with the text of each file up to
/// its unit tests (which may do what the product may not).
fn product_sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    source_files(&src)
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = match text.find("#[cfg(test)]") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            let relative = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (relative, code)
        })
        .collect()
}

/// The layer a source file belongs to (`None` for `lib.rs` and the binaries).
fn layer_of(relative: &str) -> Option<&'static str> {
    let top = relative.split('/').next()?;
    LAYERS
        .iter()
        .map(|(name, _)| *name)
        .find(|name| top == *name || top == format!("{name}.rs"))
}

/// Every `crate::LAYER` a file names (in `use` lines and paths alike).
fn layers_named(code: &str) -> Vec<&'static str> {
    LAYERS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| {
            code.contains(&format!("crate::{name}::")) || code.contains(&format!("crate::{name};"))
        })
        .collect()
}

#[test]
fn every_layer_imports_only_the_layers_below_it() {
    let mut violations = Vec::new();
    for (file, code) in product_sources() {
        let Some(layer) = layer_of(&file) else {
            continue;
        };
        let allowed = LAYERS.iter().find(|(name, _)| *name == layer).unwrap().1;
        for named in layers_named(&code) {
            if named != layer && !allowed.contains(&named) {
                violations.push(format!("src/{file} ({layer}) uses crate::{named}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports that run upward:\n{}",
        violations.join("\n")
    );
}

/// The lines, as `src/FILE:LINE: text`, of the files `checked` selects
/// whose (non-comment) text `breaks` the rule.
fn lines_breaking(checked: impl Fn(&str) -> bool, breaks: impl Fn(&str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for (file, code) in product_sources() {
        if !checked(&file) {
            continue;
        }
        for (number, line) in code.lines().enumerate() {
            if !line.trim_start().starts_with("//") && breaks(line) {
                found.push(format!("src/{file}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn no_step_imports_another_step() {
    let violations = lines_breaking(
        |file| file.starts_with("flow/upgrade/steps/") && !file.ends_with("mod.rs"),
        |line| line.contains("flow::steps") || line.contains("super::"),
    );
    assert!(
        violations.is_empty(),
        "steps importing steps:\n{}",
        violations.join("\n")
    );
}

#[test]
fn sql_is_written_in_migration_and_system_pg_only() {
    let violations = lines_breaking(
        |file| !file.starts_with("migration/") && file != "system/pg.rs",
        |line| line.split('"').skip(1).step_by(2).any(is_sql),
    );
    assert!(
        violations.is_empty(),
        "SQL outside migration/ and system/pg:\n{}",
        violations.join("\n")
    );
}

#[test]
fn only_the_command_runner_starts_processes() {
    let violations = lines_breaking(
        |file| file != "support/cmd.rs",
        |line| line.contains("process::Command") || line.contains("Command::new"),
    );
    assert!(
        violations.is_empty(),
        "processes started outside support/cmd:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checks_see_the_code_they_check() {
    // A check that finds no file proves nothing.
    let sources = product_sources();
    assert!(sources.iter().any(|(f, _)| f == "support/cmd.rs"));
    assert!(
        sources
            .iter()
            .filter(|(f, _)| f.starts_with("flow/upgrade/steps/"))
            .count()
            >= 6
    );
    assert!(
        sources
            .iter()
            .any(|(f, code)| f == "system/pg.rs" && code.contains("\"SELECT ")),
        "the SQL check would see SQL in system/pg"
    );
    assert_eq!(layer_of("flow/steps/switch.rs"), Some("flow"));
    assert!(is_sql("SELECT 1") && is_sql("ANALYZE") && is_sql("COMMIT;"));
    assert!(!is_sql("ROLLBACK_STARTED") && !is_sql("Selected"));
    assert_eq!(layers_named("use crate::flow::layout;"), ["flow"]);
}

/// Files that may still set an owner or a mode by path: the snapshot
/// engine, which restores the program tree's entries as its manifest
/// records them (lchown, never following a link) under directories it
/// checked are root's, and extracts into the backup directory, root's.
/// Everywhere else an owner or a mode is set on a handle
/// (`support::no_follow`), since under `/var/imss` a path may lead through
/// a link the service account planted.
const OWNER_OR_MODE_BY_PATH: &[&str] = &["snapshot/apply.rs", "snapshot/extract.rs"];

#[test]
fn owners_and_modes_are_set_on_handles_not_paths() {
    let violations = lines_breaking(
        |file| file != "support/no_follow.rs" && !OWNER_OR_MODE_BY_PATH.contains(&file),
        |line| {
            [
                "fs::chown(",
                "fs::lchown(",
                "fs::set_permissions(",
                "unistd::chown(",
            ]
            .iter()
            .any(|call| line.contains(call))
        },
    );
    assert!(
        violations.is_empty(),
        "owners or modes set by path (use support::no_follow):\n{}",
        violations.join("\n")
    );
}

/// The tests' oracles judge the product, so they may not use it: a fault
/// in code they shared would cancel out. `fixture/src/harness/oracle.rs` names
/// neither the product's crate nor another fixture module (which do use
/// the product).
#[test]
fn the_oracle_calls_no_code_of_the_product() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixture/src/harness/oracle.rs");
    let text = std::fs::read_to_string(&path).unwrap();
    let violations: Vec<String> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains("imss_upgrade") || line.contains("crate::"))
        .map(|(number, line)| format!("{}:{}: {}", path.display(), number + 1, line.trim()))
        .collect();
    assert!(
        violations.is_empty(),
        "the oracle uses the product's code:\n{}",
        violations.join("\n")
    );
}
