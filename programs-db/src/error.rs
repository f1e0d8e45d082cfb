//! Errors of the store. Each says what was being done and, for refusals,
//! which rule failed.

use std::path::PathBuf;

use crate::model::RunStatus;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{context}: {source}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{context} ({}): {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: i64 },
    /// The request is valid but the current state forbids it (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    #[error("run {run}: illegal status change {from} -> {to}")]
    IllegalTransition {
        run: i64,
        from: RunStatus,
        to: RunStatus,
    },
    #[error(
        "database schema version {found} is newer than this program knows \
         (expected at most {known}); use a newer launcher"
    )]
    SchemaTooNew { found: u32, known: u32 },
    /// A value read from the database or given by the caller breaks an invariant.
    #[error("{0}")]
    Invalid(String),
}

impl DbError {
    /// Whether the disk (or the quota) of the data folder is full: SQLite's
    /// `SQLITE_FULL`, or `ENOSPC`/`EDQUOT` from the file store. The API
    /// answers 507 for it rather than an internal error.
    pub fn is_disk_full(&self) -> bool {
        match self {
            DbError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => e.code == rusqlite::ErrorCode::DiskFull,
            DbError::Io { source, .. } => {
                matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
            }
            _ => false,
        }
    }
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

pub(crate) trait SqlContext<T> {
    fn context(self, what: impl Into<String>) -> Result<T>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|source| DbError::Sqlite {
            context: what.into(),
            source,
        })
    }
}

pub(crate) fn io_error(
    context: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> DbError {
    let path = path.into();
    move |source| DbError::Io {
        context,
        path,
        source,
    }
}
