//! Names and states of the confinement layers, as `docs/PROTOCOL.md` fixes
//! them for the evidence (`compartment.layers`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The compartment backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Backend {
    /// Namespaces, Landlock, seccomp and rlimits on Linux.
    #[serde(rename = "linux-sandbox")]
    LinuxSandbox,
    /// Purecap executable with library compartmentalisation on CheriBSD.
    #[serde(rename = "cheri-c18n")]
    CheriC18n,
}

impl Backend {
    /// The backend this build of the crate provides.
    pub fn native() -> Option<Backend> {
        if cfg!(target_os = "linux") {
            Some(Backend::LinuxSandbox)
        } else if cfg!(target_os = "freebsd") {
            Some(Backend::CheriC18n)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::LinuxSandbox => "linux-sandbox",
            Backend::CheriC18n => "cheri-c18n",
        }
    }

    /// The layers this backend reports, in report order.
    pub fn layers(self) -> &'static [LayerName] {
        match self {
            Backend::LinuxSandbox => &[
                LayerName::Namespaces,
                LayerName::NoNewPrivs,
                LayerName::Landlock,
                LayerName::Seccomp,
                LayerName::Rlimits,
            ],
            Backend::CheriC18n => &[
                LayerName::Purecap,
                LayerName::C18n,
                LayerName::Capsicum,
                LayerName::Rlimits,
            ],
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One confinement layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerName {
    /// User, mount, PID, network, IPC and UTS namespaces.
    Namespaces,
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivs,
    /// Landlock file system, network and scope rules.
    Landlock,
    /// The seccomp system-call filter.
    Seccomp,
    /// Resource limits.
    Rlimits,
    /// A CHERI pure-capability executable.
    Purecap,
    /// CheriBSD library compartmentalisation.
    C18n,
    /// Capsicum capability mode, entered by the program's start-up code.
    Capsicum,
}

impl LayerName {
    pub const ALL: [LayerName; 8] = [
        LayerName::Namespaces,
        LayerName::NoNewPrivs,
        LayerName::Landlock,
        LayerName::Seccomp,
        LayerName::Rlimits,
        LayerName::Purecap,
        LayerName::C18n,
        LayerName::Capsicum,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LayerName::Namespaces => "namespaces",
            LayerName::NoNewPrivs => "no_new_privs",
            LayerName::Landlock => "landlock",
            LayerName::Seccomp => "seccomp",
            LayerName::Rlimits => "rlimits",
            LayerName::Purecap => "purecap",
            LayerName::C18n => "c18n",
            LayerName::Capsicum => "capsicum",
        }
    }
}

impl fmt::Display for LayerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LayerName {
    type Err = UnknownLayer;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LayerName::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownLayer(s.to_owned()))
    }
}

/// A layer name that is not one of [`LayerName::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown layer {0:?} (known: namespaces, no_new_privs, landlock, seccomp, rlimits, purecap, c18n, capsicum)"
)]
pub struct UnknownLayer(pub String);

/// Whether a layer is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerStatus {
    /// Set up and in force.
    Active,
    /// The machine cannot provide it; `detail` says why.
    Unavailable,
    /// Switched off on purpose (the operator's `--allow-degraded`).
    Disabled,
}

impl fmt::Display for LayerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayerStatus::Active => "active",
            LayerStatus::Unavailable => "unavailable",
            LayerStatus::Disabled => "disabled",
        })
    }
}

/// A layer and its state, in the shape of the evidence's
/// `compartment.layers` entries: `{"name", "status", "detail"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub name: LayerName,
    pub status: LayerStatus,
    /// For a person: what the layer does here, or why it is missing.
    pub detail: String,
}

impl Layer {
    pub fn active(name: LayerName, detail: impl Into<String>) -> Self {
        Layer {
            name,
            status: LayerStatus::Active,
            detail: detail.into(),
        }
    }

