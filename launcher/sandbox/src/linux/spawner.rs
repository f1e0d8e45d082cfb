//! The thread every sandbox is cloned from.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that created the child exits,
//! not the process. Cloning from whatever thread calls `spawn` (a tokio
//! blocking-pool thread retires after 10 s idle) would kill sandboxes at
//! random; cloning from one thread that lives as long as the process makes
//! the signal mean "the launcher died". The thread also keeps every signal
//! blocked, so no launcher signal handler can run in a child before it has
//! reset them.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::sync::mpsc::{self, Sender, SyncSender};

use super::child;
use super::plan::ChildPlan;

/// A started child: its pid in the launcher's namespace and a pidfd.
pub(crate) struct Cloned {
    pub pid: libc::pid_t,
    pub pidfd: OwnedFd,
}

struct Job {
    plan: Box<ChildPlan>,
    flags: u64,
    reply: SyncSender<io::Result<Cloned>>,
}

fn spawner() -> io::Result<Sender<Job>> {
    static SPAWNER: Mutex<Option<Sender<Job>>> = Mutex::new(None);
    let mut slot = SPAWNER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(tx) = &*slot {
        return Ok(tx.clone());
    }
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("sandbox-spawner".into())
        .spawn(move || {
            block_all_signals();
            for job in rx {
                let result = clone_child(&job.plan, job.flags);
                // Closes the parent's copies of the child's descriptors
                // (its end of the error pipe above all) before the caller
                // starts reading that pipe.
                drop(job.plan);
                // The caller may have given up; nothing else to do.
                let _ = job.reply.send(result);
            }
        })?;
    *slot = Some(tx.clone());
    Ok(tx)
}

fn block_all_signals() {
    // SAFETY: plain signal-mask manipulation of the current thread.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

/// `struct clone_args`, version 0 (64 bytes), from `linux/sched.h`.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

/// Clones like fork (no shared memory, no new stack) with `flags` and a
/// pidfd; runs [`child::run`] in the child.
fn clone_child(plan: &ChildPlan, flags: u64) -> io::Result<Cloned> {
    let mut pidfd: libc::c_int = -1;
    let args = CloneArgs {
        flags: flags | libc::CLONE_PIDFD as u64,
        pidfd: (&raw mut pidfd) as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM behaves like fork; `args` outlives
    // the call. In the child only `child::run` executes.
    let mut rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw const args,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        // Kernels before 5.3, or a container runtime's filter that hides
        // clone3: the classic call, with the pidfd written through the
        // parent_tid argument (the third on every architecture).
        // SAFETY: as above; a NULL stack makes clone fork-like.
        rc = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (flags | libc::CLONE_PIDFD as u64 | libc::SIGCHLD as u64) as libc::c_ulong,
                std::ptr::null_mut::<libc::c_void>(),
                &raw mut pidfd,
                std::ptr::null_mut::<libc::c_void>(),
                0 as libc::c_ulong,
            )
        };
    }
    if rc == 0 {
        // SAFETY: this is the fresh child.
        unsafe { child::run(plan) }
    }
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if pidfd < 0 {
        return Err(io::Error::other("clone succeeded but returned no pidfd"));
    }
    Ok(Cloned {
        pid: rc as libc::pid_t,
        // SAFETY: the kernel created this descriptor for us (O_CLOEXEC).
        pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
    })
}

/// Clones a child for `plan` on the spawner thread, which then drops the
/// plan (closing the parent's copies of the child's descriptors).
pub(crate) fn clone_on_spawner(plan: ChildPlan, flags: u64) -> io::Result<Cloned> {
    let tx = spawner()?;
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    tx.send(Job {
        plan: Box::new(plan),
        flags,
        reply: reply_tx,
    })
    .map_err(|_| io::Error::other("the sandbox spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the sandbox spawner thread stopped before answering"))?
}
