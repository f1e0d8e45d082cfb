//! The launcher's JSON shapes, as far as the text output reads them. Unknown
//! fields are ignored and most fields default, so a newer launcher that adds
//! fields keeps working; `--json` prints the launcher's JSON untouched.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{CliError, Result};

/// Reads a typed view out of an API answer.
pub fn parse<T: DeserializeOwned>(value: &Value, what: &str) -> Result<T> {
    T::deserialize(value).map_err(|e| CliError::BadAnswer {
        request: what.to_owned(),
        detail: e.to_string(),
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Program {
    pub id: i64,
    pub name: String,
    pub source_sha256: String,
    pub size: u64,
    pub created_at: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Build {
    pub id: i64,
    pub program_id: i64,
    pub status: String,
    pub profile: String,
    pub compiler: String,
    pub executable_sha256: Option<String>,
    pub exit_code: Option<i32>,
    pub log: String,
    pub log_truncated: bool,
    pub error: Option<String>,
    pub duration_ms: Option<u64>,
    pub created_at: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunSummary {
    pub id: i64,
    pub program_id: i64,
    pub build_id: i64,
    pub status: String,
    pub args: Vec<String>,
    pub time_limit_s: u32,
    pub executable_sha256: Option<String>,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Run {
    #[serde(flatten)]
    pub summary: RunSummary,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub has_certificate: bool,
}

/// How a run ended, as far as exit statuses are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Live,
    Exited(i32),
    Signalled(i32),
    TimedOut,
    Cancelled,
    Interrupted,
    ProtocolError,
    Failed,
}

/// Exit statuses `attestable run` uses for runs that did not end by themselves.
pub mod exit {
    pub const INTERRUPTED: u8 = 123;
    pub const TIMED_OUT: u8 = 124;
    pub const PROTOCOL_ERROR: u8 = 125;
    pub const FAILED: u8 = 126;
    pub const CANCELLED: u8 = 130;
}

impl RunSummary {
    pub fn outcome(&self) -> Outcome {
        match self.status.as_str() {
            "queued" | "starting" | "running" => Outcome::Live,
            "exited" => match (self.exit_code, self.signal) {
                (Some(code), _) => Outcome::Exited(code),
                (None, Some(signal)) => Outcome::Signalled(signal),
                (None, None) => Outcome::Failed,
            },
            "timed_out" => Outcome::TimedOut,
            "cancelled" => Outcome::Cancelled,
            "interrupted" => Outcome::Interrupted,
            "protocol_error" => Outcome::ProtocolError,
            _ => Outcome::Failed,
        }
    }

    pub fn is_live(&self) -> bool {
        self.outcome() == Outcome::Live
    }

    /// The exit status `attestable run` ends with (see `attestable run --help`).
    pub fn exit_status(&self) -> u8 {
        match self.outcome() {
            Outcome::Exited(code) => (code & 0xff) as u8,
            Outcome::Signalled(signal) => 128u8.saturating_add((signal & 0x7f) as u8),
            Outcome::TimedOut => exit::TIMED_OUT,
            Outcome::Cancelled => exit::CANCELLED,
            Outcome::Interrupted => exit::INTERRUPTED,
            Outcome::ProtocolError => exit::PROTOCOL_ERROR,
            Outcome::Failed | Outcome::Live => exit::FAILED,
        }
    }

    /// `exited with code 3`, `killed by signal 9`, `timed out: …`.
    pub fn describe_end(&self) -> String {
        let why = self
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        match self.outcome() {
            Outcome::Live => self.status.clone(),
            Outcome::Exited(code) => format!("exited with code {code}"),
            Outcome::Signalled(signal) => {
                format!("killed by signal {signal}{}", signal_name(signal))
            }
            Outcome::TimedOut => format!("timed out{why}"),
            Outcome::Cancelled => format!("cancelled{why}"),
            Outcome::Interrupted => format!("interrupted{why}"),
            Outcome::ProtocolError => format!("ended by a protocol error{why}"),
            Outcome::Failed => format!("failed{why}"),
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => " (SIGHUP)",
        2 => " (SIGINT)",
        6 => " (SIGABRT)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        15 => " (SIGTERM)",
        24 => " (SIGXCPU)",
        25 => " (SIGXFSZ)",
        _ => "",
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Layer {
    pub name: String,
    pub status: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Compartment {
    pub backend: String,
    pub layers: Vec<Layer>,
    pub insecure: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Profile {
    pub name: String,
    pub compiler: String,
    pub flags: Vec<String>,
    pub libs: Vec<String>,
    pub description: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Toolchains {
    pub default_profile: String,
    pub profiles: Vec<Profile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Platform {
    pub cpu_model: String,
    pub cpus: u32,
    pub physical_memory_bytes: u64,
    pub os: String,
    pub os_release: String,
    pub kernel: String,
    pub arch: String,
    pub hostname: String,
    pub compartment: Compartment,
    pub toolchains: Toolchains,
    pub launcher_version: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(status: &str, code: Option<i32>, signal: Option<i32>) -> RunSummary {
        parse(
            &json!({"id": 1, "status": status, "exit_code": code, "signal": signal}),
            "t",
        )
        .unwrap()
    }

    #[test]
    fn exit_statuses_follow_the_documented_table() {
        assert_eq!(run("exited", Some(0), None).exit_status(), 0);
        assert_eq!(run("exited", Some(3), None).exit_status(), 3);
        assert_eq!(run("exited", Some(300), None).exit_status(), 44);
        assert_eq!(run("exited", None, Some(9)).exit_status(), 137);
        assert_eq!(run("timed_out", None, Some(9)).exit_status(), 124);
        assert_eq!(run("cancelled", None, None).exit_status(), 130);
        assert_eq!(run("interrupted", None, None).exit_status(), 123);
        assert_eq!(run("protocol_error", None, None).exit_status(), 125);
        assert_eq!(run("failed", None, None).exit_status(), 126);
        assert_eq!(run("something_new", None, None).exit_status(), 126);
        assert!(run("queued", None, None).is_live());
    }

    #[test]
    fn ends_are_described_for_people() {
        assert_eq!(
            run("exited", None, Some(11)).describe_end(),
            "killed by signal 11 (SIGSEGV)"
        );
        let mut timed_out = run("timed_out", None, Some(9));
        timed_out.error = Some("stopped at its time limit of 1 s".into());
        assert_eq!(
            timed_out.describe_end(),
            "timed out: stopped at its time limit of 1 s"
        );
    }

    #[test]
    fn unknown_fields_and_missing_ones_are_fine() {
        let p: Program = parse(&json!({"id": 2, "name": "a.c", "new": true}), "t").unwrap();
        assert_eq!((p.id, p.name.as_str(), p.size), (2, "a.c", 0));
        assert!(parse::<Program>(&json!({"id": "x"}), "GET /v1/programs/1").is_err());
    }
}
