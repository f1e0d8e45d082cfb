//! Keys, key files and certificate authorities (ECDSA P-256 throughout).
//!
//! Private keys never leave this module unencrypted except through
//! [`write_private_key`], which creates the file with mode 0600 and replaces
//! it atomically, and [`read_private_key`], which refuses a key file that
//! others can read.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, PKey, PKeyRef, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509Name, X509NameBuilder, X509Ref};

/// Clock skew tolerated on `notBefore` of every certificate we issue.
pub const NOT_BEFORE_SKEW_SECS: i64 = 300;

/// Errors from key and certificate handling.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// OpenSSL failed.
    #[error("{context}: {source}")]
    Crypto {
        /// What was being done.
        context: String,
        /// OpenSSL's errors.
        #[source]
        source: ErrorStack,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A private key file that others may read.
    #[error(
        "private key file {} has mode {mode:04o}: other users may read it; \
         expected 0600 (fix with `chmod 600 {}`)",
        path.display(),
        path.display()
    )]
    KeyFileMode {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Anything else, described.
    #[error("{0}")]
    Invalid(String),
}

/// Results of this module.
pub type Result<T, E = PkiError> = std::result::Result<T, E>;

/// Attaches a description of what was being done to an OpenSSL error.
pub(crate) trait CryptoContext<T> {
    fn context(self, what: impl Into<String>) -> Result<T>;
}

impl<T> CryptoContext<T> for std::result::Result<T, ErrorStack> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|source| PkiError::Crypto {
            context: what.into(),
            source,
        })
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A fresh ECDSA P-256 key pair.
pub fn generate_p256_key() -> Result<PKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).context("P-256 group")?;
    let ec = EcKey::generate(&group).context("generating a P-256 key")?;
    PKey::from_ec_key(ec).context("wrapping a P-256 key")
}

/// True when `key` is an elliptic-curve key on P-256.
pub fn is_p256<T: HasPublic>(key: &PKeyRef<T>) -> bool {
    key.ec_key()
        .ok()
        .and_then(|ec| ec.group().curve_name())
        .is_some_and(|nid| nid == Nid::X9_62_PRIME256V1)
}

/// Identifier of a public key: lowercase hex SHA-256 of its SubjectPublicKeyInfo DER.
pub fn key_id<T: HasPublic>(key: &PKeyRef<T>) -> Result<String> {
    let der = key.public_key_to_der().context("encoding a public key")?;
    Ok(hex::encode(openssl::sha::sha256(&der)))
}

