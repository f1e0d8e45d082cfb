//! Builds: compilations of a program with a toolchain profile.

use rusqlite::{OptionalExtension, Row, params};
use serde_json::json;

use crate::db::{Db, audit, now_ms};
use crate::error::{DbError, Result, SqlContext};
use crate::model::{Build, BuildOutcome, BuildStatus, CompiledIn, NewBuild};
use crate::store::{BlobKind, opt_sha_column};

const COLUMNS: &str = "id, program_id, status, profile, compiler, argv, executable_sha256, \
                       exit_code, log, log_truncated, error, duration_ms, created_at, finished_at, \
                       sdk_sha256, services_anchor_sha256";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Build> {
    let status: String = row.get(2)?;
    let argv: String = row.get(5)?;
    Ok(Build {
        id: row.get(0)?,
        program_id: row.get(1)?,
        status: status.parse().map_err(|e: DbError| conversion(2, e))?,
        profile: row.get(3)?,
        compiler: row.get(4)?,
        argv: serde_json::from_str(&argv).map_err(|e| conversion(5, e))?,
        executable_sha256: opt_sha_column(row, 6)?,
        exit_code: row.get(7)?,
        log: row.get(8)?,
        log_truncated: row.get(9)?,
        error: row.get(10)?,
        duration_ms: row.get::<_, Option<i64>>(11)?.map(|d| d as u64),
        created_at: row.get(12)?,
        finished_at: row.get(13)?,
        sdk_sha256: opt_sha_column(row, 14)?,
        services_anchor_sha256: opt_sha_column(row, 15)?,
    })
}

fn still_running(changed: usize, id: i64) -> Result<()> {
    if changed == 1 {
        Ok(())
    } else {
        Err(DbError::Conflict(format!(
            "build {id} is no longer running; its outcome was already recorded"
        )))
    }
}

pub(crate) fn conversion(
    idx: usize,
    err: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(err))
}

impl Db {
    /// Records that a build has started (status `running`), compiling
    /// nothing in besides the program.
    pub fn start_build(&mut self, actor: &str, new: &NewBuild) -> Result<Build> {
        self.insert_build(actor, new, None)
    }

    /// [`Db::start_build`] for a build that also compiles in the SDK and a
    /// services trust anchor, recorded with it.
    pub fn start_build_with(
        &mut self,
        actor: &str,
        new: &NewBuild,
        compiled_in: &CompiledIn,
    ) -> Result<Build> {
        self.insert_build(actor, new, Some(compiled_in))
    }

