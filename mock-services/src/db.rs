//! Each service's SQLite database: its business tables, made and filled with
//! sample data at first start, and the `audit` table of every decision.
//!
//! WAL with `synchronous = NORMAL`: a commit survives the process crashing
//! (the tests kill services), and the last commits before a power cut may be
//! lost, which a mock business can afford; it keeps an fsync off every request.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use attestable_data::encoding::UnixTime;
use rusqlite::{Connection, Transaction, params};
use serde::Serialize;

use crate::kind::ServiceKind;
use crate::{messaging, store, taxi};

/// The schema version this build writes.
const SCHEMA_VERSION: i64 = 1;

/// A database that could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed.
    #[error("{context}: {source}")]
    Sqlite {
        /// What was being done.
        context: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file could not be created.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The sample data could not be made.
    #[error("sample data: {0}")]
    Seed(String),
    /// Written by another version.
    #[error(
        "{path}: schema version {found}, expected {SCHEMA_VERSION} (written by a newer mock-services?)"
    )]
    Version {
        /// The file.
        path: String,
        /// Its `user_version`.
        found: i64,
    },
}

pub(crate) trait SqlContext<T> {
    fn context(self, what: &str) -> Result<T, DbError>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn context(self, what: &str) -> Result<T, DbError> {
        self.map_err(|source| DbError::Sqlite {
            context: what.to_string(),
            source,
        })
    }
}

const AUDIT_SCHEMA: &str = "
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,                 -- Unix seconds
    endpoint TEXT NOT NULL,              -- read | write
    outcome TEXT NOT NULL,               -- allowed | denied | bad_request | unknown_resource | …
    status INTEGER NOT NULL,             -- the HTTP status answered
    allowed INTEGER NOT NULL,            -- the trust decision
    failed_step TEXT,                    -- a denial's step name
    message TEXT,                        -- one line: why (no request plaintext)
    resource TEXT,                       -- as the policy shows it (replies/… for identifiers)
    run TEXT,                            -- run-<id>, once verified
    program_key TEXT,                    -- key id of the run certificate's key, once verified
    measurement TEXT,                    -- executable SHA-256, once verified
    certificate_sha256 TEXT,             -- SHA-256 of the presented run certificate
    proof TEXT                           -- the decision's proof; NULL when no decision was made
);
CREATE INDEX audit_at ON audit(at);
";

/// Opens (creating, with schema and sample data, at first start) the database of `kind`.
pub fn open(path: &Path, kind: ServiceKind, now: i64) -> Result<Connection, DbError> {
    // Business records are personal data: the file is the owner's alone.
    if !path.exists() {
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|source| DbError::Io {
                path: path.to_path_buf(),
                source,
            })?;
    }
    let mut conn = Connection::open(path).context("opening the database")?;
    conn.busy_timeout(Duration::from_secs(5))
        .context("busy timeout")?;
    conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get::<_, String>(0))
        .context("journal_mode = wal")?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .context("synchronous")?;
    conn.pragma_update(None, "foreign_keys", true)
        .context("foreign_keys")?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .context("user_version")?;
    match version {
        0 => {
            let tx = conn.transaction().context("begin")?;
            tx.execute_batch(AUDIT_SCHEMA).context("audit schema")?;
            create_business(&tx, kind, now)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .context("user_version")?;
            tx.commit().context("commit the new database")?;
            tracing::info!(service = kind.name(), path = %path.display(), "created the database with sample data");
        }
        SCHEMA_VERSION => {}
        found => {
            return Err(DbError::Version {
                path: path.display().to_string(),
                found,
            });
        }
    }
    Ok(conn)
}

fn create_business(tx: &Transaction<'_>, kind: ServiceKind, now: i64) -> Result<(), DbError> {
    match kind {
        ServiceKind::Store => store::create(tx, now),
        ServiceKind::Taxi => taxi::create(tx, now),
        ServiceKind::Messaging => messaging::create(tx, now),
    }
}

