//! Versioned schema migrations, tracked in `PRAGMA user_version`.
//!
//! Migration N takes the schema from version N-1 to N inside one transaction
//! that also sets `user_version`, so a crash leaves either the old or the new
//! schema. To add a migration, append one entry to [`MIGRATIONS`].

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{DbError, Result, SqlContext};

pub(crate) struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

/// In order; the entry at index `i` produces schema version `i + 1`.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "programs, builds, runs and audit events",
        sql: include_str!("migrations/0001_programs_builds_runs_audit.sql"),
    },
    Migration {
        name: "build SDK and anchor hashes, run compartments, services, brokered calls",
        sql: include_str!("migrations/0002_compartments_services_calls.sql"),
    },
];

/// The schema version this build of the crate writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

pub(crate) fn current_version(conn: &Connection) -> Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get::<_, u32>(0))
        .context("reading the schema version")
}

/// Brings the database to [`SCHEMA_VERSION`]; returns the version it found.
pub(crate) fn migrate(conn: &mut Connection) -> Result<u32> {
    let found = current_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(DbError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as u32 + 1;
        let what = || format!("migration {version} ({})", migration.name);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context(what())?;
        // Another process may have migrated while we waited for the lock.
        if current_version(&tx)? >= version {
            continue;
        }
        tx.execute_batch(migration.sql).context(what())?;
        tx.pragma_update(None, "user_version", version)
            .context(what())?;
        tx.commit().context(what())?;
    }
    Ok(found)
}
