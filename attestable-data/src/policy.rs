//! Trust policies (TOML) and the decisions they make.
//!
//! A policy is deny-by-default: with no `trusted_root` nothing chains, with
//! no `allow` rule no measurement is trusted, degraded and insecure runs are
//! refused unless named, and unknown keys are errors, so a typo cannot
//! silently allow anything. The full grammar:
//!
//! ```toml
//! allowed_backends = ["linux-sandbox", "cheri-c18n"] # default: both; backend "none" is up to allow_insecure
//! required_layers = ["landlock"]  # must be active, beyond the backend's standard layers
//! allow_degraded = ["seccomp"]    # standard layers a run may lack; default none
//! allow_insecure = false          # runs without a compartment (--insecure-no-compartment)
//! max_certificate_age_s = 3600    # since the run started; default 3600
//! timestamp_skew_s = 60           # requests: |now - timestamp| at most this; default 60
//!
//! [[trusted_root]]                # launcher roots; one of pem / file
//! name = "dev launcher"
//! pem = """-----BEGIN CERTIFICATE-----
//! …
//! -----END CERTIFICATE-----"""
//!
//! [[trusted_root]]
//! name = "lab board"
//! file = "roots/morello.pem"      # relative to the policy file's folder
//!
//! [[allow]]
//! name = "case study"             # optional; proofs name the rule by it
//! executable_sha256 = "e98a…"     # and/or source_sha256 + toolchain_profile + services_anchor_sha256
//!                                 # (all that are given must match)
//! resources = ["sales/last", "replies/*"]  # exact, "prefix/*", or "*"
//! ops = ["read"]                  # "read", "write"
//! ```
//!
//! Top-level keys must come before the first `[[…]]` table (TOML puts any
//! key after a table header inside that table).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use openssl::x509::X509;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::encoding::{Sha256Hex, UnixTime};
use crate::evidence::{Backend, CHERI_C18N_LAYERS, LINUX_SANDBOX_LAYERS, LayerStatus};
use crate::proof::{Failure, ProofBuilder, StepFailure, StepName, TrustDecision};
use crate::verify::{
    TrustAnchors, VerifiedRunCertificate, check_validity, parse_chain_pem, verify_chain,
};

/// An operation on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// `POST /attested/read`.
    Read,
    /// `POST /attested/write`.
    Write,
}

impl Op {
    /// `read` or `write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Op {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Op::Read),
            "write" => Ok(Op::Write),
            other => Err(format!("expected read or write, found {other:?}")),
        }
    }
}

/// Longest resource path, in bytes.
pub const MAX_RESOURCE_BYTES: usize = 512;

/// Checks a resource path: segments of `[A-Za-z0-9._~+@=:-]` separated by
/// single `/`, none of them `.` or `..`, at most [`MAX_RESOURCE_BYTES`].
pub fn validate_resource(resource: &str) -> Result<(), String> {
    let expected = "a resource path like sales/last (segments of A-Z a-z 0-9 . _ ~ + @ = : -)";
    if resource.is_empty() || resource.len() > MAX_RESOURCE_BYTES {
        return Err(format!(
            "expected {expected} of 1 to {MAX_RESOURCE_BYTES} bytes, found {} bytes",
            resource.len()
        ));
    }
    for segment in resource.split('/') {
        let ok = !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'.' | b'_' | b'~' | b'+' | b'@' | b'=' | b':' | b'-')
            });
        if !ok {
            let shown: String = resource.chars().take(80).collect();
            return Err(format!("expected {expected}, found {shown:?}"));
        }
    }
    Ok(())
}

/// The collection of a resource: its first path segment.
pub fn collection(resource: &str) -> &str {
    resource.split('/').next().unwrap_or(resource)
}

/// Which resources an allow rule covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResourcePattern {
    /// `*`: every resource.
    Any,
    /// `prefix/*`: every resource under `prefix/` (not `prefix` itself).
    Prefix(String),
    /// Exactly this resource.
    Exact(String),
}

impl ResourcePattern {
    /// True when `resource` is covered.
    pub fn matches(&self, resource: &str) -> bool {
        match self {
            ResourcePattern::Any => true,
            ResourcePattern::Prefix(p) => resource
                .strip_prefix(p.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| !rest.is_empty()),
            ResourcePattern::Exact(r) => r == resource,
        }
    }
}

impl fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourcePattern::Any => f.write_str("*"),
            ResourcePattern::Prefix(p) => write!(f, "{p}/*"),
            ResourcePattern::Exact(r) => f.write_str(r),
        }
    }
}

impl FromStr for ResourcePattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(ResourcePattern::Any);
        }
        if let Some(prefix) = s.strip_suffix("/*") {
            validate_resource(prefix)?;
            return Ok(ResourcePattern::Prefix(prefix.to_string()));
        }
        validate_resource(s)
            .map_err(|e| format!("{e} (patterns: exact, \"prefix/*\" or \"*\")"))?;
        Ok(ResourcePattern::Exact(s.to_string()))
    }
}

