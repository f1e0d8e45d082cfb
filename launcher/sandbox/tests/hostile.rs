//! The hostile programs of `tests/programs/hostile`, run confined: every
//! escape attempt fails, and the test process (standing in for the
//! launcher) is unaffected. Negative controls run the same programs with
//! one layer disabled and watch the escape succeed, so these tests can fail.
#![cfg(target_os = "linux")]

mod common;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use common::*;
use launcher_sandbox::{
    Layer, LayerName, LayerStatus, Limits, MeasuredExecutable, Outcome, SandboxSpec, SpawnError,
};

#[test]
fn well_behaved_program_runs_in_a_minimal_world_and_its_output_is_captured() {
    require_all_layers();
    let area = Area::new();
    // A descriptor leaked without O_CLOEXEC must not reach the sandbox.
    let leaked = std::fs::File::open("/etc/hostname").unwrap();
    // SAFETY: clearing FD_CLOEXEC on a descriptor we own.
    unsafe { libc::fcntl(leaked.as_raw_fd(), libc::F_SETFD, 0) };

    let (ours, theirs) = UnixStream::pair().unwrap();
    let (spec, out, err) = run_spec("well_behaved", &area, &[]);
    let mut child = launcher_sandbox::spawn(spec.channel(theirs.into())).unwrap();
    // A LOG frame: type 5, 14 bytes, corr 0, level 2, "ready".
    let mut ready = [0u8; 19];
    (&ours).read_exact(&mut ready).unwrap();
    assert_eq!(&ready, b"\x05\0\0\0\x0e\0\0\0\0\x02\0\0\0\x05ready");
    let r = finish(&mut child, out, err);
    drop(leaked);

    assert_eq!(r.termination.outcome, Outcome::Exited { code: 0 }, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    for want in [
        "PID 1",
        "UID 1000",
        "GID 1000",
        "HOST sandbox",
        "ENV ATTESTABLE_FD=3",
        "ENVCOUNT 1",
        "HIGHFDS 0",
        "OK wrote output.txt",
        "OK wrote to fd 3",
        "hello from the sandbox",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{}", r.stdout);
    }
    assert!(
        lines.contains(&format!("CWD {}", area.work.display()).as_str()),
        "{}",
        r.stdout
    );
    assert_eq!(r.stderr, "");
    let written = area.work.join("output.txt");
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        "written inside\n"
    );
    if unsafe { libc::geteuid() } == 0 {
        // Files it creates belong to nobody, not to root.
        assert_eq!(std::fs::metadata(&written).unwrap().uid(), 65534);
    }
    for l in child.layers() {
        assert_eq!(l.status, LayerStatus::Active, "{l}");
    }
}

#[test]
fn tcp_connection_to_a_local_listener_fails_and_the_listener_sees_nothing() {
    require_all_layers();
    let area = Area::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let (r, _) = run("connect_tcp", &area, &[&port]);
    assert_eq!(r.termination.outcome, Outcome::Exited { code: 0 }, "{r:?}");
    assert!(r.blocked(), "{}", r.stdout);
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the listener saw a connection: {other:?}"),
    }
}

#[test]
fn dns_lookup_fails() {
    require_all_layers();
    let area = Area::new();
    let (r, _) = run("dns_lookup", &area, &["example.com"]);
    assert_eq!(r.termination.outcome, Outcome::Exited { code: 0 }, "{r:?}");
    assert!(r.blocked(), "{}", r.stdout);
}

#[test]
fn secrets_outside_the_allowed_paths_cannot_be_read() {
    require_all_layers();
    let area = Area::new();
    let (token, db) = area.fake_data();
    let outside = area.path().join("data");
    let args = [
        token.to_str().unwrap(),
        db.to_str().unwrap(),
        "/etc/passwd",
        "/proc/1/environ",
        outside.to_str().unwrap(),
    ];
    let (r, _) = run("read_secret", &area, &args);
    assert_eq!(r.termination.outcome, Outcome::Exited { code: 0 }, "{r:?}");
    assert_eq!(
        r.stdout.matches("BLOCKED").count(),
        args.len(),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("SECRET"), "{}", r.stdout);
}

