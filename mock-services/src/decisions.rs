//! The decision log: one JSON line per decision in `<service>/decisions.log`
//! (the same record goes to the `audit` table), and one short line on stderr.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;

use crate::db::AuditRecord;

/// An append-only JSON-lines file.
#[derive(Debug)]
pub struct DecisionLog {
    path: PathBuf,
    file: Mutex<fs::File>,
}

impl DecisionLog {
    /// Opens `path` for appending, creating it with mode 0600.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("opening the decision log {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Appends `record` as one line and echoes a summary to stderr. A
    /// failure to write is reported, never fatal: the audit table has it too.
    pub fn write(&self, record: &AuditRecord) {
        tracing::info!(
            service = record.service,
            endpoint = record.endpoint,
            status = record.status,
            outcome = record.outcome,
            resource = record.resource.as_deref().unwrap_or("-"),
            run = record.run.as_deref().unwrap_or("-"),
            failed_step = record.failed_step.unwrap_or("-"),
            "decision"
        );
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a decision");
                return;
            }
        };
        line.push(b'\n');
        // One write call per line: O_APPEND keeps lines whole.
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = file.write_all(&line) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot append to the decision log");
        }
    }
}
