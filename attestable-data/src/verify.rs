//! Verification of a run certificate chain, offline: OpenSSL's verifier
//! against the trust anchors, then the evidence and the CAMB extensions,
//! which must agree with each other.
//!
//! The steps are those of a trust decision (see [`crate::proof`]):
//! `trusted_root` (the chain ends at a trusted root), `chain` (OpenSSL's checks
//! of the root → intermediate link), `evidence` (the intermediate's signature on
//! the run certificate, and everything the certificate says), then
//! `freshness` (validity of every certificate at `now`). Time is checked
//! separately from signatures so that a verified chain can be cached until
//! it expires and still be re-checked for freshness on every use.

use std::collections::HashMap;
use std::fmt;

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Public};
use openssl::sign::Verifier;
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509, X509Ref, X509StoreContext, X509VerifyResult};

use crate::certificate::{
    OID_CPUS, OID_EVIDENCE, OID_EXECUTABLE_HASH, OID_HASH_SIGNATURE, OID_MEMORY, OID_MODEL,
    RUN_CERT_SKEW_SECS, organization_for,
};
use crate::encoding::{Sha256Hex, UnixTime};
use crate::evidence::Evidence;
use crate::memmap::render_camb_memory;
use crate::pki::{CryptoContext, PkiError, asn1_time_to_unix, describe_name};
use crate::proof::{Failure, ProofBuilder, StepFailure, StepName};

/// Largest certificate chain accepted, in PEM bytes.
pub const MAX_CHAIN_PEM_BYTES: usize = 2 << 20;

/// Most certificates accepted in a chain.
pub const MAX_CHAIN_CERTS: usize = 4;

/// A root certificate the verifier trusts, with the name a policy gives it.
#[derive(Clone)]
pub struct TrustedRoot {
    name: String,
    certificate: X509,
    key_id: Sha256Hex,
}

impl TrustedRoot {
    /// The policy's name for this root.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The root certificate.
    pub fn certificate(&self) -> &X509 {
        &self.certificate
    }

    /// SHA-256 of its SubjectPublicKeyInfo.
    pub fn key_id(&self) -> Sha256Hex {
        self.key_id
    }
}

impl fmt::Debug for TrustedRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustedRoot({:?}, {})", self.name, self.key_id.short(8))
    }
}

/// The roots a verifier trusts, ready for OpenSSL.
pub struct TrustAnchors {
    roots: Vec<TrustedRoot>,
    store: X509Store,
}

impl fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.roots).finish()
    }
}

impl TrustAnchors {
    /// Anchors for the named root certificates (none at all is allowed: it
    /// trusts nothing).
    pub fn new(roots: impl IntoIterator<Item = (String, X509)>) -> Result<Self, PkiError> {
        let mut builder = X509StoreBuilder::new().context("certificate store")?;
        // Validity is checked by `check_validity`, at a time the caller chooses.
        builder
            .set_flags(X509VerifyFlags::NO_CHECK_TIME)
            .context("certificate store flags")?;
        let mut list = Vec::new();
        for (name, certificate) in roots {
            let key = certificate.public_key().context("root public key")?;
            let key_id = key_id_of(&key)?;
            builder
                .add_cert(certificate.clone())
                .context(format!("adding root {name:?}"))?;
            list.push(TrustedRoot {
                name,
                certificate,
                key_id,
            });
        }
        Ok(Self {
            roots: list,
            store: builder.build(),
        })
    }

    /// The trusted roots.
    pub fn roots(&self) -> &[TrustedRoot] {
        &self.roots
    }

    fn describe(&self) -> String {
        if self.roots.is_empty() {
            return "a chain to a trusted root (the policy trusts none)".into();
        }
        let names: Vec<String> = self
            .roots
            .iter()
            .map(|r| format!("{:?} ({})", r.name, r.key_id.short(8)))
            .collect();
        format!("a chain to one of the trusted roots: {}", names.join(", "))
    }
}

