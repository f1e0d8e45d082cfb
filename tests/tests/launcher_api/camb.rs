//! The CAMB launcher's routes, in their documented shapes.

use attestable_tests::{Launcher, LauncherOptions, expect, program_source};
use serde_json::Value;

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    keys
}

async fn camb_upload(launcher: &Launcher, name: &str, bytes: Vec<u8>) -> reqwest::Response {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
    );
    launcher
        .anonymous()
        .post(launcher.url("/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_camb_route_answers_in_its_shape_without_a_token() {
    let launcher = Launcher::start_with(LauncherOptions {
        camb_compat: true,
        config: Some("[runs]\ndefault_time_limit_s = 2\n".into()),
        ..Default::default()
    });
    let old = launcher.anonymous();

    let uploaded = expect(
        camb_upload(&launcher, "hello.c", program_source("hello.c")).await,
        200,
    )
    .await;
    assert_eq!(keys(&uploaded), ["message", "program_id"]);
    assert_eq!(uploaded["message"], "File successfully uploaded");
    let id = uploaded["program_id"].as_i64().unwrap();

    let files = expect(old.get(launcher.url("/files")).send().await.unwrap(), 200).await;
    let file = &files[0];
    assert_eq!(
        keys(file),
        [
            "certificates",
            "executables",
            "file_name",
            "file_path",
            "id"
        ]
    );
    assert_eq!(file["id"], id);
    assert_eq!(file["file_name"], "hello.c");
    assert!(std::path::Path::new(file["file_path"].as_str().unwrap()).is_file());
    assert_eq!(file["executables"], serde_json::json!([]));

    let compiled = expect(
        old.post(launcher.url(&format!("/compile/{id}")))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    for key in [
        "message",
        "output",
        "error_output",
        "executable_path",
        "certificate_path",
    ] {
        assert!(
            compiled.get(key).is_some(),
            "compile answer lacks {key}: {compiled}"
        );
    }
    assert_eq!(compiled["message"], "Compilation successful");
    let exe = compiled["executable_path"].as_str().unwrap();
    assert!(std::path::Path::new(exe).is_file());
    let files = expect(old.get(launcher.url("/files")).send().await.unwrap(), 200).await;
    assert_eq!(files[0]["executables"], serde_json::json!([exe]));

    let executed = expect(
        old.post(launcher.url(&format!("/execute/{id}")))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    for key in ["message", "output", "error_output", "executable_path"] {
        assert!(
            executed.get(key).is_some(),
            "execute answer lacks {key}: {executed}"
        );
    }
    assert_eq!(executed["message"], "Execution successful");
    assert_eq!(executed["output"], "hello from hello\n");
    assert_eq!(executed["error_output"], "a line on stderr\n");
    assert_eq!(executed["executable_path"], exe);
    // The run is a real run of the /v1 API too.
    let run = launcher
        .get(&format!("/v1/runs/{}", executed["run_id"]), 200)
        .await;
    assert_eq!(run["status"], "exited");
    assert!(run["pid"].is_i64());

    // /execute of a program that never ends answers at its time limit.
    let looping = expect(
        camb_upload(&launcher, "loop.c", program_source("loop.c")).await,
        200,
    )
    .await;
    let loop_id = looping["program_id"].as_i64().unwrap();
    expect(
        old.post(launcher.url(&format!("/compile/{loop_id}")))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let timed_out = expect(
        old.post(launcher.url(&format!("/execute/{loop_id}")))
            .send()
            .await
            .unwrap(),
        500,
    )
    .await;
    assert!(
        timed_out["error"]
            .as_str()
            .unwrap()
            .starts_with("Execution failed: stopped at its time limit"),
        "{timed_out}"
    );

    // Errors, in the old shape.
    let broken = expect(
        camb_upload(&launcher, "broken.c", program_source("compile_error.c")).await,
        200,
    )
    .await;
    let failed = expect(
        old.post(launcher.url(&format!("/compile/{}", broken["program_id"])))
            .send()
            .await
            .unwrap(),
        500,
    )
    .await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.starts_with("Compilation failed: ") && error.contains("undeclared_on_purpose"),
        "{error}"
    );
    let not_compiled = expect(
        camb_upload(&launcher, "fresh.c", program_source("hello.c")).await,
        200,
    )
    .await;
    let missing = expect(
        old.post(launcher.url(&format!("/execute/{}", not_compiled["program_id"])))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_eq!(missing["error"], "Executable not found");
    for (name, bytes, error) in [
        ("notes.txt", b"x".to_vec(), "Invalid file type"),
        ("../x.c", b"int x;".to_vec(), "Invalid file type"),
        ("", b"int x;".to_vec(), "No selected file"),
    ] {
        let body = expect(camb_upload(&launcher, name, bytes).await, 400).await;
        assert_eq!(body["error"], error, "{name:?}: {body}");
    }
    let no_part = old
        .post(launcher.url("/upload"))
        .multipart(reqwest::multipart::Form::new().text("other", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(expect(no_part, 400).await["error"], "No file part");

    let deleted = expect(
        old.delete(launcher.url(&format!("/files/{id}")))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(
        deleted,
        serde_json::json!({"message": "File successfully deleted"})
    );
    let gone = expect(
        old.delete(launcher.url(&format!("/files/{id}")))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_eq!(gone["error"], "File not found");
    let junk = expect(
        old.delete(launcher.url("/files/abc")).send().await.unwrap(),
        404,
    )
    .await;
    assert_eq!(junk["error"], "File not found");
    // The CAMB routes are in the OpenAPI document of this daemon.
    let doc = launcher.get("/v1/openapi.json", 200).await;
    assert!(doc["paths"]["/execute/{id}"]["post"].is_object());
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_the_camb_routes_do_not_exist() {
    let launcher = Launcher::start();
    let old = launcher.anonymous();
    expect(old.get(launcher.url("/files")).send().await.unwrap(), 404).await;
    expect(
        camb_upload(&launcher, "hello.c", program_source("hello.c")).await,
        404,
    )
    .await;
    assert_eq!(
        launcher.get("/v1/programs", 200).await,
        serde_json::json!([])
    );
    let doc = launcher.get("/v1/openapi.json", 200).await;
    assert!(doc["paths"]["/upload"].is_null());
    launcher.stop();
}
