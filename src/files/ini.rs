//! `odbc.ini` and `imss.ini`, read and rewritten verbatim.
//!
//! The vendor's upgrade read `odbc.ini` with Python's `ConfigParser`, whose
//! interpolation choked on a `%` in the password (seed, item 5). Here:
//! - values are read by `rust-ini` with quote and escape handling off, so a
//!   `%`, `%(x)s`, `;`, `#`, `=`, `"`, `'` or `\` is just a character (the
//!   `configparser` crate was tried too and cuts values at an inline `;` or
//!   `#`; both crates trim surrounding blanks and neither keeps comments on
//!   write);
//! - a rewrite edits only the lines of the keys that change, so comments,
//!   blank lines, key order and every untouched byte stay as they were;
//! - a value with leading or trailing blanks, or ending in a backslash (which
//!   would continue the line), is written inside one pair of double quotes, and one outer pair of quotes is taken off on reading, so
//!   any single-line value survives a write and a read byte for byte. The
//!   rewrite is checked by reading it back.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::support::fsutil::atomic_write_as;

/// An ini file: its exact text and the values parsed from it. Its `Debug`
/// shows where it came from and its sections, never a value: `odbc.ini`
/// holds the database password.
#[derive(Clone)]
pub struct IniFile {
    origin: PathBuf,
    text: String,
    parsed: ini::Ini,
}

impl std::fmt::Debug for IniFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IniFile")
            .field("origin", &self.origin)
            .field("sections", &self.sections())
            .finish_non_exhaustive()
    }
}