fn key_id_of(key: &PKey<Public>) -> Result<Sha256Hex, PkiError> {
    let der = key.public_key_to_der().context("encoding a public key")?;
    Ok(Sha256Hex::digest(&der))
}

/// Validity of one certificate of a verified chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertValidity {
    /// `run certificate`, `attestation certificate` or `root certificate`.
    pub label: &'static str,
    /// `notBefore`, Unix seconds.
    pub not_before: i64,
    /// `notAfter`, Unix seconds.
    pub not_after: i64,
}

/// A run certificate whose chain, evidence and extensions have been verified.
/// Its validity at a given time is checked apart ([`verify_run_chain`] does,
/// and a service does again on every request, since it caches this value).
#[derive(Clone)]
pub struct VerifiedRunCertificate {
    certificate: X509,
    intermediate: X509,
    root: TrustedRoot,
    evidence: Evidence,
    fingerprint: Sha256Hex,
    program_key_id: Sha256Hex,
    attestation_key_id: Sha256Hex,
    validity: [CertValidity; 3],
}

impl fmt::Debug for VerifiedRunCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedRunCertificate")
            .field("run", &self.evidence.run.id)
            .field("fingerprint", &self.fingerprint)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl VerifiedRunCertificate {
    /// The run certificate (encrypt answers to it).
    pub fn certificate(&self) -> &X509 {
        &self.certificate
    }

    /// The attestation intermediate that issued it.
    pub fn intermediate(&self) -> &X509 {
        &self.intermediate
    }

    /// The trusted root the chain ends at.
    pub fn root(&self) -> &TrustedRoot {
        &self.root
    }

    /// The evidence.
    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }

    /// The executable's SHA-256 (extension `.4`, equal to the evidence's).
    pub fn measurement(&self) -> Sha256Hex {
        self.evidence.program.executable_sha256
    }

    /// SHA-256 of the run certificate's DER.
    pub fn fingerprint(&self) -> Sha256Hex {
        self.fingerprint
    }

    /// SHA-256 of the program key's SubjectPublicKeyInfo.
    pub fn program_key_id(&self) -> Sha256Hex {
        self.program_key_id
    }

    /// SHA-256 of the attestation key's SubjectPublicKeyInfo.
    pub fn attestation_key_id(&self) -> Sha256Hex {
        self.attestation_key_id
    }

    /// Validity of the run certificate, the intermediate and the root.
    pub fn validity(&self) -> &[CertValidity; 3] {
        &self.validity
    }

    /// The run certificate's `notAfter`, Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.validity[0].not_after
    }

    /// The earliest `notAfter` of the chain: how long a verification may be cached.
    pub fn chain_not_after(&self) -> i64 {
        self.validity.iter().map(|v| v.not_after).min().unwrap_or(0)
    }

    /// `run-<id>`.
    pub fn run_name(&self) -> String {
        format!("run-{}", self.evidence.run.id)
    }

    pub(crate) fn program_label(&self) -> String {
        format!("Key[program {}]", self.program_key_id.short(8))
    }

    pub(crate) fn measurement_label(&self) -> String {
        format!("Measurement[{}]", self.measurement().short(8))
    }

    /// Records steps 1 to 3 (`trusted_root`, `chain`, `evidence`) as held.
    pub(crate) fn record_trust_steps(&self, proof: &mut ProofBuilder) {
        let launcher = format!("Key[launcher {}]", self.attestation_key_id.short(8));
        for (name, statement, justification) in
            [root_step(&self.root), chain_step(&self.root, &launcher)]
        {
            proof.held(name, statement, justification);
        }
        proof.held(
            StepName::Evidence,
            format!(
                "{launcher} says {} speaks-for {}",
                self.program_label(),
                self.measurement_label()
            ),
            format!(
                "{}, valid until {}",
                self.run_name(),
                UnixTime(self.not_after())
            ),
        );
    }
}

