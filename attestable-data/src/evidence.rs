//! The evidence: what the launcher asserts about a run, carried as canonical
//! JSON in extension `1.2.3.4.5.6.7.8.6` of the run certificate.
//!
//! Field by field this is the table in `docs/PROTOCOL.md` (Evidence); the
//! golden example is `docs/vectors/evidence-golden.json`. Every struct denies
//! unknown fields and every value has a single textual form, so parsing the
//! certificate's bytes and serializing again gives the same bytes, which the
//! verifier checks.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::canonical::{self, CanonicalError};
use crate::encoding::{HexU64, Sha256Hex, UnixTime};
use crate::memmap::Region;

/// The evidence format this crate writes and accepts.
pub const EVIDENCE_VERSION: u32 = 1;

/// Largest evidence accepted, in canonical bytes.
pub const MAX_EVIDENCE_BYTES: usize = 1 << 20;

/// Layers a `linux-sandbox` compartment reports, in order.
pub const LINUX_SANDBOX_LAYERS: &[&str] = &[
    "namespaces",
    "no_new_privs",
    "landlock",
    "seccomp",
    "rlimits",
];

/// Layers a `cheri-c18n` compartment reports, in order.
pub const CHERI_C18N_LAYERS: &[&str] = &["purecap", "c18n", "capsicum", "rlimits"];

/// Everything the launcher asserts about one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// [`EVIDENCE_VERSION`].
    pub version: u32,
    /// What runs and how it was built.
    pub program: ProgramFacts,
    /// The machine.
    pub platform: Platform,
    /// How the program is confined.
    pub compartment: CompartmentFacts,
    /// This run.
    pub run: RunInfo,
    /// Who asserts all this.
    pub launcher: LauncherInfo,
}

impl Evidence {
    /// The canonical JSON bytes (what extension `.6` holds).
    pub fn to_canonical(&self) -> Result<Vec<u8>, CanonicalError> {
        canonical::to_vec(self)
    }

    /// Parses evidence bytes strictly: valid JSON of this exact shape,
    /// version [`EVIDENCE_VERSION`], at most [`MAX_EVIDENCE_BYTES`], and in
    /// canonical form.
    pub fn from_canonical(bytes: &[u8]) -> Result<Self, EvidenceError> {
        if bytes.len() > MAX_EVIDENCE_BYTES {
            return Err(EvidenceError::TooLarge(bytes.len()));
        }
        let evidence: Evidence =
            serde_json::from_slice(bytes).map_err(|e| EvidenceError::Parse(e.to_string()))?;
        if evidence.version != EVIDENCE_VERSION {
            return Err(EvidenceError::Version(evidence.version));
        }
        let again = evidence
            .to_canonical()
            .map_err(|e| EvidenceError::Parse(e.to_string()))?;
        if again != bytes {
            return Err(EvidenceError::NotCanonical);
        }
        Ok(evidence)
    }
}

/// Evidence bytes that were rejected.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EvidenceError {
    /// Over [`MAX_EVIDENCE_BYTES`].
    #[error("evidence is {0} bytes; the limit is {MAX_EVIDENCE_BYTES}")]
    TooLarge(usize),
    /// Not JSON of the evidence's shape.
    #[error("evidence does not parse: {0}")]
    Parse(String),
    /// Another format version.
    #[error("evidence version {0}; expected {EVIDENCE_VERSION}")]
    Version(u32),
    /// Valid, but not in canonical form.
    #[error("evidence is not in canonical JSON form")]
    NotCanonical,
}

/// The program and its build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramFacts {
    /// The launcher's program id.
    pub id: i64,
    /// The uploaded file's name.
    pub name: String,
    /// The build that produced the executable.
    pub build_id: i64,
    /// SHA-256 of the uploaded source.
    pub source_sha256: Sha256Hex,
    /// SHA-256 of the bytes executed (also extension `.4`).
    pub executable_sha256: Sha256Hex,
    /// SHA-256 of `attestable.h` followed by `attestable.c`, as compiled in.
    pub sdk_sha256: Sha256Hex,
    /// SHA-256 of the services trust anchor (PEM bytes) compiled in, if any.
    pub services_anchor_sha256: Option<Sha256Hex>,
    /// Toolchain profile: `host`, `morello-purecap`, …
    pub toolchain_profile: String,
    /// The compiler's identity (first line of `--version`).
    pub compiler: String,
    /// The compiler's argv after the program name.
    pub flags: Vec<String>,
}

/// The machine the run is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// CPU model, e.g. `Research Morello SoC r0p0`.
    pub cpu_model: String,
    /// Online CPUs.
    pub cpus: u32,
    /// Physical memory in bytes.
    pub physical_memory_bytes: u64,
    /// `uname -s`, e.g. `Linux`, `FreeBSD`.
    pub os: String,
    /// `uname -r`, e.g. `6.1.0-31-amd64`, `15.0-CURRENT`.
    pub os_release: String,
    /// `uname -v`: the kernel's build identity.
    pub kernel: String,
    /// Machine architecture: `x86_64`, `aarch64`, `aarch64c` (CheriBSD purecap).
    pub arch: String,
    /// Host name.
    pub hostname: String,
}

