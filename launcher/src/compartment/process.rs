//! A started child, whatever the backend.
//!
//! `none` starts a child that leads its own process group. A small reaper
//! thread per child waits for the leader to exit *without reaping it*
//! (`waitid(WNOWAIT)`), kills the rest of the group, and only then reaps the
//! leader. Until the leader is reaped its pid cannot be reused, so
//! `kill(-pgid)` from [`ChildProcess::kill_group`] can never hit an unrelated
//! process group; the `reaped` flag, checked under a lock, closes the last gap.
//!
//! The sandboxed backends hand over a [`SandboxedChild`]: held by its pidfd
//! and, on Linux, PID 1 of its own PID namespace, so killing it kills
//! everything it started.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, PoisonError};

use launcher_sandbox::{KillHandle, Outcome, SandboxedChild};
use tokio::sync::oneshot;

use super::CompartmentInfo;

/// A readable end of a child's output pipe.
pub type Pipe = tokio::net::unix::pipe::Receiver;

#[derive(Debug)]
struct Group {
    pgid: libc::pid_t,
    reaped: Mutex<bool>,
}

impl Group {
    fn kill(&self) {
        let reaped = self.reaped.lock().unwrap_or_else(PoisonError::into_inner);
        if !*reaped {
            // SAFETY: plain syscall; the leader is unreaped, so `pgid` is still ours.
            unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
        }
    }
}

enum Handle {
    /// A process-group leader, reaped by its own thread (`none`).
    Group {
        exit: Option<oneshot::Receiver<io::Result<ExitStatus>>>,
        group: Arc<Group>,
    },
    /// A sandbox (`linux-sandbox`, `cheri-c18n`).
    Sandbox {
        child: Box<SandboxedChild>,
        kill: KillHandle,
    },
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handle::Group { group, .. } => f.debug_tuple("Group").field(group).finish(),
            Handle::Sandbox { child, .. } => f.debug_tuple("Sandbox").field(child).finish(),
        }
    }
}

#[derive(Debug)]
pub struct ChildProcess {
    pid: u32,
    stdout: Option<Pipe>,
    stderr: Option<Pipe>,
    status: Option<ExitStatus>,
    /// Why it ended, when its status alone does not say (a limit).
    note: Option<String>,
    compartment: CompartmentInfo,
    handle: Handle,
}

impl ChildProcess {
    /// Takes charge of a started sandbox. `stdout` and `stderr` are the
    /// read ends of its output pipes (`stdout` alone when merged).
    pub fn sandboxed(
        child: SandboxedChild,
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
        compartment: CompartmentInfo,
    ) -> io::Result<Self> {
        let stdout = stdout.map(Pipe::from_owned_fd).transpose()?;
        let stderr = stderr.map(Pipe::from_owned_fd).transpose()?;
        let kill = child.kill_handle();
        Ok(Self {
            pid: child.pid(),
            stdout,
            stderr,
            status: None,
            note: None,
            compartment,
            handle: Handle::Sandbox {
                child: Box::new(child),
                kill,
            },
        })
    }

    /// Takes charge of a freshly spawned child that leads its own process
    /// group (`process_group(0)`). Its stdout and stderr, when piped, become
    /// async pipes; `merged` is a single pipe carrying both, if used instead.
    pub fn adopt(
        mut child: std::process::Child,
        merged: Option<OwnedFd>,
        compartment: CompartmentInfo,
    ) -> io::Result<Self> {
        let pid = child.id();
        let group = Arc::new(Group {
            pgid: pid as libc::pid_t,
            reaped: Mutex::new(false),
        });
        let to_pipe = |fd: OwnedFd| Pipe::from_owned_fd(fd);
        let pipes = (|| {
            let stdout = match (merged, child.stdout.take()) {
                (Some(fd), _) => Some(to_pipe(fd)?),
                (None, Some(out)) => Some(to_pipe(out.into())?),
                (None, None) => None,
            };
            let stderr = child.stderr.take().map(|e| to_pipe(e.into())).transpose()?;
            Ok::<_, io::Error>((stdout, stderr))
        })();
        let (tx, rx) = oneshot::channel();
        let reaper = {
            let group = group.clone();
            std::thread::Builder::new()
                .name(format!("reap-{pid}"))
                .stack_size(64 * 1024)
                .spawn(move || {
                    let status = reap(&group);
                    let _ = tx.send(status);
                })
        };
        if let Err(err) = reaper {
            group.kill();
            let _ = child.wait();
            return Err(err);
        }
        // `child` is dropped without waiting: the reaper owns the pid now.
        let (stdout, stderr) = match pipes {
            Ok(pipes) => pipes,
            Err(err) => {
                group.kill();
                return Err(err);
            }
        };
        Ok(Self {
            pid,
            stdout,
            stderr,
            status: None,
            note: None,
            compartment,
            handle: Handle::Group {
                exit: Some(rx),
                group,
            },
        })
    }