/// A step that held: name, statement, justification.
pub(crate) type HeldStep = (StepName, String, String);

fn root_step(root: &TrustedRoot) -> HeldStep {
    (
        StepName::TrustedRoot,
        format!("Key[root {}] is-trusted", root.key_id.short(8)),
        format!("policy: trusted_root {:?}", root.name),
    )
}

fn chain_step(root: &TrustedRoot, launcher: &str) -> HeldStep {
    (
        StepName::Chain,
        format!(
            "Key[root {}] says {launcher} is-trusted-for-attestation",
            root.key_id.short(8)
        ),
        "chain: verified".into(),
    )
}

/// Why steps 1 to 3 did not all hold: the steps that did, and the failure.
#[derive(Debug, Clone)]
pub(crate) struct ChainRejection {
    pub(crate) held: Vec<HeldStep>,
    pub(crate) failure: StepFailure,
}

impl ChainRejection {
    fn bare(failure: StepFailure) -> Self {
        Self {
            held: Vec::new(),
            failure,
        }
    }

    /// The denial: the steps that held, then the failure.
    pub(crate) fn into_decision(self) -> crate::proof::TrustDecision {
        let mut proof = ProofBuilder::new();
        for (name, statement, justification) in self.held {
            proof.held(name, statement, justification);
        }
        proof.deny(self.failure)
    }
}

/// The steps that held before a failure: `trusted_root` when `built` ends at
/// a trusted root, and `chain` too when `with_chain`.
fn held_prefix(anchors: &TrustAnchors, built: &[X509], with_chain: bool) -> Vec<HeldStep> {
    let Some(root) = built.last().and_then(|top| find_root(anchors, top)) else {
        return Vec::new();
    };
    let mut held = vec![root_step(root)];
    if with_chain && built.len() >= 2 {
        held.push(chain_step(root, &key_label("launcher", &built[1])));
    }
    held
}

fn find_root<'a>(anchors: &'a TrustAnchors, cert: &X509Ref) -> Option<&'a TrustedRoot> {
    let der = cert.to_der().ok()?;
    anchors
        .roots
        .iter()
        .find(|r| r.certificate.to_der().is_ok_and(|d| d == der))
}

/// A chain that could not be verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a PEM chain this verifier accepts (a malformed request).
    #[error("certificate chain: {0}")]
    Malformed(String),
    /// A step failed.
    #[error("{0}")]
    Step(StepFailure),
}

impl VerifyError {
    /// The failed step, if a check (rather than parsing) failed.
    pub fn step(&self) -> Option<StepName> {
        match self {
            VerifyError::Malformed(_) => None,
            VerifyError::Step(f) => Some(f.step),
        }
    }
}

/// Parses a PEM chain, leaf first: 1 to [`MAX_CHAIN_CERTS`] certificates, at
/// most [`MAX_CHAIN_PEM_BYTES`].
pub fn parse_chain_pem(pem: &str) -> Result<Vec<X509>, VerifyError> {
    if pem.len() > MAX_CHAIN_PEM_BYTES {
        return Err(VerifyError::Malformed(format!(
            "{} bytes; expected at most {MAX_CHAIN_PEM_BYTES}",
            pem.len()
        )));
    }
    let certs = X509::stack_from_pem(pem.as_bytes()).map_err(|_| {
        VerifyError::Malformed("expected PEM certificates, found text that does not parse".into())
    })?;
    if certs.is_empty() || certs.len() > MAX_CHAIN_CERTS {
        return Err(VerifyError::Malformed(format!(
            "expected 1 to {MAX_CHAIN_CERTS} PEM certificates, found {}",
            certs.len()
        )));
    }
    Ok(certs)
}

/// Verifies a run certificate chain (PEM, run certificate first) against
/// `anchors`, its evidence and extensions, and its validity at `now`.
pub fn verify_run_chain(
    chain_pem: &str,
    anchors: &TrustAnchors,
    now: i64,
) -> Result<VerifiedRunCertificate, VerifyError> {
    let chain = parse_chain_pem(chain_pem)?;
    let verified = verify_chain(&chain, anchors).map_err(|r| VerifyError::Step(r.failure))?;
    check_validity(&verified, now).map_err(VerifyError::Step)?;
    Ok(verified)
}

