//! Rows and the run state machine. Times are Unix milliseconds.

use std::fmt;
use std::str::FromStr;

use crate::error::DbError;
use crate::store::{Sha256Hex, StagedBlob};

/// An uploaded source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub id: i64,
    /// Base name, e.g. `hello.c`.
    pub name: String,
    pub source_sha256: Sha256Hex,
    pub size: u64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStatus {
    Running,
    Succeeded,
    Failed,
    /// The launcher stopped while the compiler ran.
    Interrupted,
}

impl BuildStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Running => "running",
            BuildStatus::Succeeded => "succeeded",
            BuildStatus::Failed => "failed",
            BuildStatus::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for BuildStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BuildStatus {
    type Err = DbError;
    fn from_str(s: &str) -> Result<Self, DbError> {
        Ok(match s {
            "running" => BuildStatus::Running,
            "succeeded" => BuildStatus::Succeeded,
            "failed" => BuildStatus::Failed,
            "interrupted" => BuildStatus::Interrupted,
            other => return Err(DbError::Invalid(format!("unknown build status {other:?}"))),
        })
    }
}

/// One compilation of a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub id: i64,
    pub program_id: i64,
    pub status: BuildStatus,
    pub profile: String,
    /// First line of the compiler's `--version`.
    pub compiler: String,
    /// The full command line, program first.
    pub argv: Vec<String>,
    pub executable_sha256: Option<Sha256Hex>,
    /// SHA-256 of the C SDK compiled in (`attestable.h` then `attestable.c`).
    pub sdk_sha256: Option<Sha256Hex>,
    /// SHA-256 of the services trust anchor (PEM bytes) compiled in; `None`
    /// when the program was built without one.
    pub services_anchor_sha256: Option<Sha256Hex>,
    pub exit_code: Option<i32>,
    pub log: String,
    pub log_truncated: bool,
    /// Why the build failed when the compiler's log does not say (time limit, spawn error).
    pub error: Option<String>,
    pub duration_ms: Option<u64>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// What a build is about to run.
#[derive(Debug, Clone)]
pub struct NewBuild {
    pub program_id: i64,
    pub profile: String,
    pub compiler: String,
    pub argv: Vec<String>,
}

/// What a build compiles in besides the program, recorded with it
/// ([`crate::Db::start_build_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledIn {
    /// SHA-256 of `attestable.h` followed by `attestable.c`.
    pub sdk_sha256: Sha256Hex,
    /// SHA-256 of the services trust anchor's PEM bytes; `None` for none.
    pub services_anchor_sha256: Option<Sha256Hex>,
}

/// How a build ended.
#[derive(Debug)]
pub enum BuildOutcome {
    Succeeded {
        executable: StagedBlob,
        log: String,
        log_truncated: bool,
        duration_ms: u64,
    },
    Failed {
        exit_code: Option<i32>,
        error: Option<String>,
        log: String,
        log_truncated: bool,
        duration_ms: u64,
    },
    /// The launcher stopped the compiler because it is shutting down.
    Interrupted {
        log: String,
        log_truncated: bool,
        duration_ms: u64,
    },
}

/// Status of a run. See [`RunStatus::can_become`] for the state machine:
///
/// ```text
/// queued ──> starting ──> running ──> exited | failed | timed_out | cancelled
///   │           │            │        | interrupted | protocol_error
///   │           └──> failed | cancelled | interrupted
///   └──> cancelled | interrupted | failed
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Queued,
    Starting,
    Running,
    /// The program ended by itself (an exit code, or a signal it was not sent by us).
    Exited,
    /// The launcher could not start it (the message says why).
    Failed,
    TimedOut,
    Cancelled,
    /// The launcher stopped (or crashed) while the run was live.
    Interrupted,
    /// The program broke the fd-3 channel protocol and was stopped.
    ProtocolError,
}

impl RunStatus {
    pub const ALL: [RunStatus; 9] = [
        RunStatus::Queued,
        RunStatus::Starting,
        RunStatus::Running,
        RunStatus::Exited,
        RunStatus::Failed,
        RunStatus::TimedOut,
        RunStatus::Cancelled,
        RunStatus::Interrupted,
        RunStatus::ProtocolError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Starting => "starting",
            RunStatus::Running => "running",
            RunStatus::Exited => "exited",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
            RunStatus::ProtocolError => "protocol_error",
        }
    }

    /// True once the run has ended; an ended run never changes status again.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            RunStatus::Queued | RunStatus::Starting | RunStatus::Running
        )
    }

    /// Whether a run in `self` may move to `next`.
    pub fn can_become(self, next: RunStatus) -> bool {
        use RunStatus::*;
        match self {
            Queued => matches!(next, Starting | Cancelled | Interrupted | Failed),
            Starting => matches!(next, Running | Failed | Cancelled | Interrupted),
            Running => matches!(
                next,
                Exited | Failed | TimedOut | Cancelled | Interrupted | ProtocolError
            ),
            Exited | Failed | TimedOut | Cancelled | Interrupted | ProtocolError => false,
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = DbError;
    fn from_str(s: &str) -> Result<Self, DbError> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| DbError::Invalid(format!("unknown run status {s:?}")))
    }
}

