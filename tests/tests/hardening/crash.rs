//! Crash safety. The launcher is killed with SIGKILL while uploads, builds
//! and runs are under way, many times over, and restarted on the same data
//! folder; after each restart nothing committed is lost and nothing is left
//! behind. The same for the services while programs write to them.
//!
//! `HARDENING_CYCLES` sets the number of kills (CI: 15); `HARDENING_SEED`
//! replays a sequence of kill points (the seed is printed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attestable_tests::hardening::{
    CrashableServices, ProcessId, Rng, build_program, descendants, env_count, sqlite_integrity,
    sqlite_read_only, survivors,
};
use attestable_tests::{
    Launcher, LauncherOptions, expect, files_under, is_terminal, program_source, sha256_hex,
};
use serde_json::{Value, json};

/// How long killed children get to disappear: they are killed by the kernel
/// (PR_SET_PDEATHSIG, or the end of their PID namespace), not by us.
const DEATH_TIMEOUT: Duration = Duration::from_secs(10);

fn cycles() -> u64 {
    env_count("HARDENING_CYCLES", 15)
}

/// What the API confirmed (201/202): none of it may be lost.
#[derive(Default)]
struct Ledger {
    /// program id → (name, source SHA-256)
    uploads: Mutex<BTreeMap<i64, (String, String)>>,
    /// build id → executable SHA-256
    builds: Mutex<BTreeMap<i64, String>>,
    runs: Mutex<BTreeSet<i64>>,
}

/// Requests under way, to report what each kill interrupted.
#[derive(Default)]
struct InFlight {
    uploads: AtomicUsize,
    builds: AtomicUsize,
}

struct Guard<'a>(&'a AtomicUsize);

impl<'a> Guard<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A C source no other upload has: comments of `pad` bytes make some of them
/// large enough to be caught while being staged.
fn unique_source(tag: &str, pad: usize) -> Vec<u8> {
    let mut text = format!(
        "/* {tag} */\n#include <stdio.h>\nint main(void) {{ puts(\"{tag}\"); return 0; }}\n"
    );
    let line = "/* padding padding padding padding padding padding padding padding */\n";
    while text.len() < pad {
        text.push_str(line);
    }
    text.into_bytes()
}

async fn upload(client: &reqwest::Client, base: &str, name: &str, bytes: Vec<u8>) -> Option<Value> {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
    let form = reqwest::multipart::Form::new().part("file", part);
    let response = client
        .post(format!("{base}/v1/programs"))
        .multipart(form)
        .send()
        .await
        .ok()?;
    if response.status() != 201 {
        return None;
    }
    response.json().await.ok()
}

/// What the workers of one kill cycle share.
#[derive(Clone)]
struct Cycle {
    number: u64,
    client: reqwest::Client,
    base: String,
    /// `hello.c` and `loop.c`, built.
    programs: (i64, i64),
    ledger: Arc<Ledger>,
    in_flight: Arc<InFlight>,
    stop: Arc<AtomicBool>,
}