#[test]
fn without_landlock_the_same_secret_is_readable() {
    // Negative control: the files are world-readable, so Landlock is what
    // keeps them out of reach above.
    let area = Area::new();
    let (token, _) = area.fake_data();
    let (spec, out, err) = run_spec("read_secret", &area, &[token.clone().into()]);
    let mut child =
        launcher_sandbox::spawn(spec.disable(LayerName::Landlock, "negative control")).unwrap();
    let r = finish(&mut child, out, err);
    assert_eq!(r.termination.outcome, Outcome::Exited { code: 1 }, "{r:?}");
    assert!(r.stdout.contains("ESCAPED read"), "{}", r.stdout);
    assert_eq!(
        child
            .layers()
            .iter()
            .find(|l| l.name == LayerName::Landlock),
        Some(&Layer::disabled(LayerName::Landlock, "negative control"))
    );
}

#[test]
fn writing_outside_the_working_folder_fails() {
    require_all_layers();
    let area = Area::new();
    let outside = area.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    // World-writable: Unix permissions would allow it.
    std::fs::set_permissions(
        &outside,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let target = outside.join("pwned");
    let (r, _) = run("write_outside", &area, &[target.to_str().unwrap()]);
    assert_eq!(r.termination.outcome, Outcome::Exited { code: 0 }, "{r:?}");
    assert!(r.stdout.contains("OK wrote inside.txt"), "{}", r.stdout);
    assert!(r.blocked(), "{}", r.stdout);
    assert!(!target.exists());
    assert!(area.work.join("inside.txt").exists());
}

/// Inode of the PID namespace of `pid`, to find every process in it.
fn pid_ns(pid: u32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|m| m.ino())
}

fn processes_in_ns(ns: u64) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| pid_ns(*pid) == Some(ns))
        .count()
}

#[test]
fn fork_bomb_reports_refusal_while_the_launcher_keeps_working() {
    require_all_layers();
    let area = Area::new();
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let exe = Arc::new(MeasuredExecutable::open(fixture("fork_bomb")).unwrap());
    let limits = Limits {
        processes: 16,
        cpu_seconds: 5,
        ..Limits::default()
    };
    let spec = SandboxSpec::run(exe, &area.work).limits(limits).stdout(w);
    let mut child = launcher_sandbox::spawn(spec).unwrap();
    let ns = pid_ns(child.pid()).expect("sandbox pid namespace");

    let mut lines = BufReader::new(std::fs::File::from(r));
    let mut line = String::new();
    let report = loop {
        line.clear();
        let n = lines.read_line(&mut line).unwrap();
        assert!(n > 0, "the fork bomb ended its output without reporting");
        if line.starts_with("BLOCKED fork") {
            break line.clone();
        }
    };
    assert!(
        report.contains("Resource temporarily unavailable"),
        "{report}"
    );

    // The launcher can read the sandbox's memory map (for the evidence),
    // and the code mapped there is the sealed copy, not the file.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", child.pid())).unwrap();
    assert!(maps.contains("/memfd:attestable-executable"), "{maps}");
    assert!(!maps.contains("hostile-programs/fork_bomb"), "{maps}");

    // The launcher (this process) can still start processes of its own.
    assert!(
        std::process::Command::new("true")
            .status()
            .unwrap()
            .success()
    );
    let inside = processes_in_ns(ns);
    assert!(
        (2..=16).contains(&inside),
        "{inside} processes in the sandbox, limit 16"
    );

    child.kill().unwrap();
    let t = child.wait_blocking().unwrap();
    assert_eq!(t.outcome, Outcome::Killed);
    assert_eq!(processes_in_ns(ns), 0, "processes survived the kill");
}

#[test]
fn allocating_8_gib_fails() {
    require_all_layers();
    let area = Area::new();
    let (r, _) = run("alloc_8g", &area, &[]);
    assert_eq!(r.termination.outcome, Outcome::Exited { code: 0 }, "{r:?}");
    assert!(r.blocked(), "{}", r.stdout);
}

