//! The processes the demo starts, and the guarantee that it leaves none
//! behind: on success, on every error path (the [`Supervisor`] stops them
//! when dropped), on Ctrl-C, SIGTERM and SIGHUP (a thread waits for those
//! signals, stops everything and exits), and even when the demo itself is
//! killed (Linux: each child gets `PR_SET_PDEATHSIG` = SIGTERM).
//!
//! The signals are blocked in every thread of the demo (the mask is set
//! before any other thread exists and inherited by later ones) and taken by
//! `sigwait` in one thread; children start with an empty mask. The daemons
//! get their own process group, so a Ctrl-C at the terminal reaches the
//! demo, which stops them in order (the launcher first, so a live run is
//! recorded as interrupted while the services still answer).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{CliError, Result};

/// How long a daemon may take to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// The signals that stop the demo.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// How a child is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A daemon: own process group, stdout piped, stopped with SIGTERM.
    Daemon,
    /// A tool in the foreground (cargo): the terminal's Ctrl-C reaches it too.
    Foreground,
}

/// One started process.
struct Entry {
    name: String,
    child: Child,
}

#[derive(Default)]
struct State {
    /// Set once stopping began: nothing new starts after it.
    stopping: bool,
    children: Vec<Entry>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// A stop signal arrived: the signal thread stops everything and exits.
    signalled: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops every child still running, the latest started first; returns
    /// how each ended (those that had already ended too).
    fn stop_all(&self) -> Vec<Stopped> {
        let mut state = self.lock();
        state.stopping = true;
        let mut out = Vec::new();
        while let Some(mut entry) = state.children.pop() {
            let how = stop(&mut entry.child);
            out.push(Stopped {
                name: entry.name,
                how,
            });
        }
        out
    }
}

/// How a child ended when the demo stopped it.
#[derive(Debug)]
pub struct Stopped {
    pub name: String,
    pub how: Ended,
}

#[derive(Debug)]
pub enum Ended {
    /// It had already exited.
    Before(ExitStatus),
    /// It exited after SIGTERM.
    Terminated(ExitStatus),
    /// It ignored SIGTERM for [`STOP_GRACE`] and was killed.
    Killed,
    /// Waiting for it failed.
    Unknown(String),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Before(status) => write!(f, "had already ended ({status})"),
            Ended::Terminated(status) if status.success() => f.write_str("stopped"),
            Ended::Terminated(status) => write!(f, "stopped, {status}"),
            Ended::Killed => write!(
                f,
                "killed: it did not stop within {} s of SIGTERM",
                STOP_GRACE.as_secs()
            ),
            Ended::Unknown(e) => write!(f, "unknown: {e}"),
        }
    }
}

fn stop(child: &mut Child) -> Ended {
    match child.try_wait() {
        Ok(Some(status)) => return Ended::Before(status),
        Ok(None) => {}
        Err(e) => return Ended::Unknown(e.to_string()),
    }
    // SAFETY: a plain syscall on our own, not yet reaped, child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return Ended::Terminated(status),
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => return Ended::Unknown(e.to_string()),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Ended::Killed
}

/// Owns every process the demo starts.
pub struct Supervisor {
    shared: Arc<Shared>,
}

