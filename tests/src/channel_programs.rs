//! Helpers for the channel and broker suites: the C programs of
//! `tests/programs/channel/`, built by the launcher with the SDK and a
//! services anchor, run to their end, and their one-line-per-step output.

use serde_json::{Value, json};

use crate::{Launcher, expect, program_source};

/// Uploads `tests/programs/channel/<file>` and builds it with `anchor_pem`
/// compiled in as the services trust anchor. Returns (program id, build).
pub async fn build(launcher: &Launcher, file: &str, anchor_pem: Option<&str>) -> (i64, Value) {
    let program = launcher
        .upload_ok(file, program_source(&format!("channel/{file}")))
        .await;
    let id = program["id"].as_i64().expect("program id");
    let body = match anchor_pem {
        Some(pem) => json!({"services_anchor_pem": pem}),
        None => json!({}),
    };
    let build = expect(launcher.build_with(id, body).await, 201).await;
    assert_eq!(build["status"], "succeeded", "{build}");
    (id, build)
}

/// Starts a run of `program` with `args` and waits for its end.
pub async fn run_to_end(launcher: &Launcher, program: i64, args: &[&str]) -> Value {
    let run = launcher
        .run(program, json!({"args": args, "time_limit_s": 60}))
        .await;
    launcher.wait_run(run["id"].as_i64().expect("run id")).await
}

/// The run's id.
pub fn run_id(run: &Value) -> i64 {
    run["id"].as_i64().expect("run id")
}

/// The line of `stdout` that starts with `prefix` (e.g. `"2 write"`).
pub fn line<'a>(run: &'a Value, prefix: &str) -> &'a str {
    let stdout = run["stdout"].as_str().unwrap_or("");
    stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in the output of {run}"))
}

/// `key=value` of a step's line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ')
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}
