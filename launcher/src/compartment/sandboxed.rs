//! The `linux-sandbox` and `cheri-c18n` backends: the seam over the
//! `launcher-sandbox` crate.
//!
//! - A run is `SandboxSpec::run` of the measured executable: its private
//!   working folder read-write, the runtime libraries read-only, the
//!   channel as fd 3, an empty environment but `ATTESTABLE_FD=3`, the run's
//!   limits (on CheriBSD also its c18n mechanism).
//! - A toolchain step is `SandboxSpec::compile`: the toolchain and system
//!   headers readable and executable, the given folders (the build's
//!   sources, the SDK) read-only, its output folder read-write and nothing
//!   else, with the build's time and memory limits.
//!
//! Every spawn leaves out the layers the operator allowed degraded, and
//! the child reports the layers as they were set up for it: that report is
//! what the run records.

use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use launcher_sandbox::{Backend, DisabledLayers, Layer, LayerName, SandboxSpec};

use super::c18n::C18nSetup;
use super::select::Planned;
use super::{
    BuildSteps, ChildProcess, Compartment, CompartmentInfo, Executable, Limits, OutputMode, Role,
    SpawnError, SpawnSpec,
};

/// The confined backend of this platform.
#[derive(Debug)]
pub struct Sandboxed {
    backend: Backend,
    layers: Vec<Layer>,
    disabled: DisabledLayers,
    degraded: Vec<LayerName>,
    refusal: Option<String>,
    c18n: Option<C18nSetup>,
}

impl Sandboxed {
    pub fn new(
        backend: Backend,
        planned: Planned,
        degraded: Vec<LayerName>,
        c18n: Option<C18nSetup>,
    ) -> Self {
        Sandboxed {
            backend,
            layers: planned.layers,
            disabled: planned.disabled,
            degraded,
            refusal: planned.refusal,
            c18n,
        }
    }

    fn info(&self, layers: &[Layer]) -> CompartmentInfo {
        CompartmentInfo {
            backend: self.backend.as_str().to_owned(),
            layers: layers.iter().map(Into::into).collect(),
            degraded: self
                .degraded
                .iter()
                .map(|l| l.as_str().to_owned())
                .collect(),
            insecure: false,
        }
    }

    fn run_spec(
        &self,
        executable: Executable,
        argv: &[String],
        cwd: std::path::PathBuf,
    ) -> Result<SandboxSpec, SpawnError> {
        let Executable::Measured(exe) = executable else {
            return Err(SpawnError::Invalid(
                "a sandboxed run executes a measured executable only".into(),
            ));
        };
        #[cfg(target_os = "freebsd")]
        let cheri = match &self.c18n {
            Some(setup) if !self.disabled.contains(LayerName::C18n) => {
                let report = super::c18n::elfctl_report(setup.mechanism, exe.source_path())
                    .map_err(SpawnError::Invalid)?;
                Some(setup.run(report))
            }
            _ => None,
        };
        let mut spec = SandboxSpec::run(exe, cwd).args(argv.iter().skip(1));
        if let Some(arg0) = argv.first() {
            spec = spec.argv0(arg0);
        }
        #[cfg(target_os = "freebsd")]
        if let Some(run) = cheri {
            spec = spec.cheri(run);
        }
        Ok(spec)
    }
}

impl Compartment for Sandboxed {
    fn describe(&self) -> CompartmentInfo {
        self.info(&self.layers)
    }

    fn refusal(&self) -> Option<String> {
        self.refusal.clone()
    }

    fn build_steps(&self) -> BuildSteps {
        match &self.c18n {
            Some(setup) if !self.disabled.contains(LayerName::C18n) => setup.build_steps(),
            _ => BuildSteps::default(),
        }
    }

