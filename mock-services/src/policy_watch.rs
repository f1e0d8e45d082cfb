//! The policy in force, kept in step with its file: checked every
//! `policy_poll` (500 ms by default) and on demand (SIGHUP). A file that
//! does not load is reported and the policy in force stays.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use attestable_data::attested::ServiceVerifier;
use attestable_data::policy::{Policy, PolicyError};

/// Written at first start: empty, so every request is denied.
pub fn default_policy_text(service: &str) -> String {
    format!(
        "# Trust policy of the {service} service (docs/PROTOCOL.md, \"Trust policy and proofs\").\n\
         # Empty: no launcher root is trusted and no program is allowed, so every request is\n\
         # denied. Approve a launcher and a program with\n\
         #   mock-services policy trust-root --data DIR --service {service} --ca <launcher data>/pki/root.pem\n\
         #   mock-services policy allow --data DIR --service {service} --sha256 <executable SHA-256>\n\
         # The running service reloads this file when it changes, and on SIGHUP.\n"
    )
}

/// Loads the policy at `path`, writing the empty one first if there is none.
pub fn load_or_create(path: &Path, service: &str) -> anyhow::Result<Policy> {
    if !path.exists() {
        attestable_data::pki::write_atomic(path, default_policy_text(service).as_bytes(), 0o644)?;
    }
    Policy::load(path).with_context(|| format!("loading the {service} policy"))
}

/// What identifies a version of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    fs::metadata(path).ok().map(|m| Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// Keeps a verifier's policy equal to its file.
#[derive(Debug)]
pub struct PolicyWatch {
    path: PathBuf,
    service: String,
    verifier: Arc<ServiceVerifier>,
    seen: Mutex<Option<Stamp>>,
}

impl PolicyWatch {
    /// Watches `path` for `verifier`, whose policy was just loaded from it.
    pub fn new(path: PathBuf, verifier: Arc<ServiceVerifier>) -> Self {
        let seen = Mutex::new(stamp(&path));
        Self {
            service: verifier.service_name().to_owned(),
            path,
            verifier,
            seen,
        }
    }

    /// The policy file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reloads when the file changed since last seen; returns whether a new
    /// policy is in force.
    pub fn poll(&self) -> bool {
        let unchanged = *self.seen.lock().unwrap_or_else(|e| e.into_inner()) == stamp(&self.path);
        !unchanged && self.reload("the file changed").is_ok()
    }

    /// Loads the file and puts it in force; on failure reports it and keeps
    /// the policy in force.
    pub fn reload(&self, why: &str) -> Result<(), PolicyError> {
        // Remember this version even if it does not load, so that an error
        // is reported once, not at every poll.
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = stamp(&self.path);
        match Policy::load(&self.path) {
            Ok(policy) => {
                let doc = policy.document();
                tracing::info!(
                    service = %self.service,
                    reason = why,
                    trusted_roots = doc.trusted_roots.len(),
                    allow_rules = doc.allow.len(),
                    "policy reloaded"
                );
                self.verifier.set_policy(policy);
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    service = %self.service,
                    reason = why,
                    error = %e,
                    "policy rejected; the previous policy stays in force"
                );
                Err(e)
            }
        }
    }
}