/// The evidence of a run certificate, read without verifying anything (for display).
pub fn read_evidence(cert: &X509Ref) -> Result<Evidence, String> {
    let der = cert.to_der().map_err(|e| e.to_string())?;
    let extensions = raw_extensions(&der)?;
    let bytes = extensions
        .get(OID_EVIDENCE)
        .ok_or_else(|| format!("no evidence extension {OID_EVIDENCE}"))?;
    Evidence::from_canonical(bytes).map_err(|e| e.to_string())
}

fn raw_extensions(der: &[u8]) -> Result<HashMap<String, Vec<u8>>, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let mut map = HashMap::new();
    for ext in parsed.extensions() {
        let oid = ext.oid.to_id_string();
        if map.insert(oid.clone(), ext.value.to_vec()).is_some() {
            return Err(format!("extension {oid} appears twice"));
        }
    }
    if parsed
        .basic_constraints()
        .map_err(|e| e.to_string())?
        .is_some_and(|bc| bc.value.ca)
    {
        return Err("the run certificate says CA:TRUE".into());
    }
    Ok(map)
}

fn key_label(kind: &str, cert: &X509Ref) -> String {
    cert.public_key()
        .ok()
        .and_then(|k| key_id_of(&k).ok())
        .map(|id| format!("Key[{kind} {}]", id.short(8)))
        .unwrap_or_else(|| format!("Key[{kind} ?]"))
}

/// OpenSSL's errors that mean "this chain does not end at a root we trust".
fn is_untrusted_root(code: i32) -> bool {
    // X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT (2), DEPTH_ZERO_SELF_SIGNED_CERT (18),
    // SELF_SIGNED_CERT_IN_CHAIN (19), UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20),
    // UNABLE_TO_VERIFY_LEAF_SIGNATURE (21), CERT_UNTRUSTED (27), CERT_REJECTED (28).
    matches!(code, 2 | 18 | 19 | 20 | 21 | 27 | 28)
}

/// Steps 1 to 3: OpenSSL's chain verification (without time checks) against
/// `anchors`, then the evidence and the CAMB extensions of the run certificate.
pub(crate) fn verify_chain(
    chain: &[X509],
    anchors: &TrustAnchors,
) -> Result<VerifiedRunCertificate, Box<ChainRejection>> {
    let (leaf, rest) = chain.split_first().ok_or_else(|| {
        Box::new(ChainRejection::bare(internal_failure(
            "reading the chain",
            &"an empty chain",
        )))
    })?;
    let (ok, error, depth, built) =
        run_openssl_verifier(leaf, rest, anchors).map_err(|f| Box::new(ChainRejection::bare(f)))?;
    let prefix = |failure: StepFailure| {
        let held = match failure.step {
            StepName::TrustedRoot => Vec::new(),
            StepName::Chain => held_prefix(anchors, &built, false),
            _ => held_prefix(anchors, &built, true),
        };
        Box::new(ChainRejection { held, failure })
    };
    if !ok {
        let launcher = rest
            .first()
            .map(|c| key_label("launcher", c))
            .unwrap_or_else(|| "Key[launcher ?]".into());
        return Err(prefix(classify_openssl_failure(
            anchors, leaf, &built, rest, error, depth, &launcher,
        )));
    }
    check_run_certificate(leaf, &built, anchors).map_err(prefix)
}

fn internal_failure(what: &str, e: &dyn fmt::Display) -> StepFailure {
    StepFailure::new(
        StepName::Chain,
        "the certificate chain verifies",
        Failure::new(format!("{what} failed"), "OpenSSL to run", e.to_string()),
    )
}

type OpensslOutcome = (bool, X509VerifyResult, u32, Vec<X509>);

