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
//!
//! [profiles.host]                # overrides or adds a toolchain profile
//! compiler = "cc"
//! flags = ["-std=c11", "-O2", "-g", "-Wall"]
//! libs = ["-lcrypto"]
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
    /// Profiles by name, merged over the built-in ones.
    pub profiles: BTreeMap<String, Profile>,
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
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self {
            time_limit_s: 60,
            log_limit_bytes: 64 * 1024,
            max_concurrent: 2,
            default_profile: None,
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
        Self::parse(&text, &shown)
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
