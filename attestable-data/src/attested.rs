//! Attested requests (`docs/PROTOCOL.md`, "Attested requests"): a program's
//! signed and encrypted request to a service, and the service's signed and
//! encrypted answer.
//!
//! ```text
//! request  = AuthEnvelopedData(to: service)(SignedData(by: run key)(request body))
//! response = AuthEnvelopedData(to: run certificate)(SignedData(by: service)(response body))
//! ```
//!
//! The program side ([`seal_request`], [`open_response`]) is what the C SDK
//! does; Rust tests and benchmarks use it as a stand-in program. The service
//! side is [`ServiceVerifier`]: policy, service key, replay cache, and a cache
//! of verified chains, shared by the handlers of a service.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509, X509Ref, X509StoreContext};
use serde::{Deserialize, Serialize};

use crate::canonical;
use crate::encoding::UnixTime;
use crate::envelope::{self, EnvelopeError};
use crate::policy::{Access, MAX_RESOURCE_BYTES, Op, Policy, describe_age, validate_resource};
use crate::proof::{Failure, ProofBuilder, StepFailure, StepName, TrustDecision};
use crate::verify::{ChainRejection, VerifiedRunCertificate, parse_chain_pem, verify_chain};

/// The request and response body version.
pub const BODY_VERSION: u32 = 1;

/// Nonces remembered at most, over all certificates (about 30 MB when full).
/// Entries leave when their request could no longer pass the timestamp check
/// (timestamp + skew) or their certificate expires, whichever is first; when
/// the cache is full, requests are refused (`replay`) rather than a nonce forgotten.
pub const MAX_REPLAY_ENTRIES: usize = 262_144;

/// Largest body of `POST /attested/read` or `/attested/write` a service
/// must accept: the largest envelope in base64, the largest run chain, and
/// the JSON around them. (The fd-3 frame limit keeps a program's envelopes
/// below [`crate::envelope::MAX_ENVELOPE_BYTES`]; a smaller body limit would refuse writes the
/// program and the launcher accepted.)
pub const MAX_REQUEST_BODY_BYTES: usize = crate::envelope::MAX_ENVELOPE_BYTES.div_ceil(3) * 4
    + crate::verify::MAX_CHAIN_PEM_BYTES
    + (64 << 10);

/// Verified chains cached at most; past that the cache starts over.
pub const MAX_CACHED_CHAINS: usize = 1024;

/// The JSON body of `POST /attested/read` and `POST /attested/write`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestedHttpRequest {
    /// The run certificate then the intermediate (and optionally the root), PEM.
    pub certificate_chain: String,
    /// Base64 of the DER request envelope.
    pub request: String,
}

impl AttestedHttpRequest {
    /// The request envelope's DER, or a 400 rejection when `request` is not base64.
    pub fn envelope(&self) -> Result<Vec<u8>, Rejection> {
        BASE64
            .decode(&self.request)
            .map_err(|e| Rejection::BadRequest(format!("request is not base64: {e}")))
    }
}

/// The JSON body of a 200 answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestedHttpResponse {
    /// Base64 of the DER response envelope.
    pub response: String,
}

/// What a program signs: the request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    /// [`BODY_VERSION`].
    pub v: u32,
    /// Must match the endpoint.
    pub op: Op,
    /// The service the program means.
    pub service: String,
    /// The full resource path.
    pub resource: String,
    /// 16 random bytes, 32 lowercase hex digits.
    pub nonce: String,
    /// Unix seconds when signed.
    pub timestamp: i64,
    /// Base64 (standard, padded) of the parameters or the data written.
    pub payload: String,
}

impl RequestBody {
    /// A body with a fresh random nonce, signed `now`.
    pub fn new(op: Op, service: &str, resource: &str, payload: &[u8], now: i64) -> Self {
        let mut nonce = [0u8; 16];
        // The OpenSSL CSPRNG only fails when it cannot be seeded at all.
        openssl::rand::rand_bytes(&mut nonce).expect("the OpenSSL random generator works");
        Self {
            v: BODY_VERSION,
            op,
            service: service.to_string(),
            resource: resource.to_string(),
            nonce: hex::encode(nonce),
            timestamp: now,
            payload: BASE64.encode(payload),
        }
    }
}

