//! Layer status is never silent: the probe reports every layer, a disabled
//! layer is reported as such with its reason, and a layer the machine
//! cannot provide is reported unavailable with the reason, and refused by
//! spawn unless the spec disables it.
//!
//! Unavailability is simulated for real: the test binary re-executes itself
//! under a seccomp filter that makes the kernel refuse one mechanism
//! (Landlock, user namespaces, seccomp) exactly as a kernel without it, or
//! one configured against it, would.
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

use common::*;
use launcher_sandbox::{
    Backend, DisabledLayers, Layer, LayerName, LayerStatus, MeasuredExecutable, Outcome,
    SandboxSpec, missing_layers_message,
};
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

const SIMULATE: &str = "SANDBOX_TEST_SIMULATE";
const FIXTURE: &str = "SANDBOX_TEST_FIXTURE";

#[test]
fn probe_reports_every_linux_layer_in_order_with_details() {
    let layers = launcher_sandbox::probe();
    let names: Vec<LayerName> = layers.iter().map(|l| l.name).collect();
    assert_eq!(names, Backend::LinuxSandbox.layers());
    for l in &layers {
        assert!(!l.detail.is_empty(), "{l}");
        // This machine (and CI) provides every layer.
        assert_eq!(l.status, LayerStatus::Active, "{l}");
    }
    let landlock = layers
        .iter()
        .find(|l| l.name == LayerName::Landlock)
        .unwrap();
    assert!(landlock.detail.starts_with("ABI "), "{landlock}");
    assert_eq!(missing_layers_message(&layers), None);
}

#[test]
fn probe_reports_disabled_layers_with_their_reason() {
    let mut disabled = DisabledLayers::new();
    disabled.disable(LayerName::Seccomp, "allowed by --allow-degraded seccomp");
    let layers = launcher_sandbox::probe_with(&disabled);
    let seccomp = layers
        .iter()
        .find(|l| l.name == LayerName::Seccomp)
        .unwrap();
    assert_eq!(
        seccomp,
        &Layer::disabled(LayerName::Seccomp, "allowed by --allow-degraded seccomp")
    );
    for l in layers.iter().filter(|l| l.name != LayerName::Seccomp) {
        assert_eq!(l.status, LayerStatus::Active, "{l}");
    }
}

/// Installs filters that make the kernel refuse `what` for this process and
/// every thread and child it starts afterwards.
fn simulate_missing(what: &str) {
    let arch = TargetArch::try_from(std::env::consts::ARCH).unwrap();
    let deny = |nr: i64, rules: Vec<SeccompRule>, errno: i32| {
        let filter = SeccompFilter::new(
            BTreeMap::from([(nr, rules)]),
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )
        .unwrap();
        let program: seccompiler::BpfProgram = filter.try_into().unwrap();
        seccompiler::apply_filter_all_threads(&program).unwrap();
    };
    match what {
        // Landlock disabled at boot: every Landlock call says EOPNOTSUPP.
        "landlock" => {
            deny(libc::SYS_landlock_create_ruleset, vec![], libc::EOPNOTSUPP);
            deny(libc::SYS_landlock_restrict_self, vec![], libc::EOPNOTSUPP);
        }
        // User namespaces forbidden (e.g. user.max_user_namespaces = 0 or
        // an LSM policy): clone with CLONE_NEWUSER fails with EPERM; clone3,
        // whose flags a filter cannot read, is reported missing so that the
        // caller falls back to clone.
        "namespaces" => {
            let newuser = libc::CLONE_NEWUSER as u64;
            deny(
                libc::SYS_clone,
                vec![
                    SeccompRule::new(vec![
                        SeccompCondition::new(
                            0,
                            SeccompCmpArgLen::Dword,
                            SeccompCmpOp::MaskedEq(newuser),
                            newuser,
                        )
                        .unwrap(),
                    ])
                    .unwrap(),
                ],
                libc::EPERM,
            );
            deny(libc::SYS_clone3, vec![], libc::ENOSYS);
        }
        // No seccomp for the sandbox: installing a filter fails.
        "seccomp" => deny(libc::SYS_seccomp, vec![], libc::EINVAL),
        other => panic!("unknown simulation {other}"),
    }
}

