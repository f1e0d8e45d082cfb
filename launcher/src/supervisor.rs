//! Run supervision: a FIFO queue in front of a fixed number of slots, one
//! task per run that starts it through the compartment, enforces its time
//! limit, captures bounded output, and records every status change.
//!
//! Runs do not depend on the HTTP request that created them. Cancel and
//! shutdown reach a run through its stop signal; the run's own task records
//! the outcome, so each run has exactly one writer.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use launcher_sandbox::MeasuredExecutable;
use programs_db::{
    Captured, DbError, EndStatus, Run, RunEnd, RunStatus, RunUpdate, SYSTEM_ACTOR, Sha256Hex,
};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::channel::run::Channels;
use crate::compartment::capture::{capture_with, give_up_after};
use crate::compartment::{Compartment, Executable, Limits, OutputMode, Role, SpawnSpec};
use crate::events::{REPLAY_BYTES, RunEvents, Stream};
use crate::paths::{DataDir, create_private_dir, create_searchable_dir, remove_tree};
use crate::records::{Records, RecordsError};

/// Time to collect output once a run's process group is gone.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Why a live run is being stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Cancelled by a client (the actor, for the audit log).
    Cancel(String),
    /// The launcher is shutting down.
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the launcher is shutting down and accepts no new runs")]
    ShuttingDown,
    #[error("too many runs: {live} are queued or running, the limit is {limit}")]
    QueueFull { live: usize, limit: usize },
    /// The compartment cannot confine programs (a missing layer).
    #[error("{0}")]
    CompartmentUnavailable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("run {0} not found")]
    NotFound(i64),
    #[error("run {id} already ended ({status})")]
    AlreadyEnded { id: i64, status: RunStatus },
    #[error("run {0} is not under supervision (it is being created); retry")]
    NotSupervised(i64),
    #[error(transparent)]
    Records(#[from] RecordsError),
}

/// What a run needs besides its row.
#[derive(Debug, Clone)]
pub struct Launch {
    pub run: Run,
    /// `argv[0]` for the program (its name without `.c`).
    pub argv0: String,
    /// The executable the build produced; re-measured before exec.
    pub executable_sha256: Sha256Hex,
}

struct LiveRun {
    stop: watch::Sender<Option<Stop>>,
    done: watch::Receiver<bool>,
    task: Option<JoinHandle<()>>,
}

struct Inner {
    records: Records,
    compartment: Arc<dyn Compartment>,
    data: DataDir,
    slots: Arc<Semaphore>,
    max_live: usize,
    output_limit: usize,
    /// Each run's fd-3 channel (`crate::channel`).
    channels: Arc<Channels>,
    /// Status and output for followers (`GET /v1/runs/{id}/events`).
    events: Arc<RunEvents>,
    live: Mutex<HashMap<i64, LiveRun>>,
    /// Admissions not yet submitted (see [`Admission`]).
    admitted: AtomicUsize,
    accepting: AtomicBool,
}

/// A place among the live runs, taken by [`Supervisor::admit`] and held
/// until the run is handed over ([`Supervisor::submit`]) or given up
/// (dropped): requests admitted together cannot exceed the limit while
/// their runs are being recorded.
#[must_use = "an admission holds a place until it is submitted or dropped"]
pub struct Admission {
    inner: Arc<Inner>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.inner.admitted.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("live", &self.live_count())
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// `max_concurrent` runs at once; up to `max_queued` more wait their turn.
    pub fn new(
        records: Records,
        compartment: Arc<dyn Compartment>,
        data: DataDir,
        max_concurrent: usize,
        max_queued: usize,
        output_limit: usize,
        channels: Arc<Channels>,
    ) -> Self {
        let max_concurrent = max_concurrent.max(1);
        Self {
            inner: Arc::new(Inner {
                records,
                compartment,
                data,
                slots: Arc::new(Semaphore::new(max_concurrent)),
                max_live: max_concurrent + max_queued,
                output_limit,
                channels,
                events: Arc::new(RunEvents::new(output_limit.min(REPLAY_BYTES))),
                live: Mutex::new(HashMap::new()),
                admitted: AtomicUsize::new(0),
                accepting: AtomicBool::new(true),
            }),
        }
    }

