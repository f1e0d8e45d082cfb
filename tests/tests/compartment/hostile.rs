//! The hostile programs, uploaded, built and run through the launcher: each
//! attempt is blocked, and the run record says how the program ended.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use attestable_tests::{RUN_TIMEOUT, pid_namespace, process_alive, processes_in_pid_namespace};
use serde_json::{Value, json};

use super::{BEHAVES, built, hostile, run_to_end, start, stdout};

/// Every attempt blocked: the program says so and exits 0.
fn assert_blocked(run: &Value, what: &str) {
    let out = stdout(run);
    assert_eq!(run["status"], "exited", "{what}: {run}");
    assert_eq!(run["exit_code"], 0, "{what} escaped or broke: {out}");
    assert!(out.contains("BLOCKED"), "{what}: {out}");
    assert!(!out.contains("ESCAPED"), "{what}: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_network_reaches_out() {
    let launcher = start("", &[]);
    // A listener the program is told about: it must never see a connection.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();

    let (connect, _) = built(&launcher, "connect_tcp.c", hostile("connect_tcp.c")).await;
    let (dns, _) = built(&launcher, "dns_lookup.c", hostile("dns_lookup.c")).await;
    let (raw, _) = built(&launcher, "raw_socket.c", hostile("raw_socket.c")).await;

    let run = run_to_end(&launcher, connect, json!({"args": [port]})).await;
    assert_blocked(&run, "TCP connect to 127.0.0.1");
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the listener saw a connection: {other:?}"),
    }
    for name in ["example.com", "localhost"] {
        let run = run_to_end(&launcher, dns, json!({"args": [name]})).await;
        assert_blocked(&run, &format!("DNS lookup of {name}"));
    }
    let run = run_to_end(&launcher, raw, json!({})).await;
    assert_blocked(&run, "raw and inet sockets");
    assert!(stdout(&run).contains("OK"), "the AF_UNIX control: {run}");
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_outside_the_working_folder_are_out_of_reach() {
    let launcher = start("", &[]);
    let data = launcher.data_dir();
    // Files that Unix permissions alone would let the sandbox's user read
    // and write: only the compartment stands in the way.
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let readable = open.path().join("world-readable.txt");
    std::fs::write(&readable, "not for programs\n").unwrap();
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let target = open.path().join("written-from-inside.txt");

    let (read, _) = built(&launcher, "read_secret.c", hostile("read_secret.c")).await;
    let (write, _) = built(&launcher, "write_outside.c", hostile("write_outside.c")).await;
    let secrets = [
        data.join("api-token"),
        data.join("launcher.db"),
        data.join("pki/root.key"),
        readable.clone(),
        "/etc/passwd".into(),
    ];
    let args: Vec<String> = secrets.iter().map(|p| p.display().to_string()).collect();
    let run = run_to_end(&launcher, read, json!({ "args": args })).await;
    assert_blocked(&run, "reading outside");
    for path in &args {
        assert!(
            stdout(&run).contains(&format!("BLOCKED open {path}")),
            "{path}: {run}"
        );
    }
    assert!(!stdout(&run).contains(launcher.token()));

    let run = run_to_end(
        &launcher,
        write,
        json!({"args": [target.display().to_string()]}),
    )
    .await;
    assert_blocked(&run, "writing outside");
    assert!(stdout(&run).contains("OK wrote inside.txt"), "{run}");
    assert!(!target.exists(), "{} was written", target.display());
    // The working folder went with the run.
    assert_eq!(std::fs::read_dir(data.join("runs")).unwrap().count(), 0);
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_memory_and_cpu_are_bounded() {
    let launcher = start("", &[]);
    let (bomb, _) = built(&launcher, "fork_bomb.c", hostile("fork_bomb.c")).await;
    let (alloc, _) = built(&launcher, "alloc_8g.c", hostile("alloc_8g.c")).await;
    let (busy, _) = built(&launcher, "busy_loop.c", hostile("busy_loop.c")).await;

    // The fork bomb hits its process limit and waits to be killed; the
    // launcher answers all along.
    let run = launcher
        .run(
            bomb,
            json!({"time_limit_s": 4, "limits": {"processes": 64}}),
        )
        .await;
    let id = run["id"].as_i64().unwrap();
    let running = launcher
        .wait_run_until(id, |r| r["status"] == "running")
        .await;
    let ns = pid_namespace(running["pid"].as_i64().unwrap());
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let health = launcher.get("/healthz", 200).await;
        assert_eq!(health["status"], "ok");
        let now = launcher.get(&format!("/v1/runs/{id}"), 200).await;
        if now["status"] != "running" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fork bomb outlived its time limit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = launcher.wait_run(id).await;
    assert_eq!(done["status"], "timed_out", "{done}");
    assert!(
        stdout(&done).contains("BLOCKED fork after"),
        "the process limit stopped it: {done}"
    );
    assert!(
        done["compartment"]["layers"][4]["detail"]
            .as_str()
            .unwrap()
            .contains("nproc=64"),
        "the run's own process limit: {done}"
    );
    // Nothing of it is left: its PID namespace is empty.
    if let Some(ns) = ns {
        let deadline = Instant::now() + RUN_TIMEOUT;
        while !processes_in_pid_namespace(&ns).is_empty() {
            assert!(Instant::now() < deadline, "fork bomb processes survived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(launcher.get("/healthz", 200).await["status"], "ok");

    let run = run_to_end(&launcher, alloc, json!({})).await;
    assert_blocked(&run, "allocating 8 GiB");

    // A busy loop is killed at its CPU limit, and the record says so.
    let run = run_to_end(
        &launcher,
        busy,
        json!({"time_limit_s": 30, "limits": {"cpu_seconds": 1}}),
    )
    .await;
    assert_eq!(run["status"], "exited", "{run}");
    assert_eq!(run["signal"], 9, "{run}");
    assert_eq!(run["limits"]["cpu_seconds"], 1);
    let error = run["error"].as_str().unwrap_or("");
    assert!(error.contains("CPU-time limit of 1 s"), "{run}");
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launcher_and_the_kernel_are_out_of_reach() {
    let launcher = start("", &[]);
    let launcher_pid = launcher.pid().unwrap();
    let mut programs = Vec::new();
    for name in [
        "kill_parent.c",
        "ptrace_attach.c",
        "mount_tmpfs.c",
        "unshare_ns.c",
    ] {
        programs.push((name, built(&launcher, name, hostile(name)).await.0));
    }
    for (name, program) in programs {
        let args = if name == "kill_parent.c" {
            json!([launcher_pid.to_string()])
        } else {
            json!([])
        };
        let run = run_to_end(&launcher, program, json!({ "args": args })).await;
        assert_blocked(&run, name);
    }
    assert!(process_alive(i64::from(launcher_pid)));
    assert_eq!(launcher.get("/healthz", 200).await["status"], "ok");
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_behaved_program_runs_with_its_output_captured() {
    let launcher = start("", &[]);
    let (program, _) = built(&launcher, "behaves.c", BEHAVES.as_bytes().to_vec()).await;
    let run = run_to_end(&launcher, program, json!({"args": ["one", "two"]})).await;
    assert_eq!(run["status"], "exited", "{run}");
    assert_eq!(run["exit_code"], 0, "{run}");
    let out = stdout(&run);
    for line in [
        "PID 1\n",
        "UID 1000\n",
        "HOST sandbox\n",
        "ENV ATTESTABLE_FD=3\n",
        "ENVCOUNT 1\n",
        "HIGHFDS 0\n",
        "FD3SOCKET 1\n",
        "OK wrote output.txt\n",
        "ARG one\nARG two\n",
        "hello from the sandbox\n",
    ] {
        assert!(out.contains(line), "{line:?} missing from {out:?}");
    }
    assert!(
        out.contains(&format!(
            "CWD {}",
            launcher
                .data_dir()
                .join(format!("runs/{}/work", run["id"]))
                .display()
        )),
        "{out}"
    );
    // The record names the compartment, each layer as set up for this run.
    let compartment = &run["compartment"];
    assert_eq!(compartment["backend"], "linux-sandbox");
    assert_eq!(compartment["insecure"], false);
    assert_eq!(compartment["degraded"], json!([]));
    let layers: Vec<(&str, &str)> = compartment["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["name"].as_str().unwrap(), l["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        layers,
        [
            ("namespaces", "active"),
            ("no_new_privs", "active"),
            ("landlock", "active"),
            ("seccomp", "active"),
            ("rlimits", "active")
        ]
    );
    assert!(
        compartment["layers"][2]["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("runs/{}/work", run["id"])),
        "Landlock names the run's own folder: {run}"
    );

    // The repository's well_behaved.c also says "ready" on fd 3 as a LOG
    // frame, which the launcher appends to the run's log.
    let (program, _) = built(&launcher, "well_behaved.c", hostile("well_behaved.c")).await;
    let run = run_to_end(&launcher, program, json!({})).await;
    assert_eq!(run["status"], "exited", "{run}");
    assert!(stdout(&run).contains("OK wrote to fd 3\n"), "{run}");
    assert!(
        run["stderr"]
            .as_str()
            .unwrap_or("")
            .contains("[info] ready"),
        "the LOG frame is in the run's log: {run}"
    );
    assert_eq!(run["compartment"]["backend"], "linux-sandbox");
    assert_eq!(run["executable_sha256"].as_str().map(str::len), Some(64));
    launcher.stop();
}
