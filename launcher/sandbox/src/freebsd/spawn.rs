//! `fork` + `fexecve` of the measured descriptor, with rlimits, an empty
//! environment, fds 0-3 only, and (for a root launcher) the `nobody` user.
//! Like the Linux child, the forked child only makes system calls on data
//! prepared before the fork, and reports a failure through a pipe.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use super::process::Process;
use super::sysctl;
use crate::cheri::{self, c18n};
use crate::child::SandboxedChild;
use crate::child_fds::ChildFds;
use crate::error::SpawnError;
use crate::layers::{Backend, Layer, LayerName};
use crate::spec::{CHANNEL_FD, Program, SandboxSpec};

/// Fixed numbers for what the child needs after its dup2 calls: the
/// executable and the error pipe. Everything from `FIRST_CLOSED` up is
/// closed before exec.
const EXE_FD: i32 = 4;
const ERR_FD: i32 = 5;
const FIRST_CLOSED: i32 = 6;

/// Failure stages reported by the child (fixed values: they cross the pipe).
const STAGES: [&str; 9] = [
    "setsid",
    "dup2",
    "chdir",
    "setrlimit",
    "procctl(PROC_CHERI_C18N_CTL)",
    "setgroups",
    "setgid",
    "setuid",
    "exec",
];

fn high(fd: BorrowedFd<'_>, step: &'static str) -> Result<OwnedFd, SpawnError> {
    crate::child_fds::dup_at_least(fd, FIRST_CLOSED, step)
}

fn cstring(what: &str, b: &[u8]) -> Result<CString, SpawnError> {
    CString::new(b).map_err(|_| SpawnError::InvalidSpec(format!("{what} contains a NUL byte")))
}