    /// The live runs' events, for followers.
    pub fn events(&self) -> &Arc<RunEvents> {
        &self.inner.events
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<i64, LiveRun>> {
        self.inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs queued or running now.
    pub fn live_count(&self) -> usize {
        self.live().len()
    }

    /// Takes a place for a new run, or says why there is none.
    pub fn admit(&self) -> Result<Admission, SubmitError> {
        if !self.inner.accepting.load(Ordering::SeqCst) {
            return Err(SubmitError::ShuttingDown);
        }
        if let Some(refusal) = self.inner.compartment.refusal() {
            return Err(SubmitError::CompartmentUnavailable(refusal));
        }
        // Counted under the lock `submit` inserts with, so that a run is
        // never counted both as live and as admitted, nor as neither.
        let live = self.live();
        let taken = live.len() + self.inner.admitted.load(Ordering::SeqCst);
        if taken >= self.inner.max_live {
            return Err(SubmitError::QueueFull {
                live: taken,
                limit: self.inner.max_live,
            });
        }
        self.inner.admitted.fetch_add(1, Ordering::SeqCst);
        drop(live);
        Ok(Admission {
            inner: self.inner.clone(),
        })
    }

    /// Takes charge of a queued run, in the place `admission` held.
    pub fn submit(&self, admission: Admission, launch: Launch) {
        let id = launch.run.id;
        let (stop_tx, stop_rx) = watch::channel(None);
        let (done_tx, done_rx) = watch::channel(false);
        if !self.inner.accepting.load(Ordering::SeqCst) {
            // Shutdown began after admission: the run never starts.
            let _ = stop_tx.send(Some(Stop::Shutdown));
        }
        self.inner.events.open(id);
        {
            let mut live = self.live();
            live.insert(
                id,
                LiveRun {
                    stop: stop_tx,
                    done: done_rx,
                    task: None,
                },
            );
            drop(admission);
        }
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let (actor, end) = inner.execute(&launch, stop_rx).await;
            let status = end.status;
            match record_end(&inner.records, actor, id, end).await {
                Ok(()) => tracing::info!(run = id, status = %RunStatus::from(status), "run ended"),
                Err(err) => {
                    tracing::error!(run = id, error = %err, "recording the end of a run failed")
                }
            }
            inner.events.close(id);
            inner
                .live
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            let _ = done_tx.send(true);
        });
        if let Some(live) = self.live().get_mut(&id) {
            live.task = Some(task);
        }
    }

    /// Stops a live run and waits (bounded) until its end is recorded.
    pub async fn cancel(&self, id: i64, actor: &str) -> Result<Run, CancelError> {
        let done = {
            let live = self.live();
            live.get(&id).map(|run| {
                run.stop.send_if_modified(|stop| {
                    if stop.is_none() {
                        *stop = Some(Stop::Cancel(actor.to_owned()));
                        true
                    } else {
                        false
                    }
                });
                run.done.clone()
            })
        };
        let Some(mut done) = done else {
            let run = self
                .inner
                .records
                .call(move |db| db.run(id))
                .await
                .map_err(|err| match err {
                    RecordsError::Db(programs_db::DbError::NotFound { .. }) => {
                        CancelError::NotFound(id)
                    }
                    other => CancelError::Records(other),
                })?;
            return Err(if run.status.is_terminal() {
                CancelError::AlreadyEnded {
                    id,
                    status: run.status,
                }
            } else {
                CancelError::NotSupervised(id)
            });
        };
        let _ = tokio::time::timeout(Duration::from_secs(30), done.wait_for(|d| *d)).await;
        Ok(self.inner.records.call(move |db| db.run(id)).await?)
    }

