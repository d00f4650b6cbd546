//! `odbc.ini` and `imss.ini`, read and rewritten verbatim.
//!
//! The vendor's upgrade read `odbc.ini` with Python's `ConfigParser`, whose
//! interpolation choked on a `%` in the password (seed, item 5). Here no
//! value is interpolated, and each file is read the way its real reader
//! reads it ([`Dialect`]):
//! - `odbc.ini` as unixODBC reads it for the driver (the `configparser`
//!   crate set so): lines trimmed, `;` and `#` start comment lines only, a
//!   value is what follows the first `=`, trimmed, quotes and a closing
//!   backslash included;
//! - `imss.ini` by `rust-ini` with quote and escape handling off, less one
//!   outer pair of double quotes, which the writer puts around a value with
//!   blank edges or a closing backslash (rust-ini would continue the line),
//!   so that any single-line value survives a write and a read.
//!
//! A rewrite edits only the lines of the keys that change, so comments,
//! blank lines, key order and every untouched byte stay as they were, and
//! is checked by reading it back.

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
    dialect: Dialect,
    sections: Vec<Section>,
}

/// Whose reading of the values [`IniFile::get`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `imss.ini`, read by the IMSS programs: verbatim but one outer pair
    /// of double quotes.
    Imss,
    /// `odbc.ini`, read by unixODBC for the driver: verbatim, trimmed. A
    /// value with blank edges cannot be written in it.
    UnixOdbc,
}

/// A section's name and its keys and values, in file order.
#[derive(Clone)]
struct Section {
    name: String,
    entries: Vec<(String, String)>,
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
    /// Reads and parses `path` as the IMSS programs read `imss.ini`.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_as(path, Dialect::Imss)
    }

    /// Reads and parses `path` as `dialect` reads it.
    pub fn load_as(path: &Path, dialect: Dialect) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let text = String::from_utf8(bytes).map_err(|err| {
            anyhow::anyhow!(
                "{} is not UTF-8 text (byte {} is not valid): convert it to UTF-8, keeping its values",
                path.display(),
                err.utf8_error().valid_up_to()
            )
        })?;
        Self::parse_as(text, path, dialect)
    }

    /// Parses `text` as the IMSS programs read `imss.ini`; `origin` names it
    /// in errors.
    pub fn parse(text: impl Into<String>, origin: &Path) -> Result<Self> {
        Self::parse_as(text, origin, Dialect::Imss)
    }

    /// Parses `text` as `dialect` reads it; `origin` names it in errors.
    pub fn parse_as(text: impl Into<String>, origin: &Path, dialect: Dialect) -> Result<Self> {
        let text = text.into();
        let sections = parse_sections(&text, dialect).with_context(|| {
            format!(
                "parsing {}: fix the line named, then run again",
                origin.display()
            )
        })?;
        Ok(Self {
            origin: origin.to_path_buf(),
            text,
            dialect,
            sections,
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

    /// The value of `key` in `[section]` as the file's [`Dialect`] reads it;
    /// the key matches without regard to case, as unixODBC matches it.
    pub fn get(&self, section: &str, key: &str) -> Option<String> {
        self.section(section)?
            .entries
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value.clone())
    }

    fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|section| section.name == name)
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
        self.sections
            .iter()
            .map(|section| section.name.clone())
            .collect()
    }

    /// The keys and values of `[section]`, in file order.
    pub fn entries(&self, section: &str) -> Vec<(String, String)> {
        self.section(section)
            .map(|section| section.entries.clone())
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
        let encoded = match self.dialect {
            Dialect::Imss => quote_if_needed(value),
            Dialect::UnixOdbc if value.trim() != value => bail!(
                "{}: the value of {key} in [{section}] begins or ends with a blank, which unixODBC \
                 trims away",
                self.origin.display()
            ),
            Dialect::UnixOdbc => value.to_string(),
        };
        let new_text = edit_text(&self.text, section, key, &encoded);
        let check = Self::parse_as(new_text, &self.origin, self.dialect)
            .with_context(|| format!("rewriting {}", self.origin.display()))?;
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

fn parse_sections(text: &str, dialect: Dialect) -> Result<Vec<Section>> {
    match dialect {
        Dialect::Imss => parse_imss(text),
        Dialect::UnixOdbc => parse_unixodbc(text),
    }
}

fn parse_imss(text: &str) -> Result<Vec<Section>> {
    let options = ini::ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        ..Default::default()
    };
    let parsed = ini::Ini::load_from_str_opt(without_bom(text), options)
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    Ok(parsed
        .iter()
        .filter_map(|(name, properties)| {
            Some(Section {
                name: name?.to_string(),
                entries: properties
                    .iter()
                    .map(|(key, value)| (key.to_string(), unquote(value).to_string()))
                    .collect(),
            })
        })
        .collect())
}

/// `text` less the byte order mark an editor on Windows may put first.
fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

fn parse_unixodbc(text: &str) -> Result<Vec<Section>> {
    let mut defaults = configparser::ini::IniDefault::default();
    defaults.case_sensitive = true;
    defaults.delimiters = vec!['='];
    defaults.comment_symbols = vec![';', '#'];
    defaults.enable_inline_comments = false;
    defaults.multiline = false;
    let mut parser = configparser::ini::Ini::new_from_defaults(defaults);
    let map = parser
        .read(without_bom(text).to_string())
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    Ok(map
        .into_iter()
        .map(|(name, entries)| Section {
            name,
            entries: entries
                .into_iter()
                .map(|(key, value)| (key, value.unwrap_or_default()))
                .collect(),
        })
        .collect())
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
    let trimmed = without_bom(line).trim();
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
                // `Key =` with no value yet gets one blank after the `=`.
                if value_start == body_end
                    && !encoded.is_empty()
                    && line[..value_start].ends_with('=')
                {
                    out.push(' ');
                }
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
    fn the_unixodbc_dialect_reads_values_as_unixodbc_does() {
        // What `odbcinst -q -s -n IMSS` printed for this file.
        let text = "\u{feff}[IMSS]\r\nP1 = \"fully quoted\"\r\nP2 = ends in a backslash\\\r\n\
                    P3 =   lead and trail   \r\nP4 = a;b#c ; not a comment\r\n#P5 = commented\r\n\
                    P6 = \t tab\t\r\nP7 = x=y\r\n";
        let file = IniFile::parse_as(text, Path::new("odbc.ini"), Dialect::UnixOdbc).unwrap();
        assert_eq!(
            file.entries("IMSS"),
            [
                ("P1", "\"fully quoted\""),
                ("P2", "ends in a backslash\\"),
                ("P3", "lead and trail"),
                ("P4", "a;b#c ; not a comment"),
                ("P6", "tab"),
                ("P7", "x=y"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let imss = IniFile::parse(text, Path::new("imss.ini")).unwrap();
        assert_eq!(imss.get("IMSS", "P1").as_deref(), Some("fully quoted"));
    }

    #[test]
    fn the_unixodbc_dialect_refuses_a_value_it_would_trim() {
        let mut file = IniFile::parse_as(ODBC, Path::new("odbc.ini"), Dialect::UnixOdbc).unwrap();
        let err = file.set("IMSS", "Password", " edge").unwrap_err();
        assert!(err.to_string().contains("trims"), "{err}");
        file.set("IMSS", "Password", "\"as is\"\\").unwrap();
        assert!(
            file.text().contains("Password    = \"as is\"\\\n"),
            "{}",
            file.text()
        );
    }
}
