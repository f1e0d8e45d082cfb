//! The launcher's root CA and HTTPS certificate, created at first start.
//!
//! Clients trust `<data>/pki/root.pem`. The TLS certificate is re-issued
//! (with a new key) when it lacks a name the daemon now answers on, was not
//! issued by this root, or has less than [`RENEW_BEFORE_DAYS`] left.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, bail};
use attestable_data::pki::{
    self, CertificateAuthority, ServerCertSpec, read_certs_pem, read_private_key,
    seconds_until_expiry, write_certs_pem, write_private_key,
};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use crate::paths::DataDir;

const ROOT_DAYS: u32 = 3650;
const TLS_DAYS: u32 = 365;
const RENEW_BEFORE_DAYS: i64 = 30;

pub struct ServerPki {
    pub root: CertificateAuthority,
    pub root_pem: Vec<u8>,
    /// Leaf then root.
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
}

impl std::fmt::Debug for ServerPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerPki").finish_non_exhaustive()
    }
}

/// Names the TLS certificate must carry.
#[derive(Debug, Clone, Default)]
pub struct ServerNames {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl ServerNames {
    /// `localhost`, both loopback addresses, the listen address (unless it is
    /// a wildcard) and the configured extras.
    pub fn for_listen(listen: IpAddr, extra_dns: &[String], extra_ips: &[IpAddr]) -> Self {
        let mut names = Self {
            dns: vec!["localhost".into()],
            ips: vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
        };
        if !listen.is_unspecified() && !names.ips.contains(&listen) {
            names.ips.push(listen);
        }
        for dns in extra_dns {
            if !names.dns.contains(dns) {
                names.dns.push(dns.clone());
            }
        }
        for ip in extra_ips {
            if !names.ips.contains(ip) {
                names.ips.push(*ip);
            }
        }
        names
    }
}

/// Loads or creates the root CA and a fitting TLS certificate.
pub fn ensure(data: &DataDir, names: &ServerNames) -> anyhow::Result<ServerPki> {
    ensure_with_root(data, names, None)
}

/// As [`ensure`], with the operator's root (`[pki] root_cert`, `root_key`)
/// in place of `<data>/pki/root.*` when given: the generated root is then
/// neither used nor created.
pub fn ensure_with_root(
    data: &DataDir,
    names: &ServerNames,
    operator_root: Option<CertificateAuthority>,
) -> anyhow::Result<ServerPki> {
    let root = match operator_root {
        Some(root) => {
            publish_operator_root(data, &root)?;
            root
        }
        None => generated_root(data)?,
    };
    let root_pem = root.certificate().to_pem()?;
    tls_certificate(data, names, root, root_pem)
}

/// Writes the operator's root certificate (never its key) to
/// `<data>/pki/root.pem`, where clients find the root to trust. A generated
/// root found there is kept aside as `root-replaced-<key id>.pem`/`.key`.
fn publish_operator_root(data: &DataDir, root: &CertificateAuthority) -> anyhow::Result<()> {
    let (cert_path, key_path) = (data.root_cert(), data.root_key());
    let pem = root.certificate().to_pem()?;
    if key_path.exists() {
        let old_key = read_private_key(&key_path)?;
        let id = pki::key_id(&old_key)?;
        let aside = |ext: &str| {
            data.pki_dir()
                .join(format!("root-replaced-{}.{ext}", &id[..16]))
        };
        if cert_path.exists() {
            std::fs::rename(&cert_path, aside("pem"))
                .with_context(|| format!("keeping {} aside", cert_path.display()))?;
        }
        std::fs::rename(&key_path, aside("key"))
            .with_context(|| format!("keeping {} aside", key_path.display()))?;
        tracing::warn!(
            kept_as = %aside("pem").display(),
            "the operator's root replaces the generated one; the generated root is kept aside"
        );
    }
    if std::fs::read(&cert_path).ok().as_deref() != Some(&pem[..]) {
        write_certs_pem(&cert_path, &[root.certificate()])?;
    }
    Ok(())
}

/// `<data>/pki/root.*`, created at first start.
fn generated_root(data: &DataDir) -> anyhow::Result<CertificateAuthority> {
    let (cert_path, key_path) = (data.root_cert(), data.root_key());
    Ok(match (cert_path.exists(), key_path.exists()) {
        (true, true) => CertificateAuthority::load(&cert_path, &key_path)
            .with_context(|| format!("loading the root CA from {}", data.pki_dir().display()))?,
        (false, false) => {
            let root = CertificateAuthority::create_root(
                "Attestable launcher root CA",
                Some("attestable launcher"),
                ROOT_DAYS,
            )?;
            root.save(&cert_path, &key_path)?;
            tracing::info!(path = %cert_path.display(), "created the root CA");
            root
        }
        (has_cert, _) => bail!(
            "{} exists but {} does not; restore the missing file, or remove both \
             to create a new root (clients must then trust the new root.pem)",
            if has_cert {
                cert_path.display()
            } else {
                key_path.display()
            },
            if has_cert {
                key_path.display()
            } else {
                cert_path.display()
            },
        ),
    })
}

fn tls_certificate(
    data: &DataDir,
    names: &ServerNames,
    root: CertificateAuthority,
    root_pem: Vec<u8>,
) -> anyhow::Result<ServerPki> {
    let (tls_cert, tls_key) = (data.tls_cert(), data.tls_key());
    let existing = match (read_certs_pem(&tls_cert), read_private_key(&tls_key)) {
        (Ok(chain), Ok(key)) => Some((chain, key)),
        _ => None,
    };
    if let Some((chain, key)) = existing {
        match unfit_reason(&root, &chain, &key, names) {
            None => {
                return Ok(ServerPki {
                    root,
                    root_pem,
                    chain,
                    key,
                });
            }
            Some(reason) => tracing::info!(%reason, "re-issuing the TLS certificate"),
        }
    }
    let key = pki::generate_p256_key()?;
    let leaf = root.issue_server_cert(
        &key,
        &ServerCertSpec {
            common_name: "attestable launcher".into(),
            organization: Some("attestable launcher".into()),
            dns_names: names.dns.clone(),
            ip_addresses: names.ips.clone(),
            days: TLS_DAYS,
        },
    )?;
    let chain = vec![leaf, root.certificate().clone()];
    write_private_key(&tls_key, &key)?;
    write_certs_pem(
        &tls_cert,
        &chain.iter().map(|c| c.as_ref()).collect::<Vec<_>>(),
    )?;
    Ok(ServerPki {
        root,
        root_pem,
        chain,
        key,
    })
}

/// Why an existing certificate will not do, if it will not.
fn unfit_reason(
    root: &CertificateAuthority,
    chain: &[X509],
    key: &PKey<Private>,
    names: &ServerNames,
) -> Option<String> {
    let leaf = chain.first()?;
    if !leaf.public_key().is_ok_and(|k| k.public_eq(key)) {
        return Some("the key does not match the certificate".into());
    }
    let root_key = root.certificate().public_key().ok()?;
    if !leaf.verify(&root_key).unwrap_or(false) {
        return Some("it was not issued by the current root".into());
    }
    match seconds_until_expiry(leaf) {
        Ok(secs) if secs > RENEW_BEFORE_DAYS * 86_400 => {}
        _ => return Some(format!("it expires within {RENEW_BEFORE_DAYS} days")),
    }
    if let Some(ip) = names.ips.iter().find(|ip| !pki::names_ip(leaf, **ip)) {
        return Some(format!("it does not name {ip}"));
    }
    let dns: Vec<String> = leaf
        .subject_alt_names()
        .map(|sans| {
            sans.iter()
                .filter_map(|n| n.dnsname().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Some(name) = names.dns.iter().find(|n| !dns.contains(n)) {
        return Some(format!("it does not name {name}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(cert: &X509) -> String {
        pki::cert_fingerprint(cert).unwrap()
    }

    #[test]
    fn created_once_then_reused_and_reissued_for_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        data.create().unwrap();
        let loopback = ServerNames::for_listen("127.0.0.1".parse().unwrap(), &[], &[]);
        let first = ensure(&data, &loopback).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for key in [data.root_key(), data.tls_key()] {
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let again = ensure(&data, &loopback).unwrap();
        assert_eq!(fingerprint(&first.chain[0]), fingerprint(&again.chain[0]));
        assert_eq!(first.root_pem, again.root_pem);

        let other =
            ServerNames::for_listen("10.1.2.3".parse().unwrap(), &["box.example".into()], &[]);
        let reissued = ensure(&data, &other).unwrap();
        assert_ne!(
            fingerprint(&first.chain[0]),
            fingerprint(&reissued.chain[0])
        );
        assert_eq!(first.root_pem, reissued.root_pem, "the root stays");
        assert!(pki::names_ip(
            &reissued.chain[0],
            "10.1.2.3".parse().unwrap()
        ));
        assert!(pki::names_ip(
            &reissued.chain[0],
            "127.0.0.1".parse().unwrap()
        ));
    }

    #[test]
    fn a_lone_root_file_is_an_error_not_a_silent_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        data.create().unwrap();
        let names = ServerNames::for_listen("127.0.0.1".parse().unwrap(), &[], &[]);
        ensure(&data, &names).unwrap();
        std::fs::remove_file(data.root_key()).unwrap();
        let err = ensure(&data, &names).unwrap_err().to_string();
        assert!(err.contains("root.key does not"), "{err}");
    }

    #[test]
    fn an_operator_root_is_published_and_a_generated_one_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        data.create().unwrap();
        let names = ServerNames::for_listen("127.0.0.1".parse().unwrap(), &[], &[]);
        let generated = ensure(&data, &names).unwrap();
        let operator = CertificateAuthority::create_root("operator root", None, 30).unwrap();
        let op_der = operator.certificate().to_der().unwrap();
        let served = ensure_with_root(
            &data,
            &names,
            Some(
                CertificateAuthority::from_parts(
                    operator.certificate().clone(),
                    operator.key().clone(),
                )
                .unwrap(),
            ),
        )
        .unwrap();
        assert_eq!(served.chain[1].to_der().unwrap(), op_der);
        assert!(
            served.chain[0]
                .verify(&operator.certificate().public_key().unwrap())
                .unwrap(),
            "the TLS certificate is re-issued under the operator's root"
        );
        let published = read_certs_pem(&data.root_cert()).unwrap();
        assert_eq!(published[0].to_der().unwrap(), op_der);
        assert!(
            !data.root_key().exists(),
            "the operator's key is never copied"
        );
        let id = pki::key_id(generated.root.key()).unwrap();
        let kept = data
            .pki_dir()
            .join(format!("root-replaced-{}.key", &id[..16]));
        assert!(kept.exists());
        // Without the operator's root the launcher refuses rather than make a new one.
        let err = ensure(&data, &names).unwrap_err().to_string();
        assert!(err.contains("root.key does not"), "{err}");
    }

    #[test]
    fn wildcard_listen_is_not_a_certificate_name() {
        let names = ServerNames::for_listen("0.0.0.0".parse().unwrap(), &[], &[]);
        assert!(!names.ips.iter().any(|ip| ip.is_unspecified()));
    }
}
