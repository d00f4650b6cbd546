//! A secret (the database password) that cannot be printed by accident.
//!
//! It travels from the ini reader to the `pg` module and to a child's stdin,
//! and nowhere else: `Debug` and `Display` show a mask, and there is no
//! `Serialize`.

use std::fmt;

/// What [`Secret::masked`] shows for any password.
pub const MASK: &str = "********";

/// Secret bytes. The only way to the bytes is [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps `bytes`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The bytes, for the one consumer that needs them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The mask shown in reports: as wide whatever the password, so that it
    /// tells nothing of its length (the vendor's step 5 screen showed one
    /// `*` per character).
    pub fn masked(&self) -> String {
        MASK.to_string()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let secret = Secret::new("p%ss wörd");
        assert_eq!(format!("{secret} {secret:?}"), "*** Secret(***)");
        assert_eq!(secret.masked(), MASK);
        assert_eq!(
            Secret::new("x").masked(),
            Secret::new("a much longer password").masked()
        );
    }
}
