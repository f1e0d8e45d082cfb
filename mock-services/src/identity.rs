//! Keys and certificates, made at first start and reused after: one services
//! CA, and per service a key and a certificate naming the service.
//!
//! A CA certificate without its key (or the reverse) is an error, never
//! silently replaced: programs compile `services-ca.pem` in, so a new CA
//! would change every measurement that trusts these services.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, bail};
use attestable_data::pki::{self, CertificateAuthority, ServerCertSpec};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use crate::datadir::DataDir;
use crate::kind::ServiceKind;

/// Validity of the services CA.
const CA_DAYS: u32 = 3650;
/// Validity of a service certificate.
const SERVICE_CERT_DAYS: u32 = 397;
/// A service certificate with less left than this is re-issued at start.
const RENEW_BEFORE_SECS: i64 = 30 * 86_400;

/// A service's key and certificate, and the chain it publishes.
pub struct ServiceKeys {
    /// The private key (TLS, decrypting requests, signing answers).
    pub key: PKey<Private>,
    /// The certificate (CN = the service's name).
    pub certificate: X509,
    /// The certificate then the services CA: TLS chain and `/.well-known/attestable/certificate`.
    pub chain: Vec<X509>,
}

impl ServiceKeys {
    /// The published chain as PEM.
    pub fn chain_pem(&self) -> anyhow::Result<String> {
        let refs: Vec<_> = self.chain.iter().map(|c| c.as_ref()).collect();
        Ok(String::from_utf8(pki::certs_to_pem(&refs)?)?)
    }
}

/// Loads the services CA, creating it (and `services-ca.pem`) at first start.
/// Call with the setup lock held.
pub fn ensure_services_ca(data: &DataDir) -> anyhow::Result<CertificateAuthority> {
    let (cert, key) = (data.ca_cert(), data.ca_key());
    let ca = match (cert.exists(), key.exists()) {
        (true, true) => CertificateAuthority::load(&cert, &key)
            .with_context(|| format!("loading the services CA from {}", cert.display()))?,
        (false, false) => {
            let ca = CertificateAuthority::create_root(
                "attestable services CA",
                Some("case study services"),
                CA_DAYS,
            )?;
            ca.save(&cert, &key)?;
            tracing::info!(certificate = %cert.display(), "created the services CA");
            ca
        }
        (has_cert, _) => {
            let (present, missing) = if has_cert {
                (&cert, &key)
            } else {
                (&key, &cert)
            };
            bail!(
                "{} exists but {} does not: restore it, or delete {} to create a new services \
                 CA (programs that compiled in the old services-ca.pem will no longer trust \
                 these services)",
                present.display(),
                missing.display(),
                data.root().join("ca").display()
            );
        }
    };
    // The export is what programs compile in; keep it equal to the CA.
    let pem = ca.certificate().to_pem()?;
    if fs::read(data.services_ca()).ok().as_deref() != Some(&pem[..]) {
        pki::write_atomic(&data.services_ca(), &pem, 0o644)?;
    }
    Ok(ca)
}

/// Loads the service's key and certificate, making whatever is missing, and
/// re-issuing the certificate when it is not the CA's, not for this key or
/// this name, or near its end. Call with the setup lock held.
pub fn ensure_service_keys(
    data: &DataDir,
    kind: ServiceKind,
    ca: &CertificateAuthority,
) -> anyhow::Result<ServiceKeys> {
    let key_path = data.service_key(kind);
    let key = if key_path.exists() {
        pki::read_private_key(&key_path)?
    } else {
        let key = pki::generate_p256_key()?;
        pki::write_private_key(&key_path, &key)?;
        key
    };
    let cert_path = data.service_cert(kind);
    let existing = if cert_path.exists() {
        Some(pki::read_certs_pem(&cert_path)?.remove(0))
    } else {
        None
    };
    let certificate = match existing {
        Some(cert) if still_good(&cert, &key, kind, ca)? => cert,
        previous => {
            let cert = ca.issue_server_cert(
                &key,
                &ServerCertSpec {
                    common_name: kind.name().to_owned(),
                    organization: Some("case study services".to_owned()),
                    dns_names: vec!["localhost".to_owned()],
                    ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
                    days: SERVICE_CERT_DAYS,
                },
            )?;
            pki::write_certs_pem(&cert_path, &[&cert])?;
            tracing::info!(
                service = kind.name(),
                renewed = previous.is_some(),
                "issued the service certificate"
            );
            cert
        }
    };
    Ok(ServiceKeys {
        key,
        chain: vec![certificate.clone(), ca.certificate().clone()],
        certificate,
    })
}

fn still_good(
    cert: &X509,
    key: &PKey<Private>,
    kind: ServiceKind,
    ca: &CertificateAuthority,
) -> anyhow::Result<bool> {
    let ca_key = ca.certificate().public_key()?;
    Ok(cert.verify(&ca_key).unwrap_or(false)
        && cert.public_key()?.public_eq(key)
        && pki::common_name(cert).as_deref() == Some(kind.name())
        && pki::seconds_until_expiry(cert)? > RENEW_BEFORE_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("d"));
        data.create().unwrap();
        let ca = ensure_services_ca(&data).unwrap();
        let store = ensure_service_keys(&data, ServiceKind::Store, &ca).unwrap();
        assert_eq!(
            pki::common_name(&store.certificate).as_deref(),
            Some("store")
        );

        let again = ensure_services_ca(&data).unwrap();
        assert!(
            again
                .certificate()
                .public_key()
                .unwrap()
                .public_eq(ca.key())
        );
        let store2 = ensure_service_keys(&data, ServiceKind::Store, &again).unwrap();
        assert_eq!(
            pki::cert_fingerprint(&store.certificate).unwrap(),
            pki::cert_fingerprint(&store2.certificate).unwrap()
        );
        assert_eq!(
            fs::read(data.services_ca()).unwrap(),
            ca.certificate().to_pem().unwrap()
        );
    }

    #[test]
    fn a_certificate_from_another_ca_is_reissued_and_a_lone_ca_key_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        data.create().unwrap();
        let other = CertificateAuthority::create_root("other", None, 1).unwrap();
        let foreign = ensure_service_keys(&data, ServiceKind::Taxi, &other).unwrap();
        let ca = ensure_services_ca(&data).unwrap();
        let ours = ensure_service_keys(&data, ServiceKind::Taxi, &ca).unwrap();
        assert!(ours.key.public_eq(&foreign.key), "the key is kept");
        assert!(
            ours.certificate
                .verify(&ca.certificate().public_key().unwrap())
                .unwrap()
        );

        fs::remove_file(data.ca_cert()).unwrap();
        let err = ensure_services_ca(&data).err().unwrap().to_string();
        assert!(
            err.contains("exists but") && err.contains("ca.pem"),
            "{err}"
        );
    }
}
