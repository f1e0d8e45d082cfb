//! Restarts keep every program, build and run; live runs become `interrupted`.

use attestable_tests::{Launcher, LauncherOptions, expect, process_alive, program_source};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_everything_and_interrupts_live_runs() {
    let launcher = Launcher::start_with(LauncherOptions {
        config: Some("[runs]\nmax_concurrent = 1\n".into()),
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
    let doomed = launcher
        .upload_ok("doomed.c", program_source("hello.c"))
        .await["id"]
        .as_i64()
        .unwrap();
    let hello_build = launcher.build_ok(hello).await;
    launcher.build_ok(looping).await;
    let finished = launcher.run(hello, json!({})).await["id"].as_i64().unwrap();
    let finished = launcher.wait_run(finished).await;
    let live = launcher.run(looping, json!({"time_limit_s": 600})).await["id"]
        .as_i64()
        .unwrap();
    let pid = launcher
        .wait_run_until(live, |r| r["status"] == "running")
        .await["pid"]
        .as_i64()
        .unwrap();
    let queued = launcher.run(looping, json!({"time_limit_s": 600})).await["id"]
        .as_i64()
        .unwrap();
    let deleted = launcher
        .client()
        .delete(launcher.url(&format!("/v1/programs/{doomed}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    let launcher = launcher.restart();
    assert!(!process_alive(pid), "shutdown ended the live run's process");
    assert!(launcher.log().contains("interrupting live runs"));

    let program = launcher.get(&format!("/v1/programs/{hello}"), 200).await;
    assert_eq!(program["name"], "hello.c");
    let build = launcher
        .get(&format!("/v1/builds/{}", hello_build["id"]), 200)
        .await;
    assert_eq!(build, hello_build);
    let again = launcher
        .get(&format!("/v1/runs/{}", finished["id"]), 200)
        .await;
    assert_eq!(again, finished, "an ended run is unchanged");
    for run in [live, queued] {
        let run = launcher.get(&format!("/v1/runs/{run}"), 200).await;
        assert_eq!(run["status"], "interrupted", "{run}");
        assert!(
            run["error"].as_str().unwrap().contains("shut down"),
            "{run}"
        );
    }
    expect(
        launcher
            .client()
            .get(launcher.url(&format!("/v1/programs/{doomed}")))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    // Ids are never reused, even after a delete and a restart.
    let next = launcher
        .upload_ok("next.c", program_source("hello.c"))
        .await;
    assert_eq!(next["id"], doomed + 1);
    // The programs still build and run.
    let rerun = launcher.run(hello, json!({})).await["id"].as_i64().unwrap();
    assert_eq!(launcher.wait_run(rerun).await["status"], "exited");
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_live_runs_are_marked_interrupted() {
    let launcher = Launcher::start();
    let (run, pid) = launcher.start_endless_run().await;

    let launcher = launcher.crash_and_restart();
    // A crash cannot stop the program; the test does, by its process group.
    // SAFETY: plain syscall; the group is the orphaned test program's.
    unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };

    let after = launcher.get(&format!("/v1/runs/{run}"), 200).await;
    assert_eq!(after["status"], "interrupted", "{after}");
    assert!(
        after["error"]
            .as_str()
            .unwrap()
            .contains("stopped while the run was live"),
        "{after}"
    );
    let audit = launcher
        .get(&format!("/v1/audit?subject_kind=run&subject_id={run}"), 200)
        .await;
    let last = audit.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "launcher");
    assert_eq!(last["detail"]["to"], "interrupted");
    assert!(launcher.log().contains("recovered from an unclean stop"));
    launcher.stop();
}
