//! One run's channel: reads frames from the launcher's end of the
//! socketpair, applies the rules of `docs/PROTOCOL.md` ("Rules"), and
//! dispatches requests to a [`Handler`].
//!
//! - `HELLO` is answered before the next frame is read, so no request can
//!   overtake the certificate it needs.
//! - `READ`, `WRITE` and `SERVICE_CERT` run concurrently, one task each, at
//!   most `max_in_flight` at once. A request holds its slot until its answer
//!   has been written to the socket: a program that floods the channel, or
//!   never reads its answers, only stops the launcher from reading more of
//!   its own frames. One writer task writes every answer.
//! - An unknown type gets `ERROR`; a malformed or oversized frame ends the
//!   session with a protocol error (see [`Session::protocol_error`]): the
//!   supervisor kills the program and records `protocol_error`.
//! - `LOG` lines (and `ERROR` frames from the program) go to the run's log.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use programs_db::Captured;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::frame::{
    Decoded, Frame, FrameError, FrameType, HEADER_LEN, Message, decode_payload, encode,
    parse_header, payload_len,
};

/// The machine-readable code of a `NACK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NackCode {
    HelloRequired,
    AlreadyCertified,
    BadCsr,
    BadRequest,
    InvalidCorrelationId,
    UnknownService,
    ServiceUnreachable,
    ServiceDenied,
    ServiceRejected,
    ServiceError,
    TooManyRequests,
    Internal,
}

impl NackCode {
    pub fn as_str(self) -> &'static str {
        match self {
            NackCode::HelloRequired => "hello_required",
            NackCode::AlreadyCertified => "already_certified",
            NackCode::BadCsr => "bad_csr",
            NackCode::BadRequest => "bad_request",
            NackCode::InvalidCorrelationId => "invalid_correlation_id",
            NackCode::UnknownService => "unknown_service",
            NackCode::ServiceUnreachable => "service_unreachable",
            NackCode::ServiceDenied => "service_denied",
            NackCode::ServiceRejected => "service_rejected",
            NackCode::ServiceError => "service_error",
            NackCode::TooManyRequests => "too_many_requests",
            NackCode::Internal => "internal",
        }
    }
}

/// A refusal: a code and a reason a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    pub code: NackCode,
    pub reason: String,
}

impl Nack {
    pub fn new(code: NackCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    fn into_message(self) -> Message {
        Message::Nack {
            code: self.code.as_str().to_owned(),
            reason: self.reason,
        }
    }
}

impl std::fmt::Display for Nack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.reason)
    }
}

/// A `HELLO`'s fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub csr: Vec<u8>,
    pub sdk_version: String,
    pub cheri_bounds: String,
}

/// A `READ` or `WRITE` whose service id and collection are well formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCall {
    pub service: String,
    /// The resource's collection (its first path segment).
    pub collection: String,
    /// The attested request envelope (DER CMS), relayed as is.
    pub request: Vec<u8>,
}

/// What the requests of a run do. `chain_pem` is the run's certificate
/// chain, as answered to `HELLO`.
pub trait Handler: Send + Sync + 'static {
    /// Issues the run's certificate; the chain (PEM, leaf first).
    fn hello(&self, hello: Hello) -> impl Future<Output = Result<Arc<str>, Nack>> + Send;
    /// The service's response envelope.
    fn read(
        &self,
        chain_pem: Arc<str>,
        call: ServiceCall,
    ) -> impl Future<Output = Result<Vec<u8>, Nack>> + Send;
    /// The service's response envelope, empty when it sent none.
    fn write(
        &self,
        chain_pem: Arc<str>,
        call: ServiceCall,
    ) -> impl Future<Output = Result<Vec<u8>, Nack>> + Send;
    /// The service's certificate chain (PEM) as it publishes it.
    fn service_cert(&self, service: String) -> impl Future<Output = Result<String, Nack>> + Send;
}

/// Limits of a session.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// Largest payload read or written.
    pub max_frame: u32,
    /// Requests served at once.
    pub max_in_flight: usize,
    /// Bytes of `LOG` text kept for the run.
    pub log_limit: usize,
}

