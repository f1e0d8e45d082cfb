//! One service's HTTPS client and what its answers mean to a program.
//!
//! The client trusts exactly the service's registered CA (no system roots),
//! ignores proxies from the environment, sets `TCP_NODELAY`, keeps
//! connections alive between calls, and bounds connecting, each call and
//! the size of every answer. Answers map to frames as `docs/PROTOCOL.md`
//! says: 200 → `DATA`/`ACK`; 400 → `service_rejected`; 403 →
//! `service_denied` with the service's proof; anything else →
//! `service_error`; no answer (refused, TLS, timeout) → `service_unreachable`.
//! A read is retried once when the connection failed before the service
//! could have seen it; a write never is.

use std::error::Error as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use openssl::x509::X509;
use serde::Deserialize;

use super::BrokerConfig;
use super::registry::{Source, ValidService};
use crate::channel::session::{Nack, NackCode};

/// Largest service certificate chain accepted, in bytes.
pub const MAX_SERVICE_CERT_BYTES: usize = 1024 * 1024;

/// Longest piece of a service's error message passed on.
const MAX_MESSAGE_CHARS: usize = 2048;

/// An attested call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
}

impl Op {
    fn path(self) -> &'static str {
        match self {
            Op::Read => "/attested/read",
            Op::Write => "/attested/write",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
        }
    }
}

/// A failed call: the `NACK` for the program, and what the call record may
/// keep (never the proof text, never anything from the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    pub nack: Nack,
    pub detail: String,
}

impl CallFailure {
    fn same(code: NackCode, reason: String) -> Self {
        Self {
            detail: reason.clone(),
            nack: Nack::new(code, reason),
        }
    }
}

/// A service as the broker calls it.
pub struct ServiceClient {
    valid: ValidService,
    source: Source,
    updated_at: i64,
    http: reqwest::Client,
    request_timeout: Duration,
    cert_ttl: Duration,
    cert_cache: Mutex<Option<(Instant, Arc<str>)>>,
    /// `[broker] max_in_flight_per_service` permits.
    in_flight: tokio::sync::Semaphore,
    max_in_flight: usize,
}

impl std::fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClient")
            .field("id", &self.valid.id)
            .field("base_url", &self.valid.base_url)
            .finish_non_exhaustive()
    }
}

