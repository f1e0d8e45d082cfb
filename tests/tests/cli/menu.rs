//! The CAMB menu, driven through a pipe.

use attestable_tests::{Launcher, program_source};

use crate::{Env, expect};

#[test]
fn a_piped_menu_session_uploads_compiles_and_executes() {
    let env = Env::new();
    let launcher = Launcher::start();
    let hello = env.file("hello.c", program_source("hello.c"));
    let script = format!(
        "\n9\nlist\n2\n{}\n4\nfirst\n1\n5\n1\n1\n7\n1\n3\n1\n1\n6\nnever read\n",
        hello.display()
    );
    let mut cmd = env.cli(&launcher);
    cmd.write_stdin(script);
    let out = expect(cmd, &["menu"], 0);
    let stdout = &out.stdout;
    for needle in [
        "1. List files\n2. Upload a file\n3. Delete a program\n4. Compile a program\n\
         5. Execute a program\n6. Exit\n7. View a run's certificate\n",
        "Invalid option \"9\": enter a number from 1 to 7.",
        "Invalid option \"list\": enter a number from 1 to 7.",
        "Uploaded hello.c as program 1 (",
        "Invalid id \"first\": enter a positive whole number.",
        "Built program 1: build 1, profile ",
        "hello from hello\nExit status: 3\n",
        "1: hello.c - ",
        "    Executable: build 1 (",
        "    Last run: 1, exited with code 3",
        "Deleted program 1 with its builds and runs.",
        "Goodbye.",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
    // Option 7 on a run without a certificate is an error, and the menu goes on.
    assert!(out.stderr.contains("Error: "), "{}", out.stderr);
    assert!(!stdout.contains("never read"));
    assert_eq!(
        expect(env.cli(&launcher), &["--json", "programs", "list"], 0).json(),
        serde_json::json!([])
    );

    // The end of the input ends the menu cleanly, wherever it comes.
    for script in ["", "1\n", "2\n", "5\n"] {
        let mut cmd = env.cli(&launcher);
        cmd.write_stdin(script);
        expect(cmd, &["menu"], 0);
    }
}
