//! The case study end to end: `integration-process/integration_process.c`
//! uploaded to a real launcher, built with the services CA as its anchor, run
//! in the Linux compartment against the real `mock-services` on loopback,
//! and checked where the truth is: the services' SQLite databases, the run's
//! record and brokered calls, and every byte the launcher keeps. Also the
//! `attestable demo` command itself (`demo.rs`).

mod demo;
mod denials;
mod failures;
mod flow;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use attestable_tests::mock::{MockOptions, MockServices, SERVICES};
use attestable_tests::{Launcher, RUN_TIMEOUT, expect, files_containing, workspace_root};
use serde_json::{Value, json};

/// The case study's program, as shipped.
pub fn integration_source() -> Vec<u8> {
    let path = workspace_root().join("integration-process/integration_process.c");
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A launcher and the three services, registered with it.
pub struct CaseStudy {
    pub launcher: Launcher,
    pub mock: MockServices,
}

/// Rows the services hold, counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub trips: i64,
    pub messages: i64,
    pub accepted: i64,
}

impl CaseStudy {
    pub async fn start(options: MockOptions) -> Self {
        let launcher = Launcher::start();
        let mock = MockServices::start_with(options);
        let ca = mock.services_ca_pem();
        for service in SERVICES {
            let response = launcher
                .client()
                .put(launcher.url(&format!("/v1/services/{service}")))
                .json(&json!({"base_url": mock.base_url(service), "ca_pem": ca}))
                .send()
                .await
                .expect("PUT /v1/services");
            expect(response, 201).await;
        }
        Self { launcher, mock }
    }

    /// Uploads `source` as `integration_process.c` and builds it with the
    /// services CA compiled in; returns (program id, executable SHA-256).
    pub async fn build(&self, source: Vec<u8>) -> (i64, String) {
        let program = self
            .launcher
            .upload_ok("integration_process.c", source)
            .await;
        let id = program["id"].as_i64().expect("program id");
        let build = expect(
            self.launcher
                .build_with(
                    id,
                    json!({"services_anchor_pem": self.mock.services_ca_pem()}),
                )
                .await,
            201,
        )
        .await;
        assert_eq!(build["status"], "succeeded", "{build}");
        let exe = build["executable_sha256"]
            .as_str()
            .expect("a hash")
            .to_owned();
        (id, exe)
    }