/// Uploads, builds and runs until `stop`; records what the API confirmed.
/// `pad` makes every third upload that many bytes longer.
async fn workload(worker: usize, shared: Cycle, pad: usize) {
    let Cycle {
        number: cycle,
        client,
        base,
        programs: (hello, looping),
        ledger,
        in_flight,
        stop,
    } = shared;
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        match worker {
            // Uploaders.
            0..=2 => {
                let name = format!("c{cycle}-w{worker}-{n}.c");
                let bytes = unique_source(&name, if n % 3 == 0 { pad } else { 0 });
                let sha = sha256_hex(&bytes);
                let _guard = Guard::new(&in_flight.uploads);
                if let Some(program) = upload(&client, &base, &name, bytes).await {
                    let id = program["id"].as_i64().expect("program id");
                    assert_eq!(program["source_sha256"], sha.as_str(), "{program}");
                    ledger.uploads.lock().unwrap().insert(id, (name, sha));
                }
            }
            // A builder: a program of its own each time, so each build stores a new executable.
            3 => {
                let name = format!("c{cycle}-build-{n}.c");
                let bytes = unique_source(&name, 0);
                let sha = sha256_hex(&bytes);
                let Some(program) = ({
                    let _guard = Guard::new(&in_flight.uploads);
                    upload(&client, &base, &name, bytes).await
                }) else {
                    continue;
                };
                let id = program["id"].as_i64().unwrap();
                ledger.uploads.lock().unwrap().insert(id, (name, sha));
                let _guard = Guard::new(&in_flight.builds);
                let Ok(response) = client
                    .post(format!("{base}/v1/programs/{id}/builds"))
                    .send()
                    .await
                else {
                    continue;
                };
                if response.status() == 201
                    && let Ok(build) = response.json::<Value>().await
                {
                    assert_eq!(build["status"], "succeeded", "{build}");
                    let exe = build["executable_sha256"].as_str().unwrap().to_owned();
                    ledger
                        .builds
                        .lock()
                        .unwrap()
                        .insert(build["id"].as_i64().unwrap(), exe);
                }
            }
            // Runners: one long run per cycle, then short ones.
            _ => {
                let (program, body) = if n == 1 {
                    (looping, json!({"time_limit_s": 120}))
                } else {
                    (hello, json!({"args": [format!("{cycle}-{n}")]}))
                };
                let Ok(response) = client
                    .post(format!("{base}/v1/programs/{program}/runs"))
                    .json(&body)
                    .send()
                    .await
                else {
                    continue;
                };
                if response.status() == 202 {
                    if let Ok(run) = response.json::<Value>().await {
                        ledger
                            .runs
                            .lock()
                            .unwrap()
                            .insert(run["id"].as_i64().unwrap());
                    }
                } else {
                    // The queue may be full while runs pile up; that is an answer, not a loss.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// Figures over all cycles.
#[derive(Debug, Default)]
struct Tally {
    kills_during_uploads: u64,
    kills_during_builds: u64,
    kills_with_live_runs: u64,
    interrupted_runs: u64,
    interrupted_builds: u64,
    children_killed: u64,
}

/// Everything that must hold after a restart, before anything new happens.
fn check_recovered(data: &Path, ledger: &Ledger, cycle: u64) -> (u64, u64) {
    let db = data.join("launcher.db");
    assert_eq!(
        sqlite_integrity(&db),
        "ok",
        "cycle {cycle}: integrity_check"
    );
    let conn = sqlite_read_only(&db);

    let programs: BTreeMap<i64, (String, String)> = conn
        .prepare("SELECT id, name, source_sha256 FROM programs")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (id, expected) in ledger.uploads.lock().unwrap().iter() {
        assert_eq!(
            programs.get(id),
            Some(expected),
            "cycle {cycle}: program {id} confirmed by a 201 is lost or changed"
        );
    }
    let builds: BTreeMap<i64, (String, Option<String>)> = conn
        .prepare("SELECT id, status, executable_sha256 FROM builds")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (id, exe) in ledger.builds.lock().unwrap().iter() {
        assert_eq!(
            builds.get(id),
            Some(&("succeeded".to_owned(), Some(exe.clone()))),
            "cycle {cycle}: build {id} confirmed by a 201 is lost or changed"
        );
    }
    assert!(
        builds.values().all(|(status, _)| status != "running"),
        "cycle {cycle}: a build is still running after the restart"
    );
    let runs: BTreeMap<i64, (String, Option<String>)> = conn
        .prepare("SELECT id, status, error FROM runs")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for id in ledger.runs.lock().unwrap().iter() {
        assert!(
            runs.contains_key(id),
            "cycle {cycle}: run {id} confirmed by a 202 is lost"
        );
    }
    for (id, (status, error)) in &runs {
        assert!(
            is_terminal(status),
            "cycle {cycle}: run {id} is still {status} after the restart"
        );
        if status == "interrupted" {
            let error = error.as_deref().unwrap_or("");
            assert!(
                error.contains("stopped while the run was live") || error.contains("shut down"),
                "cycle {cycle}: run {id} interrupted without its cause: {error:?}"
            );
        }
    }

    // The store holds exactly the files rows refer to, each with its digest.
    let mut referenced: BTreeSet<String> = programs.values().map(|(_, sha)| sha.clone()).collect();
    referenced.extend(builds.values().filter_map(|(_, exe)| exe.clone()));
    let stored: BTreeSet<String> = files_under(&data.join("store/sha256"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let orphans: Vec<_> = stored.difference(&referenced).collect();
    let missing: Vec<_> = referenced.difference(&stored).collect();
    assert!(
        orphans.is_empty(),
        "cycle {cycle}: orphan files in the store: {orphans:?}"
    );
    assert!(
        missing.is_empty(),
        "cycle {cycle}: files of rows missing: {missing:?}"
    );
    for sha in ledger.uploads.lock().unwrap().values().map(|(_, sha)| sha) {
        let path = data.join("store/sha256").join(&sha[..2]).join(sha);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            &sha256_hex(&bytes),
            sha,
            "cycle {cycle}: {} altered",
            path.display()
        );
    }
    for dir in ["store/tmp", "builds", "runs"] {
        let left = files_under(&data.join(dir));
        let folders = std::fs::read_dir(data.join(dir))
            .map(|d| d.count())
            .unwrap_or(0);
        assert!(
            left.is_empty() && folders == 0,
            "cycle {cycle}: leftovers in {dir}: {left:?}"
        );
    }
    let interrupted_runs = runs
        .values()
        .filter(|(s, e)| {
            s == "interrupted" && e.as_deref().is_some_and(|e| e.contains("stopped while"))
        })
        .count() as u64;
    let interrupted_builds = builds.values().filter(|(s, _)| s == "interrupted").count() as u64;
    (interrupted_runs, interrupted_builds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_uploads_builds_and_runs_loses_nothing_and_leaves_nothing() {
    let cycles = cycles();
    let mut rng = Rng::from_env("crash");
    let mut launcher = Launcher::start_with(LauncherOptions {
        config: Some("[runs]\nmax_concurrent = 8\nmax_queued = 64\n".into()),
        ..Default::default()
    });
    let hello = launcher
        .upload_ok("hello.c", program_source("hello.c"))
        .await["id"]
        .as_i64()
        .unwrap();
    let looping = launcher.upload_ok("loop.c", program_source("loop.c")).await["id"]
        .as_i64()
        .unwrap();
    let ledger = Arc::new(Ledger::default());
    for program in [hello, looping] {
        let build = launcher.build_ok(program).await;
        let exe = build["executable_sha256"].as_str().unwrap().to_owned();
        ledger
            .builds
            .lock()
            .unwrap()
            .insert(build["id"].as_i64().unwrap(), exe);
    }
    for (name, id) in [("hello.c", hello), ("loop.c", looping)] {
        let source = program_source(name);
        ledger
            .uploads
            .lock()
            .unwrap()
            .insert(id, (name.to_owned(), sha256_hex(&source)));
    }

    let mut tally = Tally::default();
    for cycle in 1..=cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(InFlight::default());
        let shared = Cycle {
            number: cycle,
            client: launcher.client().clone(),
            base: launcher.url(""),
            programs: (hello, looping),
            ledger: ledger.clone(),
            in_flight: in_flight.clone(),
            stop: stop.clone(),
        };
        let workers: Vec<_> = (0..6)
            .map(|worker| {
                let pad = rng.range(64 * 1024, 2 << 20) as usize;
                tokio::spawn(workload(worker, shared.clone(), pad))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.range(150, 2500))).await;

        // What runs under the launcher right now, and what is under way.
        let pid = launcher.pid().unwrap() as i64;
        let children: Vec<ProcessId> = descendants(pid);
        let live_runs = launcher
            .get_all("/v1/runs")
            .await
            .iter()
            .filter(|r| r["status"] == "running")
            .count();
        tally.kills_during_uploads += u64::from(in_flight.uploads.load(Ordering::SeqCst) > 0);
        tally.kills_during_builds += u64::from(in_flight.builds.load(Ordering::SeqCst) > 0);
        tally.kills_with_live_runs += u64::from(live_runs > 0);

        let crashed = launcher.kill();
        stop.store(true, Ordering::SeqCst);
        for worker in workers {
            worker.await.expect("a workload task panicked");
        }
        let left = survivors(&children, DEATH_TIMEOUT);
        assert!(
            left.is_empty(),
            "cycle {cycle}: children of the killed launcher still alive: {left:?}"
        );
        tally.children_killed += children.len() as u64;

        launcher = crashed.restart();
        assert!(
            launcher.log().contains("recovered from an unclean stop"),
            "cycle {cycle}"
        );
        let (runs, builds) = check_recovered(&launcher.data_dir(), &ledger, cycle);
        tally.interrupted_runs = runs;
        tally.interrupted_builds = builds;
    }

    // Still serving as before: every confirmed program is there, and runs work.
    let listed = launcher.get_all("/v1/programs").await;
    let ids: BTreeSet<i64> = listed.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert!(
        ledger
            .uploads
            .lock()
            .unwrap()
            .keys()
            .all(|id| ids.contains(id))
    );
    let run = launcher.run(hello, json!({"args": ["after"]})).await;
    let run = launcher.wait_run(run["id"].as_i64().unwrap()).await;
    assert_eq!(run["status"], "exited", "{run}");
    assert_eq!(run["exit_code"], 3, "{run}");
    let source = expect(
        launcher
            .client()
            .get(launcher.url(&format!("/v1/programs/{hello}")))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(source["name"], "hello.c");
    println!(
        "crash: {cycles} SIGKILL cycles, nothing lost: {} uploads, {} builds and {} runs confirmed \
         and present after every restart; kills during an upload {}, during a build {}, with runs \
         live {}; {} runs and {} builds marked interrupted; {} children of the launcher killed \
         with it; integrity_check ok, no orphan or temporary file",
        ledger.uploads.lock().unwrap().len(),
        ledger.builds.lock().unwrap().len(),
        ledger.runs.lock().unwrap().len(),
        tally.kills_during_uploads,
        tally.kills_during_builds,
        tally.kills_with_live_runs,
        tally.interrupted_runs,
        tally.interrupted_builds,
        tally.children_killed,
    );
    launcher.stop();
}

/// A run's process dies with a launcher killed by SIGKILL, whatever the
/// backend: the sandbox by its PID namespace and death signal, `none` by
/// the death signal it now gets too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_of_a_killed_launcher_do_not_survive_it() {
    for serve_args in [vec![], vec!["--insecure-no-compartment".to_owned()]] {
        let launcher = Launcher::start_with(LauncherOptions {
            serve_args: serve_args.clone(),
            ..Default::default()
        });
        let (run, pid) = launcher.start_endless_run().await;
        let children = descendants(launcher.pid().unwrap() as i64);
        let program_process = ProcessId::of(pid).expect("the run's process");
        assert!(children.contains(&program_process), "{children:?}");
        let crashed = launcher.kill();
        let left = survivors(&children, DEATH_TIMEOUT);
        assert!(
            left.is_empty(),
            "{serve_args:?}: still alive after the launcher was killed: {left:?}"
        );
        let launcher = crashed.restart();
        let after = launcher.get(&format!("/v1/runs/{run}"), 200).await;
        assert_eq!(after["status"], "interrupted", "{after}");
        launcher.stop();
    }
}

/// Waits until the services have put in force a policy with allow rules.
fn wait_for_policy(services: &CrashableServices, service: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let loaded = services.log().lines().any(|l| {
            l.contains("policy reloaded")
                && l.contains(&format!("service={service}"))
                && !l.contains("allow_rules=0")
        });
        if loaded {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "policy not reloaded:\n{}",
            services.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_service_during_writes_loses_no_acknowledged_write() {
    let cycles = cycles();
    let mut rng = Rng::from_env("service crash");
    let launcher = Launcher::start();
    let mut services = CrashableServices::start();
    let root = launcher.data_dir().join("pki/root.pem");
    services.policy(&[
        "trust-root",
        "--service",
        "messaging",
        "--ca",
        root.to_str().unwrap(),
    ]);
    let ca = services.services_ca_pem();
    let response = launcher
        .client()
        .put(launcher.url("/v1/services/messaging"))
        .json(&json!({"base_url": services.base_url("messaging"), "ca_pem": ca}))
        .send()
        .await
        .unwrap();
    expect(response, 201).await;
    let (program, build) = build_program(&launcher, "hardening/messenger.c", Some(&ca)).await;
    let exe = build["executable_sha256"].as_str().unwrap();
    services.policy(&["allow", "--service", "messaging", "--sha256", exe]);
    wait_for_policy(&services, "messaging");

    let tag = format!("hardening-{}", rng.next_u64() % 1_000_000);
    let run = launcher
        .run(
            program,
            json!({"args": ["+15555550123", tag, "100000000"], "time_limit_s": 3600}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    launcher
        .wait_run_until(run, |r| r["status"] == "running")
        .await;
    let db = services.data_dir().join("messaging/messaging.db");
    for cycle in 1..=cycles {
        tokio::time::sleep(Duration::from_millis(rng.range(100, 800))).await;
        services.crash_and_restart();
        assert_eq!(sqlite_integrity(&db), "ok", "cycle {cycle}: messaging.db");
    }
    // Let it write a little more after the last restart, then stop it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancelled = expect(
        launcher
            .client()
            .post(launcher.url(&format!("/v1/runs/{run}/cancel")))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let run = launcher.get(&format!("/v1/runs/{run}"), 200).await;
    let stdout = run["stdout"].as_str().unwrap();
    assert!(
        !run["stdout_truncated"].as_bool().unwrap(),
        "raise the output limit"
    );

    let stored: BTreeMap<i64, String> = sqlite_read_only(&db)
        .prepare("SELECT id, text FROM messages")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut acked = 0;
    let mut failed = 0;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("ack ") {
            let (n, id) = rest.split_once(" id=").unwrap();
            let id: i64 = id.parse().unwrap_or_else(|_| panic!("{line}"));
            assert_eq!(
                stored.get(&id).map(String::as_str),
                Some(format!("{tag} {n}").as_str()),
                "acknowledged message {n} (id {id}) is not in messaging.db"
            );
            acked += 1;
        } else if line.starts_with("fail ") {
            // While the service is down: refused, reset or timed out, with the reason.
            assert!(line.contains("nack=service_"), "{line}");
            failed += 1;
        }
    }
    assert!(acked > 0, "no write was acknowledged: {stdout}");
    assert!(failed > 0, "no write failed: the kills missed the writes");
    println!(
        "service crash: {cycles} SIGKILL cycles of mock-services during writes, {acked} \
         acknowledged writes all present after the restarts, {failed} writes refused while \
         down; integrity_check ok after every restart"
    );
    launcher.stop();
    services.stop();
}