/// A running session. Dropping it stops the session's tasks.
pub struct Session {
    fatal: watch::Receiver<Option<String>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Captured>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Session {
    /// Starts serving `stream` (the launcher's end of the run's fd 3).
    pub fn start<H: Handler>(stream: UnixStream, handler: Arc<H>, config: SessionConfig) -> Self {
        let (fatal_tx, fatal) = watch::channel(None);
        let (stop_tx, stop) = oneshot::channel();
        let task = tokio::spawn(serve(stream, handler, config, fatal_tx, stop));
        Self {
            fatal,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// Resolves with the reason when the program broke the protocol (a
    /// malformed or oversized frame); never otherwise.
    pub async fn protocol_error(&mut self) -> String {
        let reason = match self.fatal.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }

    /// Ends the session (requests still in flight are abandoned and recorded
    /// as such) and returns the run's log. Waits at most `grace`.
    pub async fn finish(mut self, grace: Duration) -> Captured {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(mut task) = self.task.take() else {
            return Captured::default();
        };
        match tokio::time::timeout(grace, &mut task).await {
            Ok(Ok(log)) => log,
            Ok(Err(_)) => Captured::default(),
            Err(_) => {
                tracing::warn!("the channel session did not stop in time; abandoned");
                task.abort();
                Captured::default()
            }
        }
    }
}

/// An encoded answer and the request slot it frees once written.
struct Outgoing {
    bytes: Vec<u8>,
    _slot: Option<OwnedSemaphorePermit>,
}

/// What the session keeps between frames and shares with request tasks.
struct Shared {
    in_flight: Mutex<HashSet<u32>>,
    log: Mutex<Captured>,
    log_limit: usize,
    max_frame: u32,
    out: mpsc::UnboundedSender<Outgoing>,
}

impl Shared {
    /// Queues an answer. An answer too large for a frame becomes a `NACK`.
    fn answer(&self, corr: u32, message: Message, slot: Option<OwnedSemaphorePermit>) {
        let len = payload_len(&message);
        let message = if len > self.max_frame as usize {
            let code = match message {
                Message::Data { .. } | Message::Ack { .. } | Message::Cert { .. } => {
                    NackCode::ServiceError
                }
                _ => NackCode::Internal,
            };
            Nack::new(
                code,
                format!(
                    "the answer ({} of {len} bytes) exceeds the channel's maximum frame of {} bytes",
                    message.frame_type().name(),
                    self.max_frame
                ),
            )
            .into_message()
        } else {
            message
        };
        match encode(&Frame { corr, message }) {
            Ok(bytes) => {
                // Fails only once the writer has stopped: the program is gone.
                let _ = self.out.send(Outgoing { bytes, _slot: slot });
            }
            Err(err) => tracing::error!(error = %err, "an answer could not be encoded"),
        }
    }

    fn nack(&self, corr: u32, nack: Nack, slot: OwnedSemaphorePermit) {
        self.answer(corr, nack.into_message(), Some(slot));
    }

    fn log_line(&self, line: String) {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let room = self.log_limit.saturating_sub(log.bytes.len());
        let mut bytes = line.into_bytes();
        if bytes.last() != Some(&b'\n') {
            bytes.push(b'\n');
        }
        if bytes.len() > room {
            log.truncated = true;
            bytes.truncate(room);
        }
        log.bytes.extend_from_slice(&bytes);
    }

    fn finish_request(&self, corr: u32) {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&corr);
    }
}

fn level_name(level: u8) -> String {
    match level {
        0 => "error".into(),
        1 => "warning".into(),
        2 => "info".into(),
        3 => "debug".into(),
        other => format!("level {other}"),
    }
}

/// Why reading stopped.
enum ReadError {
    /// The program closed its end (or the socket failed).
    Closed,
    /// A frame that ends the channel.
    Frame(FrameError),
}

async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_frame: u32,
) -> Result<Decoded, ReadError> {
    let mut header = [0u8; HEADER_LEN];
    reader
        .read_exact(&mut header)
        .await
        .map_err(|_| ReadError::Closed)?;
    let header = parse_header(&header, max_frame).map_err(ReadError::Frame)?;
    // Grown as bytes arrive: a header alone does not make us allocate its length.
    let mut payload = Vec::with_capacity((header.length as usize).min(64 * 1024));
    let read = reader
        .take(u64::from(header.length))
        .read_to_end(&mut payload)
        .await
        .map_err(|_| ReadError::Closed)?;
    if read != header.length as usize {
        return Err(ReadError::Closed);
    }
    decode_payload(header.code, &payload).map_err(ReadError::Frame)
}

/// A service id is `[a-z0-9-]{1,64}`.
fn check_service(service: &str) -> Result<(), Nack> {
    if programs_db::valid_service_id(service) {
        Ok(())
    } else {
        let shown: String = service.chars().take(64).collect();
        Err(Nack::new(
            NackCode::UnknownService,
            format!(
                "service: expected a registry id of 1 to 64 characters of a-z, 0-9 and -, \
                 found {shown:?}"
            ),
        ))
    }
}

/// A collection is one resource path segment: 1 to 512 bytes of
/// `A-Z a-z 0-9 . _ ~ + @ = : -`, not `.` or `..`. Never echoed: a program
/// that sends a whole path may have put an identifier in it.
fn check_collection(resource: &str) -> Result<(), Nack> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b".-_~+@=:".contains(&b);
    let problem = if resource.is_empty() || resource.len() > 512 {
        Some(format!("1 to 512 bytes, found {}", resource.len()))
    } else if resource.contains('/') {
        Some("no '/': send only the first path segment; the rest travels encrypted".into())
    } else if resource == "." || resource == ".." {
        Some("a segment other than . and ..".into())
    } else if !resource.bytes().all(allowed) {
        Some("only A-Z a-z 0-9 . _ ~ + @ = : -".into())
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(Nack::new(
            NackCode::BadRequest,
            format!("resource: expected the resource's collection: {problem}"),
        )),
    }
}

