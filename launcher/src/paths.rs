//! The data folder's layout, in one place.
//!
//! ```text
//! <data>/
//!   launcher.db (+ -wal, -shm)   programs, builds, runs, audit events   0600
//!   store/sha256/ab/ab12…        sources and executables by SHA-256      0444 / 0555
//!   store/tmp/                   uploads and build outputs being staged
//!   pki/root.pem, root.key       the launcher's root CA                  0644 / 0600
//!   pki/tls.pem, tls.key         HTTPS server certificate (leaf, root)  0644 / 0600
//!   pki/attestation.pem, .key    attestation intermediate (run certs)   0644 / 0600
//!   pki/attestation-<id>.pem     intermediates replaced by a rotation
//!   api-token                    bearer token for /v1                    0600
//!   launcher.addr                `127.0.0.1:PORT` while serving
//!   launcher.lock                held (flock) by the running daemon
//!   sdk/<sha256>/                the C SDK every build compiles in        0755 / 0644
//!   builds/<name>/               a build's work folder (src/, out/), removed when it ends
//!   runs/<id>/work/              a run's private working folder, removed when it ends
//!
//! The root, builds/ and runs/ are 0711: the sandbox's user reaches its own
//! folder by name and lists nothing.
//! ```

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.root.join("pki")
    }

    pub fn root_cert(&self) -> PathBuf {
        self.pki_dir().join("root.pem")
    }

    pub fn root_key(&self) -> PathBuf {
        self.pki_dir().join("root.key")
    }

    /// The attestation intermediate (signs run certificates).
    pub fn attestation_cert(&self) -> PathBuf {
        self.pki_dir().join("attestation.pem")
    }

    pub fn attestation_key(&self) -> PathBuf {
        self.pki_dir().join("attestation.key")
    }

    pub fn tls_cert(&self) -> PathBuf {
        self.pki_dir().join("tls.pem")
    }

    pub fn tls_key(&self) -> PathBuf {
        self.pki_dir().join("tls.key")
    }

    pub fn api_token(&self) -> PathBuf {
        self.root.join("api-token")
    }

    pub fn addr_file(&self) -> PathBuf {
        self.root.join("launcher.addr")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.root.join("launcher.lock")
    }

    pub fn builds_dir(&self) -> PathBuf {
        self.root.join("builds")
    }

    pub fn build_dir(&self, id: i64) -> PathBuf {
        self.builds_dir().join(id.to_string())
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    pub fn run_dir(&self, id: i64) -> PathBuf {
        self.runs_dir().join(id.to_string())
    }

    /// The C SDK, by version: `sdk/<sha256>/attestable.{h,c}`.
    pub fn sdk_dir(&self) -> PathBuf {
        self.root.join("sdk")
    }

    /// Creates the folders the daemon writes to. The root, `builds/` and
    /// `runs/` are 0711: the sandbox's user (65534) must reach a build's or
    /// run's folder inside, but may list nothing; everything else is 0700.
    pub fn create(&self) -> io::Result<()> {
        for dir in [self.root.clone(), self.builds_dir(), self.runs_dir()] {
            create_searchable_dir(&dir)?;
        }
        create_private_dir(&self.pki_dir())
    }

    /// Removes build and run work folders a previous process left behind.
    pub fn clear_work_dirs(&self) -> io::Result<usize> {
        let mut removed = 0;
        for dir in [self.builds_dir(), self.runs_dir()] {
            for entry in fs::read_dir(&dir)? {
                let path = entry?.path();
                remove_tree(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Creates `dir` with mode 0700, or accepts it if it already exists.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    }
}

/// Creates `dir` with mode 0711 (search only for others), or makes an
/// existing folder so.
pub fn create_searchable_dir(dir: &Path) -> io::Result<()> {
    let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
    match fs::DirBuilder::new().mode(0o711).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(context(e)),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o711)).map_err(context)
}

/// Removes a file or folder tree, making read-only folders writable first
/// (a program may have `chmod`ed its own working folder).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        for entry in fs::read_dir(path)? {
            remove_tree(&entry?.path())?;
        }
        fs::remove_dir(path)
    } else {
        fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_folders_are_cleared_even_when_read_only() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("data"));
        data.create().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(data.root()), 0o711);
        assert_eq!(mode(&data.runs_dir()), 0o711);
        assert_eq!(mode(&data.pki_dir()), 0o700);
        let run = data.run_dir(7);
        create_private_dir(&run).unwrap();
        fs::write(run.join("out.txt"), b"x").unwrap();
        fs::set_permissions(&run, fs::Permissions::from_mode(0o500)).unwrap();
        create_private_dir(&data.build_dir(3)).unwrap();
        assert_eq!(data.clear_work_dirs().unwrap(), 2);
        assert_eq!(fs::read_dir(data.runs_dir()).unwrap().count(), 0);
        assert_eq!(fs::read_dir(data.builds_dir()).unwrap().count(), 0);
    }
}
