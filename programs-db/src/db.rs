//! The database handle: one SQLite connection plus the file store it guards.
//!
//! Every method that changes rows takes `&mut self`, so a caller sharing a
//! `Db` behind a mutex serialises all changes, including the file-store
//! commits and removals that must agree with the rows.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::error::{Result, SqlContext, io_error};
use crate::migrate;
use crate::model::{EndStatus, RunEnd, RunStatus, RunUpdate};
use crate::store::{FileStore, Sha256Hex};

/// Actor name for changes the launcher makes on its own.
pub const SYSTEM_ACTOR: &str = "launcher";

pub struct Db {
    pub(crate) conn: Connection,
    pub(crate) files: FileStore,
    path: PathBuf,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

/// What [`Db::recover`] found and repaired at start-up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Runs left queued, starting or running, now `interrupted`.
    pub interrupted_runs: Vec<i64>,
    /// Builds left running, now `interrupted`.
    pub interrupted_builds: Vec<i64>,
    /// Stored files no row referred to, now removed.
    pub orphan_files: usize,
    /// Temporary and unrecognised files removed from the store.
    pub stray_files: usize,
}

impl Db {
    /// Opens `<data>/launcher.db` and `<data>/store/`, creating and migrating as needed.
    pub fn open(data_dir: &Path) -> Result<Self> {
        Self::open_at(&data_dir.join("launcher.db"), &data_dir.join("store"))
    }