/// A run's status once it has ended: the only statuses [`RunEnd`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndStatus {
    Exited,
    Failed,
    TimedOut,
    Cancelled,
    Interrupted,
    ProtocolError,
}

impl From<EndStatus> for RunStatus {
    fn from(status: EndStatus) -> Self {
        match status {
            EndStatus::Exited => RunStatus::Exited,
            EndStatus::Failed => RunStatus::Failed,
            EndStatus::TimedOut => RunStatus::TimedOut,
            EndStatus::Cancelled => RunStatus::Cancelled,
            EndStatus::Interrupted => RunStatus::Interrupted,
            EndStatus::ProtocolError => RunStatus::ProtocolError,
        }
    }
}

/// Captured output of one stream, already bounded by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub truncated: bool,
}

/// Everything recorded when a run ends.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub status: EndStatus,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// For a person: why the launcher ended or could not start the run.
    pub error: Option<String>,
    pub stdout: Captured,
    pub stderr: Captured,
}

impl RunEnd {
    /// An end with no process outcome and no output (e.g. cancelled while queued).
    pub fn without_output(status: EndStatus, error: Option<String>) -> Self {
        Self {
            status,
            exit_code: None,
            signal: None,
            error,
            stdout: Captured::default(),
            stderr: Captured::default(),
        }
    }
}

/// One step of the run state machine.
#[derive(Debug, Clone)]
pub enum RunUpdate {
    /// queued → starting: a concurrency slot was granted.
    Starting,
    /// starting → running: the process exists; `executable_sha256` is what
    /// was measured, `compartment` a JSON object describing the compartment
    /// it was started in (the launcher owns its shape).
    Running {
        pid: u32,
        executable_sha256: Sha256Hex,
        compartment: String,
    },
    /// → a terminal status.
    Ended(RunEnd),
}

impl RunUpdate {
    pub fn target(&self) -> RunStatus {
        match self {
            RunUpdate::Starting => RunStatus::Starting,
            RunUpdate::Running { .. } => RunStatus::Running,
            RunUpdate::Ended(end) => end.status.into(),
        }
    }
}

/// A request to run a build.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub program_id: i64,
    pub build_id: i64,
    pub args: Vec<String>,
    /// The run's resource limits as a JSON object (the launcher owns their shape).
    pub limits_json: String,
    pub time_limit_s: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: i64,
    pub program_id: i64,
    pub build_id: i64,
    pub status: RunStatus,
    pub args: Vec<String>,
    pub limits_json: String,
    pub time_limit_s: u32,
    pub executable_sha256: Option<Sha256Hex>,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
    pub stdout: Captured,
    pub stderr: Captured,
    pub certificate_pem: Option<String>,
    /// The compartment the run was started in, as a JSON object (set when
    /// it starts running).
    pub compartment: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
}

/// One line of the append-only audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: i64,
    pub at: i64,
    /// Who: `launcher` for the daemon itself, else the client (e.g. `api 127.0.0.1:5000`).
    pub actor: String,
    /// What: e.g. `program.create`, `run.status`.
    pub action: String,
    pub subject_kind: String,
    pub subject_id: Option<i64>,
    /// JSON object with the details.
    pub detail: String,
}

/// One page of a list ordered by id: the rows with an id greater than
/// `after_id`, at most `limit` of them (at most [`MAX_PAGE`]; 0 means
/// [`MAX_PAGE`]). The next page starts after the last id of this one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Page {
    pub after_id: Option<i64>,
    pub limit: u32,
}

/// Upper bound on one page of any list.
pub const MAX_PAGE: u32 = 1000;

impl Page {
    /// The limit to give SQLite.
    pub(crate) fn sql_limit(self) -> u32 {
        match self.limit {
            0 => MAX_PAGE,
            n => n.min(MAX_PAGE),
        }
    }
}

/// Which audit events to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub subject_kind: Option<String>,
    pub subject_id: Option<i64>,
    /// Only events with an id greater than this.
    pub after_id: Option<i64>,
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for status in RunStatus::ALL {
            assert_eq!(status.as_str().parse::<RunStatus>().unwrap(), status);
        }
        assert!("done".parse::<RunStatus>().is_err());
    }

    #[test]
    fn terminal_statuses_are_final() {
        for from in RunStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in RunStatus::ALL {
                assert!(!from.can_become(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn the_happy_path_and_no_shortcuts() {
        use RunStatus::*;
        assert!(Queued.can_become(Starting));
        assert!(Starting.can_become(Running));
        assert!(Running.can_become(Exited));
        assert!(!Queued.can_become(Running));
        assert!(!Queued.can_become(Exited));
        assert!(!Starting.can_become(TimedOut));
        assert!(!Running.can_become(Queued));
        assert!(!Running.can_become(Running));
    }
}