/// What a service signs: the response body (canonical JSON on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseBody {
    /// [`BODY_VERSION`].
    pub v: u32,
    /// The request's nonce.
    pub nonce: String,
    /// The answering service.
    pub service: String,
    /// The request's resource.
    pub resource: String,
    /// `ok`.
    pub status: String,
    /// Base64 of the answer.
    pub payload: String,
}

/// A request or response that a program could not make or accept.
#[derive(Debug, thiserror::Error)]
pub enum AttestedError {
    /// An envelope operation failed.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The response body is not what was asked for.
    #[error("response: expected {expected}, found {found}")]
    Response {
        /// What the request implies.
        expected: String,
        /// What the response says.
        found: String,
    },
    /// The service certificate is not acceptable.
    #[error("service certificate: {0}")]
    ServiceCertificate(String),
}

/// Program side: seals `body` (see [`RequestBody::new`]): signed by the run
/// key, encrypted to `service_cert`. Keep `body` to check the answer with
/// [`open_response`].
pub fn seal_request(
    run_key: &PKeyRef<Private>,
    run_cert: &X509Ref,
    service_cert: &X509Ref,
    body: &RequestBody,
) -> Result<Vec<u8>, AttestedError> {
    let json = serde_json::to_vec(body).map_err(|e| AttestedError::Response {
        expected: "a serializable body".into(),
        found: e.to_string(),
    })?;
    let signed = envelope::sign(run_key, run_cert, &json)?;
    Ok(envelope::encrypt_to(service_cert, &signed)?)
}

/// Program side: opens a response envelope to `request` and returns its payload.
pub fn open_response(
    run_key: &PKeyRef<Private>,
    run_cert: &X509,
    service_cert: &X509Ref,
    request: &RequestBody,
    der: &[u8],
) -> Result<Vec<u8>, AttestedError> {
    let signed = envelope::decrypt(run_key, run_cert, der)?;
    let json = envelope::verify(service_cert, &signed)?;
    let body: ResponseBody =
        serde_json::from_slice(&json).map_err(|e| AttestedError::Response {
            expected: "a response body".into(),
            found: e.to_string(),
        })?;
    let pairs = [
        ("v", BODY_VERSION.to_string(), body.v.to_string()),
        ("nonce", request.nonce.clone(), body.nonce.clone()),
        ("service", request.service.clone(), body.service.clone()),
        ("resource", request.resource.clone(), body.resource.clone()),
        ("status", "ok".into(), body.status.clone()),
    ];
    for (field, want, got) in pairs {
        if want != got {
            return Err(AttestedError::Response {
                expected: format!("{field} {want:?}"),
                found: format!("{got:?}"),
            });
        }
    }
    BASE64
        .decode(&body.payload)
        .map_err(|e| AttestedError::Response {
            expected: "base64 payload".into(),
            found: e.to_string(),
        })
}

