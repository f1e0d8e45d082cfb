//! The descriptors a sandboxed child gets as 0, 1, 2 and 3, prepared in the
//! parent by both backends.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::error::SpawnError;

/// Duplicates `fd` to the lowest free descriptor at or above `min`,
/// close-on-exec: the child then places each with `dup2` (0 to 3) without
/// one overwriting another.
pub(crate) fn dup_at_least(
    fd: BorrowedFd<'_>,
    min: RawFd,
    step: &'static str,
) -> Result<OwnedFd, SpawnError> {
    // SAFETY: F_DUPFD_CLOEXEC on a valid descriptor.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if rc < 0 {
        return Err(SpawnError::prepare(step)(io::Error::last_os_error()));
    }
    // SAFETY: a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc) })
}

/// The child's stdin (`/dev/null`), stdout and stderr (the spec's, else
/// `/dev/null`) and channel, each at or above the backend's first free
/// descriptor.
pub(crate) struct ChildFds {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub channel: Option<OwnedFd>,
}

impl ChildFds {
    pub(crate) fn prepare(
        stdout: Option<&OwnedFd>,
        stderr: Option<&OwnedFd>,
        channel: Option<&OwnedFd>,
        min: RawFd,
    ) -> Result<Self, SpawnError> {
        // std opens it close-on-exec.
        let devnull = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(SpawnError::prepare("opening /dev/null"))?;
        let null = devnull.as_fd();
        Ok(Self {
            stdin: dup_at_least(null, min, "stdin")?,
            stdout: dup_at_least(stdout.map_or(null, |f| f.as_fd()), min, "stdout")?,
            stderr: dup_at_least(stderr.map_or(null, |f| f.as_fd()), min, "stderr")?,
            channel: channel
                .map(|c| dup_at_least(c.as_fd(), min, "channel"))
                .transpose()?,
        })
    }
}
