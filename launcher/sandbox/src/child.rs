//! A running sandbox: wait for it, kill it, and learn why it ended.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::layers::{Layer, LayerName, LayerStatus};
use crate::limits::Limits;
use crate::platform::Process;

/// What the kernel reported for the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// User + system CPU time of the child itself.
    pub cpu: Duration,
    pub max_rss_kib: u64,
}

/// Why a sandbox ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// The program exited with this status.
    Exited { code: i32 },
    /// It reached its CPU-time limit and the kernel killed it.
    CpuLimit,
    /// The launcher killed it ([`SandboxedChild::kill`]).
    Killed,
    /// It outlived the deadline given to [`SandboxedChild::wait_timeout`].
    WallClockLimit,
    /// Another signal ended it (e.g. `SIGSEGV`, or `SIGKILL` from the OOM
    /// killer).
    Signaled { signal: i32 },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited { code } => write!(f, "exited with status {code}"),
            Outcome::CpuLimit => f.write_str("killed at its CPU-time limit"),
            Outcome::Killed => f.write_str("killed by the launcher"),
            Outcome::WallClockLimit => f.write_str("killed at its wall-clock limit"),
            Outcome::Signaled { signal } => write!(f, "ended by signal {signal}"),
        }
    }
}

/// How a sandbox ended, with its resource usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Termination {
    pub outcome: Outcome,
    /// User + system CPU time of the sandbox's first process.
    pub cpu_time: Duration,
    /// Peak resident memory of the first process, in KiB.
    pub max_rss_kib: u64,
}

impl Termination {
    pub fn success(&self) -> bool {
        self.outcome == Outcome::Exited { code: 0 }
    }
}

const NOT_KILLED: u8 = 0;
const KILLED: u8 = 1;
const WALL_CLOCK: u8 = 2;

/// Tolerance for deciding that a SIGKILL came from RLIMIT_CPU: the kernel
/// checks the limit on the scheduler tick, and rusage rounds to
/// microseconds.
const CPU_LIMIT_SLACK: Duration = Duration::from_millis(100);

pub(crate) fn classify(exit: RawExit, killed: u8, limits: Option<&Limits>) -> Termination {
    let outcome = match (exit.code, exit.signal) {
        (Some(code), _) => Outcome::Exited { code },
        (None, Some(libc::SIGKILL)) if killed == WALL_CLOCK => Outcome::WallClockLimit,
        (None, Some(libc::SIGKILL)) if killed == KILLED => Outcome::Killed,
        (None, Some(sig @ (libc::SIGKILL | libc::SIGXCPU))) => match limits {
            Some(l) if exit.cpu + CPU_LIMIT_SLACK >= Duration::from_secs(l.cpu_seconds) => {
                Outcome::CpuLimit
            }
            _ => Outcome::Signaled { signal: sig },
        },
        (None, Some(signal)) => Outcome::Signaled { signal },
        (None, None) => Outcome::Signaled { signal: 0 },
    };
    Termination {
        outcome,
        cpu_time: exit.cpu,
        max_rss_kib: exit.max_rss_kib,
    }
}

/// Kills a sandbox from another task while a third one waits for it.
#[derive(Clone)]
pub struct KillHandle {
    process: Arc<Process>,
    reason: Arc<AtomicU8>,
    group: bool,
}

impl KillHandle {
    /// Ends the whole sandbox (every process in it) with SIGKILL.
    pub fn kill(&self) -> io::Result<()> {
        let _ =
            self.reason
                .compare_exchange(NOT_KILLED, KILLED, Ordering::SeqCst, Ordering::SeqCst);
        self.process.kill(self.group)
    }
}

/// A started sandbox. Dropping it without waiting kills and reaps it.
pub struct SandboxedChild {
    process: Arc<Process>,
    layers: Vec<Layer>,
    limits: Limits,
    reason: Arc<AtomicU8>,
    done: Option<Termination>,
    /// No PID namespace: kill the process group as well.
    group_kill: bool,
}

impl fmt::Debug for SandboxedChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxedChild")
            .field("pid", &self.pid())
            .field("done", &self.done)
            .finish()
    }
}

impl SandboxedChild {
    pub(crate) fn new(process: Process, layers: Vec<Layer>, limits: Limits) -> Self {
        let group_kill = !layers
            .iter()
            .any(|l| l.name == LayerName::Namespaces && l.status == LayerStatus::Active);
        SandboxedChild {
            process: Arc::new(process),
            layers,
            limits,
            reason: Arc::new(AtomicU8::new(NOT_KILLED)),
            done: None,
            group_kill,
        }
    }

