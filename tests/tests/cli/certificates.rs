//! `cert show` and `cert verify`: a chain issued offline by the same library
//! the launcher uses, and the certificate of a real run.

use attestable_data::certificate::{AttestationAuthority, RunFacts, issue_run_certificate};
use attestable_data::encoding::{HexU64, Sha256Hex, UnixTime};
use attestable_data::evidence::{
    Backend, CompartmentFacts, Layer, LayerStatus, Limits, Platform, ProgramFacts,
};
use attestable_data::memmap::Region;
use attestable_data::pki::{self, CertificateAuthority};
use attestable_tests::{Launcher, program_source};
use openssl::hash::MessageDigest;
use openssl::x509::X509ReqBuilder;

use crate::{Env, expect, upload_and_build};

/// Gets its certificate through the C SDK, and says so.
const CERTIFIED: &str = r#"#include <stdio.h>
#include "attestable.h"

int main(void)
{
    att_ctx *ctx = NULL;
    att_status rc = att_init(&ctx);
    if (rc == ATT_OK)
        printf("certified\n");
    else
        fprintf(stderr, "att_init: %s\n", att_strerror(ctx, rc));
    att_close(ctx);
    return rc == ATT_OK ? 0 : 1;
}
"#;

/// A run certificate chain (run, intermediate, root) for executable `exe`,
/// and the root, as PEM.
fn issue_chain(exe: Sha256Hex) -> (String, String) {
    let root = CertificateAuthority::create_root("cli test root", Some("cli test"), 2).unwrap();
    let authority = AttestationAuthority::create(&root, "cli test attestation", 2).unwrap();
    let key = pki::generate_p256_key().unwrap();
    let mut csr = X509ReqBuilder::new().unwrap();
    csr.set_pubkey(&key).unwrap();
    csr.set_subject_name(&pki::x509_name("program", None).unwrap())
        .unwrap();
    csr.sign(&key, MessageDigest::sha256()).unwrap();
    let h = |s: &str| Sha256Hex::digest(s.as_bytes());
    let run = RunFacts {
        program: ProgramFacts {
            id: 3,
            name: "integration_process.c".into(),
            build_id: 5,
            source_sha256: h("source"),
            executable_sha256: exe,
            sdk_sha256: h("sdk"),
            services_anchor_sha256: None,
            toolchain_profile: "host".into(),
            compiler: "cc (Debian 12.2.0-14) 12.2.0".into(),
            flags: vec!["-O2".into(), "integration_process.c".into()],
        },
        run_id: 12,
        started_at: UnixTime(pki::unix_now()),
        time_limit_secs: 300,
        launcher_version: "attestable-launcher 0.1.0".into(),
    };
    let platform = Platform {
        cpu_model: "Research Morello SoC r0p0".into(),
        cpus: 4,
        physical_memory_bytes: 17_095_405_568,
        os: "FreeBSD".into(),
        os_release: "15.0-CURRENT".into(),
        kernel: "FreeBSD 15.0-CURRENT GENERIC-MORELLO-PURECAP".into(),
        arch: "aarch64c".into(),
        hostname: "morello-1".into(),
    };
    let layers = [
        "namespaces",
        "no_new_privs",
        "landlock",
        "seccomp",
        "rlimits",
    ]
    .iter()
    .map(|name| Layer {
        name: (*name).into(),
        status: LayerStatus::Active,
        detail: "set up".into(),
    })
    .collect();
    let region = |start: u64, end: u64, perms: &str, path: &str| Region {
        start: HexU64(start),
        end: HexU64(end),
        perms: perms.into(),
        offset: HexU64(0),
        path: path.into(),
    };
    let compartment = CompartmentFacts {
        backend: Backend::LinuxSandbox,
        layers,
        degraded: vec![],
        insecure: false,
        limits: Limits {
            wall_seconds: Some(300),
            ..Default::default()
        },
        memory_map: vec![
            region(0x400000, 0x401000, "r-xp", "/run/integration_process"),
            region(0x7ffd0000, 0x7ffd1000, "rw-p", "[stack]"),
        ],
        memory_map_omitted: 0,
        cheri_bounds: None,
    };
    let issued = issue_run_certificate(
        &authority,
        &csr.build().to_der().unwrap(),
        &run,
        &platform,
        &compartment,
    )
    .unwrap();
    let root_pem = String::from_utf8(root.certificate().to_pem().unwrap()).unwrap();
    (issued.chain_pem, root_pem)
}

/// Runs of spaces as one.
fn squeeze(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if !(c == ' ' && out.ends_with(' ')) {
            out.push(c);
        }
    }
    out
}

