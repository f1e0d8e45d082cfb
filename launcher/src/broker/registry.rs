//! The services the broker may call.
//!
//! Two sources: `[[services]]` in the configuration file (fixed while the
//! daemon runs; the API cannot change them) and the API (`PUT`/`DELETE
//! /v1/services/{id}`, kept in the `services` table). An id in both is the
//! configuration's. Every registration is validated the same way (an
//! `https` base URL, a CA that parses) and gets its own HTTPS client that
//! trusts exactly that CA; a new registration replaces the client.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use openssl::x509::X509;
use reqwest::Url;

use super::client::ServiceClient;
use super::{BrokerConfig, ServiceEntry};

/// Largest CA PEM accepted for a service.
pub const MAX_CA_PEM_BYTES: usize = 64 * 1024;
/// Most certificates in a service's CA PEM.
pub const MAX_CA_CERTS: usize = 16;

/// Where a registration comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Config,
    Api,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Api => "api",
        }
    }
}

/// A registration whose fields passed every check.
#[derive(Debug, Clone)]
pub struct ValidService {
    pub id: String,
    /// Normalised: no trailing `/`.
    pub base_url: String,
    pub ca_pem: String,
    pub cas: Vec<X509>,
}

/// Checks a registration: the id's grammar, an `https` URL with a host and
/// nothing but a path after it, and a CA PEM of 1 to 16 certificates.
pub fn validate(id: &str, base_url: &str, ca_pem: &str) -> Result<ValidService, String> {
    if !programs_db::valid_service_id(id) {
        return Err(format!(
            "id: expected 1 to 64 characters of a-z, 0-9 and -, found {id:?}"
        ));
    }
    if base_url.len() > programs_db::MAX_BASE_URL_BYTES {
        return Err(format!(
            "base_url: expected at most {} bytes, found {}",
            programs_db::MAX_BASE_URL_BYTES,
            base_url.len()
        ));
    }
    let url = Url::parse(base_url).map_err(|e| format!("base_url: not a URL ({e})"))?;
    if url.scheme() != "https" {
        return Err(format!(
            "base_url: expected an https URL, found scheme {:?}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("base_url: expected a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("base_url: credentials in the URL are not allowed".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("base_url: expected no query and no fragment".into());
    }
    let normalised = url.as_str().trim_end_matches('/').to_owned();

    if ca_pem.len() > MAX_CA_PEM_BYTES {
        return Err(format!(
            "ca_pem: expected at most {MAX_CA_PEM_BYTES} bytes, found {}",
            ca_pem.len()
        ));
    }
    let cas = X509::stack_from_pem(ca_pem.as_bytes())
        .map_err(|e| format!("ca_pem: not PEM certificates ({e})"))?;
    if cas.is_empty() || cas.len() > MAX_CA_CERTS {
        return Err(format!(
            "ca_pem: expected 1 to {MAX_CA_CERTS} PEM certificates, found {}",
            cas.len()
        ));
    }
    Ok(ValidService {
        id: id.to_owned(),
        base_url: normalised,
        ca_pem: ca_pem.to_owned(),
        cas,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("service {id}: {message}")]
    Invalid { id: String, message: String },
    #[error("service {id} is defined in the launcher's configuration file; change it there")]
    Configured { id: String },
    #[error("service {id}: building its HTTPS client: {message}")]
    Client { id: String, message: String },
}

/// The services by id, each with its client.
pub struct Registry {
    config: BrokerConfig,
    configured: HashSet<String>,
    services: RwLock<BTreeMap<String, Arc<ServiceClient>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("services", &self.list().len())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// The configured services (an invalid entry is an error naming it) and
    /// the stored ones (an invalid one is skipped with a warning; a stored id
    /// that the configuration also defines is shadowed by it).
    pub fn new(
        config: BrokerConfig,
        entries: &[ServiceEntry],
        stored: Vec<programs_db::Service>,
    ) -> anyhow::Result<Self> {
        let registry = Self {
            config,
            configured: entries.iter().map(|e| e.id.clone()).collect(),
            services: RwLock::new(BTreeMap::new()),
        };
        for entry in entries {
            let pem = std::fs::read_to_string(&entry.ca).map_err(|e| {
                anyhow::anyhow!(
                    "[[services]] {}: reading its CA {}: {e}",
                    entry.id,
                    entry.ca.display()
                )
            })?;
            let valid = validate(&entry.id, &entry.base_url, &pem)
                .map_err(|m| anyhow::anyhow!("[[services]] {}: {m}", entry.id))?;
            registry.insert(valid, Source::Config, 0)?;
        }
        for service in stored {
            if registry.configured.contains(&service.id) {
                tracing::warn!(
                    service = %service.id,
                    "a service registered through the API is also in the configuration file; the file's wins"
                );
                continue;
            }
            match validate(&service.id, &service.base_url, &service.ca_pem) {
                Ok(valid) => {
                    registry.insert(valid, Source::Api, service.updated_at)?;
                }
                Err(message) => tracing::warn!(
                    service = %service.id,
                    %message,
                    "skipping a stored service registration that does not validate"
                ),
            }
        }
        Ok(registry)
    }

    fn insert(
        &self,
        valid: ValidService,
        source: Source,
        updated_at: i64,
    ) -> Result<Arc<ServiceClient>, RegistryError> {
        let id = valid.id.clone();
        let client = Arc::new(
            ServiceClient::new(valid, source, updated_at, &self.config).map_err(|message| {
                RegistryError::Client {
                    id: id.clone(),
                    message,
                }
            })?,
        );
        self.services
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, client.clone());
        Ok(client)
    }

    /// Whether the configuration file defines `id` (the API may not change it).
    pub fn is_configured(&self, id: &str) -> bool {
        self.configured.contains(id)
    }

    /// Refuses to change a configured service.
    pub fn check_api_change(&self, id: &str) -> Result<(), RegistryError> {
        if self.is_configured(id) {
            Err(RegistryError::Configured { id: id.to_owned() })
        } else {
            Ok(())
        }
    }

    /// Puts an API registration in force (after it was stored), with a new client.
    pub fn put(
        &self,
        valid: ValidService,
        updated_at: i64,
    ) -> Result<Arc<ServiceClient>, RegistryError> {
        self.check_api_change(&valid.id)?;
        self.insert(valid, Source::Api, updated_at)
    }

    /// Removes an API registration.
    pub fn remove(&self, id: &str) -> Result<bool, RegistryError> {
        self.check_api_change(id)?;
        Ok(self
            .services
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
            .is_some())
    }

    pub fn get(&self, id: &str) -> Option<Arc<ServiceClient>> {
        self.services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Every service, by id.
    pub fn list(&self) -> Vec<Arc<ServiceClient>> {
        self.services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attestable_data::pki::CertificateAuthority;

    fn ca_pem() -> String {
        let ca = CertificateAuthority::create_root("services CA", None, 30).unwrap();
        String::from_utf8(ca.certificate().to_pem().unwrap()).unwrap()
    }

    #[test]
    fn registrations_are_validated() {
        let pem = ca_pem();
        let ok = validate("store", "https://127.0.0.1:8000/", &pem).unwrap();
        assert_eq!(ok.base_url, "https://127.0.0.1:8000");
        let prefixed = validate("store", "https://svc.example/api/v1/", &pem).unwrap();
        assert_eq!(prefixed.base_url, "https://svc.example/api/v1");
        for (id, url, ca, needle) in [
            ("Store", "https://h", pem.as_str(), "id: expected"),
            ("store", "http://h", pem.as_str(), "expected an https URL"),
            ("store", "not a url", pem.as_str(), "not a URL"),
            ("store", "https://u:p@h", pem.as_str(), "credentials"),
            ("store", "https://h/?q=1", pem.as_str(), "no query"),
            (
                "store",
                "https://h",
                "garbage",
                "expected 1 to 16 PEM certificates",
            ),
            ("store", "https://h", "", "expected 1 to 16"),
        ] {
            let err = validate(id, url, ca).unwrap_err();
            assert!(err.contains(needle), "{id} {url}: {err}");
        }
    }

    #[test]
    fn configured_services_win_and_cannot_be_changed_through_the_api() {
        let dir = tempfile::tempdir().unwrap();
        let pem = ca_pem();
        std::fs::write(dir.path().join("ca.pem"), &pem).unwrap();
        let entries = vec![ServiceEntry {
            id: "store".into(),
            base_url: "https://127.0.0.1:1".into(),
            ca: dir.path().join("ca.pem"),
        }];
        let stored = vec![
            programs_db::Service {
                id: "store".into(),
                base_url: "https://127.0.0.1:2".into(),
                ca_pem: pem.clone(),
                created_at: 0,
                updated_at: 0,
            },
            programs_db::Service {
                id: "taxi".into(),
                base_url: "https://127.0.0.1:3".into(),
                ca_pem: pem.clone(),
                created_at: 0,
                updated_at: 0,
            },
            programs_db::Service {
                id: "broken".into(),
                base_url: "http://x".into(),
                ca_pem: pem.clone(),
                created_at: 0,
                updated_at: 0,
            },
        ];
        let registry = Registry::new(BrokerConfig::default(), &entries, stored).unwrap();
        let ids: Vec<String> = registry.list().iter().map(|s| s.id().to_owned()).collect();
        assert_eq!(ids, ["store", "taxi"]);
        assert_eq!(
            registry.get("store").unwrap().base_url(),
            "https://127.0.0.1:1"
        );
        assert_eq!(registry.get("store").unwrap().source(), Source::Config);
        assert!(matches!(
            registry.remove("store"),
            Err(RegistryError::Configured { .. })
        ));
        let valid = validate("store", "https://h", &pem).unwrap();
        assert!(registry.put(valid, 1).is_err());
        assert!(registry.remove("taxi").unwrap());
        assert!(registry.get("taxi").is_none());

        let missing = vec![ServiceEntry {
            id: "store".into(),
            base_url: "https://h".into(),
            ca: dir.path().join("nope.pem"),
        }];
        let err = Registry::new(BrokerConfig::default(), &missing, vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("[[services]] store: reading its CA"), "{err}");
    }
}