/// One decision, as logged and stored. Holds no request plaintext.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// When, Unix seconds (logged as RFC 3339).
    #[serde(serialize_with = "as_time")]
    pub at: i64,
    /// The answering service.
    pub service: &'static str,
    /// `read` or `write`.
    pub endpoint: &'static str,
    /// `allowed`, `denied`, `bad_request`, `unknown_resource`, `unavailable`, `too_large`, `internal`.
    pub outcome: &'static str,
    /// HTTP status answered.
    pub status: u16,
    /// The trust decision.
    pub allowed: bool,
    /// A denial's step.
    pub failed_step: Option<&'static str>,
    /// One line: why.
    pub message: Option<String>,
    /// The resource as the policy shows it.
    pub resource: Option<String>,
    /// `run-<id>`, once verified.
    pub run: Option<String>,
    /// The program key's id, once verified.
    pub program_key: Option<String>,
    /// The executable's SHA-256, once verified.
    pub measurement: Option<String>,
    /// SHA-256 of the presented run certificate, when one parsed.
    pub certificate_sha256: Option<String>,
    /// The proof, when a decision was made.
    pub proof: Option<String>,
}

fn as_time<S: serde::Serializer>(at: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&UnixTime(*at))
}

impl AuditRecord {
    /// Stores the record; returns its id.
    pub fn insert(&self, conn: &Connection) -> Result<i64, DbError> {
        conn.prepare_cached(
            "INSERT INTO audit (at, endpoint, outcome, status, allowed, failed_step, message, \
             resource, run, program_key, measurement, certificate_sha256, proof) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                self.at,
                self.endpoint,
                self.outcome,
                self.status,
                self.allowed,
                self.failed_step,
                self.message,
                self.resource,
                self.run,
                self.program_key,
                self.measurement,
                self.certificate_sha256,
                self.proof,
            ])
        })
        .context("recording the decision")?;
        Ok(conn.last_insert_rowid())
    }
}

/// An audit row, for the operator view.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    /// Row id.
    pub id: i64,
    /// When.
    pub at: UnixTime,
    /// `read` or `write`.
    pub endpoint: String,
    /// See [`AuditRecord::outcome`].
    pub outcome: String,
    /// HTTP status.
    pub status: u16,
    /// The trust decision.
    pub allowed: bool,
    /// A denial's step.
    pub failed_step: Option<String>,
    /// Why.
    pub message: Option<String>,
    /// The resource as shown.
    pub resource: Option<String>,
    /// `run-<id>`.
    pub run: Option<String>,
    /// The executable's SHA-256.
    pub measurement: Option<String>,
    /// The proof.
    pub proof: Option<String>,
}

/// The newest `limit` audit rows, newest first.
pub fn recent_audit(conn: &Connection, limit: u32) -> Result<Vec<AuditRow>, DbError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, at, endpoint, outcome, status, allowed, failed_step, message, resource, \
             run, measurement, proof FROM audit ORDER BY id DESC LIMIT ?1",
        )
        .context("reading the audit table")?;
    let rows = stmt
        .query_map([limit], |r| {
            Ok(AuditRow {
                id: r.get(0)?,
                at: UnixTime(r.get(1)?),
                endpoint: r.get(2)?,
                outcome: r.get(3)?,
                status: r.get(4)?,
                allowed: r.get(5)?,
                failed_step: r.get(6)?,
                message: r.get(7)?,
                resource: r.get(8)?,
                run: r.get(9)?,
                measurement: r.get(10)?,
                proof: r.get(11)?,
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .context("reading the audit table")?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::OptionalExtension;
    use std::os::unix::fs::PermissionsExt;

    /// One row's single integer (a count, an id), if the query returns a row.
    fn query_i64(
        conn: &Connection,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<i64>, DbError> {
        conn.query_row(sql, params, |r| r.get(0))
            .optional()
            .context("query")
    }

    #[test]
    fn databases_are_private_versioned_and_seeded_once() {
        let dir = tempfile::tempdir().unwrap();
        for kind in ServiceKind::ALL {
            let path = dir.path().join(format!("{kind}.db"));
            let conn = open(&path, kind, 1_795_548_840).unwrap();
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{kind}");
            let tables = query_i64(
                &conn,
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
            )
            .unwrap()
            .unwrap();
            drop(conn);
            let conn = open(&path, kind, 1_795_548_900).unwrap();
            assert_eq!(
                query_i64(
                    &conn,
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                    []
                )
                .unwrap(),
                Some(tables)
            );
            conn.pragma_update(None, "user_version", 7).unwrap();
            drop(conn);
            let err = open(&path, kind, 0).unwrap_err().to_string();
            assert!(err.contains("schema version 7"), "{err}");
        }
    }
}
