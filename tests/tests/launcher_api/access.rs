//! Token checks, open routes, TLS trust, and JSON errors everywhere.

use attestable_tests::{Launcher, client, expect};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_needs_the_token_and_says_why_not() {
    let launcher = Launcher::start();
    let anonymous = launcher.anonymous();
    for path in [
        "/v1/programs",
        "/v1/platform",
        "/v1/openapi.json",
        "/v1/runs/1",
        "/v1/nowhere",
    ] {
        let response = anonymous.get(launcher.url(path)).send().await.unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer", "{path}");
        let body = expect(response, 401).await;
        assert_eq!(body["error"]["code"], "unauthorized", "{path}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("missing Authorization"),
            "{path}: {body}"
        );
    }
    let wrong = client(launcher.root_pem(), Some(&"0".repeat(64)));
    let body = expect(
        wrong
            .get(launcher.url("/v1/programs"))
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wrong API token"),
        "{body}"
    );
    let short = client(launcher.root_pem(), Some("abc"));
    let body = expect(
        short
            .get(launcher.url("/v1/programs"))
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wrong API token"),
        "{body}"
    );
    let basic = anonymous
        .get(launcher.url("/v1/programs"))
        .header("authorization", format!("Basic {}", launcher.token()))
        .send()
        .await
        .unwrap();
    let body = expect(basic, 401).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Bearer"),
        "{body}"
    );
    // A wrong token changes nothing.
    let upload = wrong
        .post(launcher.url("/v1/programs"))
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"int main(void){return 0;}".to_vec()).file_name("x.c"),
        ))
        .send()
        .await
        .unwrap();
    expect(upload, 401).await;
    assert_eq!(
        launcher.get("/v1/programs", 200).await,
        serde_json::json!([])
    );
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ca_are_open_and_the_ca_is_the_root() {
    let launcher = Launcher::start();
    let anonymous = launcher.anonymous();
    let health = expect(
        anonymous
            .get(launcher.url("/healthz"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(health["status"], "ok");
    let ca = anonymous.get(launcher.url("/v1/ca")).send().await.unwrap();
    assert_eq!(ca.status(), 200);
    assert_eq!(ca.headers()["content-type"], "application/x-pem-file");
    // The root first (a client reading one certificate gets it), then the
    // attestation intermediate in force.
    let body = ca.bytes().await.unwrap();
    assert!(
        body.starts_with(launcher.root_pem()),
        "the root comes first"
    );
    let rest = &body[launcher.root_pem().len()..];
    assert_eq!(
        rest,
        std::fs::read(launcher.data_dir().join("pki/attestation.pem")).unwrap()
    );
    // A client that trusts another root refuses the connection.
    let other = launcher_root_of_another_daemon();
    let stranger = client(&other, None);
    assert!(stranger.get(launcher.url("/healthz")).send().await.is_err());
    launcher.stop();
}

fn launcher_root_of_another_daemon() -> Vec<u8> {
    let other = Launcher::start();
    let pem = other.root_pem().to_vec();
    other.stop();
    pem
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_json_with_the_right_status() {
    let launcher = Launcher::start();
    let c = launcher.client();
    let body = expect(
        c.get(launcher.url("/v1/programs/abc"))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(body["error"]["code"], "invalid_request");
    let body = expect(
        c.get(launcher.url("/v1/programs/999"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_eq!(body["error"]["message"], "program 999 not found");
    let body = expect(
        c.put(launcher.url("/v1/programs")).send().await.unwrap(),
        405,
    )
    .await;
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let body = expect(c.get(launcher.url("/nowhere")).send().await.unwrap(), 404).await;
    assert_eq!(body["error"]["code"], "not_found");
    let body = expect(
        c.get(launcher.url("/v1/runs?program=x"))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(body["error"]["code"], "invalid_request");
    let body = expect(
        c.get(launcher.url("/v1/runs?colour=red"))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{body}"
    );

    let program = launcher
        .upload_ok("hello.c", attestable_tests::program_source("hello.c"))
        .await;
    let id = program["id"].as_i64().unwrap();
    let builds = launcher.url(&format!("/v1/programs/{id}/builds"));
    let body = expect(
        c.post(&builds)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid JSON"),
        "{body}"
    );
    let body = expect(
        c.post(&builds)
            .header("content-type", "application/json")
            .body(r#"{"profil":"host"}"#)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("profil"),
        "{body}"
    );
    let body = expect(
        c.post(&builds)
            .header("content-type", "text/plain")
            .body("profile=host")
            .send()
            .await
            .unwrap(),
        415,
    )
    .await;
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    let body = expect(
        c.post(&builds)
            .header("content-type", "application/json")
            .body(format!(r#"{{"profile":"{}"}}"#, "x".repeat(300_000)))
            .send()
            .await
            .unwrap(),
        413,
    )
    .await;
    assert_eq!(body["error"]["code"], "payload_too_large");
    launcher.build_ok(id).await;
    let runs = launcher.url(&format!("/v1/programs/{id}/runs"));
    for (bad, why) in [
        (r#"{"time_limit_s": 0}"#, "expected 1 to"),
        (r#"{"time_limit_s": 999999}"#, "expected 1 to"),
        (r#"{"args": "not a list"}"#, "invalid JSON"),
        (r#"{"build_id": 999}"#, "build 999 not found"),
    ] {
        let response = c
            .post(&runs)
            .header("content-type", "application/json")
            .body(bad)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = expect(response, status).await;
        assert!([400, 404].contains(&status), "{bad}: {status} {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(why),
            "{bad}: {body}"
        );
    }
    let body = expect(
        c.post(launcher.url("/v1/runs/999/cancel"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_eq!(body["error"]["code"], "not_found");
    launcher.stop();
}
