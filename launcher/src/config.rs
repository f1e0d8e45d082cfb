//! The launcher's TOML configuration. Every key has a built-in default, so an
//! absent file and an empty file mean the same thing; unknown keys are errors
//! (a typo must not silently fall back to a default).
//!
//! ```toml
//! [server]
//! allow_non_loopback = false     # listening beyond 127.0.0.1/::1 needs this
//! tls_dns_names = []             # extra names for the TLS certificate
//! tls_ip_addresses = []
//!
//! [uploads]
//! max_bytes = 16777216
//!
//! [runs]
//! max_concurrent = 32            # further runs wait, FIFO, as `queued`
//! max_queued = 1000
//! default_time_limit_s = 30
//! max_time_limit_s = 3600
//! output_limit_bytes = 1048576   # per stream; the rest is counted and dropped
//! max_args = 32
//! max_arg_chars = 1024           # the runs route's body limit follows from these
//! [runs.limits]                  # rlimits of every run (0 = unlimited)
//! address_space_bytes = 1073741824
//! open_files = 64
//! processes = 256              # per user, counting the launcher's own threads
//! file_size_bytes = 67108864
//!
//! [builds]
//! time_limit_s = 60
//! log_limit_bytes = 65536
//! max_concurrent = 2
//! default_profile = "host"       # default: detected from the platform
//! services_anchor = "services-ca.pem"  # PEM certificates compiled into builds
//!                                # that name none (default: no anchor)
//! address_space_bytes = 2147483648     # the compiler's RLIMIT_AS (0 = unlimited)
//!
//! [compartment]                  # CheriBSD only
//! cheribsd_release = "24.05"     # when kern.version does not name it
//! c18n_library_path = "/usr/local/lib"
//!
//! [profiles.host]                # overrides or adds a toolchain profile
//! compiler = "cc"
//! flags = ["-std=c11", "-O2", "-g", "-Wall"]
//! libs = ["-lcrypto"]
//!
//! [pki]
//! root_cert = "root.pem"         # an operator-supplied root (with root_key), else generated
//! root_key = "root.key"          # paths relative to this file's folder
//! attestation_days = 365         # validity of a new attestation intermediate
//!
//! [channel]
//! max_frame_bytes = 16777216     # largest fd-3 frame payload either way
//! max_in_flight = 32             # requests of one run served at once
//!
//! [broker]
//! connect_timeout_ms = 2000
//! request_timeout_ms = 10000     # a whole call to a service
//! pool_idle_timeout_s = 90
//! pool_max_idle = 64             # idle keep-alive connections per service
//! service_cert_cache_s = 300
//! max_in_flight_per_service = 16 # calls to one service at once, over all runs
//!
//! [[services]]                   # fixed here; more through PUT /v1/services/{id}
//! id = "store"
//! base_url = "https://127.0.0.1:8000"
//! ca = "services-ca.pem"         # the CA its TLS certificate must chain to
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use crate::toolchain::{Profile, builtin_profiles, detect_default_profile};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub uploads: UploadConfig,
    pub runs: RunConfig,
    pub builds: BuildConfig,
    pub compartment: CompartmentConfig,
    /// Profiles by name, merged over the built-in ones.
    pub profiles: BTreeMap<String, Profile>,
    pub pki: crate::pki::PkiConfig,
    pub channel: crate::channel::ChannelConfig,
    pub broker: crate::broker::BrokerConfig,
    /// Services the broker may call, fixed while the daemon runs.
    pub services: Vec<crate::broker::ServiceEntry>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub allow_non_loopback: bool,
    pub tls_dns_names: Vec<String>,
    pub tls_ip_addresses: Vec<IpAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadConfig {
    pub max_bytes: u64,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    pub max_concurrent: usize,
    pub max_queued: usize,
    pub default_time_limit_s: u32,
    pub max_time_limit_s: u32,
    pub output_limit_bytes: usize,
    pub max_args: usize,
    pub max_arg_chars: usize,
    pub limits: RlimitConfig,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 32,
            max_queued: 1000,
            default_time_limit_s: 30,
            max_time_limit_s: 3600,
            output_limit_bytes: 1024 * 1024,
            max_args: 32,
            max_arg_chars: 1024,
            limits: RlimitConfig::default(),
        }
    }
}

/// rlimits applied to every run; 0 means "leave unlimited".
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RlimitConfig {
    pub address_space_bytes: u64,
    pub open_files: u64,
    pub processes: u64,
    pub file_size_bytes: u64,
}