impl Serialize for ResourcePattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResourcePattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One `[[trusted_root]]`: a name and either inline PEM or a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedRootEntry {
    /// Shown in proofs.
    pub name: String,
    /// The root certificate, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem: Option<String>,
    /// A PEM file holding it, relative to the policy file's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// One `[[allow]]` rule: a measurement, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// Shown in proofs; rules without a name are shown as `allow[<index>]`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The executable's SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable_sha256: Option<Sha256Hex>,
    /// The source's SHA-256 (needs `toolchain_profile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sha256: Option<Sha256Hex>,
    /// The toolchain profile the source must have been built with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toolchain_profile: Option<String>,
    /// The SHA-256 of the services anchor compiled in (needed with
    /// `source_sha256`): whoever asks for a build chooses the anchor, and a
    /// program that trusts another CA would hand its data to another service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services_anchor_sha256: Option<Sha256Hex>,
    /// Resources the rule covers; empty: the measurement is trusted but may use nothing.
    #[serde(default)]
    pub resources: Vec<ResourcePattern>,
    /// Operations allowed on them.
    #[serde(default)]
    pub ops: Vec<Op>,
}

impl AllowRule {
    /// A rule trusting an executable hash for `ops` on `resources`.
    pub fn for_executable(
        name: impl Into<String>,
        executable_sha256: Sha256Hex,
        resources: Vec<ResourcePattern>,
        ops: Vec<Op>,
    ) -> Self {
        Self {
            name: name.into(),
            executable_sha256: Some(executable_sha256),
            source_sha256: None,
            toolchain_profile: None,
            services_anchor_sha256: None,
            resources,
            ops,
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.executable_sha256.is_none() && self.source_sha256.is_none() {
            return Err("names no measurement: give executable_sha256, or source_sha256 with toolchain_profile".into());
        }
        if self.source_sha256.is_some() != self.toolchain_profile.is_some() {
            return Err("source_sha256 and toolchain_profile go together".into());
        }
        if self.source_sha256.is_some() && self.services_anchor_sha256.is_none() {
            return Err(
                "source_sha256 needs services_anchor_sha256: the services anchor compiled into \
                 a program is chosen per build, and another one would send its data elsewhere"
                    .into(),
            );
        }
        if self.resources.is_empty() != self.ops.is_empty() {
            return Err("resources and ops go together (both empty: trusted for nothing)".into());
        }
        Ok(())
    }

    fn matches(&self, v: &VerifiedRunCertificate) -> bool {
        let p = &v.evidence().program;
        self.executable_sha256
            .is_none_or(|h| h == p.executable_sha256)
            && self.source_sha256.is_none_or(|h| h == p.source_sha256)
            && self
                .toolchain_profile
                .as_ref()
                .is_none_or(|t| *t == p.toolchain_profile)
            && self
                .services_anchor_sha256
                .is_none_or(|h| Some(h) == p.services_anchor_sha256)
    }

    fn describe_measurement(&self) -> String {
        let mut parts = Vec::new();
        if let Some(h) = self.executable_sha256 {
            parts.push(format!("executable {}…", h.short(8)));
        }
        if let (Some(h), Some(t)) = (self.source_sha256, &self.toolchain_profile) {
            parts.push(format!("source {}… with toolchain {t}", h.short(8)));
        }
        if let Some(h) = self.services_anchor_sha256 {
            parts.push(format!("services anchor {}…", h.short(8)));
        }
        parts.join(" and ")
    }
}

fn default_backends() -> Vec<Backend> {
    vec![Backend::LinuxSandbox, Backend::CheriC18n]
}
fn default_max_age() -> u64 {
    3600
}
fn default_skew() -> u64 {
    60
}

/// A policy as written in its TOML file (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Accepted compartment backends.
    #[serde(default = "default_backends")]
    pub allowed_backends: Vec<Backend>,
    /// Layers that must be active in addition to the backend's standard ones.
    #[serde(default)]
    pub required_layers: Vec<String>,
    /// Layers a run may have degraded (not active, or in `compartment.degraded`).
    #[serde(default)]
    pub allow_degraded: Vec<String>,
    /// Accept runs without a compartment.
    #[serde(default)]
    pub allow_insecure: bool,
    /// Oldest run certificate accepted, seconds since the run started.
    #[serde(default = "default_max_age")]
    pub max_certificate_age_s: u64,
    /// Largest difference between a request's timestamp and now, in seconds.
    #[serde(default = "default_skew")]
    pub timestamp_skew_s: u64,
    /// Trusted launcher roots.
    #[serde(default, rename = "trusted_root")]
    pub trusted_roots: Vec<TrustedRootEntry>,
    /// Allow rules.
    #[serde(default)]
    pub allow: Vec<AllowRule>,
}