    /// Waits until run `id` has ended and its end is recorded, at most `limit`.
    /// True if it has ended (or was never live here).
    pub async fn wait_for_end(&self, id: i64, limit: Duration) -> bool {
        let done = self.live().get(&id).map(|run| run.done.clone());
        match done {
            None => true,
            Some(mut done) => tokio::time::timeout(limit, done.wait_for(|d| *d))
                .await
                .is_ok_and(|r| r.is_ok()),
        }
    }

    /// Stops accepting runs, ends every live one as `interrupted`, and waits
    /// (at most `grace`) for their ends to be recorded.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.accepting.store(false, Ordering::SeqCst);
        let tasks: Vec<JoinHandle<()>> = {
            let mut live = self.live();
            live.values_mut()
                .filter_map(|run| {
                    run.stop.send_replace(Some(Stop::Shutdown));
                    run.task.take()
                })
                .collect()
        };
        if tasks.is_empty() {
            return;
        }
        tracing::info!(runs = tasks.len(), "interrupting live runs");
        if tokio::time::timeout(grace, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            tracing::warn!("some runs did not finish recording within the shutdown grace period");
        }
    }
}

/// Resolves when a stop is requested; never if the sender is gone.
async fn stopped(stop: &mut watch::Receiver<Option<Stop>>) -> Stop {
    loop {
        if let Some(reason) = stop.borrow_and_update().clone() {
            return reason;
        }
        if stop.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

fn stop_end(reason: &Stop) -> (String, EndStatus, String) {
    match reason {
        Stop::Cancel(actor) => (
            actor.clone(),
            EndStatus::Cancelled,
            format!("cancelled by {actor}"),
        ),
        Stop::Shutdown => (
            SYSTEM_ACTOR.to_owned(),
            EndStatus::Interrupted,
            "the launcher shut down while the run was live".to_owned(),
        ),
    }
}

/// Records a run's end. A failure that may pass (a full disk, a busy or
/// failing database) is retried until the end is written, so that no run
/// stays `running` in the records once nothing runs: with its output at
/// first, then without it (the output is what a full disk cannot take; the
/// error then says it was dropped). A launcher that stops before it
/// succeeds leaves the run to the next start, which marks it `interrupted`.
async fn record_end(
    records: &Records,
    actor: String,
    id: i64,
    mut end: RunEnd,
) -> Result<(), RecordsError> {
    const WITH_OUTPUT: u32 = 3;
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0u32;
    loop {
        attempt = attempt.saturating_add(1);
        let (who, this) = (actor.clone(), end.clone());
        let err = match records
            .call(move |db| db.update_run(&who, id, RunUpdate::Ended(this)))
            .await
        {
            Ok(_) => {
                if attempt > 1 {
                    tracing::info!(run = id, attempt, "the end of the run is recorded");
                }
                return Ok(());
            }
            Err(RecordsError::Db(err)) if !may_pass(&err) => return Err(err.into()),
            Err(err) => err,
        };
        if attempt == 1 {
            tracing::error!(
                run = id,
                error = %err,
                "recording the end of a run failed; retrying until it can be written"
            );
        }
        if attempt == WITH_OUTPUT {
            let dropped = end.stdout.bytes.len() + end.stderr.bytes.len();
            if dropped > 0 {
                let note = format!("its output ({dropped} bytes) was not recorded: {err}");
                end.error = Some(match end.error.take() {
                    Some(error) => format!("{error}; {note}"),
                    None => note,
                });
                end.stdout = Captured::default();
                end.stderr = Captured::default();
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Whether a failure to write may pass by itself (disk space, a busy or
/// failing database, I/O) rather than be refused again (a missing run, an
/// illegal transition).
fn may_pass(err: &DbError) -> bool {
    matches!(err, DbError::Sqlite { .. } | DbError::Io { .. })
}

fn failure(message: String) -> (String, RunEnd) {
    (
        SYSTEM_ACTOR.to_owned(),
        RunEnd::without_output(EndStatus::Failed, Some(message)),
    )
}

impl Inner {
    /// Takes a run from `queued` to its end; returns who ended it and how.
    async fn execute(
        &self,
        launch: &Launch,
        mut stop: watch::Receiver<Option<Stop>>,
    ) -> (String, RunEnd) {
        let run = &launch.run;
        let id = run.id;
        // Queued: wait for a slot (FIFO) unless stopped first.
        let _slot = tokio::select! {
            slot = self.slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return failure("the run queue is closed".into()),
            },
            reason = stopped(&mut stop) => {
                let (actor, status, message) = stop_end(&reason);
                return (actor, RunEnd::without_output(status, Some(message)));
            }
        };
        if let Err(err) = self
            .records
            .call(move |db| db.update_run(SYSTEM_ACTOR, id, RunUpdate::Starting))
            .await
        {
            return failure(format!("marking the run starting: {err}"));
        }
        self.events.status(id, RunStatus::Starting);

        let limits: Limits = match serde_json::from_str(&run.limits_json) {
            Ok(limits) => limits,
            Err(err) => return failure(format!("the run's limits do not parse: {err}")),
        };
        let exe = match self.open_measured(&launch.executable_sha256).await {
            Ok(exe) => exe,
            Err(message) => return failure(message),
        };
        let measured = exe.sha256_hex();
        if measured != launch.executable_sha256.as_str() {
            return failure(format!(
                "the stored executable of build {} was altered: it has SHA-256 {measured}, \
                 expected {} (recorded when it was built); nothing was run. Rebuild the program",
                run.build_id, launch.executable_sha256
            ));
        }
        // runs/<id>/ is searchable by the sandbox's user; work/ inside it
        // is the program's private working folder (the sandbox hands it to
        // that user).
        let folder = self.data.run_dir(id);
        let work = folder.join("work");
        if let Err(err) = create_searchable_dir(&folder).and_then(|()| create_private_dir(&work)) {
            return failure(format!("creating the run folder: {err}"));
        }
        let result = self
            .start_and_watch(launch, exe, limits, &work, &mut stop)
            .await;
        let _ = tokio::task::spawn_blocking(move || remove_tree(&folder)).await;
        result
    }

    /// Reads the stored executable once, hashing the bytes into a sealed
    /// copy: what is hashed is exactly what will run.
    async fn open_measured(&self, sha: &Sha256Hex) -> Result<Arc<MeasuredExecutable>, String> {
        let path = self.records.files().path(sha);
        tokio::task::spawn_blocking(move || {
            MeasuredExecutable::open(&path)
                .map(Arc::new)
                .map_err(|e| format!("measuring the executable: {e}"))
        })
        .await
        .map_err(|e| format!("measuring the executable: {e}"))?
    }

    async fn start_and_watch(
        &self,
        launch: &Launch,
        exe: Arc<MeasuredExecutable>,
        limits: Limits,
        work: &std::path::Path,
        stop: &mut watch::Receiver<Option<Stop>>,
    ) -> (String, RunEnd) {
        let run = &launch.run;
        let id = run.id;
        let (ours, theirs) = match std::os::unix::net::UnixStream::pair() {
            Ok(pair) => pair,
            Err(err) => return failure(format!("creating the channel: {err}")),
        };
        let mut argv = vec![launch.argv0.clone()];
        argv.extend(run.args.iter().cloned());
        let spec = SpawnSpec {
            role: Role::Run,
            executable: Executable::Measured(exe.clone()),
            argv,
            env: Vec::new(),
            cwd: work.to_path_buf(),
            limits,
            channel: Some(OwnedFd::from(theirs)),
            output: OutputMode::Separate,
        };
        let mut child = match self.compartment.spawn(spec) {
            Ok(child) => child,
            Err(err) => return failure(format!("starting the program: {err}")),
        };
        // What the run's evidence is made of: the measured executable
        // (`exe`), the child's pid (its memory map), and the compartment as
        // set up for this very child.
        let pid = child.pid();
        let compartment = child.compartment().clone();
        let update = RunUpdate::Running {
            pid,
            executable_sha256: Sha256Hex::from_digest(exe.sha256()),
            compartment: compartment.to_json(),
        };
        let running = match self
            .records
            .call(move |db| db.update_run(SYSTEM_ACTOR, id, update))
            .await
        {
            Ok(running) => running,
            Err(err) => {
                child.kill_group();
                let _ = child.wait().await;
                return failure(format!("marking the run running: {err}"));
            }
        };
        tracing::info!(run = id, pid, "run started");
        self.events.status(id, RunStatus::Running);

        // The channel (fd 3): certificate on HELLO, brokered calls, LOG.
        let mut channel = match self.channels.open(running, pid, ours) {
            Ok(channel) => channel,
            Err(err) => {
                child.kill_group();
                let _ = child.wait().await;
                return failure(format!("setting up the channel: {err}"));
            }
        };
        let (give_up_tx, give_up) = watch::channel(false);
        let stdout = child.take_stdout().map(|p| {
            let tap = self.events.tap(id, Stream::Stdout);
            tokio::spawn(capture_with(p, self.output_limit, give_up.clone(), tap))
        });
        let stderr = child.take_stderr().map(|p| {
            let tap = self.events.tap(id, Stream::Stderr);
            tokio::spawn(capture_with(p, self.output_limit, give_up, tap))
        });

        let time_limit = Duration::from_secs(run.time_limit_s.into());
        enum Why {
            Exited,
            TimedOut,
            Stopped(Stop),
            ProtocolError(String),
        }
        let why = tokio::select! {
            _ = child.wait() => Why::Exited,
            _ = tokio::time::sleep(time_limit) => Why::TimedOut,
            reason = stopped(stop) => Why::Stopped(reason),
            reason = channel.protocol_error() => Why::ProtocolError(reason),
        };
        if !matches!(why, Why::Exited) {
            child.kill_group();
        }
        let status = child.wait().await;
        let stop_reading = give_up_after(give_up_tx, OUTPUT_GRACE);
        let collect = |task: Option<JoinHandle<Captured>>| async move {
            match task {
                Some(task) => task.await.unwrap_or_default(),
                None => Captured::default(),
            }
        };
        let (stdout, mut stderr) = tokio::join!(collect(stdout), collect(stderr));
        stop_reading.abort();
        // LOG lines follow the program's own stderr (with a budget of their own).
        let log = channel.finish(OUTPUT_GRACE).await;
        if !log.bytes.is_empty() {
            if stderr.bytes.last().is_some_and(|b| *b != b'\n') {
                stderr.bytes.push(b'\n');
            }
            stderr.bytes.extend_from_slice(&log.bytes);
            stderr.truncated |= log.truncated;
        }

        let (exit_code, signal) = match &status {
            Ok(status) => (status.code(), status.signal()),
            Err(_) => (None, None),
        };
        let (actor, status, error) = match why {
            Why::Exited => match status {
                Ok(_) => (
                    SYSTEM_ACTOR.to_owned(),
                    EndStatus::Exited,
                    child.end_note().map(str::to_owned),
                ),
                Err(err) => (
                    SYSTEM_ACTOR.to_owned(),
                    EndStatus::Failed,
                    Some(format!("waiting for the program: {err}")),
                ),
            },
            Why::TimedOut => (
                SYSTEM_ACTOR.to_owned(),
                EndStatus::TimedOut,
                Some(format!(
                    "stopped at its time limit of {} s",
                    run.time_limit_s
                )),
            ),
            Why::Stopped(reason) => {
                let (actor, status, message) = stop_end(&reason);
                (actor, status, Some(message))
            }
            Why::ProtocolError(reason) => (
                SYSTEM_ACTOR.to_owned(),
                EndStatus::ProtocolError,
                Some(format!(
                    "protocol error on the channel (fd 3): {reason}; the program was stopped"
                )),
            ),
        };
        (
            actor,
            RunEnd {
                status,
                exit_code,
                signal,
                error,
                stdout,
                stderr,
            },
        )
    }
}
