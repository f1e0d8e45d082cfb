//! The decision log: one JSON line per decision in `<service>/decisions.log`
//! (the same record goes to the `audit` table), and one short line on stderr.
//!
//! The file is rotated by size so that a busy or attacked service does not
//! fill its disk with it: past [`MAX_BYTES`] it becomes `decisions.log.1`
//! (the older ones shift to `.2` … [`KEEP`], the oldest is dropped). The
//! `audit` table keeps every decision.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;

use crate::db::AuditRecord;

/// Size past which the log is rotated.
pub const MAX_BYTES: u64 = 16 << 20;
/// Rotated files kept beside the current one.
pub const KEEP: u32 = 3;

/// An append-only JSON-lines file, rotated by size.
#[derive(Debug)]
pub struct DecisionLog {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    file: fs::File,
    len: u64,
}

fn open_append(path: &Path) -> std::io::Result<Current> {
    let file = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let len = file.metadata()?.len();
    Ok(Current { file, len })
}

impl DecisionLog {
    /// Opens `path` for appending, creating it with mode 0600, rotated at
    /// [`MAX_BYTES`] keeping [`KEEP`] old files.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Self::open_with(path, MAX_BYTES, KEEP)
    }

    /// As [`DecisionLog::open`], with the rotation size and the number of
    /// old files kept (at least 1).
    pub fn open_with(path: &Path, max_bytes: u64, keep: u32) -> anyhow::Result<Self> {
        let current = open_append(path)
            .with_context(|| format!("opening the decision log {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1),
            keep: keep.max(1),
            file: Mutex::new(current),
        })
    }

    /// `decisions.log.N`.
    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Shifts `.1` … `.keep-1` up by one (dropping `.keep`), renames the
    /// current file to `.1` and opens a fresh one.
    fn rotate(&self, current: &mut Current) -> std::io::Result<()> {
        for n in (1..self.keep).rev() {
            match fs::rename(self.rotated(n), self.rotated(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::rename(&self.path, self.rotated(1))?;
        *current = open_append(&self.path)?;
        Ok(())
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
        let mut current = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if current.len > 0
            && current.len + line.len() as u64 > self.max_bytes
            && let Err(e) = self.rotate(&mut current)
        {
            // Keep appending to the file we have: losing lines is worse.
            tracing::error!(path = %self.path.display(), error = %e, "cannot rotate the decision log");
        }
        // One write call per line: O_APPEND keeps lines whole.
        match current.file.write_all(&line) {
            Ok(()) => current.len += line.len() as u64,
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot append to the decision log")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> AuditRecord {
        AuditRecord {
            at: 1_800_000_000,
            service: "store",
            endpoint: "read",
            outcome: "denied",
            status: 403,
            allowed: false,
            failed_step: Some("measurement"),
            message: Some(format!("decision {n}")),
            resource: Some("sales/last".into()),
            run: None,
            program_key: None,
            measurement: None,
            certificate_sha256: None,
            proof: None,
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .map(|t| t.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    #[test]
    fn rotates_by_size_keeping_whole_lines_and_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.log");
        let line_len = serde_json::to_vec(&record(100)).unwrap().len() as u64 + 1;
        let log = DecisionLog::open_with(&path, 10 * line_len, 2).unwrap();
        for n in 100..150 {
            log.write(&record(n));
        }
        // 50 lines, 10 a file: the current file and two old ones remain.
        let (current, one, two) = (lines(&path), lines(&log.rotated(1)), lines(&log.rotated(2)));
        assert!(!log.rotated(3).exists());
        assert_eq!((current.len(), one.len(), two.len()), (10, 10, 10));
        let kept: Vec<String> = two.iter().chain(&one).chain(&current).cloned().collect();
        for (line, n) in kept.iter().zip(120..150) {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["message"], format!("decision {n}"), "{line}");
        }
        let mode = |p: &Path| {
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(p).unwrap().permissions()) & 0o777
        };
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&log.rotated(1)), 0o600);
    }

    #[test]
    fn a_reopened_log_counts_what_it_already_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.log");
        let line_len = serde_json::to_vec(&record(100)).unwrap().len() as u64 + 1;
        for n in 100..108 {
            DecisionLog::open_with(&path, 10 * line_len, 3)
                .unwrap()
                .write(&record(n));
        }
        let log = DecisionLog::open_with(&path, 10 * line_len, 3).unwrap();
        for n in 108..112 {
            log.write(&record(n));
        }
        assert_eq!(lines(&log.rotated(1)).len(), 10);
        assert_eq!(lines(&path).len(), 2);
    }
}
