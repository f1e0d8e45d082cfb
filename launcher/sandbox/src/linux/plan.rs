//! Everything the child needs, prepared in the parent before clone: C
//! strings, descriptors at safe numbers, the Landlock ruleset, the seccomp
//! program, the rlimits and the identity. After clone the child only reads
//! this structure and makes system calls.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use seccompiler::sock_filter;

use super::{dac, landlock_rules, seccomp_filter};
use crate::child_fds::ChildFds;
use crate::elf::{ElfInfo, HEADER_WINDOW};
use crate::error::SpawnError;
use crate::layers::{Layer, LayerName};
use crate::limits::Limits;
use crate::measured::MeasuredExecutable;
use crate::spec::{Access, CHANNEL_FD, INSIDE_ID, PathRule, Program, SandboxSpec};

/// The lowest number a descriptor the child still needs after its dup2
/// calls may have: 0-3 are overwritten.
const FIRST_FREE_FD: RawFd = CHANNEL_FD + 1;

/// A NULL-terminated array of C strings, as `execve` wants it.
pub(crate) struct CStringArray {
    _strings: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

// SAFETY: the pointers point into the heap buffers of `_strings`, which the
// struct owns and never mutates; moving the struct does not move them.
unsafe impl Send for CStringArray {}

impl CStringArray {
    fn new(items: Vec<CString>) -> Self {
        let mut ptrs: Vec<*const libc::c_char> = items.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CStringArray {
            _strings: items,
            ptrs,
        }
    }

    pub(crate) fn as_ptr(&self) -> *const *const libc::c_char {
        self.ptrs.as_ptr()
    }
}

/// What the child finally executes.
pub(crate) enum ExecTarget {
    /// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)` on a sealed memfd.
    Fd(OwnedFd),
    /// `execve(path, argv, envp)`.
    Path(CString),
    /// Set everything up, then `_exit(0)` instead of executing: the probe.
    Probe,
}

/// Who the sandbox runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Drop supplementary groups (not possible when an unprivileged parent
    /// had to write "deny" to /proc/<pid>/setgroups).
    pub setgroups: bool,
    pub uid: u32,
    pub gid: u32,
}

/// How the parent maps the child's user namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdMaps {
    pub uid_map: String,
    pub gid_map: String,
    /// Write "deny" to setgroups first (required of an unprivileged parent).
    pub deny_setgroups: bool,
}

pub(crate) struct ChildPlan {
    pub exec: ExecTarget,
    pub argv: CStringArray,
    pub envp: CStringArray,
    pub workdir: CString,
    pub hostname: &'static [u8],
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub channel: Option<OwnedFd>,
    /// Child's end of the start signal: the parent writes one byte once
    /// the uid/gid maps are in place.
    pub sync_read: OwnedFd,
    /// Child's end of the error pipe (close-on-exec: EOF means exec).
    pub err_write: OwnedFd,
    pub namespaces: bool,
    pub no_new_privs: bool,
    pub landlock: Option<OwnedFd>,
    pub seccomp: Option<Vec<sock_filter>>,
    pub rlimits: Option<[(i32, u64); 6]>,
    pub identity: Option<Identity>,
    /// Kept alive until exec: its descriptor is `exec`'s source.
    pub _executable: Option<Arc<MeasuredExecutable>>,
}

/// The parent's ends of the two pipes.
pub(crate) struct ParentEnds {
    pub sync_write: OwnedFd,
    pub err_read: OwnedFd,
}

/// Everything spawn needs besides the plan itself.
pub(crate) struct Prepared {
    pub plan: ChildPlan,
    pub parent: ParentEnds,
    pub maps: Option<IdMaps>,
    pub layers: Vec<Layer>,
    pub limits: Limits,
    pub program_name: String,
}

fn cstring(what: &str, bytes: &[u8]) -> Result<CString, SpawnError> {
    CString::new(bytes).map_err(|_| {
        SpawnError::InvalidSpec(format!(
            "{what} contains a NUL byte: {:?}",
            String::from_utf8_lossy(bytes)
        ))
    })
}

/// Duplicates `fd` to a number >= 4, close-on-exec, so that the child's
/// dup2 onto 0-3 can never overwrite a descriptor it still needs.
fn above_stdio(fd: BorrowedFd<'_>, step: &'static str) -> Result<OwnedFd, SpawnError> {
    crate::child_fds::dup_at_least(fd, FIRST_FREE_FD, step)
}

