//! Runs and their state machine. Every status change and its audit row are
//! written in one transaction.

use rusqlite::{OptionalExtension, Row, params};
use serde_json::json;

use crate::builds::conversion;
use crate::db::{Db, audit, now_ms};
use crate::error::{DbError, Result, SqlContext};
use crate::model::{Captured, NewRun, Page, Run, RunStatus, RunUpdate};
use crate::store::opt_sha_column;

const COLUMNS: &str = "id, program_id, build_id, status, args, limits, time_limit_s, \
                       executable_sha256, pid, exit_code, signal, error, stdout, stderr, \
                       stdout_truncated, stderr_truncated, certificate_pem, created_at, \
                       started_at, ended_at, compartment";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Run> {
    let status: String = row.get(3)?;
    let args: String = row.get(4)?;
    Ok(Run {
        id: row.get(0)?,
        program_id: row.get(1)?,
        build_id: row.get(2)?,
        status: status.parse().map_err(|e: DbError| conversion(3, e))?,
        args: serde_json::from_str(&args).map_err(|e| conversion(4, e))?,
        limits_json: row.get(5)?,
        time_limit_s: row.get(6)?,
        executable_sha256: opt_sha_column(row, 7)?,
        pid: row.get(8)?,
        exit_code: row.get(9)?,
        signal: row.get(10)?,
        error: row.get(11)?,
        stdout: Captured {
            bytes: row.get(12)?,
            truncated: row.get(14)?,
        },
        stderr: Captured {
            bytes: row.get(13)?,
            truncated: row.get(15)?,
        },
        certificate_pem: row.get(16)?,
        created_at: row.get(17)?,
        started_at: row.get(18)?,
        ended_at: row.get(19)?,
        compartment: row.get(20)?,
    })
}

/// Which runs to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunFilter {
    pub program_id: Option<i64>,
    /// Only runs that have not ended.
    pub live_only: bool,
    /// One page of them; `None`: every one.
    pub page: Option<Page>,
}

