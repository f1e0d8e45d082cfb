//! Helpers for the hardening suites (`tests/tests/hardening/`): process
//! trees and their survival, resident memory, latency percentiles, SQLite
//! integrity, and how long the suites run.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A process as it was when seen: its pid and its start time (clock ticks
/// after boot), so that a recycled pid is not mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProcessId {
    pub pid: i64,
    pub start: u64,
}

/// `(ppid, start time)` of `pid` from `/proc/<pid>/stat`; `None` when it is
/// gone or a zombie.
fn stat(pid: i64) -> Option<(i64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // fields[0] is field 3 (state), fields[1] field 4 (ppid), fields[19] field 22 (starttime).
    if fields.first() == Some(&"Z") {
        return None;
    }
    Some((fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

impl ProcessId {
    /// `pid` as it is now, if it is alive.
    pub fn of(pid: i64) -> Option<Self> {
        stat(pid).map(|(_, start)| Self { pid, start })
    }

    /// Whether this very process is still alive (not a zombie).
    pub fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|(_, start)| start == self.start)
    }

    /// Its command line, for messages.
    pub fn cmdline(&self) -> String {
        fs::read(format!("/proc/{}/cmdline", self.pid))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .replace('\0', " ")
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default()
    }
}

/// Every live descendant of `root` (children, their children, …).
pub fn descendants(root: i64) -> Vec<ProcessId> {
    let mut by_parent: Vec<(i64, ProcessId)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if let Some((ppid, start)) = stat(pid) {
                by_parent.push((ppid, ProcessId { pid, start }));
            }
        }
    }
    let mut found = BTreeSet::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (ppid, child) in &by_parent {
            if *ppid == parent && found.insert(*child) {
                frontier.push(child.pid);
            }
        }
    }
    found.into_iter().collect()
}

/// Waits up to `limit` for every process of `ids` to be gone; returns those
/// still alive then, with their command lines.
pub fn survivors(ids: &[ProcessId], limit: Duration) -> Vec<(ProcessId, String)> {
    let deadline = Instant::now() + limit;
    loop {
        let alive: Vec<_> = ids.iter().filter(|p| p.alive()).copied().collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive.into_iter().map(|p| (p, p.cmdline())).collect();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Resident memory of `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: i64) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's resident memory every 50 ms on its own thread and
/// keeps the peak.
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: i64) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kib) = rss_kib(pid) {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Self {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// The peak so far, KiB.
    pub fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Stops sampling; returns the peak in KiB.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.peak_kib()
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The `p`-th percentile (0 to 100, nearest rank) of `values`, which it sorts.
pub fn percentile(values: &mut [u64], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// `PRAGMA integrity_check` of the SQLite database at `path`, opened
/// read-only next to whoever has it open: `"ok"` when it is sound, else
/// SQLite's list of problems.
pub fn sqlite_integrity(path: &Path) -> String {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    conn.busy_timeout(Duration::from_secs(30))
        .expect("busy timeout");
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .expect("PRAGMA integrity_check");
    let rows: Vec<String> = stmt
        .query_map([], |row| row.get(0))
        .expect("integrity_check rows")
        .collect::<Result<_, _>>()
        .expect("integrity_check rows");
    rows.join("; ")
}

/// Opens the SQLite database at `path` read-only, for checks.
pub fn sqlite_read_only(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    conn.busy_timeout(Duration::from_secs(30))
        .expect("busy timeout");
    conn
}

/// A count from the environment (`HARDENING_CYCLES=200`), else `default`.
pub fn env_count(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

/// A small deterministic generator (xorshift64*), seeded per test, so that
/// a failing sequence of kill points can be replayed (`HARDENING_SEED`).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `HARDENING_SEED`, else from the clock; prints the seed.
    pub fn from_env(test: &str) -> Self {
        let seed = env_count("HARDENING_SEED", 0);
        let seed = if seed != 0 {
            seed
        } else {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        };
        eprintln!("{test}: HARDENING_SEED={seed}");
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `low..high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low).max(1)
    }
}

/// `mock-services all` that can be killed with SIGKILL and started again on
/// the same data folder and ports (so that a launcher's registrations stay
/// valid), for the crash tests of a service.
pub struct CrashableServices {
    daemon: Option<crate::Daemon>,
    tmp: tempfile::TempDir,
    /// `--store-listen`, `--taxi-listen`, `--messaging-listen`.
    listen: [String; 3],
    starts: usize,
}