impl Default for PolicyDocument {
    /// The empty policy: denies everything.
    fn default() -> Self {
        Self {
            allowed_backends: default_backends(),
            required_layers: Vec::new(),
            allow_degraded: Vec::new(),
            allow_insecure: false,
            max_certificate_age_s: default_max_age(),
            timestamp_skew_s: default_skew(),
            trusted_roots: Vec::new(),
            allow: Vec::new(),
        }
    }
}

/// A policy that could not be read, parsed or used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not TOML of the policy's grammar (unknown keys included).
    #[error("policy{}: {message}", origin.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Syntax {
        /// The file, if any.
        origin: Option<PathBuf>,
        /// The TOML parser's message (with line and column).
        message: String,
    },
    /// Valid TOML, but an entry does not make sense.
    #[error("policy {at}: {message}")]
    Invalid {
        /// Which entry, e.g. `allow[1] "case study"`.
        at: String,
        /// What is wrong.
        message: String,
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
}

/// Largest root file read: a PEM certificate is a few KiB, and a path naming
/// a device or a huge file must not exhaust a service's memory on reload.
pub const MAX_ROOT_FILE_BYTES: u64 = 1024 * 1024;

fn read_root_file(path: &Path, at: impl Fn() -> String) -> Result<Vec<u8>, PolicyError> {
    use std::io::Read;
    let io = |source| PolicyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_ROOT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_ROOT_FILE_BYTES {
        return Err(invalid(
            at(),
            format!(
                "{}: expected a PEM certificate of at most {MAX_ROOT_FILE_BYTES} bytes, \
                 found a longer file",
                path.display()
            ),
        ));
    }
    Ok(bytes)
}

fn invalid(at: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        at: at.into(),
        message: message.into(),
    }
}

impl PolicyDocument {
    /// Parses and validates policy TOML.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let doc: PolicyDocument = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            origin: None,
            message: e.to_string(),
        })?;
        doc.validate()?;
        Ok(doc)
    }

    /// Checks what the grammar cannot: known layer names, rules that name a
    /// measurement, roots with exactly one source, positive limits.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let known = |l: &String| {
            LINUX_SANDBOX_LAYERS.contains(&l.as_str()) || CHERI_C18N_LAYERS.contains(&l.as_str())
        };
        for (key, list) in [
            ("required_layers", &self.required_layers),
            ("allow_degraded", &self.allow_degraded),
        ] {
            if let Some(bad) = list.iter().find(|l| !known(l)) {
                return Err(invalid(
                    key,
                    format!(
                        "unknown layer {bad:?}; expected one of {}, {}",
                        LINUX_SANDBOX_LAYERS.join(", "),
                        CHERI_C18N_LAYERS.join(", ")
                    ),
                ));
            }
        }
        if self.max_certificate_age_s == 0 {
            return Err(invalid(
                "max_certificate_age_s",
                "expected at least 1 s, found 0",
            ));
        }
        if !(1..=86_400).contains(&self.timestamp_skew_s) {
            return Err(invalid(
                "timestamp_skew_s",
                format!("expected 1 to 86400 s, found {}", self.timestamp_skew_s),
            ));
        }
        for (i, root) in self.trusted_roots.iter().enumerate() {
            if root.pem.is_some() == root.file.is_some() {
                return Err(invalid(
                    format!("trusted_root[{i}] {:?}", root.name),
                    "expected exactly one of pem or file",
                ));
            }
        }
        for (i, rule) in self.allow.iter().enumerate() {
            rule.validate()
                .map_err(|m| invalid(format!("allow[{i}] {:?}", rule.name), m))?;
        }
        Ok(())
    }

    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            PolicyError::Syntax { message, .. } => PolicyError::Syntax {
                origin: Some(path.to_path_buf()),
                message,
            },
            other => other,
        })
    }

    /// The policy as TOML (comments of a loaded file are not kept).
    pub fn to_toml(&self) -> Result<String, PolicyError> {
        toml::to_string_pretty(self).map_err(|e| invalid("document", e.to_string()))
    }

    /// Writes the policy to `path` atomically (mode 0644).
    pub fn save(&self, path: &Path) -> Result<(), PolicyError> {
        self.validate()?;
        let text = self.to_toml()?;
        crate::pki::write_atomic(path, text.as_bytes(), 0o644).map_err(|e| match e {
            crate::pki::PkiError::Io { path, source } => PolicyError::Io { path, source },
            other => invalid("save", other.to_string()),
        })
    }

    /// Adds an allow rule; returns false (and changes nothing) when an equal
    /// rule is already there.
    pub fn add_allow_rule(&mut self, rule: AllowRule) -> Result<bool, PolicyError> {
        rule.validate()
            .map_err(|m| invalid(format!("new allow rule {:?}", rule.name), m))?;
        if self.allow.contains(&rule) {
            return Ok(false);
        }
        self.allow.push(rule);
        Ok(true)
    }

    /// Adds a trusted root given as PEM (checked to hold one certificate).
    pub fn add_trusted_root_pem(&mut self, name: &str, pem: &str) -> Result<(), PolicyError> {
        let at = || format!("new trusted_root {name:?}");
        let certs = X509::stack_from_pem(pem.as_bytes()).map_err(|_| {
            invalid(
                at(),
                "expected a PEM certificate, found text that does not parse",
            )
        })?;
        if certs.len() != 1 {
            return Err(invalid(
                at(),
                format!("expected one certificate, found {}", certs.len()),
            ));
        }
        self.trusted_roots.push(TrustedRootEntry {
            name: name.to_string(),
            pem: Some(pem.trim_end().to_string() + "\n"),
            file: None,
        });
        Ok(())
    }

    /// Adds a trusted root read from `file` when the policy is compiled.
    pub fn add_trusted_root_file(&mut self, name: &str, file: &Path) {
        self.trusted_roots.push(TrustedRootEntry {
            name: name.to_string(),
            pem: None,
            file: Some(file.to_path_buf()),
        });
    }
}

