//! The `none` backend: a plain child process with the launcher's baseline
//! hygiene and nothing more. Own process group, rlimits, an environment that
//! holds only what the spec lists, stdin `/dev/null`, output on pipes, the
//! channel as fd 3, and every other descriptor closed at exec.
//!
//! It does not isolate the program from the host (no namespaces, no
//! filesystem or system-call restrictions), and says so in [`describe`]
//! (`insecure: true`). The launcher uses it only when started with
//! `--insecure-no-compartment`.
//!
//! [`describe`]: Compartment::describe

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::{
    ChildProcess, Compartment, CompartmentInfo, Executable, Layer, LayerStatus, Limits, OutputMode,
    SpawnError, SpawnSpec,
};

/// The fd number the channel gets in the child (see docs/PROTOCOL.md).
pub const CHANNEL_FD: RawFd = 3;

#[derive(Debug, Default, Clone, Copy)]
pub struct Unconfined;

impl Compartment for Unconfined {
    fn describe(&self) -> CompartmentInfo {
        let layer = |name: &str, status, detail: &str| Layer {
            name: name.into(),
            status,
            detail: detail.into(),
        };
        let none = "the unconfined backend does not provide this layer";
        CompartmentInfo {
            backend: "none".into(),
            layers: vec![
                layer(
                    "rlimits",
                    LayerStatus::Active,
                    "address space, CPU time, open files, processes, file size; core dumps off",
                ),
                layer(
                    "process_group",
                    LayerStatus::Active,
                    "own process group, killed as a whole when the run ends",
                ),
                layer(
                    "environment",
                    LayerStatus::Active,
                    "empty except ATTESTABLE_FD=3; stdin /dev/null; fds other than 0-3 closed",
                ),
                layer("namespaces", LayerStatus::Disabled, none),
                layer("no_new_privs", LayerStatus::Disabled, none),
                layer("landlock", LayerStatus::Disabled, none),
                layer("seccomp", LayerStatus::Disabled, none),
            ],
            degraded: Vec::new(),
            insecure: true,
        }
    }

    fn spawn(&self, spec: SpawnSpec) -> Result<ChildProcess, SpawnError> {
        spawn(spec)
    }
}