fn policy(root_pem: &str, exe: Sha256Hex) -> String {
    format!(
        "[[trusted_root]]\nname = \"cli test\"\npem = \"\"\"{root_pem}\"\"\"\n\n\
         [[allow]]\nname = \"case study\"\nexecutable_sha256 = \"{exe}\"\n\
         resources = [\"sales/last\"]\nops = [\"read\"]\n"
    )
}

#[test]
fn a_chain_is_shown_decoded_and_verified_offline() {
    let env = Env::new();
    let exe = Sha256Hex::digest(b"executable");
    let (chain, root) = issue_chain(exe);
    let cert = env.file("run-12.pem", &chain);
    let cert = cert.to_str().unwrap();

    // Decoded, with no launcher anywhere.
    let shown = expect(env.bare(), &["cert", "show", "--file", cert], 0).stdout;
    // Columns are for people; compare words.
    let shown = squeeze(&shown);
    for needle in [
        "Run certificate of run 12: program 3 \"integration_process.c\", build 5",
        &format!("Executable SHA-256: {exe}"),
        "CPU model: Research Morello SoC r0p0",
        "CPUs: 4",
        "Backend: linux-sandbox",
        " landlock active set up",
        "Memory map: 2 regions, 8.0 KiB mapped (1 executable, 1 writable); objects: integration_process; [stack]",
        "(valid now)",
        "1. run certificate",
        "O=integration_process.c, CN=run-12",
        "2. attestation certificate",
        "3. root certificate",
    ] {
        assert!(shown.contains(needle), "missing {needle:?} in\n{shown}");
    }
    let json = expect(env.bare(), &["--json", "cert", "show", "--file", cert], 0).json();
    assert_eq!(json["run_id"], 12);
    assert_eq!(
        json["evidence"]["program"]["executable_sha256"],
        exe.to_string()
    );
    assert_eq!(json["evidence"]["compartment"]["backend"], "linux-sandbox");
    assert_eq!(json["chain"].as_array().unwrap().len(), 3);
    assert_eq!(json["chain"][0]["role"], "run certificate");
    assert_eq!(json["chain_pem"], chain);
    let pem = expect(env.bare(), &["cert", "show", "--pem", "--file", cert], 0).stdout;
    assert_eq!(pem, chain);

    // Allowed, with the proof a service would give.
    let allow = env.file("allow.toml", policy(&root, exe));
    let allow = allow.to_str().unwrap();
    let out = expect(env.bare(), &["cert", "verify", "--policy", allow, cert], 0);
    assert!(out.stdout.contains("1. Key[root "), "{}", out.stdout);
    assert!(
        out.stdout.contains("Measurement[") && out.stdout.contains("is-trusted"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("=> Key[program "), "{}", out.stdout);
    let args = [
        "cert",
        "verify",
        "--policy",
        allow,
        cert,
        "--service",
        "store",
        "--resource",
        "sales/last",
        "--op",
        "read",
    ];
    let out = expect(env.bare(), &args, 0);
    assert!(
        out.stdout.contains("may read store:sales/last"),
        "{}",
        out.stdout
    );
    // Denied: an operation the policy does not grant; the failing step says why.
    let mut denied = args;
    denied[10] = "write";
    let out = expect(env.bare(), &denied, 1);
    assert!(out.stdout.contains("FAILED"), "{}", out.stdout);
    assert!(
        out.stdout.contains("=> DENIED at step 7 (permission)"),
        "{}",
        out.stdout
    );
    // Denied: another measurement; JSON is the decision as PROTOCOL.md documents it.
    let other = env.file("other.toml", policy(&root, Sha256Hex::digest(b"other")));
    let mut cmd = env.bare();
    cmd.arg("--json");
    let decision = expect(
        cmd,
        &["cert", "verify", "--policy", other.to_str().unwrap(), cert],
        1,
    )
    .json();
    assert_eq!(decision["allowed"], false);
    assert_eq!(decision["failed_step"], "measurement");
    let last = decision["steps"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        last["failure"]["found"]
            .as_str()
            .unwrap()
            .contains(&exe.to_string()),
        "{last}"
    );
    // Denied: a root the policy does not trust.
    let (_, stranger) = issue_chain(exe);
    let untrusting = env.file("untrusting.toml", policy(&stranger, exe));
    let out = expect(
        env.bare(),
        &[
            "cert",
            "verify",
            "--policy",
            untrusting.to_str().unwrap(),
            cert,
        ],
        1,
    );
    assert!(
        out.stdout.contains("=> DENIED at step 1 (trusted_root)"),
        "{}",
        out.stdout
    );

    // No decision: exit 2 and why.
    let broken = env.file("broken.toml", "allow = 3\n");
    let out = expect(
        env.bare(),
        &["cert", "verify", "--policy", broken.to_str().unwrap(), cert],
        2,
    );
    assert!(
        out.stderr.contains("cannot use the policy"),
        "{}",
        out.stderr
    );
    let out = expect(
        env.bare(),
        &["cert", "verify", "--policy", allow, "missing.pem"],
        2,
    );
    assert!(out.stderr.contains("missing.pem"), "{}", out.stderr);
    let out = expect(
        env.bare(),
        &[
            "cert",
            "verify",
            "--policy",
            allow,
            cert,
            "--resource",
            "../x",
            "--op",
            "read",
        ],
        2,
    );
    assert!(out.stderr.contains("--resource"), "{}", out.stderr);
    // A file that is not a chain.
    let junk = env.file("junk.pem", "hello");
    let out = expect(
        env.bare(),
        &["cert", "show", "--file", junk.to_str().unwrap()],
        1,
    );
    assert!(
        out.stderr.contains("is not a certificate chain"),
        "{}",
        out.stderr
    );
    // Standard input works too.
    let mut cmd = env.bare();
    cmd.write_stdin(chain.clone());
    expect(cmd, &["cert", "verify", "--policy", allow, "-"], 0);
}

#[test]
fn a_runs_certificate_is_shown_and_verified() {
    let env = Env::new();
    let launcher = Launcher::start();
    let cli = || env.cli(&launcher);
    let anchor = CertificateAuthority::create_root("services CA", None, 2).unwrap();
    let anchor = env.file("services-ca.pem", anchor.certificate().to_pem().unwrap());
    let source = env.file("certified.c", CERTIFIED);
    expect(cli(), &["programs", "upload", source.to_str().unwrap()], 0);
    let build = expect(
        cli(),
        &[
            "--json",
            "build",
            "1",
            "--services-anchor",
            anchor.to_str().unwrap(),
        ],
        0,
    )
    .json();
    let exe = build["executable_sha256"].as_str().unwrap().to_owned();
    let out = expect(cli(), &["run", "1"], 0);
    assert_eq!(out.stdout, "certified\n", "{}", out.stderr);

    let shown = squeeze(&expect(cli(), &["cert", "show", "1"], 0).stdout);
    let platform = expect(cli(), &["--json", "platform"], 0).json();
    for needle in [
        "Run certificate of run 1: program 1 \"certified.c\", build 1".to_owned(),
        format!("Executable SHA-256: {exe}"),
        format!("CPU model: {}", platform["cpu_model"].as_str().unwrap()),
        format!("CPUs: {}", platform["cpus"]),
        format!(
            "Backend: {}",
            platform["compartment"]["backend"].as_str().unwrap()
        ),
        "Memory map: ".to_owned(),
        "1. run certificate".to_owned(),
        "3. root certificate".to_owned(),
    ] {
        assert!(shown.contains(&needle), "missing {needle:?} in\n{shown}");
    }
    assert!(!shown.contains("Services anchor: none"), "{shown}");
    let json = expect(cli(), &["--json", "cert", "show", "1"], 0).json();
    assert_eq!(json["run_id"], 1);
    assert_eq!(
        json["evidence"]["program"]["executable_sha256"],
        exe.as_str()
    );
    let listed = expect(cli(), &["programs", "list"], 0).stdout;
    assert!(
        listed.contains("    Certificate: run 1; see `attestable cert show 1`"),
        "{listed}"
    );

    // The chain verifies offline against a policy trusting this launcher's
    // root and this executable, whatever compartment this machine gives.
    let chain = expect(cli(), &["cert", "show", "1", "--pem"], 0).stdout;
    let chain_file = env.file("run-1.pem", &chain);
    let root = std::fs::read_to_string(launcher.data_dir().join("pki/root.pem")).unwrap();
    let policy = env.file(
        "policy.toml",
        format!(
            "allow_insecure = true\nallow_degraded = [\"namespaces\", \"no_new_privs\", \"landlock\", \"seccomp\", \"rlimits\"]\n{}",
            policy(&root, exe.parse().unwrap())
        ),
    );
    let out = expect(
        env.bare(),
        &[
            "cert",
            "verify",
            "--policy",
            policy.to_str().unwrap(),
            chain_file.to_str().unwrap(),
            "--service",
            "store",
            "--resource",
            "sales/last",
            "--op",
            "read",
        ],
        0,
    );
    assert!(
        out.stdout.contains("may read store:sales/last"),
        "{}",
        out.stdout
    );

    // A run that never asked for one has none, and says why.
    upload_and_build(&env, &launcher, "hello.c", &program_source("hello.c"));
    expect(cli(), &["run", "2"], 3);
    let out = expect(cli(), &["cert", "show", "2"], 1);
    assert!(
        out.stderr
            .contains("run 2 ended (exited) without a certificate"),
        "{}",
        out.stderr
    );
}