/// Lowercase hex SHA-256 of a certificate's DER encoding.
pub fn cert_fingerprint(cert: &X509Ref) -> Result<String> {
    let der = cert.to_der().context("encoding a certificate")?;
    Ok(hex::encode(openssl::sha::sha256(&der)))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder,
/// created with `mode`, flushed to disk, then renamed over `path`; the folder
/// is synced so the rename survives a power cut.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| PkiError::Invalid(format!("{} is not a file path", path.display())))?;
    let mut nonce = [0u8; 8];
    openssl::rand::rand_bytes(&mut nonce).context("random temporary name")?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        hex::encode(nonce)
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        // The umask may have narrowed `mode`; a key file must not be wider than asked.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err(&tmp))?;
        file.write_all(bytes).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes a private key as PKCS#8 PEM, mode 0600, atomically.
pub fn write_private_key(path: &Path, key: &PKeyRef<Private>) -> Result<()> {
    let pem = key
        .private_key_to_pem_pkcs8()
        .context("encoding a private key")?;
    write_atomic(path, &pem, 0o600)
}

/// Reads a PEM private key, refusing a file that group or others may read.
pub fn read_private_key(path: &Path) -> Result<PKey<Private>> {
    let meta = fs::metadata(path).map_err(io_err(path))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PkiError::KeyFileMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    let pem = fs::read(path).map_err(io_err(path))?;
    PKey::private_key_from_pem(&pem).context(format!("parsing private key {}", path.display()))
}

/// Writes certificates as concatenated PEM, mode 0644, atomically.
pub fn write_certs_pem(path: &Path, certs: &[&X509Ref]) -> Result<()> {
    write_atomic(path, &certs_to_pem(certs)?, 0o644)
}

/// Concatenated PEM of `certs`, in order.
pub fn certs_to_pem(certs: &[&X509Ref]) -> Result<Vec<u8>> {
    let mut pem = Vec::new();
    for cert in certs {
        pem.extend(cert.to_pem().context("encoding a certificate")?);
    }
    Ok(pem)
}

/// Reads every certificate of a PEM file, in order; an empty file is an error.
pub fn read_certs_pem(path: &Path) -> Result<Vec<X509>> {
    let pem = fs::read(path).map_err(io_err(path))?;
    let certs =
        X509::stack_from_pem(&pem).context(format!("parsing certificates {}", path.display()))?;
    if certs.is_empty() {
        return Err(PkiError::Invalid(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Builds an X.509 name from a common name and an optional organisation.
pub fn x509_name(common_name: &str, organization: Option<&str>) -> Result<X509Name> {
    let mut name = X509NameBuilder::new().context("name builder")?;
    if let Some(org) = organization {
        name.append_entry_by_nid(Nid::ORGANIZATIONNAME, org)
            .context(format!("organisation name {org:?}"))?;
    }
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)
        .context(format!("common name {common_name:?}"))?;
    Ok(name.build())
}

/// A random positive 159-bit serial number, as RFC 5280 recommends.
pub fn random_serial() -> Result<Asn1Integer> {
    let mut bn = BigNum::new().context("serial")?;
    bn.rand(159, MsbOption::MAYBE_ZERO, false)
        .context("random serial")?;
    bn.to_asn1_integer().context("serial")
}

/// Validity window of an issued certificate, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// `notBefore`.
    pub not_before: i64,
    /// `notAfter`.
    pub not_after: i64,
}

impl Validity {
    /// From now (minus the tolerated skew) for `days` days.
    pub fn days_from_now(days: u32) -> Self {
        let now = unix_now();
        Self {
            not_before: now - NOT_BEFORE_SKEW_SECS,
            not_after: now + i64::from(days) * 86_400,
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What a TLS server certificate must name.
#[derive(Debug, Clone)]
pub struct ServerCertSpec {
    /// Subject common name (a service's name).
    pub common_name: String,
    /// Subject organisation, if any.
    pub organization: Option<String>,
    /// DNS names for subjectAltName.
    pub dns_names: Vec<String>,
    /// IP addresses for subjectAltName.
    pub ip_addresses: Vec<IpAddr>,
    /// Validity from now, in days.
    pub days: u32,
}

/// A certificate together with the private key that signs under it.
pub struct CertificateAuthority {
    cert: X509,
    key: PKey<Private>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("subject", &describe_name(self.cert.subject_name()))
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new self-signed root CA with a fresh P-256 key.
    pub fn create_root(common_name: &str, organization: Option<&str>, days: u32) -> Result<Self> {
        Self::create_root_with_validity(common_name, organization, Validity::days_from_now(days))
    }

    /// A new self-signed root CA with a fresh P-256 key, valid for `validity`
    /// (test vectors need roots valid at a fixed past time).
    pub fn create_root_with_validity(
        common_name: &str,
        organization: Option<&str>,
        validity: Validity,
    ) -> Result<Self> {
        let key = generate_p256_key()?;
        let name = x509_name(common_name, organization)?;
        let mut builder = cert_builder(&name, &name, &key, validity)?;
        builder
            .append_extension(
                BasicConstraints::new()
                    .critical()
                    .ca()
                    .build()
                    .context("basicConstraints")?,
            )
            .context("basicConstraints")?;
        builder
            .append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .context("keyUsage")?,
            )
            .context("keyUsage")?;
        let ski = SubjectKeyIdentifier::new()
            .build(&builder.x509v3_context(None, None))
            .context("subjectKeyIdentifier")?;
        builder
            .append_extension(ski)
            .context("subjectKeyIdentifier")?;
        builder
            .sign(&key, MessageDigest::sha256())
            .context("self-signing the root")?;
        Ok(Self {
            cert: builder.build(),
            key,
        })
    }

    /// Pairs a CA certificate with its key, checking that they belong together
    /// and that the certificate may sign certificates.
    pub fn from_parts(cert: X509, key: PKey<Private>) -> Result<Self> {
        let public = cert.public_key().context("CA public key")?;
        if !public.public_eq(&key) {
            return Err(PkiError::Invalid(format!(
                "the key does not belong to the CA certificate {}",
                describe_name(cert.subject_name())
            )));
        }
        Ok(Self { cert, key })
    }

    /// Loads a CA from a PEM certificate (the first of the file) and its key file.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self> {
        let cert = read_certs_pem(cert_path)?.remove(0);
        let key = read_private_key(key_path)?;
        Self::from_parts(cert, key)
    }

    /// Saves the certificate (0644) and the key (0600), each atomically.
    pub fn save(&self, cert_path: &Path, key_path: &Path) -> Result<()> {
        write_private_key(key_path, &self.key)?;
        write_certs_pem(cert_path, &[&self.cert])
    }

    /// The CA's certificate.
    pub fn certificate(&self) -> &X509 {
        &self.cert
    }

    /// The CA's private key.
    pub fn key(&self) -> &PKey<Private> {
        &self.key
    }

    /// A subordinate CA with a fresh key (`path_len` 0: it may issue only leaves).
    pub fn issue_intermediate(
        &self,
        common_name: &str,
        organization: Option<&str>,
        days: u32,
    ) -> Result<CertificateAuthority> {
        self.issue_intermediate_with_validity(
            common_name,
            organization,
            Validity::days_from_now(days),
        )
    }

    /// As [`CertificateAuthority::issue_intermediate`], valid for `validity`.
    pub fn issue_intermediate_with_validity(
        &self,
        common_name: &str,
        organization: Option<&str>,
        validity: Validity,
    ) -> Result<CertificateAuthority> {
        let key = generate_p256_key()?;
        let name = x509_name(common_name, organization)?;
        let mut builder = self.leaf_builder(&name, &key, validity)?;
        builder
            .append_extension(
                BasicConstraints::new()
                    .critical()
                    .ca()
                    .pathlen(0)
                    .build()
                    .context("basicConstraints")?,
            )
            .context("basicConstraints")?;
        builder
            .append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .digital_signature()
                    .build()
                    .context("keyUsage")?,
            )
            .context("keyUsage")?;
        let cert = self.sign(builder)?;
        Ok(CertificateAuthority { cert, key })
    }

    /// A TLS server certificate for `key` naming the hosts in `spec`.
    /// Its key usage also allows key agreement, so a service may use the same
    /// key to receive CMS envelopes.
    pub fn issue_server_cert<T: HasPublic>(
        &self,
        key: &PKeyRef<T>,
        spec: &ServerCertSpec,
    ) -> Result<X509> {
        let name = x509_name(&spec.common_name, spec.organization.as_deref())?;
        let mut builder = self.leaf_builder(&name, key, Validity::days_from_now(spec.days))?;
        add_end_entity_usage(&mut builder)?;
        builder
            .append_extension(
                ExtendedKeyUsage::new()
                    .server_auth()
                    .build()
                    .context("extendedKeyUsage")?,
            )
            .context("extendedKeyUsage")?;
        if !spec.dns_names.is_empty() || !spec.ip_addresses.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for dns in &spec.dns_names {
                san.dns(dns);
            }
            for ip in &spec.ip_addresses {
                san.ip(&ip.to_string());
            }
            let san = san
                .build(&builder.x509v3_context(Some(&self.cert), None))
                .context("subjectAltName")?;
            builder.append_extension(san).context("subjectAltName")?;
        }
        self.sign(builder)
    }

    /// A builder for a certificate issued by this CA: version 3, random serial,
    /// issuer, subject, key, validity, and key identifiers. The caller adds the
    /// remaining extensions and passes it to [`CertificateAuthority::sign`].
    pub fn leaf_builder<T: HasPublic>(
        &self,
        subject: &X509Name,
        key: &PKeyRef<T>,
        validity: Validity,
    ) -> Result<X509Builder> {
        let mut builder = cert_builder(subject, self.cert.subject_name(), key, validity)?;
        let ski = SubjectKeyIdentifier::new()
            .build(&builder.x509v3_context(Some(&self.cert), None))
            .context("subjectKeyIdentifier")?;
        builder
            .append_extension(ski)
            .context("subjectKeyIdentifier")?;
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&builder.x509v3_context(Some(&self.cert), None))
            .context("authorityKeyIdentifier")?;
        builder
            .append_extension(aki)
            .context("authorityKeyIdentifier")?;
        Ok(builder)
    }

    /// Signs a certificate built with [`CertificateAuthority::leaf_builder`] (ECDSA with SHA-256).
    pub fn sign(&self, mut builder: X509Builder) -> Result<X509> {
        builder
            .sign(&self.key, MessageDigest::sha256())
            .context("signing a certificate")?;
        Ok(builder.build())
    }
}

/// Marks a certificate as an end entity (critical `CA:FALSE`) whose key
/// signs (digitalSignature) and receives CMS envelopes (keyAgreement): the
/// profile of service certificates and run certificates alike.
pub fn add_end_entity_usage(builder: &mut X509Builder) -> Result<()> {
    builder
        .append_extension(
            BasicConstraints::new()
                .critical()
                .build()
                .context("basicConstraints")?,
        )
        .context("basicConstraints")?;
    builder
        .append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_agreement()
                .build()
                .context("keyUsage")?,
        )
        .context("keyUsage")?;
    Ok(())
}

