//! Bearer tokens kept in a private file: the launcher's API token and the
//! services' operator token.
//!
//! A token is 32 random bytes written as 64 hex digits, created at first
//! start in a file of mode 0600 and refused later if others may read the
//! file. Presented tokens are compared in constant time.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::pki::write_atomic;

/// Length of a token in hex digits.
pub const TOKEN_HEX_LEN: usize = 64;

/// Errors reading or creating a token file.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file is readable by group or others.
    #[error(
        "{label} file {} has mode {mode:04o}: other users may read it; \
         expected 0600 (fix with `chmod 600 {}`)",
        path.display(),
        path.display()
    )]
    Mode {
        /// What the token is for, e.g. `API token`.
        label: &'static str,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold 64 hex digits.
    #[error(
        "{} does not hold a {label} (expected {TOKEN_HEX_LEN} hex digits); \
         delete it to have a new one generated",
        path.display()
    )]
    Malformed {
        /// What the token is for.
        label: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Generating or writing a new token failed.
    #[error("creating {}: {source}", path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: crate::pki::PkiError,
    },
}

/// A bearer token and where it lives, for messages.
#[derive(Clone)]
pub struct BearerToken {
    token: String,
    label: &'static str,
    file_name: String,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BearerToken({}, <redacted>)", self.label)
    }
}

/// Why a request was not authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header.
    Missing,
    /// Not `Bearer <token>`.
    NotBearer,
    /// Another token.
    Wrong,
}

impl BearerToken {
    /// Reads the token at `path`, creating it when absent. Refuses a file
    /// that others may read or that does not hold a token. `label` names the
    /// token in messages (`API token`, `operator token`).
    pub fn load_or_create(path: &Path, label: &'static str) -> Result<Self, TokenError> {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let token = match fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o7777;
                if mode & 0o077 != 0 {
                    return Err(TokenError::Mode {
                        label,
                        path: path.to_path_buf(),
                        mode,
                    });
                }
                let text = fs::read_to_string(path).map_err(|source| TokenError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                let token = text.trim();
                if token.len() != TOKEN_HEX_LEN || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(TokenError::Malformed {
                        label,
                        path: path.to_path_buf(),
                    });
                }
                token.to_owned()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let create = |source| TokenError::Create {
                    path: path.to_path_buf(),
                    source,
                };
                let mut bytes = [0u8; TOKEN_HEX_LEN / 2];
                openssl::rand::rand_bytes(&mut bytes)
                    .map_err(|e| create(crate::pki::PkiError::Invalid(e.to_string())))?;
                let token = hex::encode(bytes);
                write_atomic(path, format!("{token}\n").as_bytes(), 0o600).map_err(create)?;
                token
            }
            Err(source) => {
                return Err(TokenError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Ok(Self {
            token,
            label,
            file_name,
        })
    }

    /// Checks an `Authorization` header value (`Bearer <token>`, the scheme
    /// in any case).
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), AuthFailure> {
        let header = header.ok_or(AuthFailure::Missing)?;
        let presented = match header.split_first_chunk::<7>() {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"bearer ") => rest.trim_ascii(),
            _ => return Err(AuthFailure::NotBearer),
        };
        let expected = self.token.as_bytes();
        // memcmp::eq needs equal lengths; the length of a token is no secret.
        if presented.len() == expected.len() && openssl::memcmp::eq(presented, expected) {
            Ok(())
        } else {
            Err(AuthFailure::Wrong)
        }
    }

    /// What a client refused with `failure` should do.
    pub fn message(&self, failure: AuthFailure) -> String {
        match failure {
            AuthFailure::Missing => format!(
                "missing Authorization header; expected `Authorization: Bearer <token>` \
                 with the {} from <data>/{}",
                self.label, self.file_name
            ),
            AuthFailure::NotBearer => {
                "the Authorization header is not of the form `Bearer <token>`".to_owned()
            }
            AuthFailure::Wrong => format!(
                "wrong {} (compare with <data>/{})",
                self.label, self.file_name
            ),
        }
    }

    /// The token itself, for a client in the same trust domain (tests, the demo).
    pub fn expose(&self) -> &str {
        &self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_reused_and_checked_in_any_scheme_case() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-token");
        let token = BearerToken::load_or_create(&path, "API token").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = BearerToken::load_or_create(&path, "API token").unwrap();
        assert_eq!(token.expose(), again.expose());
        assert_eq!(token.expose().len(), TOKEN_HEX_LEN);
        assert!(!format!("{token:?}").contains(token.expose()));

        let good = format!("Bearer {}", token.expose());
        assert_eq!(token.check(Some(good.as_bytes())), Ok(()));
        let lower = format!("bearer {}", token.expose());
        assert_eq!(token.check(Some(lower.as_bytes())), Ok(()));
        assert_eq!(token.check(None), Err(AuthFailure::Missing));
        assert_eq!(
            token.check(Some(token.expose().as_bytes())),
            Err(AuthFailure::NotBearer)
        );
        assert_eq!(token.check(Some(b"Bearer 00")), Err(AuthFailure::Wrong));
        assert!(
            token
                .message(AuthFailure::Wrong)
                .contains("<data>/api-token")
        );
    }

    #[test]
    fn refuses_readable_or_malformed_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operator-token");
        fs::write(&path, "a".repeat(TOKEN_HEX_LEN)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = BearerToken::load_or_create(&path, "operator token").unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(err.to_string().starts_with("operator token file"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, "not a token").unwrap();
        let err = BearerToken::load_or_create(&path, "operator token").unwrap_err();
        assert!(matches!(err, TokenError::Malformed { .. }), "{err}");
    }
}