impl CrashableServices {
    /// Starts the services on ephemeral ports with a fresh data folder.
    pub fn start() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("crashable-services-")
            .tempdir()
            .expect("temporary folder");
        let mut this = Self {
            daemon: None,
            tmp,
            listen: [
                "127.0.0.1:0".into(),
                "127.0.0.1:0".into(),
                "127.0.0.1:0".into(),
            ],
            starts: 0,
        };
        this.launch();
        // From now on, the ports they got.
        this.listen = crate::mock::SERVICES.map(|s| this.addr(s));
        this
    }

    fn launch(&mut self) {
        let data = self.data_dir();
        for s in crate::mock::SERVICES {
            let _ = fs::remove_file(data.join(format!("{s}.addr")));
        }
        let args: Vec<String> = [
            "all",
            "--data",
            &data.display().to_string(),
            "--store-listen",
            &self.listen[0],
            "--taxi-listen",
            &self.listen[1],
            "--messaging-listen",
            &self.listen[2],
            "--policy-poll-ms",
            "50",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        self.starts += 1;
        let log = self
            .tmp
            .path()
            .join(format!("mock-services-{}.log", self.starts));
        let bin = crate::workspace_bin("mock-services", "mock-services");
        let mut daemon = crate::Daemon::spawn("mock-services", &bin, &args, &log);
        let deadline = Instant::now() + crate::STARTUP_TIMEOUT;
        while !crate::mock::SERVICES
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
                "mock-services did not start\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.daemon = Some(daemon);
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.tmp.path().join("data")
    }

    fn addr(&self, service: &str) -> String {
        fs::read_to_string(self.data_dir().join(format!("{service}.addr")))
            .unwrap_or_else(|e| panic!("{service}.addr: {e}"))
            .trim()
            .to_owned()
    }

    /// `https://127.0.0.1:PORT` of `service`.
    pub fn base_url(&self, service: &str) -> String {
        format!("https://{}", self.addr(service))
    }

    pub fn services_ca_pem(&self) -> String {
        fs::read_to_string(self.data_dir().join("services-ca.pem")).expect("services-ca.pem")
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().and_then(crate::Daemon::pid)
    }

    /// SIGKILL, then the same services again on the same folder and ports.
    pub fn crash_and_restart(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.stop_with(libc::SIGKILL, crate::STARTUP_TIMEOUT);
        }
        self.launch();
    }

    /// `mock-services policy <args…>` on this data folder; must succeed.
    pub fn policy(&self, args: &[&str]) {
        let bin = crate::workspace_bin("mock-services", "mock-services");
        let out = std::process::Command::new(bin)
            .arg("policy")
            .args(args)
            .arg("--data")
            .arg(self.data_dir())
            .output()
            .expect("running mock-services policy");
        assert!(
            out.status.success(),
            "mock-services policy {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Every log the services wrote (one per start).
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                fs::read_to_string(self.tmp.path().join(format!("mock-services-{n}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Stops the services (SIGTERM, must exit 0).
    pub fn stop(mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.stop();
        }
    }
}

/// Uploads `tests/programs/<path>` under its file name and builds it with
/// `anchor_pem` compiled in as the services trust anchor. Returns (program
/// id, build).
pub async fn build_program(
    launcher: &crate::Launcher,
    path: &str,
    anchor_pem: Option<&str>,
) -> (i64, serde_json::Value) {
    let name = Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a file name");
    let program = launcher.upload_ok(name, crate::program_source(path)).await;
    let id = program["id"].as_i64().expect("program id");
    let body = match anchor_pem {
        Some(pem) => serde_json::json!({"services_anchor_pem": pem}),
        None => serde_json::json!({}),
    };
    let build = crate::expect(launcher.build_with(id, body).await, 201).await;
    assert_eq!(build["status"], "succeeded", "{build}");
    (id, build)
}

/// The content-addressed store of a launcher's data folder against its
/// database: (files no row refers to, files rows refer to that are missing).
/// Each stored file must also hash to its name.
pub fn store_mismatches(data: &Path) -> (Vec<String>, Vec<String>) {
    let conn = sqlite_read_only(&data.join("launcher.db"));
    let mut referenced = BTreeSet::new();
    let mut stmt = conn
        .prepare(
            "SELECT source_sha256 FROM programs
             UNION SELECT executable_sha256 FROM builds WHERE executable_sha256 IS NOT NULL",
        )
        .expect("listing referenced files");
    for row in stmt
        .query_map([], |r| r.get::<_, String>(0))
        .expect("listing referenced files")
    {
        referenced.insert(row.expect("a digest"));
    }
    let mut stored = BTreeSet::new();
    for file in crate::files_under(&data.join("store/sha256")) {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = fs::read(&file).unwrap_or_default();
        assert_eq!(
            crate::sha256_hex(&bytes),
            name,
            "{} does not hash to its name",
            file.display()
        );
        stored.insert(name);
    }
    (
        stored.difference(&referenced).cloned().collect(),
        referenced.difference(&stored).cloned().collect(),
    )
}
