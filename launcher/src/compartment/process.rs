//! A child process that leads its own process group.
//!
//! A small reaper thread per child waits for the leader to exit *without
//! reaping it* (`waitid(WNOWAIT)`), kills the rest of the group, and only then
//! reaps the leader. Until the leader is reaped its pid cannot be reused, so
//! `kill(-pgid)` from [`ChildProcess::kill_group`] can never hit an unrelated
//! process group; the `reaped` flag, checked under a lock, closes the last gap.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

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

#[derive(Debug)]
pub struct ChildProcess {
    pid: u32,
    stdout: Option<Pipe>,
    stderr: Option<Pipe>,
    exit: Option<oneshot::Receiver<io::Result<ExitStatus>>>,
    status: Option<ExitStatus>,
    group: Arc<Group>,
}

impl ChildProcess {
    /// Takes charge of a freshly spawned child that leads its own process
    /// group (`process_group(0)`). Its stdout and stderr, when piped, become
    /// async pipes; `merged` is a single pipe carrying both, if used instead.
    pub fn adopt(mut child: std::process::Child, merged: Option<OwnedFd>) -> io::Result<Self> {
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
            exit: Some(rx),
            status: None,
            group,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The stdout pipe (or the merged stdout+stderr pipe), once.
    pub fn take_stdout(&mut self) -> Option<Pipe> {
        self.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<Pipe> {
        self.stderr.take()
    }

    /// Waits until the leader has exited and its group has been killed.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let Some(rx) = self.exit.as_mut() else {
            return Err(io::Error::other("child already lost"));
        };
        let status = rx
            .await
            .map_err(|_| io::Error::other("the reaper thread ended without a status"))?;
        self.exit = None;
        let status = status?;
        self.status = Some(status);
        Ok(status)
    }

    /// SIGKILL to every process of the group (no-op once reaped).
    pub fn kill_group(&self) {
        self.group.kill();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // Never leave a process behind; the reaper thread still reaps it.
        self.group.kill();
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
