//! Running a build: work folder, compiler through the compartment seam
//! (confined: the toolchain, the sources and the SDK read-only, its output
//! folder the only writable one), time and memory limits, bounded log, the
//! compartment's post-link steps, executable into the store, row updated.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use programs_db::{Build, BuildOutcome, Captured, NewBuild, Program};
use tokio::sync::{Semaphore, watch};

use super::{Anchor, BuildPlan, Profile, Sdk, WorkLayout};
use crate::compartment::capture::{capture, give_up_after};
use crate::compartment::unconfined::resolve_program;
use crate::compartment::{Compartment, Executable, Limits, OutputMode, Role, SpawnSpec};
use crate::config::BuildConfig;
use crate::paths::{DataDir, remove_tree};
use crate::records::{Records, RecordsError};

/// Time the compiler's `--version` may take.
const IDENTIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to collect the rest of the log once the compiler has gone.
const LOG_GRACE: Duration = Duration::from_secs(2);

/// How a build ended, for the API to choose a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Succeeded,
    /// The compiler rejected the program (its diagnostics are in the log).
    CompileError,
    /// The compiler ran past the build time limit.
    TimedOut,
    /// The compiler could not be found or started: a launcher problem.
    ToolchainUnavailable,
    /// The launcher is shutting down.
    Interrupted,
}

#[derive(Debug, Clone)]
pub struct BuildReport {
    pub build: Build,
    pub verdict: Verdict,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("unknown toolchain profile {name:?} (known: {known})")]
    UnknownProfile { name: String, known: String },
    /// The compartment cannot confine the compiler (a missing layer).
    #[error("{0}")]
    CompartmentUnavailable(String),
    #[error(transparent)]
    Records(#[from] RecordsError),
    #[error("build task failed: {0}")]
    Task(String),
}

pub struct Builder {
    records: Records,
    compartment: Arc<dyn Compartment>,
    data: DataDir,
    config: BuildConfig,
    profiles: BTreeMap<String, Profile>,
    default_profile: String,
    path_var: String,
    slots: Semaphore,
    shutdown: watch::Receiver<bool>,
    sdk: Sdk,
    default_anchor: Anchor,
}

/// Everything a [`Builder`] is made from.
pub struct BuilderParts {
    pub records: Records,
    pub compartment: Arc<dyn Compartment>,
    pub data: DataDir,
    pub config: BuildConfig,
    pub profiles: BTreeMap<String, Profile>,
    pub default_profile: String,
    pub shutdown: watch::Receiver<bool>,
    /// The SDK as installed in the data folder.
    pub sdk: Sdk,
    /// The anchor of builds that name none (`[builds] services_anchor`).
    pub default_anchor: Anchor,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("default_profile", &self.default_profile)
            .finish_non_exhaustive()
    }
}

impl Builder {
    pub fn new(parts: BuilderParts) -> Self {
        let path_var =
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        let slots = Semaphore::new(parts.config.max_concurrent.max(1));
        Self {
            records: parts.records,
            compartment: parts.compartment,
            data: parts.data,
            config: parts.config,
            profiles: parts.profiles,
            default_profile: parts.default_profile,
            path_var,
            slots,
            shutdown: parts.shutdown,
            sdk: parts.sdk,
            default_anchor: parts.default_anchor,
        }
    }

    /// The SDK every build compiles in.
    pub fn sdk(&self) -> &Sdk {
        &self.sdk
    }

    /// The anchor of builds that name none.
    pub fn default_anchor(&self) -> &Anchor {
        &self.default_anchor
    }

    pub fn profiles(&self) -> &BTreeMap<String, Profile> {
        &self.profiles
    }

    pub fn default_profile(&self) -> &str {
        &self.default_profile
    }

    /// The plan for building `program` with `profile` (or the default)
    /// and the default anchor.
    pub fn plan(
        &self,
        program: &Program,
        source: Vec<u8>,
        profile: Option<&str>,
    ) -> Result<BuildPlan, BuildError> {
        self.plan_with_anchor(program, source, profile, None)
    }

