//! Brokered reads and writes (program → launcher → service → program, with
//! all the cryptography) against the same requests sent straight to the
//! service's operator endpoints; throughput over concurrent runs; the
//! launcher's memory; the case study end to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use attestable_tests::{Launcher, LauncherOptions, expect, program_source};
use serde_json::{Value, json};

use crate::services::Services;
use crate::stats::{Figure, Summary, Table};

pub const SEQ: &str = "3. Brokered calls, sequential (one run, one call at a time)";
pub const CONC: &str = "3b/6a. Brokered calls over concurrent runs (all start together)";
pub const MEM: &str = "5. Launcher resident memory (VmRSS)";
pub const CPU: &str = "3c. CPU time per sequential call, by process (where the time goes)";
pub const CASE: &str = "4. The case study end to end (integration_process.c)";

/// The launcher as benchmarked: release build, room for 100 concurrent runs.
const LAUNCHER_CONFIG: &str = "[runs]\nmax_concurrent = 100\n";

/// What one run of `broker_bench.c` reported.
#[derive(Debug)]
struct BenchRun {
    id: i64,
    late_us: f64,
    start_ms: f64,
    end_ms: f64,
    cpu_us: f64,
    lat_us: Vec<f64>,
}

fn parse_bench(run: &Value) -> anyhow::Result<BenchRun> {
    let stdout = run["stdout"].as_str().unwrap_or("");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("bench "))
        .with_context(|| format!("run {} printed no bench line: {run}", run["id"]))?;
    let field = |key: &str| -> anyhow::Result<&str> {
        line.split(' ')
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .with_context(|| format!("no {key}= in {line:?}"))
    };
    Ok(BenchRun {
        id: run["id"].as_i64().context("run id")?,
        late_us: field("late_us")?.parse()?,
        start_ms: field("start_ms")?.parse()?,
        end_ms: field("end_ms")?.parse()?,
        cpu_us: field("cpu_us")?.parse()?,
        lat_us: field("lat_us")?
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()?,
    })
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How many calls: `sequential` in one run, then `total` spread over each
/// number of concurrent runs in `levels`.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub sequential: usize,
    pub levels: &'static [usize],
    pub total: usize,
}

/// One concurrency level's outcome, for the table and the plots.
#[derive(Debug, Clone, Copy)]
pub struct Level {
    pub runs: usize,
    pub brokered: Summary,
    pub brokered_rate: f64,
    pub direct: Summary,
    pub direct_rate: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
        }
    }

    /// (service, resource) of the brokered call.
    fn target(self) -> (&'static str, &'static str) {
        match self {
            Op::Read => ("store", "sales/last"),
            Op::Write => ("messaging", "messages"),
        }
    }
}

/// Everything the broker benchmarks share.
pub struct Bench {
    pub launcher: Launcher,
    pub services: Services,
    program: i64,
    operator: reqwest::Client,
    store_url: String,
    messaging_url: String,
    anchor: String,
}

impl Bench {
    pub async fn start() -> anyhow::Result<Self> {
        let services = Services::start()?;
        let launcher = Launcher::start_with(LauncherOptions {
            config: Some(LAUNCHER_CONFIG.into()),
            ..Default::default()
        });
        let anchor = services.ca_pem()?;
        for id in ["store", "taxi", "messaging"] {
            let response = launcher
                .client()
                .put(launcher.url(&format!("/v1/services/{id}")))
                .json(&json!({"base_url": services.base_url(id)?, "ca_pem": anchor}))
                .send()
                .await?;
            expect(response, 201).await;
        }
        services.trust(&launcher.data_dir().join("pki/root.pem"))?;
        let (program, build) = upload_and_build(
            &launcher,
            "broker_bench.c",
            program_source("bench/broker_bench.c"),
            &anchor,
        )
        .await?;
        let exe = build.0["executable_sha256"]
            .as_str()
            .context("the build's executable_sha256")?
            .to_owned();
        services.approve(&exe)?;
        Ok(Self {
            operator: services.operator_client()?,
            store_url: format!("{}/api/sales/last", services.base_url("store")?),
            messaging_url: format!("{}/api/messages", services.base_url("messaging")?),
            launcher,
            services,
            program,
            anchor,
        })
    }