pub(crate) fn spawn(spec: SandboxSpec) -> Result<SandboxedChild, SpawnError> {
    let program_path = match &spec.program {
        Program::Path(p) => Some(p.clone()),
        Program::Measured(_) => None,
    };
    let SandboxSpec {
        program,
        argv,
        env,
        workdir,
        paths: _,
        channel,
        stdout,
        stderr,
        limits,
        disabled,
        outer_id,
        cheri,
    } = spec;
    for (layer, _) in disabled.iter() {
        if !Backend::CheriC18n.layers().contains(&layer) {
            return Err(SpawnError::LayerNotOnPlatform {
                layer,
                available: "purecap, c18n, capsicum, rlimits".into(),
            });
        }
    }
    limits.validate()?;
    // SAFETY: no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    crate::workdir::prepare(&workdir, root.then_some(outer_id))?;
    if argv.is_empty() {
        return Err(SpawnError::InvalidSpec("argv is empty".into()));
    }
    let (layers, exe) = match program {
        Program::Measured(exe) => {
            let layers = cheri::plan_layers(
                exe.elf(),
                cheri.as_ref(),
                &limits,
                &disabled,
                sysctl::capsicum_supported(),
            )?;
            (layers, Some(exe))
        }
        // A confined compile: the toolchain (cc wrapper, elfctl) is neither
        // purecap-checked nor compartmentalised, and CheriBSD offers no
        // unprivileged file-system confinement like Landlock; it gets the
        // rlimits, the empty environment and the nobody user only.
        Program::Path(_) => (
            vec![
                Layer::disabled(LayerName::Purecap, "compile: not applicable"),
                Layer::disabled(LayerName::C18n, "compile: not applicable"),
                Layer::disabled(
                    LayerName::Capsicum,
                    "compile: the toolchain does not enter capability mode",
                ),
                match disabled.reason(LayerName::Rlimits) {
                    Some(r) => Layer::disabled(LayerName::Rlimits, r),
                    None => Layer::active(LayerName::Rlimits, limits.describe()),
                },
            ],
            None,
        ),
    };
    // Only a measured run is compartmentalised (see the layers above).
    let c18n_on = exe.is_some() && !disabled.contains(LayerName::C18n);
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    if let (true, Some(run)) = (c18n_on, &cheri) {
        env.extend(run.mechanism.run_environment(run.library_path.as_deref()));
        c18n::check_environment(
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            run.mechanism,
        )
        .map_err(|e| SpawnError::InvalidSpec(e.to_string()))?;
    }
    let procctl = c18n_on && cheri.as_ref().is_some_and(|r| r.mechanism.needs_procctl());

    let argv_c = argv
        .iter()
        .map(|a| cstring("argument", a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let envp_c = env
        .iter()
        .map(|(k, v)| cstring("environment", format!("{k}={v}").as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut argv_p: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp_c.iter().map(|c| c.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    let workdir_c = cstring("working folder", workdir.as_os_str().as_bytes())?;

    let ChildFds {
        stdin,
        stdout,
        stderr,
        channel,
    } = ChildFds::prepare(
        stdout.as_ref(),
        stderr.as_ref(),
        channel.as_ref(),
        FIRST_CLOSED,
    )?;
    let (exe_fd, exe_path) = match (&exe, &program_path) {
        (Some(exe), _) => (Some(high(exe.as_fd(), "executable")?), None),
        (None, Some(p)) => (
            None,
            Some(cstring("program path", p.as_os_str().as_bytes())?),
        ),
        (None, None) => return Err(SpawnError::InvalidSpec("nothing to execute".into())),
    };
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(SpawnError::prepare("error pipe")(io::Error::last_os_error()));
    }
    // SAFETY: pipe2 returned two new descriptors we own.
    let (err_r, err_w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let err_w = high(err_w.as_fd(), "error pipe")?;
    let rlimits = (!disabled.contains(LayerName::Rlimits))
        .then(|| limits.rlimits().map(|(r, v)| (r.raw(), v)));

    // SAFETY: fork; the child runs only `child` below, which makes system
    // calls on the data prepared above and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SpawnError::Start {
            step: "fork",
            source: io::Error::last_os_error(),
        });
    }
    if pid == 0 {
        // SAFETY: in the fresh child.
        unsafe {
            child(&Child {
                stdin: stdin.as_raw_fd(),
                stdout: stdout.as_raw_fd(),
                stderr: stderr.as_raw_fd(),
                channel: channel.as_ref().map(|c| c.as_raw_fd()),
                exe: exe_fd.as_ref().map(|f| f.as_raw_fd()),
                path: exe_path.as_ref(),
                err: err_w.as_raw_fd(),
                workdir: &workdir_c,
                rlimits: rlimits.as_ref(),
                procctl,
                identity: root.then_some(outer_id),
                argv: argv_p.as_ptr(),
                envp: envp_p.as_ptr(),
            })
        }
    }
    drop(err_w);
    let child = SandboxedChild::new(Process::new(pid), layers, limits);
    let mut report = [0u8; 8];
    let mut f = std::fs::File::from(err_r);
    let mut n = 0;
    while n < report.len() {
        match f.read(&mut report[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(SpawnError::Start {
                    step: "reading the child's set-up report",
                    source: e,
                });
            }
        }
    }
    if n == 0 {
        return Ok(child);
    }
    let stage = u32::from_ne_bytes([report[0], report[1], report[2], report[3]]) as usize;
    let errno = i32::from_ne_bytes([report[4], report[5], report[6], report[7]]);
    let name = STAGES.get(stage).copied().unwrap_or("unknown stage");
    let layer = match stage {
        3 => Some(LayerName::Rlimits),
        4 => Some(LayerName::C18n),
        _ => None,
    };
    Err(SpawnError::ChildSetup {
        stage: name.to_owned(),
        layer,
        source: io::Error::from_raw_os_error(errno),
    })
}

struct Child<'a> {
    stdin: i32,
    stdout: i32,
    stderr: i32,
    channel: Option<i32>,
    exe: Option<i32>,
    path: Option<&'a CString>,
    err: i32,
    workdir: &'a CString,
    rlimits: Option<&'a [(i32, u64); 6]>,
    procctl: bool,
    identity: Option<u32>,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
}

/// # Safety
/// Only in a freshly forked child.
unsafe fn child(c: &Child<'_>) -> ! {
    unsafe fn fail(err: i32, stage: u32) -> ! {
        // SAFETY: async-signal-safe calls on stack data.
        unsafe {
            let errno = *libc::__error();
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&stage.to_ne_bytes());
            b[4..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(err, b.as_ptr().cast(), b.len());
            libc::_exit(127)
        }
    }
    // SAFETY (whole block): async-signal-safe system calls only.
    unsafe {
        // Rust ignores SIGPIPE; an ignored signal survives exec.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const empty, std::ptr::null_mut());
        let err = ERR_FD;
        if libc::dup2(c.err, ERR_FD) < 0 {
            fail(c.err, 1);
        }
        libc::fcntl(ERR_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        if libc::setsid() < 0 {
            fail(err, 0);
        }
        for (src, dst) in [(c.stdin, 0), (c.stdout, 1), (c.stderr, 2)] {
            if libc::dup2(src, dst) < 0 {
                fail(err, 1);
            }
        }
        match c.channel {
            Some(ch) => {
                if libc::dup2(ch, CHANNEL_FD) < 0 {
                    fail(err, 1);
                }
            }
            None => {
                libc::close(CHANNEL_FD);
            }
        }
        if let Some(exe) = c.exe {
            if libc::dup2(exe, EXE_FD) < 0 {
                fail(err, 1);
            }
            libc::fcntl(EXE_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        libc::closefrom(FIRST_CLOSED);
        if libc::chdir(c.workdir.as_ptr()) < 0 {
            fail(err, 2);
        }
        if let Some(limits) = c.rlimits {
            for (resource, value) in limits {
                let lim = libc::rlimit {
                    rlim_cur: *value as libc::rlim_t,
                    rlim_max: *value as libc::rlim_t,
                };
                if libc::setrlimit(*resource, &lim) < 0 {
                    fail(err, 3);
                }
            }
        }
        if c.procctl {
            let mut arg: libc::c_int = c18n::PROC_CHERI_C18N_ENABLE;
            if libc::procctl(
                libc::P_PID,
                0,
                c18n::PROC_CHERI_C18N_CTL,
                (&raw mut arg).cast(),
            ) < 0
            {
                fail(err, 4);
            }
        }
        if let Some(id) = c.identity {
            if libc::setgroups(0, std::ptr::null()) < 0 {
                fail(err, 5);
            }
            if libc::setgid(id as libc::gid_t) < 0 {
                fail(err, 6);
            }
            if libc::setuid(id as libc::uid_t) < 0 {
                fail(err, 7);
            }
        }
        match c.path {
            Some(path) => {
                libc::execve(path.as_ptr(), c.argv, c.envp);
            }
            None => {
                libc::fexecve(EXE_FD, c.argv, c.envp);
            }
        }
        fail(err, 8)
    }
}
