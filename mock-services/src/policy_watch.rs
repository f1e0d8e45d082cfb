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
/// Also returns the version of the file it loaded, taken *before* reading
/// it, for [`PolicyWatch::new`]: an edit made while the service starts is
/// then seen as a change and loaded, never taken for the version in force.
pub fn load_or_create(path: &Path, service: &str) -> anyhow::Result<(Policy, Loaded)> {
    if !path.exists() {
        attestable_data::pki::write_atomic(path, default_policy_text(service).as_bytes(), 0o644)?;
    }
    let loaded = Loaded(stamp(path));
    let policy = Policy::load(path).with_context(|| format!("loading the {service} policy"))?;
    Ok((policy, loaded))
}

/// The version of the policy file a service started with.
#[derive(Debug, Clone, Copy)]
pub struct Loaded(Option<Stamp>);

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
    /// Watches `path` for `verifier`, whose policy was loaded from it as it
    /// was at `loaded`.
    pub fn new(path: PathBuf, verifier: Arc<ServiceVerifier>, loaded: Loaded) -> Self {
        let seen = Mutex::new(loaded.0);
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

#[cfg(test)]
mod tests {
    use super::*;
    use attestable_data::attested::ServiceIdentity;
    use attestable_data::pki::{CertificateAuthority, ServerCertSpec, generate_p256_key};

    fn verifier(policy: Policy) -> Arc<ServiceVerifier> {
        let ca = CertificateAuthority::create_root("services CA", None, 1).unwrap();
        let key = generate_p256_key().unwrap();
        let certificate = ca
            .issue_server_cert(
                &key,
                &ServerCertSpec {
                    common_name: "store".into(),
                    organization: None,
                    dns_names: vec!["localhost".into()],
                    ip_addresses: vec![],
                    days: 1,
                },
            )
            .unwrap();
        Arc::new(ServiceVerifier::new(
            ServiceIdentity {
                name: "store".into(),
                key,
                certificate,
            },
            policy,
        ))
    }

    #[test]
    fn an_edit_made_while_the_service_starts_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        let (policy, loaded) = load_or_create(&path, "store").unwrap();
        let verifier = verifier(policy);
        // The operator's edit lands after the load, before the watch starts
        // (the demo allows the program right after starting the services).
        let edited = format!(
            "{}# allowed at start-up\n",
            fs::read_to_string(&path).unwrap()
        );
        fs::write(&path, edited).unwrap();
        let watch = PolicyWatch::new(path.clone(), verifier, loaded);
        assert!(watch.poll(), "the edit was taken for the version in force");
        assert!(!watch.poll(), "the same version is loaded once");
    }
}
