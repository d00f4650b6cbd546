//! The `Password` of an `odbc.ini` data source, as psqlODBC reads it.
//!
//! `odbc.ini` names its driver, psqlODBC, and the driver, not the ini
//! syntax, says what the value means. unixODBC hands the driver the value
//! as written (blanks at the edges trimmed, quotes kept); psqlODBC then
//! decodes it: `%XX` is the byte XX and `+` is a space, every other byte
//! stands for itself. Its setup writes a password so encoded: every byte
//! but an ASCII letter or digit as `%xx`, a space as `+`. (A connection
//! string's `PWD={...}` is taken verbatim; a data source's is not.)
//!
//! Where a `%` is not followed by two hex digits, psqlODBC sends bytes
//! nobody chose, so the file was not written for it and cannot have worked
//! through it: such a value is read both ways, decoded where it can be and
//! exactly as written, and the server says which one is its password.

use crate::support::secret::Secret;

/// A data source's `Password` value, exactly as `odbc.ini` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnPassword(Secret);

/// How a [`DsnPassword`] was turned into the password sent to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadingKind {
    /// As psqlODBC reads it: `%XX` one byte, `+` a space.
    Decoded,
    /// Byte for byte as written: the value holds a `%` that psqlODBC
    /// cannot decode.
    AsWritten,
}

impl ReadingKind {
    /// For reports: how the password in `odbc.ini` was read.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Decoded => "read as psqlODBC reads it: %XX one byte, + a space",
            Self::AsWritten => "read exactly as written: it holds a '%' psqlODBC cannot decode",
        }
    }
}

/// One password a [`DsnPassword`] may stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordReading {
    /// How it was read.
    pub kind: ReadingKind,
    /// The password to send.
    pub password: Secret,
}

impl DsnPassword {
    /// The value as the file holds it.
    pub fn as_written(value: impl Into<Vec<u8>>) -> Self {
        Self(Secret::new(value))
    }

    /// `password` as psqlODBC's setup writes it: only ASCII letters and
    /// digits stay, a space becomes `+`, every other byte `%xx`.
    pub fn encode(password: &Secret) -> Self {
        let mut out = Vec::with_capacity(password.expose().len() * 3);
        for &byte in password.expose() {
            match byte {
                b if b.is_ascii_alphanumeric() => out.push(b),
                b' ' => out.push(b'+'),
                b => out.extend_from_slice(format!("%{b:02x}").as_bytes()),
            }
        }
        Self(Secret::new(out))
    }

    /// The value as the file holds it.
    pub fn written(&self) -> &Secret {
        &self.0
    }

    /// The password psqlODBC sends for this value, or `None` where a `%` is
    /// not followed by two hex digits (psqlODBC then sends bytes that
    /// nobody chose).
    pub fn decoded(&self) -> Option<Secret> {
        let (password, well_formed) = decode(self.0.expose());
        well_formed.then(|| Secret::new(password))
    }

    /// The passwords this value may stand for, in the order to try them:
    /// psqlODBC's reading alone when it has one; otherwise the value
    /// decoded where it can be, then exactly as written.
    pub fn readings(&self) -> Vec<PasswordReading> {
        let (decoded, well_formed) = decode(self.0.expose());
        let decoded = PasswordReading {
            kind: ReadingKind::Decoded,
            password: Secret::new(decoded),
        };
        if well_formed {
            return vec![decoded];
        }
        let as_written = PasswordReading {
            kind: ReadingKind::AsWritten,
            password: self.0.clone(),
        };
        if decoded.password == as_written.password {
            vec![as_written]
        } else {
            vec![decoded, as_written]
        }
    }
}

/// psqlODBC's decoding of a data source's password, with each `%` that is
/// not followed by two hex digits kept as it is; and whether there was
/// none such.
fn decode(value: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(value.len());
    let mut well_formed = true;
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let mut byte = [0u8; 1];
                match value
                    .get(i + 1..i + 3)
                    .map(|digits| hex::decode_to_slice(digits, &mut byte))
                {
                    Some(Ok(())) => {
                        out.push(byte[0]);
                        i += 2;
                    }
                    _ => {
                        well_formed = false;
                        out.push(b'%');
                    }
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    (out, well_formed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(value: &str) -> Option<String> {
        DsnPassword::as_written(value)
            .decoded()
            .map(|secret| String::from_utf8(secret.expose().to_vec()).unwrap())
    }

    fn encoded(password: &str) -> String {
        String::from_utf8(
            DsnPassword::encode(&Secret::new(password))
                .written()
                .expose()
                .to_vec(),
        )
        .unwrap()
    }

    #[test]
    fn percent_hex_is_one_byte_and_plus_is_a_space() {
        assert_eq!(decoded("abc%41def").as_deref(), Some("abcAdef"));
        assert_eq!(decoded("abc%2541def").as_deref(), Some("abc%41def"));
        assert_eq!(decoded("a+b").as_deref(), Some("a b"));
        assert_eq!(decoded("a%2Bb").as_deref(), Some("a+b"));
        assert_eq!(decoded("%c3%a9").as_deref(), Some("é"));
        for verbatim in [
            "plain", "ab;cd", "ab#cd", "a\"b", "a'b", "a\\b", "a b", "x{y}", "{xy}",
        ] {
            assert_eq!(decoded(verbatim).as_deref(), Some(verbatim));
        }
    }

    #[test]
    fn a_percent_without_two_hex_digits_has_no_driver_reading() {
        for value in ["Imss%(sa)s", "100%", "x%zzy", "%4", "%%"] {
            assert_eq!(decoded(value), None, "{value}");
        }
        let readings = DsnPassword::as_written("a+b%(x)").readings();
        assert_eq!(
            readings,
            vec![
                PasswordReading {
                    kind: ReadingKind::Decoded,
                    password: Secret::new("a b%(x)")
                },
                PasswordReading {
                    kind: ReadingKind::AsWritten,
                    password: Secret::new("a+b%(x)")
                },
            ]
        );
        // Nothing to decode: the one reading is the value as written.
        let readings = DsnPassword::as_written("p%(x)s").readings();
        assert_eq!(readings.len(), 1);
        assert_eq!(readings[0].kind, ReadingKind::AsWritten);
        assert_eq!(readings[0].password, Secret::new("p%(x)s"));
    }

    #[test]
    fn a_well_formed_value_has_one_reading() {
        let readings = DsnPassword::as_written("abc%41+").readings();
        assert_eq!(readings.len(), 1);
        assert_eq!(readings[0].kind, ReadingKind::Decoded);
        assert_eq!(readings[0].password, Secret::new("abcA "));
    }

    #[test]
    fn encoding_is_what_psqlodbc_setup_writes_and_decodes_back() {
        assert_eq!(encoded("abc%41def"), "abc%2541def");
        assert_eq!(encoded("a+b"), "a%2bb");
        assert_eq!(encoded("a b"), "a+b");
        assert_eq!(
            encoded("Imss%71(sa)s;#=\"'\\ pass"),
            "Imss%2571%28sa%29s%3b%23%3d%22%27%5c+pass"
        );
        for password in [
            "Imss%71(sa)s;#=\"'\\ pass",
            "  blank edges  ",
            "日本語のパスワード%",
            "\"fully quoted\"",
            "ends in a backslash\\",
            "",
        ] {
            assert_eq!(decoded(&encoded(password)).as_deref(), Some(password));
        }
    }
}
