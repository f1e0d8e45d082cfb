//! Measured execution: the bytes that are hashed are the bytes that run.
//!
//! On Linux the executable is read once, each chunk both hashed and copied
//! into a `memfd`, which is then sealed against every change (including its
//! execute bits where the kernel knows `F_SEAL_EXEC`). The child executes
//! that memfd with `execveat(fd, "", …, AT_EMPTY_PATH)`, so replacing or
//! rewriting the file on disk after [`MeasuredExecutable::open`] changes
//! neither what runs nor the hash.
//!
//! On FreeBSD the file itself is opened, hashed and later run with
//! `fexecve` on that descriptor. That pins the inode, not its contents: a
//! process able to write the file could change it between hashing and
//! running. `open` therefore refuses files that anyone other than their
//! owner (who must be the launcher's user) can write.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use openssl::sha::Sha256;

use crate::elf::{ElfError, ElfInfo, HEADER_WINDOW};

/// Largest executable accepted; the whole file is copied into memory
/// (Linux) or read (FreeBSD) once.
pub const MAX_EXECUTABLE_BYTES: u64 = 256 << 20;

/// An executable read once and hashed, ready to be executed as exactly
/// those bytes.
pub struct MeasuredExecutable {
    fd: OwnedFd,
    sha256: [u8; 32],
    len: u64,
    source: PathBuf,
    elf: ElfInfo,
}

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("cannot open executable {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("executable {path} is not a regular file")]
    NotRegular { path: PathBuf },
    #[error("executable {path} is {len} bytes, above the limit of {max}")]
    TooLarge { path: PathBuf, len: u64, max: u64 },
    #[error(
        "executable {path} changed size while it was read (expected {expected} bytes, read {read})"
    )]
    Changed {
        path: PathBuf,
        expected: u64,
        read: u64,
    },
    #[error("executable {path}: {source}")]
    NotElf { path: PathBuf, source: ElfError },
    #[error("cannot read executable {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot make the sealed copy of {path} ({step}): {source}")]
    Memfd {
        path: PathBuf,
        step: &'static str,
        source: io::Error,
    },
    #[error(
        "executable {path} is writable by others than its owner or not owned by the launcher's user (mode {mode:o}, owner {owner}, launcher {euid}); fexecve cannot pin its contents"
    )]
    Writable {
        path: PathBuf,
        mode: u32,
        owner: u32,
        euid: u32,
    },
}

impl MeasuredExecutable {
    /// Reads `path` once, hashing the bytes as they are copied (Linux) or
    /// read (FreeBSD), and keeps a descriptor that executes exactly them.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, MeasureError> {
        let path = path.as_ref();
        let mut file = File::open(path).map_err(|source| MeasureError::Open {
            path: path.to_owned(),
            source,
        })?;
        let meta = file.metadata().map_err(|source| MeasureError::Open {
            path: path.to_owned(),
            source,
        })?;
        if !meta.is_file() {
            return Err(MeasureError::NotRegular {
                path: path.to_owned(),
            });
        }
        if meta.len() > MAX_EXECUTABLE_BYTES {
            return Err(MeasureError::TooLarge {
                path: path.to_owned(),
                len: meta.len(),
                max: MAX_EXECUTABLE_BYTES,
            });
        }
        platform::check_file(path, &meta)?;

        let mut sink = platform::Sink::new(path)?;
        let mut hasher = Sha256::new();
        let mut header = Vec::with_capacity(HEADER_WINDOW);
        let mut buf = vec![0u8; 64 * 1024];
        let mut len: u64 = 0;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(MeasureError::Read {
                        path: path.to_owned(),
                        source,
                    });
                }
            };
            let chunk = &buf[..n];
            len += n as u64;
            if len > MAX_EXECUTABLE_BYTES {
                return Err(MeasureError::TooLarge {
                    path: path.to_owned(),
                    len,
                    max: MAX_EXECUTABLE_BYTES,
                });
            }
            hasher.update(chunk);
            let room = HEADER_WINDOW - header.len();
            header.extend_from_slice(&chunk[..n.min(room)]);
            sink.write(path, chunk)?;
        }
        if len != meta.len() {
            return Err(MeasureError::Changed {
                path: path.to_owned(),
                expected: meta.len(),
                read: len,
            });
        }
        let elf = ElfInfo::parse(&header).map_err(|source| MeasureError::NotElf {
            path: path.to_owned(),
            source,
        })?;
        let fd = sink.finish(path, file)?;
        Ok(MeasuredExecutable {
            fd,
            sha256: hasher.finish(),
            len,
            source: path.to_owned(),
            elf,
        })
    }

    /// SHA-256 of the bytes that run (raw, for certificate extension `.4`).
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// SHA-256 of the bytes that run, 64 lowercase hex digits.
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The path it was read from (informative only: what runs is the copy).
    pub fn source_path(&self) -> &Path {
        &self.source
    }

    /// Facts from its ELF headers (interpreter, CHERI purecap).
    pub fn elf(&self) -> &ElfInfo {
        &self.elf
    }

    /// The descriptor that is executed: a sealed memfd on Linux, the opened
    /// file on FreeBSD. Close-on-exec.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for MeasuredExecutable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeasuredExecutable")
            .field("source", &self.source)
            .field("sha256", &self.sha256_hex())
            .field("len", &self.len)
            .field("interpreter", &self.elf.interpreter)
            .finish()
    }
}

