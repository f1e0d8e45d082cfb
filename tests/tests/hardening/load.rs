//! Load: many API clients uploading and listing at once, and many runs
//! doing brokered reads at once. No request may fail and the launcher's
//! memory must stay bounded; the figures (requests per second, p99 latency,
//! peak RSS) are printed for docs/SECURITY.md.
//!
//! `HARDENING_LOAD_SECS` sets how long each part lasts (CI: 3 s; the
//! figures in docs/SECURITY.md: 30 s).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use attestable_tests::hardening::{RssSampler, build_program, env_count, percentile};
use attestable_tests::mock::MockServices;
use attestable_tests::{Launcher, LauncherOptions, client, expect};
use serde_json::json;

fn seconds() -> u64 {
    env_count("HARDENING_LOAD_SECS", 3)
}

/// Generous (debug build, 200 TLS connections): the design target is 40 MB
/// with 100 runs in release, measured by the benchmark.
const RSS_BOUND_KIB: u64 = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_clients_uploading_and_listing_never_fail() {
    const CLIENTS: usize = 200;
    let secs = seconds();
    let launcher = Launcher::start();
    let rss = RssSampler::start(launcher.pid().unwrap() as i64);
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            // One client (one connection) each, as 200 separate users would have.
            let http = client(launcher.root_pem(), Some(launcher.token()));
            let base = launcher.url("");
            let failures = failures.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut first_failure = None;
                let mut n = 0;
                while Instant::now() < deadline {
                    n += 1;
                    let name = format!("load-{c}-{n}.c");
                    let source =
                        format!("/* {name} */\nint main(void) {{ return {}; }}\n", n % 100);
                    let part = reqwest::multipart::Part::bytes(source.into_bytes()).file_name(name);
                    let form = reqwest::multipart::Form::new().part("file", part);
                    let t = Instant::now();
                    let upload = http
                        .post(format!("{base}/v1/programs"))
                        .multipart(form)
                        .send()
                        .await;
                    let ok = match upload {
                        Ok(r) if r.status() == 201 => r.bytes().await.is_ok(),
                        Ok(r) => {
                            first_failure.get_or_insert(format!("upload: {}", r.status()));
                            false
                        }
                        Err(e) => {
                            first_failure.get_or_insert(format!("upload: {e}"));
                            false
                        }
                    };
                    latencies.push(t.elapsed().as_micros() as u64);
                    if !ok {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                    let t = Instant::now();
                    let list = http.get(format!("{base}/v1/programs")).send().await;
                    let ok = match list {
                        Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                        Ok(r) => {
                            first_failure.get_or_insert(format!("list: {}", r.status()));
                            false
                        }
                        Err(e) => {
                            first_failure.get_or_insert(format!("list: {e}"));
                            false
                        }
                    };
                    latencies.push(t.elapsed().as_micros() as u64);
                    if !ok {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
                (latencies, first_failure)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut first_failure = None;
    for task in tasks {
        let (l, f) = task.await.unwrap();
        latencies.extend(l);
        first_failure = first_failure.or(f);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let peak = rss.finish();
    let failed = failures.load(Ordering::SeqCst);
    assert_eq!(
        failed, 0,
        "{failed} requests failed, the first: {first_failure:?}"
    );
    let requests = latencies.len();
    let (p50, p99) = (
        percentile(&mut latencies, 50.0),
        percentile(&mut latencies, 99.0),
    );
    let max = latencies.last().copied().unwrap_or(0);
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB");
    println!(
        "load (API): {CLIENTS} clients uploading and listing for {secs} s: {requests} requests, \
         0 failed, {:.0} requests/s, latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; launcher \
         peak RSS {:.1} MiB",
        requests as f64 / elapsed,
        p50 as f64 / 1000.0,
        p99 as f64 / 1000.0,
        max as f64 / 1000.0,
        peak as f64 / 1024.0
    );
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_runs_doing_brokered_reads_never_fail() {
    const RUNS: usize = 100;
    let secs = seconds();
    let launcher = Launcher::start_with(LauncherOptions {
        config: Some(format!("[runs]\nmax_concurrent = {RUNS}\n")),
        ..Default::default()
    });
    let mock = MockServices::start();
    let root = launcher.data_dir().join("pki/root.pem");
    mock.policy(&[
        "trust-root",
        "--service",
        "store",
        "--ca",
        root.to_str().unwrap(),
    ]);
    let ca = mock.services_ca_pem();
    let response = launcher
        .client()
        .put(launcher.url("/v1/services/store"))
        .json(&json!({"base_url": mock.base_url("store"), "ca_pem": ca}))
        .send()
        .await
        .unwrap();
    expect(response, 201).await;
    let (program, build) = build_program(&launcher, "hardening/reader.c", Some(&ca)).await;
    let exe = build["executable_sha256"].as_str().unwrap();
    mock.policy(&["allow", "--service", "store", "--sha256", exe]);
    // The policy is reloaded within 50 ms; a read before that would be denied.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !mock.log().lines().any(|l| {
        l.contains("policy reloaded") && l.contains("service=store") && !l.contains("allow_rules=0")
    }) {
        assert!(
            Instant::now() < deadline,
            "policy not reloaded:\n{}",
            mock.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let rss = RssSampler::start(launcher.pid().unwrap() as i64);
    let started = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..RUNS {
        let run = launcher
            .run(
                program,
                json!({"args": ["store", "sales/last", secs.to_string()], "time_limit_s": secs + 120}),
            )
            .await;
        ids.push(run["id"].as_i64().unwrap());
    }
    let mut latencies: Vec<u64> = Vec::new();
    let mut concurrent_peak = 0;
    for id in &ids {
        let run = launcher.wait_run(*id).await;
        let stdout = run["stdout"].as_str().unwrap_or("");
        assert_eq!(run["status"], "exited", "run {id}: {run}");
        assert_eq!(run["exit_code"], 0, "run {id} had failed reads: {stdout}");
        let mut lines = stdout.lines();
        let counts = lines.next().unwrap_or("");
        assert!(counts.ends_with("failed=0"), "run {id}: {counts}");
        let lat = lines
            .next()
            .unwrap_or("")
            .strip_prefix("latencies_us")
            .unwrap_or("");
        latencies.extend(lat.split_whitespace().map(|v| v.parse::<u64>().unwrap()));
        concurrent_peak += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let peak = rss.finish();
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB");
    assert!(!latencies.is_empty());
    let reads = latencies.len();
    let (p50, p99) = (
        percentile(&mut latencies, 50.0),
        percentile(&mut latencies, 99.0),
    );
    println!(
        "load (brokered reads): {concurrent_peak} runs at once reading store:sales/last through \
         the launcher for {secs} s: {reads} reads, 0 failed, {:.0} reads/s, latency p50 {:.1} ms, \
         p99 {:.1} ms; launcher peak RSS {:.1} MiB",
        reads as f64 / secs as f64,
        p50 as f64 / 1000.0,
        p99 as f64 / 1000.0,
        peak as f64 / 1024.0
    );
    let _ = elapsed;
    launcher.stop();
    mock.stop();
}
