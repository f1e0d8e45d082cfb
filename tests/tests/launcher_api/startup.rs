//! What the daemon creates at first start, and what it refuses to do.

use std::os::unix::fs::PermissionsExt;

use attestable_tests::{Launcher, LauncherOptions, launcher_once, program_source};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_creates_keys_token_and_address_file() {
    let launcher = Launcher::start();
    let data = launcher.data_dir();
    let mode = |p: &str| {
        std::fs::metadata(data.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("pki/root.key"), 0o600);
    assert_eq!(mode("pki/tls.key"), 0o600);
    assert_eq!(mode("api-token"), 0o600);
    assert_eq!(mode("launcher.db"), 0o600);
    // Searchable, not listable: the sandbox's user reaches its own folders.
    assert_eq!(mode("."), 0o711);
    assert_eq!(mode("pki"), 0o700);
    assert_eq!(launcher.token().len(), 64);
    let addr = std::fs::read_to_string(data.join("launcher.addr")).unwrap();
    assert_eq!(addr, launcher.addr().to_string());
    assert!(addr.starts_with("127.0.0.1:"));
    assert!(launcher.log().contains(&addr), "the log names the address");

    let doc = launcher.get("/v1/openapi.json", 200).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/v1/programs/{id}/runs"]["post"].is_object());
    let platform = launcher.get("/v1/platform", 200).await;
    assert!(platform["cpus"].as_u64().unwrap() >= 1);
    assert!(platform["physical_memory_bytes"].as_u64().unwrap() > 0);
    assert_eq!(platform["compartment"]["backend"], "linux-sandbox");
    assert_eq!(platform["compartment"]["insecure"], false);
    assert_eq!(platform["toolchains"]["default_profile"], "host");

    // A second daemon on the same data folder is refused.
    let (status, stderr) = launcher_once(&[
        "serve",
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!status.success());
    assert!(stderr.contains("another launcher"), "{stderr}");

    let data_copy = data.clone();
    let tmp = launcher.stop();
    assert!(
        !data_copy.join("launcher.addr").exists(),
        "removed on shutdown"
    );
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_data_folder_builds_and_runs() {
    // Builds and runs work in folders under the data folder with the compiler
    // and the program started elsewhere: a relative `--data` must still work.
    let launcher = Launcher::start_with(LauncherOptions {
        relative_data: true,
        ..Default::default()
    });
    let id = launcher
        .upload_ok("hello.c", program_source("hello.c"))
        .await["id"]
        .as_i64()
        .unwrap();
    let build = launcher.build_ok(id).await;
    assert_eq!(build["status"], "succeeded", "{build}");
    let run = launcher.run(id, serde_json::json!({})).await;
    let run = launcher.wait_run(run["id"].as_i64().unwrap()).await;
    assert_eq!(run["status"], "exited", "{run}");
    assert_eq!(run["stdout"], "hello from hello\n", "{run}");
    launcher.stop();
}

#[test]
fn non_loopback_addresses_are_refused_unless_configured() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (status, stderr) = launcher_once(&["serve", "--data", data, "--listen", "0.0.0.0:0"]);
    assert!(!status.success());
    assert!(stderr.contains("allow_non_loopback"), "{stderr}");
    let config = dir.path().join("open.toml");
    std::fs::write(&config, "[server]\nallow_non_loopback = true\n").unwrap();
    let (status, stderr) = launcher_once(&[
        "serve",
        "--data",
        data,
        "--listen",
        "0.0.0.0:0",
        "--camb-compat",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!status.success());
    assert!(
        stderr.contains("--camb-compat") && stderr.contains("loopback"),
        "{stderr}"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[uploads]\nmax_bytes = 0\n").unwrap();
    let (status, stderr) = launcher_once(&[
        "serve",
        "--data",
        data,
        "--listen",
        "127.0.0.1:0",
        "--config",
        bad.to_str().unwrap(),
    ]);
    assert!(!status.success());
    assert!(
        stderr.contains("uploads.max_bytes must be at least 1"),
        "{stderr}"
    );
}