    /// The operator's approval in every service: trust this launcher's root
    /// and allow `exe` what the case study needs; returns once in force.
    pub fn approve(&self, exe: &str) {
        let before = self.reloads_with_rules();
        let root = self.launcher.data_dir().join("pki/root.pem");
        self.mock.policy(&[
            "trust-root",
            "--service",
            "all",
            "--ca",
            root.to_str().unwrap(),
        ]);
        self.mock
            .policy(&["allow", "--service", "all", "--sha256", exe]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .reloads_with_rules()
            .iter()
            .zip(&before)
            .any(|(now, then)| now <= then)
        {
            assert!(
                Instant::now() < deadline,
                "the services did not put the new policies in force:\n{}",
                self.mock.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Per service, how many reloads put a policy with allow rules in force.
    fn reloads_with_rules(&self) -> Vec<usize> {
        let log = self.mock.log();
        SERVICES
            .iter()
            .map(|s| {
                log.lines()
                    .filter(|l| {
                        l.contains("policy reloaded")
                            && l.contains(&format!("service={s} "))
                            && !l.contains("allow_rules=0")
                    })
                    .count()
            })
            .collect()
    }

    /// A new sale through the store's operator API; returns it (with its customer).
    pub async fn new_sale(&self, customer_id: i64, total: &str) -> Value {
        self.mock
            .operator_post(
                "store",
                "/api/sales",
                &json!({"customer_id": customer_id, "total": total}),
            )
            .await
    }

    /// Runs `program` with `args` to its end.
    pub async fn run(&self, program: i64, args: &[&str]) -> Value {
        let run = self
            .launcher
            .run(program, json!({"args": args, "time_limit_s": 120}))
            .await;
        self.launcher
            .wait_run(run["id"].as_i64().expect("run id"))
            .await
    }

    pub async fn calls(&self, run: &Value) -> Vec<Value> {
        let id = run["id"].as_i64().expect("run id");
        let calls = self
            .launcher
            .get(&format!("/v1/runs/{id}/calls"), 200)
            .await;
        calls.as_array().expect("a list").clone()
    }

    /// A connection to `service`'s own database.
    pub fn db(&self, service: &str) -> rusqlite::Connection {
        let path = self
            .mock
            .data_dir()
            .join(service)
            .join(format!("{service}.db"));
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
    }

    pub fn counts(&self) -> Counts {
        let count = |service: &str, sql: &str| -> i64 {
            self.db(service)
                .query_row(sql, [], |r| r.get(0))
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        };
        Counts {
            trips: count("taxi", "SELECT COUNT(*) FROM trips"),
            messages: count("messaging", "SELECT COUNT(*) FROM messages"),
            accepted: count(
                "messaging",
                "SELECT COUNT(*) FROM replies WHERE reply = 'ACCEPT'",
            ),
        }
    }

    /// Every piece of personal data the services hold: customers' names,
    /// phones and addresses, drivers' names, and the messages' texts.
    pub fn plaintexts(&self) -> Vec<Vec<u8>> {
        let column = |service: &str, sql: &str| -> Vec<Vec<u8>> {
            let db = self.db(service);
            let mut statement = db.prepare(sql).expect("a query");
            statement
                .query_map([], |r| r.get::<_, String>(0))
                .expect("rows")
                .map(|r| r.expect("a text").into_bytes())
                .collect()
        };
        let mut all = Vec::new();
        for sql in [
            "SELECT name FROM customers",
            "SELECT phone FROM customers",
            "SELECT address FROM customers",
        ] {
            all.extend(column("store", sql));
        }
        all.extend(column("taxi", "SELECT name FROM drivers"));
        all.extend(column("messaging", "SELECT text FROM messages"));
        all.extend(column("messaging", "SELECT phone FROM messages"));
        assert!(all.len() >= 14, "the sample data is there: {}", all.len());
        all
    }

    /// None of the services' personal data appears in any byte the launcher
    /// keeps: its data folder (database and WAL included) while it runs, and
    /// after it stopped, with its log. Stops everything.
    pub fn assert_no_plaintext(self) {
        let needles = self.plaintexts();
        // The search finds such bytes where they are: in the services' files.
        let control = files_containing(self.mock.data_dir(), &needles);
        assert!(
            !control.is_empty(),
            "the services' databases hold the plaintext"
        );
        let wal = self.launcher.data_dir().join("launcher.db-wal");
        assert!(
            wal.is_file(),
            "the launcher's WAL is searched while it runs"
        );
        assert_nowhere(&self.launcher.data_dir(), &needles, "while it ran");
        let tmp = self.launcher.stop();
        let data = tmp.path().join("data");
        assert_nowhere(&data, &needles, "after it stopped");
        let log = std::fs::read(tmp.path().join("launcher.log")).expect("the launcher's log");
        assert!(!log.is_empty(), "the launcher logged");
        for needle in &needles {
            assert!(
                !log.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{:?} is in the launcher's log",
                String::from_utf8_lossy(needle)
            );
        }
        self.mock.stop();
    }
}

fn assert_nowhere(dir: &Path, needles: &[Vec<u8>], when: &str) {
    let found = files_containing(dir, needles);
    assert!(
        found.is_empty(),
        "personal data in the launcher's files {when}: {:?}",
        found
            .iter()
            .map(|(f, i)| (
                f.display().to_string(),
                String::from_utf8_lossy(&needles[*i]).into_owned()
            ))
            .collect::<Vec<_>>()
    );
}

/// The run's stdout and stderr, for assertion messages.
pub fn output(run: &Value) -> String {
    format!(
        "--- run {} {} exit {} ---\n--- stdout ---\n{}\n--- stderr ---\n{}",
        run["id"],
        run["status"],
        run["exit_code"],
        run["stdout"].as_str().unwrap_or(""),
        run["stderr"].as_str().unwrap_or("")
    )
}

/// Process ids whose command line mentions `path` (Linux).
pub fn processes_mentioning(path: &Path) -> Vec<(i64, String)> {
    let needle = path.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            cmdline.contains(&needle).then_some((pid, cmdline))
        })
        .collect()
}

/// Waits (generously) until no process mentions `path`; panics naming them.
pub fn assert_nothing_left(path: &Path) {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let left = processes_mentioning(path);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "processes left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A folder others may pass through (a root launcher's sandbox user must
/// reach its data folder inside).
pub fn searchable_tempdir(prefix: &str) -> tempfile::TempDir {
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temporary folder");
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .expect("chmod");
    tmp
}

/// The folder holding the debug (or test-profile) `launcher` and `mock-services`.
pub fn bin_dir() -> PathBuf {
    let launcher = attestable_tests::workspace_bin("launcher", "launcher");
    attestable_tests::workspace_bin("mock-services", "mock-services");
    launcher.parent().expect("a folder").to_path_buf()
}
