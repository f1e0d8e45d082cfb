//! The attestation intermediate: the key that signs run certificates.
//!
//! Chain: root CA (`<data>/pki/root.pem`, or the operator's `[pki] root_cert`)
//! → attestation intermediate (`<data>/pki/attestation.pem`, key
//! `attestation.key` 0600) → run certificates. First start creates the
//! intermediate; later starts load it. `launcher pki rotate-attestation`
//! replaces it (the old certificate is archived beside it, see
//! [`AttestationAuthority::rotate`]); a running daemon picks the new one up
//! on SIGHUP or within [`WATCH_INTERVAL`] of the files changing, so rotation
//! needs no restart. Until then, and whenever a new one does not load, the
//! daemon keeps issuing with the one it has.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use attestable_data::certificate::AttestationAuthority;
use attestable_data::pki::{self, CertificateAuthority, read_certs_pem, seconds_until_expiry};
use openssl::x509::X509;
use serde::Deserialize;

use crate::paths::DataDir;

/// How often a running daemon looks for a rotated intermediate.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Warn at start-up when the intermediate has less than this left.
const WARN_BEFORE_DAYS: i64 = 30;

const ATTESTATION_CN: &str = "Attestable launcher attestation";

/// `[pki]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PkiConfig {
    /// An operator-supplied root certificate (PEM; its first certificate is
    /// the root) replacing the generated one; needs `root_key`.
    pub root_cert: Option<PathBuf>,
    /// The key of `root_cert` (PEM, mode 0600).
    pub root_key: Option<PathBuf>,
    /// Validity of a new attestation intermediate, in days (capped at the
    /// root's remaining validity).
    pub attestation_days: u32,
}

impl Default for PkiConfig {
    fn default() -> Self {
        Self {
            root_cert: None,
            root_key: None,
            attestation_days: 365,
        }
    }
}

impl PkiConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.root_cert.is_some() != self.root_key.is_some() {
            return Err(
                "pki.root_cert and pki.root_key go together: give both or neither".to_owned(),
            );
        }
        if !(1..=3650).contains(&self.attestation_days) {
            return Err(format!(
                "pki.attestation_days is {}; expected 1 to 3650",
                self.attestation_days
            ));
        }
        Ok(())
    }

    /// Resolves relative paths against the configuration file's folder.
    pub fn resolve_paths(&mut self, base: &Path) {
        for path in [&mut self.root_cert, &mut self.root_key]
            .into_iter()
            .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// The operator's root, if configured.
    pub fn operator_root(&self) -> anyhow::Result<Option<CertificateAuthority>> {
        let (Some(cert), Some(key)) = (&self.root_cert, &self.root_key) else {
            return Ok(None);
        };
        let root = CertificateAuthority::load(cert, key).with_context(|| {
            format!(
                "loading the operator's root CA ([pki] root_cert = {}, root_key = {})",
                cert.display(),
                key.display()
            )
        })?;
        let is_ca = root
            .certificate()
            .to_text()
            .map(|t| String::from_utf8_lossy(&t).contains("CA:TRUE"))
            .unwrap_or(false);
        if !is_ca {
            bail!(
                "the operator's root {} is not a CA certificate (basicConstraints CA:TRUE expected)",
                cert.display()
            );
        }
        Ok(Some(root))
    }
}

/// Days a new intermediate under `root` gets: the configured number, but not
/// beyond the root's own expiry.
fn intermediate_days(root: &CertificateAuthority, configured: u32) -> anyhow::Result<u32> {
    let left = seconds_until_expiry(root.certificate())?;
    if left < 86_400 {
        bail!(
            "the root CA expires in {} s: less than a day is left to issue an attestation \
             intermediate under it; replace the root",
            left.max(0)
        );
    }
    Ok(configured.min(u32::try_from(left / 86_400).unwrap_or(u32::MAX)))
}

/// Whether `cert` was signed by `root`.
fn issued_by(cert: &X509, root: &CertificateAuthority) -> bool {
    root.certificate()
        .public_key()
        .and_then(|key| cert.verify(&key))
        .unwrap_or(false)
}

