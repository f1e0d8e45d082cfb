//! The data folder's layout, in one place.
//!
//! ```text
//! <data>/
//!   launcher.db (+ -wal, -shm)   programs, builds, runs, audit events   0600
//!   store/sha256/ab/ab12…        sources and executables by SHA-256      0444 / 0555
//!   store/tmp/                   uploads and build outputs being staged
//!   pki/root.pem, root.key       the launcher's root CA                  0644 / 0600
//!   pki/tls.pem, tls.key         HTTPS server certificate (leaf, root)  0644 / 0600
//!   api-token                    bearer token for /v1                    0600
//!   launcher.addr                `127.0.0.1:PORT` while serving
//!   launcher.lock                held (flock) by the running daemon
//!   builds/<id>/                 a build's work folder, removed when it ends
//!   runs/<id>/                   a run's working folder, removed when it ends
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

    /// Creates the folders the daemon writes to (mode 0700).
    pub fn create(&self) -> io::Result<()> {
        for dir in [
            self.root.clone(),
            self.pki_dir(),
            self.builds_dir(),
            self.runs_dir(),
        ] {
            create_private_dir(&dir)?;
        }
        Ok(())
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
        let mode = fs::metadata(data.root()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
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