    /// `runs` concurrent runs of `count` calls each, all told to start at the
    /// same moment; every run's report.
    async fn brokered(&self, op: Op, runs: usize, count: usize) -> anyhow::Result<Vec<BenchRun>> {
        let (service, resource) = op.target();
        // Time for every run to start and certify itself before the first call.
        let start_at = unix_ms() + 400 + 30 * runs as u64;
        let mut ids = Vec::with_capacity(runs);
        for _ in 0..runs {
            let args = [
                op.name().to_owned(),
                service.to_owned(),
                resource.to_owned(),
                count.to_string(),
                start_at.to_string(),
            ];
            let run = self
                .launcher
                .run(self.program, json!({"args": args, "time_limit_s": 300}))
                .await;
            ids.push(run["id"].as_i64().context("run id")?);
        }
        let mut reports = Vec::with_capacity(runs);
        for id in ids {
            let run = self.launcher.wait_run(id).await;
            if run["status"] != "exited" || run["exit_code"] != 0 {
                bail!(
                    "benchmark run {id} failed: {run}\nservices' log:\n{}",
                    self.services.log()
                );
            }
            reports.push(parse_bench(&run)?);
        }
        Ok(reports)
    }

    /// The same calls without attestation: `clients` tasks sending `count`
    /// requests each to the operator endpoint, over kept-alive connections.
    async fn direct(
        &self,
        op: Op,
        clients: usize,
        count: usize,
    ) -> anyhow::Result<(Vec<f64>, f64)> {
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let client = self.operator.clone();
                let url = match op {
                    Op::Read => self.store_url.clone(),
                    Op::Write => self.messaging_url.clone(),
                };
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(count);
                    for i in 0..count {
                        let t = Instant::now();
                        let request = match op {
                            Op::Read => client.get(&url),
                            Op::Write => client.post(&url).json(&json!({
                                "phone": "+15550100311",
                                "text": format!("benchmark message {c}/{i}"),
                            })),
                        };
                        let response = request.send().await?;
                        let status = response.status();
                        let body = response.bytes().await?;
                        if !status.is_success() {
                            bail!("{url}: {status}: {}", String::from_utf8_lossy(&body));
                        }
                        lat.push(t.elapsed().as_secs_f64() * 1e6);
                    }
                    Ok::<_, anyhow::Error>(lat)
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await??);
        }
        let rate = all.len() as f64 / started.elapsed().as_secs_f64();
        Ok((all, rate))
    }

    /// Sequential latency (one run), then throughput at each concurrency.
    pub async fn calls(
        &self,
        table: &mut Table,
        op: Op,
        load: &Load,
        memory: Option<&mut Memory>,
        floor_ms: Option<f64>,
    ) -> anyhow::Result<Vec<Level>> {
        let Load {
            sequential,
            levels,
            total,
        } = *load;
        let name = op.name();
        // Warm the direct path's connection, the launcher's service client and
        // the service's chain cache.
        self.direct(op, 1, 20).await?;
        self.brokered(op, 1, 20).await?;

        let launcher_pid = self.launcher.pid().context("the launcher's pid")?;
        let services_pid = self.services.pid().context("the services' pid")?;
        let (l0, s0) = (cpu_ns(launcher_pid), cpu_ns(services_pid));
        let runs = self.brokered(op, 1, sequential).await?;
        let (l1, s1) = (cpu_ns(launcher_pid), cpu_ns(services_pid));
        let brokered = Summary::of_us(&runs[0].lat_us);
        let (b0, s2) = (cpu_ns(std::process::id()), cpu_ns(services_pid));
        let (direct, _) = self.direct(op, 1, sequential).await?;
        let (b1, s3) = (cpu_ns(std::process::id()), cpu_ns(services_pid));
        let direct = Summary::of_us(&direct);
        let per_call = |ns: u64| Figure::Cpu(ns as f64 / 1e6 / sequential as f64);
        // The launcher's share includes starting the run and issuing its
        // certificate once: a few hundred µs over the whole run.
        table.against(
            CPU,
            format!("{name}: launcher (relay, records; whole run)"),
            per_call(l1 - l0),
            "direct: the client (reqwest, TLS)",
            per_call(b1 - b0),
        );
        table.against(
            CPU,
            format!("{name}: service (verify, serve, seal, audit)"),
            per_call(s1 - s0),
            "direct: the service (TLS, serve)",
            per_call(s3 - s2),
        );
        table.add(
            CPU,
            format!("{name}: program (SDK: seal, open, channel)"),
            Figure::Cpu(runs[0].cpu_us / 1e3 / sequential as f64),
        );
        let (service, resource) = op.target();
        table.against(
            SEQ,
            format!("brokered {name} {service} {resource}"),
            Figure::Latency(brokered),
            "direct HTTPS to the operator endpoint, no attestation",
            Figure::Latency(direct),
        );
        // The same calls as the launcher timed them: its relay to the service
        // and back; the rest is the program's side and the channel.
        let calls = self
            .launcher
            .get(&format!("/v1/runs/{}/calls", runs[0].id), 200)
            .await;
        let relayed: Vec<f64> = calls
            .as_array()
            .context("the run's calls")?
            .iter()
            .filter_map(|c| c["latency_us"].as_f64())
            .collect();
        table.against(
            SEQ,
            format!("  of which launcher → {service} → launcher (the launcher's record)"),
            Figure::Latency(Summary::of_us(&relayed)),
            "direct HTTPS to the operator endpoint, no attestation",
            Figure::Latency(direct),
        );
        if let Some(floor) = floor_ms {
            table.add(
                SEQ,
                format!("  cryptographic floor of one {name} (section 2 medians, both ends)"),
                Figure::Cpu(floor),
            );
        }

        let mut memory = memory;
        let mut out = Vec::new();
        for &k in levels {
            let count = (total / k).max(10);
            let sampler = match (&mut memory, k) {
                (Some(m), 100) => Some(m.sample(self.launcher.pid())),
                _ => None,
            };
            let reports = self.brokered(op, k, count).await?;
            if let (Some(sampler), Some(m)) = (sampler, memory.as_deref_mut()) {
                m.loaded = Some(sampler.stop());
            }
            let late = reports.iter().filter(|r| r.late_us > 0.0).count();
            let lat: Vec<f64> = reports.iter().flat_map(|r| r.lat_us.clone()).collect();
            let first = reports.iter().map(|r| r.start_ms).fold(f64::MAX, f64::min);
            let last = reports.iter().map(|r| r.end_ms).fold(0.0, f64::max);
            let rate = lat.len() as f64 / ((last - first) / 1e3);
            let (direct, direct_rate) = self.direct(op, k, count).await?;
            let level = Level {
                runs: k,
                brokered: Summary::of_us(&lat),
                brokered_rate: rate,
                direct: Summary::of_us(&direct),
                direct_rate,
            };
            let late_note = if late > 0 {
                format!(" ({late} started late)")
            } else {
                String::new()
            };
            table.against(
                CONC,
                format!("brokered {name}s, {k} runs × {count}: latency{late_note}"),
                Figure::Latency(level.brokered),
                format!("direct, {k} clients"),
                Figure::Latency(level.direct),
            );
            table.against(
                CONC,
                format!("brokered {name}s, {k} runs × {count}: throughput"),
                Figure::Rate {
                    per_s: rate,
                    ops: lat.len(),
                },
                format!("direct, {k} clients"),
                Figure::Rate {
                    per_s: direct_rate,
                    ops: direct.len(),
                },
            );
            out.push(level);
        }
        Ok(out)
    }

    /// The case study: upload → build → run to `exited`, against a run of an
    /// empty program on the same launcher.
    pub async fn case_study(
        &self,
        table: &mut Table,
        builds: usize,
        runs: usize,
    ) -> anyhow::Result<()> {
        let source = std::fs::read(
            attestable_tests::workspace_root().join("integration-process/integration_process.c"),
        )?;
        let (mut uploads, mut compiles, mut program) = (Vec::new(), Vec::new(), 0);
        for _ in 0..builds {
            let (id, (_, upload, compile)) = {
                let (id, b) = upload_and_build(
                    &self.launcher,
                    "integration_process.c",
                    source.clone(),
                    &self.anchor,
                )
                .await?;
                self.services.approve(
                    b.0["executable_sha256"]
                        .as_str()
                        .context("executable_sha256")?,
                )?;
                (id, b)
            };
            program = id;
            uploads.push(upload);
            compiles.push(compile);
        }
        let (empty, _) = upload_and_build(
            &self.launcher,
            "empty.c",
            b"int main(void) { return 0; }\n".to_vec(),
            &self.anchor,
        )
        .await?;
        // One run of each first: caches warm as they would be on a running launcher.
        run_to_exit(&self.launcher, program).await?;
        run_to_exit(&self.launcher, empty).await?;
        let (mut wall, mut recorded, mut empty_wall) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let (t, run) = run_to_exit(&self.launcher, program).await?;
            wall.push(t);
            recorded.push(run["duration_ms"].as_f64().unwrap_or(f64::NAN));
            empty_wall.push(run_to_exit(&self.launcher, empty).await?.0);
        }
        let upload = Summary::of(&uploads);
        let run = Summary::of(&wall);
        let end_to_end: Vec<Duration> = wall
            .iter()
            .map(|w| *w + Duration::from_secs_f64(upload.median / 1e3))
            .collect();
        let empty = Figure::Latency(Summary::of(&empty_wall));
        table.add(CASE, "upload (POST /v1/programs)", Figure::Latency(upload));
        table.add(
            CASE,
            "compile (POST …/builds, cc -O2 with the SDK)",
            Figure::Latency(Summary::of(&compiles)),
        );
        table.against(
            CASE,
            "run: POST …/runs → `exited` (6 brokered steps)",
            Figure::Latency(run),
            "a run of an empty program",
            empty,
        );
        table.add(
            CASE,
            "run as the launcher records it (started → ended)",
            Figure::Latency(Summary::of_ms(recorded)),
        );
        table.against(
            CASE,
            "whole case study excluding compilation (upload + run)",
            Figure::Latency(Summary::of(&end_to_end)),
            "a run of an empty program",
            empty,
        );
        Ok(())
    }
}