    fn insert_build(
        &mut self,
        actor: &str,
        new: &NewBuild,
        compiled_in: Option<&CompiledIn>,
    ) -> Result<Build> {
        let argv = serde_json::to_string(&new.argv)
            .map_err(|e| DbError::Invalid(format!("encoding argv: {e}")))?;
        let tx = self.write_tx("starting a build")?;
        let exists: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM programs WHERE id = ?1)",
                [new.program_id],
                |r| r.get(0),
            )
            .context("checking the program")?;
        if !exists {
            return Err(DbError::NotFound {
                kind: "program",
                id: new.program_id,
            });
        }
        let sdk = compiled_in.map(|c| c.sdk_sha256.as_str());
        let anchor = compiled_in
            .and_then(|c| c.services_anchor_sha256.as_ref())
            .map(|s| s.as_str());
        tx.execute(
            "INSERT INTO builds (program_id, status, profile, compiler, argv, created_at,
                                 sdk_sha256, services_anchor_sha256)
             VALUES (?1, 'running', ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                new.program_id,
                new.profile,
                new.compiler,
                argv,
                now_ms(),
                sdk,
                anchor
            ],
        )
        .context("inserting a build")?;
        let id = tx.last_insert_rowid();
        audit(
            &tx,
            actor,
            "build.start",
            "build",
            Some(id),
            &json!({"program_id": new.program_id, "profile": new.profile, "compiler": new.compiler, "argv": new.argv,
                    "sdk_sha256": sdk, "services_anchor_sha256": anchor}),
        )?;
        let build = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM builds WHERE id = ?1"),
                [id],
                from_row,
            )
            .context("reading the new build")?;
        tx.commit().context("starting a build")?;
        Ok(build)
    }

    /// Records how a running build ended; on success commits the executable
    /// to the store in the same step.
    pub fn finish_build(&mut self, actor: &str, id: i64, outcome: BuildOutcome) -> Result<Build> {
        let current = self.build(id)?;
        if current.status != BuildStatus::Running {
            return Err(DbError::Conflict(format!(
                "build {id} already ended ({}), expected running",
                current.status
            )));
        }
        let now = now_ms();
        let (status, exit_code, error, log, log_truncated, duration_ms) = match outcome {
            BuildOutcome::Succeeded {
                executable,
                log,
                log_truncated,
                duration_ms,
            } => {
                let sha = executable.sha256().clone();
                self.files.commit(executable, BlobKind::Executable)?;
                let result = (|| {
                    let tx = self.write_tx("finishing a build")?;
                    let changed = tx.execute(
                        "UPDATE builds SET status = 'succeeded', executable_sha256 = ?2, exit_code = 0,
                                log = ?3, log_truncated = ?4, duration_ms = ?5, finished_at = ?6
                         WHERE id = ?1 AND status = 'running'",
                        params![id, sha.as_str(), log, log_truncated, duration_ms as i64, now],
                    )
                    .context("finishing a build")?;
                    still_running(changed, id)?;
                    audit(
                        &tx,
                        actor,
                        "build.succeeded",
                        "build",
                        Some(id),
                        &json!({"program_id": current.program_id, "executable_sha256": sha.as_str(), "duration_ms": duration_ms}),
                    )?;
                    tx.commit().context("finishing a build")
                })();
                if let Err(err) = result {
                    self.release_blobs(std::slice::from_ref(&sha))?;
                    return Err(err);
                }
                return self.build(id);
            }
            BuildOutcome::Failed {
                exit_code,
                error,
                log,
                log_truncated,
                duration_ms,
            } => (
                BuildStatus::Failed,
                exit_code,
                error,
                log,
                log_truncated,
                duration_ms,
            ),
            BuildOutcome::Interrupted {
                log,
                log_truncated,
                duration_ms,
            } => (
                BuildStatus::Interrupted,
                None,
                Some("the launcher stopped while the compiler ran".to_owned()),
                log,
                log_truncated,
                duration_ms,
            ),
        };
        let tx = self.write_tx("finishing a build")?;
        let changed = tx
            .execute(
                "UPDATE builds SET status = ?8, exit_code = ?2, error = ?3, log = ?4,
                        log_truncated = ?5, duration_ms = ?6, finished_at = ?7
                 WHERE id = ?1 AND status = 'running'",
                params![
                    id,
                    exit_code,
                    error,
                    log,
                    log_truncated,
                    duration_ms as i64,
                    now,
                    status.as_str()
                ],
            )
            .context("finishing a build")?;
        still_running(changed, id)?;
        audit(
            &tx,
            actor,
            &format!("build.{status}"),
            "build",
            Some(id),
            &json!({"program_id": current.program_id, "exit_code": exit_code, "error": error, "duration_ms": duration_ms}),
        )?;
        tx.commit().context("finishing a build")?;
        self.build(id)
    }

    pub fn build(&self, id: i64) -> Result<Build> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM builds WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .context("reading a build")?
            .ok_or(DbError::NotFound { kind: "build", id })
    }

    /// A program's builds, oldest first.
    pub fn builds_of(&self, program_id: i64) -> Result<Vec<Build>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM builds WHERE program_id = ?1 ORDER BY id"
            ))
            .context("listing builds")?;
        stmt.query_map([program_id], from_row)
            .context("listing builds")?
            .collect::<rusqlite::Result<_>>()
            .context("listing builds")
    }

    /// The newest successful build of a program, if any.
    pub fn latest_successful_build(&self, program_id: i64) -> Result<Option<Build>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM builds WHERE program_id = ?1 AND status = 'succeeded'
                     ORDER BY id DESC LIMIT 1"
                ),
                [program_id],
                from_row,
            )
            .optional()
            .context("finding the latest build")
    }
}