/// Program side: checks a service's chain (PEM, leaf first) against the
/// anchor compiled into the program, at `now`, and that the leaf's common
/// name is `service`; returns the leaf.
pub fn verify_service_chain(
    chain_pem: &str,
    anchor: &X509,
    service: &str,
    now: i64,
) -> Result<X509, AttestedError> {
    let bad = |m: String| AttestedError::ServiceCertificate(m);
    let chain = parse_chain_pem(chain_pem).map_err(|e| bad(e.to_string()))?;
    let mut store = X509StoreBuilder::new().map_err(|e| bad(e.to_string()))?;
    store
        .add_cert(anchor.clone())
        .map_err(|e| bad(e.to_string()))?;
    let mut param =
        openssl::x509::verify::X509VerifyParam::new().map_err(|e| bad(e.to_string()))?;
    param.set_time(now as libc::time_t);
    param
        .set_flags(X509VerifyFlags::USE_CHECK_TIME)
        .map_err(|e| bad(e.to_string()))?;
    store.set_param(&param).map_err(|e| bad(e.to_string()))?;
    let store = store.build();
    let mut untrusted = Stack::new().map_err(|e| bad(e.to_string()))?;
    for c in &chain[1..] {
        untrusted.push(c.clone()).map_err(|e| bad(e.to_string()))?;
    }
    let mut ctx = X509StoreContext::new().map_err(|e| bad(e.to_string()))?;
    let (ok, err) = ctx
        .init(&store, &chain[0], &untrusted, |c| {
            Ok((c.verify_cert()?, c.error()))
        })
        .map_err(|e| bad(e.to_string()))?;
    if !ok {
        return Err(bad(format!(
            "expected a chain to the compiled-in anchor {}, found: {}",
            crate::pki::describe_name(anchor.subject_name()),
            err.error_string()
        )));
    }
    let cn = crate::pki::common_name(&chain[0]).unwrap_or_default();
    if cn != service {
        return Err(bad(format!(
            "expected common name {service:?}, found {cn:?}"
        )));
    }
    Ok(chain[0].clone())
}

/// A service's own key and certificate.
pub struct ServiceIdentity {
    /// The service's name (`store`, `taxi`, `messaging`): the `service` requests must name.
    pub name: String,
    /// Its private key (decrypts requests, signs responses).
    pub key: PKey<Private>,
    /// Its certificate (what programs encrypt to).
    pub certificate: X509,
}

/// Why a service refuses a request.
#[derive(Debug, Clone)]
pub enum Rejection {
    /// 400: the request is malformed or not meant for this service.
    BadRequest(String),
    /// 403: a trust check failed; the decision holds the proof.
    Denied(TrustDecision),
}

impl Rejection {
    /// The HTTP status: 400 or 403.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::BadRequest(_) => 400,
            Rejection::Denied(_) => 403,
        }
    }

    /// The JSON error body of `docs/PROTOCOL.md`:
    /// `{"error": {"code": "bad_request", "message"}}` or
    /// `{"error": {"code": "denied", "message", "failed_step", "proof"}}`.
    pub fn error_body(&self) -> serde_json::Value {
        match self {
            Rejection::BadRequest(message) => {
                serde_json::json!({"error": {"code": "bad_request", "message": message}})
            }
            Rejection::Denied(d) => serde_json::json!({"error": {
                "code": "denied",
                "message": d.summary(),
                "failed_step": d.failed_step().map(|s| s.as_str()),
                "proof": d.to_string(),
            }}),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::BadRequest(m) => write!(f, "bad request: {m}"),
            Rejection::Denied(d) => f.write_str(&d.summary()),
        }
    }
}

/// A request that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedRequest {
    /// The request body.
    pub body: RequestBody,
    /// The decoded payload.
    pub payload: Vec<u8>,
    /// The run certificate it came with.
    pub certificate: Arc<VerifiedRunCertificate>,
    /// The allow decision and its proof.
    pub decision: TrustDecision,
}

/// (run certificate fingerprint, nonce).
type ReplayKey = ([u8; 32], [u8; 16]);

#[derive(Debug)]
struct ReplayCache {
    seen: HashMap<ReplayKey, i64>,
    expiry: BinaryHeap<Reverse<(i64, ReplayKey)>>,
    max: usize,
}

enum ReplayOutcome {
    Fresh,
    Replayed,
    Full,
}

impl ReplayCache {
    fn new(max: usize) -> Self {
        Self {
            seen: HashMap::new(),
            expiry: BinaryHeap::new(),
            max,
        }
    }

    fn purge(&mut self, now: i64) {
        while let Some(Reverse((expires, key))) = self.expiry.peek().copied() {
            if expires >= now {
                break;
            }
            self.expiry.pop();
            self.seen.remove(&key);
        }
    }

