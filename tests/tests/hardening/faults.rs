//! Faults: services down, slow or answering garbage, a full disk, and
//! programs that flood the channel or never read it. In each case the
//! launcher stays responsive (`/healthz` and a normal run alongside) and
//! every failure is reported with its cause.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use attestable_tests::channel_programs::{build, field, line, run_id, run_to_end};
use attestable_tests::hardening::{RssSampler, build_program, sqlite_integrity, store_mismatches};
use attestable_tests::service::{Behaviour, ServicesCa, TestService};
use attestable_tests::{Launcher, LauncherOptions, files_under, program_source};
use serde_json::{Value, json};

/// Polls `/healthz` every 20 ms until stopped: (answers 200, failures).
struct HealthProbe {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl HealthProbe {
    fn start(launcher: &Launcher) -> Self {
        let (ok, failed, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let client = launcher.anonymous();
        let url = launcher.url("/healthz");
        let task = {
            let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::SeqCst),
                        _ => failed.fetch_add(1, Ordering::SeqCst),
                    };
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Self {
            ok,
            failed,
            stop,
            task,
        }
    }

    /// Stops; asserts every probe was answered. Returns how many were.
    async fn finish(self, what: &str) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        let (ok, failed) = (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        );
        assert_eq!(failed, 0, "{what}: /healthz failed {failed} times");
        assert!(ok > 0, "{what}: /healthz never answered");
        ok
    }
}

/// A normal run alongside the fault: hello.c exits 3 with its output.
async fn normal_run(launcher: &Launcher, hello: i64, what: &str) {
    let run = launcher.run(hello, json!({"args": [what]})).await;
    let run = launcher.wait_run(run["id"].as_i64().unwrap()).await;
    assert_eq!(run["status"], "exited", "{what}: {run}");
    assert_eq!(run["exit_code"], 3, "{what}: {run}");
    assert!(run["stdout"].as_str().unwrap().contains(what), "{run}");
}

