//! The operator token: made at first start (`<data>/operator-token`, 0600,
//! 32 random bytes as hex), shared by the three services' operator views,
//! and compared in constant time.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use attestable_data::pki::write_atomic;

const TOKEN_HEX_LEN: usize = 64;

/// The bearer token of the operator views.
#[derive(Clone)]
pub struct OperatorToken(String);

impl std::fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorToken(<redacted>)")
    }
}

/// Why an operator request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header.
    Missing,
    /// Not `Bearer <token>`.
    NotBearer,
    /// Another token.
    Wrong,
}

impl AuthFailure {
    /// What the caller should do.
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => {
                "missing Authorization header; expected `Authorization: Bearer <token>` with the \
                 token from <data>/operator-token"
            }
            AuthFailure::NotBearer => {
                "the Authorization header is not of the form `Bearer <token>`"
            }
            AuthFailure::Wrong => "wrong operator token (compare with <data>/operator-token)",
        }
    }
}

impl OperatorToken {
    /// Reads the token at `path`, creating it when absent; refuses a file
    /// that others may read or that does not hold a token.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o7777;
                if mode & 0o077 != 0 {
                    bail!(
                        "operator token file {} has mode {mode:04o}: other users may read it; \
                         expected 0600 (fix with `chmod 600 {}`)",
                        path.display(),
                        path.display()
                    );
                }
                let text = fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let token = text.trim();
                if token.len() != TOKEN_HEX_LEN || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                    bail!(
                        "{} does not hold a token (expected {TOKEN_HEX_LEN} hex digits); delete \
                         it to have a new one made",
                        path.display()
                    );
                }
                Ok(Self(token.to_owned()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; TOKEN_HEX_LEN / 2];
                openssl::rand::rand_bytes(&mut bytes)?;
                let token = hex::encode(bytes);
                write_atomic(path, format!("{token}\n").as_bytes(), 0o600)?;
                Ok(Self(token))
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), AuthFailure> {
        let value = header.ok_or(AuthFailure::Missing)?;
        let presented = value
            .strip_prefix(b"Bearer ")
            .ok_or(AuthFailure::NotBearer)?;
        let presented = presented.trim_ascii();
        // Constant time over equal lengths; the length itself is public (64).
        if presented.len() == self.0.len() && openssl::memcmp::eq(presented, self.0.as_bytes()) {
            Ok(())
        } else {
            Err(AuthFailure::Wrong)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_private_stable_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operator-token");
        let token = OperatorToken::load_or_create(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = OperatorToken::load_or_create(&path).unwrap();
        let header = format!("Bearer {}", again.0);
        assert_eq!(token.check(Some(header.as_bytes())), Ok(()));
        assert_eq!(token.check(None), Err(AuthFailure::Missing));
        assert_eq!(
            token.check(Some(again.0.as_bytes())),
            Err(AuthFailure::NotBearer)
        );
        assert_eq!(token.check(Some(b"Bearer 00")), Err(AuthFailure::Wrong));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = OperatorToken::load_or_create(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
