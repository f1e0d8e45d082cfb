//! `GET/PUT/DELETE /v1/services/{id}`: the token, validation, 404s, the
//! configuration file's services, and persistence.

use attestable_tests::service::ServicesCa;
use attestable_tests::{Launcher, LauncherOptions, expect};
use serde_json::{Value, json};

async fn put(launcher: &Launcher, id: &str, body: Value) -> reqwest::Response {
    launcher
        .client()
        .put(launcher.url(&format!("/v1/services/{id}")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn error_of(response: reqwest::Response, status: u16) -> String {
    let body = expect(response, status).await;
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_need_the_token_and_valid_fields() {
    let launcher = Launcher::start();
    let ca = ServicesCa::new("api test CA");
    let anonymous = launcher.anonymous();
    for request in [
        anonymous.get(launcher.url("/v1/services")),
        anonymous.get(launcher.url("/v1/services/store")),
        anonymous
            .put(launcher.url("/v1/services/store"))
            .json(&json!({"base_url": "https://127.0.0.1:1", "ca_pem": ca.pem})),
        anonymous.delete(launcher.url("/v1/services/store")),
    ] {
        expect(request.send().await.unwrap(), 401).await;
    }
    assert_eq!(launcher.get("/v1/services", 200).await, json!([]));

    for (id, body, needle) in [
        (
            "Store",
            json!({"base_url": "https://h", "ca_pem": ca.pem}),
            "service id",
        ),
        (
            "store",
            json!({"base_url": "http://127.0.0.1:1", "ca_pem": ca.pem}),
            "expected an https URL",
        ),
        (
            "store",
            json!({"base_url": "https://u:p@h", "ca_pem": ca.pem}),
            "credentials",
        ),
        (
            "store",
            json!({"base_url": "https://h", "ca_pem": "nope"}),
            "ca_pem",
        ),
        (
            "store",
            json!({"base_url": "https://h", "ca_pem": ca.pem, "x": 1}),
            "unknown field",
        ),
        ("store", json!(null), "expected a JSON body"),
    ] {
        let message = error_of(put(&launcher, id, body).await, 400).await;
        assert!(message.contains(needle), "{id}: {message}");
    }
    let text = launcher
        .client()
        .put(launcher.url("/v1/services/store"))
        .body("base_url=x")
        .send()
        .await
        .unwrap();
    expect(text, 415).await;
    assert_eq!(
        launcher.get("/v1/services", 200).await,
        json!([]),
        "nothing was stored"
    );
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_are_registered_replaced_listed_removed_and_kept_across_restarts() {
    let launcher = Launcher::start();
    let ca = ServicesCa::new("api test CA");
    let other = ServicesCa::new("another CA");
    let created = expect(
        put(
            &launcher,
            "store",
            json!({"base_url": "https://127.0.0.1:8000/", "ca_pem": ca.pem}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(created["base_url"], "https://127.0.0.1:8000");
    assert_eq!(created["source"], "api");
    assert_eq!(
        created["ca_subjects"],
        json!(["O=attestable tests, CN=api test CA"])
    );
    let replaced = expect(
        put(
            &launcher,
            "store",
            json!({"base_url": "https://127.0.0.1:8001", "ca_pem": other.pem}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(replaced["base_url"], "https://127.0.0.1:8001");
    expect(
        put(
            &launcher,
            "taxi",
            json!({"base_url": "https://localhost:8002/api", "ca_pem": ca.pem}),
        )
        .await,
        201,
    )
    .await;
    let listed = launcher.get("/v1/services", 200).await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["store", "taxi"]);
    assert_eq!(
        launcher.get("/v1/services/store", 200).await["ca_pem"],
        other.pem.as_str()
    );

    let launcher = launcher.restart();
    assert_eq!(
        launcher
            .get("/v1/services", 200)
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let gone = launcher
        .client()
        .delete(launcher.url("/v1/services/taxi"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    let message = error_of(
        launcher
            .client()
            .get(launcher.url("/v1/services/taxi"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert!(message.contains("no service \"taxi\""), "{message}");
    let again = launcher
        .client()
        .delete(launcher.url("/v1/services/taxi"))
        .send()
        .await
        .unwrap();
    expect(again, 404).await;
    let audit = launcher.get("/v1/audit?subject_kind=service", 200).await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "service.create",
            "service.update",
            "service.create",
            "service.delete"
        ]
    );
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_services_are_listed_and_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ServicesCa::new("configured CA");
    let ca_path = dir.path().join("services-ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    let launcher = Launcher::start_with(LauncherOptions {
        config: Some(format!(
            "[[services]]\nid = \"store\"\nbase_url = \"https://127.0.0.1:8000\"\nca = \"{}\"\n",
            ca_path.display()
        )),
        ..Default::default()
    });
    let store = launcher.get("/v1/services/store", 200).await;
    assert_eq!(store["source"], "config");
    assert!(store["updated_at"].is_null());
    let message = error_of(
        put(
            &launcher,
            "store",
            json!({"base_url": "https://h", "ca_pem": ca.pem}),
        )
        .await,
        409,
    )
    .await;
    assert!(message.contains("configuration file"), "{message}");
    let delete = launcher
        .client()
        .delete(launcher.url("/v1/services/store"))
        .send()
        .await
        .unwrap();
    expect(delete, 409).await;
    launcher.stop();
}

#[test]
fn a_configured_service_with_a_bad_ca_stops_the_launcher_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // Searchable by the sandbox's user, as the data folder's parents must be.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let config = dir.path().join("launcher.toml");
    std::fs::write(
        &config,
        "[[services]]\nid = \"store\"\nbase_url = \"https://127.0.0.1:8000\"\nca = \"missing.pem\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let (status, stderr) = attestable_tests::launcher_once(&[
        "serve",
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!status.success());
    assert!(
        stderr.contains("[[services]] store: reading its CA"),
        "{stderr}"
    );
    assert!(stderr.contains("missing.pem"), "{stderr}");
}