#[cfg(target_os = "linux")]
mod platform {
    use super::*;
    use std::ffi::CStr;
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::fs::PermissionsExt;

    /// Seals that make the copy immutable; `F_SEAL_EXEC` (Linux 6.3) is
    /// added when the kernel knows it.
    const SEALS: libc::c_int =
        libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;

    pub(super) fn check_file(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), MeasureError> {
        // The sealed copy removes any dependence on the file after reading.
        Ok(())
    }

    pub(super) struct Sink {
        memfd: File,
    }

    fn err(path: &Path, step: &'static str, source: io::Error) -> MeasureError {
        MeasureError::Memfd {
            path: path.to_owned(),
            step,
            source,
        }
    }

    impl Sink {
        pub(super) fn new(path: &Path) -> Result<Self, MeasureError> {
            let name: &CStr = c"attestable-executable";
            let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
            // MFD_EXEC (Linux 6.3) states the intent explicitly, so a
            // vm.memfd_noexec=1 default does not make the copy non-executable;
            // older kernels reject the unknown flag with EINVAL.
            // SAFETY: name is a valid C string; flags are plain integers.
            let mut fd = unsafe { libc::memfd_create(name.as_ptr(), base | libc::MFD_EXEC) };
            if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                // SAFETY: as above.
                fd = unsafe { libc::memfd_create(name.as_ptr(), base) };
            }
            if fd < 0 {
                return Err(err(path, "memfd_create", io::Error::last_os_error()));
            }
            // SAFETY: memfd_create returned a new descriptor that we own.
            let memfd = unsafe { File::from_raw_fd(fd) };
            Ok(Sink { memfd })
        }

        pub(super) fn write(&mut self, path: &Path, chunk: &[u8]) -> Result<(), MeasureError> {
            self.memfd
                .write_all(chunk)
                .map_err(|e| err(path, "write", e))
        }

        pub(super) fn finish(self, path: &Path, original: File) -> Result<OwnedFd, MeasureError> {
            drop(original);
            // r-x for everyone: the sandbox runs under another uid than the
            // launcher that owns the memfd.
            self.memfd
                .set_permissions(std::fs::Permissions::from_mode(0o555))
                .map_err(|e| err(path, "fchmod", e))?;
            let fd = self.memfd.as_raw_fd();
            // SAFETY: fcntl on a descriptor we own with integer arguments.
            let mut rc = unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, SEALS | libc::F_SEAL_EXEC) };
            if rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                // SAFETY: as above.
                rc = unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, SEALS) };
            }
            if rc < 0 {
                return Err(err(path, "F_ADD_SEALS", io::Error::last_os_error()));
            }
            // SAFETY: as above.
            let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
            if seals < 0 || seals & SEALS != SEALS {
                return Err(err(
                    path,
                    "F_GET_SEALS",
                    io::Error::other(format!(
                        "expected seals {SEALS:#x} in force, found {seals:#x}"
                    )),
                ));
            }
            Ok(OwnedFd::from(self.memfd))
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod platform {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// fexecve pins the inode, not its contents: only a file that no one
    /// but the launcher's own user can write keeps its measured bytes.
    pub(super) fn check_file(path: &Path, meta: &std::fs::Metadata) -> Result<(), MeasureError> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 || meta.uid() != euid {
            return Err(MeasureError::Writable {
                path: path.to_owned(),
                mode,
                owner: meta.uid(),
                euid,
            });
        }
        Ok(())
    }

    pub(super) struct Sink;

    impl Sink {
        pub(super) fn new(_path: &Path) -> Result<Self, MeasureError> {
            Ok(Sink)
        }

        pub(super) fn write(&mut self, _path: &Path, _chunk: &[u8]) -> Result<(), MeasureError> {
            Ok(())
        }

        pub(super) fn finish(self, _path: &Path, original: File) -> Result<OwnedFd, MeasureError> {
            Ok(OwnedFd::from(original))
        }
    }
}