    /// Its pid in the launcher's PID namespace (for `/proc/<pid>/maps`).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The pidfd (Linux).
    #[cfg(target_os = "linux")]
    pub fn pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.process.pidfd()
    }

    /// Each layer of this sandbox: active, or disabled with the reason the
    /// spec gave.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Ends the whole sandbox with SIGKILL; [`Outcome::Killed`] results.
    pub fn kill(&self) -> io::Result<()> {
        self.kill_handle().kill()
    }

    pub fn kill_handle(&self) -> KillHandle {
        KillHandle {
            process: self.process.clone(),
            reason: self.reason.clone(),
            group: self.group_kill,
        }
    }

    fn finish(&mut self, exit: RawExit) -> Termination {
        let t = classify(
            exit,
            self.reason.load(Ordering::SeqCst),
            self.layers
                .iter()
                .any(|l| l.name == LayerName::Rlimits && l.status == LayerStatus::Active)
                .then_some(&self.limits),
        );
        self.done = Some(t);
        t
    }

    /// Waits for the end of the sandbox without blocking the runtime.
    pub async fn wait(&mut self) -> io::Result<Termination> {
        if let Some(t) = self.done {
            return Ok(t);
        }
        let exit = self.process.clone().wait().await?;
        Ok(self.finish(exit))
    }

    /// [`Self::wait`], but kills the sandbox once `limit` has passed and
    /// reports [`Outcome::WallClockLimit`].
    pub async fn wait_timeout(&mut self, limit: Duration) -> io::Result<Termination> {
        if let Some(t) = self.done {
            return Ok(t);
        }
        match tokio::time::timeout(limit, self.process.clone().wait()).await {
            Ok(exit) => Ok(self.finish(exit?)),
            Err(_) => {
                let _ = self.reason.compare_exchange(
                    NOT_KILLED,
                    WALL_CLOCK,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
                self.process.kill(self.group_kill)?;
                let exit = self.process.clone().wait().await?;
                Ok(self.finish(exit))
            }
        }
    }

    /// Blocks the calling thread until the sandbox ends.
    pub fn wait_blocking(&mut self) -> io::Result<Termination> {
        if let Some(t) = self.done {
            return Ok(t);
        }
        let exit = self.process.wait_blocking()?;
        Ok(self.finish(exit))
    }

    /// The termination, if it has ended (reaps it).
    pub fn try_wait(&mut self) -> io::Result<Option<Termination>> {
        if let Some(t) = self.done {
            return Ok(Some(t));
        }
        Ok(self.process.try_wait()?.map(|e| self.finish(e)))
    }
}

impl Drop for SandboxedChild {
    fn drop(&mut self) {
        if self.done.is_none() {
            // A SIGKILLed process exits at once; reaping here keeps the
            // launcher free of zombies.
            let _ = self.process.kill(self.group_kill);
            let _ = self.process.wait_blocking();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: Option<i32>, signal: Option<i32>, cpu_ms: u64) -> RawExit {
        RawExit {
            code,
            signal,
            cpu: Duration::from_millis(cpu_ms),
            max_rss_kib: 1,
        }
    }

    #[test]
    fn classification() {
        let l = Limits {
            cpu_seconds: 1,
            ..Limits::default()
        };
        let c = |e, k| classify(e, k, Some(&l)).outcome;
        assert_eq!(
            c(exit(Some(0), None, 5), NOT_KILLED),
            Outcome::Exited { code: 0 }
        );
        assert_eq!(
            c(exit(Some(3), None, 5), KILLED),
            Outcome::Exited { code: 3 }
        );
        assert_eq!(c(exit(None, Some(9), 1000), NOT_KILLED), Outcome::CpuLimit);
        assert_eq!(c(exit(None, Some(9), 950), NOT_KILLED), Outcome::CpuLimit);
        assert_eq!(
            c(exit(None, Some(9), 10), NOT_KILLED),
            Outcome::Signaled { signal: 9 }
        );
        assert_eq!(c(exit(None, Some(9), 1000), KILLED), Outcome::Killed);
        assert_eq!(
            c(exit(None, Some(9), 10), WALL_CLOCK),
            Outcome::WallClockLimit
        );
        assert_eq!(
            c(exit(None, Some(11), 10), KILLED),
            Outcome::Signaled { signal: 11 }
        );
        // Without an rlimits layer a SIGKILL is never a CPU-limit kill.
        assert_eq!(
            classify(exit(None, Some(9), 99_000), NOT_KILLED, None).outcome,
            Outcome::Signaled { signal: 9 }
        );
        assert!(classify(exit(Some(0), None, 0), NOT_KILLED, None).success());
    }

    #[test]
    fn outcome_serializes_with_a_kind_tag() {
        assert_eq!(
            serde_json::to_string(&Outcome::Exited { code: 2 }).unwrap(),
            r#"{"kind":"exited","code":2}"#
        );
        assert_eq!(
            serde_json::to_string(&Outcome::CpuLimit).unwrap(),
            r#"{"kind":"cpu_limit"}"#
        );
        assert_eq!(
            Outcome::CpuLimit.to_string(),
            "killed at its CPU-time limit"
        );
    }
}
