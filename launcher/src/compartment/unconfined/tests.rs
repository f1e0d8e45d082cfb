//! The unconfined backend against real processes.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::*;
use crate::compartment::Role;
use crate::compartment::capture::capture;

fn limits() -> Limits {
    Limits {
        address_space_bytes: None,
        cpu_seconds: Some(30),
        open_files: Some(64),
        processes: None,
        file_size_bytes: Some(1 << 20),
        wall_seconds: 30,
    }
}

fn sh(script: &str, cwd: &Path) -> SpawnSpec {
    SpawnSpec {
        role: Role::Run,
        executable: Executable::Path(PathBuf::from("/bin/sh")),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: cwd.to_path_buf(),
        limits: limits(),
        channel: None,
        output: OutputMode::Separate,
    }
}

/// Runs to the end; returns (exit status, stdout, stderr).
async fn run(spec: SpawnSpec) -> (std::process::ExitStatus, String, String) {
    let mut child = Unconfined.spawn(spec).unwrap();
    let (_tx, rx) = watch::channel(false);
    let out = tokio::spawn(capture(child.take_stdout().unwrap(), 1 << 16, rx.clone()));
    let err = child
        .take_stderr()
        .map(|e| tokio::spawn(capture(e, 1 << 16, rx)));
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("child did not exit")
        .unwrap();
    let out = out.await.unwrap();
    let err = match err {
        Some(task) => task.await.unwrap().bytes,
        None => Vec::new(),
    };
    (
        status,
        String::from_utf8(out.bytes).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn process_exists(pid: i32) -> bool {
    // A zombie still exists for kill(0); /proc tells the state apart.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.contains(") Z "),
        Err(_) => false,
    }
}

async fn wait_gone(pid: i32) {
    for _ in 0..200 {
        if !process_exists(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("process {pid} is still alive");
}

#[tokio::test]
async fn captures_output_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, err) = run(sh("echo out; echo err >&2; pwd; exit 3", dir.path())).await;
    assert_eq!(status.code(), Some(3));
    let cwd = dir.path().canonicalize().unwrap();
    assert_eq!(out, format!("out\n{}\n", cwd.display()));
    assert_eq!(err, "err\n");
}

#[tokio::test]
async fn merged_output_keeps_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh("echo 1; echo 2 >&2; echo 3", dir.path());
    spec.output = OutputMode::Merged;
    let (status, out, err) = run(spec).await;
    assert!(status.success());
    assert_eq!(out, "1\n2\n3\n");
    assert_eq!(err, "");
}

#[tokio::test]
async fn environment_holds_only_what_the_spec_lists_plus_the_channel() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut spec = sh("env | sort", dir.path());
    spec.env = vec![];
    spec.executable = Executable::Path("/bin/sh".into());
    spec.channel = Some(OwnedFd::from(theirs));
    let (status, out, _) = run(spec).await;
    assert!(status.success());
    // sh itself adds PWD (and may add SHLVL/_); nothing comes from the launcher.
    let vars: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
        .collect();
    assert_eq!(vars, ["ATTESTABLE_FD=3"]);
    drop(ours);
}

#[tokio::test]
async fn fd3_is_the_channel_and_nothing_else_leaks() {
    let dir = tempfile::tempdir().unwrap();
    // A descriptor the launcher holds without close-on-exec must not reach the child.
    let leaky = std::fs::File::open("/dev/null").unwrap();
    let leaky_fd = leaky.as_raw_fd();
    // SAFETY: clearing FD_CLOEXEC on our own descriptor.
    unsafe { libc::fcntl(leaky_fd, libc::F_SETFD, 0) };
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let mut ours = tokio::net::UnixStream::from_std(ours).unwrap();
    let mut spec = sh(
        &format!(
            "readlink /proc/$$/fd/3; [ -e /proc/$$/fd/{leaky_fd} ] && echo leaked || echo closed; \
             readlink /proc/$$/fd/0; printf hello >&3; read reply <&3; echo \"got $reply\""
        ),
        dir.path(),
    );
    spec.channel = Some(OwnedFd::from(theirs));
    let mut child = Unconfined.spawn(spec).unwrap();
    let (_tx, rx) = watch::channel(false);
    let out = tokio::spawn(capture(child.take_stdout().unwrap(), 4096, rx));
    let mut buf = [0u8; 5];
    ours.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    ours.write_all(b"world\n").await.unwrap();
    assert!(child.wait().await.unwrap().success());
    let out = String::from_utf8(out.await.unwrap().bytes).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("socket:"), "{out}");
    assert_eq!(lines[1], "closed", "{out}");
    assert_eq!(lines[2], "/dev/null", "{out}");
    assert_eq!(lines[3], "got world", "{out}");
    drop(leaky);
}