/// Loads the intermediate, or creates it at first start. An intermediate
/// that the current root did not sign (the operator replaced the root) is
/// rotated; one file without the other is an error, never silently replaced.
pub fn ensure_attestation(
    data: &DataDir,
    root: &CertificateAuthority,
    days: u32,
) -> anyhow::Result<AttestationAuthority> {
    let (cert_path, key_path) = (data.attestation_cert(), data.attestation_key());
    let issuers = vec![root.certificate().clone()];
    let authority = match (cert_path.exists(), key_path.exists()) {
        (false, false) => {
            let authority =
                AttestationAuthority::create(root, ATTESTATION_CN, intermediate_days(root, days)?)?;
            authority.save(&cert_path, &key_path)?;
            tracing::info!(
                path = %cert_path.display(),
                key_id = %authority.key_id(),
                "created the attestation intermediate"
            );
            authority
        }
        (true, true) => {
            let current = read_certs_pem(&cert_path)?.remove(0);
            if issued_by(&current, root) {
                AttestationAuthority::load(&cert_path, &key_path, issuers).with_context(|| {
                    format!(
                        "loading the attestation intermediate {}",
                        cert_path.display()
                    )
                })?
            } else {
                let (authority, archived) = AttestationAuthority::rotate(
                    root,
                    &cert_path,
                    &key_path,
                    ATTESTATION_CN,
                    intermediate_days(root, days)?,
                )?;
                tracing::warn!(
                    archived = ?archived,
                    key_id = %authority.key_id(),
                    "the attestation intermediate was not issued by the current root: rotated"
                );
                authority
            }
        }
        (has_cert, _) => bail!(
            "{} exists but {} does not; restore the missing file, or remove both to create \
             a new attestation intermediate",
            if has_cert { &cert_path } else { &key_path }.display(),
            if has_cert { &key_path } else { &cert_path }.display(),
        ),
    };
    warn_if_expiring(&authority);
    Ok(authority)
}

fn warn_if_expiring(authority: &AttestationAuthority) {
    let left = authority.not_after() - pki::unix_now();
    if left <= 0 {
        tracing::error!(
            "the attestation intermediate has expired: no run certificate can be issued; \
             run `launcher pki rotate-attestation --data DIR`"
        );
    } else if left < WARN_BEFORE_DAYS * 86_400 {
        tracing::warn!(
            days_left = left / 86_400,
            "the attestation intermediate expires soon; run `launcher pki rotate-attestation --data DIR`"
        );
    }
}

/// What `launcher pki rotate-attestation` did.
#[derive(Debug)]
pub struct Rotation {
    pub key_id: String,
    pub not_after: i64,
    pub archived: Option<PathBuf>,
}

/// Replaces the intermediate under `root` (the daemon may be running: it
/// picks the new one up by itself).
pub fn rotate(data: &DataDir, root: &CertificateAuthority, days: u32) -> anyhow::Result<Rotation> {
    crate::paths::create_private_dir(&data.pki_dir())?;
    let (authority, archived) = AttestationAuthority::rotate(
        root,
        &data.attestation_cert(),
        &data.attestation_key(),
        ATTESTATION_CN,
        intermediate_days(root, days)?,
    )?;
    Ok(Rotation {
        key_id: authority.key_id().to_string(),
        not_after: authority.not_after(),
        archived,
    })
}

/// The root whose key signs intermediates: the operator's (`[pki]`), else
/// `<data>/pki/root.*`, which must exist (this never creates a root).
pub fn load_root(data: &DataDir, config: &PkiConfig) -> anyhow::Result<CertificateAuthority> {
    if let Some(root) = config.operator_root()? {
        return Ok(root);
    }
    let (cert, key) = (data.root_cert(), data.root_key());
    if cert.exists() && !key.exists() {
        bail!(
            "{} has no key beside it: the launcher uses an operator-supplied root; pass the \
             launcher's configuration (--config FILE) naming it in [pki] root_cert and root_key",
            cert.display()
        );
    }
    if !cert.exists() || !key.exists() {
        bail!(
            "{} has no root CA ({} and {} are expected): start the daemon once to create the              launcher's PKI, or name the operator's root in the configuration ([pki] root_cert, root_key)",
            data.root().display(),
            cert.display(),
            key.display()
        );
    }
    CertificateAuthority::load(&cert, &key)
        .with_context(|| format!("loading the root CA from {}", data.pki_dir().display()))
}

