//! Time limits, cancel, the queue, output bounds, and what a program is given.

use attestable_tests::{
    Launcher, LauncherOptions, expect, pid_namespace, process_alive, processes_in_pid_namespace,
    program_source,
};
use serde_json::{Value, json};

async fn built(launcher: &Launcher, file: &str) -> i64 {
    let program = launcher.upload_ok(file, program_source(file)).await;
    let id = program["id"].as_i64().unwrap();
    launcher.build_ok(id).await;
    id
}

fn id(value: &Value) -> i64 {
    value["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_program_is_stopped_at_its_time_limit_with_its_children() {
    let launcher = Launcher::start();
    let program = built(&launcher, "spawner.c").await;
    let run = launcher.run(program, json!({"time_limit_s": 2})).await;
    let running = launcher
        .wait_run_until(id(&run), |r| {
            r["status"] != "queued" && r["status"] != "starting"
        })
        .await;
    let ns = running["pid"].as_i64().and_then(pid_namespace);
    let done = launcher.wait_run(id(&run)).await;
    assert_eq!(done["status"], "timed_out", "{done}");
    assert_eq!(done["time_limit_s"], 2);
    assert_eq!(done["signal"], 9);
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .contains("time limit of 2 s")
    );
    // Output written before the limit is kept (the child's pid as the
    // program sees it, inside its own PID namespace).
    let stdout = done["stdout"].as_str().unwrap();
    let child: i64 = stdout
        .strip_prefix("child ")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {stdout:?}"));
    assert!(child > 1, "{stdout}");
    // The child it forked died with it: its PID namespace is empty.
    let ns = ns.expect("the run's PID namespace");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !processes_in_pid_namespace(&ns).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "processes of the run survived it: {:?}",
            processes_in_pid_namespace(&ns)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_running_and_queued_runs() {
    let launcher = Launcher::start_with(LauncherOptions {
        config: Some("[runs]\nmax_concurrent = 1\n".into()),
        ..Default::default()
    });
    let program = built(&launcher, "loop.c").await;
    let first = launcher.run(program, json!({"time_limit_s": 60})).await;
    let running = launcher
        .wait_run_until(id(&first), |r| r["status"] == "running")
        .await;
    let pid = running["pid"].as_i64().unwrap();
    assert!(process_alive(pid));
    // The only slot is taken: the second run waits in the queue.
    let second = launcher.run(program, json!({"time_limit_s": 60})).await;
    assert_eq!(
        launcher
            .get(&format!("/v1/runs/{}", id(&second)), 200)
            .await["status"],
        "queued"
    );

    let c = launcher.client();
    let cancel = |run: i64| {
        c.post(launcher.url(&format!("/v1/runs/{run}/cancel")))
            .send()
    };
    let queued = expect(cancel(id(&second)).await.unwrap(), 200).await;
    assert_eq!(queued["status"], "cancelled", "{queued}");
    assert!(queued["started_at"].is_null(), "it never started");
    let stopped = expect(cancel(id(&first)).await.unwrap(), 200).await;
    assert_eq!(stopped["status"], "cancelled", "{stopped}");
    assert!(
        stopped["error"]
            .as_str()
            .unwrap()
            .starts_with("cancelled by api 127.0.0.1:")
    );
    assert_eq!(stopped["stdout"], "looping\n");
    assert!(!process_alive(pid), "the program is gone");
    // Cancelling an ended run is a conflict that names its status.
    let again = expect(cancel(id(&first)).await.unwrap(), 409).await;
    assert!(
        again["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already ended (cancelled)")
    );
    // The slot is free again.
    let third = launcher.run(program, json!({"time_limit_s": 1})).await;
    assert_eq!(launcher.wait_run(id(&third)).await["status"], "timed_out");
    // Deleting is refused while a run is live, and allowed after.
    let fourth = launcher.run(program, json!({"time_limit_s": 60})).await;
    let busy = expect(
        c.delete(launcher.url(&format!("/v1/programs/{program}")))
            .send()
            .await
            .unwrap(),
        409,
    )
    .await;
    assert!(
        busy["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("run {}", id(&fourth)))
    );
    expect(cancel(id(&fourth)).await.unwrap(), 200).await;
    let gone = c
        .delete(launcher.url(&format!("/v1/programs/{program}")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_gets_fd3_an_empty_environment_and_nothing_else() {
    let launcher = Launcher::start();
    let program = built(&launcher, "environment.c").await;
    let run = launcher.run(program, json!({})).await;
    let done = launcher.wait_run(id(&run)).await;
    assert_eq!(done["status"], "exited", "{done}");
    assert_eq!(done["exit_code"], 0);
    let report: std::collections::BTreeMap<&str, Vec<&str>> = done["stdout"]
        .as_str()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .fold(Default::default(), |mut map, (k, v)| {
            map.entry(k).or_default().push(v);
            map
        });
    assert_eq!(report["env"], ["ATTESTABLE_FD=3"], "{report:?}");
    assert_eq!(report["env_count"], ["1"]);
    assert_eq!(report["stdin_is_dev_null"], ["1"]);
    assert_eq!(report["fd3_is_socket"], ["1"]);
    assert_eq!(report["other_fds"], ["0"]);
    assert_eq!(
        report["fd3_sent"],
        ["524288"],
        "the launcher reads what the program sends"
    );
    assert_eq!(report["cwd_writable"], ["1"]);
    // Its working folder is gone after the run.
    let runs_dir = launcher.data_dir().join("runs");
    assert_eq!(std::fs::read_dir(runs_dir).unwrap().count(), 0);
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_captured_up_to_the_limit() {
    let launcher = Launcher::start_with(LauncherOptions {
        config: Some("[runs]\noutput_limit_bytes = 10000\n".into()),
        ..Default::default()
    });
    let program = built(&launcher, "chatty.c").await;
    let run = launcher.run(program, json!({})).await;
    let done = launcher.wait_run(id(&run)).await;
    assert_eq!(done["status"], "exited", "{done}");
    assert_eq!(
        done["exit_code"], 0,
        "the program was never blocked by a full pipe"
    );
    assert_eq!(done["stdout"].as_str().unwrap().len(), 10000);
    assert_eq!(done["stderr"].as_str().unwrap().len(), 10000);
    assert_eq!(done["stdout_truncated"], true);
    assert_eq!(done["stderr_truncated"], true);
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_asked_for_at_once_never_exceed_the_limit() {
    // One running and one queued at most: of twelve requests sent together,
    // exactly two are accepted, however their database writes interleave.
    let launcher = Launcher::start_with(LauncherOptions {
        config: Some("[runs]\nmax_concurrent = 1\nmax_queued = 1\n".into()),
        ..Default::default()
    });
    let program = built(&launcher, "loop.c").await;
    let asks = (0..12).map(|_| {
        let (client, url) = (
            launcher.client().clone(),
            launcher.url(&format!("/v1/programs/{program}/runs")),
        );
        tokio::spawn(async move {
            let response = client
                .post(url)
                .json(&json!({"time_limit_s": 60}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        })
    });
    let mut accepted = Vec::new();
    for ask in asks.collect::<Vec<_>>() {
        let (status, body) = ask.await.unwrap();
        match status {
            202 => accepted.push(id(&body)),
            503 => assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("the limit is 2"),
                "{body}"
            ),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(accepted.len(), 2, "accepted {accepted:?}");
    for run in accepted {
        let cancel = launcher
            .client()
            .post(launcher.url(&format!("/v1/runs/{run}/cancel")))
            .send()
            .await
            .unwrap();
        expect(cancel, 200).await;
    }
    launcher.stop();
}