    /// Its pid in the launcher's PID namespace (for `/proc/<pid>/maps`).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The compartment it was started in: backend, and each layer as it was
    /// set up for this very child.
    pub fn compartment(&self) -> &CompartmentInfo {
        &self.compartment
    }

    /// After [`Self::wait`]: why it ended, when its exit status alone does
    /// not say (e.g. "killed at its CPU-time limit of 1 s").
    pub fn end_note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// The stdout pipe (or the merged stdout+stderr pipe), once.
    pub fn take_stdout(&mut self) -> Option<Pipe> {
        self.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<Pipe> {
        self.stderr.take()
    }

    /// Waits until the child has exited and everything it started has been
    /// killed (its process group, or its PID namespace). Cancel-safe.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = match &mut self.handle {
            Handle::Group { exit, .. } => {
                let Some(rx) = exit.as_mut() else {
                    return Err(io::Error::other("child already lost"));
                };
                let status = rx
                    .await
                    .map_err(|_| io::Error::other("the reaper thread ended without a status"))?;
                *exit = None;
                status?
            }
            Handle::Sandbox { child, .. } => {
                let limits = *child.limits();
                let end = child.wait().await?;
                let (status, note) = sandbox_status(end.outcome, limits.cpu_seconds);
                self.note = note;
                status
            }
        };
        self.status = Some(status);
        Ok(status)
    }

    /// SIGKILL to every process it started (no-op once reaped).
    pub fn kill_group(&self) {
        match &self.handle {
            Handle::Group { group, .. } => group.kill(),
            Handle::Sandbox { kill, .. } => {
                if let Err(err) = kill.kill() {
                    tracing::warn!(pid = self.pid, error = %err, "killing a sandbox failed");
                }
            }
        }
    }
}

/// A sandbox's outcome as a wait status, and a note for the outcomes a
/// status cannot tell apart (a CPU-limit kill looks like any SIGKILL).
fn sandbox_status(outcome: Outcome, cpu_seconds: u64) -> (ExitStatus, Option<String>) {
    match outcome {
        Outcome::Exited { code } => (ExitStatus::from_raw((code & 0xff) << 8), None),
        Outcome::CpuLimit => (
            ExitStatus::from_raw(libc::SIGKILL),
            Some(format!(
                "killed at its CPU-time limit of {cpu_seconds} s (RLIMIT_CPU)"
            )),
        ),
        Outcome::Killed | Outcome::WallClockLimit => (ExitStatus::from_raw(libc::SIGKILL), None),
        Outcome::Signaled { signal } => (ExitStatus::from_raw(signal & 0x7f), None),
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // Never leave a process behind: the reaper thread (or the sandbox's
        // own drop) still reaps it.
        self.kill_group();
    }
}

/// Runs on the reaper thread: wait for exit, kill the group, reap.
fn reap(group: &Group) -> io::Result<ExitStatus> {
    let pid = group.pgid;
    loop {
        // SAFETY: `info` is a plain C struct the kernel fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: plain syscall on our own child.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    let mut reaped = group.reaped.lock().unwrap_or_else(PoisonError::into_inner);
    // SAFETY: the leader is a zombie, not reaped: its pgid is still ours.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let mut status: libc::c_int = 0;
    let result = loop {
        // SAFETY: plain syscall on our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break Ok(ExitStatus::from_raw(status));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            break Err(io::Error::new(
                err.kind(),
                format!("reaping pid {pid}: {err}"),
            ));
        }
    };
    // Reaped or gone: either way the pid is no longer ours to signal.
    *reaped = true;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn sandbox_outcomes_become_wait_statuses() {
        let (s, note) = sandbox_status(Outcome::Exited { code: 3 }, 5);
        assert_eq!((s.code(), s.signal(), note), (Some(3), None, None));
        let (s, note) = sandbox_status(Outcome::CpuLimit, 1);
        assert_eq!(s.signal(), Some(libc::SIGKILL));
        assert_eq!(
            note.as_deref(),
            Some("killed at its CPU-time limit of 1 s (RLIMIT_CPU)")
        );
        let (s, note) = sandbox_status(Outcome::Signaled { signal: 11 }, 5);
        assert_eq!((s.signal(), note), (Some(11), None));
        let (s, _) = sandbox_status(Outcome::Killed, 5);
        assert_eq!(s.signal(), Some(libc::SIGKILL));
    }
}
