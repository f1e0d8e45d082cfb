//! The data folder: where every file of the services lives, and the locks
//! that keep two processes from setting it up or serving it at once.
//!
//! ```text
//! DIR/
//!   ca/ca.pem, ca/ca.key        the services CA (key 0600)
//!   services-ca.pem             its certificate: what programs compile in as their anchor
//!   operator-token              bearer token of the operator views (0600)
//!   config.toml                 optional settings (customer reply, trip length)
//!   <service>.addr              `127.0.0.1:PORT` while the service runs
//!   <service>/key.pem, cert.pem the service's key (0600) and certificate
//!   <service>/<service>.db      SQLite (WAL): business tables and the audit table
//!   <service>/policy.toml       the trust policy (empty: deny everything)
//!   <service>/decisions.log     one JSON line per decision
//!   <service>/lock              held by the running service
//! ```

use std::fs;
use std::io::{Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::kind::ServiceKind;

/// Paths inside a data folder.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data folder at `root` (nothing is created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Creates the folder, `ca/` and the per-service folders (mode 0700).
    pub fn create(&self) -> anyhow::Result<()> {
        let mut dirs = vec![self.root.clone(), self.root.join("ca")];
        dirs.extend(ServiceKind::ALL.map(|k| self.service_dir(k)));
        for dir in dirs {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(())
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The services CA's certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca").join("ca.pem")
    }

    /// The services CA's key.
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca").join("ca.key")
    }

    /// Held while the CA and service identities are set up.
    fn setup_lock(&self) -> PathBuf {
        self.root.join("ca").join("setup.lock")
    }

    /// The exported services CA certificate.
    pub fn services_ca(&self) -> PathBuf {
        self.root.join("services-ca.pem")
    }

    /// The operator views' bearer token.
    pub fn operator_token(&self) -> PathBuf {
        self.root.join("operator-token")
    }

    /// The optional settings file.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// `<service>.addr`.
    pub fn addr_file(&self, kind: ServiceKind) -> PathBuf {
        self.root.join(format!("{kind}.addr"))
    }

    /// `<service>/`.
    pub fn service_dir(&self, kind: ServiceKind) -> PathBuf {
        self.root.join(kind.name())
    }

    /// The service's private key.
    pub fn service_key(&self, kind: ServiceKind) -> PathBuf {
        self.service_dir(kind).join("key.pem")
    }

    /// The service's certificate.
    pub fn service_cert(&self, kind: ServiceKind) -> PathBuf {
        self.service_dir(kind).join("cert.pem")
    }

    /// The service's SQLite database.
    pub fn database(&self, kind: ServiceKind) -> PathBuf {
        self.service_dir(kind).join(format!("{kind}.db"))
    }

    /// The service's trust policy.
    pub fn policy(&self, kind: ServiceKind) -> PathBuf {
        self.service_dir(kind).join("policy.toml")
    }

    /// The service's decision log (JSON lines).
    pub fn decisions_log(&self, kind: ServiceKind) -> PathBuf {
        self.service_dir(kind).join("decisions.log")
    }

    fn instance_lock(&self, kind: ServiceKind) -> PathBuf {
        self.service_dir(kind).join("lock")
    }

    /// Waits for the setup lock (two services starting on a fresh folder
    /// must not create two CAs).
    pub fn lock_setup(&self) -> anyhow::Result<FileLock> {
        FileLock::acquire(&self.setup_lock(), true)
    }

    /// Takes the service's instance lock, refusing when another process holds it.
    pub fn lock_service(&self, kind: ServiceKind) -> anyhow::Result<FileLock> {
        let path = self.instance_lock(kind);
        let mut lock = FileLock::acquire(&path, false).with_context(|| {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            format!(
                "the {kind} service already runs on {} (pid {})",
                self.root.display(),
                holder.trim()
            )
        })?;
        lock.write_pid()?;
        Ok(lock)
    }
}

/// An exclusive `flock` on a file, released when dropped.
#[derive(Debug)]
pub struct FileLock {
    file: fs::File,
}

impl FileLock {
    fn acquire(path: &Path, wait: bool) -> anyhow::Result<Self> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let op = if wait {
            libc::LOCK_EX
        } else {
            libc::LOCK_EX | libc::LOCK_NB
        };
        loop {
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
                return Ok(Self { file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                bail!("locking {}: {err}", path.display());
            }
        }
    }

    fn write_pid(&mut self) -> anyhow::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        write!(self.file, "{}", std::process::id())?;
        self.file.flush()?;
        Ok(())
    }
}