impl ServiceClient {
    pub fn new(
        valid: ValidService,
        source: Source,
        updated_at: i64,
        config: &BrokerConfig,
    ) -> Result<Self, String> {
        let roots = valid
            .cas
            .iter()
            .map(|ca| {
                ca.to_der()
                    .map_err(|e| e.to_string())
                    .and_then(|der| reqwest::Certificate::from_der(&der).map_err(|e| e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let http = reqwest::Client::builder()
            .tls_certs_only(roots)
            .https_only(true)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .connect_timeout(config.connect_timeout())
            .timeout(config.request_timeout())
            .pool_idle_timeout(Duration::from_secs(config.pool_idle_timeout_s))
            .pool_max_idle_per_host(config.pool_max_idle)
            .user_agent(concat!("attestable-launcher/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            valid,
            source,
            updated_at,
            http,
            request_timeout: config.request_timeout(),
            cert_ttl: Duration::from_secs(config.service_cert_cache_s),
            cert_cache: Mutex::new(None),
            in_flight: tokio::sync::Semaphore::new(config.max_in_flight_per_service),
            max_in_flight: config.max_in_flight_per_service,
        })
    }

    pub fn id(&self) -> &str {
        &self.valid.id
    }

    pub fn base_url(&self) -> &str {
        &self.valid.base_url
    }

    pub fn ca_pem(&self) -> &str {
        &self.valid.ca_pem
    }

    pub fn cas(&self) -> &[X509] {
        &self.valid.cas
    }

    pub fn source(&self) -> Source {
        self.source
    }

    /// When the registration last changed (Unix ms; 0 for configured services).
    pub fn updated_at(&self) -> i64 {
        self.updated_at
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.valid.base_url)
    }

    /// `POST {base}/attested/read|write` with the run's chain and the
    /// request envelope; the response envelope (empty for a write the
    /// service acknowledged without one). `max_response` bounds the envelope.
    pub async fn attested(
        &self,
        op: Op,
        chain_pem: &str,
        request: &[u8],
        max_response: usize,
    ) -> Result<Vec<u8>, CallFailure> {
        let body = serde_json::json!({
            "certificate_chain": chain_pem,
            "request": BASE64.encode(request),
        })
        .to_string();
        // The JSON answer carries the envelope in base64, plus a little framing.
        let body_limit = max_response / 3 * 4 + 4 + 4096;
        // Held until the answer is read: the connection is back in the pool then.
        let _permit =
            match tokio::time::timeout(self.request_timeout, self.in_flight.acquire()).await {
                Ok(Ok(permit)) => permit,
                // Closed never happens (the semaphore is never closed); treated as busy.
                Ok(Err(_)) | Err(_) => {
                    return Err(CallFailure::same(
                        NackCode::ServiceUnreachable,
                        format!(
                            "service {}: {} calls already in flight to it \
                             (broker.max_in_flight_per_service) and none finished within {} ms",
                            self.valid.id,
                            self.max_in_flight,
                            self.request_timeout.as_millis()
                        ),
                    ));
                }
            };
        let mut attempt = 0;
        let (status, bytes) = loop {
            attempt += 1;
            let sent = self
                .http
                .post(self.url(op.path()))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(err) if op == Op::Read && attempt == 1 && retryable(&err) => {
                    tracing::debug!(service = %self.valid.id, error = %chain(&err), "retrying a read");
                    continue;
                }
                Err(err) => return Err(self.unreachable(&err)),
            };
            let status = response.status().as_u16();
            match read_limited(response, body_limit).await {
                Ok(bytes) => break (status, bytes),
                Err(BodyError::TooLarge) => {
                    return Err(CallFailure::same(
                        NackCode::ServiceError,
                        format!(
                            "service {}: the answer (HTTP {status}) is over {body_limit} bytes, \
                             more than the channel can carry",
                            self.valid.id
                        ),
                    ));
                }
                Err(BodyError::Http(err)) => return Err(self.unreachable(&err)),
            }
        };
        self.interpret(op, status, &bytes)
    }

    /// Maps a service's answer to an envelope or a failure.
    fn interpret(&self, op: Op, status: u16, body: &[u8]) -> Result<Vec<u8>, CallFailure> {
        let id = &self.valid.id;
        match status {
            200 => {
                #[derive(Deserialize)]
                struct Answer {
                    response: Option<String>,
                }
                let answer: Answer = if body.iter().all(u8::is_ascii_whitespace) && op == Op::Write
                {
                    Answer { response: None }
                } else {
                    serde_json::from_slice(body).map_err(|e| {
                        CallFailure::same(
                            NackCode::ServiceError,
                            format!(
                                "service {id}: HTTP 200 without a JSON {{\"response\"}} body ({})",
                                attestable_data::attested::describe_json_error(&e)
                            ),
                        )
                    })?
                };
                let envelope = match answer.response.as_deref() {
                    None | Some("") => Vec::new(),
                    Some(b64) => BASE64.decode(b64).map_err(|e| {
                        CallFailure::same(
                            NackCode::ServiceError,
                            format!("service {id}: HTTP 200 whose response is not base64 ({e})"),
                        )
                    })?,
                };
                if envelope.is_empty() && op == Op::Read {
                    return Err(CallFailure::same(
                        NackCode::ServiceError,
                        format!("service {id}: HTTP 200 without a response envelope for a read"),
                    ));
                }
                Ok(envelope)
            }
            204 if op == Op::Write => Ok(Vec::new()),
            _ => Err(self.refusal(status, body)),
        }
    }

    /// An error status and its body (`{"error": {"code", "message", "failed_step", "proof"}}`).
    fn refusal(&self, status: u16, body: &[u8]) -> CallFailure {
        #[derive(Deserialize, Default)]
        struct Detail {
            code: Option<String>,
            message: Option<String>,
            failed_step: Option<String>,
            proof: Option<String>,
        }
        #[derive(Deserialize)]
        struct Body {
            error: Detail,
        }
        let id = &self.valid.id;
        let detail = serde_json::from_slice::<Body>(body)
            .map(|b| b.error)
            .unwrap_or_default();
        let message = detail
            .message
            .as_deref()
            .map(bounded)
            .unwrap_or_else(|| "(no error message in the answer)".to_owned());
        match status {
            403 => {
                let step = detail.failed_step.as_deref().unwrap_or("unknown step");
                let reason = match detail.proof.as_deref() {
                    Some(proof) => bounded_lines(proof),
                    None => message.clone(),
                };
                CallFailure {
                    nack: Nack::new(NackCode::ServiceDenied, reason),
                    // The proof may name what the program asked for: not recorded.
                    detail: format!("service {id} denied the request at step {}", bounded(step)),
                }
            }
            400 => CallFailure::same(
                NackCode::ServiceRejected,
                format!("service {id} rejected the request as malformed: {message}"),
            ),
            _ => {
                let code = detail
                    .code
                    .as_deref()
                    .map(|c| format!(" {}", bounded(c)))
                    .unwrap_or_default();
                CallFailure::same(
                    NackCode::ServiceError,
                    format!("service {id} answered HTTP {status}{code}: {message}"),
                )
            }
        }
    }

    fn unreachable(&self, err: &reqwest::Error) -> CallFailure {
        let id = &self.valid.id;
        let what = if err.is_timeout() {
            if err.is_connect() {
                "connect timeout".to_owned()
            } else {
                format!(
                    "timeout: no complete answer within {} ms",
                    self.request_timeout.as_millis()
                )
            }
        } else if is_refused(err) {
            "connection refused".to_owned()
        } else if is_tls(err) {
            "TLS failure (is the registered CA the one its certificate chains to?)".to_owned()
        } else if err.is_connect() {
            "connection failed".to_owned()
        } else {
            "the connection failed during the call".to_owned()
        };
        CallFailure::same(
            NackCode::ServiceUnreachable,
            format!(
                "service {id} at {}: {what}: {}",
                self.valid.base_url,
                chain(err)
            ),
        )
    }

    /// `GET {base}/.well-known/attestable/certificate`, cached for a while.
    pub async fn certificate(&self) -> Result<Arc<str>, CallFailure> {
        if let Some((at, pem)) = &*self
            .cert_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            && at.elapsed() < self.cert_ttl
        {
            return Ok(pem.clone());
        }
        let id = &self.valid.id;
        let response = self
            .http
            .get(self.url("/.well-known/attestable/certificate"))
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status().as_u16();
        let body = match read_limited(response, MAX_SERVICE_CERT_BYTES).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                return Err(CallFailure::same(
                    NackCode::ServiceError,
                    format!("service {id}: its certificate is over {MAX_SERVICE_CERT_BYTES} bytes"),
                ));
            }
            Err(BodyError::Http(err)) => return Err(self.unreachable(&err)),
        };
        if status != 200 {
            return Err(self.refusal(status, &body));
        }
        let pem = String::from_utf8(body).map_err(|_| {
            CallFailure::same(
                NackCode::ServiceError,
                format!("service {id}: its certificate is not UTF-8 PEM"),
            )
        })?;
        match X509::stack_from_pem(pem.as_bytes()) {
            Ok(certs) if !certs.is_empty() => {}
            _ => {
                return Err(CallFailure::same(
                    NackCode::ServiceError,
                    format!("service {id}: its certificate does not parse as PEM"),
                ));
            }
        }
        let pem: Arc<str> = Arc::from(pem);
        *self
            .cert_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), pem.clone()));
        Ok(pem)
    }
}