impl IniFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let text = String::from_utf8(bytes).map_err(|err| {
            anyhow::anyhow!(
                "{} is not UTF-8 text (byte {} is not valid): convert it to UTF-8, keeping its values",
                path.display(),
                err.utf8_error().valid_up_to()
            )
        })?;
        Self::parse(text, path)
    }

    /// Parses `text`; `origin` names it in errors.
    pub fn parse(text: impl Into<String>, origin: &Path) -> Result<Self> {
        let text = text.into();
        let parsed = parse_verbatim(&text).with_context(|| {
            format!(
                "parsing {}: fix the line named, then run again",
                origin.display()
            )
        })?;
        Ok(Self {
            origin: origin.to_path_buf(),
            text,
            parsed,
        })
    }

    /// The file's exact text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Where the file came from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The value of `key` in `[section]`; the key matches without regard to
    /// case, as unixODBC matches it. The value is exactly as written, less one
    /// outer pair of double quotes.
    pub fn get(&self, section: &str, key: &str) -> Option<String> {
        let properties = self.parsed.section(Some(section))?;
        properties
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| unquote(value).to_string())
    }

    /// Like [`IniFile::get`], with an error that names the file, section and key.
    pub fn require(&self, section: &str, key: &str) -> Result<String> {
        self.get(section, key).with_context(|| {
            format!(
                "{} has no {key} in [{section}]: add it, then run again",
                self.origin.display()
            )
        })
    }

    /// The section names, in file order.
    pub fn sections(&self) -> Vec<String> {
        self.parsed
            .sections()
            .flatten()
            .map(str::to_string)
            .collect()
    }

    /// The keys and values of `[section]`, in file order.
    pub fn entries(&self, section: &str) -> Vec<(String, String)> {
        self.parsed
            .section(Some(section))
            .map(|props| {
                props
                    .iter()
                    .map(|(k, v)| (k.to_string(), unquote(v).to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sets `key` in `[section]` to `value`, editing only that line (or adding
    /// one at the end of the section, or the section at the end of the file).
    pub fn set(&mut self, section: &str, key: &str, value: &str) -> Result<()> {
        if value.contains(['\n', '\r']) {
            bail!(
                "{}: the value of {key} in [{section}] has a line break, which an ini file cannot hold",
                self.origin.display()
            );
        }
        let encoded = quote_if_needed(value);
        let new_text = edit_text(&self.text, section, key, &encoded);
        let reparsed = parse_verbatim(&new_text)
            .with_context(|| format!("rewriting {}", self.origin.display()))?;
        let check = Self {
            origin: self.origin.clone(),
            text: new_text,
            parsed: reparsed,
        };
        if check.get(section, key).as_deref() != Some(value) {
            bail!(
                "{}: the new value of {key} in [{section}] does not read back unchanged; refusing to write it",
                self.origin.display()
            );
        }
        *self = check;
        Ok(())
    }

    /// Writes the text atomically to `path` with `mode`, owned by `owner`
    /// (uid, gid) when given, from its creation on.
    pub fn save(&self, path: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
        atomic_write_as(path, self.text.as_bytes(), mode, owner)
    }
}

fn parse_verbatim(text: &str) -> Result<ini::Ini> {
    let options = ini::ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        ..Default::default()
    };
    ini::Ini::load_from_str_opt(text, options).map_err(|err| anyhow::anyhow!("{err}"))
}

fn unquote(value: &str) -> &str {
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        &value[1..value.len() - 1]
    } else {
        value
    }
}

fn quote_if_needed(value: &str) -> String {
    let blank_edges =
        value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace);
    let looks_quoted = value.len() >= 2 && value.starts_with('"') && value.ends_with('"');
    // rust-ini takes a backslash at the end of a line as a continuation.
    let continues = value.ends_with('\\');
    if blank_edges || looks_quoted || continues {
        format!("\"{value}\"")
    } else {
        value.to_string()
    }
}

/// What a line of an ini file is, as far as editing needs to know.
enum Line<'a> {
    Section(&'a str),
    /// A key line: its key, and the byte offset where the value starts.
    Key(&'a str, usize),
    Other,
}

fn classify(line: &str) -> Line<'_> {
    let trimmed = line.trim();
    if trimmed.starts_with(';') || trimmed.starts_with('#') || trimmed.is_empty() {
        return Line::Other;
    }
    if let Some(rest) = trimmed.strip_prefix('[')
        && let Some(end) = rest.find(']')
    {
        return Line::Section(rest[..end].trim());
    }
    let Some(eq) = line.find('=') else {
        return Line::Other;
    };
    let after = &line[eq + 1..];
    let value_start = eq + 1 + (after.len() - after.trim_start_matches([' ', '\t']).len());
    Line::Key(line[..eq].trim(), value_start)
}

fn edit_text(text: &str, section: &str, key: &str, encoded: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut current: Option<&str> = None;
    let mut section_end: Option<usize> = None; // index after the section's last non-blank line
    for (index, line) in lines.iter().enumerate() {
        match classify(line) {
            Line::Section(name) => current = Some(name),
            Line::Key(name, value_start)
                if current == Some(section) && name.eq_ignore_ascii_case(key) =>
            {
                let body_end = line.trim_end_matches(['\n', '\r']).len();
                let mut out = String::with_capacity(text.len() + encoded.len());
                lines[..index].iter().for_each(|l| out.push_str(l));
                out.push_str(&line[..value_start]);
                out.push_str(encoded);
                out.push_str(&line[body_end..]);
                lines[index + 1..].iter().for_each(|l| out.push_str(l));
                return out;
            }
            _ => {}
        }
        if current == Some(section) && !line.trim().is_empty() {
            section_end = Some(index + 1);
        }
    }
    let mut out = String::with_capacity(text.len() + key.len() + encoded.len() + section.len() + 8);
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    match section_end {
        Some(end) => {
            lines[..end].iter().for_each(|l| out.push_str(l));
            if !out.ends_with('\n') {
                out.push_str(newline);
            }
            out.push_str(&format!("{key} = {encoded}{newline}"));
            lines[end..].iter().for_each(|l| out.push_str(l));
        }
        None => {
            out.push_str(text);
            if !out.is_empty() && !out.ends_with('\n') {
                out.push_str(newline);
            }
            if !out.is_empty() {
                out.push_str(newline);
            }
            out.push_str(&format!("[{section}]{newline}{key} = {encoded}{newline}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_value() {
        let ini = IniFile::parse(
            "[IMSS]\nUserName = sa\nPassword = Imss%71(sa)s;#=\"'\\ pass\n",
            Path::new("/opt/trend/imss/config/odbc.ini"),
        )
        .unwrap();
        let shown = format!("{ini:?} {ini:#?}");
        assert!(
            shown.contains("odbc.ini") && shown.contains("IMSS"),
            "{shown}"
        );
        for value in ["Imss%71", "pass", "sa\""] {
            assert!(!shown.contains(value), "{value} shown in {shown}");
        }
    }

    /// Every kind of password the vendor's parser could not take, and more.
    pub const HARD_VALUES: &[&str] = &[
        "p%ss",
        "100%",
        "a%(x)sb",
        "%%",
        "semi;colon",
        "hash#tag",
        "equals=sign",
        "double\"quote",
        "single'quote",
        "back\\slash",
        "trailing\\",
        "with space",
        "  leading",
        "trailing  ",
        " both ",
        "\"quoted\"",
        "\"",
        "日本語のパスワード",
        "Grüße",
        "%(x)s;#=\"'\\ mixed 日本",
        "",
    ];

    const ODBC: &str = "; IMSS database connection\n[ODBC Data Sources]\nIMSS = PostgreSQL\n\n[IMSS]\n# written by the installer\nDriver      = /opt/trend/imss/PostgreSQL/lib/psqlodbc.so\nServername  = 127.0.0.1\nPort        = 5432\nDatabase    = imss\nUserName    = sa\nPassword    = old\nReadOnly=No\n";

    #[test]
    fn hard_values_survive_write_then_read() {
        for value in HARD_VALUES {
            let mut file = IniFile::parse(ODBC, Path::new("odbc.ini")).unwrap();
            file.set("IMSS", "Password", value)
                .unwrap_or_else(|e| panic!("{value:?}: {e}"));
            let reread = IniFile::parse(file.text().to_string(), Path::new("odbc.ini")).unwrap();
            assert_eq!(
                reread.get("IMSS", "Password").as_deref(),
                Some(*value),
                "value {value:?}"
            );
        }
    }

    #[test]
    fn rewrite_changes_only_the_line_of_the_key() {
        let mut file = IniFile::parse(ODBC, Path::new("odbc.ini")).unwrap();
        file.set("IMSS", "Password", "p%ss;#word").unwrap();
        let before: Vec<&str> = ODBC.lines().collect();
        let after: Vec<&str> = file.text().lines().collect();
        assert_eq!(before.len(), after.len());
        for (old, new) in before.iter().zip(&after) {
            if old.starts_with("Password") {
                assert_eq!(*new, "Password    = p%ss;#word");
            } else {
                assert_eq!(old, new);
            }
        }
    }

    #[test]
    fn setting_the_same_value_is_byte_identical() {
        let mut file = IniFile::parse(ODBC, Path::new("odbc.ini")).unwrap();
        for (key, value) in file.entries("IMSS") {
            file.set("IMSS", &key, &value).unwrap();
        }
        assert_eq!(file.text(), ODBC);
    }

    #[test]
    fn new_keys_go_to_the_end_of_their_section() {
        let mut file = IniFile::parse(ODBC, Path::new("odbc.ini")).unwrap();
        file.set("ODBC Data Sources", "IMSS91", "PostgreSQL 15")
            .unwrap();
        file.set("New", "key", "v").unwrap();
        assert!(
            file.text()
                .contains("IMSS = PostgreSQL\nIMSS91 = PostgreSQL 15\n\n[IMSS]"),
            "{}",
            file.text()
        );
        assert!(
            file.text().ends_with("ReadOnly=No\n\n[New]\nkey = v\n"),
            "{}",
            file.text()
        );
    }

    #[test]
    fn keys_match_without_case_values_keep_it() {
        let file = IniFile::parse(ODBC, Path::new("odbc.ini")).unwrap();
        assert_eq!(file.get("IMSS", "username").as_deref(), Some("sa"));
        assert_eq!(
            file.get("IMSS", "Driver").as_deref(),
            Some("/opt/trend/imss/PostgreSQL/lib/psqlodbc.so")
        );
    }

    #[test]
    fn line_breaks_in_values_are_refused() {
        let mut file = IniFile::parse(ODBC, Path::new("odbc.ini")).unwrap();
        let err = file.set("IMSS", "Password", "a\nb").unwrap_err();
        assert!(err.to_string().contains("line break"), "{err}");
        assert_eq!(file.text(), ODBC);
    }

    #[test]
    fn a_missing_key_names_file_section_and_key() {
        let file = IniFile::parse(ODBC, Path::new("/opt/trend/imss/config/odbc.ini")).unwrap();
        let err = file.require("IMSS", "Protocol").unwrap_err().to_string();
        assert!(
            err.contains("/opt/trend/imss/config/odbc.ini")
                && err.contains("Protocol")
                && err.contains("[IMSS]"),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_file_names_itself() {
        let err = IniFile::parse("[IMSS\nPassword = x\n", Path::new("/x/odbc.ini")).unwrap_err();
        assert!(format!("{err:#}").contains("/x/odbc.ini"), "{err:#}");
    }

    #[test]
    fn configparser_cuts_values_that_rust_ini_keeps() {
        // The reason rust-ini was chosen; kept as a test so a change in either
        // crate shows up here.
        let text = "[IMSS]\nPassword = semi;colon#hash\n";
        let mut other = configparser::ini::Ini::new_cs();
        other.read(text.to_string()).unwrap();
        assert_eq!(other.get("IMSS", "Password").as_deref(), Some("semi"));
        let ours = IniFile::parse(text, Path::new("odbc.ini")).unwrap();
        assert_eq!(
            ours.get("IMSS", "Password").as_deref(),
            Some("semi;colon#hash")
        );
    }
}