    fn check_and_insert(
        &mut self,
        fp: [u8; 32],
        nonce: [u8; 16],
        expires: i64,
        now: i64,
    ) -> ReplayOutcome {
        self.purge(now);
        if self.seen.contains_key(&(fp, nonce)) {
            return ReplayOutcome::Replayed;
        }
        if self.seen.len() >= self.max {
            return ReplayOutcome::Full;
        }
        self.seen.insert((fp, nonce), expires);
        self.expiry.push(Reverse((expires, (fp, nonce))));
        ReplayOutcome::Fresh
    }
}

#[derive(Debug, Default)]
struct ChainCache {
    entries: HashMap<(u64, [u8; 32]), Arc<VerifiedRunCertificate>>,
}

/// The service side of attested requests: verifies requests against a policy
/// and seals responses. `Send + Sync`; share one per service (e.g. in an `Arc`).
pub struct ServiceVerifier {
    identity: ServiceIdentity,
    policy: RwLock<(Arc<Policy>, u64)>,
    chains: Mutex<ChainCache>,
    replay: Mutex<ReplayCache>,
    started_at: i64,
}

impl fmt::Debug for ServiceVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceVerifier")
            .field("service", &self.identity.name)
            .field("started_at", &UnixTime(self.started_at))
            .finish_non_exhaustive()
    }
}

impl ServiceVerifier {
    /// A verifier for `identity` deciding with `policy`, started now.
    pub fn new(identity: ServiceIdentity, policy: Policy) -> Self {
        Self::with_start_time(identity, policy, crate::pki::unix_now())
    }

    /// As [`ServiceVerifier::new`], with the start time given (requests
    /// signed before it are refused: the replay cache does not survive a restart).
    pub fn with_start_time(identity: ServiceIdentity, policy: Policy, started_at: i64) -> Self {
        Self {
            identity,
            policy: RwLock::new((Arc::new(policy), 0)),
            chains: Mutex::new(ChainCache::default()),
            replay: Mutex::new(ReplayCache::new(MAX_REPLAY_ENTRIES)),
            started_at,
        }
    }

    /// The service's name.
    pub fn service_name(&self) -> &str {
        &self.identity.name
    }

