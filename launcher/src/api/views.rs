//! JSON shapes of the `/v1` API. Times are RFC 3339 UTC with seconds.

use programs_db::{AuditEvent, Build, MAX_PAGE, Page, Program, Run};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use crate::compartment::capture::text;
use crate::compartment::{CompartmentInfo, Limits};
use crate::platform::PlatformFacts;

/// Unix milliseconds as `2026-11-24T18:54:00Z`.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{secs}"))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProgramView {
    pub id: i64,
    /// Base name of the uploaded file, e.g. `hello.c`.
    pub name: String,
    pub source_sha256: String,
    pub size: u64,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&Program> for ProgramView {
    fn from(p: &Program) -> Self {
        Self {
            id: p.id,
            name: p.name.clone(),
            source_sha256: p.source_sha256.to_string(),
            size: p.size,
            created_at: rfc3339(p.created_at),
        }
    }
}

/// `POST /v1/programs/{id}/builds`; an empty body means all defaults.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildRequest {
    /// Toolchain profile; default: the launcher's default profile.
    pub profile: Option<String>,
    /// The services trust anchor compiled into the program: PEM
    /// certificates only (normally the services CA). Default: the
    /// launcher's `[builds] services_anchor`, else none (the program then
    /// trusts no service).
    #[schema(pattern = "-----BEGIN CERTIFICATE-----", max_length = 65536)]
    pub services_anchor_pem: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BuildView {
    pub id: i64,
    pub program_id: i64,
    /// `running`, `succeeded`, `failed` or `interrupted`.
    pub status: String,
    pub profile: String,
    /// First line of the compiler's `--version`.
    pub compiler: String,
    /// The full command line, run in the build's work folder.
    pub argv: Vec<String>,
    pub executable_sha256: Option<String>,
    /// SHA-256 of the C SDK compiled in (`attestable.h` then `attestable.c`).
    pub sdk_sha256: Option<String>,
    /// SHA-256 of the services trust anchor (PEM bytes) compiled in; null
    /// for none.
    pub services_anchor_sha256: Option<String>,
    pub exit_code: Option<i32>,
    /// The compiler's output (stdout and stderr as written).
    pub log: String,
    pub log_truncated: bool,
    /// Why the build failed, when the log does not say.
    pub error: Option<String>,
    pub duration_ms: Option<u64>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
}

impl From<&Build> for BuildView {
    fn from(b: &Build) -> Self {
        Self {
            id: b.id,
            program_id: b.program_id,
            status: b.status.to_string(),
            profile: b.profile.clone(),
            compiler: b.compiler.clone(),
            argv: b.argv.clone(),
            executable_sha256: b.executable_sha256.as_ref().map(|s| s.to_string()),
            sdk_sha256: b.sdk_sha256.as_ref().map(|s| s.to_string()),
            services_anchor_sha256: b.services_anchor_sha256.as_ref().map(|s| s.to_string()),
            exit_code: b.exit_code,
            log: b.log.clone(),
            log_truncated: b.log_truncated,
            error: b.error.clone(),
            duration_ms: b.duration_ms,
            created_at: rfc3339(b.created_at),
            finished_at: b.finished_at.map(rfc3339),
        }
    }
}

/// `POST /v1/programs/{id}/runs`; an empty body means all defaults.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// A succeeded build of this program; default: the newest one.
    #[serde(default, deserialize_with = "whole_number")]
    pub build_id: Option<i64>,
    /// Arguments after `argv[0]`.
    pub args: Option<Vec<String>>,
    /// Wall-clock limit in seconds; default and maximum come from the configuration.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "whole_number")]
    pub time_limit_s: Option<u32>,
    /// Tighter resource limits for this run; each at most the configured
    /// one (`[runs.limits]`; CPU: the time limit + 1 s).
    pub limits: Option<RunLimitsRequest>,
}

/// Per-run resource limits: each may only lower the configured one.
#[derive(Debug, Default, Clone, Copy, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunLimitsRequest {
    /// `RLIMIT_AS`, bytes.
    #[schema(minimum = 1)]
    pub address_space_bytes: Option<u64>,
    /// `RLIMIT_CPU`, seconds: the program is killed when it has used them;
    /// at most the run's time limit + 1 s.
    #[schema(minimum = 1)]
    pub cpu_seconds: Option<u64>,
    /// `RLIMIT_NOFILE`.
    #[schema(minimum = 1)]
    pub open_files: Option<u64>,
    /// `RLIMIT_NPROC`: processes and threads.
    #[schema(minimum = 1)]
    pub processes: Option<u64>,
    /// `RLIMIT_FSIZE`, bytes.
    #[schema(minimum = 1)]
    pub file_size_bytes: Option<u64>,
}

/// An optional integer that may be written `3.0`: JSON Schema counts any
/// number with a zero fraction as an integer, so clients may send one.
fn whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = match (number.as_i64(), number.as_f64()) {
        (Some(i), _) => Some(i),
        (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
        _ => None,
    };
    whole
        .and_then(|i| T::try_from(i).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("{number} is not an integer in range")))
}

