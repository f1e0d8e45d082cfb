//! Measured execution: the launcher hashes the stored executable as it
//! copies it into a sealed memfd and runs that copy. Replacing the store's
//! file before a run makes the run fail naming both hashes (nothing runs);
//! replacing it during a run changes nothing.

use std::path::PathBuf;

use attestable_tests::Launcher;
use serde_json::{Value, json};

use super::{built, run_to_end, start, stdout};

const ORIGINAL: &str = "#include <stdio.h>\n#include <unistd.h>\n\
    int main(void) { sleep(3); printf(\"original bytes ran\\n\"); return 0; }\n";
const IMPOSTOR: &str = "#include <stdio.h>\n\
    int main(void) { printf(\"IMPOSTOR RAN\\n\"); return 0; }\n";

/// `<data>/store/sha256/ab/abcd…` of a stored blob.
fn store_path(launcher: &Launcher, sha: &str) -> PathBuf {
    launcher
        .data_dir()
        .join("store/sha256")
        .join(&sha[..2])
        .join(sha)
}

fn sha(build: &Value) -> String {
    build["executable_sha256"].as_str().unwrap().to_owned()
}

/// Overwrites the stored file in place (the launcher is root: so are we).
fn replace(path: &std::path::Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("replacing {}: {e}", path.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_executable_never_runs() {
    let launcher = start("", &[]);
    let (program, original) = built(&launcher, "original.c", ORIGINAL.as_bytes().to_vec()).await;
    let (_, impostor) = built(&launcher, "impostor.c", IMPOSTOR.as_bytes().to_vec()).await;
    let path = store_path(&launcher, &sha(&original));
    let impostor_bytes = std::fs::read(store_path(&launcher, &sha(&impostor))).unwrap();

    replace(&path, &impostor_bytes);
    let run = run_to_end(&launcher, program, json!({})).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("it has SHA-256 {}", sha(&impostor)))
            && error.contains(&format!("expected {}", sha(&original))),
        "the message names both hashes: {error}"
    );
    assert!(error.contains("altered"), "{error}");
    // Nothing was started: no pid, no measurement, no output.
    assert_eq!(run["pid"], Value::Null);
    assert_eq!(run["executable_sha256"], Value::Null);
    assert_eq!(run["started_at"], Value::Null);
    assert_eq!(stdout(&run), "");
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_executable_during_a_run_changes_nothing() {
    let launcher = start("", &[]);
    let (program, original) = built(&launcher, "original.c", ORIGINAL.as_bytes().to_vec()).await;
    let (_, impostor) = built(&launcher, "impostor.c", IMPOSTOR.as_bytes().to_vec()).await;
    let path = store_path(&launcher, &sha(&original));
    let impostor_bytes = std::fs::read(store_path(&launcher, &sha(&impostor))).unwrap();

    let run = launcher.run(program, json!({})).await;
    let id = run["id"].as_i64().unwrap();
    let running = launcher
        .wait_run_until(id, |r| r["status"] != "queued" && r["status"] != "starting")
        .await;
    assert_eq!(running["status"], "running", "{running}");
    // The program sleeps before it prints: it is running from its sealed
    // copy while the file on disk changes under it.
    replace(&path, &impostor_bytes);
    let done = launcher.wait_run(id).await;
    assert_eq!(done["status"], "exited", "{done}");
    assert_eq!(stdout(&done), "original bytes ran\n");
    assert_eq!(done["executable_sha256"], original["executable_sha256"]);

    // The next run notices.
    let next = run_to_end(&launcher, program, json!({})).await;
    assert_eq!(next["status"], "failed", "{next}");
    assert!(!stdout(&next).contains("IMPOSTOR"));
    launcher.stop();
}
