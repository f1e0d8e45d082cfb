//! Twenty uploads and twenty runs at once; the records stay consistent.

use attestable_tests::{Launcher, files_under};
use futures::future::join_all;
use programs_db::{Db, Table};
use serde_json::json;

const N: usize = 20;

fn source(i: usize) -> Vec<u8> {
    format!(
        "#include <stdio.h>\nint main(void) {{ printf(\"program {i}\\n\"); return {}; }}\n",
        i % 7
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_uploads_and_runs_in_parallel() {
    let launcher = Launcher::start();
    let names: Vec<String> = (0..N).map(|i| format!("p{i}.c")).collect();
    let uploads = join_all(
        names
            .iter()
            .enumerate()
            .map(|(i, name)| launcher.upload_ok(name, source(i))),
    )
    .await;
    let mut ids: Vec<i64> = uploads.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(
        ids,
        (1..=N as i64).collect::<Vec<_>>(),
        "distinct ids, none lost"
    );

    let builds = join_all(ids.iter().map(|&id| launcher.build_ok(id))).await;
    assert!(builds.iter().all(|b| b["status"] == "succeeded"));

    let runs = join_all(
        ids.iter()
            .map(|&id| launcher.run(id, json!({"args": [id.to_string()]}))),
    )
    .await;
    let ended = join_all(
        runs.iter()
            .map(|r| launcher.wait_run(r["id"].as_i64().unwrap())),
    )
    .await;
    for run in &ended {
        assert_eq!(run["status"], "exited", "{run}");
        let program = run["program_id"].as_i64().unwrap();
        let index = uploads
            .iter()
            .position(|p| p["id"] == program)
            .expect("a run of an uploaded program");
        assert_eq!(run["stdout"], format!("program {index}\n"));
        assert_eq!(run["exit_code"], (index % 7) as i64);
    }

    let data = launcher.stop();
    let data = data.path().join("data");
    let db = Db::open(&data).unwrap();
    assert_eq!(db.check_integrity().unwrap(), Vec::<String>::new());
    assert_eq!(db.count(Table::Programs).unwrap(), N as u64);
    assert_eq!(db.count(Table::Builds).unwrap(), N as u64);
    assert_eq!(db.count(Table::Runs).unwrap(), N as u64);
    // One create per program, start + end per build, create + 3 changes per run.
    assert_eq!(
        db.count(Table::AuditEvents).unwrap(),
        (N * (1 + 2 + 4)) as u64
    );
    // Store files and rows agree, and nothing is left in the staging or work folders.
    let referenced = db.referenced_blobs().unwrap();
    assert_eq!(referenced.len(), 2 * N);
    assert_eq!(db.stored_blobs().unwrap(), referenced);
    for folder in ["store/tmp", "builds", "runs"] {
        let left = files_under(&data.join(folder));
        assert!(left.is_empty(), "{folder}: {left:?}");
    }
}
