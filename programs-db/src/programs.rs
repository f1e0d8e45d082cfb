//! Programs: uploaded sources.

use rusqlite::{OptionalExtension, Row, params};
use serde_json::json;

use crate::db::{Db, audit, now_ms};
use crate::error::{DbError, Result, SqlContext};
use crate::model::{Page, Program};
use crate::store::{BlobKind, Sha256Hex, StagedBlob, sha_column};

const COLUMNS: &str = "id, name, source_sha256, size, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Program> {
    Ok(Program {
        id: row.get(0)?,
        name: row.get(1)?,
        source_sha256: sha_column(row, 2)?,
        size: row.get::<_, i64>(3)? as u64,
        created_at: row.get(4)?,
    })
}

/// What [`Db::delete_program`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedProgram {
    pub program: Program,
    pub builds: u64,
    pub runs: u64,
}

impl Db {
    /// Stores an uploaded source: commits the staged file and inserts the row
    /// (and its audit event). `name` must already be validated by the caller.
    pub fn create_program(
        &mut self,
        actor: &str,
        name: &str,
        source: StagedBlob,
    ) -> Result<Program> {
        if source.size() == 0 {
            return Err(DbError::Invalid(
                "a program's source may not be empty".into(),
            ));
        }
        let sha = source.sha256().clone();
        let size = source.size();
        // File first: a crash before the row commits leaves an orphan that start-up removes.
        self.files.commit(source, BlobKind::Source)?;
        let result = (|| {
            let tx = self.write_tx("creating a program")?;
            tx.execute(
                "INSERT INTO programs (name, source_sha256, size, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, sha.as_str(), size as i64, now_ms()],
            )
            .context("inserting a program")?;
            let id = tx.last_insert_rowid();
            audit(
                &tx,
                actor,
                "program.create",
                "program",
                Some(id),
                &json!({"name": name, "source_sha256": sha.as_str(), "size": size}),
            )?;
            let program = tx
                .query_row(
                    &format!("SELECT {COLUMNS} FROM programs WHERE id = ?1"),
                    [id],
                    from_row,
                )
                .context("reading the new program")?;
            tx.commit().context("creating a program")?;
            Ok(program)
        })();
        if result.is_err() {
            self.release_blobs(std::slice::from_ref(&sha))?;
        }
        result
    }

    pub fn program(&self, id: i64) -> Result<Program> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM programs WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .context("reading a program")?
            .ok_or(DbError::NotFound {
                kind: "program",
                id,
            })
    }

    /// All programs, oldest first.
    /// One page of programs, oldest first.
    pub fn programs_page(&self, page: Page) -> Result<Vec<Program>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM programs WHERE id > coalesce(?1, 0) ORDER BY id LIMIT ?2"
            ))
            .context("listing programs")?;
        let rows = stmt
            .query_map(params![page.after_id, page.sql_limit()], from_row)
            .context("listing programs")?;
        rows.collect::<rusqlite::Result<_>>()
            .context("listing programs")
    }

    pub fn programs(&self) -> Result<Vec<Program>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM programs ORDER BY id"))
            .context("listing programs")?;
        let rows = stmt.query_map([], from_row).context("listing programs")?;
        rows.collect::<rusqlite::Result<_>>()
            .context("listing programs")
    }

    /// The source bytes of a program.
    pub fn program_source(&self, id: i64) -> Result<(Program, Vec<u8>)> {
        let program = self.program(id)?;
        let bytes = self.files.read(&program.source_sha256)?;
        Ok((program, bytes))
    }

    /// Deletes a program with its builds and runs (the audit log keeps their
    /// history), then the stored files nothing else refers to. Refused with
    /// [`DbError::Conflict`] while a run of the program is live.
    pub fn delete_program(&mut self, actor: &str, id: i64) -> Result<DeletedProgram> {
        let tx = self.write_tx("deleting a program")?;
        let program = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM programs WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .context("reading a program")?
            .ok_or(DbError::NotFound {
                kind: "program",
                id,
            })?;
        let live: Vec<(i64, String)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT id, status FROM runs
                     WHERE program_id = ?1 AND status IN ('queued', 'starting', 'running')
                     ORDER BY id",
                )
                .context("listing live runs")?;
            stmt.query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))
                .context("listing live runs")?
                .collect::<rusqlite::Result<_>>()
                .context("listing live runs")?
        };
        if !live.is_empty() {
            let list = live
                .iter()
                .map(|(run, status)| format!("run {run} is {status}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(DbError::Conflict(format!(
                "program {id} has live runs ({list}); cancel them or wait until they end"
            )));
        }
        let executables: Vec<String> = {
            let mut stmt = tx
                .prepare("SELECT executable_sha256 FROM builds WHERE program_id = ?1 AND executable_sha256 IS NOT NULL")
                .context("listing a program's executables")?;
            stmt.query_map([id], |row| row.get(0))
                .context("listing a program's executables")?
                .collect::<rusqlite::Result<_>>()
                .context("listing a program's executables")?
        };
        let runs: i64 = tx
            .query_row(
                "SELECT count(*) FROM runs WHERE program_id = ?1",
                [id],
                |r| r.get(0),
            )
            .context("counting runs")?;
        let builds: i64 = tx
            .query_row(
                "SELECT count(*) FROM builds WHERE program_id = ?1",
                [id],
                |r| r.get(0),
            )
            .context("counting builds")?;
        tx.execute("DELETE FROM programs WHERE id = ?1", [id])
            .context("deleting a program")?;
        audit(
            &tx,
            actor,
            "program.delete",
            "program",
            Some(id),
            &json!({
                "name": program.name,
                "source_sha256": program.source_sha256.as_str(),
                "builds_deleted": builds,
                "runs_deleted": runs,
            }),
        )?;
        tx.commit().context("deleting a program")?;

        let mut released = vec![program.source_sha256.clone()];
        for sha in executables {
            released.push(Sha256Hex::parse(&sha)?);
        }
        self.release_blobs(&released)?;
        Ok(DeletedProgram {
            program,
            builds: builds as u64,
            runs: runs as u64,
        })
    }
}
