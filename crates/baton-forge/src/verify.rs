//! Verifying that a delivery came from the forge that knows the secret, exactly as each forge
//! documents it, in constant time.
//!
//! - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`.
//! - Gitea: `X-Gitea-Signature: <hex HMAC-SHA256(secret, raw body)>` (no prefix).
//! - Forgejo: `X-Forgejo-Signature`, same value as Gitea's.
//! - GitLab: no HMAC; `X-Gitlab-Token` carries the configured secret verbatim.
//!
//! The body is the raw request body: never re-serialize the JSON before verifying.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Forge;

/// Case-insensitive access to a request's headers, so this crate needs no HTTP library.
///
/// Implemented for slices of `(name, value)` pairs; the server implements it for its own header
/// map. A header whose value is not valid text is reported as absent by the implementor.
pub trait Headers {
    /// The first value of header `name` (any case), if present.
    fn get(&self, name: &str) -> Option<&str>;
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for [(K, V)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for Vec<(K, V)> {
    fn get(&self, name: &str) -> Option<&str> {
        Headers::get(self.as_slice(), name)
    }
}

/// Why a delivery's authentication was refused. Every variant means: answer `401`, queue nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "missing header {0} (hint: set the webhook's secret on the forge to the repository's `secret`)"
    )]
    MissingHeader(&'static str),
    #[error(
        "header {0} is empty: the forge sent no signature (hint: set the webhook's secret on the forge)"
    )]
    EmptyHeader(&'static str),
    #[error("header {header} is malformed: {reason}")]
    Malformed {
        header: &'static str,
        reason: &'static str,
    },
    #[error(
        "signature mismatch in header {0}: the body was not signed with this repository's secret"
    )]
    Mismatch(&'static str),
    #[error(
        "no secret is configured for this webhook, so no delivery can be verified (hint: set `secret: env:VAR` on the repository)"
    )]
    NoSecret,
}

/// The header that carries the signature or token for `forge`.
pub fn signature_header(forge: Forge) -> &'static str {
    match forge {
        Forge::GitHub => "X-Hub-Signature-256",
        Forge::Gitea => "X-Gitea-Signature",
        Forge::Forgejo => "X-Forgejo-Signature",
        Forge::GitLab => "X-Gitlab-Token",
    }
}

/// Checks that `body` was sent by a forge configured with `secret`. An empty secret verifies
/// nothing and is refused ([`VerifyError::NoSecret`]): a webhook without a secret is open to anyone.
pub fn verify(
    forge: Forge,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    secret: &[u8],
) -> Result<(), VerifyError> {
    if secret.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    let header = signature_header(forge);
    let value = headers
        .get(header)
        .ok_or(VerifyError::MissingHeader(header))?
        .trim();
    if value.is_empty() {
        return Err(VerifyError::EmptyHeader(header));
    }
    match forge {
        Forge::GitHub => {
            let hex_part = value
                .strip_prefix("sha256=")
                .ok_or(VerifyError::Malformed {
                    header,
                    reason: "expected `sha256=` followed by 64 hex digits",
                })?;
            check_hmac(header, hex_part, body, secret)
        }
        Forge::Gitea | Forge::Forgejo => check_hmac(header, value, body, secret),
        Forge::GitLab => {
            // Compare digests so that neither the length nor a prefix of the secret leaks.
            let given = Sha256::digest(value.as_bytes());
            let want = Sha256::digest(secret);
            if bool::from(given.as_slice().ct_eq(want.as_slice())) {
                Ok(())
            } else {
                Err(VerifyError::Mismatch(header))
            }
        }
    }
}

fn check_hmac(
    header: &'static str,
    hex_sig: &str,
    body: &[u8],
    secret: &[u8],
) -> Result<(), VerifyError> {
    let malformed = VerifyError::Malformed {
        header,
        reason: "expected 64 hex digits (an HMAC-SHA256)",
    };
    if hex_sig.len() != 64 {
        return Err(malformed);
    }
    let sig = hex::decode(hex_sig).map_err(|_| malformed)?;
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&sig)
        .map_err(|_| VerifyError::Mismatch(header))
}

/// `hex(HMAC-SHA256(secret, body))`: what a forge puts in its signature header. For tests and for
/// Baton's own signed outgoing notifications.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";

    #[test]
    fn github_docs_test_vector() {
        let want = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(SECRET, b"Hello, World!"), want);
        let h = [("x-hub-signature-256", format!("sha256={want}"))];
        assert_eq!(
            verify(Forge::GitHub, &h[..], b"Hello, World!", SECRET),
            Ok(())
        );
        assert_eq!(
            verify(Forge::GitHub, &h[..], b"Hello, World?", SECRET),
            Err(VerifyError::Mismatch("X-Hub-Signature-256"))
        );
    }

    #[test]
    fn uppercase_hex_is_accepted_and_bad_hex_is_malformed() {
        let sig = sign(SECRET, b"x").to_uppercase();
        let h = [("X-Gitea-Signature", sig)];
        assert_eq!(verify(Forge::Gitea, &h[..], b"x", SECRET), Ok(()));
        let h = [("X-Gitea-Signature", "zz".repeat(32))];
        assert!(matches!(
            verify(Forge::Gitea, &h[..], b"x", SECRET),
            Err(VerifyError::Malformed { .. })
        ));
        let h = [("X-Hub-Signature-256", sign(SECRET, b"x"))];
        let err = verify(Forge::GitHub, &h[..], b"x", SECRET).unwrap_err();
        assert!(err.to_string().contains("sha256="), "{err}");
    }

    #[test]
    fn empty_secret_and_empty_header_are_refused() {
        let h = [("X-Gitlab-Token", "")];
        assert_eq!(
            verify(Forge::GitLab, &h[..], b"{}", b""),
            Err(VerifyError::NoSecret)
        );
        assert_eq!(
            verify(Forge::GitLab, &h[..], b"{}", b"s"),
            Err(VerifyError::EmptyHeader("X-Gitlab-Token"))
        );
    }

    #[test]
    fn gitlab_token_must_equal_the_secret_exactly() {
        let ok = [("X-Gitlab-Token", "sampleToken!")];
        assert_eq!(verify(Forge::GitLab, &ok[..], b"", b"sampleToken!"), Ok(()));
        for bad in [
            "badsampleToken!!",
            "sampleToken",
            "sampleToken!!",
            "SAMPLETOKEN!",
        ] {
            let h = [("X-Gitlab-Token", bad)];
            assert_eq!(
                verify(Forge::GitLab, &h[..], b"", b"sampleToken!"),
                Err(VerifyError::Mismatch("X-Gitlab-Token")),
                "{bad}"
            );
        }
    }

    #[test]
    fn forgejo_reads_only_its_own_header() {
        let h = [("X-Gitea-Signature", sign(SECRET, b"b"))];
        assert_eq!(
            verify(Forge::Forgejo, &h[..], b"b", SECRET),
            Err(VerifyError::MissingHeader("X-Forgejo-Signature"))
        );
    }
}
