//! The API token: created at first start (`<data>/api-token`, mode 0600,
//! 32 random bytes as hex) and compared in constant time.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use attestable_data::pki::write_atomic;

/// Length of the token in hex digits.
const TOKEN_HEX_LEN: usize = 64;

#[derive(Clone)]
pub struct ApiToken(String);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// Why a request was not authorised; each says what was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    NotBearer,
    Wrong,
}

impl AuthFailure {
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => {
                "missing Authorization header; expected `Authorization: Bearer <token>` \
                 with the token from <data>/api-token"
            }
            AuthFailure::NotBearer => {
                "the Authorization header is not of the form `Bearer <token>`"
            }
            AuthFailure::Wrong => "wrong API token (compare with <data>/api-token)",
        }
    }
}

impl ApiToken {
    /// Reads the token at `path`, creating it if absent. Refuses a token file
    /// that others may read, or one that is not 64 hex digits.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o7777;
                if mode & 0o077 != 0 {
                    anyhow::bail!(
                        "API token file {} has mode {mode:04o}: other users may read it; \
                         expected 0600 (fix with `chmod 600 {}`)",
                        path.display(),
                        path.display()
                    );
                }
                let text = fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                let token = text.trim();
                if token.len() != TOKEN_HEX_LEN || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                    anyhow::bail!(
                        "{} does not hold a token (expected {TOKEN_HEX_LEN} hex digits); \
                         delete it to have a new one generated",
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
            Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
        }
    }

    #[cfg(test)]
    pub fn from_hex(token: &str) -> Self {
        Self(token.to_owned())
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), AuthFailure> {
        let header = header.ok_or(AuthFailure::Missing)?;
        let presented = match header.split_first_chunk::<7>() {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"bearer ") => rest.trim_ascii(),
            _ => return Err(AuthFailure::NotBearer),
        };
        let expected = self.0.as_bytes();
        // memcmp::eq needs equal lengths; the length of a token is no secret.
        if presented.len() == expected.len() && openssl::memcmp::eq(presented, expected) {
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
    fn created_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-token");
        let token = ApiToken::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(token.0.len(), 64);
        let again = ApiToken::load_or_create(&path).unwrap();
        assert_eq!(token.0, again.0);
        assert_eq!(format!("{token:?}"), "ApiToken(<redacted>)");
    }

    #[test]
    fn refuses_readable_or_malformed_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-token");
        fs::write(&path, "a".repeat(64)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = ApiToken::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, "short").unwrap();
        let err = ApiToken::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("64 hex digits"), "{err}");
    }

    #[test]
    fn header_checks_name_the_failure() {
        let token = ApiToken::from_hex(&"ab".repeat(32));
        let good = format!("Bearer {}", "ab".repeat(32));
        assert_eq!(token.check(Some(good.as_bytes())), Ok(()));
        let lower = format!("bearer {}", "ab".repeat(32));
        assert_eq!(token.check(Some(lower.as_bytes())), Ok(()));
        assert_eq!(token.check(None), Err(AuthFailure::Missing));
        assert_eq!(
            token.check(Some(b"Basic dXNlcjpwdw==")),
            Err(AuthFailure::NotBearer)
        );
        assert_eq!(token.check(Some(b"Bearer")), Err(AuthFailure::NotBearer));
        assert_eq!(token.check(Some(b"Bearer abab")), Err(AuthFailure::Wrong));
        let wrong = format!("Bearer {}", "cd".repeat(32));
        assert_eq!(token.check(Some(wrong.as_bytes())), Err(AuthFailure::Wrong));
    }
}
