//! The broker: relays a run's attested reads and writes to the services,
//! over HTTPS, without being able to read them (`docs/PROTOCOL.md`,
//! "Service endpoints").
//!
//! | module | what |
//! |---|---|
//! | [`registry`] | the services the broker may call: configuration file and API, validated |
//! | [`client`] | one HTTPS client per service, and its answers mapped to `DATA`/`ACK`/`NACK` |
//! | [`calls`] | the record of every call (sizes, latency, outcome; never a payload) |

pub mod calls;
pub mod client;
pub mod registry;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use client::{Op, ServiceClient};
pub use registry::{Registry, RegistryError, Source, ValidService};

/// `[broker]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Time to open a connection (TCP and TLS) to a service.
    pub connect_timeout_ms: u64,
    /// Time for a whole call: connecting, sending, the service's work, the answer.
    pub request_timeout_ms: u64,
    /// Idle keep-alive connections are closed after this.
    pub pool_idle_timeout_s: u64,
    /// Idle connections kept per service.
    pub pool_max_idle: usize,
    /// How long a service's certificate (`SERVICE_CERT`) is served from the cache.
    pub service_cert_cache_s: u64,
    /// Calls to one service in flight at once, over all runs; more wait
    /// (within `request_timeout_ms`) for one to finish. This bounds the
    /// connections, TLS handshakes and buffers a burst of runs costs
    /// (docs/PERFORMANCE.md: 100 runs opened 100 connections, ~25 MiB).
    pub max_in_flight_per_service: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 2_000,
            request_timeout_ms: 10_000,
            pool_idle_timeout_s: 90,
            pool_max_idle: 64,
            service_cert_cache_s: 300,
            max_in_flight_per_service: 16,
        }
    }
}

impl BrokerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=600_000).contains(&self.connect_timeout_ms) {
            return Err(format!(
                "broker.connect_timeout_ms is {}; expected 1 to 600000",
                self.connect_timeout_ms
            ));
        }
        if !(1..=3_600_000).contains(&self.request_timeout_ms) {
            return Err(format!(
                "broker.request_timeout_ms is {}; expected 1 to 3600000",
                self.request_timeout_ms
            ));
        }
        if !(1..=4096).contains(&self.max_in_flight_per_service) {
            return Err(format!(
                "broker.max_in_flight_per_service is {}; expected 1 to 4096",
                self.max_in_flight_per_service
            ));
        }
        Ok(())
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// A `[[services]]` entry of the configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// The id programs use: `[a-z0-9-]{1,64}`.
    pub id: String,
    /// `https://host:port[/prefix]`.
    pub base_url: String,
    /// PEM file of the CA the service's TLS certificate must chain to
    /// (relative to the configuration file's folder).
    pub ca: PathBuf,
}

impl ServiceEntry {
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.ca.is_relative() {
            self.ca = base.join(&self.ca);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn the_configuration_sections_of_the_channel_pki_and_broker() {
        let config = Config::parse(
            r#"
            [pki]
            attestation_days = 30
            [channel]
            max_frame_bytes = 1048576
            max_in_flight = 8
            [broker]
            request_timeout_ms = 1500
            [[services]]
            id = "store"
            base_url = "https://127.0.0.1:8000"
            ca = "ca.pem"
            "#,
            "t",
        )
        .unwrap();
        assert_eq!(config.pki.attestation_days, 30);
        assert_eq!(config.channel.max_frame_bytes, 1 << 20);
        assert_eq!(config.channel.max_in_flight, 8);
        assert_eq!(config.broker.request_timeout().as_millis(), 1500);
        assert_eq!(config.broker.connect_timeout_ms, 2000, "defaults stay");
        assert_eq!(config.services[0].id, "store");

        for (text, needle) in [
            (
                "[channel]\nmax_frame_bytes = 10\n",
                "channel.max_frame_bytes is 10",
            ),
            (
                "[channel]\nmax_in_flight = 0\n",
                "channel.max_in_flight is 0",
            ),
            (
                "[broker]\nrequest_timeout_ms = 0\n",
                "broker.request_timeout_ms",
            ),
            ("[pki]\nroot_cert = \"r.pem\"\n", "go together"),
            ("[pki]\nattestation_days = 0\n", "pki.attestation_days"),
            (
                "[[services]]\nid = \"S\"\nbase_url = \"https://h\"\nca = \"c\"\n",
                "services: id \"S\"",
            ),
            (
                "[[services]]\nid = \"s\"\nbase_url = \"https://h\"\nca = \"c\"\n\
                 [[services]]\nid = \"s\"\nbase_url = \"https://g\"\nca = \"c\"\n",
                "appears twice",
            ),
            ("[broker]\nretries = 3\n", "retries"),
            (
                "[broker]\nmax_in_flight_per_service = 0\n",
                "broker.max_in_flight_per_service is 0",
            ),
        ] {
            let err = Config::parse(text, "t").unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn relative_paths_are_resolved_against_the_configuration_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("launcher.toml");
        std::fs::write(
            &path,
            "[pki]\nroot_cert = \"keys/root.pem\"\nroot_key = \"/abs/root.key\"\n\
             [[services]]\nid = \"s\"\nbase_url = \"https://h\"\nca = \"ca.pem\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!(
            config.pki.root_cert.unwrap(),
            dir.path().join("keys/root.pem")
        );
        assert_eq!(
            config.pki.root_key.unwrap(),
            std::path::Path::new("/abs/root.key")
        );
        assert_eq!(config.services[0].ca, dir.path().join("ca.pem"));
    }
}
