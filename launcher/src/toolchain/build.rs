//! Running a build: work folder, compiler through the compartment seam,
//! time limit, bounded log, executable into the store, row updated.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use programs_db::{Build, BuildOutcome, NewBuild, Program};
use tokio::sync::{Semaphore, watch};

use super::{BuildPlan, Profile};
use crate::compartment::capture::{capture, give_up_after};
use crate::compartment::unconfined::resolve_program;
use crate::compartment::{Compartment, Executable, Limits, OutputMode, Role, SpawnSpec};
use crate::config::BuildConfig;
use crate::paths::{DataDir, create_private_dir, remove_tree};
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
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("default_profile", &self.default_profile)
            .finish_non_exhaustive()
    }
}

impl Builder {
    pub fn new(
        records: Records,
        compartment: Arc<dyn Compartment>,
        data: DataDir,
        config: BuildConfig,
        profiles: BTreeMap<String, Profile>,
        default_profile: String,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let path_var =
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        let slots = Semaphore::new(config.max_concurrent.max(1));
        Self {
            records,
            compartment,
            data,
            config,
            profiles,
            default_profile,
            path_var,
            slots,
            shutdown,
        }
    }

    pub fn profiles(&self) -> &BTreeMap<String, Profile> {
        &self.profiles
    }

    pub fn default_profile(&self) -> &str {
        &self.default_profile
    }

