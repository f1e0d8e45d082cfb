//! The case study's services (`mock-services all`, release build) with a
//! data folder of the benchmark's own: drivers free again at once
//! (`--trip-seconds 0`) so that any number of runs can book a taxi.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use attestable_tests::{Daemon, STARTUP_TIMEOUT, workspace_bin};

pub struct Services {
    daemon: Daemon,
    data: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Services {
    pub fn start() -> anyhow::Result<Self> {
        let tmp = tempfile::Builder::new()
            .prefix("bench-services-")
            .tempdir()?;
        let data = tmp.path().join("data");
        let args: Vec<String> = [
            "all",
            "--data",
            &data.display().to_string(),
            "--store-listen",
            "127.0.0.1:0",
            "--taxi-listen",
            "127.0.0.1:0",
            "--messaging-listen",
            "127.0.0.1:0",
            "--trip-seconds",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let bin = workspace_bin("mock-services", "mock-services");
        let mut daemon = Daemon::spawn(
            "mock-services",
            &bin,
            &args,
            &tmp.path().join("mock-services.log"),
        );
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !["store", "taxi", "messaging"]
            .iter()
            .all(|s| data.join(format!("{s}.addr")).is_file())
        {
            if let Some(status) = daemon.try_status() {
                bail!("mock-services exited ({status}):\n{}", daemon.log());
            }
            if Instant::now() > deadline {
                bail!("mock-services did not start:\n{}", daemon.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            daemon,
            data,
            _tmp: tmp,
        })
    }

    pub fn base_url(&self, service: &str) -> anyhow::Result<String> {
        let addr = fs::read_to_string(self.data.join(format!("{service}.addr")))
            .with_context(|| format!("{service}.addr"))?;
        Ok(format!("https://{}", addr.trim()))
    }

    pub fn ca_pem(&self) -> anyhow::Result<String> {
        fs::read_to_string(self.data.join("services-ca.pem")).context("services-ca.pem")
    }

    /// A client for the operator endpoints: the services CA, the operator token.
    pub fn operator_client(&self) -> anyhow::Result<reqwest::Client> {
        let token = fs::read_to_string(self.data.join("operator-token"))?;
        Ok(attestable_tests::client(
            self.ca_pem()?.as_bytes(),
            Some(token.trim()),
        ))
    }

    /// Every service trusts run certificates under `launcher_root`.
    pub fn trust(&self, launcher_root: &Path) -> anyhow::Result<()> {
        let root = launcher_root.display().to_string();
        self.policy(&["trust-root", "--service", "all", "--ca", &root])
    }

    /// Allows `sha256` the case study's grants on every service, then
    /// reloads the policies (SIGHUP).
    pub fn approve(&self, sha256: &str) -> anyhow::Result<()> {
        self.policy(&["allow", "--service", "all", "--sha256", sha256])?;
        let pid = self.daemon.pid().context("mock-services is not running")?;
        // SAFETY: a plain syscall on our own child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
        // The reload is logged; give it a moment rather than parse the log.
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    fn policy(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new(workspace_bin("mock-services", "mock-services"))
            .arg("policy")
            .args(args)
            .arg("--data")
            .arg(&self.data)
            .output()?;
        if !out.status.success() {
            bail!(
                "mock-services policy {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }
}
