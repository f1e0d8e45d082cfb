//! The child between clone and exec.
//!
//! The launcher is a multi-threaded process: after clone only the cloning
//! thread exists in the child, and any lock another thread held (the
//! allocator's included) stays held forever. So this code allocates
//! nothing, takes no lock, formats nothing and cannot panic: it reads the
//! [`ChildPlan`] built beforehand and makes raw system calls. On the first
//! failure it writes a fixed-size [`Report`] to the error pipe and exits.

use std::os::fd::AsRawFd;

use super::plan::{ChildPlan, ExecTarget};
use super::stage::{Report, Stage};

/// Exit status of a child that failed before exec.
pub(crate) const SETUP_FAILED: i32 = 127;

fn errno() -> i32 {
    // SAFETY: reading the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Reports `stage` and the current errno to the parent, then exits.
fn fail(plan: &ChildPlan, stage: Stage, detail: u32) -> ! {
    let report = Report {
        stage: stage as u32,
        detail,
        errno: errno(),
    }
    .encode();
    // SAFETY: write and _exit are async-signal-safe; the buffer is on the
    // stack. A short or failed write leaves the parent with a truncated
    // report, which it treats as an unknown failure.
    unsafe {
        libc::write(
            plan.err_write.as_raw_fd(),
            report.as_ptr().cast(),
            report.len(),
        );
        libc::_exit(SETUP_FAILED)
    }
}

macro_rules! check {
    ($plan:expr, $stage:expr, $rc:expr) => {
        if $rc < 0 {
            fail($plan, $stage, 0);
        }
    };
}

/// Runs in the new child. Never returns.
///
/// # Safety
/// Must only be called in a freshly cloned child process, once.
pub(crate) unsafe fn run(plan: &ChildPlan) -> ! {
    // SAFETY (whole block): every call below is an async-signal-safe system
    // call wrapper on data owned by `plan` or on the stack.
    unsafe {
        // Handlers of the launcher must never run here; exec would reset
        // caught signals anyway, but not ignored ones (Rust ignores SIGPIPE).
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }

        // The spawner thread never exits, so this fires only when the
        // launcher process dies.
        check!(
            plan,
            Stage::DeathSignal,
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0
            )
        );

        // Wait until the parent has written the uid/gid maps. EOF means the
        // parent gave up: leave quietly.
        let mut byte = 0u8;
        loop {
            let n = libc::read(plan.sync_read.as_raw_fd(), (&raw mut byte).cast(), 1);
            if n == 1 {
                break;
            }
            if n == 0 {
                libc::_exit(SETUP_FAILED);
            }
            if errno() != libc::EINTR {
                fail(plan, Stage::SyncRead, 0);
            }
        }

        if plan.namespaces {
            // Nothing this sandbox mounts may propagate back, whatever the
            // parent namespace's propagation settings are.
            check!(
                plan,
                Stage::MountPrivate,
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                )
            );
            check!(
                plan,
                Stage::Hostname,
                libc::sethostname(plan.hostname.as_ptr().cast(), plan.hostname.len())
            );
        }

        // A new session: no controlling terminal, and its own process group
        // for kill() when there is no PID namespace.
        check!(plan, Stage::Setsid, libc::setsid());

        // All sources are >= 4 (see plan.rs), so no dup2 clobbers another.
        check!(plan, Stage::Dup, libc::dup2(plan.stdin.as_raw_fd(), 0));
        check!(plan, Stage::Dup, libc::dup2(plan.stdout.as_raw_fd(), 1));
        check!(plan, Stage::Dup, libc::dup2(plan.stderr.as_raw_fd(), 2));
        if let Some(channel) = &plan.channel {
            check!(plan, Stage::Dup, libc::dup2(channel.as_raw_fd(), 3));
        }

        check!(plan, Stage::Chdir, libc::chdir(plan.workdir.as_ptr()));

        if let Some(limits) = &plan.rlimits {
            for (i, (resource, value)) in limits.iter().enumerate() {
                let lim = libc::rlimit {
                    rlim_cur: *value as libc::rlim_t,
                    rlim_max: *value as libc::rlim_t,
                };
                if libc::setrlimit(*resource as _, &lim) < 0 {
                    fail(plan, Stage::Rlimit, i as u32);
                }
            }
        }

        if plan.no_new_privs {
            check!(
                plan,
                Stage::NoNewPrivs,
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0)
            );
        }

        // Landlock and seccomp go in while the child still holds
        // CAP_SYS_ADMIN in its own user namespace (or is root), so they work
        // even with no_new_privs disabled. Neither restricts the identity
        // calls that follow.
        if let Some(ruleset) = &plan.landlock {
            check!(
                plan,
                Stage::Landlock,
                libc::syscall(
                    libc::SYS_landlock_restrict_self,
                    ruleset.as_raw_fd(),
                    0 as libc::c_uint
                )
            );
        }

        if let Some(program) = &plan.seccomp {
            let prog = libc::sock_fprog {
                len: program.len() as libc::c_ushort,
                filter: program.as_ptr().cast_mut().cast(),
            };
            check!(
                plan,
                Stage::Seccomp,
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0 as libc::c_uint,
                    &raw const prog
                )
            );
        }

        // Raw system calls, not the libc wrappers: glibc's setgroups and
        // setres[ug]id broadcast the change to every thread it knows of and
        // wait for them, and in this child the launcher's other threads
        // exist only in glibc's copied bookkeeping. They would never answer.
        if let Some(id) = plan.identity {
            if id.setgroups {
                check!(
                    plan,
                    Stage::Setgroups,
                    libc::syscall(
                        libc::SYS_setgroups,
                        0 as libc::size_t,
                        std::ptr::null::<libc::gid_t>()
                    )
                );
            }
            check!(
                plan,
                Stage::Setresgid,
                libc::syscall(libc::SYS_setresgid, id.gid, id.gid, id.gid)
            );
            // A non-zero uid in every slot drops all capabilities.
            check!(
                plan,
                Stage::Setresuid,
                libc::syscall(libc::SYS_setresuid, id.uid, id.uid, id.uid)
            );
        }

        // A change of identity clears the death signal (prctl(2)): without
        // this, a run outlived a launcher killed by SIGKILL. Set it again
        // for the program itself, then make sure the launcher did not die
        // in between: it holds the error pipe's read end until exec, so a
        // pipe with no reader left (POLLERR) means it is gone.
        check!(
            plan,
            Stage::DeathSignal,
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0
            )
        );
        let mut pipe = libc::pollfd {
            fd: plan.err_write.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        if libc::poll(&raw mut pipe, 1, 0) == 1 && pipe.revents & libc::POLLERR != 0 {
            libc::_exit(SETUP_FAILED);
        }

        // Everything above the child's stdio and channel closes at exec,
        // whatever the launcher had open without O_CLOEXEC. The executable's
        // memfd and the error pipe close too; the latter tells the parent
        // that exec succeeded.
        let first = if plan.channel.is_some() { 4 } else { 3 };
        check!(
            plan,
            Stage::CloseRange,
            libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_uint
            )
        );

        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut empty);
        check!(
            plan,
            Stage::SignalMask,
            libc::sigprocmask(libc::SIG_SETMASK, &raw const empty, std::ptr::null_mut())
        );

        match &plan.exec {
            ExecTarget::Fd(fd) => {
                libc::syscall(
                    libc::SYS_execveat,
                    fd.as_raw_fd(),
                    c"".as_ptr(),
                    plan.argv.as_ptr(),
                    plan.envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                );
            }
            ExecTarget::Path(path) => {
                libc::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
            }
            ExecTarget::Probe => libc::_exit(0),
        }
        fail(plan, Stage::Exec, 0)
    }
}