/// `launcher pki rotate-attestation`: rotates and says what it did.
pub fn rotate_command(data: &Path, config: Option<&Path>) -> anyhow::Result<String> {
    let config = crate::config::Config::load(config)?;
    let data = DataDir::new(data);
    if !data.root().is_dir() {
        bail!("{} is not a launcher data folder", data.root().display());
    }
    let root = load_root(&data, &config.pki)?;
    let rotation = rotate(&data, &root, config.pki.attestation_days)?;
    let until = time::OffsetDateTime::from_unix_timestamp(rotation.not_after)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| rotation.not_after.to_string());
    let mut message = format!(
        "rotated the attestation intermediate: key id {}, valid until {until}",
        rotation.key_id
    );
    if let Some(archived) = &rotation.archived {
        message.push_str(&format!(
            "; the previous certificate is kept as {}",
            archived.display()
        ));
    }
    message.push_str(
        ". A running launcher uses it for new runs within a second (at once on SIGHUP); \
         certificates issued before stay valid.",
    );
    Ok(message)
}

/// Identity of a file's current content, to notice replacements cheaply.
type Stamp = Option<(u64, u64, i64, i64, u64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
}

/// The intermediate in force, shared by every run; replaced when the files change.
pub struct Attestation {
    current: RwLock<Arc<AttestationAuthority>>,
    cert_path: PathBuf,
    key_path: PathBuf,
    issuers: Vec<X509>,
    root_pem: String,
    stamps: std::sync::Mutex<(Stamp, Stamp)>,
}

