//! The attestation intermediate and the per-run certificates it issues.
//!
//! Chain: root CA → attestation intermediate (path length 0) → run
//! certificate. A run certificate binds the program's own P-256 key (from its
//! PKCS#10 request, whose signature proves possession) to the evidence of
//! the run, in the extensions `docs/PROTOCOL.md` lists.
//!
//! **Rotation** replaces the intermediate: a new key and certificate under
//! the same root, used for every run from then on. The old key is not kept:
//! verifiers anchor on the root, and every run certificate travels with the
//! intermediate that issued it, so certificates issued before a rotation keep
//! verifying until they expire (or the old intermediate does). The old
//! certificate is archived beside the new one for audit.

use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Object, Asn1OctetString};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Public};
use openssl::sign::Signer;
use openssl::x509::{X509, X509Extension, X509Req};

use crate::encoding::{Sha256Hex, UnixTime};
use crate::evidence::{
    CompartmentFacts, EVIDENCE_VERSION, Evidence, LauncherInfo, MAX_EVIDENCE_BYTES, Platform,
    ProgramFacts, RunInfo,
};
use crate::memmap::{bound_regions, render_camb_memory};
use crate::pki::{
    self, CertificateAuthority, CryptoContext, PkiError, Validity, add_end_entity_usage,
    asn1_time_to_unix, certs_to_pem, describe_name, key_id, x509_name,
};

/// CAMB extension: `Model: <cpu model>`.
pub const OID_MODEL: &str = "1.2.3.4.5.6.7.8.1";
/// CAMB extension: `CPUs: <n>`.
pub const OID_CPUS: &str = "1.2.3.4.5.6.7.8.2";
/// CAMB extension: `Memory: ` and the memory map as text.
pub const OID_MEMORY: &str = "1.2.3.4.5.6.7.8.3";
/// CAMB extension: the raw 32-byte SHA-256 of the executable.
pub const OID_EXECUTABLE_HASH: &str = "1.2.3.4.5.6.7.8.4";
/// CAMB extension: the attestation key's ECDSA-SHA256 signature (DER) over those 32 bytes.
pub const OID_HASH_SIGNATURE: &str = "1.2.3.4.5.6.7.8.5";
/// The evidence, canonical JSON.
pub const OID_EVIDENCE: &str = "1.2.3.4.5.6.7.8.6";

/// Slack on each side of a run certificate's validity, in seconds.
pub const RUN_CERT_SKEW_SECS: i64 = 60;

/// Largest CSR accepted, in DER bytes.
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// Longest run time limit a certificate may cover (7 days), in seconds.
pub const MAX_TIME_LIMIT_SECS: u32 = 7 * 86_400;

/// X.500's upper bound on an organisation name, in characters.
const MAX_ORGANIZATION_CHARS: usize = 64;

/// The attestation intermediate: the key that signs run certificates, its
/// certificate, and the certificates above it (the root).
pub struct AttestationAuthority {
    ca: CertificateAuthority,
    issuers: Vec<X509>,
    key_id: Sha256Hex,
    chain_pem: String,
    not_after: i64,
}