/// A compartment backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Backend {
    /// Linux namespaces, rlimits, no_new_privs, Landlock, seccomp.
    #[serde(rename = "linux-sandbox")]
    LinuxSandbox,
    /// CheriBSD purecap with library compartmentalisation, Capsicum, rlimits.
    #[serde(rename = "cheri-c18n")]
    CheriC18n,
    /// No compartment: the launcher ran with `--insecure-no-compartment`.
    #[serde(rename = "none")]
    None,
}

impl Backend {
    /// The name used in evidence and policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::LinuxSandbox => "linux-sandbox",
            Backend::CheriC18n => "cheri-c18n",
            Backend::None => "none",
        }
    }

    /// The layers this backend reports, each of which must be active unless a
    /// policy allows it degraded.
    pub fn standard_layers(self) -> &'static [&'static str] {
        match self {
            Backend::LinuxSandbox => LINUX_SANDBOX_LAYERS,
            Backend::CheriC18n => CHERI_C18N_LAYERS,
            Backend::None => &[],
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linux-sandbox" => Ok(Backend::LinuxSandbox),
            "cheri-c18n" => Ok(Backend::CheriC18n),
            "none" => Ok(Backend::None),
            other => Err(format!(
                "unknown compartment backend {other:?}; expected linux-sandbox, cheri-c18n or none"
            )),
        }
    }
}

/// Whether a confinement layer is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerStatus {
    /// Set up and in force for this run.
    Active,
    /// The machine cannot provide it (e.g. no Landlock in the kernel).
    Unavailable,
    /// Switched off by the operator.
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

/// One confinement layer of a compartment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// Layer name, e.g. `landlock` (see [`Backend::standard_layers`]).
    pub name: String,
    /// Whether it is in force.
    pub status: LayerStatus,
    /// For a person: what it does, or why it is missing.
    pub detail: String,
}

/// Resource limits of the run; `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// `RLIMIT_AS`.
    pub address_space_bytes: Option<u64>,
    /// `RLIMIT_CPU`.
    pub cpu_seconds: Option<u64>,
    /// `RLIMIT_NOFILE`.
    pub open_files: Option<u64>,
    /// `RLIMIT_NPROC`.
    pub processes: Option<u64>,
    /// `RLIMIT_FSIZE`.
    pub file_size_bytes: Option<u64>,
    /// Wall-clock limit enforced by the launcher.
    pub wall_seconds: Option<u64>,
}

/// The compartment the program runs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompartmentFacts {
    /// Which backend.
    pub backend: Backend,
    /// Each layer and its status.
    pub layers: Vec<Layer>,
    /// Layers the operator allowed to be missing (`--allow-degraded`).
    pub degraded: Vec<String>,
    /// Started with `--insecure-no-compartment`.
    pub insecure: bool,
    /// Resource limits.
    pub limits: Limits,
    /// The program's memory map when it sent `HELLO` (at most
    /// [`crate::memmap::MAX_REGIONS`] regions).
    pub memory_map: Vec<Region>,
    /// Regions left out of `memory_map` to respect the bound.
    pub memory_map_omitted: u64,
    /// Capability bounds the program reported (CHERI only).
    pub cheri_bounds: Option<Vec<CheriCapability>>,
}

/// A capability the program reported from inside, on CHERI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheriCapability {
    /// `pcc`, `stack` or `heap`.
    pub name: String,
    /// `cheri_base_get`.
    pub base: HexU64,
    /// `cheri_length_get`.
    pub length: HexU64,
    /// `cheri_perms_get`.
    pub perms: HexU64,
    /// `cheri_tag_get`.
    pub tag: bool,
}

/// Most capabilities accepted from a program's `HELLO`.
pub const MAX_CHERI_CAPABILITIES: usize = 16;

