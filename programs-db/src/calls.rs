//! The calls a run made through the broker: service, operation, collection,
//! sizes, latency and outcome. Never a payload.

use std::fmt;
use std::str::FromStr;

use rusqlite::{Row, params};

use crate::builds::conversion;
use crate::db::Db;
use crate::error::{DbError, Result, SqlContext};

const COLUMNS: &str = "id, run_id, at, service, op, resource, request_bytes, response_bytes, \
                       latency_us, outcome, detail";

/// Longest failure detail stored, in bytes (longer ones are cut).
pub const MAX_CALL_DETAIL_BYTES: usize = 4096;

/// What a brokered call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOp {
    Read,
    Write,
    ServiceCert,
}

impl CallOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CallOp::Read => "read",
            CallOp::Write => "write",
            CallOp::ServiceCert => "service_cert",
        }
    }
}

impl fmt::Display for CallOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CallOp {
    type Err = DbError;
    fn from_str(s: &str) -> Result<Self, DbError> {
        Ok(match s {
            "read" => CallOp::Read,
            "write" => CallOp::Write,
            "service_cert" => CallOp::ServiceCert,
            other => return Err(DbError::Invalid(format!("unknown call op {other:?}"))),
        })
    }
}

/// A call to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    pub run_id: i64,
    /// When it started, Unix milliseconds.
    pub at: i64,
    pub service: String,
    pub op: CallOp,
    /// The collection named in the frame (empty for `service_cert`).
    pub resource: String,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub latency_us: u64,
    /// `ok`, a NACK code, or `cancelled` (the run ended first).
    pub outcome: String,
    /// For failures: why, for a person (never a payload).
    pub detail: Option<String>,
}

/// A recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub id: i64,
    pub run_id: i64,
    pub at: i64,
    pub service: String,
    pub op: CallOp,
    pub resource: String,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub latency_us: u64,
    pub outcome: String,
    pub detail: Option<String>,
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Call> {
    let op: String = row.get(4)?;
    Ok(Call {
        id: row.get(0)?,
        run_id: row.get(1)?,
        at: row.get(2)?,
        service: row.get(3)?,
        op: op.parse().map_err(|e: DbError| conversion(4, e))?,
        resource: row.get(5)?,
        request_bytes: row.get::<_, i64>(6)?.max(0) as u64,
        response_bytes: row.get::<_, i64>(7)?.max(0) as u64,
        latency_us: row.get::<_, i64>(8)?.max(0) as u64,
        outcome: row.get(9)?,
        detail: row.get(10)?,
    })
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Db {
    /// Records calls, all in one transaction (the broker batches them: one
    /// synchronous commit per batch, not per call).
    pub fn record_calls(&mut self, calls: &[NewCall]) -> Result<()> {
        if calls.is_empty() {
            return Ok(());
        }
        let tx = self.write_tx("recording brokered calls")?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO run_calls (run_id, at, service, op, resource, request_bytes,
                         response_bytes, latency_us, outcome, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .context("recording a brokered call")?;
            for call in calls {
                stmt.execute(params![
                    call.run_id,
                    call.at,
                    call.service,
                    call.op.as_str(),
                    call.resource,
                    sql_int(call.request_bytes),
                    sql_int(call.response_bytes),
                    sql_int(call.latency_us),
                    call.outcome,
                    call.detail
                        .as_deref()
                        .map(|d| bounded(d, MAX_CALL_DETAIL_BYTES)),
                ])
                .context(format!("recording a brokered call of run {}", call.run_id))?;
            }
        }
        tx.commit().context("recording brokered calls")
    }

    /// The calls of run `run_id`, in the order they started.
    pub fn run_calls(&self, run_id: i64) -> Result<Vec<Call>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM run_calls WHERE run_id = ?1 ORDER BY at, id"
            ))
            .context("listing a run's calls")?;
        let rows = stmt
            .query_map([run_id], from_row)
            .context("listing a run's calls")?;
        rows.collect::<rusqlite::Result<_>>()
            .context("listing a run's calls")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_cut_on_character_boundaries() {
        assert_eq!(bounded("short", 10), "short");
        let cut = bounded(&"é".repeat(10), 8);
        assert!(cut.len() <= 8, "{cut}");
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn ops_round_trip() {
        for op in [CallOp::Read, CallOp::Write, CallOp::ServiceCert] {
            assert_eq!(op.as_str().parse::<CallOp>().unwrap(), op);
        }
        assert!("delete".parse::<CallOp>().is_err());
    }
}