fn run_openssl_verifier(
    leaf: &X509,
    rest: &[X509],
    anchors: &TrustAnchors,
) -> Result<OpensslOutcome, StepFailure> {
    let internal = internal_failure;
    let mut untrusted = Stack::new().map_err(|e| internal("certificate stack", &e))?;
    for c in rest {
        untrusted
            .push(c.clone())
            .map_err(|e| internal("certificate stack", &e))?;
    }
    let mut ctx = X509StoreContext::new().map_err(|e| internal("verification context", &e))?;
    ctx.init(&anchors.store, leaf, &untrusted, |c| {
        let ok = c.verify_cert()?;
        let built: Vec<X509> = c
            .chain()
            .map(|s| s.iter().map(ToOwned::to_owned).collect())
            .unwrap_or_default();
        Ok((ok, c.error(), c.error_depth(), built))
    })
    .map_err(|e| internal("chain verification", &e))
}

/// After OpenSSL accepted `built` (leaf first): its shape, the evidence and the extensions.
fn check_run_certificate(
    leaf: &X509,
    built: &[X509],
    anchors: &TrustAnchors,
) -> Result<VerifiedRunCertificate, StepFailure> {
    let internal = internal_failure;
    // OpenSSL built leaf, issuer, …, trusted root.
    if built.len() != 3 {
        return Err(StepFailure::new(
            StepName::Chain,
            "the chain is root → attestation intermediate → run certificate",
            Failure::new(
                "wrong chain length",
                "3 certificates (root, attestation intermediate, run certificate)",
                format!("a chain of {}", built.len()),
            ),
        ));
    }
    let (intermediate, root_cert) = (&built[1], &built[2]);
    let root = find_root(anchors, root_cert)
        .cloned()
        .ok_or_else(|| internal("finding the trusted root", &"a root outside the store"))?;
    let intermediate_key = intermediate
        .public_key()
        .map_err(|e| internal("reading the attestation key", &e))?;
    let attestation_key_id =
        key_id_of(&intermediate_key).map_err(|e| internal("attestation key id", &e))?;
    let program_key = leaf
        .public_key()
        .map_err(|e| internal("reading the program key", &e))?;
    let program_key_id = key_id_of(&program_key).map_err(|e| internal("program key id", &e))?;
    let launcher = format!("Key[launcher {}]", attestation_key_id.short(8));
    let program = format!("Key[program {}]", program_key_id.short(8));

    let leaf_der = leaf.to_der().map_err(|e| internal("encoding", &e))?;
    let evidence = check_evidence(
        leaf,
        &leaf_der,
        &intermediate_key,
        attestation_key_id,
        &launcher,
        &program,
    )?;
    let times = |label, c: &X509Ref| -> Result<CertValidity, StepFailure> {
        Ok(CertValidity {
            label,
            not_before: asn1_time_to_unix(c.not_before())
                .map_err(|e| internal("reading times", &e))?,
            not_after: asn1_time_to_unix(c.not_after())
                .map_err(|e| internal("reading times", &e))?,
        })
    };
    let validity = [
        times("run certificate", leaf)?,
        times("attestation certificate", intermediate)?,
        times("root certificate", root_cert)?,
    ];
    // The certificate's validity is derived from the run's, exactly.
    let run = &evidence.run;
    let want = (
        run.started_at.secs() - RUN_CERT_SKEW_SECS,
        run.not_after.secs() + RUN_CERT_SKEW_SECS,
    );
    if (validity[0].not_before, validity[0].not_after) != want {
        return Err(StepFailure::new(
            StepName::Evidence,
            format!(
                "{launcher} says {program} speaks-for Measurement[{}]",
                evidence.program.executable_sha256.short(8)
            ),
            Failure::new(
                "the certificate's validity does not match the run",
                format!(
                    "{} to {} (run start - 60 s to run end + 60 s)",
                    UnixTime(want.0),
                    UnixTime(want.1)
                ),
                format!(
                    "{} to {}",
                    UnixTime(validity[0].not_before),
                    UnixTime(validity[0].not_after)
                ),
            ),
        ));
    }
    Ok(VerifiedRunCertificate {
        certificate: leaf.clone(),
        intermediate: intermediate.clone(),
        root,
        evidence,
        fingerprint: Sha256Hex::digest(&leaf_der),
        program_key_id,
        attestation_key_id,
        validity,
    })
}