/// Parses the `cheri_bounds` field of `HELLO`: empty means none; otherwise a
/// JSON array of at most [`MAX_CHERI_CAPABILITIES`] objects
/// `{"name", "base", "length", "perms", "tag"}`, numbers as `0x…` strings of
/// either case (normalised to lowercase), names of 1 to 32 characters from
/// `[a-z0-9_-]`.
pub fn parse_cheri_bounds(text: &str) -> Result<Option<Vec<CheriCapability>>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Reported {
        name: String,
        base: String,
        length: String,
        perms: String,
        tag: bool,
    }
    let reported: Vec<Reported> = serde_json::from_str(text)
        .map_err(|e| format!("cheri_bounds is not a JSON array of capabilities: {e}"))?;
    if reported.len() > MAX_CHERI_CAPABILITIES {
        return Err(format!(
            "cheri_bounds lists {} capabilities; at most {MAX_CHERI_CAPABILITIES} are accepted",
            reported.len()
        ));
    }
    reported
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let valid_name = (1..=32).contains(&r.name.len())
                && r.name
                    .bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
            if !valid_name {
                return Err(format!(
                    "cheri_bounds[{i}].name: expected 1 to 32 characters of [a-z0-9_-], found {:?}",
                    r.name
                ));
            }
            let num = |field: &str, s: &str| {
                HexU64::parse_lenient(s).map_err(|e| format!("cheri_bounds[{i}].{field}: {e}"))
            };
            Ok(CheriCapability {
                base: num("base", &r.base)?,
                length: num("length", &r.length)?,
                perms: num("perms", &r.perms)?,
                name: r.name,
                tag: r.tag,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// This run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunInfo {
    /// The launcher's run id.
    pub id: i64,
    /// When the run started.
    pub started_at: UnixTime,
    /// When its time limit ends.
    pub not_after: UnixTime,
}

/// The launcher that issued the certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LauncherInfo {
    /// The launcher's version.
    pub version: String,
    /// SHA-256 of the attestation intermediate's SubjectPublicKeyInfo.
    pub attestation_key_id: Sha256Hex,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const GOLDEN: &[u8] = include_bytes!("../../docs/vectors/evidence-golden.json");

    /// The evidence of `docs/vectors/evidence-golden.json` (whose constructor
    /// and round-trip test are in `tests/vectors.rs`).
    pub(crate) fn golden() -> Evidence {
        Evidence::from_canonical(GOLDEN).unwrap()
    }

    #[test]
    fn absent_optionals_are_null_not_omitted() {
        let mut e = golden();
        e.program.services_anchor_sha256 = None;
        e.compartment.cheri_bounds = None;
        e.compartment.limits = Limits::default();
        let text = String::from_utf8(e.to_canonical().unwrap()).unwrap();
        assert!(text.contains("\"services_anchor_sha256\":null"));
        assert!(text.contains("\"cheri_bounds\":null"));
        assert!(text.contains("\"limits\":{\"address_space_bytes\":null,\"cpu_seconds\":null"));
        assert_eq!(Evidence::from_canonical(text.as_bytes()).unwrap(), e);
    }

    #[test]
    fn strict_parsing() {
        let text = String::from_utf8(GOLDEN.to_vec()).unwrap();
        let unknown = text.replacen("{\"compartment\"", "{\"bonus\":1,\"compartment\"", 1);
        assert!(
            matches!(Evidence::from_canonical(unknown.as_bytes()), Err(EvidenceError::Parse(m)) if m.contains("bonus"))
        );
        let v2 = text.replace("\"version\":1}", "\"version\":2}");
        assert_eq!(
            Evidence::from_canonical(v2.as_bytes()),
            Err(EvidenceError::Version(2))
        );
        let spaced = text.replacen(':', ": ", 1);
        assert_eq!(
            Evidence::from_canonical(spaced.as_bytes()),
            Err(EvidenceError::NotCanonical)
        );
        let upper = text.replace("\"0x110000\"", "\"0x0110000\"");
        assert!(Evidence::from_canonical(upper.as_bytes()).is_err());
        let backend = text.replace("cheri-c18n", "chroot");
        assert!(Evidence::from_canonical(backend.as_bytes()).is_err());
        assert_eq!(
            Evidence::from_canonical(&vec![b' '; MAX_EVIDENCE_BYTES + 1]),
            Err(EvidenceError::TooLarge(MAX_EVIDENCE_BYTES + 1))
        );
    }

    #[test]
    fn cheri_bounds_from_hello() {
        assert_eq!(parse_cheri_bounds("").unwrap(), None);
        let caps = parse_cheri_bounds(
            r#"[{"name":"pcc","base":"0x0000000000110000","length":"0X2000","perms":"0x27d17","tag":true}]"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(caps[0].base, HexU64(0x110000));
        assert_eq!(caps[0].length, HexU64(0x2000));
        for (bad, needle) in [
            ("{}", "JSON array"),
            (
                r#"[{"name":"PCC","base":"0x0","length":"0x0","perms":"0x0","tag":true}]"#,
                "name",
            ),
            (
                r#"[{"name":"pcc","base":"12","length":"0x0","perms":"0x0","tag":true}]"#,
                "base",
            ),
            (
                r#"[{"name":"pcc","base":"0x0","length":"0x0","perms":"0x0","tag":true,"x":1}]"#,
                "unknown field",
            ),
        ] {
            let err = parse_cheri_bounds(bad).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
        let many = format!(
            "[{}]",
            vec![r#"{"name":"h","base":"0x0","length":"0x0","perms":"0x0","tag":false}"#; 17]
                .join(",")
        );
        assert!(
            parse_cheri_bounds(&many)
                .unwrap_err()
                .contains("at most 16")
        );
    }

    #[test]
    fn backend_names() {
        for b in [Backend::LinuxSandbox, Backend::CheriC18n, Backend::None] {
            assert_eq!(b.as_str().parse::<Backend>().unwrap(), b);
            assert_eq!(serde_json::to_string(&b).unwrap(), format!("\"{b}\""));
        }
        assert!("chroot".parse::<Backend>().is_err());
        assert_eq!(Backend::LinuxSandbox.standard_layers().len(), 5);
    }
}
