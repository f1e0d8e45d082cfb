//! What to start and how to confine it.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::layers::{DisabledLayers, LayerName};
use crate::limits::Limits;
use crate::measured::MeasuredExecutable;

/// The file descriptor number the channel socket gets in the child.
pub const CHANNEL_FD: i32 = 3;
/// The uid and gid (outside the sandbox) a root launcher runs sandboxes as:
/// `nobody`/`nogroup`, so that neither DAC nor the kernel's exemption of
/// global root from `RLIMIT_NPROC` works in the program's favour.
pub const DEFAULT_OUTER_ID: u32 = 65534;
/// The uid and gid the program sees inside its user namespace.
pub const INSIDE_ID: u32 = 1000;

/// What the child executes.
#[derive(Debug, Clone)]
pub enum Program {
    /// A measured executable, run from its sealed copy (a run).
    Measured(Arc<MeasuredExecutable>),
    /// A path, executed by name (a confined compile: `/usr/bin/cc`).
    Path(PathBuf),
}

/// How the sandbox may use a path beyond its working folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read files and list directories.
    Read,
    /// Read, and execute files.
    ReadExecute,
    /// Read, create, write, rename and delete beneath it; never execute.
    ReadWrite,
}

/// One path the sandbox may use, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    pub path: PathBuf,
    pub access: Access,
    /// A missing optional path (e.g. `/lib64` on some distributions) is
    /// skipped; a missing required one makes the spawn fail.
    pub required: bool,
}

impl PathRule {
    pub fn new(path: impl Into<PathBuf>, access: Access) -> Self {
        PathRule {
            path: path.into(),
            access,
            required: true,
        }
    }

    pub fn optional(path: impl Into<PathBuf>, access: Access) -> Self {
        PathRule {
            path: path.into(),
            access,
            required: false,
        }
    }
}

/// Read-only paths every dynamically linked C program needs to start:
/// its libraries, the loader cache, and OpenSSL's configuration.
pub fn runtime_paths() -> Vec<PathRule> {
    [
        "/lib",
        "/lib64",
        "/usr/lib",
        "/usr/lib64",
        "/etc/ld.so.cache",
        "/etc/ssl",
    ]
    .into_iter()
    .map(|p| PathRule::optional(p, Access::Read))
    .collect()
}

/// Paths a host C toolchain needs: its drivers and helpers (`cc1`, `as`,
/// `collect2`, `ld`) executable, headers and libraries readable. The
/// dynamic loader they all use is added at spawn time, read from the
/// compiler's own ELF header.
pub fn toolchain_paths() -> Vec<PathRule> {
    let mut rules = runtime_paths();
    for p in [
        "/usr/bin",
        "/bin",
        "/usr/libexec",
        "/usr/lib/gcc",
        "/usr/local/bin",
    ] {
        rules.push(PathRule::optional(p, Access::ReadExecute));
    }
    for p in ["/usr/include", "/usr/local/include", "/usr/share/gcc"] {
        rules.push(PathRule::optional(p, Access::Read));
    }
    // Tools open /dev/null for output they discard.
    rules.push(PathRule::optional("/dev/null", Access::ReadWrite));
    rules
}

/// Everything [`crate::spawn`] needs. Built with [`SandboxSpec::run`] or
/// [`SandboxSpec::compile`] and the builder methods.
#[derive(Debug)]
pub struct SandboxSpec {
    pub(crate) program: Program,
    pub(crate) argv: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) workdir: PathBuf,
    pub(crate) paths: Vec<PathRule>,
    pub(crate) channel: Option<OwnedFd>,
    pub(crate) stdout: Option<OwnedFd>,
    pub(crate) stderr: Option<OwnedFd>,
    pub(crate) limits: Limits,
    pub(crate) disabled: DisabledLayers,
    pub(crate) outer_id: u32,
    pub(crate) cheri: Option<crate::cheri::CheriRun>,
}

impl SandboxSpec {
    /// A run: the measured executable with an empty environment (plus
    /// `ATTESTABLE_FD=3` once a channel is given), `workdir` as its private
    /// read-write working folder and current directory, read-only access to
    /// [`runtime_paths`], and execute access to its ELF interpreter only.
    pub fn run(exe: Arc<MeasuredExecutable>, workdir: impl Into<PathBuf>) -> Self {
        let argv0 = exe
            .source_path()
            .file_name()
            .map(OsStr::to_owned)
            .unwrap_or_else(|| OsString::from("program"));
        let mut paths = runtime_paths();
        if let Some(interp) = &exe.elf().interpreter {
            paths.push(PathRule::new(interp, Access::ReadExecute));
        }
        SandboxSpec {
            program: Program::Measured(exe),
            argv: vec![argv0],
            env: Vec::new(),
            workdir: workdir.into(),
            paths,
            channel: None,
            stdout: None,
            stderr: None,
            limits: Limits::default(),
            disabled: DisabledLayers::new(),
            outer_id: DEFAULT_OUTER_ID,
            cheri: None,
        }
    }