#[test]
fn busy_loop_is_killed_at_the_cpu_limit() {
    require_all_layers();
    let area = Area::new();
    let (spec, out, err) = run_spec("busy_loop", &area, &[]);
    let spec = spec.limits(Limits {
        cpu_seconds: 1,
        ..Limits::default()
    });
    let mut child = launcher_sandbox::spawn(spec).unwrap();
    let r = finish(&mut child, out, err);
    assert_eq!(r.termination.outcome, Outcome::CpuLimit, "{r:?}");
    assert!(r.termination.cpu_time.as_millis() >= 900, "{r:?}");
}

#[tokio::test]
async fn busy_loop_is_killed_at_the_wall_clock_limit_by_wait_timeout() {
    require_all_layers();
    let area = Area::new();
    let (spec, _out, _err) = run_spec("busy_loop", &area, &[]);
    let mut child = launcher_sandbox::spawn(spec).unwrap();
    let t = child
        .wait_timeout(std::time::Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(t.outcome, Outcome::WallClockLimit);
}

#[tokio::test]
async fn async_wait_and_kill_from_another_task() {
    require_all_layers();
    let area = Area::new();
    let (spec, _out, _err) = run_spec("busy_loop", &area, &[]);
    let mut child = launcher_sandbox::spawn(spec).unwrap();
    let killer = child.kill_handle();
    let task = tokio::spawn(async move { killer.kill() });
    task.await.unwrap().unwrap();
    let t = child.wait().await.unwrap();
    assert_eq!(t.outcome, Outcome::Killed);
    // Waiting again returns the same answer.
    assert_eq!(child.wait().await.unwrap(), t);
}

#[test]
fn kill_of_the_launcher_fails() {
    require_all_layers();
    let area = Area::new();
    let me = std::process::id().to_string();
    let (r, _) = run("kill_parent", &area, &[&me]);
    assert_eq!(r.termination.outcome, Outcome::Exited { code: 0 }, "{r:?}");
    assert_eq!(r.stdout.matches("BLOCKED").count(), 2, "{}", r.stdout);
}

#[test]
fn ptrace_mount_unshare_and_raw_sockets_fail() {
    require_all_layers();
    for name in ["ptrace_attach", "mount_tmpfs", "unshare_ns", "raw_socket"] {
        let area = Area::new();
        let (r, _) = run(name, &area, &[]);
        assert_eq!(
            r.termination.outcome,
            Outcome::Exited { code: 0 },
            "{name}: {r:?}"
        );
        assert!(r.blocked(), "{name}: {}", r.stdout);
        if name == "raw_socket" {
            // AF_UNIX datagram sockets could sendto() a host socket by path.
            for unix in [
                "socket(AF_UNIX, SOCK_DGRAM)",
                "socket(AF_UNIX, SOCK_RAW)",
                "socketpair(AF_UNIX, SOCK_DGRAM)",
                "socketpair(AF_UNIX, SOCK_RAW)",
            ] {
                assert!(
                    r.stdout.contains(&format!("BLOCKED {unix}")),
                    "{}",
                    r.stdout
                );
            }
        }
    }
}

#[test]
fn without_seccomp_raw_sockets_open() {
    // Negative control for the seccomp layer (the network namespace still
    // has no usable interface).
    let area = Area::new();
    let (spec, out, err) = run_spec("raw_socket", &area, &[]);
    let mut child =
        launcher_sandbox::spawn(spec.disable(LayerName::Seccomp, "negative control")).unwrap();
    let r = finish(&mut child, out, err);
    assert_eq!(r.termination.outcome, Outcome::Exited { code: 1 }, "{r:?}");
    assert!(
        r.stdout.contains("ESCAPED socket(AF_INET, SOCK_STREAM)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("ESCAPED socketpair(AF_UNIX, SOCK_DGRAM)"),
        "{}",
        r.stdout
    );
    assert_eq!(
        layer_status(&child, LayerName::Seccomp),
        LayerStatus::Disabled
    );
    assert_eq!(
        layer_status(&child, LayerName::Landlock),
        LayerStatus::Active
    );
}

#[test]
fn without_namespaces_the_program_sees_the_host_but_still_runs_as_nobody() {
    let area = Area::new();
    let (spec, out, err) = run_spec("well_behaved", &area, &[]);
    let mut child =
        launcher_sandbox::spawn(spec.disable(LayerName::Namespaces, "allowed by --allow-degraded"))
            .unwrap();
    let r = finish(&mut child, out, err);
    assert_eq!(r.termination.outcome, Outcome::Exited { code: 0 }, "{r:?}");
    assert!(!r.stdout.lines().any(|l| l == "PID 1"), "{}", r.stdout);
    let ns = child
        .layers()
        .iter()
        .find(|l| l.name == LayerName::Namespaces)
        .unwrap();
    assert_eq!(ns.status, LayerStatus::Disabled);
    assert!(
        ns.detail.starts_with("allowed by --allow-degraded"),
        "{}",
        ns.detail
    );
    if unsafe { libc::geteuid() } == 0 {
        assert!(r.stdout.lines().any(|l| l == "UID 65534"), "{}", r.stdout);
    }
}

#[test]
fn replacing_the_executable_on_disk_changes_neither_what_runs_nor_the_hash() {
    require_all_layers();
    let area = Area::new();
    let path = area.path().join("program");
    let original = std::fs::read(fixture("well_behaved")).unwrap();
    std::fs::write(&path, &original).unwrap();
    let exe = Arc::new(MeasuredExecutable::open(&path).unwrap());
    assert_eq!(exe.sha256_hex(), sha256_hex(&original));

    // Overwrite in place (same inode), then replace by rename (new inode).
    let other = std::fs::read(fixture("busy_loop")).unwrap();
    std::fs::write(&path, &other).unwrap();
    let tmp = area.path().join("program.new");
    std::fs::write(&tmp, &other).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert_ne!(sha256_hex(&std::fs::read(&path).unwrap()), exe.sha256_hex());

    let out = capture();
    let spec = SandboxSpec::run(exe.clone(), &area.work).stdout(out.write.try_clone().unwrap());
    let mut child = launcher_sandbox::spawn(spec).unwrap();
    let r = finish(&mut child, out, capture());
    assert_eq!(r.termination.outcome, Outcome::Exited { code: 0 }, "{r:?}");
    assert!(r.stdout.contains("hello from the sandbox"), "{}", r.stdout);
    assert_eq!(exe.sha256_hex(), sha256_hex(&original));
}

#[test]
fn spawn_refuses_bad_specs_and_names_the_check() {
    let area = Area::new();
    let exe = Arc::new(MeasuredExecutable::open(fixture("well_behaved")).unwrap());

    let err = launcher_sandbox::spawn(SandboxSpec::run(exe.clone(), &area.work).limits(Limits {
        cpu_seconds: 0,
        ..Limits::default()
    }))
    .unwrap_err();
    assert!(err.to_string().contains("cpu_seconds = 0"), "{err}");

    let err = launcher_sandbox::spawn(SandboxSpec::run(exe.clone(), "relative/work")).unwrap_err();
    assert!(err.to_string().contains("absolute"), "{err}");

    let err = launcher_sandbox::spawn(
        SandboxSpec::run(exe.clone(), &area.work).read_only(area.path().join("missing")),
    )
    .unwrap_err();
    assert!(matches!(err, SpawnError::Path { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");

    let err = launcher_sandbox::spawn(
        SandboxSpec::run(exe.clone(), &area.work).disable(LayerName::Capsicum, "x"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("capsicum"), "{err}");

    let err = launcher_sandbox::spawn(
        SandboxSpec::run(exe.clone(), &area.work).arg(OsString::from("a\0b")),
    )
    .unwrap_err();
    assert!(err.to_string().contains("NUL"), "{err}");

    if unsafe { libc::geteuid() } == 0 {
        // A working folder inside a 0700 root folder is out of the
        // sandbox user's reach: the error names that folder and its mode.
        let private = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            private.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let work = private.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let err = launcher_sandbox::spawn(SandboxSpec::run(exe, &work)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&private.path().display().to_string()),
            "{text}"
        );
        assert!(text.contains("found mode 700"), "{text}");
    }
}
