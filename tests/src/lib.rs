//! Harness for end-to-end tests: real daemons on loopback, real files.
//!
//! - [`workspace_bin`] finds a binary of the workspace, building its package
//!   once per test process (`$CARGO build --bins -p <package>`; cargo's own
//!   lock makes concurrent test processes safe).
//! - [`Launcher`] starts `launcher serve` on `127.0.0.1:0` with a fresh data
//!   folder, waits for `<data>/launcher.addr`, and offers a `reqwest` client
//!   that trusts exactly `<data>/pki/root.pem` and sends the API token. On drop
//!   it stops the daemon (SIGTERM, then SIGKILL) and checks that it exited; a
//!   failing test prints the daemon's log.
//!
//! Other suites (services, CLI) extend this crate: add a struct like
//! [`Launcher`] per process kind, reusing [`workspace_bin`] and [`Daemon`].

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod channel_programs;
pub mod hardening;
pub mod mock;
pub mod service;

/// Generous bound for waiting on a daemon to start or stop.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Generous bound for waiting on a run to end.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

/// The C test programs, `tests/programs/<name>`.
pub fn program_source(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("programs")
        .join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `target/<profile>`, from where this test binary lives
/// (`target/<profile>/deps/<test>-<hash>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a folder");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps has a parent")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// The path of binary `bin` of workspace package `package`, built (once per
/// test process) with the profile the tests were built with.
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, Result<(), String>>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    let result = built
        .entry(package.to_owned())
        .or_insert_with(|| build_package(package));
    if let Err(message) = result {
        panic!("{message}");
    }
    let path = profile_dir().join(bin);
    assert!(
        path.is_file(),
        "{} was not produced by building package {package}",
        path.display()
    );
    path
}