    /// A confined compile: `compiler` (e.g. `/usr/bin/cc`) with
    /// `PATH=/usr/bin:/bin`, `TMPDIR=<out_dir>`, `LANG=C`; the toolchain
    /// ([`toolchain_paths`]) readable and executable, `out_dir` read-write
    /// and current directory. Add the source and SDK folders with
    /// [`SandboxSpec::read_only`].
    pub fn compile(compiler: impl Into<PathBuf>, out_dir: impl Into<PathBuf>) -> Self {
        let compiler = compiler.into();
        let out_dir = out_dir.into();
        let argv0 = compiler
            .file_name()
            .map(OsStr::to_owned)
            .unwrap_or_else(|| compiler.clone().into_os_string());
        let mut paths = toolchain_paths();
        paths.push(PathRule::new(&compiler, Access::ReadExecute));
        SandboxSpec {
            program: Program::Path(compiler),
            argv: vec![argv0],
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("TMPDIR".into(), out_dir.clone().into_os_string()),
                ("LANG".into(), "C".into()),
            ],
            workdir: out_dir,
            paths,
            channel: None,
            stdout: None,
            stderr: None,
            limits: Limits::compile(),
            disabled: DisabledLayers::new(),
            outer_id: DEFAULT_OUTER_ID,
            cheri: None,
        }
    }

    /// Replaces `argv[0]`.
    pub fn argv0(mut self, arg0: impl Into<OsString>) -> Self {
        self.argv[0] = arg0.into();
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.argv.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an environment variable (the environment is otherwise empty).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The socket that becomes fd 3; sets `ATTESTABLE_FD=3`.
    pub fn channel(mut self, fd: OwnedFd) -> Self {
        self.channel = Some(fd);
        self.env
            .retain(|(k, _)| k.as_os_str() != OsStr::new("ATTESTABLE_FD"));
        self.env
            .push(("ATTESTABLE_FD".into(), CHANNEL_FD.to_string().into()));
        self
    }

    /// Where the child's stdout goes (default `/dev/null`).
    pub fn stdout(mut self, fd: OwnedFd) -> Self {
        self.stdout = Some(fd);
        self
    }

    /// Where the child's stderr goes (default `/dev/null`).
    pub fn stderr(mut self, fd: OwnedFd) -> Self {
        self.stderr = Some(fd);
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn read_only(mut self, path: impl Into<PathBuf>) -> Self {
        self.paths.push(PathRule::new(path, Access::Read));
        self
    }

    pub fn read_execute(mut self, path: impl Into<PathBuf>) -> Self {
        self.paths.push(PathRule::new(path, Access::ReadExecute));
        self
    }

    pub fn read_write(mut self, path: impl Into<PathBuf>) -> Self {
        self.paths.push(PathRule::new(path, Access::ReadWrite));
        self
    }

    pub fn path_rule(mut self, rule: PathRule) -> Self {
        self.paths.push(rule);
        self
    }

    /// Leaves `layer` out of this sandbox, recording `reason` in its report.
    pub fn disable(mut self, layer: LayerName, reason: impl Into<String>) -> Self {
        self.disabled.disable(layer, reason);
        self
    }

    pub fn disabled_layers(mut self, disabled: DisabledLayers) -> Self {
        self.disabled = disabled;
        self
    }

    /// The uid and gid a root launcher maps the sandbox to (default 65534).
    pub fn outer_id(mut self, id: u32) -> Self {
        self.outer_id = id;
        self
    }

    /// How a `cheri-c18n` run gets library compartmentalisation (CheriBSD
    /// only; the Linux backend refuses a spec that asks for it).
    pub fn cheri(mut self, run: crate::cheri::CheriRun) -> Self {
        self.cheri = Some(run);
        self
    }

    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    pub fn path_rules(&self) -> &[PathRule] {
        &self.paths
    }

    pub fn get_limits(&self) -> &Limits {
        &self.limits
    }

    pub fn get_env(&self) -> &[(OsString, OsString)] {
        &self.env
    }

    pub fn get_argv(&self) -> &[OsString] {
        &self.argv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_spec_has_the_small_environment_and_the_toolchain() {
        let spec = SandboxSpec::compile("/usr/bin/cc", "/tmp/out")
            .args(["-c", "x.c"])
            .read_only("/srv/src");
        assert_eq!(spec.get_argv(), ["cc", "-c", "x.c"]);
        let env: Vec<String> = spec
            .get_env()
            .iter()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect();
        assert_eq!(env, ["PATH=/usr/bin:/bin", "TMPDIR=/tmp/out", "LANG=C"]);
        assert_eq!(spec.workdir(), Path::new("/tmp/out"));
        assert!(
            spec.path_rules()
                .contains(&PathRule::new("/srv/src", Access::Read))
        );
        assert!(
            spec.path_rules()
                .iter()
                .any(|r| r.path == Path::new("/usr/bin") && r.access == Access::ReadExecute)
        );
        // Nothing in the default toolchain view is writable but /dev/null.
        for r in spec.path_rules() {
            if r.access == Access::ReadWrite {
                assert_eq!(r.path, Path::new("/dev/null"));
            }
        }
        assert_eq!(*spec.get_limits(), Limits::compile());
    }

    #[test]
    fn runtime_paths_are_read_only() {
        for r in runtime_paths() {
            assert_eq!(r.access, Access::Read, "{r:?}");
            assert!(!r.required);
        }
    }
}
