//! A started child, held by its pidfd: signals and waits can never hit a
//! recycled pid.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::child::RawExit;

const P_PIDFD: libc::idtype_t = 3;

pub(crate) struct Process {
    pid: libc::pid_t,
    pidfd: OwnedFd,
    /// Set under the lock when the child is reaped: after that its pid
    /// (and process group id) may belong to someone else.
    reaped: Mutex<bool>,
}

impl Process {
    pub(crate) fn new(pid: libc::pid_t, pidfd: OwnedFd) -> Self {
        Process {
            pid,
            pidfd,
            reaped: Mutex::new(false),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid as u32
    }

    pub(crate) fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// SIGKILL to the child. It is PID 1 of its own PID namespace, so the
    /// kernel then kills every process in that namespace; without one, the
    /// child's process group (it called setsid) gets the signal too.
    pub(crate) fn kill(&self, whole_group: bool) -> io::Result<()> {
        // SAFETY: pidfd_send_signal on our own pidfd with no siginfo.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0 as libc::c_uint,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            // Already exited (a zombie still accepts signals; ESRCH means
            // reaped): nothing left to kill.
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(e);
            }
        }
        if whole_group {
            // The group id is the child's pid, reserved while the child is
            // unreaped; the lock keeps a reap from slipping in between.
            let reaped = self.reaped.lock().unwrap_or_else(|p| p.into_inner());
            if !*reaped {
                // SAFETY: kill with a negative pid signals that process group.
                unsafe { libc::kill(-self.pid, libc::SIGKILL) };
            }
        }
        Ok(())
    }

    fn waitid(&self, options: libc::c_int) -> io::Result<Option<RawExit>> {
        loop {
            // SAFETY: all-zero is a valid siginfo_t and rusage.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // The raw call takes a fifth argument, the child's rusage,
            // which glibc's waitid() does not expose.
            // SAFETY: valid pointers to stack values.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_waitid,
                    P_PIDFD,
                    self.pidfd.as_raw_fd(),
                    &raw mut info,
                    libc::WEXITED | options,
                    &raw mut usage,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            // SAFETY: the kernel filled `info` for a child state change.
            let (pid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
            if pid == 0 {
                return Ok(None); // WNOHANG and still running
            }
            let tv = |t: libc::timeval| {
                Duration::from_secs(t.tv_sec.max(0) as u64)
                    + Duration::from_micros(t.tv_usec.max(0) as u64)
            };
            let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
            let exited = code == libc::CLD_EXITED;
            return Ok(Some(RawExit {
                code: exited.then_some(status),
                signal: (!exited).then_some(status),
                cpu,
                max_rss_kib: usage.ru_maxrss.max(0) as u64,
            }));
        }
    }

    /// Reaps the child if it has exited.
    pub(crate) fn try_wait(&self) -> io::Result<Option<RawExit>> {
        let mut reaped = self.reaped.lock().unwrap_or_else(|p| p.into_inner());
        if *reaped {
            return Err(io::Error::other("the sandboxed process was already reaped"));
        }
        let exit = self.waitid(libc::WNOHANG)?;
        *reaped = exit.is_some();
        Ok(exit)
    }

    pub(crate) fn wait_blocking(&self) -> io::Result<RawExit> {
        loop {
            // Block until it has exited without reaping, then reap under
            // the lock.
            self.waitid(libc::WNOWAIT)?;
            if let Some(exit) = self.try_wait()? {
                return Ok(exit);
            }
        }
    }

    /// Waits without blocking a runtime thread: the pidfd becomes readable
    /// when the process exits.
    pub(crate) async fn wait(self: Arc<Self>) -> io::Result<RawExit> {
        let dup = self.pidfd.try_clone()?;
        // SAFETY: the AsyncFd owns `dup`, which stays open, and refers to
        // the same pidfd, for the AsyncFd's whole life.
        let watch = unsafe { AsyncFd::register_with_interest(dup, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        loop {
            if let Some(exit) = self.try_wait()? {
                return Ok(exit);
            }
            let mut guard = watch.readable().await?;
            guard.clear_ready();
        }
    }
}
