//! The compartment seam: how a compiler or a program is started and confined.
//!
//! A [`Compartment`] backend is chosen once at start-up ([`select`]). It
//! describes itself (for `/v1/platform`), says whether it may be used at all
//! ([`Compartment::refusal`]: a layer the machine lacks and the operator did
//! not allow degraded), adds its steps to every build, and spawns children
//! from a [`SpawnSpec`]. Whatever the backend, the result is a
//! [`ChildProcess`]: a process the caller can wait for asynchronously and
//! kill as a whole, which also says how it was confined
//! ([`ChildProcess::compartment`], what a run records).
//!
//! Backends:
//! - `linux-sandbox` and `cheri-c18n` ([`sandboxed`]), over the
//!   `launcher-sandbox` crate: namespaces, Landlock, seccomp and rlimits on
//!   Linux; purecap, c18n, Capsicum and rlimits on CheriBSD;
//! - `none` ([`unconfined`]), only with `--insecure-no-compartment`.

pub mod c18n;
pub mod capture;
mod process;
pub mod sandboxed;
pub mod select;
pub mod unconfined;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use launcher_sandbox::MeasuredExecutable;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use process::{ChildProcess, Pipe};
pub use select::{Choice, SelectError, select};

/// A way of starting processes confined (or not).
pub trait Compartment: Send + Sync + 'static {
    /// The backend and the state of each of its layers, as probed at start-up.
    fn describe(&self) -> CompartmentInfo;

    /// Why nothing may be built or run: a layer this machine lacks that the
    /// operator did not allow degraded, with what to do about it. `None`
    /// when the compartment is ready.
    fn refusal(&self) -> Option<String> {
        None
    }

    /// What this backend adds to every build.
    fn build_steps(&self) -> BuildSteps {
        BuildSteps::default()
    }

    /// Starts a child as `spec` says.
    fn spawn(&self, spec: SpawnSpec) -> Result<ChildProcess, SpawnError>;
}

/// What a backend reports about itself, and what a run records about the
/// compartment it was started in (`runs.compartment`, the evidence's
/// `compartment.{backend, layers, degraded, insecure}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CompartmentInfo {
    /// `linux-sandbox`, `cheri-c18n` or `none`.
    pub backend: String,
    pub layers: Vec<Layer>,
    /// Layers the operator allowed to be missing (`--allow-degraded`).
    pub degraded: Vec<String>,
    /// True when programs run without isolation from the launcher's host
    /// (`--insecure-no-compartment`).
    pub insecure: bool,
}

impl CompartmentInfo {
    /// The JSON object a run records.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Layer {
    pub name: String,
    pub status: LayerStatus,
    /// What the layer does here, or why it is missing or disabled.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LayerStatus {
    Active,
    Unavailable,
    Disabled,
}

impl From<&launcher_sandbox::Layer> for Layer {
    fn from(l: &launcher_sandbox::Layer) -> Self {
        Layer {
            name: l.name.as_str().to_owned(),
            status: match l.status {
                launcher_sandbox::LayerStatus::Active => LayerStatus::Active,
                launcher_sandbox::LayerStatus::Unavailable => LayerStatus::Unavailable,
                launcher_sandbox::LayerStatus::Disabled => LayerStatus::Disabled,
            },
            detail: l.detail.clone(),
        }
    }
}

/// Why a child is started: backends confine a compiler and a program differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A toolchain step: it may write only into `output_dir` (its working
    /// folder) and read, besides the toolchain, only `read_only`.
    Build {
        output_dir: PathBuf,
        read_only: Vec<PathBuf>,
    },
    /// An integration process.
    Run,
}

/// The file to execute.
#[derive(Debug)]
pub enum Executable {
    /// A path, executed with `execve` (toolchain steps).
    Path(PathBuf),
    /// An already-open file, executed with `fexecve`.
    Fd(OwnedFd),
    /// A measured executable: what was hashed is exactly what runs (a
    /// sealed memfd on Linux, the pinned file on FreeBSD).
    Measured(Arc<MeasuredExecutable>),
}

/// How the child's stdout and stderr reach the launcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Two pipes, read separately (programs).
    Separate,
    /// One pipe for both, in the order written (compiler logs).
    Merged,
}

/// Resource limits of a child. `None` is "unlimited": the launcher's own
/// limit for `none`, the largest value the sandbox accepts otherwise.
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
    /// The child's environment (the backend adds `ATTESTABLE_FD=3` when
    /// there is a channel; a sandboxed compile gets its own small one).
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub limits: Limits,
    /// The child's end of the channel; it becomes file descriptor 3.
    pub channel: Option<OwnedFd>,
    pub output: OutputMode,
}

/// What a backend adds to every build: on CheriBSD, c18n's link flags and
/// its steps on the linked executable before it is hashed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildSteps {
    /// Appended to the profile's flags.
    pub link_flags: Vec<String>,
    /// How runs get library compartmentalisation, when they do.
    pub c18n: Option<launcher_sandbox::cheri::C18nMechanism>,
}

impl BuildSteps {
    /// Commands to run, confined like the compiler, on the linked
    /// `executable` before it is hashed (e.g. `elfctl -e +cheric18n`).
    pub fn post_link_commands(&self, executable: &Path) -> Vec<Vec<String>> {
        self.c18n
            .map(|m| m.post_link_commands(executable))
            .unwrap_or_default()
    }
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
    #[error("starting {program} in the compartment: {source}")]
    Sandbox {
        program: String,
        #[source]
        source: launcher_sandbox::SpawnError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_link_steps_follow_the_c18n_mechanism() {
        use launcher_sandbox::cheri::C18nMechanism;
        let exe = Path::new("/b/7/out/prog");
        assert!(BuildSteps::default().post_link_commands(exe).is_empty());
        let note = BuildSteps {
            link_flags: vec![],
            c18n: Some(C18nMechanism::FeatureNote),
        };
        assert_eq!(
            note.post_link_commands(exe),
            [
                vec!["elfctl", "-e", "+cheric18n", "/b/7/out/prog"],
                vec!["elfctl", "/b/7/out/prog"]
            ]
        );
        let interp = BuildSteps {
            link_flags: C18nMechanism::Interpreter.link_flags(),
            c18n: Some(C18nMechanism::Interpreter),
        };
        assert!(interp.post_link_commands(exe).is_empty());
    }

    #[test]
    fn sandbox_layers_convert_and_serialize_like_the_evidence() {
        let l = launcher_sandbox::Layer::disabled(
            launcher_sandbox::LayerName::Landlock,
            "--allow-degraded landlock",
        );
        let info = CompartmentInfo {
            backend: "linux-sandbox".into(),
            layers: vec![Layer::from(&l)],
            degraded: vec!["landlock".into()],
            insecure: false,
        };
        assert_eq!(
            info.to_json(),
            r#"{"backend":"linux-sandbox","layers":[{"name":"landlock","status":"disabled","detail":"--allow-degraded landlock"}],"degraded":["landlock"],"insecure":false}"#
        );
    }
}
