//! How a service is started: where, and the case study's knobs (the
//! simulated customer's answer, how long a taxi stays busy).
//!
//! The knobs come from `<data>/config.toml` (or `--config FILE`) and can be
//! overridden on the command line:
//!
//! ```toml
//! [messaging]
//! customer_reply = "accept"   # accept | decline | none
//!
//! [taxi]
//! trip_seconds = 120          # a driver is busy this long after being assigned
//! ```

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::kind::ServiceKind;

/// What the simulated customer answers once a message reached their phone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CustomerReply {
    /// `ACCEPT`.
    #[default]
    Accept,
    /// `DECLINE`.
    Decline,
    /// No answer: reads of `replies/<phone>` find `null`.
    None,
}

impl CustomerReply {
    /// The reply text, if the customer answers.
    pub fn answer(self) -> Option<&'static str> {
        match self {
            CustomerReply::Accept => Some("ACCEPT"),
            CustomerReply::Decline => Some("DECLINE"),
            CustomerReply::None => None,
        }
    }
}

impl FromStr for CustomerReply {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "accept" => Ok(CustomerReply::Accept),
            "decline" => Ok(CustomerReply::Decline),
            "none" => Ok(CustomerReply::None),
            other => Err(format!("expected accept, decline or none, found {other:?}")),
        }
    }
}

impl fmt::Display for CustomerReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CustomerReply::Accept => "accept",
            CustomerReply::Decline => "decline",
            CustomerReply::None => "none",
        })
    }
}

/// The case study's knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The simulated customer's answer.
    pub customer_reply: CustomerReply,
    /// How long an assigned driver stays busy.
    pub trip_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            customer_reply: CustomerReply::Accept,
            trip_seconds: 120,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    messaging: MessagingSection,
    #[serde(default)]
    taxi: TaxiSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagingSection {
    customer_reply: Option<CustomerReply>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaxiSection {
    trip_seconds: Option<u64>,
}

/// Longest trip a configuration may ask for (a day).
const MAX_TRIP_SECONDS: u64 = 86_400;

impl Settings {
    /// Reads `path` when given (it must exist), else `default_path` when it
    /// exists, else the defaults.
    pub fn load(path: Option<&Path>, default_path: &Path) -> anyhow::Result<Self> {
        let path = match path {
            Some(p) => Some(p.to_path_buf()),
            None if default_path.exists() => Some(default_path.to_path_buf()),
            None => None,
        };
        let file = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading the configuration {}", p.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("configuration {}", p.display()))?
            }
            None => FileConfig::default(),
        };
        let defaults = Settings::default();
        let settings = Settings {
            customer_reply: file
                .messaging
                .customer_reply
                .unwrap_or(defaults.customer_reply),
            trip_seconds: file.taxi.trip_seconds.unwrap_or(defaults.trip_seconds),
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the values' ranges.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.trip_seconds > MAX_TRIP_SECONDS {
            bail!(
                "taxi trip_seconds: expected 0 to {MAX_TRIP_SECONDS}, found {}",
                self.trip_seconds
            );
        }
        Ok(())
    }
}

/// Everything [`crate::start`] needs to run one service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The data folder.
    pub data: PathBuf,
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Allow an address beyond loopback.
    pub allow_non_loopback: bool,
    /// The case study's knobs.
    pub settings: Settings,
    /// How often the policy file is checked for changes.
    pub policy_poll: Duration,
}

impl ServiceConfig {
    /// Defaults for `kind`: `127.0.0.1:<CAMB port>`, default settings, 500 ms polling.
    pub fn new(kind: ServiceKind, data: impl Into<PathBuf>) -> Self {
        Self {
            data: data.into(),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, kind.default_port())),
            allow_non_loopback: false,
            settings: Settings::default(),
            policy_poll: Duration::from_millis(500),
        }
    }

    /// Refuses a non-loopback address unless allowed.
    pub fn check_listen(&self, kind: ServiceKind) -> anyhow::Result<()> {
        if !self.listen.ip().is_loopback() && !self.allow_non_loopback {
            bail!(
                "refusing to serve {kind} on {}: not a loopback address; pass \
                 --allow-non-loopback to serve beyond this machine",
                self.listen
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_file_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("absent.toml");
        assert_eq!(Settings::load(None, &absent).unwrap(), Settings::default());
        assert!(Settings::load(Some(&absent), &absent).is_err());

        let file = dir.path().join("config.toml");
        std::fs::write(
            &file,
            "[messaging]\ncustomer_reply = \"decline\"\n[taxi]\ntrip_seconds = 5\n",
        )
        .unwrap();
        let s = Settings::load(None, &file).unwrap();
        assert_eq!(s.customer_reply, CustomerReply::Decline);
        assert_eq!(s.trip_seconds, 5);

        std::fs::write(&file, "[messaging]\ncustomer_replies = \"none\"\n").unwrap();
        let err = format!("{:#}", Settings::load(None, &file).unwrap_err());
        assert!(err.contains("customer_replies"), "{err}");
        std::fs::write(&file, "[taxi]\ntrip_seconds = 999999\n").unwrap();
        assert!(Settings::load(None, &file).is_err());
    }
}