/// Uploads `source` and builds it with `anchor`; (program id, (build, upload time, build time)).
async fn upload_and_build(
    launcher: &Launcher,
    name: &str,
    source: Vec<u8>,
    anchor: &str,
) -> anyhow::Result<(i64, (Value, Duration, Duration))> {
    let t = Instant::now();
    let program = launcher.upload_ok(name, source).await;
    let upload = t.elapsed();
    let id = program["id"].as_i64().context("program id")?;
    let t = Instant::now();
    let build = expect(
        launcher
            .build_with(id, json!({"services_anchor_pem": anchor}))
            .await,
        201,
    )
    .await;
    let compile = t.elapsed();
    if build["status"] != "succeeded" {
        bail!("building {name} failed: {build}");
    }
    Ok((id, (build, upload, compile)))
}

/// Starts a run and follows its events to the end: (POST → end, the run).
async fn run_to_exit(launcher: &Launcher, program: i64) -> anyhow::Result<(Duration, Value)> {
    let t = Instant::now();
    let run = launcher
        .run(program, json!({"args": [], "time_limit_s": 60}))
        .await;
    let id = run["id"].as_i64().context("run id")?;
    let mut response = loop {
        let response = launcher
            .client()
            .get(launcher.url(&format!("/v1/runs/{id}/events")))
            .send()
            .await?;
        // 409: the run is not under supervision yet (a moment after it is created).
        if response.status() != 409 {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let mut pending = Vec::new();
    let end = 'stream: loop {
        let Some(chunk) = response.chunk().await? else {
            bail!("run {id}'s events ended without an end line");
        };
        pending.extend_from_slice(&chunk);
        while let Some(at) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=at).collect();
            let event: Value = serde_json::from_slice(&line)?;
            if event["type"] == "end" {
                break 'stream event;
            }
        }
    };
    let elapsed = t.elapsed();
    let run = end["run"].clone();
    if run["status"] != "exited" || run["exit_code"] != 0 {
        let full = launcher.get(&format!("/v1/runs/{id}"), 200).await;
        bail!("run {id} did not exit 0: {full}");
    }
    Ok((elapsed, run))
}