/// What a program asks to do, for a decision about a request.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    /// The deciding service's name.
    pub service: &'a str,
    /// The operation.
    pub op: Op,
    /// The resource path.
    pub resource: &'a str,
}

/// The outcome of [`Policy::check_certificate`].
#[derive(Debug, Clone)]
pub struct CertificateCheck {
    /// Allow or deny, with the proof.
    pub decision: TrustDecision,
    /// The verified certificate, when steps 1 to 3 held (even if a later one failed).
    pub certificate: Option<VerifiedRunCertificate>,
}

/// A validated policy with its roots loaded: what decisions are made with.
#[derive(Debug)]
pub struct Policy {
    document: PolicyDocument,
    anchors: TrustAnchors,
}

impl Policy {
    /// Compiles a document, reading `file` roots relative to `base_dir`
    /// (the current folder when `None`).
    pub fn from_document(
        document: PolicyDocument,
        base_dir: Option<&Path>,
    ) -> Result<Self, PolicyError> {
        document.validate()?;
        let mut roots = Vec::new();
        for (i, entry) in document.trusted_roots.iter().enumerate() {
            let at = || format!("trusted_root[{i}] {:?}", entry.name);
            let pem = match (&entry.pem, &entry.file) {
                (Some(pem), _) => pem.as_bytes().to_vec(),
                (None, Some(file)) => {
                    let path = match base_dir {
                        Some(dir) if file.is_relative() => dir.join(file),
                        _ => file.clone(),
                    };
                    read_root_file(&path, at)?
                }
                (None, None) => return Err(invalid(at(), "expected pem or file")),
            };
            let certs = X509::stack_from_pem(&pem).map_err(|_| {
                invalid(
                    at(),
                    "expected a PEM certificate, found text that does not parse",
                )
            })?;
            if certs.len() != 1 {
                return Err(invalid(
                    at(),
                    format!("expected one certificate, found {}", certs.len()),
                ));
            }
            roots.extend(certs.into_iter().map(|c| (entry.name.clone(), c)));
        }
        let anchors =
            TrustAnchors::new(roots).map_err(|e| invalid("trusted_root", e.to_string()))?;
        Ok(Self { document, anchors })
    }

    /// Parses and compiles policy TOML.
    pub fn from_toml(text: &str, base_dir: Option<&Path>) -> Result<Self, PolicyError> {
        Self::from_document(PolicyDocument::parse(text)?, base_dir)
    }