    pub fn open_at(db_path: &Path, store_dir: &Path) -> Result<Self> {
        let files = FileStore::open(store_dir)?;
        let what = || format!("opening database {}", db_path.display());
        // Created 0600 before SQLite sees it, so its -wal and -shm files inherit the mode.
        create_private_file(db_path)?;
        let mut conn = Connection::open(db_path).context(what())?;
        conn.busy_timeout(Duration::from_secs(10)).context(what())?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .context(what())?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(crate::DbError::Invalid(format!(
                "{}: journal mode is {mode}, expected wal",
                db_path.display()
            )));
        }
        // FULL: an acknowledged state change or audit row survives a power cut.
        conn.pragma_update(None, "synchronous", "FULL")
            .context(what())?;
        conn.pragma_update(None, "foreign_keys", true)
            .context(what())?;
        migrate::migrate(&mut conn)?;
        restrict_mode(db_path)?;
        Ok(Self {
            conn,
            files,
            path: db_path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn files(&self) -> &FileStore {
        &self.files
    }

    pub fn schema_version(&self) -> Result<u32> {
        migrate::current_version(&self.conn)
    }

    /// `PRAGMA integrity_check` and `foreign_key_check`: empty when all is well.
    pub fn check_integrity(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut stmt = self
            .conn
            .prepare("PRAGMA integrity_check")
            .context("integrity check")?;
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .context("integrity check")?;
        for row in rows {
            let line = row.context("integrity check")?;
            if line != "ok" {
                problems.push(line);
            }
        }
        let mut stmt = self
            .conn
            .prepare("PRAGMA foreign_key_check")
            .context("foreign key check")?;
        let rows = stmt
            .query_map([], |row| {
                Ok(format!(
                    "foreign key violation in {} row {:?} -> {}",
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<i64>>(1)?,
                    row.get::<_, String>(2)?
                ))
            })
            .context("foreign key check")?;
        for row in rows {
            problems.push(row.context("foreign key check")?);
        }
        Ok(problems)
    }

    /// Start-up repair, to run before anything else uses the store: marks what a
    /// crash left live as interrupted (with audit rows), removes stored files no
    /// row refers to, and clears the staging folder.
    pub fn recover(&mut self) -> Result<Recovery> {
        let mut recovery = Recovery::default();
        let live: Vec<(i64, RunStatus)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT id, status FROM runs WHERE status IN ('queued', 'starting', 'running') ORDER BY id")
                .context("listing live runs")?;
            let rows = stmt
                .query_map([], |row| Ok((row.get(0)?, row.get::<_, String>(1)?)))
                .context("listing live runs")?;
            let mut live = Vec::new();
            for row in rows {
                let (id, status) = row.context("listing live runs")?;
                live.push((id, status.parse()?));
            }
            live
        };
        for (id, _) in live {
            let end = RunEnd::without_output(
                EndStatus::Interrupted,
                Some("the launcher stopped while the run was live".into()),
            );
            self.update_run(SYSTEM_ACTOR, id, RunUpdate::Ended(end))?;
            recovery.interrupted_runs.push(id);
        }

        let tx = self.write_tx("interrupting builds")?;
        let builds: Vec<i64> = {
            let mut stmt = tx
                .prepare("SELECT id FROM builds WHERE status = 'running' ORDER BY id")
                .context("listing running builds")?;
            stmt.query_map([], |row| row.get(0))
                .context("listing running builds")?
                .collect::<rusqlite::Result<Vec<i64>>>()
                .context("listing running builds")?
        };
        let now = now_ms();
        for id in &builds {
            tx.execute(
                "UPDATE builds SET status = 'interrupted', finished_at = ?2,
                        error = 'the launcher stopped while the compiler ran'
                 WHERE id = ?1",
                params![id, now],
            )
            .context("interrupting a build")?;
            audit(
                &tx,
                SYSTEM_ACTOR,
                "build.interrupted",
                "build",
                Some(*id),
                &serde_json::json!({"from": "running", "to": "interrupted"}),
            )?;
        }
        tx.commit().context("interrupting builds")?;
        recovery.interrupted_builds = builds;

        let referenced = self.referenced_blobs()?;
        let (blobs, strays) = self.files.scan()?;
        for sha in blobs {
            if !referenced.contains(&sha) {
                self.files.remove(&sha)?;
                recovery.orphan_files += 1;
            }
        }
        for stray in strays {
            let result = if stray.is_dir() {
                fs::remove_dir_all(&stray)
            } else {
                fs::remove_file(&stray)
            };
            result.map_err(io_error("removing a stray store file", &stray))?;
            recovery.stray_files += 1;
        }
        recovery.stray_files += self.files.clear_staging()?;
        Ok(recovery)
    }

    /// Every digest some row refers to (sources and executables).
    pub fn referenced_blobs(&self) -> Result<BTreeSet<Sha256Hex>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT source_sha256 FROM programs
                 UNION SELECT executable_sha256 FROM builds WHERE executable_sha256 IS NOT NULL",
            )
            .context("listing referenced files")?;
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .context("listing referenced files")?;
        let mut set = BTreeSet::new();
        for row in rows {
            set.insert(Sha256Hex::parse(&row.context("listing referenced files")?)?);
        }
        Ok(set)
    }

    /// Digests in the store folder, for consistency checks.
    pub fn stored_blobs(&self) -> Result<BTreeSet<Sha256Hex>> {
        Ok(self.files.scan()?.0.into_iter().collect())
    }

    /// Removes the blobs among `candidates` that no row refers to any more.
    pub(crate) fn release_blobs(&self, candidates: &[Sha256Hex]) -> Result<()> {
        for sha in candidates {
            let used: bool = self
                .conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM programs WHERE source_sha256 = ?1)
                         OR EXISTS (SELECT 1 FROM builds WHERE executable_sha256 = ?1)",
                    [sha.as_str()],
                    |row| row.get(0),
                )
                .context("checking whether a stored file is still used")?;
            if !used {
                self.files.remove(sha)?;
            }
        }
        Ok(())
    }

    pub(crate) fn write_tx(&mut self, what: &str) -> Result<Transaction<'_>> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context(format!("starting a transaction ({what})"))
    }

    /// Row count of a table, for consistency checks.
    pub fn count(&self, table: Table) -> Result<u64> {
        let sql = format!("SELECT count(*) FROM {}", table.name());
        self.conn
            .query_row(&sql, [], |row| row.get::<_, i64>(0))
            .map(|n| n as u64)
            .context(format!("counting {}", table.name()))
    }

    /// The largest id ever handed out for `table` (0 if none), from `sqlite_sequence`.
    pub fn last_id(&self, table: Table) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = ?1",
                [table.name()],
                |row| row.get(0),
            )
            .optional()
            .map(|seq| seq.unwrap_or(0))
            .context("reading sqlite_sequence")
    }
}

/// Tables callers may count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Programs,
    Builds,
    Runs,
    AuditEvents,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Programs => "programs",
            Table::Builds => "builds",
            Table::Runs => "runs",
            Table::AuditEvents => "audit_events",
        }
    }
}

/// Appends an audit row inside the caller's transaction.
pub(crate) fn audit(
    tx: &Transaction<'_>,
    actor: &str,
    action: &str,
    subject_kind: &str,
    subject_id: Option<i64>,
    detail: &serde_json::Value,
) -> Result<()> {
    tx.execute(
        "INSERT INTO audit_events (at, actor, action, subject_kind, subject_id, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            now_ms(),
            actor,
            action,
            subject_kind,
            subject_id,
            detail.to_string()
        ],
    )
    .context(format!("recording audit event {action}"))?;
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn create_private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_error("creating the database file", path)(e)),
    }
}

/// The database holds program output and the audit log: owner only.
fn restrict_mode(db_path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(db_path, fs::Permissions::from_mode(0o600))
        .map_err(io_error("restricting the database file's mode", db_path))
}