    /// The plan for building `program`: this is where every build gets the
    /// same additions (the SDK, the anchor, the compartment's steps).
    /// Refused while the compartment cannot confine the compiler.
    pub fn plan_with_anchor(
        &self,
        program: &Program,
        source: Vec<u8>,
        profile: Option<&str>,
        anchor: Option<Anchor>,
    ) -> Result<BuildPlan, BuildError> {
        if let Some(refusal) = self.compartment.refusal() {
            return Err(BuildError::CompartmentUnavailable(refusal));
        }
        let name = profile.unwrap_or(&self.default_profile);
        let Some(chosen) = self.profiles.get(name) else {
            return Err(BuildError::UnknownProfile {
                name: name.to_owned(),
                known: self.profiles.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        Ok(BuildPlan::new(
            name,
            chosen.clone(),
            &program.name,
            source,
            self.sdk.clone(),
            anchor.unwrap_or_else(|| self.default_anchor.clone()),
            self.compartment.build_steps(),
        ))
    }

    /// Builds in a task of its own, so a client that goes away does not
    /// abandon the compiler or the build row.
    pub async fn build(
        self: &Arc<Self>,
        actor: String,
        program_id: i64,
        plan: BuildPlan,
    ) -> Result<BuildReport, BuildError> {
        let this = self.clone();
        tokio::spawn(async move { this.run(actor, program_id, plan).await })
            .await
            .map_err(|e| BuildError::Task(e.to_string()))?
    }

    async fn run(
        &self,
        actor: String,
        program_id: i64,
        plan: BuildPlan,
    ) -> Result<BuildReport, BuildError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| BuildError::Task(e.to_string()))?;
        let work = WorkLayout::new(self.data.builds_dir().join(random_name()?));
        let argv = plan.argv(&work);
        let resolved = resolve_program(&plan.profile.compiler, &self.path_var);
        let compiler = match &resolved {
            Some(path) => self.identify(path, &argv[0]).await,
            None => format!("unavailable: {} not found", plan.profile.compiler),
        };
        let new = NewBuild {
            program_id,
            profile: plan.profile_name.clone(),
            compiler,
            argv: argv.clone(),
        };
        let compiled_in = plan.compiled_in();
        let build = {
            let actor = actor.clone();
            self.records
                .call(move |db| db.start_build_with(&actor, &new, &compiled_in))
                .await?
        };
        tracing::info!(build = build.id, program = program_id, profile = %plan.profile_name, "build started");

        let (outcome, verdict) = match resolved {
            None => (
                failed(
                    None,
                    format!(
                        "compiler {:?} (profile {}) not found in PATH ({})",
                        plan.profile.compiler, plan.profile_name, self.path_var
                    ),
                    String::new(),
                    false,
                    0,
                ),
                Verdict::ToolchainUnavailable,
            ),
            Some(path) => {
                let result = self.compile(&plan, &path, &argv, &work).await;
                let root = work.root.clone();
                let _ = tokio::task::spawn_blocking(move || remove_tree(&root)).await;
                result
            }
        };
        let id = build.id;
        let who = actor.clone();
        let build = match self
            .records
            .call(move |db| db.finish_build(&who, id, outcome))
            .await
        {
            Ok(build) => build,
            Err(err) => {
                self.record_failure_later(actor, id, err.to_string());
                return Err(err.into());
            }
        };
        tracing::info!(build = build.id, status = %build.status, duration_ms = ?build.duration_ms, "build ended");
        Ok(BuildReport { build, verdict })
    }

    /// The compiler is done but its result could not be written (a full
    /// disk): records the build as failed, saying so, as soon as the
    /// database can take it, so that no build stays `running` while nothing
    /// compiles. A launcher that stops first leaves it to the next start,
    /// which marks it `interrupted`.
    fn record_failure_later(&self, actor: String, id: i64, cause: String) {
        tracing::error!(build = id, error = %cause, "recording the end of a build failed; retrying");
        let records = self.records.clone();
        tokio::spawn(async move {
            let mut delay = std::time::Duration::from_millis(100);
            loop {
                let (who, why) = (actor.clone(), cause.clone());
                let outcome = failed(
                    None,
                    format!("the build ended but its result could not be recorded: {why}"),
                    String::new(),
                    false,
                    0,
                );
                match records
                    .call(move |db| db.finish_build(&who, id, outcome))
                    .await
                {
                    Ok(_) => return,
                    Err(crate::records::RecordsError::Db(
                        programs_db::DbError::Sqlite { .. } | programs_db::DbError::Io { .. },
                    )) => {}
                    Err(err) => {
                        tracing::error!(build = id, error = %err, "the build stays unrecorded");
                        return;
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
        });
    }

    /// First line of `compiler --version`, or why there is none. Runs
    /// confined like the build, in a scratch folder of its own.
    async fn identify(&self, path: &Path, argv0: &str) -> String {
        let scratch = match random_name() {
            Ok(name) => self.data.builds_dir().join(format!("identify-{name}")),
            Err(err) => return format!("unknown: {err}"),
        };
        if let Err(err) = make_dir(&scratch, 0o700) {
            return format!("unknown: {err}");
        }
        let (status, log) = self
            .step(
                path,
                vec![argv0.to_owned(), "--version".into()],
                &scratch,
                &[],
                IDENTIFY_TIMEOUT,
                4096,
            )
            .await;
        let _ = tokio::task::spawn_blocking(move || remove_tree(&scratch)).await;
        if let StepEnd::NotStarted(err) = status {
            return format!("unknown: {err}");
        }
        let text = String::from_utf8_lossy(&log.bytes);
        match text.lines().map(str::trim).find(|l| !l.is_empty()) {
            Some(line) => line.chars().take(200).collect(),
            None => format!("unknown: {argv0} --version printed nothing"),
        }
    }

    /// Runs one toolchain step confined in `out` (its only writable
    /// folder), reading `read_only` besides the toolchain; returns how it
    /// ended and its merged output, bounded by `log_limit`.
    async fn step(
        &self,
        program: &Path,
        argv: Vec<String>,
        out: &Path,
        read_only: &[PathBuf],
        time_limit: Duration,
        log_limit: usize,
    ) -> (StepEnd, Captured) {
        let spec = SpawnSpec {
            role: Role::Build {
                output_dir: out.to_path_buf(),
                read_only: read_only.to_vec(),
            },
            executable: Executable::Path(program.to_path_buf()),
            argv,
            env: self.env(out),
            cwd: out.to_path_buf(),
            limits: self.limits(time_limit.as_secs()),
            channel: None,
            output: OutputMode::Merged,
        };
        let mut child = match self.compartment.spawn(spec) {
            Ok(child) => child,
            Err(err) => return (StepEnd::NotStarted(err.to_string()), Captured::default()),
        };
        let (give_up_tx, give_up) = watch::channel(false);
        let log_task = child
            .take_stdout()
            .map(|out| tokio::spawn(capture(out, log_limit, give_up)));
        let mut shutdown = self.shutdown.clone();
        let end = tokio::select! {
            status = child.wait() => match status {
                Ok(status) => StepEnd::Exited(status, child.end_note().map(str::to_owned)),
                Err(err) => StepEnd::WaitFailed(err.to_string()),
            },
            _ = tokio::time::sleep(time_limit) => StepEnd::TimedOut,
            _ = shutdown.wait_for(|stop| *stop) => StepEnd::Interrupted,
        };
        if !matches!(end, StepEnd::Exited(..)) {
            child.kill_group();
            let _ = child.wait().await;
        }
        let stop_reading = give_up_after(give_up_tx, LOG_GRACE);
        let log = match log_task {
            Some(task) => task.await.unwrap_or_default(),
            None => Captured::default(),
        };
        stop_reading.abort();
        (end, log)
    }

    async fn compile(
        &self,
        plan: &BuildPlan,
        compiler: &Path,
        argv: &[String],
        work: &WorkLayout,
    ) -> (BuildOutcome, Verdict) {
        let started = Instant::now();
        let elapsed = |started: Instant| started.elapsed().as_millis() as u64;
        if let Err(err) = write_work_files(plan, work).await {
            let message = format!("preparing the work folder {}: {err}", work.root.display());
            return (
                failed(None, message, String::new(), false, elapsed(started)),
                Verdict::ToolchainUnavailable,
            );
        }
        let time_limit = Duration::from_secs(self.config.time_limit_s.into());
        let read_only = [work.src(), plan.sdk.dir.clone()];
        let out = work.out();
        let (end, log) = self
            .step(
                compiler,
                argv.to_vec(),
                &out,
                &read_only,
                time_limit,
                self.config.log_limit_bytes,
            )
            .await;
        let mut truncated = log.truncated;
        let mut log = String::from_utf8_lossy(&log.bytes).into_owned();
        if let Some(verdict) = self.judge(end, "the compiler") {
            return verdict.into_outcome(log, truncated, elapsed(started));
        }

        // The compartment's steps on the linked executable (c18n's elfctl),
        // before it is hashed: the measured bytes are the final ones.
        let output = out.join(&plan.output_name);
        for command in plan.steps.post_link_commands(Path::new(&plan.output_name)) {
            let Some(tool) = resolve_program(&command[0], &self.path_var) else {
                let message = format!("post-link step {:?} not found in PATH", command[0]);
                return (
                    failed(None, message, log, truncated, elapsed(started)),
                    Verdict::ToolchainUnavailable,
                );
            };
            log.push_str(&format!("$ {}\n", command.join(" ")));
            let room = self.config.log_limit_bytes.saturating_sub(log.len());
            let (end, more) = self
                .step(&tool, command.clone(), &out, &[], time_limit, room)
                .await;
            log.push_str(&String::from_utf8_lossy(&more.bytes));
            truncated |= more.truncated;
            if let Some(verdict) = self.judge(end, &command[0]) {
                return verdict.into_outcome(log, truncated, elapsed(started));
            }
        }

        let files = self.records.files().clone();
        let staged = tokio::task::spawn_blocking(move || {
            // The output folder belongs to the sandbox: take only a regular
            // file, never what a symbolic link points at.
            match std::fs::symlink_metadata(&output) {
                Ok(meta) if meta.is_file() => files.stage_file(&output).map(Some),
                _ => Ok(None),
            }
        })
        .await;
        let duration_ms = elapsed(started);
        match staged {
            Ok(Ok(Some(executable))) => (
                BuildOutcome::Succeeded {
                    executable,
                    log,
                    log_truncated: truncated,
                    duration_ms,
                },
                Verdict::Succeeded,
            ),
            Ok(Ok(None)) => {
                let message = format!(
                    "the compiler exited 0 but wrote no executable {:?}",
                    plan.output_name
                );
                (
                    failed(Some(0), message, log, truncated, duration_ms),
                    Verdict::CompileError,
                )
            }
            Ok(Err(err)) => {
                let message = format!("storing the executable: {err}");
                (
                    failed(Some(0), message, log, truncated, duration_ms),
                    Verdict::ToolchainUnavailable,
                )
            }
            Err(err) => {
                let message = format!("storing the executable: {err}");
                (
                    failed(Some(0), message, log, truncated, duration_ms),
                    Verdict::ToolchainUnavailable,
                )
            }
        }
    }

    /// `None` when a step succeeded; otherwise how the build failed.
    fn judge(&self, end: StepEnd, what: &str) -> Option<Failure> {
        match end {
            StepEnd::Exited(status, _) if status.success() => None,
            StepEnd::Exited(status, note) => Some(match (status.signal(), note) {
                (_, Some(note)) => Failure::compile(None, format!("{what} was {note}")),
                (Some(signal), None) => {
                    Failure::compile(None, format!("{what} was killed by signal {signal}"))
                }
                (None, None) if what == "the compiler" => Failure::compile(status.code(), None),
                (None, None) => Failure::compile(
                    status.code(),
                    format!("{what} failed (exit code {})", status.code().unwrap_or(-1)),
                ),
            }),
            StepEnd::NotStarted(err) => Some(Failure {
                exit_code: None,
                error: Some(err),
                verdict: Verdict::ToolchainUnavailable,
            }),
            StepEnd::WaitFailed(err) => Some(Failure {
                exit_code: None,
                error: Some(format!("waiting for {what}: {err}")),
                verdict: Verdict::ToolchainUnavailable,
            }),
            StepEnd::TimedOut => Some(Failure::timed_out(format!(
                "{what} ran past the build time limit ({} s) and was stopped",
                self.config.time_limit_s
            ))),
            StepEnd::Interrupted => Some(Failure {
                exit_code: None,
                error: None,
                verdict: Verdict::Interrupted,
            }),
        }
    }

    /// The compiler's environment (the sandbox adds its own `PATH`,
    /// `TMPDIR` and `LANG`): C locale for stable diagnostics, temporary
    /// files and home in its output folder.
    fn env(&self, out: &Path) -> Vec<(String, String)> {
        let out = out.display().to_string();
        vec![
            ("PATH".into(), self.path_var.clone()),
            ("LC_ALL".into(), "C".into()),
            ("TMPDIR".into(), out.clone()),
            ("HOME".into(), out),
        ]
    }

    /// The compiler's limits: CPU time = the build time limit, memory from
    /// the configuration (`None` = unlimited).
    fn limits(&self, seconds: u64) -> Limits {
        let set = |v: u64| (v != 0).then_some(v);
        Limits {
            address_space_bytes: set(self.config.address_space_bytes),
            cpu_seconds: Some(seconds.max(1)),
            open_files: Some(1024),
            // RLIMIT_NPROC counts the launcher's own user under `none`;
            // a sandbox has its own PID namespace and user.
            processes: None,
            file_size_bytes: Some(512 * 1024 * 1024),
            wall_seconds: seconds,
        }
    }
}

/// How one toolchain step ended.
enum StepEnd {
    Exited(std::process::ExitStatus, Option<String>),
    NotStarted(String),
    WaitFailed(String),
    TimedOut,
    Interrupted,
}

/// A failed build, before its log is attached.
struct Failure {
    exit_code: Option<i32>,
    error: Option<String>,
    verdict: Verdict,
}

impl Failure {
    fn compile(exit_code: Option<i32>, error: impl Into<Option<String>>) -> Self {
        Failure {
            exit_code,
            error: error.into(),
            verdict: Verdict::CompileError,
        }
    }

    fn timed_out(error: String) -> Self {
        Failure {
            exit_code: None,
            error: Some(error),
            verdict: Verdict::TimedOut,
        }
    }

    fn into_outcome(
        self,
        log: String,
        log_truncated: bool,
        duration_ms: u64,
    ) -> (BuildOutcome, Verdict) {
        let outcome = match self.verdict {
            Verdict::Interrupted => BuildOutcome::Interrupted {
                log,
                log_truncated,
                duration_ms,
            },
            _ => failed(self.exit_code, self.error, log, log_truncated, duration_ms),
        };
        (outcome, self.verdict)
    }
}

fn failed(
    exit_code: Option<i32>,
    error: impl Into<Option<String>>,
    log: String,
    log_truncated: bool,
    duration_ms: u64,
) -> BuildOutcome {
    BuildOutcome::Failed {
        exit_code,
        error: error.into(),
        log,
        log_truncated,
        duration_ms,
    }
}

/// 16 random hex digits: a work folder's name.
fn random_name() -> Result<String, BuildError> {
    let mut bytes = [0u8; 8];
    openssl::rand::rand_bytes(&mut bytes)
        .map_err(|e| BuildError::Task(format!("random folder name: {e}")))?;
    Ok(hex::encode(bytes))
}

/// Creates `dir` with exactly `mode` (whatever the umask).
fn make_dir(dir: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)))
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))
}

/// Creates the work folder: the root and `src/` searchable and readable by
/// the sandbox's user (`src/` holds what the compiler reads), `out/` private
/// until the sandbox takes it over.
async fn write_work_files(plan: &BuildPlan, work: &WorkLayout) -> std::io::Result<()> {
    let work = work.clone();
    let files = plan.work_files();
    tokio::task::spawn_blocking(move || {
        make_dir(&work.root, 0o711)?;
        make_dir(&work.src(), 0o755)?;
        for file in files {
            let path = work.src().join(&file.name);
            std::fs::write(&path, &file.bytes)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        }
        make_dir(&work.out(), 0o700)
    })
    .await
    .map_err(std::io::Error::other)?
}
