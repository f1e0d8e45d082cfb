//! Confined compiles: gcc runs under the same sandbox, reads only the
//! toolchain, the system headers and the program's source, and writes only
//! its output folder. Hostile includes fail without leaking a byte.
#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use launcher_sandbox::{LayerName, MeasuredExecutable, Outcome, SandboxSpec};

/// A source folder (readable by the sandbox's uid) holding `files`, and an
/// empty output folder.
fn project(area: &Area, files: &[(&str, &Path)]) -> (PathBuf, PathBuf) {
    let src = area.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for (name, from) in files {
        std::fs::copy(from, src.join(name)).unwrap();
    }
    (src, area.work.clone())
}

struct Build {
    success: bool,
    log: String,
}

fn cc(src: &Path, out: &Path, args: &[String], disable: Option<LayerName>) -> Build {
    let log = capture();
    let mut spec = SandboxSpec::compile("/usr/bin/cc", out)
        .read_only(src)
        .args(args.iter().cloned())
        .stdout(log.write.try_clone().unwrap())
        .stderr(log.write.try_clone().unwrap());
    if let Some(layer) = disable {
        spec = spec.disable(layer, "negative control");
    }
    let mut child = launcher_sandbox::spawn(spec).unwrap();
    let t = child.wait_blocking().unwrap();
    Build {
        success: t.outcome == Outcome::Exited { code: 0 },
        log: log.text(),
    }
}

fn first_line_of_passwd() -> String {
    std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn confined_compile_builds_a_program_that_then_runs_confined() {
    require_all_layers();
    let area = Area::new();
    let (src, out) = project(&area, &[("prog.c", &hostile_dir().join("well_behaved.c"))]);
    let exe = out.join("prog");
    let b = cc(
        &src,
        &out,
        &[
            "-O1".into(),
            "-o".into(),
            exe.display().to_string(),
            src.join("prog.c").display().to_string(),
        ],
        None,
    );
    assert!(b.success, "compile failed:\n{}", b.log);
    assert!(exe.is_file());

    let measured = Arc::new(MeasuredExecutable::open(&exe).unwrap());
    let run_dir = area.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    let stdout = capture();
    let mut child = launcher_sandbox::spawn(
        SandboxSpec::run(measured, &run_dir).stdout(stdout.write.try_clone().unwrap()),
    )
    .unwrap();
    let t = child.wait_blocking().unwrap();
    let text = stdout.text();
    assert_eq!(t.outcome, Outcome::Exited { code: 0 }, "{text}");
    assert!(text.contains("hello from the sandbox"), "{text}");
}

#[test]
fn include_of_etc_passwd_fails_without_leaking_it() {
    require_all_layers();
    let area = Area::new();
    let (src, out) = project(
        &area,
        &[("prog.c", &hostile_dir().join("include_passwd.c"))],
    );
    let b = cc(
        &src,
        &out,
        &[
            "-o".into(),
            out.join("prog").display().to_string(),
            src.join("prog.c").display().to_string(),
        ],
        None,
    );
    assert!(!b.success, "{}", b.log);
    assert!(
        b.log.contains("/etc/passwd: Permission denied"),
        "{}",
        b.log
    );
    assert!(
        !b.log.contains(&first_line_of_passwd()),
        "leaked:\n{}",
        b.log
    );
    assert!(!b.log.contains("root:"), "leaked:\n{}", b.log);
}

#[test]
fn without_landlock_the_include_leaks() {
    // Negative control: /etc/passwd is world-readable; only Landlock keeps
    // the compiler from printing it in its error message.
    let area = Area::new();
    let (src, out) = project(
        &area,
        &[("prog.c", &hostile_dir().join("include_passwd.c"))],
    );
    let b = cc(
        &src,
        &out,
        &[
            "-o".into(),
            out.join("prog").display().to_string(),
            src.join("prog.c").display().to_string(),
        ],
        Some(LayerName::Landlock),
    );
    assert!(!b.success);
    assert!(b.log.contains(&first_line_of_passwd()), "{}", b.log);
}

#[test]
fn include_of_the_launchers_token_or_database_fails_without_leaking_it() {
    require_all_layers();
    let area = Area::new();
    let (token, db) = area.fake_data();
    let (src, out) = project(
        &area,
        &[("prog.c", &hostile_dir().join("include_secret.c"))],
    );
    for secret in [&token, &db] {
        let b = cc(
            &src,
            &out,
            &[
                format!("-DSECRET_PATH=\"{}\"", secret.display()),
                "-o".into(),
                out.join("prog").display().to_string(),
                src.join("prog.c").display().to_string(),
            ],
            None,
        );
        assert!(!b.success, "{}", b.log);
        assert!(b.log.contains("Permission denied"), "{}", b.log);
        assert!(!b.log.contains("SECRET-"), "leaked:\n{}", b.log);
    }
}

#[test]
fn compile_cannot_write_outside_its_output_folder() {
    require_all_layers();
    let area = Area::new();
    let (src, out) = project(&area, &[("prog.c", &hostile_dir().join("well_behaved.c"))]);
    let elsewhere = area.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::set_permissions(
        &elsewhere,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let target = elsewhere.join("prog");
    let b = cc(
        &src,
        &out,
        &[
            "-o".into(),
            target.display().to_string(),
            src.join("prog.c").display().to_string(),
        ],
        None,
    );
    assert!(!b.success, "{}", b.log);
    assert!(b.log.contains("Permission denied"), "{}", b.log);
    assert!(!target.exists());
}