/// Arguments for `fexecve`, prepared before `fork` (the child may not allocate).
struct FdExec {
    fd: OwnedFd,
    _strings: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

// SAFETY: the pointers point into `_strings`, owned by the same value and
// never mutated; the value is only read, in the forked child.
unsafe impl Send for FdExec {}
// SAFETY: as above.
unsafe impl Sync for FdExec {}

impl FdExec {
    fn new(fd: OwnedFd, argv: &[String], env: &[(String, String)]) -> Result<Self, SpawnError> {
        let cstr = |s: String| {
            CString::new(s)
                .map_err(|_| SpawnError::Invalid("argv and environment may not contain NUL".into()))
        };
        let mut strings = Vec::new();
        for arg in argv {
            strings.push(cstr(arg.clone())?);
        }
        let argc = strings.len();
        for (key, value) in env {
            strings.push(cstr(format!("{key}={value}"))?);
        }
        let mut argv: Vec<_> = strings[..argc].iter().map(|s| s.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<_> = strings[argc..].iter().map(|s| s.as_ptr()).collect();
        envp.push(std::ptr::null());
        Ok(Self {
            fd: raise_fd(fd)?,
            _strings: strings,
            argv,
            envp,
        })
    }
}

fn spawn(spec: SpawnSpec) -> Result<ChildProcess, SpawnError> {
    let SpawnSpec {
        role: _,
        executable,
        argv,
        mut env,
        cwd,
        limits,
        channel,
        output,
    } = spec;
    let Some(argv0) = argv.first().cloned() else {
        return Err(SpawnError::Invalid("argv is empty".into()));
    };
    let io_err = |source| SpawnError::Io {
        program: argv0.clone(),
        source,
    };
    if env.iter().any(|(k, _)| k == "ATTESTABLE_FD") {
        return Err(SpawnError::Invalid(
            "ATTESTABLE_FD is set by the backend, not the caller".into(),
        ));
    }
    let channel = channel.map(raise_fd).transpose()?;
    if channel.is_some() {
        env.push(("ATTESTABLE_FD".into(), CHANNEL_FD.to_string()));
    }

    let (path, fd) = match executable {
        Executable::Path(path) => (Some(path), None),
        Executable::Fd(fd) => (None, Some(fd)),
        // The measured copy runs through a duplicate of its descriptor.
        Executable::Measured(exe) => (
            None,
            Some(exe.as_fd().try_clone_to_owned().map_err(&io_err)?),
        ),
    };
    let (mut command, exec) = match path {
        Some(path) => (Command::new(path), None),
        None => (
            // Never executed: `child_setup` replaces the process with `fexecve`.
            Command::new("/nonexistent/fexecve"),
            fd.map(|fd| FdExec::new(fd, &argv, &env)).transpose()?,
        ),
    };
    command
        .arg0(&argv0)
        .args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .process_group(0);
    let merged = match output {
        OutputMode::Separate => {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
            None
        }
        OutputMode::Merged => {
            let (reader, writer) = pipe().map_err(io_err)?;
            let writer2 = writer.try_clone().map_err(io_err)?;
            command
                .stdout(Stdio::from(writer))
                .stderr(Stdio::from(writer2));
            Some(reader)
        }
    };
    let channel_fd = channel.as_ref().map(|fd| fd.as_raw_fd());
    let launcher = std::process::id() as libc::pid_t;
    // SAFETY: `child_setup` makes only async-signal-safe calls and does not allocate.
    unsafe {
        command.pre_exec(move || child_setup(launcher, channel_fd, &limits, exec.as_ref()));
    }
    // Our copies of the child's pipe ends close with `command` once it has
    // forked, and the channel's here, so end-of-file arrives when the child
    // (and its group) is gone.
    let child = spawner::spawn(command).map_err(io_err)?;
    drop(channel);
    ChildProcess::adopt(child, merged, Unconfined.describe()).map_err(io_err)
}

/// A close-on-exec pipe: (read end, write end). Created close-on-exec
/// atomically, so a concurrent fork elsewhere cannot inherit it.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `pipe2` fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are fresh descriptors owned by nobody else.
    Ok(unsafe {
        (
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[0]),
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[1]),
        )
    })
}

/// Moves a descriptor above 3 so that placing the channel on fd 3 in the
/// child cannot clobber it.
fn raise_fd(fd: OwnedFd) -> Result<OwnedFd, SpawnError> {
    if fd.as_raw_fd() > CHANNEL_FD {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we then own.
    let raised = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, CHANNEL_FD + 1) };
    if raised < 0 {
        return Err(SpawnError::Io {
            program: "fcntl".into(),
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: `raised` is a fresh descriptor owned by nobody else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raised) })
}

/// The thread every unconfined child is forked from.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
/// not the process: forking from whatever thread calls `spawn` (a tokio
/// blocking-pool thread retires after 10 s idle) would kill children at
/// random. One thread that lives as long as the launcher makes the signal
/// mean "the launcher died" (as `launcher-sandbox`'s spawner does).
mod spawner {
    use std::io;
    use std::process::{Child, Command};
    use std::sync::Mutex;
    use std::sync::mpsc::{self, Sender, SyncSender};

    type Job = (Command, SyncSender<io::Result<Child>>);

    pub(super) fn spawn(command: Command) -> io::Result<Child> {
        static SPAWNER: Mutex<Option<Sender<Job>>> = Mutex::new(None);
        let tx = {
            let mut slot = SPAWNER.lock().unwrap_or_else(|p| p.into_inner());
            match &*slot {
                Some(tx) => tx.clone(),
                None => {
                    let (tx, rx) = mpsc::channel::<Job>();
                    std::thread::Builder::new()
                        .name("unconfined-spawner".into())
                        .spawn(move || {
                            for (mut command, reply) in rx {
                                let child = command.spawn();
                                // Closes the parent's copies of the child's descriptors.
                                drop(command);
                                // The caller may have given up; nothing else to do.
                                let _ = reply.send(child);
                            }
                        })?;
                    *slot = Some(tx.clone());
                    tx
                }
            }
        };
        let (reply, answer) = mpsc::sync_channel(1);
        tx.send((command, reply))
            .map_err(|_| io::Error::other("the spawner thread is gone"))?;
        answer
            .recv()
            .map_err(|_| io::Error::other("the spawner thread is gone"))?
    }
}

