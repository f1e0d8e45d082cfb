//! upload → list → build → run → status and output → delete.

use attestable_tests::{Launcher, expect, program_source};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_lifecycle() {
    let launcher = Launcher::start();
    let source = program_source("hello.c");

    let program = launcher.upload_ok("hello.c", source.clone()).await;
    let id = program["id"].as_i64().unwrap();
    assert_eq!(program["name"], "hello.c");
    assert_eq!(program["size"], source.len());
    assert_eq!(program["source_sha256"].as_str().unwrap().len(), 64);
    assert!(program["created_at"].as_str().unwrap().ends_with('Z'));

    let list = launcher.get("/v1/programs", 200).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id);
    assert_eq!(
        launcher.get(&format!("/v1/programs/{id}"), 200).await,
        program
    );
    let stored = launcher
        .client()
        .get(launcher.url(&format!("/v1/programs/{id}/source")))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200);
    assert_eq!(stored.bytes().await.unwrap(), source);

    let build = launcher.build_ok(id).await;
    let build_id = build["id"].as_i64().unwrap();
    assert_eq!(build["status"], "succeeded");
    assert_eq!(build["profile"], "host");
    assert!(!build["compiler"].as_str().unwrap().is_empty());
    let argv: Vec<&str> = build["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(argv.first(), Some(&"cc"));
    assert!(
        argv.iter().any(|a| a.ends_with("/src/hello.c")) && argv.contains(&"-lcrypto"),
        "{argv:?}"
    );
    assert_eq!(build["executable_sha256"].as_str().unwrap().len(), 64);
    assert!(build["duration_ms"].is_u64());
    assert_eq!(
        launcher.get(&format!("/v1/builds/{build_id}"), 200).await,
        build
    );
    let builds = launcher
        .get(&format!("/v1/programs/{id}/builds"), 200)
        .await;
    assert_eq!(builds.as_array().unwrap().len(), 1);

    let run = launcher
        .run(id, json!({"args": ["one", "two words"]}))
        .await;
    let run_id = run["id"].as_i64().unwrap();
    assert!(
        ["queued", "starting", "running", "exited"].contains(&run["status"].as_str().unwrap()),
        "{run}"
    );
    let done = launcher.wait_run(run_id).await;
    assert_eq!(done["status"], "exited", "{done}");
    assert_eq!(done["exit_code"], 3);
    assert_eq!(done["stdout"], "hello from hello [one] [two words]\n");
    assert_eq!(done["stderr"], "a line on stderr\n");
    assert_eq!(done["stdout_truncated"], false);
    assert_eq!(done["build_id"], build_id);
    assert_eq!(
        done["executable_sha256"], build["executable_sha256"],
        "the measured executable is the one built"
    );
    assert!(done["started_at"].is_string() && done["ended_at"].is_string());
    let runs = launcher.get(&format!("/v1/runs?program={id}"), 200).await;
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["status"], "exited");
    assert!(runs[0].get("stdout").is_none(), "lists carry no output");

    let deleted = launcher
        .client()
        .delete(launcher.url(&format!("/v1/programs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    for path in [
        format!("/v1/programs/{id}"),
        format!("/v1/builds/{build_id}"),
        format!("/v1/runs/{run_id}"),
        format!("/v1/runs?program={id}"),
    ] {
        let body = launcher.get(&path, 404).await;
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    assert_eq!(launcher.get("/v1/programs", 200).await, json!([]));

    // The audit log kept the whole story.
    let audit = launcher.get("/v1/audit", 200).await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "program.create",
            "build.start",
            "build.succeeded",
            "run.create",
            "run.status",
            "run.status",
            "run.status",
            "program.delete"
        ]
    );
    assert!(
        audit[0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("api 127.0.0.1:")
    );
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_error_returns_the_compilers_message() {
    let launcher = Launcher::start();
    let program = launcher
        .upload_ok("broken.c", program_source("compile_error.c"))
        .await;
    let id = program["id"].as_i64().unwrap();
    let response = launcher
        .client()
        .post(launcher.url(&format!("/v1/programs/{id}/builds")))
        .json(&json!({"profile": "host"}))
        .send()
        .await
        .unwrap();
    let body = expect(response, 422).await;
    assert_eq!(body["error"]["code"], "compile_failed");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("undeclared_on_purpose"), "{message}");
    assert!(message.contains("broken.c:4"), "{message}");
    assert_eq!(body["build"]["status"], "failed");
    assert!(body["build"]["executable_sha256"].is_null());
    assert_ne!(body["build"]["exit_code"], 0);
    let build_id = body["build"]["id"].as_i64().unwrap();
    let stored = launcher.get(&format!("/v1/builds/{build_id}"), 200).await;
    assert_eq!(stored["status"], "failed");
    assert!(
        stored["log"]
            .as_str()
            .unwrap()
            .contains("undeclared_on_purpose")
    );
    // Nothing to run.
    let response = launcher
        .client()
        .post(launcher.url(&format!("/v1/programs/{id}/runs")))
        .send()
        .await
        .unwrap();
    let body = expect(response, 409).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no succeeded build"),
        "{body}"
    );
    // An unknown profile names the known ones.
    let response = launcher
        .client()
        .post(launcher.url(&format!("/v1/programs/{id}/builds")))
        .json(&json!({"profile": "vax"}))
        .send()
        .await
        .unwrap();
    let body = expect(response, 400).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("known: host"),
        "{body}"
    );
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_come_a_page_at_a_time() {
    let launcher = Launcher::start();
    let mut programs = Vec::new();
    for i in 0..3 {
        let source = format!("int main(void) {{ return {i}; }}\n").into_bytes();
        programs.push(
            launcher.upload_ok(&format!("p{i}.c"), source).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let ids = |list: serde_json::Value| -> Vec<i64> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(launcher.get("/v1/programs", 200).await), programs);
    assert_eq!(
        ids(launcher.get("/v1/programs?limit=2", 200).await),
        programs[..2]
    );
    let next = format!("/v1/programs?limit=2&after={}", programs[1]);
    assert_eq!(ids(launcher.get(&next, 200).await), programs[2..]);
    for bad in ["limit=0", "limit=1001"] {
        let body = launcher.get(&format!("/v1/programs?{bad}"), 400).await;
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("limit must be 1 to 1000"), "{message}");
    }

    launcher.build_ok(programs[0]).await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(
            launcher.run(programs[0], json!({})).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let first = format!("/v1/runs?program={}&limit=1", programs[0]);
    assert_eq!(ids(launcher.get(&first, 200).await), runs[..1]);
    let rest = format!("/v1/runs?program={}&after={}", programs[0], runs[0]);
    assert_eq!(ids(launcher.get(&rest, 200).await), runs[1..]);
    for run in runs {
        launcher.wait_run(run).await;
    }
    launcher.stop();
}