    fn spawn(&self, spec: SpawnSpec) -> Result<ChildProcess, SpawnError> {
        if let Some(refusal) = &self.refusal {
            return Err(SpawnError::Invalid(refusal.clone()));
        }
        let SpawnSpec {
            role,
            executable,
            argv,
            env,
            cwd,
            limits,
            channel,
            output,
        } = spec;
        let program = argv.first().cloned().unwrap_or_default();
        if env.iter().any(|(k, _)| k == "ATTESTABLE_FD") {
            return Err(SpawnError::Invalid(
                "ATTESTABLE_FD is set by the backend, not the caller".into(),
            ));
        }
        let mut sandbox = match role {
            Role::Run => {
                let mut spec = self.run_spec(executable, &argv, cwd)?;
                for (k, v) in env {
                    spec = spec.env(k, v);
                }
                spec.limits(sandbox_limits(&limits))
            }
            Role::Build {
                output_dir,
                read_only,
            } => {
                let Executable::Path(compiler) = executable else {
                    return Err(SpawnError::Invalid(
                        "a confined toolchain step is executed by path".into(),
                    ));
                };
                if cwd != output_dir {
                    return Err(SpawnError::Invalid(format!(
                        "a confined toolchain step runs in its output folder {}, not {}",
                        output_dir.display(),
                        cwd.display()
                    )));
                }
                let mut spec =
                    SandboxSpec::compile(&compiler, output_dir).args(argv.iter().skip(1));
                if let Some(arg0) = argv.first() {
                    spec = spec.argv0(arg0);
                }
                for dir in read_only {
                    spec = spec.read_only(dir);
                }
                for path in script_interpreters(&compiler) {
                    spec = spec.read_execute(path);
                }
                // The compile spec's own PATH, TMPDIR and LANG stay: the
                // toolchain sees /usr/bin:/bin, whatever the launcher's PATH.
                for (k, v) in env {
                    if !spec.get_env().iter().any(|(have, _)| *have == *k) {
                        spec = spec.env(k, v);
                    }
                }
                spec.limits(sandbox_limits(&limits))
            }
        };
        sandbox = sandbox.disabled_layers(self.disabled.clone());
        if let Some(channel) = channel {
            sandbox = sandbox.channel(channel);
        }
        let io_err = |source| SpawnError::Io {
            program: program.clone(),
            source,
        };
        let (stdout_read, stderr_read) = match output {
            OutputMode::Separate => {
                let (out_r, out_w) = pipe().map_err(io_err)?;
                let (err_r, err_w) = pipe().map_err(io_err)?;
                sandbox = sandbox.stdout(out_w).stderr(err_w);
                (out_r, Some(err_r))
            }
            OutputMode::Merged => {
                let (r, w) = pipe().map_err(io_err)?;
                let w2 = w.try_clone().map_err(io_err)?;
                sandbox = sandbox.stdout(w).stderr(w2);
                (r, None)
            }
        };
        // The spec (and with it our copies of the write ends and the
        // channel) is consumed here, so end-of-file arrives when the
        // sandbox is gone.
        let child = launcher_sandbox::spawn(sandbox).map_err(|source| SpawnError::Sandbox {
            program: program.clone(),
            source,
        })?;
        let info = self.info(child.layers());
        ChildProcess::sandboxed(child, Some(stdout_read), stderr_read, info).map_err(io_err)
    }
}