impl std::fmt::Debug for AttestationAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestationAuthority")
            .field(
                "subject",
                &describe_name(self.ca.certificate().subject_name()),
            )
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl AttestationAuthority {
    /// A new intermediate with a fresh P-256 key, issued by `root` for `days` days.
    pub fn create(
        root: &CertificateAuthority,
        common_name: &str,
        days: u32,
    ) -> Result<Self, PkiError> {
        let ca = root.issue_intermediate(common_name, None, days)?;
        Self::from_parts(ca, vec![root.certificate().clone()])
    }

    /// Pairs an intermediate with the certificates above it (its issuer first,
    /// the root last), checking that the first of them signed it.
    pub fn from_parts(ca: CertificateAuthority, issuers: Vec<X509>) -> Result<Self, PkiError> {
        let issuer = issuers.first().ok_or_else(|| {
            PkiError::Invalid("the attestation intermediate needs its issuer certificate".into())
        })?;
        let issuer_key = issuer.public_key().context("issuer public key")?;
        let signed = ca
            .certificate()
            .verify(&issuer_key)
            .context("checking the intermediate's signature")?;
        if !signed {
            return Err(PkiError::Invalid(format!(
                "the attestation certificate {} is not signed by {}",
                describe_name(ca.certificate().subject_name()),
                describe_name(issuer.subject_name())
            )));
        }
        let key_id = key_id(ca.key())?
            .parse()
            .map_err(|e| PkiError::Invalid(format!("{e}")))?;
        let mut chain: Vec<&openssl::x509::X509Ref> = vec![ca.certificate()];
        chain.extend(issuers.iter().map(|c| &**c));
        let chain_pem = String::from_utf8(certs_to_pem(&chain)?)
            .map_err(|_| PkiError::Invalid("PEM is not UTF-8".into()))?;
        let not_after = asn1_time_to_unix(ca.certificate().not_after())?;
        Ok(Self {
            ca,
            issuers,
            key_id,
            chain_pem,
            not_after,
        })
    }

    /// Loads the intermediate's certificate and key (mode 0600 enforced) and
    /// pairs them with the certificates above it.
    pub fn load(cert_path: &Path, key_path: &Path, issuers: Vec<X509>) -> Result<Self, PkiError> {
        Self::from_parts(CertificateAuthority::load(cert_path, key_path)?, issuers)
    }

    /// Saves the certificate (0644) and the key (0600), each atomically.
    pub fn save(&self, cert_path: &Path, key_path: &Path) -> Result<(), PkiError> {
        self.ca.save(cert_path, key_path)
    }

    /// Replaces the intermediate stored at `cert_path` / `key_path` with a new
    /// one issued by `root`. The previous certificate, if any, is kept as
    /// `<cert stem>-<first 16 hex digits of its key id>.pem` beside it; the
    /// previous key is overwritten. Returns the new authority and the archive path.
    pub fn rotate(
        root: &CertificateAuthority,
        cert_path: &Path,
        key_path: &Path,
        common_name: &str,
        days: u32,
    ) -> Result<(Self, Option<PathBuf>), PkiError> {
        let archived = match pki::read_certs_pem(cert_path) {
            Ok(old) => {
                let old = &old[0];
                let old_id = key_id(&*old.public_key().context("old attestation key")?)?;
                let stem = cert_path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "attestation".into());
                let archive = cert_path.with_file_name(format!("{stem}-{}.pem", &old_id[..16]));
                pki::write_certs_pem(&archive, &[old])?;
                Some(archive)
            }
            Err(PkiError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                None
            }
            Err(e) => return Err(e),
        };
        let new = Self::create(root, common_name, days)?;
        new.save(cert_path, key_path)?;
        Ok((new, archived))
    }

    /// The intermediate's certificate.
    pub fn certificate(&self) -> &X509 {
        self.ca.certificate()
    }

    /// SHA-256 of the intermediate's SubjectPublicKeyInfo (the evidence's
    /// `launcher.attestation_key_id`).
    pub fn key_id(&self) -> Sha256Hex {
        self.key_id
    }

    /// PEM of the intermediate then the certificates above it (`GET /v1/ca`).
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The certificates above the intermediate, its issuer first.
    pub fn issuers(&self) -> &[X509] {
        &self.issuers
    }

    /// When the intermediate expires, in Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }
}

/// What the launcher knows about the run when the program says `HELLO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFacts {
    /// The program and its build.
    pub program: ProgramFacts,
    /// The launcher's run id.
    pub run_id: i64,
    /// When the run started.
    pub started_at: UnixTime,
    /// The run's wall-clock limit, 1 to [`MAX_TIME_LIMIT_SECS`] seconds.
    pub time_limit_secs: u32,
    /// The launcher's version, e.g. `attestable-launcher 0.1.0`.
    pub launcher_version: String,
}

/// A run certificate as issued.
#[derive(Debug, Clone)]
pub struct IssuedRunCertificate {
    /// The run certificate.
    pub certificate: X509,
    /// The evidence it carries (the memory map bounded to
    /// [`crate::memmap::MAX_REGIONS`] regions).
    pub evidence: Evidence,
    /// PEM of the run certificate, the intermediate, then the root: the
    /// answer to `HELLO` and to `GET /v1/runs/{id}/certificate`.
    pub chain_pem: String,
    /// Lowercase hex SHA-256 of the run certificate's DER.
    pub fingerprint: Sha256Hex,
}