enum BodyError {
    TooLarge,
    Http(reqwest::Error),
}

/// Reads a body of at most `limit` bytes, refusing more before reading it.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Http)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A connection that failed before the service could have received the
/// request: safe to retry a read. Timeouts and TLS failures are not retried.
fn retryable(err: &reqwest::Error) -> bool {
    if err.is_timeout() || is_tls(err) {
        return false;
    }
    err.is_connect()
        || io_kind(err).is_some_and(|k| {
            matches!(
                k,
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            )
        })
        || chain(err).contains("connection closed before message completed")
}

fn io_kind(err: &reqwest::Error) -> Option<std::io::ErrorKind> {
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = e.source();
    }
    None
}

fn is_refused(err: &reqwest::Error) -> bool {
    io_kind(err) == Some(std::io::ErrorKind::ConnectionRefused)
}

fn is_tls(err: &reqwest::Error) -> bool {
    let text = chain(err).to_ascii_lowercase();
    ["certificate", "ssl", "tls", "handshake"]
        .iter()
        .any(|w| text.contains(w))
}

/// The error and its causes in one line.
fn chain(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

/// A service's message, one line, bounded.
fn bounded(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    if text.chars().count() > MAX_MESSAGE_CHARS {
        out.push('…');
    }
    out
}

/// A proof: lines kept, other control characters removed, bounded.
fn bounded_lines(text: &str) -> String {
    let limit = MAX_MESSAGE_CHARS * 8;
    let mut out: String = text
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .take(limit)
        .collect();
    if text.chars().count() > limit {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use attestable_data::pki::CertificateAuthority;

    fn client() -> ServiceClient {
        let ca = CertificateAuthority::create_root("services CA", None, 30).unwrap();
        let pem = String::from_utf8(ca.certificate().to_pem().unwrap()).unwrap();
        let valid = super::super::registry::validate("store", "https://127.0.0.1:9", &pem).unwrap();
        ServiceClient::new(valid, Source::Api, 0, &BrokerConfig::default()).unwrap()
    }

    #[test]
    fn answers_map_to_frames() {
        let c = client();
        let ok = br#"{"response":"AQID"}"#;
        assert_eq!(c.interpret(Op::Read, 200, ok).unwrap(), vec![1, 2, 3]);
        assert_eq!(c.interpret(Op::Write, 200, b"").unwrap(), Vec::<u8>::new());
        assert_eq!(c.interpret(Op::Write, 204, b"").unwrap(), Vec::<u8>::new());
        let no_envelope = c
            .interpret(Op::Read, 200, br#"{"response":""}"#)
            .unwrap_err();
        assert_eq!(no_envelope.nack.code, NackCode::ServiceError);
        let not_json = c.interpret(Op::Read, 200, b"<html>").unwrap_err();
        assert!(
            not_json.nack.reason.contains("without a JSON"),
            "{not_json:?}"
        );

        let denied = br#"{"error":{"code":"denied","message":"denied at step 8 (measurement)","failed_step":"measurement","proof":"1. Key[root 3f2a] is-trusted\n8. FAILED Measurement[e98a]\n=> DENIED at step 8 (measurement)"}}"#;
        let f = c.interpret(Op::Read, 403, denied).unwrap_err();
        assert_eq!(f.nack.code, NackCode::ServiceDenied);
        assert!(
            f.nack
                .reason
                .starts_with("1. Key[root 3f2a] is-trusted\n8. FAILED")
        );
        assert!(
            !f.detail.contains("Key[root"),
            "the proof is not recorded: {}",
            f.detail
        );
        assert!(f.detail.contains("measurement"));

        let rejected =
            br#"{"error":{"code":"bad_request","message":"the envelope is not for this service"}}"#;
        let f = c.interpret(Op::Write, 400, rejected).unwrap_err();
        assert_eq!(f.nack.code, NackCode::ServiceRejected);
        assert!(f.nack.reason.contains("not for this service"));

        let busy = br#"{"error":{"code":"unavailable","message":"no free driver until 18:54"}}"#;
        let f = c.interpret(Op::Write, 503, busy).unwrap_err();
        assert_eq!(f.nack.code, NackCode::ServiceError);
        assert_eq!(
            f.nack.reason,
            "service store answered HTTP 503 unavailable: no free driver until 18:54"
        );
        let f = c.interpret(Op::Read, 502, b"bad gateway").unwrap_err();
        assert!(
            f.nack.reason.contains("HTTP 502: (no error message"),
            "{}",
            f.nack.reason
        );
    }

    #[tokio::test]
    async fn calls_over_the_in_flight_limit_wait_then_give_up() {
        let ca = CertificateAuthority::create_root("services CA", None, 30).unwrap();
        let pem = String::from_utf8(ca.certificate().to_pem().unwrap()).unwrap();
        // Port 9 (discard) on loopback: nothing listens, so a call that is
        // let through fails at once with "connection refused".
        let valid = super::super::registry::validate("store", "https://127.0.0.1:9", &pem).unwrap();
        let config = BrokerConfig {
            request_timeout_ms: 200,
            max_in_flight_per_service: 1,
            ..BrokerConfig::default()
        };
        let c = ServiceClient::new(valid, Source::Api, 0, &config).unwrap();

        let held = c.in_flight.acquire().await.unwrap();
        let waited = c
            .attested(Op::Read, "chain", b"envelope", 1024)
            .await
            .unwrap_err();
        assert_eq!(waited.nack.code, NackCode::ServiceUnreachable);
        assert!(
            waited.nack.reason.contains("1 calls already in flight")
                && waited.nack.reason.contains("within 200 ms"),
            "{}",
            waited.nack.reason
        );

        drop(held);
        let tried = c
            .attested(Op::Read, "chain", b"envelope", 1024)
            .await
            .unwrap_err();
        assert_eq!(tried.nack.code, NackCode::ServiceUnreachable);
        assert!(
            !tried.nack.reason.contains("in flight"),
            "the permit is free again: {}",
            tried.nack.reason
        );
        assert_eq!(c.in_flight.available_permits(), 1, "the permit came back");
    }

    #[test]
    fn messages_are_one_bounded_line() {
        assert_eq!(bounded("a\nb\u{7}c"), "a b c");
        assert!(bounded(&"x".repeat(5000)).chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert_eq!(bounded_lines("1. a\n2. b\r"), "1. a\n2. b");
    }
}