/// Runs in the forked child before exec. Only async-signal-safe calls.
fn child_setup(
    launcher: libc::pid_t,
    channel: Option<RawFd>,
    limits: &Limits,
    exec: Option<&FdExec>,
) -> io::Result<()> {
    die_with(launcher)?;
    let first_to_close = match channel {
        Some(fd) => {
            // SAFETY: plain syscall; `fd` is open (raised above 3 by the parent).
            if unsafe { libc::dup2(fd, CHANNEL_FD) } < 0 {
                return Err(io::Error::last_os_error());
            }
            CHANNEL_FD + 1
        }
        None => CHANNEL_FD,
    };
    close_from(first_to_close)?;
    apply_limits(limits)?;
    if let Some(exec) = exec {
        // SAFETY: argv and envp are NUL-terminated arrays of C strings kept alive by `exec`.
        unsafe { libc::fexecve(exec.fd.as_raw_fd(), exec.argv.as_ptr(), exec.envp.as_ptr()) };
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the kernel kill the child when the launcher dies, even by SIGKILL:
/// nothing else would stop it then (it is not in a PID namespace).
#[cfg(target_os = "linux")]
fn die_with(launcher: libc::pid_t) -> io::Result<()> {
    // SAFETY: plain syscalls.
    unsafe {
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        // The launcher died between fork and prctl: the signal will never
        // come. (No allocation here: ESRCH, "no such process".)
        if libc::getppid() != launcher {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn die_with(_launcher: libc::pid_t) -> io::Result<()> {
    Ok(())
}

/// Marks every descriptor from `first` up close-on-exec. (Closing them
/// outright would also close the pipe std uses to report an exec failure.)
fn close_from(first: RawFd) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscall.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if rc == 0 {
            return Ok(());
        }
    }
    // Portable fallback: every descriptor below the limit.
    // SAFETY: plain libc calls.
    let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
    let max = if max <= 0 {
        65_536
    } else {
        max.min(1 << 20) as RawFd
    };
    for fd in first..max {
        // SAFETY: F_SETFD on a closed descriptor just fails with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

fn apply_limits(limits: &Limits) -> io::Result<()> {
    set_limit(libc::RLIMIT_CORE, 0, 0)?;
    if let Some(v) = limits.address_space_bytes {
        set_limit(libc::RLIMIT_AS, v, v)?;
    }
    if let Some(v) = limits.cpu_seconds {
        // The soft limit sends SIGXCPU, the hard one a second later SIGKILL.
        set_limit(libc::RLIMIT_CPU, v, v.saturating_add(1))?;
    }
    if let Some(v) = limits.open_files {
        set_limit(libc::RLIMIT_NOFILE, v, v)?;
    }
    if let Some(v) = limits.processes {
        set_limit(libc::RLIMIT_NPROC, v, v)?;
    }
    if let Some(v) = limits.file_size_bytes {
        set_limit(libc::RLIMIT_FSIZE, v, v)?;
    }
    Ok(())
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type Resource = libc::c_int;

fn set_limit(resource: Resource, soft: u64, hard: u64) -> io::Result<()> {
    // Never raise a limit the launcher itself runs under.
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    if unsafe { libc::getrlimit(resource, &mut current) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let cap = |v: u64| (v as libc::rlim_t).min(current.rlim_max);
    let new = libc::rlimit {
        rlim_cur: cap(soft.min(hard)),
        rlim_max: cap(hard),
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(resource, &new) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `Path` form of a program name: absolute or relative paths are kept, a bare
/// name is looked up in `path_var` (a `PATH`-style list).
pub fn resolve_program(name: &str, path_var: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.as_bytes().contains(&b'/') {
        let path = std::path::PathBuf::from(name);
        return is_exec(&path).then_some(path);
    }
    std::env::split_paths(std::ffi::OsStr::from_bytes(path_var.as_bytes()))
        .map(|dir| dir.join(name))
        .find(|p| is_exec(p))
}

#[cfg(test)]
mod tests;