fn reason(line: &str) -> &str {
    line.split_once("reason=").map(|(_, r)| r).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_down_slow_or_answering_garbage_are_nacks_with_their_cause() {
    let launcher = Launcher::start_with(LauncherOptions {
        config: Some("[broker]\nrequest_timeout_ms = 1000\nconnect_timeout_ms = 1000\n".into()),
        ..Default::default()
    });
    let ca = ServicesCa::new("faults services CA");
    let (program, build) = build(&launcher, "sdk_client.c", Some(&ca.pem)).await;
    let exe = build["executable_sha256"].as_str().unwrap().to_owned();
    let hello = launcher
        .upload_ok("hello.c", program_source("hello.c"))
        .await["id"]
        .as_i64()
        .unwrap();
    launcher.build_ok(hello).await;
    let root = String::from_utf8(launcher.root_pem().to_vec()).unwrap();

    // Each misbehaving service, the NACK the program must get, and what its reason names.
    let faults: [(&str, Behaviour, &str, &str); 7] = [
        (
            "slow",
            Behaviour::Slow(Duration::from_secs(300)),
            "service_unreachable",
            "timeout: no complete answer within 1000 ms",
        ),
        (
            "notjson",
            Behaviour::NotJson,
            "service_error",
            "HTTP 200 without a JSON {\"response\"} body",
        ),
        (
            "teapot",
            Behaviour::Status(418),
            "service_error",
            "answered HTTP 418",
        ),
        (
            "moved",
            Behaviour::Status(302),
            "service_error",
            "answered HTTP 302",
        ),
        (
            "huge",
            Behaviour::HugeAnswer,
            "service_error",
            "more than the channel can carry",
        ),
        (
            "hugecert",
            Behaviour::HugeCertificate,
            "service_error",
            "its certificate is over",
        ),
        (
            "broken",
            Behaviour::BrokenAnswer,
            "service_unreachable",
            "the connection failed during the call",
        ),
    ];
    let mut services = Vec::new();
    for (name, behaviour, _, _) in &faults {
        let service = TestService::start(name, &ca).await;
        service.allow(&root, &exe);
        service.set_behaviour(*behaviour);
        launcher
            .register_service(name, &service.base_url(), &ca.pem)
            .await;
        services.push(service);
    }
    // Down: nothing listens. Other CA: its TLS certificate is not the registered CA's.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    launcher
        .register_service("down", &format!("https://{closed}"), &ca.pem)
        .await;
    let stranger_ca = ServicesCa::new("a CA the launcher was not given");
    let stranger = TestService::start("othertls", &stranger_ca).await;
    launcher
        .register_service("othertls", &stranger.base_url(), &ca.pem)
        .await;

    let probe = HealthProbe::start(&launcher);
    let mut steps: Vec<String> = faults
        .iter()
        .map(|(n, ..)| format!("read:{n}:things"))
        .collect();
    steps.extend([
        "read:down:things".into(),
        "read:othertls:things".into(),
        "write:teapot:notes:note".into(),
    ]);
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    let (run, ()) = tokio::join!(
        run_to_end(&launcher, program, &steps),
        normal_run(&launcher, hello, "alongside-faulty-services"),
    );
    probe.finish("faulty services").await;
    assert_eq!(run["status"], "exited", "{run}");
    assert_eq!(
        run["exit_code"], 1,
        "every step failed, the program did not: {run}"
    );

    let mut expected: Vec<(String, &str, &str)> = faults
        .iter()
        .enumerate()
        .map(|(i, (name, _, code, why))| (format!("{} read {name} error", i + 1), *code, *why))
        .collect();
    let n = faults.len();
    expected.push((
        format!("{} read down error", n + 1),
        "service_unreachable",
        "connection refused",
    ));
    expected.push((
        format!("{} read othertls error", n + 2),
        "service_unreachable",
        "TLS failure",
    ));
    expected.push((
        format!("{} write teapot error", n + 3),
        "service_error",
        "answered HTTP 418",
    ));
    for (prefix, code, why) in &expected {
        let l = line(&run, prefix);
        assert_eq!(field(l, "nack"), *code, "{l}");
        assert!(reason(l).contains(why), "{prefix}: expected {why:?} in {l}");
    }
    // The run's call records say the same, without payloads.
    let calls = launcher
        .get(&format!("/v1/runs/{}/calls", run_id(&run)), 200)
        .await;
    let failures: Vec<&Value> = calls
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] != "ok")
        .collect();
    assert_eq!(failures.len(), expected.len(), "{calls}");
    for call in failures {
        assert!(!call["detail"].as_str().unwrap_or("").is_empty(), "{call}");
    }
    // Still serving like before.
    normal_run(&launcher, hello, "after-faulty-services").await;
    println!(
        "faults: {} kinds of service failure, each a NACK naming its cause; /healthz and a normal run unaffected",
        expected.len()
    );
    launcher.stop();
    for service in services {
        service.stop().await;
    }
    stranger.stop().await;
}