/// A CSR that was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CsrError {
    /// Over [`MAX_CSR_BYTES`].
    #[error("CSR is {found} bytes; expected at most {MAX_CSR_BYTES}")]
    TooLarge {
        /// Its size.
        found: usize,
    },
    /// Not DER PKCS#10.
    #[error("CSR does not parse: expected DER PKCS#10, found {0}")]
    Parse(String),
    /// Not an ECDSA P-256 key.
    #[error("CSR key: expected ECDSA P-256, found {found}")]
    KeyType {
        /// The key it holds.
        found: String,
    },
    /// The CSR is not signed by its own key: no proof of possession.
    #[error(
        "CSR signature: expected a signature by the CSR's own key (proof of possession), \
         found one that does not verify under it"
    )]
    Signature,
}

/// Why a certificate was not issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The program's CSR was refused (`NACK bad_csr`).
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// The launcher's facts are unusable (a bug on the launcher's side).
    #[error("run facts: {0}")]
    Facts(String),
    /// The intermediate expires before the run would.
    #[error(
        "the attestation certificate expires at {authority_not_after}, before the run's \
         certificate would ({needed}); rotate it"
    )]
    AuthorityExpires {
        /// When the intermediate expires.
        authority_not_after: UnixTime,
        /// When the run certificate would.
        needed: UnixTime,
    },
    /// OpenSSL failed.
    #[error(transparent)]
    Crypto(#[from] PkiError),
}

/// The public key of a DER CSR, if the CSR is acceptable: at most
/// [`MAX_CSR_BYTES`], P-256, and signed by that key.
pub fn check_csr(csr_der: &[u8]) -> Result<PKey<Public>, CsrError> {
    if csr_der.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge {
            found: csr_der.len(),
        });
    }
    let req = X509Req::from_der(csr_der).map_err(|e| {
        CsrError::Parse(
            e.errors()
                .first()
                .and_then(|e| e.reason())
                .unwrap_or("bytes OpenSSL cannot parse")
                .to_string(),
        )
    })?;
    let key = req
        .public_key()
        .map_err(|_| CsrError::Parse("a request without a usable public key".into()))?;
    if !pki::is_p256(&key) {
        return Err(CsrError::KeyType {
            found: describe_key(&key),
        });
    }
    match req.verify(&key) {
        Ok(true) => Ok(key),
        _ => Err(CsrError::Signature),
    }
}

fn describe_key(key: &PKey<Public>) -> String {
    use openssl::pkey::Id;
    match key.id() {
        Id::RSA => format!("RSA {}-bit", key.bits()),
        Id::EC => {
            let curve = key
                .ec_key()
                .ok()
                .and_then(|ec| ec.group().curve_name())
                .and_then(|nid| nid.short_name().ok().map(str::to_string))
                .unwrap_or_else(|| "an unnamed curve".into());
            format!("EC on {curve}")
        }
        Id::ED25519 => "Ed25519".into(),
        Id::ED448 => "Ed448".into(),
        Id::DSA => format!("DSA {}-bit", key.bits()),
        other => format!("key type {}", other.as_raw()),
    }
}

fn check_facts(run: &RunFacts) -> Result<(), IssueError> {
    let bad = |m: String| Err(IssueError::Facts(m));
    if run.program.name.trim().is_empty() || run.program.name.len() > 255 {
        return bad(format!(
            "program name: expected 1 to 255 bytes, found {:?}",
            run.program.name
        ));
    }
    if run.run_id < 0 || run.program.id < 0 || run.program.build_id < 0 {
        return bad(format!(
            "ids: expected non-negative run, program and build ids, found {}, {}, {}",
            run.run_id, run.program.id, run.program.build_id
        ));
    }
    if !(1..=MAX_TIME_LIMIT_SECS).contains(&run.time_limit_secs) {
        return bad(format!(
            "time limit: expected 1 to {MAX_TIME_LIMIT_SECS} s, found {} s",
            run.time_limit_secs
        ));
    }
    if run.started_at.secs() < RUN_CERT_SKEW_SECS {
        return bad(format!("start time: found {}", run.started_at));
    }
    Ok(())
}

fn raw_extension(oid: &str, value: &[u8]) -> Result<X509Extension, PkiError> {
    let oid = Asn1Object::from_str(oid).context(format!("OID {oid}"))?;
    let octets = Asn1OctetString::new_from_bytes(value).context("extension value")?;
    X509Extension::new_from_der(&oid, false, &octets).context("extension")
}