fn build_package(package: &str) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let profile = profile_dir();
    let mut command = Command::new(&cargo);
    command
        .arg("build")
        .arg("--bins")
        .arg("-p")
        .arg(package)
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"));
    match profile.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(other) => {
            command.arg("--profile").arg(other);
        }
    }
    if let Some(target) = profile.parent() {
        command.arg("--target-dir").arg(target);
    }
    let output = command
        .output()
        .map_err(|e| format!("running {cargo:?} build: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "building package {package} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The `attestable` command line (package `attestable-cli`), built once per
/// test process.
pub fn cli_bin() -> PathBuf {
    workspace_bin("attestable-cli", "attestable")
}

/// A child process whose stderr goes to a log file, stopped on drop.
pub struct Daemon {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Starts `program args…` with stdout piped (returned for reading) and
    /// stderr appended to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Self {
        Self::spawn_with(name, Command::new(program), args, log)
    }

    /// [`Daemon::spawn`] of a prepared command (e.g. with a `pre_exec`).
    pub fn spawn_with(name: &str, mut command: Command, args: &[String], log: &Path) -> Self {
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
        let program = command.get_program().to_owned();
        let child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", Path::new(&program).display()));
        Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process has exited (reaping it if so).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// What the daemon printed on stdout so far (blocks until it closes stdout).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.as_mut().and_then(|c| c.stdout.take())
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` and waits for the exit (killing it after `limit`).
    pub fn stop_with(&mut self, signal: libc::c_int, limit: Duration) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("{} was already stopped", self.name);
        };
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let deadline = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let status = child.wait().expect("waiting for a killed daemon");
                    panic!(
                        "{} did not stop within {limit:?} of signal {signal}; killed ({status})\n{}",
                        self.name,
                        self.log()
                    );
                }
            }
        }
    }

    /// SIGTERM, and the exit status must be success.
    pub fn stop(&mut self) {
        let status = self.stop_with(libc::SIGTERM, STARTUP_TIMEOUT);
        assert!(
            status.success(),
            "{} exited with {status} after SIGTERM\n{}",
            self.name,
            self.log()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- log of {} ----\n{}", self.name, self.log());
        }
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain syscall on our own child.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            if !std::thread::panicking() {
                panic!("{} ignored SIGTERM for 20 s and was killed", self.name);
            }
        }
    }
}

/// Options for starting a launcher.
#[derive(Debug, Default, Clone)]
pub struct LauncherOptions {
    /// TOML configuration written to `<tmp>/launcher.toml`.
    pub config: Option<String>,
    pub camb_compat: bool,
    /// Listen address; default `127.0.0.1:0`.
    pub listen: Option<String>,
    /// More `launcher serve` flags, e.g. `--allow-degraded landlock`.
    pub serve_args: Vec<String>,
    /// System calls that fail with `ENOSYS` for the launcher and everything
    /// it starts, as on a kernel without them: it runs under a seccomp filter
    /// installed just before exec (Linux; e.g. `libc::SYS_landlock_create_ruleset`).
    pub missing_syscalls: Vec<i64>,
    /// Starts the launcher in the temporary folder with `--data data`, a
    /// relative path, as a person typing the command would.
    pub relative_data: bool,
}

/// A running `launcher serve` with its own data folder.
pub struct Launcher {
    daemon: Daemon,
    tmp: tempfile::TempDir,
    options: LauncherOptions,
    addr: SocketAddr,
    token: String,
    root_pem: Vec<u8>,
    client: reqwest::Client,
}

impl Launcher {
    /// Starts a launcher with the defaults.
    pub fn start() -> Self {
        Self::start_with(LauncherOptions::default())
    }

    pub fn start_with(options: LauncherOptions) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("launcher-test-")
            .tempdir()
            .expect("temporary folder");
        // A root launcher runs its sandboxes as uid 65534, which must be
        // able to reach the data folder inside (others may search, not list).
        fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )
        .expect("chmod of the temporary folder");
        Self::start_in(tmp, options)
    }

    fn start_in(tmp: tempfile::TempDir, options: LauncherOptions) -> Self {
        let data = tmp.path().join("data");
        let addr_file = data.join("launcher.addr");
        let _ = fs::remove_file(&addr_file);
        let mut args = vec![
            "serve".to_owned(),
            "--data".to_owned(),
            if options.relative_data {
                "data".to_owned()
            } else {
                data.display().to_string()
            },
            "--listen".to_owned(),
            options
                .listen
                .clone()
                .unwrap_or_else(|| "127.0.0.1:0".into()),
        ];
        if let Some(config) = &options.config {
            let path = tmp.path().join("launcher.toml");
            fs::write(&path, config).expect("writing the configuration");
            args.push("--config".into());
            args.push(path.display().to_string());
        }
        if options.camb_compat {
            args.push("--camb-compat".into());
        }
        args.extend(options.serve_args.iter().cloned());
        let bin = workspace_bin("launcher", "launcher");
        let mut command = Command::new(&bin);
        if options.relative_data {
            command.current_dir(tmp.path());
        }
        if !options.missing_syscalls.is_empty() {
            seccomp::deny_before_exec(&mut command, &options.missing_syscalls, libc::ENOSYS);
        }
        let mut daemon =
            Daemon::spawn_with("launcher", command, &args, &tmp.path().join("launcher.log"));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addr = loop {
            let written = fs::read_to_string(&addr_file).ok();
            if let Some(addr) = written.and_then(|text| text.trim().parse::<SocketAddr>().ok()) {
                break addr;
            }
            if let Some(status) = daemon.try_status() {
                panic!(
                    "the launcher exited ({status}) before serving\n{}",
                    daemon.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the launcher did not write {} within {STARTUP_TIMEOUT:?}\n{}",
                addr_file.display(),
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let token = fs::read_to_string(data.join("api-token"))
            .expect("api-token")
            .trim()
            .to_owned();
        let root_pem = fs::read(data.join("pki/root.pem")).expect("pki/root.pem");
        let client = client(&root_pem, Some(&token));
        Self {
            daemon,
            tmp,
            options,
            addr,
            token,
            root_pem,
            client,
        }
    }

    /// Stops the daemon (SIGTERM, must exit 0) and starts it again on the
    /// same data folder and configuration.
    pub fn restart(self) -> Self {
        let Self {
            mut daemon,
            tmp,
            options,
            ..
        } = self;
        daemon.stop();
        drop(daemon);
        Self::start_in(tmp, options)
    }

    /// Kills the daemon with SIGKILL (a crash) and starts it again.
    pub fn crash_and_restart(self) -> Self {
        let Self {
            mut daemon,
            tmp,
            options,
            ..
        } = self;
        daemon.stop_with(libc::SIGKILL, STARTUP_TIMEOUT);
        drop(daemon);
        Self::start_in(tmp, options)
    }

    /// Kills the daemon with SIGKILL (a crash, a power cut) and keeps its
    /// data folder as it was left, to inspect and restart.
    pub fn kill(self) -> Crashed {
        let Self {
            mut daemon,
            tmp,
            options,
            ..
        } = self;
        daemon.stop_with(libc::SIGKILL, STARTUP_TIMEOUT);
        drop(daemon);
        Crashed { tmp, options }
    }

    /// Starts a launcher whose data folder is `<tmp>/data` of a folder the
    /// caller prepared (e.g. with a file system mounted there).
    pub fn start_in_folder(tmp: tempfile::TempDir, options: LauncherOptions) -> Self {
        Self::start_in(tmp, options)
    }

    /// Stops the daemon (SIGTERM, must exit 0) and keeps the data folder
    /// for inspection.
    pub fn stop(self) -> tempfile::TempDir {
        let Self {
            mut daemon, tmp, ..
        } = self;
        daemon.stop();
        drop(daemon);
        tmp
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn root_pem(&self) -> &[u8] {
        &self.root_pem
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// `https://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// A client that trusts the launcher's root and sends the token.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A client that trusts the launcher's root and sends no token.
    pub fn anonymous(&self) -> reqwest::Client {
        client(&self.root_pem, None)
    }

    /// `POST /v1/programs` with `bytes` as file `name`.
    pub async fn upload(&self, name: &str, bytes: Vec<u8>) -> reqwest::Response {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
        let form = reqwest::multipart::Form::new().part("file", part);
        self.client
            .post(self.url("/v1/programs"))
            .multipart(form)
            .send()
            .await
            .expect("upload request")
    }

    /// Uploads and expects 201; returns the program.
    pub async fn upload_ok(&self, name: &str, bytes: Vec<u8>) -> Value {
        expect(self.upload(name, bytes).await, 201).await
    }

    /// `POST /v1/programs/{id}/builds` with `body` (e.g. a profile or a
    /// services anchor); returns the response.
    pub async fn build_with(&self, program: i64, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/v1/programs/{program}/builds")))
            .json(&body)
            .send()
            .await
            .expect("build request")
    }

    /// `POST /v1/programs/{id}/builds` and expects 201; returns the build.
    pub async fn build_ok(&self, program: i64) -> Value {
        let response = self
            .client
            .post(self.url(&format!("/v1/programs/{program}/builds")))
            .send()
            .await
            .expect("build request");
        expect(response, 201).await
    }

    /// `POST /v1/programs/{id}/runs` with `body`; expects 202, returns the run.
    pub async fn run(&self, program: i64, body: Value) -> Value {
        let response = self
            .client
            .post(self.url(&format!("/v1/programs/{program}/runs")))
            .json(&body)
            .send()
            .await
            .expect("run request");
        expect(response, 202).await
    }

    /// `GET path`, expecting `status`; returns the JSON body.
    /// Every row of a paged list (`/v1/programs`, `/v1/runs?…`): pages of
    /// 1000 (the launcher's maximum), each after the last id of the one before.
    pub async fn get_all(&self, path: &str) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut rows: Vec<Value> = Vec::new();
        loop {
            let after = rows
                .last()
                .map_or(String::new(), |r| format!("&after={}", r["id"]));
            let page = self
                .get(&format!("{path}{sep}limit=1000{after}"), 200)
                .await;
            let page = page.as_array().expect("a list").clone();
            let done = page.len() < 1000;
            rows.extend(page);
            if done {
                return rows;
            }
        }
    }

    /// `PUT /v1/services/{id}`, expecting 201.
    pub async fn register_service(&self, id: &str, base_url: &str, ca_pem: &str) {
        let response = self
            .client
            .put(self.url(&format!("/v1/services/{id}")))
            .json(&serde_json::json!({"base_url": base_url, "ca_pem": ca_pem}))
            .send()
            .await
            .expect("PUT /v1/services");
        expect(response, 201).await;
    }

    /// Uploads and builds `loop.c` (prints a line, never ends) and starts a
    /// run of it with a 600 s time limit; returns the run's id and its pid
    /// once it is running.
    pub async fn start_endless_run(&self) -> (i64, i64) {
        let program = self.upload_ok("loop.c", program_source("loop.c")).await["id"]
            .as_i64()
            .expect("program id");
        self.build_ok(program).await;
        let run = self
            .run(program, serde_json::json!({"time_limit_s": 600}))
            .await["id"]
            .as_i64()
            .expect("run id");
        let pid = self.wait_run_until(run, |r| r["status"] == "running").await["pid"]
            .as_i64()
            .expect("a running run's pid");
        (run, pid)
    }

    pub async fn get(&self, path: &str, status: u16) -> Value {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("GET request");
        expect(response, status).await
    }

    /// Polls `GET /v1/runs/{id}` until `done(run)` holds.
    pub async fn wait_run_until(&self, run: i64, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + RUN_TIMEOUT;
        loop {
            let value = self.get(&format!("/v1/runs/{run}"), 200).await;
            if done(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "run {run} did not reach the expected state within {RUN_TIMEOUT:?}: {value}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls until the run has ended; returns it.
    pub async fn wait_run(&self, run: i64) -> Value {
        self.wait_run_until(run, |r| is_terminal(r["status"].as_str().unwrap_or("")))
            .await
    }
}

/// A launcher killed by [`Launcher::kill`]: its data folder as the crash
/// left it.
pub struct Crashed {
    tmp: tempfile::TempDir,
    options: LauncherOptions,
}

impl Crashed {
    pub fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    /// Starts the launcher again on the same data folder and configuration.
    pub fn restart(self) -> Launcher {
        Launcher::start_in(self.tmp, self.options)
    }
}

/// True for the statuses a run never leaves.
pub fn is_terminal(status: &str) -> bool {
    !matches!(status, "queued" | "starting" | "running")
}

/// A client that trusts exactly `root_pem` (no system roots), with the
/// bearer token if given.
pub fn client(root_pem: &[u8], token: Option<&str>) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(root_pem).expect("root.pem parses");
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .expect("token is a header value");
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .tls_certs_only([root])
        .default_headers(headers)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("reqwest client")
}

/// Checks the status (showing the body when it differs) and returns the JSON body.
pub async fn expect(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let url = response.url().clone();
    let text = response.text().await.expect("response body");
    assert_eq!(got, status, "{url}: expected {status}, got {got}: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{url}: body is not JSON ({e}): {text}"))
    }
}

/// Whether process `pid` is alive (not a zombie); Linux only.
pub fn process_alive(pid: i64) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.contains(") Z "),
        Err(_) => false,
    }
}