impl Db {
    /// Queues a run of a successful build of the program.
    pub fn create_run(&mut self, actor: &str, new: &NewRun) -> Result<Run> {
        let args = serde_json::to_string(&new.args)
            .map_err(|e| DbError::Invalid(format!("encoding args: {e}")))?;
        if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&new.limits_json)
            .is_err()
        {
            return Err(DbError::Invalid("run limits must be a JSON object".into()));
        }
        if new.time_limit_s == 0 {
            return Err(DbError::Invalid(
                "a run's time limit must be at least 1 s".into(),
            ));
        }
        let tx = self.write_tx("creating a run")?;
        let build: Option<(i64, String)> = tx
            .query_row(
                "SELECT program_id, status FROM builds WHERE id = ?1",
                [new.build_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .context("checking the build")?;
        match build {
            None => {
                return Err(DbError::NotFound {
                    kind: "build",
                    id: new.build_id,
                });
            }
            Some((program, _)) if program != new.program_id => {
                return Err(DbError::Invalid(format!(
                    "build {} belongs to program {program}, not to program {}",
                    new.build_id, new.program_id
                )));
            }
            Some((_, status)) if status != "succeeded" => {
                return Err(DbError::Conflict(format!(
                    "build {} is {status}; only a succeeded build can run",
                    new.build_id
                )));
            }
            Some(_) => {}
        }
        tx.execute(
            "INSERT INTO runs (program_id, build_id, status, args, limits, time_limit_s, created_at)
             VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6)",
            params![
                new.program_id,
                new.build_id,
                args,
                new.limits_json,
                new.time_limit_s,
                now_ms()
            ],
        )
        .context("inserting a run")?;
        let id = tx.last_insert_rowid();
        audit(
            &tx,
            actor,
            "run.create",
            "run",
            Some(id),
            &json!({"program_id": new.program_id, "build_id": new.build_id, "args": new.args,
                    "time_limit_s": new.time_limit_s, "status": "queued"}),
        )?;
        let run = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                from_row,
            )
            .context("reading the new run")?;
        tx.commit().context("creating a run")?;
        Ok(run)
    }

    /// Moves a run one step through its state machine. An illegal step is
    /// [`DbError::IllegalTransition`] and changes nothing.
    pub fn update_run(&mut self, actor: &str, id: i64, update: RunUpdate) -> Result<Run> {
        let tx = self.write_tx("changing a run's status")?;
        let from: String = tx
            .query_row("SELECT status FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .context("reading a run's status")?
            .ok_or(DbError::NotFound { kind: "run", id })?;
        let from: RunStatus = from.parse()?;
        let to = update.target();
        if !from.can_become(to) {
            return Err(DbError::IllegalTransition { run: id, from, to });
        }
        let now = now_ms();
        let mut detail = json!({"from": from.as_str(), "to": to.as_str()});
        match &update {
            RunUpdate::Starting => {
                tx.execute("UPDATE runs SET status = 'starting' WHERE id = ?1", [id])
                    .context("marking a run starting")?;
            }
            RunUpdate::Running {
                pid,
                executable_sha256,
                compartment,
            } => {
                let described: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(compartment).map_err(|e| {
                        DbError::Invalid(format!("a run's compartment must be a JSON object: {e}"))
                    })?;
                tx.execute(
                    "UPDATE runs SET status = 'running', pid = ?2, executable_sha256 = ?3, started_at = ?4,
                            compartment = ?5
                     WHERE id = ?1",
                    params![id, pid, executable_sha256.as_str(), now, compartment],
                )
                .context("marking a run running")?;
                detail["pid"] = json!(pid);
                detail["executable_sha256"] = json!(executable_sha256.as_str());
                detail["compartment"] = serde_json::Value::Object(described);
            }
            RunUpdate::Ended(end) => {
                tx.execute(
                    "UPDATE runs SET status = ?2, exit_code = ?3, signal = ?4, error = ?5,
                            stdout = ?6, stdout_truncated = ?7, stderr = ?8, stderr_truncated = ?9,
                            ended_at = ?10
                     WHERE id = ?1",
                    params![
                        id,
                        to.as_str(),
                        end.exit_code,
                        end.signal,
                        end.error,
                        end.stdout.bytes,
                        end.stdout.truncated,
                        end.stderr.bytes,
                        end.stderr.truncated,
                        now
                    ],
                )
                .context("recording a run's end")?;
                // Sizes only: program output never goes into the audit log.
                detail["exit_code"] = json!(end.exit_code);
                detail["signal"] = json!(end.signal);
                detail["error"] = json!(end.error);
                detail["stdout_bytes"] = json!(end.stdout.bytes.len());
                detail["stderr_bytes"] = json!(end.stderr.bytes.len());
            }
        }
        audit(&tx, actor, "run.status", "run", Some(id), &detail)?;
        let run = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                from_row,
            )
            .context("reading a run")?;
        tx.commit().context("changing a run's status")?;
        Ok(run)
    }

    /// Stores the certificate issued to a live run.
    pub fn set_run_certificate(&mut self, actor: &str, id: i64, pem: &str) -> Result<()> {
        let tx = self.write_tx("storing a run certificate")?;
        let status: String = tx
            .query_row("SELECT status FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .context("reading a run's status")?
            .ok_or(DbError::NotFound { kind: "run", id })?;
        if status != "running" {
            return Err(DbError::Conflict(format!(
                "run {id} is {status}; a certificate is issued only to a running run"
            )));
        }
        let changed = tx
            .execute(
                "UPDATE runs SET certificate_pem = ?2 WHERE id = ?1 AND certificate_pem IS NULL",
                params![id, pem],
            )
            .context("storing a run certificate")?;
        if changed == 0 {
            return Err(DbError::Conflict(format!(
                "run {id} already has a certificate"
            )));
        }
        audit(
            &tx,
            actor,
            "run.certificate",
            "run",
            Some(id),
            &json!({"pem_bytes": pem.len()}),
        )?;
        tx.commit().context("storing a run certificate")
    }

    pub fn run(&self, id: i64) -> Result<Run> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .context("reading a run")?
            .ok_or(DbError::NotFound { kind: "run", id })
    }

    /// Runs matching `filter`, oldest first.
    pub fn runs(&self, filter: RunFilter) -> Result<Vec<Run>> {
        let mut sql = format!(
            "SELECT {COLUMNS} FROM runs WHERE (?1 IS NULL OR program_id = ?1) \
             AND id > coalesce(?2, 0)"
        );
        if filter.live_only {
            sql.push_str(" AND status IN ('queued', 'starting', 'running')");
        }
        // LIMIT -1: no limit.
        sql.push_str(" ORDER BY id LIMIT ?3");
        let (after, limit) = match filter.page {
            Some(page) => (page.after_id, i64::from(page.sql_limit())),
            None => (None, -1),
        };
        let mut stmt = self.conn.prepare_cached(&sql).context("listing runs")?;
        let rows = stmt
            .query_map(params![filter.program_id, after, limit], from_row)
            .context("listing runs")?;
        rows.collect::<rusqlite::Result<_>>()
            .context("listing runs")
    }
}
