//! A started child, held by its pid. FreeBSD's process descriptors
//! (`pdfork`) would be the pidfd twin, but kqueue (tokio's reactor) does not
//! watch them for readability; waiting happens on a blocking thread instead,
//! and a lock keeps a kill from racing the reap that frees the pid.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::child::RawExit;

pub(crate) struct Process {
    pid: libc::pid_t,
    reaped: Mutex<bool>,
}

impl Process {
    pub(crate) fn new(pid: libc::pid_t) -> Self {
        Process {
            pid,
            reaped: Mutex::new(false),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// SIGKILL to the child's process group (it called setsid), then the
    /// child itself; never after it has been reaped.
    pub(crate) fn kill(&self, _whole_group: bool) -> io::Result<()> {
        let reaped = self.reaped.lock().unwrap_or_else(|p| p.into_inner());
        if *reaped {
            return Ok(());
        }
        // SAFETY: signals to our own unreaped child and its group.
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
            if libc::kill(self.pid, libc::SIGKILL) != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ESRCH) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    pub(crate) fn try_wait(&self) -> io::Result<Option<RawExit>> {
        let mut reaped = self.reaped.lock().unwrap_or_else(|p| p.into_inner());
        if *reaped {
            return Err(io::Error::other("the sandboxed process was already reaped"));
        }
        let mut status: libc::c_int = 0;
        // SAFETY: all-zero is a valid rusage.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: valid pointers to stack values.
            let rc = unsafe { libc::wait4(self.pid, &mut status, libc::WNOHANG, &mut usage) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if rc == 0 {
                return Ok(None);
            }
            break;
        }
        *reaped = true;
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64)
                + Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        let exited = libc::WIFEXITED(status);
        Ok(Some(RawExit {
            code: exited.then(|| libc::WEXITSTATUS(status)),
            signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
            cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
            max_rss_kib: usage.ru_maxrss.max(0) as u64,
        }))
    }

    pub(crate) fn wait_blocking(&self) -> io::Result<RawExit> {
        loop {
            // Block until it has exited, without reaping, then reap under
            // the lock.
            // SAFETY: all-zero is a valid siginfo_t.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: valid pointer; P_PID with our child's pid.
            let rc = unsafe {
                libc::waitid(
                    libc::P_PID,
                    self.pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
                continue;
            }
            if let Some(exit) = self.try_wait()? {
                return Ok(exit);
            }
        }
    }

    pub(crate) async fn wait(self: Arc<Self>) -> io::Result<RawExit> {
        tokio::task::spawn_blocking(move || self.wait_blocking())
            .await
            .map_err(io::Error::other)?
    }
}
