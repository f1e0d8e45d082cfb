//! Confinement mechanisms for the attestable launcher. This crate knows
//! nothing of the launcher: it measures executables, starts confined
//! processes, and says truthfully which confinement layers are in force.
//!
//! * [`MeasuredExecutable`]: read once, hashed, executed as exactly those
//!   bytes (a sealed memfd on Linux).
//! * [`spawn`] a [`SandboxSpec`] (a run of a measured program, or a
//!   confined compile) into a [`SandboxedChild`] that can be awaited and
//!   killed as a whole.
//! * [`probe`] tries every layer on this machine and reports each as
//!   active, unavailable (with the reason) or disabled.
//! * [`cheri`]: the CheriBSD/Morello pieces that do not need a board
//!   (release detection, c18n command lines, `elfctl` output), tested on
//!   any host; the `cheri-c18n` spawn itself is compiled on FreeBSD only.
//!
//! # The Linux sandbox
//!
//! The child is cloned (from one long-lived thread, so that
//! `PR_SET_PDEATHSIG` means "the launcher died") with new user, mount, PID,
//! network, IPC, UTS and cgroup namespaces, as PID 1 of its namespace:
//! killing it kills everything it started. Before exec it sets rlimits,
//! `PR_SET_NO_NEW_PRIVS`, a Landlock ruleset (read-only libraries,
//! read-write working folder, execute only its ELF interpreter, no TCP,
//! scoped signals and abstract sockets) and a seccomp deny-list, becomes
//! uid 1000 inside (65534 outside when the launcher is root), and keeps
//! only fds 0-3. Everything is prepared before the clone; between clone and
//! exec the child makes system calls only (see `linux/child.rs`).

pub mod cheri;
mod child;
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
mod child_fds;
pub mod elf;
mod error;
mod layers;
mod limits;
mod measured;
mod spec;
mod workdir;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux::process as platform;

#[cfg(target_os = "freebsd")]
mod freebsd;
#[cfg(target_os = "freebsd")]
use freebsd::process as platform;

pub use cheri::CheriRun;
pub use child::{KillHandle, Outcome, SandboxedChild, Termination};
pub use error::SpawnError;
pub use layers::{
    Backend, DisabledLayers, Layer, LayerName, LayerStatus, UnknownLayer, missing_layers_message,
};
pub use limits::{Limits, LimitsError};
pub use measured::{MAX_EXECUTABLE_BYTES, MeasureError, MeasuredExecutable};
pub use spec::{
    Access, CHANNEL_FD, DEFAULT_OUTER_ID, INSIDE_ID, PathRule, Program, SandboxSpec, runtime_paths,
    toolchain_paths,
};

#[cfg(target_os = "linux")]
pub use linux::landlock_abi;

/// Starts `spec` confined by every layer it does not disable. Fails, naming
/// the layer and the reason, if any layer cannot be set up: a sandbox never
/// runs with less confinement than its [`SandboxedChild::layers`] report.
///
/// Synchronous: it returns once the child has executed the program (or
/// failed to), typically within a millisecond or two. Call it from a
/// blocking context, or accept that short stall on a runtime thread.
pub fn spawn(spec: SandboxSpec) -> Result<SandboxedChild, SpawnError> {
    #[cfg(target_os = "linux")]
    {
        linux::spawn(spec)
    }
    #[cfg(target_os = "freebsd")]
    {
        freebsd::spawn(spec)
    }
}

/// Tries each layer of this platform's backend and reports it active or
/// unavailable, with the reason. On Linux this starts a few short-lived
/// children (a couple of milliseconds): call it at start-up and keep the
/// result.
pub fn probe() -> Vec<Layer> {
    probe_with(&DisabledLayers::new())
}

/// [`probe`], reporting the layers in `disabled` as disabled (with their
/// reason) without trying them.
pub fn probe_with(disabled: &DisabledLayers) -> Vec<Layer> {
    #[cfg(target_os = "linux")]
    {
        linux::probe(disabled)
    }
    #[cfg(target_os = "freebsd")]
    {
        freebsd::probe(disabled, None)
    }
}

/// [`probe_with`] for CheriBSD, with the operator's configured release
/// (`YY.MM`) when the kernel's version string does not name one.
#[cfg(target_os = "freebsd")]
pub fn probe_cheri(disabled: &DisabledLayers, configured_release: Option<&str>) -> Vec<Layer> {
    freebsd::probe(disabled, configured_release)
}