fn classify_openssl_failure(
    anchors: &TrustAnchors,
    leaf: &X509Ref,
    built: &[X509],
    rest: &[X509],
    error: X509VerifyResult,
    depth: u32,
    launcher: &str,
) -> StepFailure {
    let code = error.as_raw();
    let found_error = format!(
        "{} (OpenSSL error {code} at depth {depth})",
        error.error_string()
    );
    if is_untrusted_root(code) {
        // The top of what could be built (or of what was sent) names where the chain ends.
        let top = built.last().or(rest.last()).map(|c| &**c).unwrap_or(leaf);
        let self_signed = top.issuer_name().to_der().ok() == top.subject_name().to_der().ok();
        let (statement, found) = if self_signed {
            let label = key_label("root", top);
            (
                format!("{label} is-trusted"),
                format!(
                    "a chain ending at {label} \"{}\"",
                    describe_name(top.subject_name())
                ),
            )
        } else {
            let issuer = describe_name(top.issuer_name());
            (
                format!("Key[root \"{issuer}\"] is-trusted"),
                format!("a chain ending at issuer \"{issuer}\", which no trusted root matches"),
            )
        };
        return StepFailure::new(
            StepName::TrustedRoot,
            statement,
            Failure::new(
                "the chain does not end at a trusted root",
                anchors.describe(),
                found,
            ),
        );
    }
    // X509_V_ERR_CERT_SIGNATURE_FAILURE (7) on the run certificate: the
    // attestation key's signature over it, evidence included, does not hold.
    if depth == 0 && code == 7 {
        return StepFailure::new(
            StepName::Evidence,
            format!(
                "{launcher} says {} speaks-for Measurement[?]",
                key_label("program", leaf)
            ),
            Failure::new(
                "the run certificate's signature does not verify",
                format!("a run certificate signed by {launcher}"),
                format!("{found_error}: the certificate or its evidence was altered"),
            ),
        );
    }
    let root = built
        .last()
        .map(|c| key_label("root", c))
        .unwrap_or_else(|| "Key[root ?]".into());
    let subject = built
        .get(depth as usize)
        .map(|c| describe_name(c.subject_name()))
        .unwrap_or_default();
    StepFailure::new(
        StepName::Chain,
        format!("{root} says {launcher} is-trusted-for-attestation"),
        Failure::new(
            format!("OpenSSL rejected the chain at \"{subject}\""),
            "a valid chain root → attestation intermediate → run certificate",
            found_error,
        ),
    )
}

