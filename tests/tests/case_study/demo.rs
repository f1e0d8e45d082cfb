//! `attestable demo`, the README's first command, run for real with the
//! debug binaries (`--bin-dir`): twice on one data folder, interrupted with
//! Ctrl-C, without a C compiler, and on a machine without Landlock. Whatever
//! happens, it leaves no process behind.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use attestable_tests::{RUN_TIMEOUT, cli_bin, seccomp};

use crate::{assert_nothing_left, bin_dir, processes_mentioning, searchable_tempdir};

/// `attestable demo --bin-dir <debug bins> --data <dir>/demo …` in `dir`,
/// with nothing of this machine's configuration.
fn demo(dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(cli_bin());
    for var in [
        "ATTESTABLE_URL",
        "ATTESTABLE_TOKEN_FILE",
        "ATTESTABLE_CA",
        "ATTESTABLE_DATA",
        "ATTESTABLE_CONFIG",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .current_dir(dir)
        .arg("demo")
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--data")
        .arg(dir.join("demo"))
        .args(extra);
    cmd
}

struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Finished {
    fn show(&self) -> String {
        format!(
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs to the end (killed after a generous bound).
fn finish(cmd: Command) -> Finished {
    let mut cmd = assert_cmd::Command::from_std(cmd);
    cmd.timeout(Duration::from_secs(600));
    let out = cmd.output().expect("running attestable demo");
    Finished {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn the_demo_plays_the_case_study_twice_and_leaves_nothing_running() {
    let tmp = searchable_tempdir("demo-test-");
    let data = tmp.path().join("demo");

    let first = finish(demo(tmp.path(), &[]));
    assert_eq!(first.code, Some(0), "{}", first.show());
    assert_nothing_left(tmp.path());
    for step in 1..=7 {
        assert!(
            first.stdout.contains(&format!("\n{step}. ")),
            "step {step}: {}",
            first.show()
        );
    }
    for want in [
        "Data folder",
        ": new (keys",
        "executable SHA-256",
        "$ mock-services policy allow --data",
        "store, taxi, messaging reloaded their policies",
        "     | outcome: ride booked for sale",
        "CPU model",
        "compartment         linux-sandbox",
        "layers              namespaces, no_new_privs, landlock, seccomp, rlimits",
        "customer's answer  ACCEPT",
        "messaging  read replies",
        "7. Stopped what the demo started: launcher stopped; mock-services stopped",
        "Done in ",
    ] {
        assert!(first.stdout.contains(want), "{want:?}: {}", first.show());
    }
    let root = std::fs::read(data.join("launcher/pki/root.pem")).expect("the launcher's root");
    let ca = std::fs::read(data.join("services/services-ca.pem")).expect("the services CA");
    for addr in ["launcher/launcher.addr", "services/store.addr"] {
        assert!(!data.join(addr).exists(), "{addr} removed: stopped cleanly");
    }

    let second = finish(demo(tmp.path(), &[]));
    assert_eq!(second.code, Some(0), "{}", second.show());
    assert_nothing_left(tmp.path());
    assert!(
        second.stdout.contains(": reused (the launcher's keys"),
        "{}",
        second.show()
    );
    assert!(
        second.stdout.contains("customer's answer  ACCEPT"),
        "{}",
        second.show()
    );
    assert_eq!(
        std::fs::read(data.join("launcher/pki/root.pem")).unwrap(),
        root,
        "the launcher kept its root"
    );
    assert_eq!(
        std::fs::read(data.join("services/services-ca.pem")).unwrap(),
        ca,
        "the services kept their CA"
    );
    // A new sale each time, and the same (reproducible) executable approved again.
    let sale = |out: &str| -> i64 {
        let at = out
            .find("what starts the case study: sale ")
            .expect("the sale")
            + 33;
        out[at..].split(',').next().unwrap().parse().unwrap()
    };
    assert_eq!(sale(&second.stdout), sale(&first.stdout) + 1);
    assert!(
        second.stdout.contains("already allowed"),
        "{}",
        second.show()
    );
}

#[test]
fn ctrl_c_stops_everything_the_demo_started() {
    let tmp = searchable_tempdir("demo-test-");
    let mut cmd = demo(tmp.path(), &[]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting attestable demo");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Step 4 is printed once the services and the launcher listen.
    let mut seen = Vec::new();
    loop {
        let line = lines
            .recv_timeout(RUN_TIMEOUT)
            .unwrap_or_else(|e| panic!("no step 4 ({e}): {seen:?}"));
        let started = line.starts_with("4. ");
        seen.push(line);
        if started {
            break;
        }
    }
    assert!(
        processes_mentioning(tmp.path()).len() >= 2,
        "the launcher and the services run: {:?}",
        processes_mentioning(tmp.path())
    );
    // SAFETY: a plain syscall on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait().expect("waiting for the demo");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("Ctrl-C (SIGINT): stopping everything the demo started"),
        "{stderr}"
    );
    assert!(stderr.contains("launcher      stopped"), "{stderr}");
    assert!(stderr.contains("mock-services stopped"), "{stderr}");
    assert_nothing_left(tmp.path());
}

#[test]
fn without_a_c_compiler_it_stops_before_starting_anything() {
    let tmp = searchable_tempdir("demo-test-");
    let mut cmd = demo(tmp.path(), &[]);
    cmd.env("PATH", tmp.path().join("no-such-folder"));
    let out = finish(cmd);
    assert_eq!(out.code, Some(1), "{}", out.show());
    assert!(
        out.stderr
            .contains("prerequisite missing: a C compiler: the launcher compiles the uploaded program with `cc`"),
        "{}",
        out.show()
    );
    assert!(
        out.stderr.contains("apt-get install gcc"),
        "the remedy: {}",
        out.show()
    );
    assert!(!out.stdout.contains("\n2. "), "{}", out.show());
    assert!(!tmp.path().join("demo").exists(), "nothing made");
    assert_nothing_left(tmp.path());
}

#[cfg(target_os = "linux")]
#[test]
fn a_missing_layer_stops_the_demo_until_the_operator_allows_it_degraded() {
    let tmp = searchable_tempdir("demo-test-");
    // A kernel without Landlock, for the demo and everything it starts.
    let without_landlock = |extra: &[&str]| {
        let mut cmd = demo(tmp.path(), extra);
        seccomp::deny_before_exec(&mut cmd, &[libc::SYS_landlock_create_ruleset], libc::ENOSYS);
        cmd
    };

    let refused = finish(without_landlock(&[]));
    assert_eq!(refused.code, Some(1), "{}", refused.show());
    for want in [
        "the linux-sandbox compartment lacks a layer",
        "\n  landlock: ",
        "--allow-degraded landlock\n    gives up Landlock",
        "--insecure-no-compartment\n    gives up every layer",
    ] {
        assert!(
            refused.stderr.contains(want),
            "{want:?}: {}",
            refused.show()
        );
    }
    assert!(
        !refused.stdout.contains("\n5. "),
        "nothing uploaded: {}",
        refused.show()
    );
    assert!(
        refused.stdout.contains("\n7. Stopped"),
        "{}",
        refused.show()
    );
    assert_nothing_left(tmp.path());

    let degraded = finish(without_landlock(&["--allow-degraded", "landlock"]));
    assert_eq!(degraded.code, Some(0), "{}", degraded.show());
    for want in [
        "$ mock-services policy set --data",
        "--allow-insecure false --allow-degraded landlock",
        "landlock disabled",
        "degraded on purpose: landlock (--allow-degraded)",
        "customer's answer  ACCEPT",
    ] {
        assert!(
            degraded.stdout.contains(want),
            "{want:?}: {}",
            degraded.show()
        );
    }
    assert_nothing_left(tmp.path());
}