/// How the read loop ended.
enum End {
    /// The supervisor ended the session.
    Stopped,
    /// The program closed the channel.
    Closed,
    /// The program broke the protocol.
    Fatal,
}

async fn serve<H: Handler>(
    stream: UnixStream,
    handler: Arc<H>,
    config: SessionConfig,
    fatal: watch::Sender<Option<String>>,
    mut stop: oneshot::Receiver<()>,
) -> Captured {
    let (mut reader, mut writer) = stream.into_split();
    let (out, mut outgoing) = mpsc::unbounded_channel::<Outgoing>();
    let writer_task = tokio::spawn(async move {
        while let Some(item) = outgoing.recv().await {
            if writer.write_all(&item.bytes).await.is_err() {
                break;
            }
        }
    });
    let shared = Arc::new(Shared {
        in_flight: Mutex::new(HashSet::new()),
        log: Mutex::new(Captured::default()),
        log_limit: config.log_limit,
        max_frame: config.max_frame,
        out,
    });
    let slots = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let mut tasks = JoinSet::new();
    let mut chain: Option<Arc<str>> = None;

    let end = loop {
        while tasks.try_join_next().is_some() {}
        // Backpressure: no slot, no reading.
        let slot = tokio::select! {
            biased;
            _ = &mut stop => break End::Stopped,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break End::Stopped,
            },
        };
        let decoded = tokio::select! {
            biased;
            _ = &mut stop => break End::Stopped,
            frame = read_frame(&mut reader, config.max_frame) => frame,
        };
        let frame = match decoded {
            Err(ReadError::Closed) => break End::Closed,
            Err(ReadError::Frame(err)) => {
                let _ = fatal.send(Some(err.to_string()));
                break End::Fatal;
            }
            Ok(Decoded::Unknown { code, corr }) => {
                shared.answer(
                    corr,
                    Message::Error {
                        reason: format!("unknown frame type 0x{code:02x}"),
                    },
                    Some(slot),
                );
                continue;
            }
            Ok(Decoded::Frame(frame)) => frame,
        };
        let corr = frame.corr;
        let (kind, service, collection, request) = match frame.message {
            Message::Hello {
                csr,
                sdk_version,
                cheri_bounds,
            } => {
                if chain.is_some() {
                    shared.nack(
                        corr,
                        Nack::new(
                            NackCode::AlreadyCertified,
                            "this run already has its certificate: HELLO comes once",
                        ),
                        slot,
                    );
                    continue;
                }
                let hello = Hello {
                    csr,
                    sdk_version,
                    cheri_bounds,
                };
                let answered = tokio::select! {
                    biased;
                    _ = &mut stop => break End::Stopped,
                    answered = handler.hello(hello) => answered,
                };
                match answered {
                    Ok(pem) => {
                        shared.answer(
                            corr,
                            Message::Cert {
                                chain_pem: pem.to_string(),
                            },
                            Some(slot),
                        );
                        chain = Some(pem);
                    }
                    Err(nack) => shared.nack(corr, nack, slot),
                }
                continue;
            }
            Message::Log { level, text } => {
                shared.log_line(format!("[{}] {text}", level_name(level)));
                continue;
            }
            Message::Error { reason } => {
                shared.log_line(format!("[channel] the program sent ERROR: {reason}"));
                continue;
            }
            Message::Cert { .. }
            | Message::Data { .. }
            | Message::Ack { .. }
            | Message::Nack { .. } => {
                let frame_type = frame.message.frame_type();
                shared.answer(
                    corr,
                    Message::Error {
                        reason: format!(
                            "frame type {frame_type} answers a request; the launcher sends it, \
                             a program does not"
                        ),
                    },
                    Some(slot),
                );
                continue;
            }
            Message::Read {
                service,
                resource,
                request,
            } => (FrameType::Read, service, resource, request),
            Message::Write {
                service,
                resource,
                request,
            } => (FrameType::Write, service, resource, request),
            Message::ServiceCert { service } => {
                (FrameType::ServiceCert, service, String::new(), Vec::new())
            }
        };
        let Some(chain) = chain.clone() else {
            shared.nack(
                corr,
                Nack::new(
                    NackCode::HelloRequired,
                    format!(
                        "{} before HELLO: send HELLO first and wait for CERT",
                        kind.name()
                    ),
                ),
                slot,
            );
            continue;
        };
        if corr == 0 {
            shared.nack(
                corr,
                Nack::new(
                    NackCode::InvalidCorrelationId,
                    "corr is 0; a request needs a non-zero correlation id",
                ),
                slot,
            );
            continue;
        }
        let checked = check_service(&service).and_then(|()| match kind {
            FrameType::ServiceCert => Ok(()),
            _ => check_collection(&collection),
        });
        if let Err(nack) = checked {
            shared.nack(corr, nack, slot);
            continue;
        }
        let fresh = shared
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(corr);
        if !fresh {
            shared.nack(
                corr,
                Nack::new(
                    NackCode::InvalidCorrelationId,
                    format!("corr {corr} is already in flight; use an id unique among requests awaiting an answer"),
                ),
                slot,
            );
            continue;
        }
        let handler = handler.clone();
        let shared = shared.clone();
        tasks.spawn(async move {
            let message = match kind {
                FrameType::ServiceCert => match handler.service_cert(service).await {
                    Ok(chain_pem) => Message::Cert { chain_pem },
                    Err(nack) => nack.into_message(),
                },
                FrameType::Read => {
                    let call = ServiceCall {
                        service,
                        collection,
                        request,
                    };
                    match handler.read(chain, call).await {
                        Ok(response) => Message::Data { response },
                        Err(nack) => nack.into_message(),
                    }
                }
                _ => {
                    let call = ServiceCall {
                        service,
                        collection,
                        request,
                    };
                    match handler.write(chain, call).await {
                        Ok(response) => Message::Ack { response },
                        Err(nack) => nack.into_message(),
                    }
                }
            };
            // Free the id first: the program may reuse it as soon as it reads the answer.
            shared.finish_request(corr);
            shared.answer(corr, message, Some(slot));
        });
    };

    match end {
        End::Closed => {
            // The program is gone or done; what it asked for still completes
            // (and is recorded) unless the run ends first.
            tokio::select! {
                _ = async { while tasks.join_next().await.is_some() {} } => {}
                _ = &mut stop => {}
            }
        }
        End::Stopped | End::Fatal => {}
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    writer_task.abort();
    std::mem::take(&mut *shared.log.lock().unwrap_or_else(PoisonError::into_inner))
}

#[cfg(test)]
mod tests;