/// `O=` of a run certificate: the program name, cut to 64 characters.
pub(crate) fn organization_for(program_name: &str) -> String {
    program_name.chars().take(MAX_ORGANIZATION_CHARS).collect()
}

/// Issues the run certificate for a program's CSR (DER PKCS#10): checks the
/// CSR (size, P-256, proof of possession), assembles the evidence from the
/// run's facts, the platform probe and the compartment, and signs a
/// certificate whose subject is `O=<program name>, CN=run-<run id>`, valid from
/// the run's start minus 60 s to its time limit plus 60 s, with the
/// extensions `.1` to `.6`.
pub fn issue_run_certificate(
    authority: &AttestationAuthority,
    csr_der: &[u8],
    run: &RunFacts,
    platform: &Platform,
    compartment: &CompartmentFacts,
) -> Result<IssuedRunCertificate, IssueError> {
    let program_key = check_csr(csr_der)?;
    check_facts(run)?;

    let started = run.started_at.secs();
    let run_not_after = started + i64::from(run.time_limit_secs);
    let validity = Validity {
        not_before: started - RUN_CERT_SKEW_SECS,
        not_after: run_not_after + RUN_CERT_SKEW_SECS,
    };
    if validity.not_after > authority.not_after() {
        return Err(IssueError::AuthorityExpires {
            authority_not_after: UnixTime(authority.not_after()),
            needed: UnixTime(validity.not_after),
        });
    }

    let mut compartment = compartment.clone();
    let (regions, omitted) = bound_regions(std::mem::take(&mut compartment.memory_map));
    compartment.memory_map = regions;
    compartment.memory_map_omitted += omitted;
    let evidence = Evidence {
        version: EVIDENCE_VERSION,
        program: run.program.clone(),
        platform: platform.clone(),
        compartment,
        run: RunInfo {
            id: run.run_id,
            started_at: run.started_at,
            not_after: UnixTime(run_not_after),
        },
        launcher: LauncherInfo {
            version: run.launcher_version.clone(),
            attestation_key_id: authority.key_id(),
        },
    };
    let evidence_json = evidence
        .to_canonical()
        .map_err(|e| IssueError::Facts(e.to_string()))?;
    if evidence_json.len() > MAX_EVIDENCE_BYTES {
        return Err(IssueError::Facts(format!(
            "evidence is {} bytes; expected at most {MAX_EVIDENCE_BYTES}",
            evidence_json.len()
        )));
    }

    let exe_hash = evidence.program.executable_sha256.as_bytes();
    let hash_signature = {
        let mut signer = Signer::new(MessageDigest::sha256(), authority.ca.key())
            .context("signing the executable hash")?;
        signer
            .sign_oneshot_to_vec(exe_hash)
            .context("signing the executable hash")?
    };

    let subject = x509_name(
        &format!("run-{}", run.run_id),
        Some(&organization_for(&run.program.name)),
    )?;
    let mut builder = authority
        .ca
        .leaf_builder(&subject, &program_key, validity)?;
    add_end_entity_usage(&mut builder)?;
    let platform = &evidence.platform;
    let memory = render_camb_memory(
        &evidence.compartment.memory_map,
        evidence.compartment.memory_map_omitted,
    );
    for (oid, value) in [
        (
            OID_MODEL,
            format!("Model: {}", platform.cpu_model).into_bytes(),
        ),
        (OID_CPUS, format!("CPUs: {}", platform.cpus).into_bytes()),
        (OID_MEMORY, memory.into_bytes()),
        (OID_EXECUTABLE_HASH, exe_hash.to_vec()),
        (OID_HASH_SIGNATURE, hash_signature),
        (OID_EVIDENCE, evidence_json),
    ] {
        builder
            .append_extension(raw_extension(oid, &value)?)
            .context(format!("extension {oid}"))?;
    }
    let certificate = authority.ca.sign(builder)?;

    let mut chain_pem = String::from_utf8(
        certificate
            .to_pem()
            .context("encoding the run certificate")?,
    )
    .map_err(|_| IssueError::Facts("PEM is not UTF-8".into()))?;
    chain_pem.push_str(authority.chain_pem());
    let fingerprint = Sha256Hex::digest(
        &certificate
            .to_der()
            .context("encoding the run certificate")?,
    );
    Ok(IssuedRunCertificate {
        certificate,
        evidence,
        chain_pem,
        fingerprint,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::evidence::tests::golden;
    use openssl::pkey::Private;
    use openssl::x509::X509ReqBuilder;

    /// A DER CSR for `key`, signed by `signer`.
    pub(crate) fn csr(key: &PKey<Private>, signer: &PKey<Private>) -> Vec<u8> {
        let mut b = X509ReqBuilder::new().unwrap();
        b.set_pubkey(key).unwrap();
        b.set_subject_name(&x509_name("ignored", None).unwrap())
            .unwrap();
        b.sign(signer, MessageDigest::sha256()).unwrap();
        b.build().to_der().unwrap()
    }

    pub(crate) struct Fixture {
        pub root: CertificateAuthority,
        pub authority: AttestationAuthority,
    }

    pub(crate) fn fixture() -> Fixture {
        let root =
            CertificateAuthority::create_root("test launcher root", Some("tests"), 30).unwrap();
        let authority = AttestationAuthority::create(&root, "test attestation", 30).unwrap();
        Fixture { root, authority }
    }

    /// Run facts like the golden evidence, starting at `started_at`.
    pub(crate) fn run_facts(started_at: i64) -> (RunFacts, Platform, CompartmentFacts) {
        let g = golden();
        let run = RunFacts {
            program: g.program.clone(),
            run_id: 12,
            started_at: UnixTime(started_at),
            time_limit_secs: 300,
            launcher_version: "attestable-launcher 0.1.0".into(),
        };
        (run, g.platform, g.compartment)
    }

    #[test]
    fn csr_checks() {
        let key = pki::generate_p256_key().unwrap();
        assert!(check_csr(&csr(&key, &key)).is_ok());
        let other = pki::generate_p256_key().unwrap();
        // Built with `other`'s signature over a request naming `key`.
        let mut der = csr(&key, &key);
        let forged = csr(&key, &other);
        assert_eq!(check_csr(&forged).unwrap_err(), CsrError::Signature);
        let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        assert_eq!(
            check_csr(&csr(&rsa, &rsa)).unwrap_err(),
            CsrError::KeyType {
                found: "RSA 2048-bit".into()
            }
        );
        let p384 = PKey::from_ec_key(
            openssl::ec::EcKey::generate(
                &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::SECP384R1).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            check_csr(&csr(&p384, &p384)).unwrap_err().to_string(),
            "CSR key: expected ECDSA P-256, found EC on secp384r1"
        );
        der.truncate(der.len() / 2);
        assert!(matches!(check_csr(&der), Err(CsrError::Parse(_))));
        assert!(matches!(
            check_csr(&vec![0; MAX_CSR_BYTES + 1]),
            Err(CsrError::TooLarge { .. })
        ));
    }

    #[test]
    fn issues_with_exact_subject_validity_and_evidence() {
        let f = fixture();
        let key = pki::generate_p256_key().unwrap();
        let now = pki::unix_now();
        let (run, platform, compartment) = run_facts(now);
        let issued = issue_run_certificate(
            &f.authority,
            &csr(&key, &key),
            &run,
            &platform,
            &compartment,
        )
        .unwrap();
        let cert = &issued.certificate;
        assert_eq!(
            describe_name(cert.subject_name()),
            "O=integration_process.c, CN=run-12"
        );
        assert!(cert.public_key().unwrap().public_eq(&key));
        assert_eq!(asn1_time_to_unix(cert.not_before()).unwrap(), now - 60);
        assert_eq!(asn1_time_to_unix(cert.not_after()).unwrap(), now + 300 + 60);
        assert_eq!(issued.evidence.program, run.program);
        assert_eq!(issued.evidence.platform, platform);
        assert_eq!(issued.evidence.compartment, compartment);
        assert_eq!(issued.evidence.run.not_after, UnixTime(now + 300));
        assert_eq!(
            issued.evidence.launcher.attestation_key_id,
            f.authority.key_id()
        );
        let pems = X509::stack_from_pem(issued.chain_pem.as_bytes()).unwrap();
        assert_eq!(pems.len(), 3);
        assert_eq!(
            pems[1].to_der().unwrap(),
            f.authority.certificate().to_der().unwrap()
        );
        assert_eq!(
            pems[2].to_der().unwrap(),
            f.root.certificate().to_der().unwrap()
        );
        assert_eq!(
            issued.fingerprint.to_string(),
            pki::cert_fingerprint(cert).unwrap()
        );
    }

    #[test]
    fn refuses_bad_facts_and_an_expiring_authority() {
        let f = fixture();
        let key = pki::generate_p256_key().unwrap();
        let der = csr(&key, &key);
        let (mut run, platform, compartment) = run_facts(pki::unix_now());
        run.time_limit_secs = 0;
        let err =
            issue_run_certificate(&f.authority, &der, &run, &platform, &compartment).unwrap_err();
        assert!(
            err.to_string().contains("time limit: expected 1 to"),
            "{err}"
        );
        run.time_limit_secs = 300;
        run.program.name = String::new();
        assert!(matches!(
            issue_run_certificate(&f.authority, &der, &run, &platform, &compartment),
            Err(IssueError::Facts(_))
        ));
        let (run, ..) = run_facts(pki::unix_now() + 40 * 86_400);
        let err =
            issue_run_certificate(&f.authority, &der, &run, &platform, &compartment).unwrap_err();
        assert!(matches!(err, IssueError::AuthorityExpires { .. }), "{err}");
    }

    #[test]
    fn long_names_and_big_maps_are_bounded() {
        let f = fixture();
        let key = pki::generate_p256_key().unwrap();
        let (mut run, platform, mut compartment) = run_facts(pki::unix_now());
        run.program.name = "n".repeat(200);
        let region = compartment.memory_map[0].clone();
        compartment.memory_map = vec![region; crate::memmap::MAX_REGIONS + 3];
        let issued = issue_run_certificate(
            &f.authority,
            &csr(&key, &key),
            &run,
            &platform,
            &compartment,
        )
        .unwrap();
        assert_eq!(
            issued.evidence.compartment.memory_map.len(),
            crate::memmap::MAX_REGIONS
        );
        assert_eq!(issued.evidence.compartment.memory_map_omitted, 3);
        assert_eq!(issued.evidence.program.name.len(), 200);
        assert!(
            describe_name(issued.certificate.subject_name())
                .starts_with(&format!("O={},", "n".repeat(64)))
        );
    }

    #[test]
    fn rotation_archives_the_old_certificate_and_old_runs_still_chain() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (
            dir.path().join("attestation.pem"),
            dir.path().join("attestation.key"),
        );
        let root = CertificateAuthority::create_root("r", None, 30).unwrap();
        let (first, archived) =
            AttestationAuthority::rotate(&root, &cert_path, &key_path, "att", 30).unwrap();
        assert_eq!(archived, None);
        let key = pki::generate_p256_key().unwrap();
        let (run, platform, compartment) = run_facts(pki::unix_now());
        let old_run =
            issue_run_certificate(&first, &csr(&key, &key), &run, &platform, &compartment).unwrap();

        let (second, archived) =
            AttestationAuthority::rotate(&root, &cert_path, &key_path, "att", 30).unwrap();
        let archived = archived.unwrap();
        assert_ne!(first.key_id(), second.key_id());
        let kept = pki::read_certs_pem(&archived).unwrap();
        assert_eq!(
            kept[0].to_der().unwrap(),
            first.certificate().to_der().unwrap()
        );
        let loaded =
            AttestationAuthority::load(&cert_path, &key_path, vec![root.certificate().clone()])
                .unwrap();
        assert_eq!(loaded.key_id(), second.key_id());
        // The old run certificate still carries (and is signed by) the old intermediate.
        let chain = X509::stack_from_pem(old_run.chain_pem.as_bytes()).unwrap();
        assert!(chain[0].verify(&chain[1].public_key().unwrap()).unwrap());
        assert!(
            chain[1]
                .verify(&root.certificate().public_key().unwrap())
                .unwrap()
        );
        // An intermediate from another root is refused.
        let other = CertificateAuthority::create_root("other", None, 1).unwrap();
        let err =
            AttestationAuthority::load(&cert_path, &key_path, vec![other.certificate().clone()])
                .unwrap_err();
        assert!(err.to_string().contains("is not signed by"), "{err}");
    }
}
