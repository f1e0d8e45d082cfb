//! The case study's services (`mock-services all`) as a real process on
//! ephemeral loopback ports, with their data folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Daemon, STARTUP_TIMEOUT, workspace_bin};

/// The three services of the case study.
pub const SERVICES: [&str; 3] = ["store", "taxi", "messaging"];

/// A running `mock-services all`.
pub struct MockServices {
    daemon: Daemon,
    data: PathBuf,
    _tmp: tempfile::TempDir,
}

impl MockServices {
    /// Starts all three services with a fresh data folder.
    pub fn start() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("mock-services-test-")
            .tempdir()
            .expect("temporary folder");
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
            "--policy-poll-ms",
            "50",
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
        while !SERVICES
            .iter()
            .all(|s| data.join(format!("{s}.addr")).is_file())
        {
            if let Some(status) = daemon.try_status() {
                panic!(
                    "mock-services exited ({status}) before serving\n{}",
                    daemon.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mock-services did not start within {STARTUP_TIMEOUT:?}\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            daemon,
            data,
            _tmp: tmp,
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// `https://127.0.0.1:PORT` of `service`.
    pub fn base_url(&self, service: &str) -> String {
        let addr = fs::read_to_string(self.data.join(format!("{service}.addr")))
            .unwrap_or_else(|e| panic!("{service}.addr: {e}"));
        format!("https://{}", addr.trim())
    }

    /// The services CA (PEM): what programs compile in as their anchor.
    pub fn services_ca_pem(&self) -> String {
        fs::read_to_string(self.data.join("services-ca.pem")).expect("services-ca.pem")
    }

    /// `mock-services policy <args…>` on this data folder; must succeed.
    pub fn policy(&self, args: &[&str]) -> String {
        let bin = workspace_bin("mock-services", "mock-services");
        let out = Command::new(bin)
            .arg("policy")
            .args(args)
            .arg("--data")
            .arg(&self.data)
            .output()
            .expect("running mock-services policy");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "mock-services policy {args:?}: {text}"
        );
        text
    }

    /// `GET` an operator view (`/api/sales`, `/api/trips`, …) of `service`.
    pub async fn operator_get(&self, service: &str, path: &str) -> Value {
        let token = fs::read_to_string(self.data.join("operator-token"))
            .expect("operator-token")
            .trim()
            .to_owned();
        let client = crate::client(self.services_ca_pem().as_bytes(), Some(&token));
        let response = client
            .get(format!("{}{path}", self.base_url(service)))
            .send()
            .await
            .expect("operator request");
        crate::expect(response, 200).await
    }

    /// The services' log so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// Stops the services (SIGTERM, must exit 0).
    pub fn stop(mut self) {
        self.daemon.stop();
    }
}