/// The PID namespace of process `pid` (`pid:[4026532…]`); Linux only.
pub fn pid_namespace(pid: i64) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|p| p.display().to_string())
}

/// Every live process in PID namespace `ns` (as [`pid_namespace`] names it).
pub fn processes_in_pid_namespace(ns: &str) -> Vec<i64> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
        .filter(|&pid| process_alive(pid) && pid_namespace(pid).as_deref() == Some(ns))
        .collect()
}

/// Starting a process under a seccomp filter (Linux).
pub mod seccomp {
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    /// Makes `syscalls` fail with `errno` for the process `command` starts
    /// and everything it starts: the filter is built here and installed
    /// between fork and exec (with `PR_SET_NO_NEW_PRIVS`, as unprivileged
    /// seccomp requires).
    #[cfg(target_os = "linux")]
    pub fn deny_before_exec(command: &mut Command, syscalls: &[i64], errno: i32) {
        use std::collections::BTreeMap;

        use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

        let arch = TargetArch::try_from(std::env::consts::ARCH).expect("a seccomp architecture");
        let rules = syscalls
            .iter()
            .map(|&nr| (nr, vec![]))
            .collect::<BTreeMap<_, _>>();
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )
        .expect("a seccomp filter");
        let program: BpfProgram = filter.try_into().expect("compiling the seccomp filter");
        // SAFETY: the closure only makes two system calls on data prepared
        // before the fork (no allocation, no locks).
        unsafe {
            command.pre_exec(move || {
                let prog = libc::sock_fprog {
                    len: program.len() as u16,
                    filter: program.as_ptr() as *mut libc::sock_filter,
                };
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::syscall(
                        libc::SYS_seccomp,
                        libc::SECCOMP_SET_MODE_FILTER,
                        0,
                        &prog as *const libc::sock_fprog,
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn deny_before_exec(_command: &mut Command, _syscalls: &[i64], _errno: i32) {
        panic!("seccomp filters exist on Linux only");
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Runs `launcher <args>` to completion (for start-up refusals); returns
/// its status and stderr.
pub fn launcher_once(args: &[&str]) -> (ExitStatus, String) {
    let bin = workspace_bin("launcher", "launcher");
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the launcher");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (child.wait().expect("waiting for the launcher"), stderr)
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(openssl::sha::sha256(bytes))
}

/// Which of `needles` occur in which files under `dir` (recursively, every
/// byte of every file): `(file, needle index)`.
pub fn files_containing(dir: &Path, needles: &[Vec<u8>]) -> Vec<(PathBuf, usize)> {
    let mut found = Vec::new();
    for file in files_under(dir) {
        let Ok(bytes) = fs::read(&file) else { continue };
        for (i, needle) in needles.iter().enumerate() {
            if !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle.as_slice()) {
                found.push((file.clone(), i));
            }
        }
    }
    found
}