/// A run without its output.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunSummary {
    pub id: i64,
    pub program_id: i64,
    pub build_id: i64,
    /// `queued`, `starting`, `running`, `exited`, `failed`, `timed_out`,
    /// `cancelled`, `interrupted` or `protocol_error`.
    pub status: String,
    pub args: Vec<String>,
    pub time_limit_s: u32,
    pub limits: Option<Limits>,
    /// SHA-256 of the bytes executed, measured when the run started.
    pub executable_sha256: Option<String>,
    /// The compartment the run was started in: backend, each layer as set
    /// up for this run, layers allowed degraded, and the insecure flag.
    pub compartment: Option<CompartmentInfo>,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Why the launcher ended or could not start the run.
    pub error: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub ended_at: Option<String>,
    pub duration_ms: Option<u64>,
}

impl From<&Run> for RunSummary {
    fn from(r: &Run) -> Self {
        Self {
            id: r.id,
            program_id: r.program_id,
            build_id: r.build_id,
            status: r.status.to_string(),
            args: r.args.clone(),
            time_limit_s: r.time_limit_s,
            limits: serde_json::from_str(&r.limits_json).ok(),
            executable_sha256: r.executable_sha256.as_ref().map(|s| s.to_string()),
            compartment: r
                .compartment
                .as_deref()
                .and_then(|json| serde_json::from_str(json).ok()),
            pid: r.pid,
            exit_code: r.exit_code,
            signal: r.signal,
            error: r.error.clone(),
            created_at: rfc3339(r.created_at),
            started_at: r.started_at.map(rfc3339),
            ended_at: r.ended_at.map(rfc3339),
            duration_ms: match (r.started_at, r.ended_at) {
                (Some(start), Some(end)) => Some(end.saturating_sub(start).max(0) as u64),
                _ => None,
            },
        }
    }
}

/// A run with its captured output (lossy UTF-8).
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    #[serde(flatten)]
    pub summary: RunSummary,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub has_certificate: bool,
}

impl From<&Run> for RunView {
    fn from(r: &Run) -> Self {
        Self {
            summary: r.into(),
            stdout: text(&r.stdout.bytes),
            stderr: text(&r.stderr.bytes),
            stdout_truncated: r.stdout.truncated,
            stderr_truncated: r.stderr.truncated,
            has_certificate: r.certificate_pem.is_some(),
        }
    }
}

/// Turns a list's `after` and `limit` into a page, or says which check failed.
pub fn page(after: Option<i64>, limit: Option<u32>) -> Result<Page, ApiError> {
    match limit {
        Some(l) if l == 0 || l > MAX_PAGE => Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_PAGE}, found {l}"
        ))),
        _ => Ok(Page {
            after_id: after,
            limit: limit.unwrap_or(MAX_PAGE),
        }),
    }
}

/// `GET /v1/programs`: one page, oldest first. The next page is
/// `?after=<the last id>`; a page shorter than `limit` is the last.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ProgramsQuery {
    /// Only programs with a larger id (the last id of the previous page).
    pub after: Option<i64>,
    /// At most this many (default and maximum 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// `GET /v1/runs`: one page, oldest first, paged as [`ProgramsQuery`].
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// Only runs of this program.
    pub program: Option<i64>,
    /// Only runs with a larger id (the last id of the previous page).
    pub after: Option<i64>,
    /// At most this many (default and maximum 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// `program`, `build` or `run`.
    pub subject_kind: Option<String>,
    pub subject_id: Option<i64>,
    /// Only events with a larger id (for paging).
    pub after: Option<i64>,
    /// At most this many (default and maximum 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    pub id: i64,
    #[schema(format = DateTime)]
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject_kind: String,
    pub subject_id: Option<i64>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<&AuditEvent> for AuditEventView {
    fn from(e: &AuditEvent) -> Self {
        Self {
            id: e.id,
            at: rfc3339(e.at),
            actor: e.actor.clone(),
            action: e.action.clone(),
            subject_kind: e.subject_kind.clone(),
            subject_id: e.subject_id,
            detail: serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::Null),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlatformView {
    #[serde(flatten)]
    pub facts: PlatformFacts,
    pub compartment: CompartmentInfo,
    pub toolchains: ToolchainsView,
    pub launcher_version: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolchainsView {
    pub default_profile: String,
    pub profiles: Vec<ProfileView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileView {
    pub name: String,
    pub compiler: String,
    pub flags: Vec<String>,
    pub libs: Vec<String>,
    pub description: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`
    pub status: String,
    pub version: String,
}

/// The multipart form of an upload.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Only describes the form for the OpenAPI document.
pub struct UploadForm {
    /// The C source: UTF-8 without NUL bytes, not empty, at most
    /// `[uploads] max_bytes`. Its file name (the part's `Content-Disposition`
    /// `filename`, which JSON Schema cannot constrain) must be a `.c` base
    /// name of `[A-Za-z0-9._+-]`, not starting with `.` or `-`, at most 255
    /// bytes, e.g. `hello.c`.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_may_have_a_zero_fraction() {
        let r: RunRequest =
            serde_json::from_str(r#"{"time_limit_s": 30.0, "build_id": 2}"#).unwrap();
        assert_eq!((r.time_limit_s, r.build_id), (Some(30), Some(2)));
        let r: RunRequest = serde_json::from_str(r#"{"time_limit_s": null}"#).unwrap();
        assert_eq!(r.time_limit_s, None);
        for bad in [
            r#"{"time_limit_s": 1.5}"#,
            r#"{"time_limit_s": -1}"#,
            r#"{"time_limit_s": "3"}"#,
        ] {
            assert!(serde_json::from_str::<RunRequest>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_rfc3339_seconds_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_548_840_999), "2026-11-24T19:34:00Z");
    }
}
