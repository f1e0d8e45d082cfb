//! A service that goes away in the middle of a run: the program says which
//! step failed and why, the run's record shows the failed call, and the
//! launcher goes on serving and running programs.

use std::time::Instant;

use attestable_tests::mock::MockOptions;
use attestable_tests::{RUN_TIMEOUT, program_source};
use serde_json::Value;

use crate::{CaseStudy, integration_source, output};

/// Reads the run's event stream until a line of its stdout contains `text`.
async fn wait_for_output(cs: &CaseStudy, run: i64, text: &str) {
    let mut response = cs
        .launcher
        .client()
        .get(cs.launcher.url(&format!("/v1/runs/{run}/events")))
        .send()
        .await
        .expect("the event stream");
    assert_eq!(response.status(), 200);
    let deadline = Instant::now() + RUN_TIMEOUT;
    let mut stdout = String::new();
    let mut buffer = Vec::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline.into(), response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {text:?} in the run's output: {stdout}"))
            .expect("reading the event stream")
            .unwrap_or_else(|| panic!("the stream ended without {text:?}: {stdout}"));
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let event: Value = serde_json::from_slice(&line).expect("an event");
            if event["type"] == "output" && event["stream"] == "stdout" {
                stdout.push_str(event["data"].as_str().unwrap_or(""));
                if stdout.contains(text) {
                    return;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_stopped_mid_run_fails_the_run_clearly_and_the_launcher_carries_on() {
    let mut cs = CaseStudy::start(MockOptions {
        separate: true,
        ..Default::default()
    })
    .await;
    let (program, exe) = cs.build(integration_source()).await;
    cs.approve(&exe);
    cs.new_sale(1, "189.90").await;
    let before = cs.counts();

    // Two rounds, ten seconds apart: the taxi goes away in between, while a
    // new sale waits for round two.
    let run = cs
        .launcher
        .run(
            program,
            serde_json::json!({"args": ["2", "10"], "time_limit_s": 120}),
        )
        .await;
    let id = run["id"].as_i64().unwrap();
    wait_for_output(&cs, id, "step 6: read the customer's reply").await;
    cs.new_sale(3, "164.75").await;
    cs.mock.stop_service("taxi");
    let run = cs.launcher.wait_run(id).await;

    assert_eq!(run["status"], "exited", "{}", output(&run));
    assert_eq!(run["exit_code"], 1, "{}", output(&run));
    let stdout = run["stdout"].as_str().unwrap();
    let stderr = run["stderr"].as_str().unwrap();
    assert!(
        stdout.contains("round 2 of 2") && stdout.contains("step 3: 164.75 is above 150.00"),
        "round two read the new sale (the taxi stopped in time): {}",
        output(&run)
    );
    assert!(
        stderr
            .contains("error: step 4 (book a taxi) failed: write taxi:trips: the launcher refused"),
        "{}",
        output(&run)
    );
    assert!(
        stdout.ends_with("outcome: failed at step 4 (book a taxi)\n"),
        "{}",
        output(&run)
    );
    let calls = cs.calls(&run).await;
    let last = calls.last().expect("calls");
    assert_eq!(
        (last["service"].as_str(), last["op"].as_str()),
        (Some("taxi"), Some("write")),
        "{calls:?}"
    );
    assert_ne!(
        last["outcome"], "ok",
        "the failed call is recorded: {calls:?}"
    );
    assert!(
        last["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "with why: {last}"
    );
    let after = cs.counts();
    assert_eq!(
        (after.trips, after.messages),
        (before.trips + 1, before.messages + 1),
        "round one only"
    );

    // The launcher is fine: it answers, and runs the next program.
    let health = cs.launcher.get("/healthz", 200).await;
    assert_eq!(health["status"], "ok");
    let hello = cs
        .launcher
        .upload_ok("hello.c", program_source("hello.c"))
        .await;
    let hello = hello["id"].as_i64().unwrap();
    cs.launcher.build_ok(hello).await;
    let next = cs.run(hello, &[]).await;
    assert_eq!(next["status"], "exited", "{}", output(&next));
    // hello.c prints its name and exits 3 by design.
    assert_eq!(next["exit_code"], 3, "{}", output(&next));
    assert!(
        next["stdout"].as_str().unwrap().starts_with("hello from "),
        "{}",
        output(&next)
    );
    let platform = cs.launcher.get("/v1/platform", 200).await;
    assert_eq!(platform["compartment"]["backend"], "linux-sandbox");
    // And the other services still answer their operator.
    let sales = cs.mock.operator_get("store", "/api/sales?limit=1").await;
    assert_eq!(sales["sales"][0]["total"], "164.75");
    cs.assert_no_plaintext();
}
