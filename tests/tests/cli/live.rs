//! `run` shows output while the run is live, and ends with the run.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use attestable_tests::{Launcher, RUN_TIMEOUT, program_source};

use crate::{Env, expect, upload_and_build};

#[test]
fn output_arrives_while_the_run_is_live() {
    let env = Env::new();
    let launcher = Launcher::start();
    let id = upload_and_build(&env, &launcher, "loop.c", &program_source("loop.c"));

    // loop.c prints a line and then never ends: seeing that line before
    // anything else happens proves it was streamed, not printed at the end.
    let mut follower = env
        .std_bare()
        .arg("--data")
        .arg(launcher.data_dir())
        .args(["run", &id.to_string(), "--time-limit", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting attestable run");
    let stdout = follower.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines.recv_timeout(RUN_TIMEOUT);
    let runs = expect(env.cli(&launcher), &["--json", "runs", "list"], 0).json();
    let status = runs[0]["status"].as_str().unwrap_or("").to_owned();
    // Stop the run whatever happened, so the follower ends.
    let cancel = crate::run(env.cli(&launcher), &["runs", "cancel", "1"]);
    assert_eq!(
        first.as_deref(),
        Ok("looping"),
        "no output while the run was live"
    );
    assert_eq!(status, "running", "the line arrived while the run was live");
    assert_eq!(cancel.code, 0, "{}", cancel.stderr);

    let deadline = std::time::Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = follower.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "attestable run did not end after its run was cancelled"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    reader.join().unwrap();
    assert!(lines.try_recv().is_err(), "the output was shown twice");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut follower.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("attestable: run 1 cancelled"), "{stderr}");
}

/// Reads NDJSON lines from an event stream until `done` holds for one.
async fn read_events(
    response: &mut reqwest::Response,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    let mut buffer = Vec::new();
    loop {
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let event: serde_json::Value =
                serde_json::from_slice(&line).expect("an event line is JSON");
            let stop = done(&event);
            events.push(event);
            if stop {
                return events;
            }
        }
        let chunk = tokio::time::timeout(RUN_TIMEOUT, response.chunk())
            .await
            .expect("an event within the timeout")
            .expect("reading the event stream");
        match chunk {
            Some(chunk) => buffer.extend_from_slice(&chunk),
            None => return events,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_replays_then_follows_then_ends() {
    let launcher = Launcher::start();
    let program = launcher.upload_ok("loop.c", program_source("loop.c")).await["id"]
        .as_i64()
        .unwrap();
    launcher.build_ok(program).await;
    let run = launcher
        .run(program, serde_json::json!({"time_limit_s": 600}))
        .await["id"]
        .as_i64()
        .unwrap();
    launcher
        .wait_run_until(run, |r| r["status"] == "running")
        .await;

    // A follower arriving late gets the run, its status and what it printed.
    let url = launcher.url(&format!("/v1/runs/{run}/events"));
    let mut response = launcher.client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let first = read_events(&mut response, |e| e["type"] == "output").await;
    assert_eq!(first[0]["type"], "run");
    assert_eq!(first[0]["run"]["id"], run);
    assert_eq!(
        first[1],
        serde_json::json!({"type": "status", "status": "running"})
    );
    assert_eq!(
        first[2],
        serde_json::json!({"type": "output", "stream": "stdout", "data": "looping\n"})
    );

    // Then the end, as it happens.
    launcher
        .client()
        .post(launcher.url(&format!("/v1/runs/{run}/cancel")))
        .send()
        .await
        .unwrap();
    let rest = read_events(&mut response, |e| e["type"] == "end").await;
    let last = rest.last().unwrap();
    assert_eq!(last["type"], "end", "{rest:?}");
    assert_eq!(last["run"]["status"], "cancelled");
    assert!(
        last["run"].get("stdout").is_none(),
        "the end carries no output"
    );
    assert!(
        rest.iter()
            .any(|e| *e == serde_json::json!({"type": "status", "status": "cancelled"})),
        "{rest:?}"
    );
    assert!(
        response.chunk().await.unwrap().is_none(),
        "the stream ends with the run"
    );

    // An ended run: the same lines from its record, at once.
    let mut response = launcher.client().get(&url).send().await.unwrap();
    let replay = read_events(&mut response, |_| false).await;
    let types: Vec<&str> = replay.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["run", "status", "output", "end"], "{replay:?}");
    assert_eq!(replay[2]["data"], "looping\n");

    // Unknown runs and missing tokens are refused like everywhere else.
    let missing = launcher
        .client()
        .get(launcher.url("/v1/runs/99/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let anonymous = launcher.anonymous().get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}