    /// The plan for building `program` with `profile` (or the default).
    /// This is where every build gets the same additions (later: the SDK).
    pub fn plan(
        &self,
        program: &Program,
        source: Vec<u8>,
        profile: Option<&str>,
    ) -> Result<BuildPlan, BuildError> {
        let name = profile.unwrap_or(&self.default_profile);
        let Some(chosen) = self.profiles.get(name) else {
            return Err(BuildError::UnknownProfile {
                name: name.to_owned(),
                known: self.profiles.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        Ok(BuildPlan::new(name, chosen.clone(), &program.name, source))
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
        let argv = plan.argv();
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
        let build = {
            let actor = actor.clone();
            self.records
                .call(move |db| db.start_build(&actor, &new))
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
                let work = self.data.build_dir(build.id);
                let result = self.compile(&plan, &path, &argv, &work).await;
                let _ = tokio::task::spawn_blocking(move || remove_tree(&work)).await;
                result
            }
        };
        let id = build.id;
        let build = self
            .records
            .call(move |db| db.finish_build(&actor, id, outcome))
            .await?;
        tracing::info!(build = build.id, status = %build.status, duration_ms = ?build.duration_ms, "build ended");
        Ok(BuildReport { build, verdict })
    }

    /// First line of `compiler --version`, or why there is none.
    async fn identify(&self, path: &Path, argv0: &str) -> String {
        let spec = SpawnSpec {
            role: Role::Build {
                output_dir: self.data.builds_dir(),
            },
            executable: Executable::Path(path.to_path_buf()),
            argv: vec![argv0.to_owned(), "--version".into()],
            env: self.env(&self.data.builds_dir()),
            cwd: self.data.builds_dir(),
            limits: self.limits(IDENTIFY_TIMEOUT.as_secs()),
            channel: None,
            output: OutputMode::Merged,
        };
        let mut child = match self.compartment.spawn(spec) {
            Ok(child) => child,
            Err(err) => return format!("unknown: {err}"),
        };
        let (give_up_tx, give_up) = watch::channel(false);
        let log = child
            .take_stdout()
            .map(|out| tokio::spawn(capture(out, 4096, give_up)));
        let status = tokio::time::timeout(IDENTIFY_TIMEOUT, child.wait()).await;
        if status.is_err() {
            child.kill_group();
            let _ = child.wait().await;
        }
        let stop_reading = give_up_after(give_up_tx, LOG_GRACE);
        let text = match log {
            Some(task) => task.await.map(|c| c.bytes).unwrap_or_default(),
            None => Vec::new(),
        };
        stop_reading.abort();
        let text = String::from_utf8_lossy(&text);
        match text.lines().map(str::trim).find(|l| !l.is_empty()) {
            Some(line) => line.chars().take(200).collect(),
            None => format!("unknown: {argv0} --version printed nothing"),
        }
    }

    async fn compile(
        &self,
        plan: &BuildPlan,
        compiler: &Path,
        argv: &[String],
        work: &Path,
    ) -> (BuildOutcome, Verdict) {
        let started = Instant::now();
        let elapsed = |started: Instant| started.elapsed().as_millis() as u64;
        if let Err(err) = write_work_files(plan, work).await {
            let message = format!("preparing the work folder {}: {err}", work.display());
            return (
                failed(None, message, String::new(), false, elapsed(started)),
                Verdict::ToolchainUnavailable,
            );
        }
        let time_limit = Duration::from_secs(self.config.time_limit_s.into());
        let spec = SpawnSpec {
            role: Role::Build {
                output_dir: work.to_path_buf(),
            },
            executable: Executable::Path(compiler.to_path_buf()),
            argv: argv.to_vec(),
            env: self.env(work),
            cwd: work.to_path_buf(),
            limits: self.limits(self.config.time_limit_s.into()),
            channel: None,
            output: OutputMode::Merged,
        };
        let mut child = match self.compartment.spawn(spec) {
            Ok(child) => child,
            Err(err) => {
                return (
                    failed(
                        None,
                        err.to_string(),
                        String::new(),
                        false,
                        elapsed(started),
                    ),
                    Verdict::ToolchainUnavailable,
                );
            }
        };
        let (give_up_tx, give_up) = watch::channel(false);
        let log_task = child
            .take_stdout()
            .map(|out| tokio::spawn(capture(out, self.config.log_limit_bytes, give_up)));
        let mut shutdown = self.shutdown.clone();
        enum End {
            Exited(std::io::Result<std::process::ExitStatus>),
            TimedOut,
            Interrupted,
        }
        let end = tokio::select! {
            status = child.wait() => End::Exited(status),
            _ = tokio::time::sleep(time_limit) => End::TimedOut,
            _ = shutdown.wait_for(|stop| *stop) => End::Interrupted,
        };
        if !matches!(end, End::Exited(_)) {
            child.kill_group();
            let _ = child.wait().await;
        }
        let stop_reading = give_up_after(give_up_tx, LOG_GRACE);
        let log = match log_task {
            Some(task) => task.await.unwrap_or_default(),
            None => Default::default(),
        };
        stop_reading.abort();
        let truncated = log.truncated;
        let log = String::from_utf8_lossy(&log.bytes).into_owned();
        let duration_ms = elapsed(started);

        let status = match end {
            End::Interrupted => {
                return (
                    BuildOutcome::Interrupted {
                        log,
                        log_truncated: truncated,
                        duration_ms,
                    },
                    Verdict::Interrupted,
                );
            }
            End::TimedOut => {
                let message = format!(
                    "the compiler ran past the build time limit ({} s) and was stopped",
                    self.config.time_limit_s
                );
                return (
                    failed(None, message, log, truncated, duration_ms),
                    Verdict::TimedOut,
                );
            }
            End::Exited(Err(err)) => {
                let message = format!("waiting for the compiler: {err}");
                return (
                    failed(None, message, log, truncated, duration_ms),
                    Verdict::ToolchainUnavailable,
                );
            }
            End::Exited(Ok(status)) => status,
        };
        if let Some(signal) = status.signal() {
            let message = format!("the compiler was killed by signal {signal}");
            return (
                failed(None, message, log, truncated, duration_ms),
                Verdict::CompileError,
            );
        }
        if !status.success() {
            return (
                failed(status.code(), None, log, truncated, duration_ms),
                Verdict::CompileError,
            );
        }
        let output = work.join(&plan.output_name);
        let files = self.records.files().clone();
        let staged = tokio::task::spawn_blocking(move || {
            if output.is_file() {
                files.stage_file(&output).map(Some)
            } else {
                Ok(None)
            }
        })
        .await;
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

    /// The compiler's whole environment: enough to find its tools, C locale
    /// for stable diagnostics, temporary files in the work folder.
    fn env(&self, work: &Path) -> Vec<(String, String)> {
        let work = work.display().to_string();
        vec![
            ("PATH".into(), self.path_var.clone()),
            ("LC_ALL".into(), "C".into()),
            ("TMPDIR".into(), work.clone()),
            ("HOME".into(), work),
        ]
    }

    fn limits(&self, seconds: u64) -> Limits {
        Limits {
            // Compilers and linkers map a lot; confinement issues may tighten this.
            address_space_bytes: None,
            cpu_seconds: Some(seconds),
            open_files: Some(1024),
            processes: None,
            file_size_bytes: Some(512 * 1024 * 1024),
            wall_seconds: seconds,
        }
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

async fn write_work_files(plan: &BuildPlan, work: &Path) -> std::io::Result<()> {
    let work: PathBuf = work.to_path_buf();
    let files: Vec<_> = plan
        .sources
        .iter()
        .chain(&plan.headers)
        .map(|f| (f.name.clone(), f.bytes.clone()))
        .collect();
    tokio::task::spawn_blocking(move || {
        create_private_dir(&work)?;
        for (name, bytes) in files {
            std::fs::write(work.join(name), bytes)?;
        }
        Ok(())
    })
    .await
    .map_err(std::io::Error::other)?
}
