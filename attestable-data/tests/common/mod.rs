//! Fixtures shared by the integration tests: a launcher PKI, programs with
//! their own keys and CSRs, the golden evidence, and the `openssl` command.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use attestable_data::certificate::{
    AttestationAuthority, IssuedRunCertificate, RunFacts, issue_run_certificate,
};
use attestable_data::encoding::{HexU64, Sha256Hex, UnixTime};
use attestable_data::evidence::{
    Backend, CheriCapability, CompartmentFacts, Evidence, LauncherInfo, Layer, LayerStatus, Limits,
    Platform, ProgramFacts, RunInfo,
};
use attestable_data::memmap::Region;
use attestable_data::pki::{self, CertificateAuthority, Validity};
use attestable_data::policy::{AllowRule, Op, Policy, PolicyDocument};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509ReqBuilder;

/// The golden evidence of `docs/vectors/evidence-golden.json`, its
/// attestation key id aside (that comes from the golden chain's intermediate).
pub fn golden_evidence(attestation_key_id: Sha256Hex) -> Evidence {
    let h = |s: &str| Sha256Hex::digest(s.as_bytes());
    Evidence {
        version: 1,
        program: ProgramFacts {
            id: 3,
            name: "integration_process.c".into(),
            build_id: 5,
            source_sha256: h("source"),
            executable_sha256: h("executable"),
            sdk_sha256: h("sdk"),
            services_anchor_sha256: Some(h("anchor")),
            toolchain_profile: "morello-purecap".into(),
            compiler: "clang version 17.0.0 (CHERI)".into(),
            flags: [
                "-march=morello",
                "-mabi=purecap",
                "-O2",
                "-o",
                "integration_process",
                "integration_process.c",
                "attestable.c",
                "-lcrypto",
            ]
            .map(String::from)
            .to_vec(),
        },
        platform: Platform {
            cpu_model: "Research Morello SoC r0p0".into(),
            cpus: 4,
            physical_memory_bytes: 17_095_405_568,
            os: "FreeBSD".into(),
            os_release: "15.0-CURRENT".into(),
            kernel: "FreeBSD 15.0-CURRENT #0 releng/26.07-5cfe5e5b1c: GENERIC-MORELLO-PURECAP"
                .into(),
            arch: "aarch64c".into(),
            hostname: "morello-1".into(),
        },
        compartment: CompartmentFacts {
            backend: Backend::CheriC18n,
            layers: vec![
                layer("purecap", "CheriABI executable"),
                layer("c18n", "proccontrol -m cheric18n"),
                layer("capsicum", "cap_enter after HELLO"),
                layer("rlimits", "\"as\", cpu, nofile, nproc, fsize\tset"),
            ],
            degraded: vec![],
            insecure: false,
            limits: Limits {
                address_space_bytes: Some(4 << 30),
                cpu_seconds: Some(60),
                open_files: Some(64),
                processes: Some(1),
                file_size_bytes: Some(16 << 20),
                wall_seconds: Some(300),
            },
            memory_map: vec![
                region(
                    0x100000,
                    0x101000,
                    "r--R-",
                    0,
                    "/usr/home/demo/integration_process",
                ),
                region(
                    0x110000,
                    0x112000,
                    "r-x--",
                    0x10000,
                    "/usr/home/demo/integration_process",
                ),
                region(0xfffc_0000_0000, 0xfffc_0002_0000, "rw-RW", 0, ""),
            ],
            memory_map_omitted: 0,
            cheri_bounds: Some(vec![
                CheriCapability {
                    name: "pcc".into(),
                    base: HexU64(0x110000),
                    length: HexU64(0x2000),
                    perms: HexU64(0x2_7d17),
                    tag: true,
                },
                CheriCapability {
                    name: "stack".into(),
                    base: HexU64(0xfffc_0001_ff00),
                    length: HexU64(0x100),
                    perms: HexU64(0x6_817d),
                    tag: true,
                },
            ]),
        },
        run: RunInfo {
            id: 12,
            started_at: "2026-11-24T18:54:00Z".parse().unwrap(),
            not_after: "2026-11-24T18:59:00Z".parse().unwrap(),
        },
        launcher: LauncherInfo {
            version: "attestable-launcher 0.1.0".into(),
            attestation_key_id,
        },
    }
}

pub fn layer(name: &str, detail: &str) -> Layer {
    Layer {
        name: name.into(),
        status: LayerStatus::Active,
        detail: detail.into(),
    }
}