impl std::fmt::Debug for Attestation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attestation")
            .field("cert", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl Attestation {
    pub fn new(
        data: &DataDir,
        root: &CertificateAuthority,
        authority: AttestationAuthority,
    ) -> Self {
        let (cert_path, key_path) = (data.attestation_cert(), data.attestation_key());
        let stamps = (stamp(&cert_path), stamp(&key_path));
        Self {
            current: RwLock::new(Arc::new(authority)),
            root_pem: String::from_utf8_lossy(&root.certificate().to_pem().unwrap_or_default())
                .into_owned(),
            cert_path,
            key_path,
            issuers: vec![root.certificate().clone()],
            stamps: std::sync::Mutex::new(stamps),
        }
    }

    /// The intermediate to issue with now.
    pub fn current(&self) -> Arc<AttestationAuthority> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `GET /v1/ca`: the root, then the intermediate in force (PEM). The root
    /// comes first so that a client reading only the first certificate gets it.
    pub fn ca_chain_pem(&self) -> String {
        let current = self.current();
        let intermediate = current
            .certificate()
            .to_pem()
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .unwrap_or_default();
        format!("{}{intermediate}", self.root_pem)
    }

    /// Loads the intermediate from its files again; true if it changed.
    /// On failure the one in force stays.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let loaded =
            AttestationAuthority::load(&self.cert_path, &self.key_path, self.issuers.clone())
                .with_context(|| {
                    format!(
                        "loading the attestation intermediate {}",
                        self.cert_path.display()
                    )
                })?;
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.key_id() == loaded.key_id()
            && current.certificate().to_der().ok() == loaded.certificate().to_der().ok()
        {
            return Ok(false);
        }
        tracing::info!(
            old_key_id = %current.key_id(),
            new_key_id = %loaded.key_id(),
            "loaded a new attestation intermediate"
        );
        warn_if_expiring(&loaded);
        *current = Arc::new(loaded);
        Ok(true)
    }

    /// Reloads if the files changed since the last look.
    fn reload_if_changed(&self) {
        let now = (stamp(&self.cert_path), stamp(&self.key_path));
        {
            let mut seen = self.stamps.lock().unwrap_or_else(PoisonError::into_inner);
            if *seen == now {
                return;
            }
            *seen = now;
        }
        // A rotation writes the key and then the certificate: between the two
        // the pair does not match, and the next change loads it.
        if let Err(err) = self.reload() {
            tracing::debug!(error = %format!("{err:#}"), "attestation intermediate not reloaded yet");
        }
    }

    /// Watches for rotations (file changes, SIGHUP) until the process ends.
    pub fn watch(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let mut hangup = match signal(SignalKind::hangup()) {
                Ok(s) => Some(s),
                Err(err) => {
                    tracing::warn!(error = %err, "no SIGHUP handler; rotations are noticed by polling");
                    None
                }
            };
            let mut tick = tokio::time::interval(WATCH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let hup = async {
                    match hangup.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tick.tick() => self.reload_if_changed(),
                    _ = hup => {
                        tracing::info!("SIGHUP: reloading the attestation intermediate");
                        if let Err(err) = self.reload() {
                            tracing::error!(error = %format!("{err:#}"), "reloading the attestation intermediate failed; the previous one stays in force");
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> (tempfile::TempDir, DataDir) {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        data.create().unwrap();
        (dir, data)
    }

    #[test]
    fn created_once_loaded_later_and_rotated_under_a_new_root() {
        let (_dir, data) = data();
        let root = CertificateAuthority::create_root("r", None, 3650).unwrap();
        let first = ensure_attestation(&data, &root, 365).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.attestation_key())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = ensure_attestation(&data, &root, 365).unwrap();
        assert_eq!(first.key_id(), again.key_id());

        let other = CertificateAuthority::create_root("operator", None, 100).unwrap();
        let rotated = ensure_attestation(&data, &other, 365).unwrap();
        assert_ne!(rotated.key_id(), first.key_id());
        assert!(issued_by(rotated.certificate(), &other));
        // Capped at the root's validity.
        assert!(rotated.not_after() <= pki::unix_now() + 100 * 86_400);
        let archived: Vec<_> = std::fs::read_dir(data.pki_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("attestation-"))
            .collect();
        assert_eq!(archived.len(), 1);
    }

    #[test]
    fn a_lone_file_is_an_error() {
        let (_dir, data) = data();
        let root = CertificateAuthority::create_root("r", None, 3650).unwrap();
        ensure_attestation(&data, &root, 365).unwrap();
        std::fs::remove_file(data.attestation_key()).unwrap();
        let err = ensure_attestation(&data, &root, 365)
            .unwrap_err()
            .to_string();
        assert!(err.contains("attestation.key does not"), "{err}");
    }

    #[test]
    fn a_rotation_is_picked_up_and_a_broken_one_is_not() {
        let (_dir, data) = data();
        let root = CertificateAuthority::create_root("r", None, 3650).unwrap();
        let authority = ensure_attestation(&data, &root, 365).unwrap();
        let first = authority.key_id();
        let attestation = Attestation::new(&data, &root, authority);
        assert!(!attestation.reload().unwrap());
        let chain = attestation.ca_chain_pem();
        let certs = X509::stack_from_pem(chain.as_bytes()).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(
            certs[0].to_der().unwrap(),
            root.certificate().to_der().unwrap(),
            "root first"
        );

        let rotation = rotate(&data, &root, 365).unwrap();
        assert!(rotation.archived.is_some());
        attestation.reload_if_changed();
        assert_ne!(attestation.current().key_id(), first);
        assert_eq!(attestation.current().key_id().to_string(), rotation.key_id);

        // A key that does not match: the intermediate in force stays.
        let in_force = attestation.current().key_id();
        pki::write_private_key(&data.attestation_key(), &pki::generate_p256_key().unwrap())
            .unwrap();
        assert!(attestation.reload().is_err());
        attestation.reload_if_changed();
        assert_eq!(attestation.current().key_id(), in_force);
    }

    #[test]
    fn operator_roots_need_both_files_and_a_ca() {
        let config = PkiConfig {
            root_cert: Some("r.pem".into()),
            ..Default::default()
        };
        assert!(config.validate().unwrap_err().contains("go together"));
        let dir = tempfile::tempdir().unwrap();
        let root = CertificateAuthority::create_root("operator root", None, 30).unwrap();
        root.save(&dir.path().join("r.pem"), &dir.path().join("r.key"))
            .unwrap();
        let mut config = PkiConfig {
            root_cert: Some("r.pem".into()),
            root_key: Some("r.key".into()),
            ..Default::default()
        };
        config.resolve_paths(dir.path());
        let loaded = config.operator_root().unwrap().unwrap();
        assert_eq!(
            loaded.certificate().to_der().unwrap(),
            root.certificate().to_der().unwrap()
        );
        // A leaf is not a root.
        let key = pki::generate_p256_key().unwrap();
        let leaf = root
            .issue_server_cert(
                &key,
                &pki::ServerCertSpec {
                    common_name: "leaf".into(),
                    organization: None,
                    dns_names: vec!["localhost".into()],
                    ip_addresses: vec![],
                    days: 1,
                },
            )
            .unwrap();
        pki::write_certs_pem(&dir.path().join("leaf.pem"), &[&leaf]).unwrap();
        pki::write_private_key(&dir.path().join("leaf.key"), &key).unwrap();
        let config = PkiConfig {
            root_cert: Some(dir.path().join("leaf.pem")),
            root_key: Some(dir.path().join("leaf.key")),
            ..Default::default()
        };
        let err = format!("{:#}", config.operator_root().unwrap_err());
        assert!(err.contains("not a CA certificate"), "{err}");
    }
}