/// A tmpfs mounted at a path, unmounted (lazily) when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts; a machine where this is impossible fails the test, saying why.
    fn mount(at: &std::path::Path, options: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let cstr = |s: &str| std::ffi::CString::new(s).unwrap();
        let (source, target, kind, data) = (
            cstr("tmpfs"),
            cstr(at.to_str().unwrap()),
            cstr("tmpfs"),
            cstr(options),
        );
        // SAFETY: plain syscall on valid C strings.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                kind.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "cannot mount a tmpfs at {} ({}): this test needs root (CAP_SYS_ADMIN) to give the \
             launcher a small disk; it does not skip",
            at.display(),
            std::io::Error::last_os_error()
        );
        Self(at.to_path_buf())
    }

    fn remount(&self, options: &str) {
        let cstr = |s: &str| std::ffi::CString::new(s).unwrap();
        let (target, data) = (cstr(self.0.to_str().unwrap()), cstr(options));
        // SAFETY: plain syscall on valid C strings.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "remount: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: plain syscall.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

async fn try_upload(launcher: &Launcher, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    let response = launcher.upload(name, bytes).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_clearly_and_recovers_once_there_is_space() {
    let tmp = tempfile::Builder::new()
        .prefix("launcher-full-disk-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let disk = Tmpfs::mount(&tmp.path().join("data"), "size=4m,mode=0711");
    let launcher = Launcher::start_in_folder(tmp, LauncherOptions::default());
    let hello = launcher
        .upload_ok("hello.c", program_source("hello.c"))
        .await["id"]
        .as_i64()
        .unwrap();
    launcher.build_ok(hello).await;

    // A run that will end while the disk is full: its end must still be recorded.
    let looping = launcher.upload_ok("loop.c", program_source("loop.c")).await["id"]
        .as_i64()
        .unwrap();
    launcher.build_ok(looping).await;
    let live = launcher.run(looping, json!({"time_limit_s": 3})).await["id"]
        .as_i64()
        .unwrap();
    launcher
        .wait_run_until(live, |r| r["status"] == "running")
        .await;

    // A build that will end while the disk is full: a source slow to compile.
    let mut slow = String::from("/* slow to compile */\n");
    for i in 0..6000 {
        slow.push_str(&format!(
            "int f{i}(int x) {{ int s = 0; for (int i = 0; i < x; i++) s += i * {i} ^ (s >> 3); return s; }}\n"
        ));
    }
    slow.push_str("int main(void) { return f1(3); }\n");
    let slow = launcher.upload_ok("slow.c", slow.into_bytes()).await["id"]
        .as_i64()
        .unwrap();
    let compiling = {
        let (client, url) = (
            launcher.client().clone(),
            launcher.url(&format!("/v1/programs/{slow}/builds")),
        );
        tokio::spawn(async move { client.post(url).send().await.unwrap() })
    };
    let slow_build = loop {
        let builds = launcher
            .get(&format!("/v1/programs/{slow}/builds"), 200)
            .await;
        if let Some(build) = builds.as_array().unwrap().first() {
            assert_eq!(build["status"], "running", "{build}");
            break build["id"].as_i64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    // Fill it: large uploads, then small ones, until even those fail.
    let probe = HealthProbe::start(&launcher);
    let mut refusals = Vec::new();
    let mut stored = 0;
    for size in [256 * 1024, 16 * 1024, 1024] {
        for n in 0..200 {
            let text = format!("/* {size} {n} */\n{}", "x".repeat(size));
            let (status, body) =
                try_upload(&launcher, &format!("fill-{size}-{n}.c"), text.into_bytes()).await;
            if status == 201 {
                stored += 1;
            } else {
                refusals.push((status, body));
                break;
            }
        }
    }
    assert!(
        stored > 0 && refusals.len() == 3,
        "{stored} stored, refusals {refusals:?}"
    );
    for (status, body) in &refusals {
        assert_eq!(*status, 507, "{body}");
        assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        // ENOSPC from the file store, or SQLITE_FULL from the database.
        assert!(
            message.contains("No space left on device") || message.contains("disk is full"),
            "{message}"
        );
        eprintln!("full disk: upload refused: {message}");
    }
    // A build and a run on the full disk: refused or failed, each saying why.
    let build = launcher.build_with(hello, json!({})).await;
    let status = build.status().as_u16();
    let body: Value = build.json().await.unwrap();
    assert!(matches!(status, 422 | 507), "{status} {body}");
    let text = body.to_string();
    assert!(
        text.contains("No space left on device") || text.contains("disk is full"),
        "{text}"
    );
    eprintln!(
        "full disk: build answered {status}: {}",
        body["error"]["message"]
    );
    let run = launcher
        .client()
        .post(launcher.url(&format!("/v1/programs/{hello}/runs")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    if run.status() == 202 {
        let run: Value = run.json().await.unwrap();
        let run = launcher.wait_run(run["id"].as_i64().unwrap()).await;
        assert!(
            run["status"] == "exited" || run["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{run}"
        );
        eprintln!("full disk: run ended {}: {}", run["status"], run["error"]);
    } else {
        let status = run.status().as_u16();
        let body: Value = run.json().await.unwrap();
        assert_eq!(status, 507, "{body}");
        eprintln!(
            "full disk: run refused {status}: {}",
            body["error"]["message"]
        );
    }
    // The slow build ends on the full disk: the compiler fails to write, and
    // so does the launcher; the client hears why.
    let answer = compiling.await.unwrap();
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or("").to_owned();
    eprintln!("full disk: the build that was compiling answered {status}: {message}");
    // The compiler cannot write its output (422, its diagnostics say so), or
    // the launcher cannot write the build's end (507): which comes first
    // depends on who meets the full disk first.
    match status {
        422 => assert!(message.contains("No space left on device"), "{message}"),
        507 => assert!(message.contains("disk is full"), "{message}"),
        _ => panic!("the build answered {status}: {body}"),
    }
    // Its time limit passes while nothing can be written: the end waits to be recorded.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let pending = launcher.get(&format!("/v1/runs/{live}"), 200).await;
    let served = probe.finish("full disk").await;
    assert!(launcher.get_all("/v1/programs").await.len() > stored);

    // Space again: the pending end is recorded, everything works, nothing was half-written.
    disk.remount("size=64m,mode=0711");
    let ended = launcher.wait_run(live).await;
    eprintln!(
        "full disk: the run whose time limit passed meanwhile was {} then, and is now {}: {}",
        pending["status"], ended["status"], ended["error"]
    );
    assert_eq!(ended["status"], "timed_out", "{ended}");
    assert!(launcher.log().contains("retrying until it can be written"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let failed_build = loop {
        let build = launcher.get(&format!("/v1/builds/{slow_build}"), 200).await;
        if build["status"] != "running" {
            break build;
        }
        assert!(std::time::Instant::now() < deadline, "{build}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed_build["status"], "failed", "{failed_build}");
    let why = format!("{} {}", failed_build["error"], failed_build["log"]);
    assert!(
        why.contains("No space left on device")
            || (why.contains("could not be recorded") && why.contains("disk is full")),
        "{failed_build}"
    );
    let again = launcher
        .upload_ok("after.c", program_source("hello.c"))
        .await["id"]
        .as_i64()
        .unwrap();
    launcher.build_ok(again).await;
    normal_run(&launcher, again, "after-the-disk-was-full").await;
    let data = launcher.data_dir();
    assert_eq!(sqlite_integrity(&data.join("launcher.db")), "ok");
    assert!(
        files_under(&data.join("store/tmp")).is_empty(),
        "staging files left behind"
    );
    let (orphans, missing) = store_mismatches(&data);
    assert!(
        orphans.is_empty() && missing.is_empty(),
        "orphans {orphans:?}, missing {missing:?}"
    );
    println!(
        "full disk: {stored} uploads filled a 4 MiB data folder; the next were refused 507 \
         insufficient_storage naming the cause, a build and a run on it failed saying why, /healthz answered {served} \
         probes meanwhile; after growing it all worked again, integrity_check ok"
    );
    launcher.stop();
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_floods_fd3_or_never_reads_blocks_only_itself() {
    let launcher = Launcher::start();
    let (flood, _) = build_program(&launcher, "hardening/flood.c", None).await;
    let hello = launcher
        .upload_ok("hello.c", program_source("hello.c"))
        .await["id"]
        .as_i64()
        .unwrap();
    launcher.build_ok(hello).await;
    let rss = RssSampler::start(launcher.pid().unwrap() as i64);
    let probe = HealthProbe::start(&launcher);
    let modes = ["requests", "unknown", "log"];
    let mut ids = Vec::new();
    for mode in modes {
        let run = launcher
            .run(flood, json!({"args": [mode], "time_limit_s": 4}))
            .await;
        ids.push(run["id"].as_i64().unwrap());
    }
    // While all three flood: the launcher serves everyone else.
    normal_run(&launcher, hello, "alongside-floods").await;
    for (mode, id) in modes.iter().zip(ids) {
        let run = launcher.wait_run(id).await;
        assert_eq!(run["status"], "timed_out", "{mode}: {run}");
        assert!(
            run["error"].as_str().unwrap_or("").contains("time limit"),
            "{mode}: {run}"
        );
        let stdout = run["stdout"].as_str().unwrap();
        assert!(
            stdout.starts_with(&format!("flooding {mode}")),
            "{mode}: {stdout}"
        );
        if *mode == "log" {
            // Kept up to the output limit, then dropped: memory stays bounded.
            assert!(
                run["stderr"].as_str().unwrap().contains("[info] LLLL"),
                "{mode}"
            );
            assert_eq!(run["stderr_truncated"], true, "{mode}");
        }
    }
    let served = probe.finish("floods").await;
    let peak = rss.finish();
    assert!(
        peak < 512 * 1024,
        "the launcher's memory grew to {peak} KiB"
    );
    normal_run(&launcher, hello, "after-floods").await;
    println!(
        "floods: 3 programs flooding fd 3 without reading (requests, unknown frames, 4 KiB LOG \
         lines) each blocked only itself until its time limit; /healthz answered {served} probes \
         and a normal run finished meanwhile; launcher peak RSS {} MiB",
        peak / 1024
    );
    launcher.stop();
}