    /// Loads and compiles a policy file; `file` roots are relative to its folder.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        Self::from_document(PolicyDocument::load(path)?, path.parent())
    }

    /// The empty policy, which denies everything.
    pub fn deny_all() -> Self {
        Self::from_document(PolicyDocument::default(), None)
            .expect("the default policy is valid and reads no file")
    }

    /// The document it was compiled from.
    pub fn document(&self) -> &PolicyDocument {
        &self.document
    }

    /// The trusted roots.
    pub fn anchors(&self) -> &TrustAnchors {
        &self.anchors
    }

    /// The request timestamp skew, seconds.
    pub fn timestamp_skew_s(&self) -> u64 {
        self.document.timestamp_skew_s
    }

    /// Decides about a run certificate alone (the CLI's `cert verify`, a
    /// policy test against a sample): steps `trusted_root` to `freshness`,
    /// then `measurement`, and `permission` when `access` is given.
    pub fn check_certificate(
        &self,
        chain_pem: &str,
        now: i64,
        access: Option<Access<'_>>,
    ) -> CertificateCheck {
        let mut proof = ProofBuilder::new();
        let chain = match parse_chain_pem(chain_pem) {
            Ok(chain) => chain,
            Err(e) => {
                return CertificateCheck {
                    decision: proof.deny(StepFailure::new(
                        StepName::Chain,
                        "the certificate chain parses",
                        Failure::new(
                            "malformed chain",
                            "PEM certificates, run certificate first",
                            e.to_string(),
                        ),
                    )),
                    certificate: None,
                };
            }
        };
        let verified = match verify_chain(&chain, &self.anchors) {
            Ok(v) => v,
            Err(r) => {
                return CertificateCheck {
                    decision: r.into_decision(),
                    certificate: None,
                };
            }
        };
        verified.record_trust_steps(&mut proof);
        let outcome = (|| {
            self.check_run(&verified, now, &mut proof)?;
            let rules = self.check_measurement(&verified, &mut proof)?;
            match access {
                Some(access) => {
                    self.check_permission(&verified, &rules, access, &mut proof)?;
                    Ok(self.access_conclusion(&verified, access))
                }
                None => Ok(format!(
                    "{} speaks-for trusted {} ({})",
                    verified.program_label(),
                    verified.measurement_label(),
                    verified.run_name()
                )),
            }
        })();
        CertificateCheck {
            decision: match outcome {
                Ok(conclusion) => proof.allow(conclusion),
                Err(f) => proof.deny(f),
            },
            certificate: Some(verified),
        }
    }

    /// Steps 4 and 5: `compartment` and `freshness`.
    pub(crate) fn check_run(
        &self,
        v: &VerifiedRunCertificate,
        now: i64,
        proof: &mut ProofBuilder,
    ) -> Result<(), StepFailure> {
        let statement = self.check_compartment(v)?;
        proof.held(
            StepName::Compartment,
            statement,
            "policy: allowed_backends, allow_degraded",
        );
        check_validity(v, now)?;
        let started = v.evidence().run.started_at;
        let age = now.saturating_sub(started.secs()).max(0);
        let max = self.document.max_certificate_age_s;
        let statement = format!("Certificate[{}] is-fresh: issued {age} s ago", v.run_name());
        if age as u64 > max {
            return Err(StepFailure::new(
                StepName::Freshness,
                statement,
                Failure::new(
                    "the run certificate is older than the policy allows",
                    format!("issued at most {max} s ago (policy: max_certificate_age_s)"),
                    format!("issued {age} s ago, at {started}"),
                ),
            ));
        }
        proof.held(
            StepName::Freshness,
            statement,
            format!("policy: max_certificate_age_s = {max}"),
        );
        Ok(())
    }

    fn check_compartment(&self, v: &VerifiedRunCertificate) -> Result<String, StepFailure> {
        let c = &v.evidence().compartment;
        let doc = &self.document;
        let statement = format!("Compartment[{}] is-acceptable", c.backend);
        let fail = |reason: &str, expected: String, found: String| {
            Err(StepFailure::new(
                StepName::Compartment,
                statement.clone(),
                Failure::new(reason, expected, found),
            ))
        };
        if c.insecure || c.backend == Backend::None {
            if !doc.allow_insecure {
                return fail(
                    "the run has no compartment",
                    "a compartmentalised run (policy: allow_insecure = false)".into(),
                    format!(
                        "backend {}{}",
                        c.backend,
                        if c.insecure {
                            ", started with --insecure-no-compartment"
                        } else {
                            ""
                        }
                    ),
                );
            }
            return Ok(format!("{statement}: insecure run allowed"));
        }
        if !doc.allowed_backends.contains(&c.backend) {
            let allowed: Vec<&str> = doc.allowed_backends.iter().map(|b| b.as_str()).collect();
            return fail(
                "the backend is not allowed",
                format!("one of [{}] (policy: allowed_backends)", allowed.join(", ")),
                c.backend.to_string(),
            );
        }
        let mut required: Vec<&str> = c.backend.standard_layers().to_vec();
        for l in &doc.required_layers {
            if !required.contains(&l.as_str()) {
                required.push(l);
            }
        }
        let allowed_degraded = |name: &str| doc.allow_degraded.iter().any(|l| l == name);
        let mut active = Vec::new();
        let mut degraded = Vec::new();
        for name in &required {
            let layer = c.layers.iter().find(|l| l.name == *name);
            let status = layer.map(|l| l.status);
            let is_active =
                status == Some(LayerStatus::Active) && !c.degraded.iter().any(|d| d == name);
            if is_active {
                active.push(*name);
                continue;
            }
            let standard = c.backend.standard_layers().contains(name);
            if standard && allowed_degraded(name) {
                degraded.push(*name);
                continue;
            }
            let found = match layer {
                None => format!("{name} not reported"),
                Some(l) if l.status == LayerStatus::Active => {
                    format!("{name} marked degraded by the operator")
                }
                Some(l) => format!(
                    "{name} {}{}",
                    l.status,
                    if l.detail.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", l.detail)
                    }
                ),
            };
            return fail(
                "a required layer is not active",
                format!(
                    "active: {} (policy: allow_degraded = [{}])",
                    required.join(", "),
                    doc.allow_degraded.join(", ")
                ),
                found,
            );
        }
        // Degraded layers outside the standard set must be allowed too.
        if let Some(d) = c
            .degraded
            .iter()
            .find(|d| !allowed_degraded(d) && !required.contains(&d.as_str()))
        {
            return fail(
                "the run is degraded",
                format!(
                    "no degraded layer beyond [{}] (policy: allow_degraded)",
                    doc.allow_degraded.join(", ")
                ),
                format!("degraded: {d}"),
            );
        }
        let mut s = format!("{statement}: {} active", active.join(", "));
        if !degraded.is_empty() {
            s.push_str(&format!("; degraded: {}", degraded.join(", ")));
        }
        Ok(s)
    }

    fn rule_label(&self, index: usize) -> String {
        match self.document.allow.get(index) {
            Some(r) if !r.name.is_empty() => format!("allow {:?}", r.name),
            _ => format!("allow[{index}]"),
        }
    }

    /// Step 8, `measurement`: the indices of the rules naming the measurement.
    pub(crate) fn check_measurement(
        &self,
        v: &VerifiedRunCertificate,
        proof: &mut ProofBuilder,
    ) -> Result<Vec<usize>, StepFailure> {
        let rules: Vec<usize> = (0..self.document.allow.len())
            .filter(|&i| self.document.allow[i].matches(v))
            .collect();
        let statement = format!("{} is-trusted", v.measurement_label());
        if rules.is_empty() {
            let p = &v.evidence().program;
            let allowed: Vec<String> = self
                .document
                .allow
                .iter()
                .map(AllowRule::describe_measurement)
                .collect();
            let mut expected = format!("one of {} allowed measurements", allowed.len());
            if !allowed.is_empty() {
                let shown: Vec<&str> = allowed.iter().take(4).map(String::as_str).collect();
                expected.push_str(&format!(
                    ": {}{}",
                    shown.join("; "),
                    if allowed.len() > 4 { "; …" } else { "" }
                ));
            }
            return Err(StepFailure::new(
                StepName::Measurement,
                statement,
                Failure::new(
                    format!(
                        "no allow rule names executable {}…",
                        p.executable_sha256.short(8)
                    ),
                    expected,
                    format!(
                        "executable {}, source {} built with toolchain {} and services anchor {}",
                        p.executable_sha256,
                        p.source_sha256,
                        p.toolchain_profile,
                        p.services_anchor_sha256
                            .map_or_else(|| "none".to_owned(), |h| h.to_string())
                    ),
                ),
            ));
        }
        let labels: Vec<String> = rules.iter().map(|&i| self.rule_label(i)).collect();
        proof.held(
            StepName::Measurement,
            statement,
            format!("policy: {}", labels.join(", ")),
        );
        Ok(rules)
    }

    /// How a proof names `resource`: in full when a rule names it exactly
    /// (the policy already says it), else by its collection (`replies/…`),
    /// because the rest of a path may identify a person.
    pub fn shown_resource(&self, resource: &str) -> String {
        let named = self.document.allow.iter().any(|r| {
            r.resources
                .iter()
                .any(|p| matches!(p, ResourcePattern::Exact(e) if e == resource))
        });
        if named || !resource.contains('/') {
            resource.to_string()
        } else {
            format!("{}/…", collection(resource))
        }
    }

    /// Step 9, `permission`: one of `rules` grants `access`.
    pub(crate) fn check_permission(
        &self,
        v: &VerifiedRunCertificate,
        rules: &[usize],
        access: Access<'_>,
        proof: &mut ProofBuilder,
    ) -> Result<(), StepFailure> {
        let shown = self.shown_resource(access.resource);
        let statement = format!(
            "{} is-trusted-for {} {}:{shown}",
            v.measurement_label(),
            access.op,
            access.service
        );
        let granting = rules.iter().copied().find(|&i| {
            let r = &self.document.allow[i];
            r.ops.contains(&access.op) && r.resources.iter().any(|p| p.matches(access.resource))
        });
        match granting {
            Some(i) => {
                proof.held(
                    StepName::Permission,
                    statement,
                    format!("policy: {}", self.rule_label(i)),
                );
                Ok(())
            }
            None => {
                let grants: Vec<String> = rules
                    .iter()
                    .map(|&i| {
                        let r = &self.document.allow[i];
                        let ops: Vec<&str> = r.ops.iter().map(|o| o.as_str()).collect();
                        let res: Vec<String> =
                            r.resources.iter().map(ToString::to_string).collect();
                        if ops.is_empty() {
                            format!("{} grants nothing", self.rule_label(i))
                        } else {
                            format!(
                                "{} grants {} on {}",
                                self.rule_label(i),
                                ops.join("+"),
                                res.join(", ")
                            )
                        }
                    })
                    .collect();
                Err(StepFailure::new(
                    StepName::Permission,
                    statement,
                    Failure::new(
                        "the resource is not granted",
                        format!(
                            "an allow rule for {} granting {} on {shown}",
                            v.measurement_label(),
                            access.op
                        ),
                        grants.join("; "),
                    ),
                ))
            }
        }
    }

    pub(crate) fn access_conclusion(
        &self,
        v: &VerifiedRunCertificate,
        access: Access<'_>,
    ) -> String {
        format!(
            "{} may {} {}:{}",
            v.program_label(),
            access.op,
            access.service,
            self.shown_resource(access.resource)
        )
    }
}