fn cert_builder<T: HasPublic>(
    subject: &openssl::x509::X509NameRef,
    issuer: &openssl::x509::X509NameRef,
    key: &PKeyRef<T>,
    validity: Validity,
) -> Result<X509Builder> {
    let mut builder = X509Builder::new().context("certificate builder")?;
    builder.set_version(2).context("version")?;
    let serial = random_serial()?;
    builder.set_serial_number(&serial).context("serial")?;
    builder.set_subject_name(subject).context("subject")?;
    builder.set_issuer_name(issuer).context("issuer")?;
    builder.set_pubkey(key).context("public key")?;
    let not_before = Asn1Time::from_unix(validity.not_before).context("notBefore")?;
    let not_after = Asn1Time::from_unix(validity.not_after).context("notAfter")?;
    builder.set_not_before(&not_before).context("notBefore")?;
    builder.set_not_after(&not_after).context("notAfter")?;
    Ok(builder)
}

/// `CN=…, O=…` in one line, for messages.
pub fn describe_name(name: &openssl::x509::X509NameRef) -> String {
    name.entries()
        .map(|e| {
            let field = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_else(|_| "?".into());
            format!("{field}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The subject's common name, if it has one.
pub fn common_name(cert: &X509Ref) -> Option<String> {
    cert.subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
}

/// True when the certificate's subjectAltName lists `ip`.
pub fn names_ip(cert: &X509Ref, ip: IpAddr) -> bool {
    let want = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    cert.subject_alt_names()
        .is_some_and(|names| names.iter().any(|n| n.ipaddress() == Some(&want[..])))
}

/// Unix seconds of an ASN.1 time.
pub fn asn1_time_to_unix(t: &openssl::asn1::Asn1TimeRef) -> Result<i64> {
    let epoch = Asn1Time::from_unix(0).context("the epoch")?;
    let diff = epoch.diff(t).context("comparing times")?;
    Ok(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

/// Seconds until the certificate's `notAfter` (negative once expired).
pub fn seconds_until_expiry(cert: &X509Ref) -> Result<i64> {
    let now = Asn1Time::days_from_now(0).context("current time")?;
    let diff = now.diff(cert.not_after()).context("comparing times")?;
    Ok(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{X509StoreContext, X509VerifyResult};

    fn verify(root: &X509, chain: &[&X509], leaf: &X509) -> X509VerifyResult {
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(root.clone()).unwrap();
        let store = store.build();
        let mut untrusted = Stack::new().unwrap();
        for c in chain {
            untrusted.push((*c).clone()).unwrap();
        }
        let mut ctx = X509StoreContext::new().unwrap();
        ctx.init(&store, leaf, &untrusted, |c| {
            c.verify_cert()?;
            Ok(c.error())
        })
        .unwrap()
    }

    #[test]
    fn root_intermediate_server_chain_verifies() {
        let root = CertificateAuthority::create_root("test root", Some("tests"), 30).unwrap();
        let inter = root.issue_intermediate("test inter", None, 30).unwrap();
        let key = generate_p256_key().unwrap();
        let spec = ServerCertSpec {
            common_name: "store".into(),
            organization: None,
            dns_names: vec!["localhost".into()],
            ip_addresses: vec!["127.0.0.1".parse().unwrap()],
            days: 30,
        };
        let leaf = inter.issue_server_cert(&key, &spec).unwrap();
        assert_eq!(
            verify(root.certificate(), &[inter.certificate()], &leaf),
            X509VerifyResult::OK
        );
        assert!(names_ip(&leaf, "127.0.0.1".parse().unwrap()));
        assert!(!names_ip(&leaf, "10.0.0.1".parse().unwrap()));
        assert_eq!(common_name(&leaf).as_deref(), Some("store"));
        assert!(seconds_until_expiry(&leaf).unwrap() > 29 * 86_400);
    }

    #[test]
    fn key_files_are_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let key = generate_p256_key().unwrap();
        write_private_key(&path, &key).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = read_private_key(&path).unwrap();
        assert!(back.public_eq(&key));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_private_key(&path).unwrap_err();
        assert!(
            matches!(err, PkiError::KeyFileMode { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn ca_round_trips_through_files_and_rejects_foreign_key() {
        let dir = tempfile::tempdir().unwrap();
        let root = CertificateAuthority::create_root("r", None, 1).unwrap();
        let (c, k) = (dir.path().join("r.pem"), dir.path().join("r.key"));
        root.save(&c, &k).unwrap();
        let loaded = CertificateAuthority::load(&c, &k).unwrap();
        assert_eq!(
            cert_fingerprint(loaded.certificate()).unwrap(),
            cert_fingerprint(root.certificate()).unwrap()
        );
        let other = generate_p256_key().unwrap();
        let err = CertificateAuthority::from_parts(root.certificate().clone(), other).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn asn1_times_convert_to_unix_seconds() {
        for secs in [0, 1_795_548_840, 4_102_444_800] {
            let t = Asn1Time::from_unix(secs).unwrap();
            assert_eq!(asn1_time_to_unix(&t).unwrap(), secs);
        }
    }

    #[test]
    fn p256_detection_and_key_ids() {
        let key = generate_p256_key().unwrap();
        assert!(is_p256(&key));
        let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        assert!(!is_p256(&rsa));
        let id = key_id(&key).unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(id, key_id(&generate_p256_key().unwrap()).unwrap());
    }
}
