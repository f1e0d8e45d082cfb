//! The parent's side of a spawn: clone on the spawner thread, write the
//! child's uid/gid maps, release it, and learn from the error pipe whether
//! it reached exec.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use super::plan::{IdMaps, Prepared};
use super::process::Process;
use super::spawner;
use super::stage::{REPORT_LEN, Report, Stage};
use crate::child::SandboxedChild;
use crate::error::SpawnError;
use crate::spec::SandboxSpec;

const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP) as u64;

pub(crate) fn spawn(spec: SandboxSpec) -> Result<SandboxedChild, SpawnError> {
    let prepared = Prepared::new(spec, false)?;
    start(prepared)
}

/// Runs the whole child set-up of `spec` but exits instead of executing;
/// returns the layers it set up.
pub(crate) fn dry_run_layers(spec: SandboxSpec) -> Result<Vec<crate::Layer>, SpawnError> {
    let prepared = Prepared::new(spec, true)?;
    let mut child = start(prepared)?;
    let t = child.wait_blocking().map_err(|source| SpawnError::Start {
        step: "waiting for the probe child",
        source,
    })?;
    if t.success() {
        Ok(child.layers().to_vec())
    } else {
        Err(SpawnError::Start {
            step: "probe child",
            source: io::Error::other(t.outcome.to_string()),
        })
    }
}

fn start(prepared: Prepared) -> Result<SandboxedChild, SpawnError> {
    let Prepared {
        plan,
        parent,
        maps,
        layers,
        limits,
        program_name,
    } = prepared;
    let namespaces = plan.namespaces;
    let flags = if namespaces { NAMESPACE_FLAGS } else { 0 };

    let cloned = spawner::clone_on_spawner(plan, flags).map_err(|source| {
        let reason = match source.raw_os_error() {
            Some(libc::EPERM | libc::ENOSPC | libc::EUSERS) if namespaces => {
                format!(
                    "clone with new namespaces failed: {source}; {}",
                    super::probe::userns_hint()
                )
            }
            _ => format!("clone failed: {source}"),
        };
        if namespaces {
            SpawnError::LayerUnavailable {
                layer: crate::LayerName::Namespaces,
                reason,
            }
        } else {
            SpawnError::Start {
                step: "clone",
                source,
            }
        }
    })?;
    // From here on the child exists: every failure path below kills and
    // reaps it (SandboxedChild's Drop does both).
    let process = Process::new(cloned.pid, cloned.pidfd);
    let child = SandboxedChild::new(process, layers, limits);

    if let Some(maps) = &maps {
        write_maps(cloned.pid, maps).map_err(|source| SpawnError::LayerUnavailable {
            layer: crate::LayerName::Namespaces,
            reason: format!(
                "writing the user namespace maps of pid {}: {source}",
                cloned.pid
            ),
        })?;
    }
    release(parent.sync_write).map_err(|source| SpawnError::Start {
        step: "releasing the child",
        source,
    })?;
    match read_report(parent.err_read) {
        Ok(None) => Ok(child),
        Ok(Some(report)) => {
            let stage = Stage::from_code(report.stage);
            let mut text = report.stage_text();
            if stage == Some(Stage::Exec) {
                text = format!("{text} {program_name}");
            }
            Err(SpawnError::ChildSetup {
                stage: text,
                layer: stage.and_then(|s| s.layer(namespaces)),
                source: io::Error::from_raw_os_error(report.errno),
            })
        }
        Err(source) => Err(SpawnError::Start {
            step: "reading the child's set-up report",
            source,
        }),
    }
}

/// Writes `/proc/<pid>/{setgroups,uid_map,gid_map}`, each in a single
/// write as the kernel requires.
fn write_maps(pid: libc::pid_t, maps: &IdMaps) -> io::Result<()> {
    let write = |file: &str, content: &str| -> io::Result<()> {
        let path = format!("/proc/{pid}/{file}");
        let mut f = OpenOptions::new().write(true).open(&path)?;
        let n = f.write(content.as_bytes())?;
        if n != content.len() {
            return Err(io::Error::other(format!("short write to {path}")));
        }
        Ok(())
    };
    if maps.deny_setgroups {
        write("setgroups", "deny")?;
    }
    write("uid_map", &maps.uid_map)?;
    write("gid_map", &maps.gid_map)?;
    Ok(())
}

fn release(sync_write: OwnedFd) -> io::Result<()> {
    let mut f = std::fs::File::from(sync_write);
    f.write_all(&[1])
}

/// How long the child may take between clone and exec before the parent
/// gives up on it. Set-up is a few hundred microseconds; this only guards
/// against a child stuck for a reason nobody foresaw.
const SETUP_DEADLINE_MS: i32 = 30_000;

/// `None` when the error pipe reached EOF empty: the child executed (or,
/// for a probe, exited after a complete set-up).
fn read_report(err_read: OwnedFd) -> io::Result<Option<Report>> {
    let mut f = std::fs::File::from(err_read);
    let mut buf = [0u8; REPORT_LEN];
    let mut n = 0;
    while n < REPORT_LEN {
        let mut pfd = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, SETUP_DEADLINE_MS) };
        if ready == 0 {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the child did not reach exec within {SETUP_DEADLINE_MS} ms"),
            ));
        }
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    match n {
        0 => Ok(None),
        REPORT_LEN => Ok(Some(Report::decode(&buf))),
        short => Err(io::Error::other(format!(
            "the child's set-up report was cut short ({short} of {REPORT_LEN} bytes)"
        ))),
    }
}