    /// The service's certificate.
    pub fn certificate(&self) -> &X509 {
        &self.identity.certificate
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Replaces the policy (a reload); verified chains are forgotten, since
    /// the trusted roots may have changed. Remembered nonces are kept.
    pub fn set_policy(&self, policy: Policy) {
        let mut guard = self.policy.write().unwrap_or_else(|e| e.into_inner());
        let generation = guard.1 + 1;
        *guard = (Arc::new(policy), generation);
        drop(guard);
        self.chains
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .clear();
    }

    /// Verifies a request arriving at the `op` endpoint, now.
    pub fn verify(
        &self,
        chain_pem: &str,
        request_der: &[u8],
        op: Op,
    ) -> Result<VerifiedRequest, Rejection> {
        self.verify_at(chain_pem, request_der, op, crate::pki::unix_now())
    }

    /// Verifies a request as of `now` (Unix seconds): chain and policy,
    /// signature, nonce and timestamp, permission, in that order.
    pub fn verify_at(
        &self,
        chain_pem: &str,
        request_der: &[u8],
        op: Op,
        now: i64,
    ) -> Result<VerifiedRequest, Rejection> {
        let (policy, generation) = {
            let guard = self.policy.read().unwrap_or_else(|e| e.into_inner());
            (guard.0.clone(), guard.1)
        };
        let mut proof = ProofBuilder::new();
        let verified = match self.verified_chain(&policy, generation, chain_pem) {
            Ok(v) => v,
            Err(ChainOutcome::Malformed(m)) => return Err(Rejection::BadRequest(m)),
            Err(ChainOutcome::Failed(r)) => return Err(Rejection::Denied(r.into_decision())),
        };
        verified.record_trust_steps(&mut proof);
        match self.verify_request(&policy, &verified, request_der, op, now, &mut proof) {
            Ok((body, payload, conclusion)) => Ok(VerifiedRequest {
                body,
                payload,
                certificate: verified,
                decision: proof.allow(conclusion),
            }),
            Err(Outcome::Bad(m)) => Err(Rejection::BadRequest(m)),
            Err(Outcome::Failed(f)) => Err(Rejection::Denied(proof.deny(f))),
        }
    }

    fn verified_chain(
        &self,
        policy: &Policy,
        generation: u64,
        chain_pem: &str,
    ) -> Result<Arc<VerifiedRunCertificate>, ChainOutcome> {
        let key = (generation, openssl::sha::sha256(chain_pem.as_bytes()));
        let now = crate::pki::unix_now();
        if let Some(v) = self
            .chains
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .get(&key)
        {
            return Ok(v.clone());
        }
        let chain =
            parse_chain_pem(chain_pem).map_err(|e| ChainOutcome::Malformed(e.to_string()))?;
        let verified =
            Arc::new(verify_chain(&chain, policy.anchors()).map_err(ChainOutcome::Failed)?);
        let mut cache = self.chains.lock().unwrap_or_else(|e| e.into_inner());
        if cache.entries.len() >= MAX_CACHED_CHAINS {
            cache.entries.retain(|_, v| v.chain_not_after() >= now);
            if cache.entries.len() >= MAX_CACHED_CHAINS {
                cache.entries.clear();
            }
        }
        cache.entries.insert(key, verified.clone());
        Ok(verified)
    }

    fn verify_request(
        &self,
        policy: &Policy,
        v: &VerifiedRunCertificate,
        request_der: &[u8],
        op: Op,
        now: i64,
        proof: &mut ProofBuilder,
    ) -> Result<(RequestBody, Vec<u8>, String), Outcome> {
        let service = self.identity.name.as_str();
        policy.check_run(v, now, proof)?;

        // The envelope: for us, and signed by the run key.
        let signed = envelope::decrypt(&self.identity.key, &self.identity.certificate, request_der)
            .map_err(|e| {
                Outcome::Bad(format!(
                    "request envelope is not for service {service:?}: {e}"
                ))
            })?;
        let json = match envelope::verify(v.certificate(), &signed) {
            Ok(json) => json,
            Err(EnvelopeError::Signature { reason, .. }) => {
                return Err(Outcome::Failed(StepFailure::new(
                    StepName::Signature,
                    format!("{} says Request[{op} {service}]", v.program_label()),
                    Failure::new(
                        "the request is not signed by the run certificate's key",
                        format!("a CMS SignedData by {}", v.program_label()),
                        format!("a signature that does not verify ({reason})"),
                    ),
                )));
            }
            Err(e) => return Err(Outcome::Bad(format!("signed request: {e}"))),
        };
        let body: RequestBody = serde_json::from_slice(&json)
            .map_err(|e| Outcome::Bad(format!("request body {}", describe_json_error(&e))))?;
        let (nonce, payload) = check_body(&body, op, service).map_err(Outcome::Bad)?;
        let shown = policy.shown_resource(&body.resource);
        proof.held(
            StepName::Signature,
            format!("{} says Request[{op} {service}:{shown}]", v.program_label()),
            "signature",
        );

        // Freshness of the request itself.
        let skew = policy.timestamp_skew_s() as i64;
        let statement = format!("Request[nonce {}] is-fresh", &body.nonce[..8]);
        let stale = |reason: &str, expected: String| {
            Outcome::Failed(StepFailure::new(
                StepName::Replay,
                statement.clone(),
                Failure::new(
                    reason,
                    expected,
                    format!("signed {}", describe_age(body.timestamp, now)),
                ),
            ))
        };
        if now.abs_diff(body.timestamp) > skew as u64 {
            return Err(stale(
                "the request's timestamp is outside the allowed skew",
                format!("signed within {skew} s of now ({})", UnixTime(now)),
            ));
        }
        if body.timestamp < self.started_at {
            return Err(stale(
                "the request was signed before the service started",
                format!(
                    "signed at or after {} (service start)",
                    UnixTime(self.started_at)
                ),
            ));
        }
        let expires = (body.timestamp + skew).min(v.not_after());
        let outcome = self
            .replay
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check_and_insert(*v.fingerprint().as_bytes(), nonce, expires, now);
        match outcome {
            ReplayOutcome::Fresh => {}
            ReplayOutcome::Replayed => {
                return Err(Outcome::Failed(StepFailure::new(
                    StepName::Replay,
                    statement,
                    Failure::new(
                        "the nonce was used before",
                        format!("a nonce not seen before under {}", v.run_name()),
                        format!("nonce {} again", body.nonce),
                    ),
                )));
            }
            ReplayOutcome::Full => {
                return Err(Outcome::Failed(StepFailure::new(
                    StepName::Replay,
                    statement,
                    Failure::new(
                        "the replay cache is full; try again shortly",
                        format!("fewer than {MAX_REPLAY_ENTRIES} live nonces"),
                        "a full cache",
                    ),
                )));
            }
        }
        proof.held(
            StepName::Replay,
            format!(
                "{statement}: first use, signed {} s ago",
                now.saturating_sub(body.timestamp).max(0)
            ),
            format!("replay check, skew {skew} s"),
        );

        let rules = policy.check_measurement(v, proof)?;
        let access = Access {
            service,
            op,
            resource: &body.resource,
        };
        policy.check_permission(v, &rules, access, proof)?;
        let conclusion = policy.access_conclusion(v, access);
        Ok((body, payload, conclusion))
    }

    /// Seals the answer to `request`: `payload` in a canonical response body,
    /// signed by the service, encrypted to the run certificate.
    pub fn seal_response(
        &self,
        request: &VerifiedRequest,
        payload: &[u8],
    ) -> Result<Vec<u8>, EnvelopeError> {
        let body = ResponseBody {
            v: BODY_VERSION,
            nonce: request.body.nonce.clone(),
            service: self.identity.name.clone(),
            resource: request.body.resource.clone(),
            status: "ok".into(),
            payload: BASE64.encode(payload),
        };
        let json = canonical::to_vec(&body).map_err(|e| EnvelopeError::Malformed {
            expected: "a canonical response body",
            found: e.to_string(),
        })?;
        let signed = envelope::sign(&self.identity.key, &self.identity.certificate, &json)?;
        envelope::encrypt_to(request.certificate.certificate(), &signed)
    }
}

enum ChainOutcome {
    Malformed(String),
    Failed(Box<ChainRejection>),
}

enum Outcome {
    Bad(String),
    Failed(StepFailure),
}

impl From<StepFailure> for Outcome {
    fn from(f: StepFailure) -> Self {
        Outcome::Failed(f)
    }
}

/// Checks a request body's fields; returns the nonce's bytes and the decoded payload.
fn check_body(body: &RequestBody, op: Op, service: &str) -> Result<([u8; 16], Vec<u8>), String> {
    if body.v != BODY_VERSION {
        return Err(format!(
            "request body: expected v {BODY_VERSION}, found {}",
            body.v
        ));
    }
    if body.op != op {
        return Err(format!(
            "request body: expected op {op} (the endpoint), found {}",
            body.op
        ));
    }
    if body.service != service {
        return Err(format!(
            "request body: expected service {service:?} (this service), found {:?}",
            body.service
        ));
    }
    // The path may hold an identifier (a phone): describe it, never echo it.
    if validate_resource(&body.resource).is_err() {
        return Err(format!(
            "request body: resource: expected a path like sales/last of 1 to \
             {MAX_RESOURCE_BYTES} bytes (segments of A-Z a-z 0-9 . _ ~ + @ = : - separated by \
             single /, none . or ..), found {} bytes that are not one",
            body.resource.len()
        ));
    }
    let mut nonce = [0u8; 16];
    let lower_hex = body.nonce.len() == 32
        && body
            .nonce
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !lower_hex || hex::decode_to_slice(&body.nonce, &mut nonce).is_err() {
        return Err(format!(
            "request body: expected a nonce of 32 lowercase hex digits, found {:?}",
            body.nonce.chars().take(40).collect::<String>()
        ));
    }
    let payload = BASE64
        .decode(&body.payload)
        .map_err(|e| format!("request body: payload is not base64: {e}"))?;
    Ok((nonce, payload))
}

/// Describes why JSON did not parse as expected without quoting any of its
/// values: the JSON may be a decrypted request, and a 400 answer travels
/// back through the relay in clear and into logs. Names of fields and
/// variants are kept when they look like identifiers (schema words), and
/// what was expected is kept (it comes from the schema); anything else the
/// input said is left out. Reads as the rest of a sentence: `"is not JSON
/// (syntax error at line 1 column 2)"`.
pub fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("at line {} column {}", e.line(), e.column());
    match e.classify() {
        Category::Io => "could not be read".to_string(),
        Category::Syntax => format!("is not JSON (syntax error {at})"),
        Category::Eof => format!("is truncated JSON (it ends {at})"),
        Category::Data => {
            let full = e.to_string();
            let message = full.strip_suffix(&format!(" {at}")).unwrap_or(&full);
            format!("does not fit: {} ({at})", describe_data_error(message))
        }
    }
}

