//! The rules of ARCHITECTURE.md, checked on the source so that they stay
//! true: the layers import only downward, steps never import each other,
//! SQL is written in `migration/` and `system/pg` only, and only
//! `support/cmd` starts processes; the tests' oracle uses no code of the product;
//! the binaries are thin mains over `cli`, and nothing below `cli` prints.

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
        |file| !file.starts_with("migration/") && !file.starts_with("system/pg/"),
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
            .any(|(f, code)| f.starts_with("system/pg/") && code.contains("\"SELECT ")),
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
const OWNER_OR_MODE_BY_PATH: &[&str] = &["snapshot/restore.rs", "snapshot/extract.rs"];

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

/// Lines a file in `src/bin/` may have: a main that parses, takes the
/// command's profile and hands over to `cli`.
const BIN_MAX_LINES: usize = 80;

/// Whether `c` may be part of an identifier.
fn is_identifier(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether the text before a match, `before`, ends where a path may begin:
/// not within an identifier, nor after `x::` (a segment of another path).
fn begins_a_path(before: &str) -> bool {
    match before.strip_suffix("::") {
        Some(outer) => !outer.ends_with(is_identifier),
        None => !before.ends_with(is_identifier),
    }
}

/// What follows each path that begins with `imss_upgrade` in `code`: the
/// top-level modules it names, one per path (the items of a `{…}` group
/// each), and `?` for a use of the crate under another name (`use
/// imss_upgrade as x;`). `cli::imss_upgrade(…)` is a function of `cli`.
fn crate_modules_named(code: &str) -> Vec<String> {
    let mut named = Vec::new();
    for (at, _) in code.match_indices("imss_upgrade") {
        if !begins_a_path(&code[..at]) {
            continue;
        }
        let Some(rest) = code[at + "imss_upgrade".len()..].strip_prefix("::") else {
            named.push("?".to_string());
            continue;
        };
        let Some(group) = rest.strip_prefix('{') else {
            named.push(first_segment(rest));
            continue;
        };
        // The group's top-level items, up to its closing brace.
        let (mut depth, mut item) = (0, String::new());
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    named.push(first_segment(&item));
                    item.clear();
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
        if !item.trim().is_empty() {
            named.push(first_segment(&item));
        }
    }
    named
}

/// The first identifier of a path: `cli` of ` cli::args::X`.
fn first_segment(path: &str) -> String {
    path.trim_start()
        .chars()
        .take_while(|c| is_identifier(*c))
        .collect()
}

/// ARCHITECTURE.md: `src/bin/` holds thin mains. Everything a command
/// does, prints or needs (its command line, its stderr level, its
/// privileges) is in `cli`, so a binary names no other layer of the crate.
#[test]
fn the_binaries_are_thin_mains_over_cli() {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
    let files = source_files(&bin);
    assert!(files.len() >= 2, "no binaries in {}", bin.display());
    let mut violations = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path.strip_prefix(&bin).unwrap().display().to_string();
        let lines = text.lines().count();
        if lines >= BIN_MAX_LINES {
            violations.push(format!(
                "src/bin/{file}: {lines} lines (a main has fewer than {BIN_MAX_LINES})"
            ));
        }
        for (number, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for module in crate_modules_named(line) {
                if module != "cli" {
                    violations.push(format!(
                        "src/bin/{file}:{}: names imss_upgrade::{module}: {}",
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "binaries that do more than hand over to cli:\n{}",
        violations.join("\n")
    );
}

/// The layers below `cli` (those it may use), which return values and
/// never print.
fn layers_below_cli() -> &'static [&'static str] {
    LAYERS.iter().find(|(name, _)| *name == "cli").unwrap().1
}

/// What writes to stdout, stderr or the terminal. Each is matched where a
/// word begins (`println!` is not in `eprintln!`); a bare call
/// (`stderr()`, as `use std::io::stderr` allows) not after `.` or `::`,
/// where it is a method or the end of a path another pattern names.
const PRINTS: &[&str] = &[
    "println!",
    "print!",
    "eprintln!",
    "eprint!",
    "dbg!",
    "io::stdout",
    "io::stderr",
    "stdout()",
    "stderr()",
    "/dev/tty",
    "StepLines::stderr",
];

/// The writers to stderr below `cli`, each with what it may use and why.
/// Everything else there returns data (or an error) for `cli` to show.
const PRINTS_BELOW_CLI: &[(&str, &[&str], &str)] = &[
    (
        "support/logging.rs",
        &["io::stderr"],
        "the log's stderr layer, and the one error line of a failed command \
         (report_error), which must reach stderr even when logging could not start",
    ),
    (
        "support/step_lines.rs",
        &["io::stderr", "stderr()"],
        "step lines for people are written to stderr as each step ends; \
         cli chooses them (StepLines::stderr) or none (silent) and hands them down",
    ),
    (
        "support/failpoints.rs",
        &["eprintln!"],
        "the tests' stop hooks (failpoints builds only) say why IMSS_STOP_AT or \
         IMSS_STOP_FILE cannot be used, from inside a fail point where no caller waits",
    ),
];

/// The patterns of [`PRINTS`] that `line` uses.
fn prints(line: &str) -> Vec<&'static str> {
    PRINTS
        .iter()
        .copied()
        .filter(|pattern| {
            line.match_indices(pattern).any(|(at, _)| {
                let before = &line[..at];
                if pattern.ends_with("()") {
                    !before.ends_with(|c: char| is_identifier(c) || c == '.' || c == ':')
                } else {
                    !pattern.starts_with(is_identifier) || !before.ends_with(is_identifier)
                }
            })
        })
        .collect()
}

/// ARCHITECTURE.md: flow and the layers below it return what they found
/// or did, and `cli` decides what to print; only the writers of
/// [`PRINTS_BELOW_CLI`] write to stderr, and only as named there.
#[test]
fn flow_and_the_layers_below_never_print() {
    let below_cli =
        |file: &str| layer_of(file).is_some_and(|layer| layers_below_cli().contains(&layer));
    let excused = |file: &str| {
        PRINTS_BELOW_CLI
            .iter()
            .any(|(excused, ..)| *excused == file)
    };
    let mut violations = lines_breaking(
        |file| below_cli(file) && !excused(file),
        |line| !prints(line).is_empty(),
    );
    for (file, patterns, _) in PRINTS_BELOW_CLI {
        violations.extend(lines_breaking(
            |checked| checked == *file,
            |line| prints(line).iter().any(|used| !patterns.contains(used)),
        ));
    }
    assert!(
        violations.is_empty(),
        "printing below cli (return the value and let cli print it):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_print_and_binary_checks_see_what_they_refuse() {
    assert_eq!(
        crate_modules_named("use imss_upgrade::cli::{self, args::X};"),
        ["cli"]
    );
    assert_eq!(
        crate_modules_named("use imss_upgrade::{cli::{self, a}, flow::context::Context};"),
        ["cli", "flow"]
    );
    assert_eq!(
        crate_modules_named("let x = imss_upgrade::support::exit::OK;"),
        ["support"]
    );
    assert_eq!(crate_modules_named("use imss_upgrade as product;"), ["?"]);
    assert!(layers_below_cli().contains(&"support") && layers_below_cli().contains(&"flow"));
    assert_eq!(prints(r#"    println!("x");"#), ["println!"]);
    assert_eq!(prints(r#"eprint!("x")"#), ["eprint!"]);
    assert_eq!(
        prints("let _ = writeln!(std::io::stdout().lock(), \"x\");"),
        ["io::stdout"]
    );
    assert_eq!(prints("let _ = writeln!(stdout(), \"x\");"), ["stdout()"]);
    assert_eq!(prints("pub fn stderr() -> Self {"), ["stderr()"]);
    assert_eq!(
        prints("let lines = StepLines::stderr();"),
        ["StepLines::stderr"]
    );
    assert!(prints(".stdout(Stdio::piped())").is_empty());
    assert!(prints("String::from_utf8_lossy(&output.stdout)").is_empty());
    assert!(prints("let stdout = drain(child.stdout.take());").is_empty());
    // Every exception names a file that exists and still does what it is
    // excused for: a stale one would excuse the next file of that name.
    let sources = product_sources();
    for (file, patterns, why) in PRINTS_BELOW_CLI {
        assert!(!why.is_empty());
        let (_, code) = sources
            .iter()
            .find(|(f, _)| f == file)
            .unwrap_or_else(|| panic!("no src/{file}"));
        for pattern in *patterns {
            assert!(
                code.contains(pattern),
                "src/{file} no longer uses {pattern}"
            );
        }
    }
}

/// The macros each layer defines (`macro_rules! NAME`), by name.
fn macros_defined() -> Vec<(String, &'static str)> {
    let mut defined = Vec::new();
    for (file, code) in product_sources() {
        let Some(layer) = layer_of(&file) else {
            continue;
        };
        for line in code.lines() {
            if let Some(rest) = line.trim_start().strip_prefix("macro_rules!") {
                let name: String = rest
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                defined.push((name, layer));
            }
        }
    }
    defined
}

/// A macro is an import of the layer that defines it: `crate::NAME!`
/// names no layer, so without this a macro could tie a layer upward
/// unseen (the fail points' macro, defined in flow and used by snapshot
/// and migration, did).
#[test]
fn a_macro_counts_as_an_import_of_the_layer_that_defines_it() {
    let macros = macros_defined();
    assert!(
        macros
            .iter()
            .any(|(name, layer)| name == "fail_point" && *layer == "support"),
        "the check would see the fail points' macro: {macros:?}"
    );
    let mut violations = Vec::new();
    for (file, code) in product_sources() {
        let Some(layer) = layer_of(&file) else {
            continue;
        };
        let allowed = LAYERS.iter().find(|(name, _)| *name == layer).unwrap().1;
        for (name, defined_in) in &macros {
            let used = code.contains(&format!("{name}!(")) || code.contains(&format!("{name}! ("));
            if used && *defined_in != layer && !allowed.contains(defined_in) {
                violations.push(format!(
                    "src/{file} ({layer}) uses {name}!, defined in {defined_in}"
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "macros used above the layer that may use them:\n{}",
        violations.join("\n")
    );
}

/// ARCHITECTURE.md, as the repository has it.
fn architecture_md() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md")).unwrap()
}

/// Every folder under `src/` and every module in it is named on the map
/// (`` `name` `` or `` `name/` ``), so that a newcomer finds there what
/// the tree holds.
#[test]
fn the_map_names_every_folder_and_module_of_src() {
    let map = architecture_md();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut missing = Vec::new();
    for path in source_files(&src) {
        let relative = path.strip_prefix(&src).unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let named = match stem.as_str() {
            "lib" | "mod" => true,
            _ if relative.starts_with("bin") => {
                map.contains(&format!("`src/bin/{stem}.rs`")) || map.contains(&format!("`{stem}`"))
            }
            _ => map.contains(&format!("`{stem}`")) || map.contains(&format!("`{stem}/`")),
        };
        if !named {
            missing.push(format!("module src/{}", relative.display()));
        }
        let mut folder = relative.parent();
        while let Some(dir) = folder.filter(|dir| !dir.as_os_str().is_empty()) {
            let name = dir.file_name().unwrap().to_string_lossy();
            let listed = map.contains(&format!("`src/{}/`", dir.display()))
                || map.contains(&format!("`{name}/`"));
            if !listed {
                missing.push(format!("folder src/{}/", dir.display()));
            }
            folder = dir.parent();
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md does not name:\n{}",
        missing.join("\n")
    );
}

/// A doc comment that sends the reader to a file sends them to one the
/// repository has.
#[test]
fn no_comment_cites_a_document_the_repository_lacks() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cited = Vec::new();
    for dir in ["src", "fixture/src", "tests"] {
        for path in source_files(&top.join(dir)) {
            let text = std::fs::read_to_string(&path).unwrap();
            for (number, line) in text.lines().enumerate() {
                if !line.trim_start().starts_with("//") {
                    continue;
                }
                for word in line.split(|c: char| !(c.is_alphanumeric() || "._-/".contains(c))) {
                    if word.ends_with(".md") && !top.join(word).exists() {
                        cited.push(format!(
                            "{}:{}: {word}",
                            path.strip_prefix(top).unwrap().display(),
                            number + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(
        cited.is_empty(),
        "comments cite documents that are not in the repository:\n{}",
        cited.join("\n")
    );
}

/// Words the map puts in backticks in its rows for `src/` that are not
/// modules: the programs and system calls it names, and functions.
const MAP_WORDS_NOT_MODULES: &[&str] = &[
    "initdb",
    "rndc",
    "systemctl",
    "fsync",
    "syncfs",
    "execute",
    "undo",
];

/// Every module the map names in its rows for `src/` exists: a word in
/// backticks there is a module or folder under `src/`, or one of
/// [`MAP_WORDS_NOT_MODULES`].
#[test]
fn every_module_the_map_names_exists() {
    let map = architecture_md();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = std::collections::BTreeSet::new();
    for path in source_files(&src) {
        let relative = path.strip_prefix(&src).unwrap();
        modules.insert(path.file_stem().unwrap().to_string_lossy().into_owned());
        for dir in relative.ancestors().skip(1) {
            if let Some(name) = dir.file_name() {
                modules.insert(name.to_string_lossy().into_owned());
            }
        }
    }
    let mut unknown = std::collections::BTreeSet::new();
    for row in map.lines().filter(|line| line.starts_with("| `src/")) {
        for (index, quoted) in row.split('`').enumerate() {
            let word = quoted.trim_end_matches('/');
            let module_like = index % 2 == 1
                && !word.is_empty()
                && word.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            if module_like && !modules.contains(word) && !MAP_WORDS_NOT_MODULES.contains(&word) {
                unknown.insert(word.to_string());
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "ARCHITECTURE.md names modules that src/ does not have: {unknown:?}"
    );
}