fn pipe(step: &'static str) -> Result<(OwnedFd, OwnedFd), SpawnError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| SpawnError::prepare(step)(io::Error::from(e)))?;
    Ok((above_stdio(r.as_fd(), step)?, above_stdio(w.as_fd(), step)?))
}

pub(crate) fn euid() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() }
}

pub(crate) fn egid() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libc::getegid() }
}

/// The interpreter of the file at `path` (for a compiler run by path).
fn interpreter_of(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut buf = vec![0u8; HEADER_WINDOW];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    ElfInfo::parse(&buf[..n]).ok()?.interpreter
}

impl Prepared {
    /// Validates `spec` and prepares everything. `probe` replaces the exec
    /// with `_exit(0)`.
    pub(crate) fn new(spec: SandboxSpec, probe: bool) -> Result<Prepared, SpawnError> {
        let SandboxSpec {
            program,
            argv,
            env,
            workdir,
            mut paths,
            channel,
            stdout,
            stderr,
            limits,
            disabled,
            outer_id,
            cheri,
        } = spec;

        if cheri.is_some() {
            return Err(SpawnError::LayerNotOnPlatform {
                layer: LayerName::C18n,
                available: "namespaces, no_new_privs, landlock, seccomp, rlimits".into(),
            });
        }

        for (layer, _) in disabled.iter() {
            if !crate::Backend::LinuxSandbox.layers().contains(&layer) {
                return Err(SpawnError::LayerNotOnPlatform {
                    layer,
                    available: "namespaces, no_new_privs, landlock, seccomp, rlimits".into(),
                });
            }
        }
        let on = |l: LayerName| !disabled.contains(l);
        let off_reason = |l: LayerName| disabled.reason(l).unwrap_or("").to_owned();

        limits.validate()?;
        if argv.is_empty() {
            return Err(SpawnError::InvalidSpec("argv is empty".into()));
        }
        let argv_c = argv
            .iter()
            .map(|a| cstring("argument", a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut envp_c = Vec::with_capacity(env.len());
        for (k, v) in &env {
            if k.is_empty() || k.as_bytes().contains(&b'=') {
                return Err(SpawnError::InvalidSpec(format!(
                    "environment variable name {k:?} is empty or contains '='"
                )));
            }
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envp_c.push(cstring("environment variable", &kv)?);
        }

        let (exec, executable, program_name) = match program {
            Program::Measured(exe) => {
                let fd = if probe {
                    ExecTarget::Probe
                } else {
                    ExecTarget::Fd(above_stdio(exe.as_fd(), "duplicating the executable")?)
                };
                let name = format!(
                    "{} (sha256 {})",
                    exe.source_path().display(),
                    exe.sha256_hex()
                );
                (fd, Some(exe), name)
            }
            Program::Path(path) => {
                if let Some(interp) = interpreter_of(&path) {
                    paths.push(PathRule::new(interp, Access::ReadExecute));
                }
                let target = if probe {
                    ExecTarget::Probe
                } else {
                    ExecTarget::Path(cstring("program path", path.as_os_str().as_bytes())?)
                };
                (target, None, path.display().to_string())
            }
        };

        let root = euid() == 0;
        let namespaces = on(LayerName::Namespaces);
        // Who runs the program, and how the parent maps the namespace.
        let (identity, maps, id_text) = match (namespaces, root) {
            (true, true) => (
                Some(Identity {
                    setgroups: true,
                    uid: INSIDE_ID,
                    gid: INSIDE_ID,
                }),
                Some(IdMaps {
                    uid_map: format!("{INSIDE_ID} {outer_id} 1\n"),
                    gid_map: format!("{INSIDE_ID} {outer_id} 1\n"),
                    deny_setgroups: false,
                }),
                format!("uid/gid {INSIDE_ID} inside = {outer_id} outside, no supplementary groups"),
            ),
            (true, false) => (
                Some(Identity {
                    setgroups: false,
                    uid: INSIDE_ID,
                    gid: INSIDE_ID,
                }),
                Some(IdMaps {
                    uid_map: format!("{INSIDE_ID} {} 1\n", euid()),
                    gid_map: format!("{INSIDE_ID} {} 1\n", egid()),
                    deny_setgroups: true,
                }),
                format!(
                    "uid {INSIDE_ID} inside = {} outside (the launcher's own), gid {INSIDE_ID} = {}",
                    euid(),
                    egid()
                ),
            ),
            (false, true) => (
                Some(Identity {
                    setgroups: true,
                    uid: outer_id,
                    gid: outer_id,
                }),
                None,
                format!("uid/gid {outer_id}"),
            ),
            (false, false) => (None, None, format!("the launcher's uid {}", euid())),
        };
        // The uid the kernel checks file permissions against.
        let sandbox_uid = if root { outer_id } else { euid() };
        crate::workdir::prepare(&workdir, root.then_some(outer_id))?;
        if root {
            let rules: Vec<&PathRule> = paths.iter().filter(|r| r.required).collect();
            dac::check_reachable(&workdir, sandbox_uid, sandbox_uid, dac::Want::ReadWrite)?;
            for r in rules {
                let want = match r.access {
                    Access::Read => dac::Want::Read,
                    Access::ReadExecute => dac::Want::Read,
                    Access::ReadWrite => dac::Want::ReadWrite,
                };
                dac::check_reachable(&r.path, sandbox_uid, sandbox_uid, want)?;
            }
        }

        let mut layers = Vec::new();
        if namespaces {
            layers.push(Layer::active(
                LayerName::Namespaces,
                format!(
                    "user, mount (private), pid (program is PID 1), net (no interface but a down loopback), ipc, uts (hostname sandbox), cgroup; {id_text}"
                ),
            ));
        } else {
            layers.push(Layer::disabled(
                LayerName::Namespaces,
                format!("{}; runs as {id_text}", off_reason(LayerName::Namespaces)),
            ));
        }
        let no_new_privs = on(LayerName::NoNewPrivs);
        layers.push(if no_new_privs {
            Layer::active(
                LayerName::NoNewPrivs,
                "PR_SET_NO_NEW_PRIVS: execve cannot grant privileges (setuid, file capabilities)",
            )
        } else {
            Layer::disabled(LayerName::NoNewPrivs, off_reason(LayerName::NoNewPrivs))
        });

        let landlock = if on(LayerName::Landlock) {
            let built = landlock_rules::build(&workdir, &paths)?;
            layers.push(Layer::active(LayerName::Landlock, built.detail()));
            Some(above_stdio(
                built.fd.as_fd(),
                "duplicating the Landlock ruleset",
            )?)
        } else {
            layers.push(Layer::disabled(
                LayerName::Landlock,
                off_reason(LayerName::Landlock),
            ));
            None
        };

        let seccomp = if on(LayerName::Seccomp) {
            let f = seccomp_filter::build()?;
            layers.push(Layer::active(LayerName::Seccomp, f.detail));
            Some(f.program)
        } else {
            layers.push(Layer::disabled(
                LayerName::Seccomp,
                off_reason(LayerName::Seccomp),
            ));
            None
        };

        let rlimits = if on(LayerName::Rlimits) {
            layers.push(Layer::active(LayerName::Rlimits, limits.describe()));
            Some(limits.rlimits().map(|(r, v)| (r.raw(), v)))
        } else {
            layers.push(Layer::disabled(
                LayerName::Rlimits,
                off_reason(LayerName::Rlimits),
            ));
            None
        };

        let ChildFds {
            stdin,
            stdout,
            stderr,
            channel,
        } = ChildFds::prepare(
            stdout.as_ref(),
            stderr.as_ref(),
            channel.as_ref(),
            FIRST_FREE_FD,
        )?;
        let (sync_read, sync_write) = pipe("start pipe")?;
        let (err_read, err_write) = pipe("error pipe")?;

        let plan = ChildPlan {
            exec,
            argv: CStringArray::new(argv_c),
            envp: CStringArray::new(envp_c),
            workdir: cstring("working folder", workdir.as_os_str().as_bytes())?,
            hostname: b"sandbox",
            stdin,
            stdout,
            stderr,
            channel,
            sync_read,
            err_write,
            namespaces,
            no_new_privs,
            landlock,
            seccomp,
            rlimits,
            identity,
            _executable: executable,
        };
        Ok(Prepared {
            plan,
            parent: ParentEnds {
                sync_write,
                err_read,
            },
            maps,
            layers,
            limits,
            program_name,
        })
    }
}