fn describe_data_error(message: &str) -> String {
    let identifier = |s: &str| {
        !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    // serde's wording: "missing field `x`", "unknown field `x`, expected …",
    // "duplicate field `x`", "unknown variant `x`, expected …".
    for kind in [
        "missing field",
        "unknown field",
        "duplicate field",
        "unknown variant",
    ] {
        if let Some(rest) = message.strip_prefix(kind) {
            let name = rest.split('`').nth(1).filter(|n| identifier(n));
            let shown = name.map_or_else(|| " (not shown)".to_string(), |n| format!(" `{n}`"));
            let expected = rest
                .split_once(", expected ")
                .map(|(_, e)| format!(", expected {e}"))
                .unwrap_or_default();
            return format!("{kind}{shown}{expected}");
        }
    }
    // "invalid type: string \"…\", expected u32": keep the kind and what was expected.
    for kind in ["invalid type", "invalid value", "invalid length"] {
        if message.starts_with(kind) {
            return match message.rsplit_once(", expected ") {
                Some((_, expected)) => format!("{kind}, expected {expected}"),
                None => kind.to_string(),
            };
        }
    }
    "a value does not have the expected form".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe<T: serde::de::DeserializeOwned + fmt::Debug>(json: &str) -> String {
        describe_json_error(&serde_json::from_str::<T>(json).unwrap_err())
    }

    #[test]
    fn json_errors_are_described_without_their_values() {
        let secret = "+15550100777";
        let cases = [
            (
                describe::<RequestBody>(&format!("{{\"v\":\"{secret}\"}}")),
                "invalid type, expected u32",
            ),
            (
                describe::<RequestBody>(&format!("{{\"{secret}\":1}}")),
                "unknown field (not shown), expected",
            ),
            (describe::<RequestBody>("{\"vv\":1}"), "unknown field `vv`"),
            (
                describe::<RequestBody>(&format!("{{\"op\":\"{secret}\"}}")),
                "unknown variant (not shown), expected `read` or `write`",
            ),
            (describe::<RequestBody>("{\"v\":1}"), "missing field `op`"),
            (
                describe::<RequestBody>(&format!("{{\"resource\":\"replies/{secret}\"")),
                "truncated JSON",
            ),
            (
                describe::<RequestBody>(&format!("{secret}x")),
                "is not JSON (syntax error at line 1",
            ),
        ];
        for (text, needle) in cases {
            assert!(text.contains(needle), "{needle:?} in {text:?}");
            assert!(!text.contains("0100777"), "{text}");
        }
    }
}
