//! Every launcher command in text and `--json`, and the exit statuses of `run`.

use attestable_tests::{Launcher, program_source};

use crate::{EXIT_WITH, Env, expect, upload_and_build};

#[test]
fn programs_builds_and_runs_in_text_and_json() {
    let env = Env::new();
    let launcher = Launcher::start();
    let cli = || env.cli(&launcher);

    let empty = expect(cli(), &["programs", "list"], 0);
    assert!(empty.stdout.contains("No programs yet"), "{}", empty.stdout);
    assert_eq!(
        expect(cli(), &["--json", "programs", "list"], 0).json(),
        serde_json::json!([])
    );

    // Upload: text, then JSON (the launcher's program).
    let hello = env.file("hello.c", program_source("hello.c"));
    let out = expect(cli(), &["programs", "upload", hello.to_str().unwrap()], 0);
    assert!(
        out.stdout.starts_with("Uploaded hello.c as program 1 ("),
        "{}",
        out.stdout
    );
    let exit_with = env.file("exit_with.c", EXIT_WITH);
    let program = expect(
        cli(),
        &["--json", "programs", "upload", exit_with.to_str().unwrap()],
        0,
    )
    .json();
    assert_eq!(program["id"], 2);
    assert_eq!(program["name"], "exit_with.c");
    assert_eq!(program["size"], EXIT_WITH.len());

    // The CAMB-style list before any build.
    let list = expect(cli(), &["programs", "list"], 0).stdout;
    assert!(list.contains("1: hello.c - "), "{list}");
    assert!(
        list.contains("    Executable: none; compile it with `attestable build 1`"),
        "{list}"
    );

    // Build: text, then JSON (the launcher's build).
    let out = expect(cli(), &["build", "1"], 0);
    assert!(
        out.stdout.starts_with("Built program 1: build 1, profile "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Executable SHA-256: "),
        "{}",
        out.stdout
    );
    let build = expect(cli(), &["--json", "build", "2"], 0).json();
    assert_eq!(build["status"], "succeeded");
    assert_eq!(build["program_id"], 2);

    // Run: output on the right streams, the program's exit status.
    let out = expect(cli(), &["run", "1", "--arg", "one", "--", "two words"], 3);
    assert_eq!(out.stdout, "hello from hello [one] [two words]\n");
    assert!(
        out.stderr.starts_with("a line on stderr\n"),
        "{}",
        out.stderr
    );
    let out = expect(cli(), &["run", "2"], 0);
    assert_eq!(out.stdout, "out 0\n");
    assert_eq!(out.stderr, "err 0\n");
    expect(cli(), &["run", "2", "--arg", "7"], 7);
    let crashed = expect(cli(), &["run", "2", "--arg", "crash"], 128 + 11);
    assert!(
        crashed
            .stderr
            .contains("run 4 killed by signal 11 (SIGSEGV)"),
        "{}",
        crashed.stderr
    );
    // --json: the ended run (with its output) on stdout; the status still propagates.
    let run = expect(
        cli(),
        &["--json", "run", "2", "--arg", "5", "--build", "2"],
        5,
    )
    .json();
    assert_eq!(run["status"], "exited");
    assert_eq!(run["exit_code"], 5);
    assert_eq!(run["stdout"], "out 5\n");
    assert_eq!(run["stderr"], "err 5\n");
    let run_id = run["id"].as_i64().unwrap();

    // --detach returns at once with the queued run.
    let out = expect(cli(), &["run", "1", "--detach"], 0);
    assert!(
        out.stdout.starts_with("Run 6 of program 1 (build 1) is "),
        "{}",
        out.stdout
    );
    let detached = expect(cli(), &["--json", "run", "1", "--detach"], 0).json();
    assert_eq!(detached["id"], 7);
    assert_eq!(detached["program_id"], 1);

    // Runs: list and show.
    let list = expect(cli(), &["runs", "list", "--program", "2"], 0).stdout;
    assert!(list.starts_with("  RUN  PROGRAM  BUILD"), "{list}");
    assert!(list.contains("exited 7"), "{list}");
    assert_eq!(list.lines().count(), 1 + 4, "{list}");
    let all = expect(cli(), &["--json", "runs", "list"], 0).json();
    assert_eq!(all.as_array().unwrap().len(), 7);
    let show = expect(cli(), &["runs", "show", &run_id.to_string()], 0).stdout;
    assert!(
        show.starts_with(&format!(
            "Run {run_id} of program 2 (build 2): exited with code 5"
        )),
        "{show}"
    );
    assert!(
        show.contains("--- stdout ---\nout 5\n--- stderr ---\nerr 5\n"),
        "{show}"
    );
    let shown = expect(cli(), &["--json", "runs", "show", &run_id.to_string()], 0).json();
    assert_eq!(shown, run, "runs show --json is the launcher's run");

    // Show a program: text, and the documented JSON object.
    let show = expect(cli(), &["programs", "show", "2"], 0).stdout;
    assert!(show.starts_with("Program 2: exit_with.c\n"), "{show}");
    assert!(show.contains("Builds:\n"), "{show}");
    let shown = expect(cli(), &["--json", "programs", "show", "2"], 0).json();
    assert_eq!(shown["program"], program);
    assert_eq!(shown["builds"].as_array().unwrap().len(), 1);
    assert_eq!(shown["runs"].as_array().unwrap().len(), 4);
    let list = expect(cli(), &["programs", "list"], 0).stdout;
    assert!(
        list.contains("2: exit_with.c - ")
            && list.contains("    Executable: build 2 (host), sha256 "),
        "{list}"
    );
    assert!(
        list.contains("    Last run: 5, exited with code 5"),
        "{list}"
    );

    // Platform.
    let platform = expect(cli(), &["platform"], 0).stdout;
    assert!(platform.contains("\nCompartment: "), "{platform}");
    assert!(platform.contains("Toolchains (default "), "{platform}");
    let platform = expect(cli(), &["--json", "platform"], 0).json();
    assert!(platform["compartment"]["backend"].is_string(), "{platform}");
    assert!(platform["cpus"].as_u64().unwrap() >= 1);

    // Delete, once the detached runs are over.
    for id in ["6", "7"] {
        let _ = crate::run(cli(), &["runs", "cancel", id]);
    }
    let out = expect(cli(), &["programs", "delete", "1"], 0);
    assert_eq!(out.stdout, "Deleted program 1 with its builds and runs.\n");
    let out = expect(cli(), &["--json", "programs", "delete", "2"], 0);
    assert_eq!(out.json(), serde_json::json!({"deleted": 2}));
    assert_eq!(
        expect(cli(), &["--json", "programs", "list"], 0).json(),
        serde_json::json!([])
    );
}

#[test]
fn compile_errors_show_the_compilers_diagnostics() {
    let env = Env::new();
    let launcher = Launcher::start();
    let source = env.file("compile_error.c", program_source("compile_error.c"));
    expect(
        env.cli(&launcher),
        &["programs", "upload", source.to_str().unwrap()],
        0,
    );
    let out = expect(env.cli(&launcher), &["build", "1"], 1);
    assert!(
        out.stderr
            .starts_with("attestable: error: program 1 did not compile (build 1, profile "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("the compiler said:\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("'undeclared_on_purpose' undeclared"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
    let out = expect(env.cli(&launcher), &["--json", "build", "1"], 1);
    let error = out.json_error();
    assert_eq!(error["error"]["code"], "compile_failed");
    assert_eq!(error["build"]["status"], "failed");
    assert!(
        error["build"]["log"]
            .as_str()
            .unwrap()
            .contains("undeclared_on_purpose")
    );
    // Nothing to run.
    let out = expect(env.cli(&launcher), &["run", "1"], 1);
    assert!(
        out.stderr.contains("program 1 has no succeeded build"),
        "{}",
        out.stderr
    );
}

#[test]
fn time_limits_and_cancellation_have_their_own_exit_statuses() {
    let env = Env::new();
    let launcher = Launcher::start();
    let id = upload_and_build(&env, &launcher, "loop.c", &program_source("loop.c")).to_string();
    let out = expect(env.cli(&launcher), &["run", &id, "--time-limit", "1"], 124);
    assert_eq!(out.stdout, "looping\n");
    assert!(
        out.stderr
            .contains("attestable: run 1 timed out: stopped at its time limit of 1 s"),
        "{}",
        out.stderr
    );

    let queued = expect(env.cli(&launcher), &["--json", "run", &id, "--detach"], 0).json();
    let run = queued["id"].as_i64().unwrap().to_string();
    let out = expect(env.cli(&launcher), &["runs", "cancel", &run], 0);
    assert!(
        out.stdout
            .starts_with(&format!("Run {run} cancelled: cancelled by ")),
        "{}",
        out.stdout
    );
    let out = expect(env.cli(&launcher), &["runs", "cancel", &run], 1);
    assert!(
        out.stderr
            .contains(&format!("run {run} already ended (cancelled)")),
        "{}",
        out.stderr
    );
    let out = expect(env.cli(&launcher), &["--json", "runs", "cancel", &run], 1);
    assert_eq!(out.json_error()["error"]["code"], "conflict");
}

#[test]
fn help_completions_and_usage() {
    let env = Env::new();
    let help = expect(env.bare(), &["--help"], 0).stdout;
    for needle in ["Examples:", "programs", "cert", "menu", "ATTESTABLE_URL"] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
    let help = expect(env.bare(), &["run", "--help"], 0).stdout;
    assert!(
        help.contains("Exit status:") && help.contains("124"),
        "{help}"
    );
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = expect(env.bare(), &["completions", shell], 0).stdout;
        assert!(script.contains("attestable"), "{shell}");
        assert!(script.contains("programs"), "{shell}");
    }
    // No command and no terminal: usage, not a menu.
    let out = expect(env.bare(), &[], 2);
    assert!(out.stderr.contains("no command given"), "{}", out.stderr);
    expect(env.bare(), &["runs", "show", "0"], 2);
    expect(env.bare(), &["completions", "tcsh"], 2);
}