impl Supervisor {
    /// Blocks the stop signals and starts the thread that waits for them.
    /// Call before any other thread exists (the mask is inherited).
    pub fn install() -> Result<Self> {
        let shared = Arc::new(Shared::default());
        let set = stop_set();
        // SAFETY: changes this thread's signal mask; `set` is initialised.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(CliError::Input(format!(
                "blocking the stop signals: {}",
                std::io::Error::from_raw_os_error(rc)
            )));
        }
        let watcher = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("demo-signals".into())
            .spawn(move || wait_for_stop_signal(set, &watcher))
            .map_err(|e| CliError::Input(format!("starting the signal thread: {e}")))?;
        Ok(Self { shared })
    }

    /// Starts `command` as `name`. A daemon's stdout is returned for reading.
    pub fn spawn(
        &self,
        name: &str,
        command: &mut Command,
        kind: Kind,
    ) -> Result<(u32, Option<ChildStdout>)> {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs between fork and exec and makes only
        // async-signal-safe calls (sigemptyset, pthread_sigmask, prctl,
        // getppid), allocating nothing.
        unsafe {
            command.pre_exec(move || {
                let mut empty: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut empty);
                libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                #[cfg(target_os = "linux")]
                {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    // The demo died before the prctl: do not outlive it.
                    if libc::getppid() != parent {
                        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                    }
                }
                #[cfg(not(target_os = "linux"))]
                let _ = parent;
                Ok(())
            });
        }
        command.stdin(std::process::Stdio::null());
        if kind == Kind::Daemon {
            command
                .process_group(0)
                .stdout(std::process::Stdio::piped());
        }
        let mut state = self.shared.lock();
        if state.stopping {
            return Err(CliError::Input(format!(
                "not starting {name}: the demo is stopping"
            )));
        }
        let mut child = command.spawn().map_err(|e| {
            CliError::Input(format!(
                "cannot start {name} ({}): {e}",
                command.get_program().to_string_lossy()
            ))
        })?;
        let pid = child.id();
        let stdout = child.stdout.take();
        state.children.push(Entry {
            name: name.to_owned(),
            child,
        });
        Ok((pid, stdout))
    }

    /// The exit status of child `pid` if it has ended (it stays listed).
    pub fn exited(&self, pid: u32) -> Option<ExitStatus> {
        let mut state = self.shared.lock();
        state
            .children
            .iter_mut()
            .find(|e| e.child.id() == pid)
            .and_then(|e| e.child.try_wait().ok().flatten())
    }

    /// Waits for child `pid` to end and forgets it.
    pub fn wait(&self, pid: u32) -> Result<ExitStatus> {
        loop {
            if let Some(status) = self.exited(pid) {
                self.shared.lock().children.retain(|e| e.child.id() != pid);
                return Ok(status);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends `signal` to child `pid` if it is still one of ours and running.
    pub fn signal(&self, pid: u32, signal: libc::c_int) -> Result<()> {
        let mut state = self.shared.lock();
        let Some(entry) = state.children.iter_mut().find(|e| e.child.id() == pid) else {
            return Err(CliError::Input(format!("process {pid} is not the demo's")));
        };
        if let Ok(Some(status)) = entry.child.try_wait() {
            return Err(CliError::Input(format!(
                "{} has ended ({status})",
                entry.name
            )));
        }
        // SAFETY: a plain syscall on our own child, not reaped (checked above).
        if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
            return Err(CliError::Input(format!(
                "signalling {}: {}",
                entry.name,
                std::io::Error::last_os_error()
            )));
        }
        Ok(())
    }

    /// Stops everything still running (see [`Shared::stop_all`]).
    pub fn stop_all(&self) -> Vec<Stopped> {
        self.shared.stop_all()
    }

    /// After a stop signal the signal thread reports and ends the process;
    /// the rest of the demo (whose requests fail as the daemons stop) must
    /// not end it first, so it waits here.
    pub fn yield_to_signal(&self) {
        if self.shared.signalled.load(Ordering::SeqCst) {
            loop {
                std::thread::park();
            }
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Error paths and panics: nothing may outlive the demo.
        let _ = self.shared.stop_all();
    }
}

fn stop_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in STOP_SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

fn wait_for_stop_signal(set: libc::sigset_t, shared: &Shared) {
    let mut signal: libc::c_int = 0;
    // SAFETY: `set` is initialised and blocked in every thread.
    while unsafe { libc::sigwait(&set, &mut signal) } != 0 {}
    // Before anything stops, so that the failures it causes elsewhere wait.
    shared.signalled.store(true, Ordering::SeqCst);
    let name = match signal {
        libc::SIGINT => "Ctrl-C (SIGINT)",
        libc::SIGTERM => "SIGTERM",
        _ => "SIGHUP",
    };
    eprintln!("\nattestable demo: {name}: stopping everything the demo started");
    for stopped in shared.stop_all() {
        eprintln!("   {:<13} {}", stopped.name, stopped.how);
    }
    std::process::exit(128 + signal);
}

/// Reads a daemon's stdout on a thread, forwarding each line, until it ends.
pub fn lines(stdout: ChildStdout) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // Keep reading after the receiver is gone, so the daemon never
            // blocks on a full pipe.
            let _ = tx.send(line);
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_stopped_in_reverse_order_and_nothing_starts_after() {
        let shared = Shared::default();
        let sup = Supervisor {
            shared: Arc::new(shared),
        };
        let (first, _) = sup
            .spawn("first", Command::new("sleep").arg("600"), Kind::Daemon)
            .unwrap();
        let (quick, _) = sup
            .spawn("quick", &mut Command::new("true"), Kind::Foreground)
            .unwrap();
        assert!(sup.wait(quick).unwrap().success());
        let (second, _) = sup
            .spawn("second", Command::new("sleep").arg("600"), Kind::Daemon)
            .unwrap();
        assert!(sup.exited(first).is_none());
        let stopped = sup.stop_all();
        let names: Vec<&str> = stopped.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["second", "first"]);
        for s in &stopped {
            assert!(matches!(s.how, Ended::Terminated(_)), "{:?}", s.how);
        }
        for pid in [first, second] {
            // SAFETY: signal 0 only asks whether the process exists.
            let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
            assert!(!alive, "process {pid} survived");
        }
        assert!(
            sup.spawn("late", &mut Command::new("true"), Kind::Foreground)
                .is_err()
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_daemon_gets_its_own_group_and_an_empty_signal_mask() {
        let sup = Supervisor {
            shared: Arc::new(Shared::default()),
        };
        // SAFETY: blocks SIGTERM in this test thread only, as install() does.
        let set = stop_set();
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
        let (pid, stdout) = sup
            .spawn(
                "shell",
                Command::new("sh").args([
                    "-c",
                    "grep SigBlk /proc/self/status; cut -d' ' -f5 /proc/self/stat",
                ]),
                Kind::Daemon,
            )
            .unwrap();
        // SAFETY: restores this thread's mask.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        let out: Vec<String> = lines(stdout.unwrap()).iter().collect();
        assert!(sup.wait(pid).unwrap().success());
        assert_eq!(
            out.first().map(String::as_str),
            Some("SigBlk:\t0000000000000000"),
            "{out:?}"
        );
        assert_eq!(
            out.get(1).map(|s| s.trim()),
            Some(pid.to_string().as_str()),
            "{out:?}"
        );
    }
}
