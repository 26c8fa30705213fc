//! Object ids, validated before they reach git's argv.

use std::fmt;

use crate::GitError;

/// A full object id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
///
/// Every commit Baton hands to git is an `Oid`, so no webhook field can become an option
/// (`--output=…`) or a revision expression (`main~3`, `@{-1}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Oid(String);

impl Oid {
    pub fn parse(text: &str) -> Result<Oid, GitError> {
        let ok = matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit());
        if ok {
            Ok(Oid(text.to_ascii_lowercase()))
        } else {
            Err(GitError::BadOid {
                given: text.chars().take(80).collect(),
            })
        }
    }

    /// The all-zero id forges send for "no commit" (a new or deleted ref).
    pub fn is_zero(&self) -> bool {
        self.0.bytes().all(|b| b == b'0')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_full_hex_ids_pass() {
        let sha1 = "6113728F27ae82c7b1a177c8d03f9e96e0adf246";
        assert_eq!(Oid::parse(sha1).unwrap().as_str(), sha1.to_lowercase());
        assert!(Oid::parse(&"a".repeat(64)).is_ok());
        for bad in [
            "",
            "main",
            "--output=/tmp/x",
            "6113728",
            &"g".repeat(40),
            &"a".repeat(41),
        ] {
            assert!(
                matches!(Oid::parse(bad), Err(GitError::BadOid { .. })),
                "{bad}"
            );
        }
        assert!(Oid::parse(&"0".repeat(40)).unwrap().is_zero());
        assert!(!Oid::parse(sha1).unwrap().is_zero());
    }
}
