//! Build limits and toolchain failures, with stand-in compilers.

use std::os::unix::fs::PermissionsExt;

use attestable_tests::{Launcher, LauncherOptions, expect, program_source};
use serde_json::json;

/// A "compiler" that identifies itself and then hangs.
fn slow_compiler(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("slowcc");
    std::fs::write(
        &path,
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'slowcc 1.0'; exit 0; fi\n\
         echo 'slowcc: thinking'\nexec sleep 600\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_build_time_limit_and_a_missing_compiler() {
    let tools = tempfile::tempdir().unwrap();
    // The compiler runs confined as the sandbox's user, who must reach it.
    std::fs::set_permissions(tools.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let slow = slow_compiler(tools.path());
    let launcher = Launcher::start_with(LauncherOptions {
        config: Some(format!(
            // Long enough for the default profile, which compiles the SDK too.
            "[builds]\ntime_limit_s = 5\n\
             [profiles.slow]\ncompiler = \"{}\"\n\
             [profiles.absent]\ncompiler = \"no-such-compiler-anywhere\"\n",
            slow.display()
        )),
        ..Default::default()
    });
    let program = launcher
        .upload_ok("hello.c", program_source("hello.c"))
        .await["id"]
        .as_i64()
        .unwrap();
    let url = launcher.url(&format!("/v1/programs/{program}/builds"));

    let body = expect(
        launcher
            .client()
            .post(&url)
            .json(&json!({"profile": "slow"}))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(body["error"]["code"], "compile_failed");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("build time limit (5 s)"), "{message}");
    assert!(
        message.contains("slowcc: thinking"),
        "the log so far is kept: {message}"
    );
    assert_eq!(body["build"]["compiler"], "slowcc 1.0");
    assert_eq!(body["build"]["profile"], "slow");

    let body = expect(
        launcher
            .client()
            .post(&url)
            .json(&json!({"profile": "absent"}))
            .send()
            .await
            .unwrap(),
        500,
    )
    .await;
    assert_eq!(body["error"]["code"], "toolchain_unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not found in PATH"),
        "{body}"
    );
    assert_eq!(body["build"]["status"], "failed");

    // Both failures are on record; the work folders are gone.
    let builds = launcher
        .get(&format!("/v1/programs/{program}/builds"), 200)
        .await;
    assert_eq!(builds.as_array().unwrap().len(), 2);
    let leftovers = std::fs::read_dir(launcher.data_dir().join("builds"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0);
    // The default profile still works.
    assert_eq!(launcher.build_ok(program).await["status"], "succeeded");
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiler_warnings_are_in_the_log_of_a_successful_build() {
    let launcher = Launcher::start();
    let source = b"int main(void) { int unused; return 0; }\n".to_vec();
    let program = launcher.upload_ok("warn.c", source).await["id"]
        .as_i64()
        .unwrap();
    let build = launcher.build_ok(program).await;
    let log = build["log"].as_str().unwrap();
    assert!(log.contains("unused"), "{log}");
    assert_eq!(build["log_truncated"], false);
    launcher.stop();
}