impl Default for RlimitConfig {
    fn default() -> Self {
        Self {
            address_space_bytes: 1024 * 1024 * 1024,
            open_files: 64,
            // RLIMIT_NPROC counts every process and thread of the user the
            // launcher runs as (its own threads included), so it must leave
            // room for them; root is not bound by it at all.
            processes: 256,
            file_size_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuildConfig {
    pub time_limit_s: u32,
    pub log_limit_bytes: usize,
    pub max_concurrent: usize,
    pub default_profile: Option<String>,
    /// PEM certificates compiled into builds whose request names no anchor
    /// (normally the services CA); none: such programs trust no service.
    pub services_anchor: Option<std::path::PathBuf>,
    /// The compiler's `RLIMIT_AS` (0 = unlimited).
    pub address_space_bytes: u64,
}

/// The compartment's settings (the backend itself is chosen by the
/// platform, and by `--allow-degraded` / `--insecure-no-compartment`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CompartmentConfig {
    /// CheriBSD release (`YY.MM`) when `kern.version` does not name it.
    pub cheribsd_release: Option<String>,
    /// Library path for the run-time linker under c18n (CheriBSD).
    pub c18n_library_path: Option<String>,
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self {
            time_limit_s: 60,
            log_limit_bytes: 64 * 1024,
            max_concurrent: 2,
            default_profile: None,
            services_anchor: None,
            // cc1 on the SDK stays well below; the sandbox crate's own
            // compile default.
            address_space_bytes: 2 << 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    /// Reads `path`, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Self::parse("", "<built-in defaults>");
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut config = Self::parse(&text, &shown)?;
        // Files named in the configuration are relative to its folder.
        let base = path.parent().unwrap_or(Path::new("."));
        config.pki.resolve_paths(base);
        if let Some(anchor) = &mut config.builds.services_anchor {
            *anchor = base.join(&*anchor);
        }
        for service in &mut config.services {
            service.resolve_paths(base);
        }
        Ok(config)
    }

    /// Parses and validates a configuration document.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.to_owned(),
            source,
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: origin.to_owned(),
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let positive = [
            ("uploads.max_bytes", self.uploads.max_bytes),
            ("runs.max_concurrent", self.runs.max_concurrent as u64),
            (
                "runs.default_time_limit_s",
                self.runs.default_time_limit_s as u64,
            ),
            ("runs.max_time_limit_s", self.runs.max_time_limit_s as u64),
            ("builds.time_limit_s", self.builds.time_limit_s as u64),
            ("builds.max_concurrent", self.builds.max_concurrent as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        if self.runs.default_time_limit_s > self.runs.max_time_limit_s {
            return Err(format!(
                "runs.default_time_limit_s ({}) exceeds runs.max_time_limit_s ({})",
                self.runs.default_time_limit_s, self.runs.max_time_limit_s
            ));
        }
        if self.uploads.max_bytes > 1024 * 1024 * 1024 {
            return Err(format!(
                "uploads.max_bytes ({}) is above the 1 GiB ceiling",
                self.uploads.max_bytes
            ));
        }
        if self.runs.limits.open_files != 0 && self.runs.limits.open_files < 8 {
            return Err(format!(
                "runs.limits.open_files ({}) must be 0 (unlimited) or at least 8: \
                 a program needs stdin, stdout, stderr and its channel on fd 3",
                self.runs.limits.open_files
            ));
        }
        for (name, profile) in &self.profiles {
            crate::toolchain::validate_profile(name, profile)?;
        }
        self.pki.validate()?;
        self.channel.validate()?;
        self.broker.validate()?;
        let mut ids = std::collections::BTreeSet::new();
        for service in &self.services {
            if !programs_db::valid_service_id(&service.id) {
                return Err(format!(
                    "services: id {:?} must be 1 to 64 characters of a-z, 0-9 and -",
                    service.id
                ));
            }
            if !ids.insert(service.id.as_str()) {
                return Err(format!("services: id {:?} appears twice", service.id));
            }
        }
        let profiles = self.profiles();
        let default = self.default_profile();
        if !profiles.contains_key(&default) {
            return Err(format!(
                "builds.default_profile {default:?} is not a profile (known: {})",
                profiles.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(())
    }

    /// Built-in profiles with the configured ones laid over them.
    pub fn profiles(&self) -> BTreeMap<String, Profile> {
        let mut profiles = builtin_profiles();
        for (name, profile) in &self.profiles {
            profiles.insert(name.clone(), profile.clone());
        }
        profiles
    }

    /// The configured default profile, else the one detected from the platform.
    pub fn default_profile(&self) -> String {
        self.builds
            .default_profile
            .clone()
            .unwrap_or_else(|| detect_default_profile().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_document_gives_the_defaults() {
        let config = Config::parse("", "test").unwrap();
        assert_eq!(config.uploads.max_bytes, 16 * 1024 * 1024);
        assert_eq!(config.runs.max_concurrent, 32);
        assert!(!config.server.allow_non_loopback);
        let profiles = config.profiles();
        for name in ["host", "morello-purecap", "morello-purecap-benchmark"] {
            assert!(profiles.contains_key(name), "{name}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let err = Config::parse("[uploads]\nmax_byte = 5\n", "c.toml").unwrap_err();
        assert!(err.to_string().contains("max_byte"), "{err}");
        let err = Config::parse("[runs]\nmax_concurrent = 0\n", "c.toml").unwrap_err();
        assert!(
            err.to_string()
                .contains("runs.max_concurrent must be at least 1"),
            "{err}"
        );
        let err = Config::parse(
            "[runs]\ndefault_time_limit_s = 50\nmax_time_limit_s = 10\n",
            "c.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
        let err = Config::parse("[builds]\ndefault_profile = \"nope\"\n", "c.toml").unwrap_err();
        assert!(err.to_string().contains("known: host"), "{err}");
    }

    #[test]
    fn profiles_override_and_extend_the_builtins() {
        let config = Config::parse(
            r#"
            [builds]
            default_profile = "clang"
            [profiles.clang]
            compiler = "clang"
            flags = ["-O1"]
            [profiles.host]
            compiler = "gcc"
            flags = ["-O0"]
            libs = []
            "#,
            "c.toml",
        )
        .unwrap();
        let profiles = config.profiles();
        assert_eq!(profiles["clang"].compiler, "clang");
        assert_eq!(profiles["host"].compiler, "gcc");
        assert!(profiles["host"].libs.is_empty());
        assert_eq!(config.default_profile(), "clang");
    }
}