/// Seconds between `timestamp` and `now`, as shown in proofs.
pub(crate) fn describe_age(timestamp: i64, now: i64) -> String {
    // i128: a timestamp from a request may be anything an i64 holds.
    let d = i128::from(now) - i128::from(timestamp);
    if d >= 0 {
        format!("{d} s ago, at {}", UnixTime(timestamp))
    } else {
        format!("{} s in the future, at {}", -d, UnixTime(timestamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_patterns() {
        let p: ResourcePattern = "replies/*".parse().unwrap();
        assert!(p.matches("replies/+555599880151"));
        assert!(!p.matches("replies"));
        assert!(!p.matches("replies/"));
        assert!(!p.matches("repliesx/1"));
        let e: ResourcePattern = "sales/last".parse().unwrap();
        assert!(e.matches("sales/last") && !e.matches("sales/last/x"));
        assert!(
            "*".parse::<ResourcePattern>()
                .unwrap()
                .matches("anything/at/all")
        );
        for bad in [
            "",
            "/a",
            "a//b",
            "a/../b",
            "a b",
            "sales/*/x",
            "*/x",
            "a/*/*",
            "é",
        ] {
            assert!(bad.parse::<ResourcePattern>().is_err(), "{bad}");
        }
        assert_eq!(p.to_string(), "replies/*");
        assert!(validate_resource(&"a".repeat(MAX_RESOURCE_BYTES + 1)).is_err());
        assert_eq!(collection("replies/+5555"), "replies");
    }

    #[test]
    fn empty_policy_parses_to_deny_all_defaults() {
        let doc = PolicyDocument::parse("").unwrap();
        assert_eq!(doc, PolicyDocument::default());
        assert!(doc.trusted_roots.is_empty() && doc.allow.is_empty());
        assert_eq!(doc.max_certificate_age_s, 3600);
        assert_eq!(doc.timestamp_skew_s, 60);
        assert_eq!(
            doc.allowed_backends,
            [Backend::LinuxSandbox, Backend::CheriC18n]
        );
    }

    #[test]
    fn full_grammar_parses() {
        let root = crate::pki::CertificateAuthority::create_root("r", None, 1).unwrap();
        let pem = String::from_utf8(root.certificate().to_pem().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("roots")).unwrap();
        std::fs::write(dir.path().join("roots/morello.pem"), &pem).unwrap();
        let text = format!(
            r#"allowed_backends = ["cheri-c18n"]
required_layers = ["capsicum"]
allow_degraded = ["seccomp"]
allow_insecure = false
max_certificate_age_s = 600
timestamp_skew_s = 30

[[trusted_root]]
name = "dev launcher"
pem = """{pem}"""

[[trusted_root]]
name = "lab board"
file = "roots/morello.pem"

[[allow]]
name = "case study"
executable_sha256 = "{h}"
resources = ["sales/last", "replies/*"]
ops = ["read"]

[[allow]]
source_sha256 = "{h}"
toolchain_profile = "morello-purecap"
services_anchor_sha256 = "{h}"
resources = ["*"]
ops = ["read", "write"]

[[allow]]
executable_sha256 = "{h}"
"#,
            h = "ab".repeat(32)
        );
        let policy = Policy::from_toml(&text, Some(dir.path())).unwrap();
        let doc = policy.document();
        assert_eq!(doc.allowed_backends, [Backend::CheriC18n]);
        assert_eq!(doc.timestamp_skew_s, 30);
        assert_eq!(policy.anchors().roots().len(), 2);
        assert_eq!(doc.allow.len(), 3);
        assert_eq!(doc.allow[1].ops, [Op::Read, Op::Write]);
        assert_eq!(doc.allow[1].resources, [ResourcePattern::Any]);
        assert!(doc.allow[2].resources.is_empty());
        // Without the folder the relative file cannot be found.
        assert!(matches!(
            Policy::from_toml(&text, None),
            Err(PolicyError::Io { .. })
        ));
    }

    #[test]
    fn a_root_file_that_never_ends_is_refused_after_its_limit() {
        let text = "[[trusted_root]]\nname = \"endless\"\nfile = \"/dev/zero\"\n";
        let err = Policy::from_toml(text, None).unwrap_err().to_string();
        assert!(err.contains("trusted_root[0]"), "{err}");
        assert!(
            err.contains("/dev/zero: expected a PEM certificate of at most 1048576 bytes"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_and_invalid_entries_are_errors() {
        let typo = PolicyDocument::parse("allow_insecur = true\n")
            .unwrap_err()
            .to_string();
        assert!(typo.contains("allow_insecur"), "{typo}");
        let nested =
            "[[allow]]\nexecutable_sha256 = \"{h}\"\nresource = \"sales/last\"\nops = [\"read\"]\n"
                .replace("{h}", &"ab".repeat(32));
        let err = PolicyDocument::parse(&nested).unwrap_err().to_string();
        assert!(err.contains("resource"), "{err}");
        for (text, needle) in [
            ("allowed_backends = [\"chroot\"]", "chroot"),
            (
                "allow_degraded = [\"landlok\"]",
                "unknown layer \"landlok\"",
            ),
            ("max_certificate_age_s = 0", "at least 1 s"),
            (
                "[[allow]]\nname = \"x\"\nresources = [\"a\"]\nops = [\"read\"]",
                "names no measurement",
            ),
            ("[[allow]]\nsource_sha256 = \"{h}\"", "go together"),
            (
                "[[allow]]\nsource_sha256 = \"{h}\"\ntoolchain_profile = \"host\"",
                "needs services_anchor_sha256",
            ),
            (
                "[[allow]]\nexecutable_sha256 = \"{h}\"\nresources = [\"a\"]",
                "resources and ops",
            ),
            ("[[allow]]\nexecutable_sha256 = \"{H}\"", "lowercase hex"),
            (
                "[[allow]]\nexecutable_sha256 = \"{h}\"\nresources = [\"a/../b\"]\nops = [\"read\"]",
                "resource path",
            ),
            (
                "[[allow]]\nexecutable_sha256 = \"{h}\"\nresources = [\"a\"]\nops = [\"delete\"]",
                "delete",
            ),
            (
                "[[trusted_root]]\nname = \"r\"",
                "exactly one of pem or file",
            ),
        ] {
            let text = text
                .replace("{h}", &"ab".repeat(32))
                .replace("{H}", &"AB".repeat(32));
            let err = PolicyDocument::parse(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn edits_round_trip_through_toml() {
        let mut doc = PolicyDocument::default();
        let h = Sha256Hex::digest(b"exe");
        let rule = AllowRule::for_executable(
            "case study",
            h,
            vec!["sales/last".parse().unwrap()],
            vec![Op::Read],
        );
        assert!(doc.add_allow_rule(rule.clone()).unwrap());
        assert!(!doc.add_allow_rule(rule).unwrap(), "idempotent");
        let root = crate::pki::CertificateAuthority::create_root("r", None, 1).unwrap();
        let pem = String::from_utf8(root.certificate().to_pem().unwrap()).unwrap();
        doc.add_trusted_root_pem("dev launcher", &pem).unwrap();
        assert!(doc.add_trusted_root_pem("bad", "nope").is_err());
        doc.add_trusted_root_file("file root", Path::new("root.pem"));
        doc.allow_degraded.push("landlock".into());
        let text = doc.to_toml().unwrap();
        assert_eq!(PolicyDocument::parse(&text).unwrap(), doc, "{text}");
        assert!(
            text.contains("-----BEGIN CERTIFICATE-----\n"),
            "PEM stays readable:\n{text}"
        );

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root.pem"), &pem).unwrap();
        let path = dir.path().join("policy.toml");
        doc.save(&path).unwrap();
        let policy = Policy::load(&path).unwrap();
        assert_eq!(policy.anchors().roots().len(), 2);
        assert_eq!(policy.anchors().roots()[1].name(), "file root");
        std::fs::remove_file(dir.path().join("root.pem")).unwrap();
        assert!(matches!(Policy::load(&path), Err(PolicyError::Io { .. })));
    }

    #[test]
    fn shown_resources_hide_identifiers() {
        let mut doc = PolicyDocument::default();
        let h = Sha256Hex::digest(b"exe");
        doc.add_allow_rule(AllowRule::for_executable(
            "",
            h,
            vec!["sales/last".parse().unwrap(), "replies/*".parse().unwrap()],
            vec![Op::Read],
        ))
        .unwrap();
        let p = Policy::from_document(doc, None).unwrap();
        assert_eq!(p.shown_resource("sales/last"), "sales/last");
        assert_eq!(p.shown_resource("replies/+555599880151"), "replies/…");
        assert_eq!(p.shown_resource("trips"), "trips");
        assert_eq!(p.rule_label(0), "allow[0]");
    }
}
