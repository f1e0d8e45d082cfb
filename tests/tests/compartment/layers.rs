//! Layer status is never silent: `/v1/platform` reports every layer, a
//! layer the kernel lacks makes the launcher refuse builds and runs with a
//! message that names it and the way out, `--allow-degraded` runs without
//! it (recorded per run), and `--insecure-no-compartment` runs without any
//! compartment (recorded as insecure).
//!
//! "A kernel without Landlock" is real here: the launcher starts under a
//! seccomp filter that makes `landlock_create_ruleset` fail with `ENOSYS`,
//! exactly what such a kernel answers.

use attestable_tests::{Launcher, LauncherOptions, expect, launcher_once};
use serde_json::{Value, json};

use super::{BEHAVES, built, run_to_end, start, stdout};

const LINUX_LAYERS: [&str; 5] = [
    "namespaces",
    "no_new_privs",
    "landlock",
    "seccomp",
    "rlimits",
];

fn layer<'a>(compartment: &'a Value, name: &str) -> &'a Value {
    compartment["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no layer {name} in {compartment}"))
}

fn without_landlock(serve_args: &[&str]) -> Launcher {
    Launcher::start_with(LauncherOptions {
        serve_args: serve_args.iter().map(|s| s.to_string()).collect(),
        missing_syscalls: vec![libc::SYS_landlock_create_ruleset],
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_reports_the_backend_every_layer_and_the_machine() {
    let launcher = start("", &[]);
    let platform = launcher.get("/v1/platform", 200).await;
    let compartment = &platform["compartment"];
    assert_eq!(compartment["backend"], "linux-sandbox");
    assert_eq!(compartment["insecure"], false);
    assert_eq!(compartment["degraded"], json!([]));
    let names: Vec<&str> = compartment["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, LINUX_LAYERS);
    for name in LINUX_LAYERS {
        let l = layer(compartment, name);
        assert_eq!(l["status"], "active", "{l}");
        assert!(!l["detail"].as_str().unwrap().is_empty(), "{l}");
    }
    assert!(
        layer(compartment, "landlock")["detail"]
            .as_str()
            .unwrap()
            .starts_with("ABI ")
    );
    // The machine, as the evidence will state it.
    // SAFETY: utsname is plain data; uname fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::uname(&mut uts) }, 0);
    // SAFETY: the kernel NUL-terminates the field.
    let machine = unsafe { std::ffi::CStr::from_ptr(uts.machine.as_ptr()) };
    assert_eq!(platform["arch"], machine.to_str().unwrap());
    assert_eq!(platform["os"], "Linux");
    assert!(platform["cpus"].as_u64().unwrap() >= 1);
    assert!(platform["physical_memory_bytes"].as_u64().unwrap() > 0);
    assert!(!platform["cpu_model"].as_str().unwrap().is_empty());
    assert!(!platform["kernel"].as_str().unwrap().is_empty());
    assert_eq!(platform["toolchains"]["default_profile"], "host");

    // The request fields are in the OpenAPI document.
    let doc = launcher.get("/v1/openapi.json", 200).await;
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["BuildRequest"]["properties"]["services_anchor_pem"].is_object(),
        "{doc}"
    );
    assert!(
        schemas["RunRequest"]["properties"]["limits"].is_object(),
        "{doc}"
    );
    assert!(
        schemas["BuildView"]["properties"]["sdk_sha256"].is_object(),
        "{doc}"
    );
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_without_landlock_is_refused_until_allowed_degraded() {
    let launcher = without_landlock(&[]);
    let platform = launcher.get("/v1/platform", 200).await;
    let landlock = layer(&platform["compartment"], "landlock");
    assert_eq!(landlock["status"], "unavailable", "{landlock}");
    for name in ["namespaces", "seccomp", "rlimits"] {
        assert_eq!(layer(&platform["compartment"], name)["status"], "active");
    }
    assert!(
        launcher
            .log()
            .contains("builds and runs are refused: landlock:")
    );

    let program = launcher
        .upload_ok("behaves.c", BEHAVES.as_bytes().to_vec())
        .await["id"]
        .as_i64()
        .unwrap();
    let refusals = [
        expect(launcher.build_with(program, json!({})).await, 503).await,
        expect(
            launcher
                .client()
                .post(launcher.url(&format!("/v1/programs/{program}/runs")))
                .json(&json!({}))
                .send()
                .await
                .unwrap(),
            503,
        )
        .await,
    ];
    for body in refusals {
        assert_eq!(body["error"]["code"], "compartment_unavailable", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("landlock: "), "{message}");
        assert!(
            message.contains(
                "Start the launcher with --allow-degraded landlock to run without it, or fix it: \
                 boot a kernel with Landlock"
            ),
            "{message}"
        );
    }
    launcher.stop();

    // The same kernel, the operator's explicit choice: it runs, and says so.
    let degraded = without_landlock(&["--allow-degraded", "landlock"]);
    let platform = degraded.get("/v1/platform", 200).await;
    assert_eq!(platform["compartment"]["degraded"], json!(["landlock"]));
    let program = degraded
        .upload_ok("behaves.c", BEHAVES.as_bytes().to_vec())
        .await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(degraded.build_ok(program).await["status"], "succeeded");
    let run = run_to_end(&degraded, program, json!({})).await;
    assert_eq!(run["status"], "exited", "{run}");
    assert!(stdout(&run).contains("hello from the sandbox"), "{run}");
    let compartment = &run["compartment"];
    assert_eq!(compartment["degraded"], json!(["landlock"]));
    assert_eq!(compartment["insecure"], false);
    let landlock = layer(compartment, "landlock");
    assert_eq!(landlock["status"], "disabled", "{landlock}");
    let detail = landlock["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(
            "switched off by --allow-degraded landlock (on this machine: unavailable: "
        ),
        "{detail}"
    );
    for name in ["namespaces", "no_new_privs", "seccomp", "rlimits"] {
        assert_eq!(layer(compartment, name)["status"], "active");
    }
    degraded.stop();
}

#[test]
fn degraded_layers_must_be_layers_of_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (status, stderr) = launcher_once(&[
        "serve",
        "--data",
        data,
        "--listen",
        "127.0.0.1:0",
        "--allow-degraded",
        "landlock,capsicum",
    ]);
    assert!(!status.success());
    assert!(
        stderr.contains(
            "--allow-degraded capsicum: linux-sandbox has no such layer (its layers: namespaces, \
             no_new_privs, landlock, seccomp, rlimits)"
        ),
        "{stderr}"
    );
    let (status, stderr) = launcher_once(&[
        "serve",
        "--data",
        data,
        "--listen",
        "127.0.0.1:0",
        "--allow-degraded",
        "landlock",
        "--insecure-no-compartment",
    ]);
    assert!(!status.success());
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_compartment_every_run_is_recorded_insecure() {
    let launcher = start("", &["--insecure-no-compartment"]);
    let platform = launcher.get("/v1/platform", 200).await;
    assert_eq!(platform["compartment"]["backend"], "none");
    assert_eq!(platform["compartment"]["insecure"], true);
    assert!(launcher.log().contains("--insecure-no-compartment"));
    let (program, _) = built(&launcher, "behaves.c", BEHAVES.as_bytes().to_vec()).await;
    let run = run_to_end(&launcher, program, json!({})).await;
    assert_eq!(run["status"], "exited", "{run}");
    assert_eq!(run["compartment"]["backend"], "none");
    assert_eq!(run["compartment"]["insecure"], true);
    // Unconfined indeed: the program runs as the launcher's own user.
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert!(stdout(&run).contains(&format!("UID {uid}\n")), "{run}");
    launcher.stop();
}
