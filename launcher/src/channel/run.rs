//! What a run's channel does: [`RunChannel`] answers `HELLO` with the run's
//! certificate and relays `READ`, `WRITE` and `SERVICE_CERT` through the
//! broker, recording every call. [`Channels`] opens one per run for the
//! supervisor.

use std::sync::Arc;
use std::time::Duration;

use programs_db::{CallOp, Captured, Run};

use super::ChannelConfig;
use super::hello::Certifier;
use super::session::{Handler, Hello, Nack, NackCode, ServiceCall, Session, SessionConfig};
use crate::broker::calls::{CallGuard, CallRecorder, CallSender};
use crate::broker::{Op, Registry};
use crate::records::Records;

/// Bytes of a `DATA` or `ACK` payload besides the envelope: corr and its length.
const ENVELOPE_FRAMING: usize = 8;

/// One run's requests.
pub struct RunChannel {
    run: Run,
    pid: u32,
    certifier: Arc<Certifier>,
    registry: Arc<Registry>,
    calls: CallSender,
    max_response: usize,
}

impl RunChannel {
    async fn relay(&self, op: Op, chain: Arc<str>, call: ServiceCall) -> Result<Vec<u8>, Nack> {
        let call_op = match op {
            Op::Read => CallOp::Read,
            Op::Write => CallOp::Write,
        };
        let guard = CallGuard::start(
            &self.calls,
            self.run.id,
            &call.service,
            call_op,
            &call.collection,
            call.request.len(),
        );
        let Some(client) = self.registry.get(&call.service) else {
            let nack = unknown_service(&call.service);
            guard.finish(0, nack.code.as_str(), Some(nack.reason.clone()));
            return Err(nack);
        };
        match client
            .attested(op, &chain, &call.request, self.max_response)
            .await
        {
            Ok(envelope) => {
                guard.finish(envelope.len(), "ok", None);
                Ok(envelope)
            }
            Err(failure) => {
                guard.finish(0, failure.nack.code.as_str(), Some(failure.detail));
                Err(failure.nack)
            }
        }
    }
}

fn unknown_service(service: &str) -> Nack {
    Nack::new(
        NackCode::UnknownService,
        format!("no service {service:?} in the launcher's registry (GET /v1/services lists them)"),
    )
}

impl Handler for RunChannel {
    async fn hello(&self, hello: Hello) -> Result<Arc<str>, Nack> {
        let issued = self.certifier.certify(&self.run, self.pid, hello).await?;
        Ok(Arc::from(issued.chain_pem))
    }

    async fn read(&self, chain_pem: Arc<str>, call: ServiceCall) -> Result<Vec<u8>, Nack> {
        self.relay(Op::Read, chain_pem, call).await
    }

    async fn write(&self, chain_pem: Arc<str>, call: ServiceCall) -> Result<Vec<u8>, Nack> {
        self.relay(Op::Write, chain_pem, call).await
    }

    async fn service_cert(&self, service: String) -> Result<String, Nack> {
        let guard = CallGuard::start(
            &self.calls,
            self.run.id,
            &service,
            CallOp::ServiceCert,
            "",
            0,
        );
        let Some(client) = self.registry.get(&service) else {
            let nack = unknown_service(&service);
            guard.finish(0, nack.code.as_str(), Some(nack.reason.clone()));
            return Err(nack);
        };
        match client.certificate().await {
            Ok(pem) => {
                guard.finish(pem.len(), "ok", None);
                Ok(pem.to_string())
            }
            Err(failure) => {
                guard.finish(0, failure.nack.code.as_str(), Some(failure.detail));
                Err(failure.nack)
            }
        }
    }
}

/// Opens channel sessions for runs: shared by every run.
pub struct Channels {
    records: Records,
    certifier: Arc<Certifier>,
    registry: Arc<Registry>,
    config: ChannelConfig,
    log_limit: usize,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels").finish_non_exhaustive()
    }
}

impl Channels {
    /// `log_limit`: bytes of `LOG` text kept per run.
    pub fn new(
        records: Records,
        certifier: Arc<Certifier>,
        registry: Arc<Registry>,
        config: ChannelConfig,
        log_limit: usize,
    ) -> Self {
        Self {
            records,
            certifier,
            registry,
            config,
            log_limit,
        }
    }

    /// Starts serving the launcher's end of `run`'s channel. `run` is its row
    /// as it started running; `pid` its process.
    pub fn open(
        &self,
        run: Run,
        pid: u32,
        stream: std::os::unix::net::UnixStream,
    ) -> std::io::Result<RunSession> {
        stream.set_nonblocking(true)?;
        let stream = tokio::net::UnixStream::from_std(stream)?;
        let recorder = CallRecorder::start(self.records.clone());
        let handler = Arc::new(RunChannel {
            run,
            pid,
            certifier: self.certifier.clone(),
            registry: self.registry.clone(),
            calls: recorder.sender(),
            max_response: (self.config.max_frame_bytes as usize).saturating_sub(ENVELOPE_FRAMING),
        });
        let session = Session::start(
            stream,
            handler,
            SessionConfig {
                max_frame: self.config.max_frame_bytes,
                max_in_flight: self.config.max_in_flight,
                log_limit: self.log_limit,
            },
        );
        Ok(RunSession { session, recorder })
    }
}

/// A run's live channel.
#[derive(Debug)]
pub struct RunSession {
    session: Session,
    recorder: CallRecorder,
}

impl RunSession {
    /// Resolves with the reason when the program broke the protocol.
    pub async fn protocol_error(&mut self) -> String {
        self.session.protocol_error().await
    }

    /// Ends the channel, waits for the call records to be written, and
    /// returns the run's `LOG` lines.
    pub async fn finish(self, grace: Duration) -> Captured {
        let log = self.session.finish(grace).await;
        // Every request task is gone, so the recorder's last sender is too.
        let _ = tokio::time::timeout(grace, self.recorder.finish()).await;
        log
    }
}
