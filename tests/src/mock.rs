//! The case study's services (`mock-services all`, or one process per
//! service) as real processes on ephemeral loopback ports, with their data
//! folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Daemon, STARTUP_TIMEOUT, workspace_bin};

/// The three services of the case study.
pub const SERVICES: [&str; 3] = ["store", "taxi", "messaging"];

/// How to start the services.
#[derive(Debug, Clone, Default)]
pub struct MockOptions {
    /// `--customer-reply accept|decline|none` (default: the services' own, accept).
    pub customer_reply: Option<String>,
    /// One process per service (on one data folder) instead of `all`, so
    /// that one service can be stopped alone ([`MockServices::stop_service`]).
    pub separate: bool,
}

/// Running `mock-services all` (or one process per service).
pub struct MockServices {
    /// (`all` or the service's name, its process)
    daemons: Vec<(String, Daemon)>,
    data: PathBuf,
    _tmp: tempfile::TempDir,
}

impl MockServices {
    /// Starts all three services with a fresh data folder.
    pub fn start() -> Self {
        Self::start_with(MockOptions::default())
    }

    pub fn start_with(options: MockOptions) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("mock-services-test-")
            .tempdir()
            .expect("temporary folder");
        let data = tmp.path().join("data");
        let mut args: Vec<String> = [
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
        if let Some(reply) = &options.customer_reply {
            args.push("--customer-reply".into());
            args.push(reply.clone());
        }
        let bin = workspace_bin("mock-services", "mock-services");
        let kinds: Vec<&str> = if options.separate {
            SERVICES.to_vec()
        } else {
            vec!["all"]
        };
        let mut daemons: Vec<(String, Daemon)> = kinds
            .iter()
            .map(|kind| {
                let (name, log) = if *kind == "all" {
                    ("mock-services".to_owned(), "mock-services.log".to_owned())
                } else {
                    (
                        format!("mock-services {kind}"),
                        format!("mock-services-{kind}.log"),
                    )
                };
                let mut all_args = vec![kind.to_string()];
                all_args.extend(args.iter().cloned());
                let daemon = Daemon::spawn(&name, &bin, &all_args, &tmp.path().join(log));
                (kind.to_string(), daemon)
            })
            .collect();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !SERVICES
            .iter()
            .all(|s| data.join(format!("{s}.addr")).is_file())
        {
            for (_, daemon) in daemons.iter_mut() {
                if let Some(status) = daemon.try_status() {
                    panic!(
                        "mock-services exited ({status}) before serving\n{}",
                        daemon.log()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "mock-services did not start within {STARTUP_TIMEOUT:?}\n{}",
                daemons.iter().map(|(_, d)| d.log()).collect::<String>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            daemons,
            data,
            _tmp: tmp,
        }
    }

    /// Stops one service (SIGTERM, must exit 0); needs [`MockOptions::separate`].
    pub fn stop_service(&mut self, service: &str) {
        let at = self
            .daemons
            .iter()
            .position(|(kind, _)| kind == service)
            .unwrap_or_else(|| panic!("{service} does not run in a process of its own"));
        let (_, mut daemon) = self.daemons.remove(at);
        daemon.stop();
    }

    /// `POST` an operator request (e.g. `/api/sales`) to `service`; expects 201.
    pub async fn operator_post(&self, service: &str, path: &str, body: &Value) -> Value {
        let client = crate::client(
            self.services_ca_pem().as_bytes(),
            Some(&self.operator_token()),
        );
        let response = client
            .post(format!("{}{path}", self.base_url(service)))
            .json(body)
            .send()
            .await
            .expect("operator request");
        crate::expect(response, 201).await
    }

    fn operator_token(&self) -> String {
        fs::read_to_string(self.data.join("operator-token"))
            .expect("operator-token")
            .trim()
            .to_owned()
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
        let client = crate::client(
            self.services_ca_pem().as_bytes(),
            Some(&self.operator_token()),
        );
        let response = client
            .get(format!("{}{path}", self.base_url(service)))
            .send()
            .await
            .expect("operator request");
        crate::expect(response, 200).await
    }

    /// The services' log so far (every process's).
    pub fn log(&self) -> String {
        self.daemons.iter().map(|(_, d)| d.log()).collect()
    }

    /// Stops the services (SIGTERM, must exit 0).
    pub fn stop(mut self) {
        for (_, daemon) in self.daemons.iter_mut() {
            daemon.stop();
        }
    }
}