pub fn region(start: u64, end: u64, perms: &str, offset: u64, path: &str) -> Region {
    Region {
        start: HexU64(start),
        end: HexU64(end),
        perms: perms.into(),
        offset: HexU64(offset),
        path: path.into(),
    }
}

/// A launcher's root and attestation intermediate.
pub struct LauncherPki {
    pub root: CertificateAuthority,
    pub authority: AttestationAuthority,
}

impl LauncherPki {
    pub fn new(name: &str) -> Self {
        let root =
            CertificateAuthority::create_root(&format!("{name} root"), Some(name), 30).unwrap();
        let authority =
            AttestationAuthority::create(&root, &format!("{name} attestation"), 30).unwrap();
        Self { root, authority }
    }

    /// A PKI valid from `from` for a century (for vectors at fixed times).
    pub fn valid_from(name: &str, from: i64) -> Self {
        let validity = Validity {
            not_before: from,
            not_after: from + 100 * 365 * 86_400,
        };
        let root = CertificateAuthority::create_root_with_validity(
            &format!("{name} root"),
            Some(name),
            validity,
        )
        .unwrap();
        let inter = root
            .issue_intermediate_with_validity(&format!("{name} attestation"), None, validity)
            .unwrap();
        let authority =
            AttestationAuthority::from_parts(inter, vec![root.certificate().clone()]).unwrap();
        Self { root, authority }
    }

    pub fn root_pem(&self) -> String {
        String::from_utf8(self.root.certificate().to_pem().unwrap()).unwrap()
    }
}

/// A DER CSR for `key`, signed by `signer` (a different key makes a CSR without proof of possession).
pub fn csr(key: &PKey<Private>, signer: &PKey<Private>) -> Vec<u8> {
    let mut b = X509ReqBuilder::new().unwrap();
    b.set_pubkey(key).unwrap();
    b.set_subject_name(&pki::x509_name("program", None).unwrap())
        .unwrap();
    b.sign(signer, MessageDigest::sha256()).unwrap();
    b.build().to_der().unwrap()
}

/// The golden run's facts, starting at `started_at`, in a `backend` compartment.
pub fn run_facts(started_at: i64, backend: Backend) -> (RunFacts, Platform, CompartmentFacts) {
    let g = golden_evidence(Sha256Hex::digest(b"unused"));
    let mut compartment = g.compartment;
    compartment.backend = backend;
    if backend == Backend::LinuxSandbox {
        compartment.layers = [
            "namespaces",
            "no_new_privs",
            "landlock",
            "seccomp",
            "rlimits",
        ]
        .iter()
        .map(|n| layer(n, "set up"))
        .collect();
        compartment.cheri_bounds = None;
    }
    let run = RunFacts {
        program: g.program,
        run_id: 12,
        started_at: UnixTime(started_at),
        time_limit_secs: 300,
        launcher_version: "attestable-launcher 0.1.0".into(),
    };
    (run, g.platform, compartment)
}

/// A program: its key and its run certificate.
pub struct Program {
    pub key: PKey<Private>,
    pub issued: IssuedRunCertificate,
}

/// Issues a run certificate for a fresh program key.
pub fn program(
    pki: &LauncherPki,
    run: &RunFacts,
    platform: &Platform,
    compartment: &CompartmentFacts,
) -> Program {
    let key = pki::generate_p256_key().unwrap();
    let issued =
        issue_run_certificate(&pki.authority, &csr(&key, &key), run, platform, compartment)
            .unwrap();
    Program { key, issued }
}

/// A program started now in a Linux sandbox.
pub fn linux_program(pki: &LauncherPki) -> Program {
    let (run, platform, compartment) = run_facts(pki::unix_now(), Backend::LinuxSandbox);
    program(pki, &run, &platform, &compartment)
}

/// A policy trusting `pki`'s root and allowing `exe` the given resources and ops.
pub fn policy(pki: &LauncherPki, exe: Sha256Hex, resources: &[&str], ops: &[Op]) -> Policy {
    let mut doc = PolicyDocument::default();
    doc.add_trusted_root_pem("dev launcher", &pki.root_pem())
        .unwrap();
    if !resources.is_empty() {
        doc.add_allow_rule(AllowRule::for_executable(
            "case study",
            exe,
            resources.iter().map(|r| r.parse().unwrap()).collect(),
            ops.to_vec(),
        ))
        .unwrap();
    }
    Policy::from_document(doc, None).unwrap()
}

/// The golden program's executable hash.
pub fn golden_exe() -> Sha256Hex {
    Sha256Hex::digest(b"executable")
}

/// Runs `openssl` in `dir`; returns stdout, panicking with stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), bytes).unwrap();
}