    pub fn unavailable(name: LayerName, detail: impl Into<String>) -> Self {
        Layer {
            name,
            status: LayerStatus::Unavailable,
            detail: detail.into(),
        }
    }

    pub fn disabled(name: LayerName, detail: impl Into<String>) -> Self {
        Layer {
            name,
            status: LayerStatus::Disabled,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.name, self.status, self.detail)
    }
}

/// Layers a spawn must leave out, each with the reason to record (e.g.
/// "unavailable on this machine: …; allowed by --allow-degraded").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisabledLayers(BTreeMap<LayerName, String>);

impl DisabledLayers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn disable(&mut self, layer: LayerName, reason: impl Into<String>) {
        self.0.insert(layer, reason.into());
    }

    pub fn contains(&self, layer: LayerName) -> bool {
        self.0.contains_key(&layer)
    }

    pub fn reason(&self, layer: LayerName) -> Option<&str> {
        self.0.get(&layer).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (LayerName, &str)> {
        self.0.iter().map(|(l, r)| (*l, r.as_str()))
    }
}

/// The layers a probe found missing, as one message for a refusal, e.g.
/// `landlock unavailable: kernel built without Landlock`. `None` when all
/// are active or deliberately disabled.
pub fn missing_layers_message(layers: &[Layer]) -> Option<String> {
    let missing: Vec<String> = layers
        .iter()
        .filter(|l| l.status == LayerStatus::Unavailable)
        .map(|l| format!("{} unavailable: {}", l.name, l.detail))
        .collect();
    (!missing.is_empty()).then(|| missing.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_protocol() {
        let linux: Vec<&str> = Backend::LinuxSandbox
            .layers()
            .iter()
            .map(|l| l.as_str())
            .collect();
        assert_eq!(
            linux,
            [
                "namespaces",
                "no_new_privs",
                "landlock",
                "seccomp",
                "rlimits"
            ]
        );
        let cheri: Vec<&str> = Backend::CheriC18n
            .layers()
            .iter()
            .map(|l| l.as_str())
            .collect();
        assert_eq!(cheri, ["purecap", "c18n", "capsicum", "rlimits"]);
        for l in LayerName::ALL {
            assert_eq!(l.as_str().parse::<LayerName>().unwrap(), l);
        }
        let err = "selinux".parse::<LayerName>().unwrap_err();
        assert!(err.to_string().contains("\"selinux\""), "{err}");
    }

    #[test]
    fn layer_serializes_like_the_evidence() {
        let l = Layer::unavailable(LayerName::NoNewPrivs, "prctl failed: EINVAL");
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            r#"{"name":"no_new_privs","status":"unavailable","detail":"prctl failed: EINVAL"}"#
        );
        assert_eq!(
            serde_json::to_string(&Backend::CheriC18n).unwrap(),
            r#""cheri-c18n""#
        );
    }

    #[test]
    fn missing_layers_are_named_with_their_reason() {
        let layers = vec![
            Layer::active(LayerName::Namespaces, "ok"),
            Layer::unavailable(LayerName::Landlock, "kernel built without Landlock"),
            Layer::disabled(LayerName::Seccomp, "allowed by --allow-degraded"),
            Layer::unavailable(LayerName::Rlimits, "setrlimit: EPERM"),
        ];
        assert_eq!(
            missing_layers_message(&layers).unwrap(),
            "landlock unavailable: kernel built without Landlock; rlimits unavailable: setrlimit: EPERM"
        );
        assert_eq!(missing_layers_message(&layers[..1]), None);
        assert_eq!(missing_layers_message(&layers[2..3]), None);
    }

    #[test]
    fn disabled_layers_keep_their_reason() {
        let mut d = DisabledLayers::new();
        assert!(d.is_empty());
        d.disable(LayerName::Landlock, "operator");
        assert!(d.contains(LayerName::Landlock));
        assert!(!d.contains(LayerName::Seccomp));
        assert_eq!(d.reason(LayerName::Landlock), Some("operator"));
        assert_eq!(d.iter().count(), 1);
    }
}