/// The launcher's limits as the sandbox's, which must all be set: an
/// unlimited (`None`) value becomes the launcher's own hard limit (a child
/// in a user namespace cannot raise it), within the range the sandbox
/// accepts.
pub fn sandbox_limits(limits: &Limits) -> launcher_sandbox::Limits {
    launcher_sandbox::Limits {
        address_space_bytes: limits
            .address_space_bytes
            .unwrap_or_else(|| own_hard_limit(libc::RLIMIT_AS, 1 << 40)),
        cpu_seconds: limits
            .cpu_seconds
            .unwrap_or_else(|| own_hard_limit(libc::RLIMIT_CPU, 24 * 3600)),
        open_files: limits
            .open_files
            .unwrap_or_else(|| own_hard_limit(libc::RLIMIT_NOFILE, 65_536)),
        processes: limits
            .processes
            .unwrap_or_else(|| own_hard_limit(libc::RLIMIT_NPROC, 4096)),
        file_size_bytes: limits
            .file_size_bytes
            .unwrap_or_else(|| own_hard_limit(libc::RLIMIT_FSIZE, 1 << 40)),
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type Resource = libc::c_int;

/// This process's hard limit for `resource`, at most `ceiling` (the
/// sandbox's maximum for it).
fn own_hard_limit(resource: Resource, ceiling: u64) -> u64 {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills a local struct.
    let rc = unsafe { libc::getrlimit(resource, &mut current) };
    if rc != 0 {
        return ceiling;
    }
    // rlim_t is u64 on Linux and FreeBSD (RLIM_INFINITY is its maximum).
    #[allow(clippy::useless_conversion)]
    let max = u64::try_from(current.rlim_max).unwrap_or(u64::MAX);
    max.min(ceiling)
}

/// For a compiler that is a script (`#!/bin/sh`, as wrappers often are):
/// its interpreter and that interpreter's own ELF loader, which the kernel
/// executes on its behalf. The sandbox adds the loader of an ELF compiler
/// itself; a script's chain it cannot see.
fn script_interpreters(compiler: &Path) -> Vec<PathBuf> {
    let head = |path: &Path, len: usize| -> Option<Vec<u8>> {
        let mut bytes = Vec::with_capacity(len);
        std::fs::File::open(path)
            .ok()?
            .take(len as u64)
            .read_to_end(&mut bytes)
            .ok()?;
        Some(bytes)
    };
    let Some(start) = head(compiler, 256) else {
        return Vec::new();
    };
    let Some(line) = start.strip_prefix(b"#!") else {
        return Vec::new();
    };
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let Some(interpreter) = String::from_utf8_lossy(line)
        .split_whitespace()
        .next()
        .map(PathBuf::from)
    else {
        return Vec::new();
    };
    let mut paths = vec![interpreter.clone()];
    if let Some(loader) = head(&interpreter, launcher_sandbox::elf::HEADER_WINDOW)
        .and_then(|h| launcher_sandbox::elf::ElfInfo::parse(&h).ok())
        .and_then(|elf| elf.interpreter)
    {
        paths.push(PathBuf::from(loader));
    }
    paths
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `pipe2` fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are fresh descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A sandboxed backend for tests, with every layer as `probed`.
#[cfg(test)]
pub(crate) fn for_tests(
    probed: Vec<Layer>,
    degraded: &[LayerName],
) -> std::sync::Arc<dyn Compartment> {
    let planned = super::select::plan(&probed, degraded);
    std::sync::Arc::new(Sandboxed::new(
        Backend::LinuxSandbox,
        planned,
        degraded.to_vec(),
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_values_become_the_launchers_own_hard_limit() {
        let limits = Limits {
            address_space_bytes: Some(1 << 30),
            cpu_seconds: Some(3),
            open_files: None,
            processes: Some(16),
            file_size_bytes: None,
            wall_seconds: 2,
        };
        let l = sandbox_limits(&limits);
        assert_eq!(l.address_space_bytes, 1 << 30);
        assert_eq!(l.cpu_seconds, 3);
        assert_eq!(l.processes, 16);
        assert_eq!(l.open_files, own_hard_limit(libc::RLIMIT_NOFILE, 65_536));
        assert!(l.open_files >= 4 && l.open_files <= 65_536);
        assert!(l.file_size_bytes <= 1 << 40);
        l.validate().unwrap();
    }

    #[test]
    fn a_script_compiler_brings_its_interpreter_and_loader() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("cc-wrapper");
        std::fs::write(&script, "#!/bin/sh -e\nexec cc \"$@\"\n").unwrap();
        let paths = script_interpreters(&script);
        assert_eq!(paths[0], Path::new("/bin/sh"));
        if cfg!(target_os = "linux") {
            assert_eq!(paths.len(), 2, "{paths:?}");
            assert!(paths[1].display().to_string().contains("ld-"), "{paths:?}");
        }
        std::fs::write(&script, b"\x7fELF").unwrap();
        assert!(script_interpreters(&script).is_empty());
        assert!(script_interpreters(&dir.path().join("absent")).is_empty());
    }

    #[test]
    fn a_refusing_backend_spawns_nothing() {
        let probed = vec![
            Layer::active(LayerName::Namespaces, "x"),
            Layer::active(LayerName::NoNewPrivs, "x"),
            Layer::unavailable(LayerName::Landlock, "no Landlock"),
            Layer::active(LayerName::Seccomp, "x"),
            Layer::active(LayerName::Rlimits, "x"),
        ];
        let compartment = for_tests(probed.clone(), &[]);
        let refusal = compartment.refusal().unwrap();
        assert!(refusal.starts_with("landlock: no Landlock."), "{refusal}");
        let spec = SpawnSpec {
            role: Role::Run,
            executable: Executable::Path("/bin/true".into()),
            argv: vec!["true".into()],
            env: vec![],
            cwd: "/tmp".into(),
            limits: Limits {
                address_space_bytes: None,
                cpu_seconds: None,
                open_files: None,
                processes: None,
                file_size_bytes: None,
                wall_seconds: 1,
            },
            channel: None,
            output: OutputMode::Separate,
        };
        let err = compartment.spawn(spec).unwrap_err();
        assert!(err.to_string().contains("landlock: no Landlock"), "{err}");
        let described = compartment.describe();
        assert_eq!(described.backend, "linux-sandbox");
        assert!(!described.insecure);
        assert!(
            for_tests(probed, &[LayerName::Landlock])
                .refusal()
                .is_none()
        );
    }
}
