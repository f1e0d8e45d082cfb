//! The record of a run's brokered calls.
//!
//! Each call is written once it completes, with its sizes, latency and
//! outcome (`ok` or the `NACK` code) and, for a failure, a short detail that
//! never holds a payload or a service's proof. A call abandoned because the
//! run ended is recorded as `cancelled`. Records are written in batches, one
//! transaction each, by one task per run: a run making thousands of calls a
//! second costs one synchronous commit per batch, not per call. A batch
//! gathers calls for up to [`GATHER`] after its first: a program calling in a
//! loop would otherwise commit (and fsync) once per call, which cost more CPU
//! than relaying the call (docs/PERFORMANCE.md). The end of the run flushes at
//! once, so records are complete when the run's end is.

use std::time::{Duration, Instant};

use programs_db::{CallOp, NewCall, now_ms};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::records::Records;

/// Most calls written in one transaction.
const MAX_BATCH: usize = 512;

/// How long a batch waits for more calls after its first.
const GATHER: Duration = Duration::from_millis(20);

/// Writes one run's call records.
pub struct CallRecorder {
    tx: mpsc::UnboundedSender<NewCall>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for CallRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRecorder").finish_non_exhaustive()
    }
}

impl CallRecorder {
    pub fn start(records: Records) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<NewCall>();
        let task = tokio::spawn(async move {
            let mut open = true;
            while open {
                let Some(first) = rx.recv().await else { break };
                let deadline = tokio::time::Instant::now() + GATHER;
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(call)) => batch.push(call),
                        // Every sender is gone: the run ended; write what is left now.
                        Ok(None) => {
                            open = false;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let count = batch.len();
                if let Err(err) = records.call(move |db| db.record_calls(&batch)).await {
                    tracing::error!(calls = count, error = %err, "recording brokered calls failed");
                }
            }
        });
        Self { tx, task }
    }

    /// Where calls are sent to be recorded.
    pub fn sender(&self) -> CallSender {
        CallSender(self.tx.clone())
    }

    /// Waits until every call sent so far is written (all senders must be
    /// gone for this to end).
    pub async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

/// A handle to a run's recorder.
#[derive(Debug, Clone)]
pub struct CallSender(mpsc::UnboundedSender<NewCall>);

/// A call in progress: recorded on [`CallGuard::finish`], or as `cancelled`
/// if it is dropped first (the run ended while the service was answering).
pub struct CallGuard {
    sender: CallSender,
    call: Option<NewCall>,
    started: Instant,
}

impl CallGuard {
    pub fn start(
        sender: &CallSender,
        run_id: i64,
        service: &str,
        op: CallOp,
        collection: &str,
        request_bytes: usize,
    ) -> Self {
        Self {
            sender: sender.clone(),
            call: Some(NewCall {
                run_id,
                at: now_ms(),
                service: service.to_owned(),
                op,
                resource: collection.to_owned(),
                request_bytes: request_bytes as u64,
                response_bytes: 0,
                latency_us: 0,
                outcome: String::new(),
                detail: None,
            }),
            started: Instant::now(),
        }
    }

    /// Records the outcome: `ok`, or a `NACK` code with a detail.
    pub fn finish(mut self, response_bytes: usize, outcome: &str, detail: Option<String>) {
        self.record(response_bytes, outcome, detail);
    }

    fn record(&mut self, response_bytes: usize, outcome: &str, detail: Option<String>) {
        if let Some(mut call) = self.call.take() {
            call.latency_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
            call.response_bytes = response_bytes as u64;
            call.outcome = outcome.to_owned();
            call.detail = detail;
            // Fails only when the recorder is gone (the daemon is stopping).
            let _ = self.sender.0.send(call);
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.record(
            0,
            "cancelled",
            Some("the run ended before the service answered".into()),
        );
    }
}
