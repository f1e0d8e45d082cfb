//! The `attestable` CLI, end to end: the built binary against real launchers
//! on loopback, in text and `--json`, including its failure messages and
//! exit statuses. Every invocation runs with an empty home, config and data
//! folder, so nothing on the machine leaks into a test.

mod certificates;
mod commands;
mod connection;
mod live;
mod menu;
mod services;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use attestable_tests::{Launcher, cli_bin};
use serde_json::Value;

/// An isolated environment for `attestable` invocations.
pub struct Env {
    dir: tempfile::TempDir,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cli-test-")
            .tempdir()
            .expect("temporary folder");
        for sub in ["home", "config", "data", "cwd"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("folder");
        }
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The folder commands run in.
    pub fn cwd(&self) -> PathBuf {
        self.dir.path().join("cwd")
    }

    /// `attestable` with no connection settings at all, as a std command
    /// (for tests that read its output while it runs).
    pub fn std_bare(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(cli_bin());
        for var in [
            "ATTESTABLE_URL",
            "ATTESTABLE_TOKEN_FILE",
            "ATTESTABLE_CA",
            "ATTESTABLE_DATA",
            "ATTESTABLE_CONFIG",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("HOME", self.path().join("home"))
            .env("XDG_CONFIG_HOME", self.path().join("config"))
            .env("XDG_DATA_HOME", self.path().join("data"))
            .current_dir(self.cwd());
        cmd
    }

    /// `attestable` with no connection settings at all.
    pub fn bare(&self) -> Command {
        let mut cmd = Command::from_std(self.std_bare());
        cmd.timeout(std::time::Duration::from_secs(120));
        cmd
    }

    /// `attestable --data <the launcher's data folder>`.
    pub fn cli(&self, launcher: &Launcher) -> Command {
        let mut cmd = self.bare();
        cmd.arg("--data").arg(launcher.data_dir());
        cmd
    }

    /// Writes `text` to `name` in this environment; returns the path.
    pub fn file(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).expect("writing a test file");
        path
    }
}

/// The output of a finished command.
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// The `--json` error object on stderr.
    pub fn json_error(&self) -> Value {
        serde_json::from_str(self.stderr.trim())
            .unwrap_or_else(|e| panic!("stderr is not JSON ({e}):\n{}", self.stderr))
    }
}

/// Runs `cmd` with `args` and returns what it did, whatever its status.
pub fn run(mut cmd: Command, args: &[&str]) -> Output {
    let output = cmd.args(args).output().expect("running attestable");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs and expects exit status `code`, showing everything when it differs.
pub fn expect(cmd: Command, args: &[&str], code: i32) -> Output {
    let out = run(cmd, args);
    assert_eq!(
        out.code, code,
        "attestable {args:?}: expected exit {code}, got {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.code, out.stdout, out.stderr
    );
    out
}

/// A C program that prints its argument, and exits with it as a number,
/// or crashes (SIGSEGV, which reaches even a namespace's PID 1) when it is
/// `crash`.
pub const EXIT_WITH: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *arg = argc > 1 ? argv[1] : "0";
    printf("out %s\n", arg);
    fflush(stdout);
    fprintf(stderr, "err %s\n", arg);
    if (strcmp(arg, "crash") == 0) {
        volatile int *volatile nowhere = NULL;
        *nowhere = 1;
    }
    return atoi(arg);
}
"#;

/// Uploads `source` as `name` and builds it; returns the program id.
pub fn upload_and_build(env: &Env, launcher: &Launcher, name: &str, source: &[u8]) -> i64 {
    let file = env.file(name, source);
    let program = expect(
        env.cli(launcher),
        &["--json", "programs", "upload", file.to_str().unwrap()],
        0,
    )
    .json();
    let id = program["id"].as_i64().expect("program id");
    expect(env.cli(launcher), &["build", &id.to_string()], 0);
    id
}