/// The launcher's resident memory.
#[derive(Debug, Default)]
pub struct Memory {
    pub idle: Option<u64>,
    /// Largest VmRSS seen while 100 runs were live, and its breakdown.
    pub loaded: Option<(u64, String)>,
    pub after: Option<u64>,
}

pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, String)>,
}

impl Sampler {
    /// The largest VmRSS seen, and what made it up then.
    fn stop(self) -> (u64, String) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

/// RssAnon, RssFile, RssShmem and Threads of `pid`, on one line.
fn breakdown(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .filter(|l| {
            ["RssAnon", "RssFile", "RssShmem", "Threads"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

/// CPU time of every live thread of process `pid` so far, in ns
/// (`/proc/<pid>/task/*/schedstat`: finer than the clock ticks of `stat`).
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// VmRSS of `pid`, in bytes.
pub fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl Memory {
    fn sample(&mut self, pid: Option<u32>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut max, mut parts) = (0, String::new());
            while !flag.load(Ordering::SeqCst) {
                if let Some((pid, v)) = pid.and_then(|p| Some((p, rss(p)?)))
                    && v > max
                {
                    max = v;
                    parts = breakdown(pid);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (max, parts)
        });
        Sampler { stop, thread }
    }

    pub fn report(&self, table: &mut Table) {
        if let Some(idle) = self.idle {
            table.add(
                MEM,
                "launcher idle (services registered, program built)",
                Figure::Bytes(idle),
            );
            if let Some((loaded, parts)) = &self.loaded {
                table.against(
                    MEM,
                    format!("launcher with 100 concurrent runs (peak sampled every 5 ms: {parts})"),
                    Figure::Bytes(*loaded),
                    "idle",
                    Figure::Bytes(idle),
                );
            }
            if let Some(after) = self.after {
                table.against(
                    MEM,
                    "launcher idle again after the load",
                    Figure::Bytes(after),
                    "idle",
                    Figure::Bytes(idle),
                );
            }
        }
    }
}