#[tokio::test]
async fn executes_an_open_file_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::open("/bin/sh").unwrap();
    let mut spec = sh("echo \"$0 via fd\"; echo \"fd=$ATTESTABLE_FD\"", dir.path());
    spec.executable = Executable::Fd(OwnedFd::from(file));
    spec.argv[0] = "measured".into();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    spec.channel = Some(OwnedFd::from(theirs));
    let (status, out, _) = run(spec).await;
    assert!(status.success());
    assert_eq!(out, "measured via fd\nfd=3\n");
    drop(ours);
}

#[tokio::test]
async fn rlimits_apply() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh("ulimit -n; ulimit -f; ulimit -c", dir.path());
    spec.limits.open_files = Some(32);
    spec.limits.file_size_bytes = Some(1024 * 1024);
    let (status, out, _) = run(spec).await;
    assert!(status.success());
    // dash reports -f in 512-byte blocks, bash in 1024: accept either.
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "32");
    assert!(lines[1] == "2048" || lines[1] == "1024", "{out}");
    assert_eq!(lines[2], "0");
}

#[tokio::test]
async fn the_whole_group_dies_when_the_leader_exits() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, _) = run(sh("sleep 1000 & echo $!", dir.path())).await;
    assert!(status.success());
    let grandchild: i32 = out.trim().parse().unwrap();
    wait_gone(grandchild).await;
}

#[tokio::test]
async fn kill_group_stops_the_leader_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Unconfined
        .spawn(sh("sleep 1000 & echo $!; wait", dir.path()))
        .unwrap();
    let mut stdout = child.take_stdout().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).await.unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let grandchild: i32 = String::from_utf8(line).unwrap().parse().unwrap();
    assert!(process_exists(grandchild));
    child.kill_group();
    let status = child.wait().await.unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    wait_gone(grandchild).await;
}

#[tokio::test]
async fn dropping_the_child_kills_it() {
    let dir = tempfile::tempdir().unwrap();
    let child = Unconfined.spawn(sh("sleep 1000", dir.path())).unwrap();
    let pid = child.pid() as i32;
    drop(child);
    wait_gone(pid).await;
}

#[tokio::test]
async fn missing_programs_and_bad_specs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh("true", dir.path());
    spec.executable = Executable::Path("/nonexistent/program".into());
    match Unconfined.spawn(spec) {
        Err(SpawnError::Io { source, .. }) => {
            assert_eq!(source.kind(), io::ErrorKind::NotFound)
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let mut spec = sh("true", dir.path());
    spec.env.push(("ATTESTABLE_FD".into(), "4".into()));
    assert!(matches!(
        Unconfined.spawn(spec),
        Err(SpawnError::Invalid(_))
    ));
    let mut spec = sh("true", dir.path());
    spec.argv.clear();
    assert!(matches!(
        Unconfined.spawn(spec),
        Err(SpawnError::Invalid(_))
    ));
}

#[test]
fn program_lookup_follows_path() {
    assert_eq!(
        resolve_program("sh", "/nonexistent:/bin"),
        Some(PathBuf::from("/bin/sh"))
    );
    assert_eq!(resolve_program("sh", "/nonexistent"), None);
    assert_eq!(
        resolve_program("/bin/sh", ""),
        Some(PathBuf::from("/bin/sh"))
    );
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("not-executable");
    std::fs::write(&plain, b"#!/bin/sh\n").unwrap();
    assert_eq!(resolve_program(plain.to_str().unwrap(), ""), None);
}

#[test]
fn describes_itself_as_insecure() {
    let info = Unconfined.describe();
    assert_eq!(info.backend, "none");
    assert!(info.insecure);
    assert!(
        info.layers
            .iter()
            .any(|l| l.name == "rlimits" && l.status == LayerStatus::Active)
    );
    assert!(
        info.layers
            .iter()
            .any(|l| l.name == "seccomp" && l.status == LayerStatus::Disabled)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_outlives_the_thread_that_started_it() {
    // Children get PR_SET_PDEATHSIG (they die with the launcher), which fires
    // when the *thread* that forked them exits: they must be forked from the
    // spawner thread, never from the caller's (tests/tests/hardening/crash.rs
    // kills a launcher and checks its children die with it).
    let dir = tempfile::tempdir().unwrap();
    let spec = sh("sleep 1000", dir.path());
    let handle = tokio::runtime::Handle::current();
    let child = std::thread::spawn(move || {
        let _runtime = handle.enter();
        Unconfined.spawn(spec)
    })
    .join()
    .unwrap()
    .unwrap();
    let pid = child.pid() as i32;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        process_exists(pid),
        "the child died with the thread that started it"
    );
    drop(child);
    wait_gone(pid).await;
}
