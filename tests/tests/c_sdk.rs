//! The C SDK's own tests (`integration-process/`), run by `cargo test`:
//! `make -C integration-process test` builds the SDK with gcc and clang
//! (warnings as errors), runs the protocol vectors, the SDK and case-study
//! tests and the `openssl cms` interoperability test, then all of them again
//! under valgrind. Nothing is skipped: a missing `make` or Makefile fails.

use std::process::Command;

#[test]
fn the_c_sdk_passes_its_tests_and_valgrind() {
    let dir = attestable_tests::workspace_root().join("integration-process");
    let makefile = dir.join("Makefile");
    assert!(
        makefile.is_file(),
        "{} is missing: the C SDK's tests cannot run",
        makefile.display()
    );
    let out = Command::new("make")
        .arg("-C")
        .arg(&dir)
        .arg("test")
        .output()
        .unwrap_or_else(|e| panic!("running make (is it installed?): {e}"));
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "make -C integration-process test failed:\n{text}"
    );
    assert!(text.contains("== all C tests passed"), "{text}");
}
