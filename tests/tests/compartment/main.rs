//! Compartments end to end: real launcher daemons (root here, so sandboxes
//! run as uid 65534 outside, 1000 inside), real builds with the C SDK, and
//! the hostile programs of `tests/programs/hostile/` uploaded, built and
//! run through the API. Each assertion reads the run record: what the
//! launcher says happened.
#![cfg(target_os = "linux")]

mod builds;
mod hostile;
mod layers;
mod measured;

use attestable_tests::{Launcher, LauncherOptions, expect, program_source};
use serde_json::{Value, json};

/// A launcher with `serve_args`, under the default `host` profile (the
/// hostile programs define `_GNU_SOURCE` themselves). `builds` adds keys to
/// `[builds]`.
fn start(builds: &str, serve_args: &[&str]) -> Launcher {
    let config = format!("[builds]\n{builds}\n");
    Launcher::start_with(LauncherOptions {
        config: Some(config),
        serve_args: serve_args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

fn hostile(name: &str) -> Vec<u8> {
    program_source(&format!("hostile/{name}"))
}

/// Uploads `source` as `name` and builds it; returns (program id, build).
async fn built(launcher: &Launcher, name: &str, source: Vec<u8>) -> (i64, Value) {
    let program = launcher.upload_ok(name, source).await["id"]
        .as_i64()
        .unwrap();
    let build = expect(launcher.build_with(program, json!({})).await, 201).await;
    assert_eq!(build["status"], "succeeded", "{build}");
    (program, build)
}

/// Starts a run with `body` and waits for its end.
async fn run_to_end(launcher: &Launcher, program: i64, body: Value) -> Value {
    let run = launcher.run(program, body).await;
    launcher.wait_run(run["id"].as_i64().unwrap()).await
}

fn stdout(run: &Value) -> &str {
    run["stdout"].as_str().unwrap_or("")
}

/// A program that behaves: reports what it sees of its compartment and
/// writes in its working folder, and takes arguments.
const BEHAVES: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
    int env = 0, high = 0;
    for (char **e = environ; *e; e++) { printf("ENV %s\n", *e); env++; }
    for (int fd = 4; fd < 1024; fd++) if (fcntl(fd, F_GETFD) != -1) high++;
    struct stat st;
    int sock = fstat(3, &st) == 0 && S_ISSOCK(st.st_mode);
    char cwd[4096], host[256];
    if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
    if (gethostname(host, sizeof host)) host[0] = 0;
    printf("PID %d\nUID %d\nCWD %s\nHOST %s\nENVCOUNT %d\nHIGHFDS %d\nFD3SOCKET %d\n",
           (int)getpid(), (int)getuid(), cwd, host, env, high, sock);
    FILE *f = fopen("output.txt", "w");
    if (!f || fputs("inside\n", f) == EOF || fclose(f)) { printf("FAILED output.txt\n"); return 2; }
    printf("OK wrote output.txt\n");
    for (int i = 1; i < argc; i++) printf("ARG %s\n", argv[i]);
    printf("hello from the sandbox\n");
    return 0;
}
"#;