/// Runs in a re-executed copy of this test binary (only when `SIMULATE` is
/// set): breaks one mechanism, then reports what the probe and spawn say.
#[test]
fn simulation_helper() {
    let Ok(what) = std::env::var(SIMULATE) else {
        return;
    };
    let fixture = std::env::var(FIXTURE).unwrap();
    simulate_missing(&what);
    let layer: LayerName = what.parse().unwrap();

    let layers = launcher_sandbox::probe();
    println!("PROBE {}", serde_json::to_string(&layers).unwrap());

    let area = Area::new();
    let exe = Arc::new(MeasuredExecutable::open(&fixture).unwrap());
    match launcher_sandbox::spawn(SandboxSpec::run(exe.clone(), &area.work)) {
        Ok(_) => println!("SPAWN started"),
        Err(e) => println!(
            "SPAWN refused {} {}",
            e.layer().map(|l| l.to_string()).unwrap_or_default(),
            e
        ),
    }
    let out = capture();
    let mut child = launcher_sandbox::spawn(
        SandboxSpec::run(exe, &area.work)
            .stdout(out.write.try_clone().unwrap())
            .disable(layer, "allowed by --allow-degraded"),
    )
    .unwrap();
    let t = child.wait_blocking().unwrap();
    let text = out.text();
    assert_eq!(t.outcome, Outcome::Exited { code: 0 }, "{text}");
    assert!(text.contains("hello from the sandbox"), "{text}");
    println!(
        "DEGRADED {}",
        serde_json::to_string(child.layers()).unwrap()
    );
}

struct Simulated {
    probe: Vec<Layer>,
    spawn: String,
    degraded: Vec<Layer>,
}

fn simulate(what: &str) -> Simulated {
    let fixture = fixture("well_behaved");
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "simulation_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SIMULATE, what)
        .env(FIXTURE, &fixture)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "helper failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = |prefix: &str| {
        stdout
            .lines()
            // The harness may print "test simulation_helper ... " first.
            .find_map(|l| l.find(prefix).map(|i| &l[i + prefix.len()..]))
            .unwrap_or_else(|| panic!("no {prefix} line in:\n{stdout}"))
            .to_owned()
    };
    Simulated {
        probe: serde_json::from_str(&line("PROBE ")).unwrap(),
        spawn: line("SPAWN "),
        degraded: serde_json::from_str(&line("DEGRADED ")).unwrap(),
    }
}

fn check_simulation(what: LayerName, reason_parts: &[&str]) {
    let s = simulate(what.as_str());
    for l in &s.probe {
        if l.name == what {
            assert_eq!(l.status, LayerStatus::Unavailable, "{l}");
            for part in reason_parts {
                assert!(
                    l.detail.contains(part),
                    "{what}: {part:?} not in {:?}",
                    l.detail
                );
            }
        } else {
            assert_eq!(l.status, LayerStatus::Active, "{what} missing, yet {l}");
        }
    }
    let message = missing_layers_message(&s.probe).unwrap();
    assert!(
        message.starts_with(&format!("{what} unavailable: ")),
        "{message}"
    );

    // Spawn refuses, naming the layer.
    assert!(
        s.spawn.starts_with(&format!("refused {what} ")),
        "spawn without disabling {what}: {}",
        s.spawn
    );
    // With the layer disabled, it runs and says so.
    let l = s.degraded.iter().find(|l| l.name == what).unwrap();
    assert_eq!(l.status, LayerStatus::Disabled);
    assert!(l.detail.starts_with("allowed by --allow-degraded"), "{l}");
    for other in s.degraded.iter().filter(|l| l.name != what) {
        assert_eq!(other.status, LayerStatus::Active, "{other}");
    }
}

#[test]
fn missing_landlock_is_reported_with_its_reason_and_refused() {
    check_simulation(LayerName::Landlock, &["disabled at boot", "EOPNOTSUPP"]);
}

#[test]
fn missing_user_namespaces_are_reported_with_their_reason_and_refused() {
    check_simulation(
        LayerName::Namespaces,
        &["Operation not permitted", "user.max_user_namespaces"],
    );
}

#[test]
fn missing_seccomp_is_reported_with_its_reason_and_refused() {
    check_simulation(LayerName::Seccomp, &["seccomp", "Invalid argument"]);
}
