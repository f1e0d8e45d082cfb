//! Reading the append-only audit log (rows are written by the other modules,
//! in the transaction of the change they record).

use rusqlite::Row;

use crate::db::Db;
use crate::error::{Result, SqlContext};
use crate::model::{AuditEvent, AuditFilter};

/// Upper bound on one page of audit events.
pub const MAX_AUDIT_PAGE: u32 = crate::model::MAX_PAGE;

fn from_row(row: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        id: row.get(0)?,
        at: row.get(1)?,
        actor: row.get(2)?,
        action: row.get(3)?,
        subject_kind: row.get(4)?,
        subject_id: row.get(5)?,
        detail: row.get(6)?,
    })
}

impl Db {
    /// Audit events matching `filter`, oldest first, at most
    /// `min(filter.limit, MAX_AUDIT_PAGE)` (a limit of 0 means the maximum).
    pub fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let limit = match filter.limit {
            0 => MAX_AUDIT_PAGE,
            n => n.min(MAX_AUDIT_PAGE),
        };
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, at, actor, action, subject_kind, subject_id, detail
                 FROM audit_events
                 WHERE (?1 IS NULL OR subject_kind = ?1)
                   AND (?2 IS NULL OR subject_id = ?2)
                   AND id > coalesce(?3, 0)
                 ORDER BY id
                 LIMIT ?4",
            )
            .context("listing audit events")?;
        stmt.query_map(
            rusqlite::params![
                filter.subject_kind,
                filter.subject_id,
                filter.after_id,
                limit
            ],
            from_row,
        )
        .context("listing audit events")?
        .collect::<rusqlite::Result<_>>()
        .context("listing audit events")
    }
}
