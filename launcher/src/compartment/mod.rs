//! The compartment seam: how a compiler or a program is started and confined.
//!
//! A [`Compartment`] backend is chosen at start-up. It describes itself (for
//! `/v1/platform` and, later, the run evidence) and spawns children from a
//! [`SpawnSpec`]. Whatever the backend, the result is a [`ChildProcess`]: a
//! process leading its own process group, which the caller can wait for
//! asynchronously and kill as a whole.
//!
//! Backends: [`unconfined`] (`none`) now; `linux-sandbox` and `cheri-c18n`
//! come with their own issue.

pub mod capture;
mod process;
pub mod unconfined;

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use process::{ChildProcess, Pipe};

/// A way of starting processes confined (or not).
pub trait Compartment: Send + Sync + 'static {
    /// The backend and the state of each of its layers.
    fn describe(&self) -> CompartmentInfo;

    /// Starts a child as `spec` says. The child leads its own process group.
    fn spawn(&self, spec: SpawnSpec) -> Result<ChildProcess, SpawnError>;
}

/// What a backend reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CompartmentInfo {
    /// `none`, `linux-sandbox` or `cheri-c18n`.
    pub backend: String,
    pub layers: Vec<Layer>,
    /// True when programs run without isolation from the launcher's host.
    pub insecure: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Layer {
    pub name: String,
    pub status: LayerStatus,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LayerStatus {
    Active,
    Unavailable,
    Disabled,
}

/// Why a child is started: backends confine a compiler and a program differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A toolchain step; it may write only into `output_dir` (its work folder).
    Build { output_dir: PathBuf },
    /// An integration process.
    Run,
}

/// The file to execute.
#[derive(Debug)]
pub enum Executable {
    /// A path, executed with `execve`.
    Path(PathBuf),
    /// An already-open file, executed with `fexecve`: what was measured
    /// through this descriptor is exactly what runs.
    Fd(OwnedFd),
}

/// How the child's stdout and stderr reach the launcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Two pipes, read separately (programs).
    Separate,
    /// One pipe for both, in the order written (compiler logs).
    Merged,
}

/// Resource limits of a child. `None` leaves a limit as the launcher has it.
/// The field names are those of the evidence's `compartment.limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Limits {
    pub address_space_bytes: Option<u64>,
    pub cpu_seconds: Option<u64>,
    pub open_files: Option<u64>,
    pub processes: Option<u64>,
    pub file_size_bytes: Option<u64>,
    /// Wall-clock limit enforced by the supervisor (not an rlimit).
    pub wall_seconds: u64,
}

/// Everything a backend needs to start a child.
#[derive(Debug)]
pub struct SpawnSpec {
    pub role: Role,
    pub executable: Executable,
    /// The full argument vector, `argv[0]` first.
    pub argv: Vec<String>,
    /// The child's entire environment (the backend adds `ATTESTABLE_FD=3`
    /// when there is a channel, and nothing else).
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub limits: Limits,
    /// The child's end of the channel; it becomes file descriptor 3.
    pub channel: Option<OwnedFd>,
    pub output: OutputMode,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("invalid spawn request: {0}")]
    Invalid(String),
    #[error("starting {program}: {source}")]
    Io {
        program: String,
        #[source]
        source: std::io::Error,
    },
}