fn check_evidence(
    leaf: &X509Ref,
    leaf_der: &[u8],
    intermediate_key: &PKey<Public>,
    attestation_key_id: Sha256Hex,
    launcher: &str,
    program: &str,
) -> Result<Evidence, StepFailure> {
    let mut statement = format!("{launcher} says {program} speaks-for Measurement[?]");
    let fail = |statement: &str, reason: &str, expected: String, found: String| {
        StepFailure::new(
            StepName::Evidence,
            statement,
            Failure::new(reason, expected, found),
        )
    };
    let ext = raw_extensions(leaf_der).map_err(|e| {
        fail(
            &statement,
            "the run certificate is malformed",
            "a well-formed run certificate".into(),
            e,
        )
    })?;
    let get = |oid: &str| ext.get(oid).map(Vec::as_slice);
    let evidence_bytes = get(OID_EVIDENCE).ok_or_else(|| {
        fail(
            &statement,
            "the run certificate carries no evidence",
            format!("extension {OID_EVIDENCE}"),
            "none".into(),
        )
    })?;
    let evidence = Evidence::from_canonical(evidence_bytes).map_err(|e| {
        fail(
            &statement,
            "the evidence is not valid",
            "canonical JSON evidence, version 1".into(),
            e.to_string(),
        )
    })?;
    let measurement = evidence.program.executable_sha256;
    statement = format!(
        "{launcher} says {program} speaks-for Measurement[{}]",
        measurement.short(8)
    );

    if evidence.launcher.attestation_key_id != attestation_key_id {
        return Err(fail(
            &statement,
            "the evidence names another attestation key",
            format!("launcher.attestation_key_id = {attestation_key_id} (the issuer's key)"),
            evidence.launcher.attestation_key_id.to_string(),
        ));
    }
    let hash = get(OID_EXECUTABLE_HASH).unwrap_or_default();
    if hash != measurement.as_bytes() {
        return Err(fail(
            &statement,
            "extension .4 differs from the evidence",
            format!("program.executable_sha256 = {measurement}"),
            if hash.len() == 32 {
                hex::encode(hash)
            } else {
                format!("{} bytes", hash.len())
            },
        ));
    }
    let signature = get(OID_HASH_SIGNATURE).unwrap_or_default();
    let signed = Verifier::new(MessageDigest::sha256(), intermediate_key)
        .and_then(|mut v| v.verify_oneshot(signature, hash))
        .unwrap_or(false);
    if !signed {
        return Err(fail(
            &statement,
            "extension .5 is not the attestation key's signature over .4",
            format!("an ECDSA-SHA256 signature by {launcher} over the executable hash"),
            format!("{} bytes that do not verify", signature.len()),
        ));
    }
    let subject = describe_name(leaf.subject_name());
    let want_subject = format!(
        "O={}, CN=run-{}",
        organization_for(&evidence.program.name),
        evidence.run.id
    );
    if subject != want_subject {
        return Err(fail(
            &statement,
            "the subject does not name the run",
            want_subject,
            subject,
        ));
    }
    let platform = &evidence.platform;
    for (oid, want) in [
        (OID_MODEL, format!("Model: {}", platform.cpu_model)),
        (OID_CPUS, format!("CPUs: {}", platform.cpus)),
        (
            OID_MEMORY,
            render_camb_memory(
                &evidence.compartment.memory_map,
                evidence.compartment.memory_map_omitted,
            ),
        ),
    ] {
        let found = get(oid).unwrap_or_default();
        if found != want.as_bytes() {
            let cut = |s: &str| s.chars().take(80).collect::<String>();
            return Err(fail(
                &statement,
                &format!("extension {oid} differs from the evidence"),
                format!("{:?}", cut(&want)),
                format!("{:?}", cut(&String::from_utf8_lossy(found))),
            ));
        }
    }
    Ok(evidence)
}

/// Part of step 5 (`freshness`): every certificate of the chain is valid at `now`.
pub(crate) fn check_validity(v: &VerifiedRunCertificate, now: i64) -> Result<(), StepFailure> {
    for c in &v.validity {
        let statement = format!("Certificate[{}] is-fresh", v.run_name());
        if now < c.not_before {
            return Err(StepFailure::new(
                StepName::Freshness,
                statement,
                Failure::new(
                    format!("the {} is not yet valid", c.label),
                    format!("now at or after notBefore {}", UnixTime(c.not_before)),
                    format!("now {} ({} s early)", UnixTime(now), c.not_before - now),
                ),
            ));
        }
        if now > c.not_after {
            return Err(StepFailure::new(
                StepName::Freshness,
                statement,
                Failure::new(
                    format!("the {} has expired", c.label),
                    format!("now at or before notAfter {}", UnixTime(c.not_after)),
                    format!("now {} ({} s later)", UnixTime(now), now - c.not_after),
                ),
            ));
        }
    }
    Ok(())
}
