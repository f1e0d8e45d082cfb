//! `HELLO`: the launcher's word about a run, as a certificate.
//!
//! On `HELLO` the launcher captures the program's memory map, assembles the
//! evidence from its own records (the program, the build with its compiled-in
//! SDK and anchor hashes, the executable hash measured when the run started,
//! the compartment the run was started in, its limits and time limit), the
//! platform probed at start-up and the CHERI bounds the program reported, and
//! issues the run certificate for the program's CSR with the attestation
//! intermediate in force. The chain is stored with the run and answered.

use std::sync::Arc;

use attestable_data::certificate::{
    IssueError, IssuedRunCertificate, RunFacts, check_csr, issue_run_certificate,
};
use attestable_data::encoding::{Sha256Hex, UnixTime};
use attestable_data::evidence::{
    Backend, CompartmentFacts, Layer, Limits, Platform, ProgramFacts, parse_cheri_bounds,
};
use attestable_data::memmap::{self, Region};
use programs_db::{Build, Program, Run, SYSTEM_ACTOR};
use serde::Deserialize;

use super::session::{Hello, Nack, NackCode};
use crate::compartment::CompartmentInfo;
use crate::pki::Attestation;
use crate::records::Records;

/// The launcher's name and version in the evidence.
pub fn launcher_version() -> String {
    format!("attestable-launcher {}", env!("CARGO_PKG_VERSION"))
}

/// What a run records about its compartment (`runs.compartment`): the
/// evidence's `compartment.{backend, layers, degraded, insecure}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CompartmentRecord {
    pub backend: Backend,
    pub layers: Vec<Layer>,
    #[serde(default)]
    pub degraded: Vec<String>,
    pub insecure: bool,
}

impl CompartmentRecord {
    pub fn parse(json: &str) -> Result<Self, String> {
        serde_json::from_str(json)
            .map_err(|e| format!("the run's compartment record does not parse: {e}"))
    }

    /// The backend's own description, for runs started before compartments
    /// were recorded with the run.
    pub fn from_info(info: &CompartmentInfo) -> Result<Self, String> {
        Self::parse(&serde_json::to_string(info).map_err(|e| e.to_string())?)
    }
}

/// Everything the evidence says that the records hold, before the memory
/// map and the CHERI bounds: pure, so it is tested without a run.
pub fn assemble(
    program: &Program,
    build: &Build,
    run: &Run,
    compartment: &CompartmentRecord,
    launcher_version: String,
) -> Result<(RunFacts, CompartmentFacts), String> {
    let hex = |what: &str, value: &str| {
        value
            .parse::<Sha256Hex>()
            .map_err(|e| format!("{what}: {e}"))
    };
    let executable = run
        .executable_sha256
        .as_ref()
        .ok_or_else(|| format!("run {} has no measured executable hash", run.id))?;
    let sdk = build.sdk_sha256.as_ref().ok_or_else(|| {
        format!(
            "build {} was made without the SDK hash recorded (before the SDK was compiled \
             into every build); rebuild the program",
            build.id
        )
    })?;
    let anchor = build
        .services_anchor_sha256
        .as_ref()
        .map(|a| hex("services anchor hash", a.as_str()))
        .transpose()?;
    let started_ms = run
        .started_at
        .ok_or_else(|| format!("run {} has not started", run.id))?;
    let limits: crate::compartment::Limits = serde_json::from_str(&run.limits_json)
        .map_err(|e| format!("the run's limits do not parse: {e}"))?;
    let facts = RunFacts {
        program: ProgramFacts {
            id: program.id,
            name: program.name.clone(),
            build_id: build.id,
            source_sha256: hex("source hash", program.source_sha256.as_str())?,
            executable_sha256: hex("executable hash", executable.as_str())?,
            sdk_sha256: hex("SDK hash", sdk.as_str())?,
            services_anchor_sha256: anchor,
            toolchain_profile: build.profile.clone(),
            compiler: build.compiler.clone(),
            flags: build.argv.iter().skip(1).cloned().collect(),
        },
        run_id: run.id,
        started_at: UnixTime(started_ms.div_euclid(1000)),
        time_limit_secs: run.time_limit_s,
        launcher_version,
    };
    let compartment = CompartmentFacts {
        backend: compartment.backend,
        layers: compartment.layers.clone(),
        degraded: compartment.degraded.clone(),
        insecure: compartment.insecure,
        limits: Limits {
            address_space_bytes: limits.address_space_bytes,
            cpu_seconds: limits.cpu_seconds,
            open_files: limits.open_files,
            processes: limits.processes,
            file_size_bytes: limits.file_size_bytes,
            wall_seconds: Some(limits.wall_seconds),
        },
        memory_map: Vec::new(),
        memory_map_omitted: 0,
        cheri_bounds: None,
    };
    Ok((facts, compartment))
}

/// Issues run certificates; shared by every run.
pub struct Certifier {
    records: Records,
    attestation: Arc<Attestation>,
    platform: Platform,
    /// The backend's description, for runs without a compartment record.
    fallback: CompartmentInfo,
}

impl std::fmt::Debug for Certifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certifier").finish_non_exhaustive()
    }
}

fn internal(reason: String) -> Nack {
    Nack::new(NackCode::Internal, reason)
}

impl Certifier {
    pub fn new(
        records: Records,
        attestation: Arc<Attestation>,
        platform: Platform,
        fallback: CompartmentInfo,
    ) -> Self {
        Self {
            records,
            attestation,
            platform,
            fallback,
        }
    }

    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// Answers `HELLO` for `run` (its row as it started running), whose
    /// process is `pid`; stores the chain with the run.
    pub async fn certify(
        &self,
        run: &Run,
        pid: u32,
        hello: Hello,
    ) -> Result<IssuedRunCertificate, Nack> {
        // Cheap refusals first: nothing is captured for a CSR that will not do.
        check_csr(&hello.csr).map_err(|e| Nack::new(NackCode::BadCsr, e.to_string()))?;
        let cheri_bounds = parse_cheri_bounds(&hello.cheri_bounds)
            .map_err(|e| Nack::new(NackCode::BadRequest, e))?;

        let memory_map: Vec<Region> = tokio::task::spawn_blocking(move || memmap::capture(pid))
            .await
            .map_err(|e| internal(format!("capturing the memory map: {e}")))?
            .map_err(|e| internal(format!("capturing the memory map of pid {pid}: {e}")))?;

        let (program_id, build_id) = (run.program_id, run.build_id);
        let (program, build) = self
            .records
            .call(move |db| Ok((db.program(program_id)?, db.build(build_id)?)))
            .await
            .map_err(|e| internal(format!("reading the run's program and build: {e}")))?;
        let compartment = match &run.compartment {
            Some(json) => CompartmentRecord::parse(json),
            None => CompartmentRecord::from_info(&self.fallback),
        }
        .map_err(internal)?;
        let (facts, mut compartment) =
            assemble(&program, &build, run, &compartment, launcher_version()).map_err(internal)?;
        compartment.memory_map = memory_map;
        compartment.cheri_bounds = cheri_bounds;

        let authority = self.attestation.current();
        let platform = self.platform.clone();
        let issued = tokio::task::spawn_blocking(move || {
            issue_run_certificate(&authority, &hello.csr, &facts, &platform, &compartment)
        })
        .await
        .map_err(|e| internal(format!("issuing the certificate: {e}")))?
        .map_err(|e| match e {
            IssueError::Csr(e) => Nack::new(NackCode::BadCsr, e.to_string()),
            IssueError::AuthorityExpires { .. } => {
                tracing::error!(error = %e, "cannot issue a run certificate: rotate the attestation intermediate");
                internal(format!(
                    "{e}: the operator must run `launcher pki rotate-attestation --data DIR`"
                ))
            }
            other => internal(format!("issuing the certificate: {other}")),
        })?;

        let (id, pem) = (run.id, issued.chain_pem.clone());
        self.records
            .call(move |db| db.set_run_certificate(SYSTEM_ACTOR, id, &pem))
            .await
            .map_err(|e| internal(format!("storing the certificate: {e}")))?;
        tracing::info!(
            run = run.id,
            fingerprint = %issued.fingerprint,
            key_id = %issued.evidence.launcher.attestation_key_id,
            "issued a run certificate"
        );
        Ok(issued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use programs_db::{BuildStatus, Captured, RunStatus};

    fn sha(c: char) -> programs_db::Sha256Hex {
        programs_db::Sha256Hex::parse(&c.to_string().repeat(64)).unwrap()
    }

    fn rows() -> (Program, Build, Run) {
        let program = Program {
            id: 3,
            name: "hello.c".into(),
            source_sha256: sha('a'),
            size: 10,
            created_at: 0,
        };
        let build = Build {
            id: 4,
            program_id: 3,
            status: BuildStatus::Succeeded,
            profile: "host".into(),
            compiler: "cc (Debian 14.2.0) 14.2.0".into(),
            argv: vec!["cc".into(), "-O2".into(), "-o".into(), "hello".into()],
            executable_sha256: Some(sha('b')),
            sdk_sha256: Some(sha('c')),
            services_anchor_sha256: None,
            exit_code: Some(0),
            log: String::new(),
            log_truncated: false,
            error: None,
            duration_ms: Some(5),
            created_at: 0,
            finished_at: Some(1),
        };
        let run = Run {
            id: 12,
            program_id: 3,
            build_id: 4,
            status: RunStatus::Running,
            args: vec![],
            limits_json: r#"{"address_space_bytes":1073741824,"cpu_seconds":31,"open_files":64,"processes":null,"file_size_bytes":null,"wall_seconds":30}"#.into(),
            time_limit_s: 30,
            executable_sha256: Some(sha('d')),
            pid: Some(77),
            exit_code: None,
            signal: None,
            error: None,
            stdout: Captured::default(),
            stderr: Captured::default(),
            certificate_pem: None,
            compartment: None,
            created_at: 0,
            started_at: Some(1_795_548_840_999),
            ended_at: None,
        };
        (program, build, run)
    }

    fn record() -> CompartmentRecord {
        CompartmentRecord::parse(
            r#"{"backend":"linux-sandbox","layers":[{"name":"landlock","status":"active","detail":"ABI 7"}],"degraded":[],"insecure":false}"#,
        )
        .unwrap()
    }

    #[test]
    fn evidence_comes_from_the_records() {
        let (program, build, run) = rows();
        let (facts, compartment) =
            assemble(&program, &build, &run, &record(), "launcher 1".into()).unwrap();
        assert_eq!(facts.program.id, 3);
        assert_eq!(facts.program.build_id, 4);
        assert_eq!(facts.program.source_sha256.to_string(), "a".repeat(64));
        // The measured hash, not the build's.
        assert_eq!(facts.program.executable_sha256.to_string(), "d".repeat(64));
        assert_eq!(facts.program.sdk_sha256.to_string(), "c".repeat(64));
        assert_eq!(facts.program.services_anchor_sha256, None);
        assert_eq!(facts.program.flags, ["-O2", "-o", "hello"]);
        assert_eq!(facts.started_at, UnixTime(1_795_548_840));
        assert_eq!(facts.time_limit_secs, 30);
        assert_eq!(compartment.backend, Backend::LinuxSandbox);
        assert_eq!(compartment.layers[0].name, "landlock");
        assert_eq!(compartment.limits.cpu_seconds, Some(31));
        assert_eq!(compartment.limits.processes, None);
        assert_eq!(compartment.limits.wall_seconds, Some(30));
    }

    #[test]
    fn missing_facts_are_named() {
        let (program, mut build, run) = rows();
        build.sdk_sha256 = None;
        let err = assemble(&program, &build, &run, &record(), "l".into()).unwrap_err();
        assert!(
            err.contains("build 4 was made without the SDK hash"),
            "{err}"
        );
        let (program, build, mut run) = rows();
        run.started_at = None;
        assert!(
            assemble(&program, &build, &run, &record(), "l".into())
                .unwrap_err()
                .contains("has not started")
        );
        assert!(CompartmentRecord::parse(r#"{"backend":"chroot"}"#).is_err());
    }

    /// A run of this very process (its memory map is real), recorded as
    /// running, with a CSR for a fresh key.
    struct Live {
        _dir: tempfile::TempDir,
        records: Records,
        run: Run,
        csr: Vec<u8>,
    }

    async fn live_run(time_limit_s: u32) -> Live {
        use openssl::hash::MessageDigest;
        use openssl::x509::X509ReqBuilder;
        let dir = tempfile::tempdir().unwrap();
        let mut db = programs_db::Db::open(dir.path()).unwrap();
        let staged = db.files().stage_bytes(b"int main(void){}").unwrap();
        let program = db.create_program("t", "p.c", staged).unwrap();
        let new = programs_db::NewBuild {
            program_id: program.id,
            profile: "host".into(),
            compiler: "cc 1".into(),
            argv: vec!["cc".into(), "-O2".into()],
        };
        let compiled_in = programs_db::CompiledIn {
            sdk_sha256: sha('c'),
            services_anchor_sha256: Some(sha('e')),
        };
        let build = db.start_build_with("t", &new, &compiled_in).unwrap();
        let exe = db.files().stage_bytes(b"\x7fELF").unwrap();
        let build = db
            .finish_build(
                "t",
                build.id,
                programs_db::BuildOutcome::Succeeded {
                    executable: exe,
                    log: String::new(),
                    log_truncated: false,
                    duration_ms: 1,
                },
            )
            .unwrap();
        let run = db
            .create_run(
                "t",
                &programs_db::NewRun {
                    program_id: program.id,
                    build_id: build.id,
                    args: vec![],
                    limits_json: r#"{"address_space_bytes":null,"cpu_seconds":null,"open_files":null,"processes":null,"file_size_bytes":null,"wall_seconds":5}"#.into(),
                    time_limit_s,
                },
            )
            .unwrap();
        db.update_run("t", run.id, programs_db::RunUpdate::Starting)
            .unwrap();
        let run = db
            .update_run(
                "t",
                run.id,
                programs_db::RunUpdate::Running {
                    pid: std::process::id(),
                    executable_sha256: build.executable_sha256.clone().unwrap(),
                    compartment: r#"{"backend":"none","layers":[],"degraded":[],"insecure":true}"#
                        .into(),
                },
            )
            .unwrap();
        let key = attestable_data::pki::generate_p256_key().unwrap();
        let mut req = X509ReqBuilder::new().unwrap();
        req.set_pubkey(&key).unwrap();
        req.sign(&key, MessageDigest::sha256()).unwrap();
        Live {
            _dir: dir,
            records: Records::new(db),
            run,
            csr: req.build().to_der().unwrap(),
        }
    }

    fn certifier(live: &Live, intermediate_days: u32) -> Certifier {
        use attestable_data::certificate::AttestationAuthority;
        use attestable_data::pki::CertificateAuthority;
        let dir = tempfile::tempdir().unwrap();
        let data = crate::paths::DataDir::new(dir.path());
        let root = CertificateAuthority::create_root("r", None, 30).unwrap();
        let authority = AttestationAuthority::create(&root, "a", intermediate_days).unwrap();
        let platform = attestable_data::probe::platform().unwrap();
        Certifier::new(
            live.records.clone(),
            Arc::new(Attestation::new(&data, &root, authority)),
            platform,
            CompartmentInfo {
                backend: "none".into(),
                layers: vec![],
                degraded: vec![],
                insecure: true,
            },
        )
    }

    fn hello(csr: &[u8], cheri_bounds: &str) -> Hello {
        Hello {
            csr: csr.to_vec(),
            sdk_version: "test".into(),
            cheri_bounds: cheri_bounds.into(),
        }
    }

    #[tokio::test]
    async fn hello_issues_stores_and_refuses_what_it_must() {
        let live = live_run(5).await;
        let certifier = certifier(&live, 30);
        let err = certifier
            .certify(&live.run, std::process::id(), hello(b"junk", ""))
            .await
            .unwrap_err();
        assert_eq!(err.code, NackCode::BadCsr, "{err}");
        let err = certifier
            .certify(&live.run, std::process::id(), hello(&live.csr, "{}"))
            .await
            .unwrap_err();
        assert_eq!(err.code, NackCode::BadRequest, "{err}");
        assert!(err.reason.contains("cheri_bounds"), "{err}");

        let bounds = r#"[{"name":"pcc","base":"0x10","length":"0x20","perms":"0x3","tag":true}]"#;
        let issued = certifier
            .certify(&live.run, std::process::id(), hello(&live.csr, bounds))
            .await
            .unwrap();
        let evidence = &issued.evidence;
        assert_eq!(
            evidence.program.services_anchor_sha256.unwrap().to_string(),
            "e".repeat(64)
        );
        assert!(evidence.compartment.insecure);
        assert_eq!(evidence.compartment.cheri_bounds.as_ref().unwrap().len(), 1);
        assert!(
            !evidence.compartment.memory_map.is_empty(),
            "this process's map"
        );
        let id = live.run.id;
        let stored = live.records.call(move |db| db.run(id)).await.unwrap();
        assert_eq!(
            stored.certificate_pem.as_deref(),
            Some(issued.chain_pem.as_str())
        );
        // Once stored, a run is not certified twice.
        let err = certifier
            .certify(&live.run, std::process::id(), hello(&live.csr, ""))
            .await
            .unwrap_err();
        assert_eq!(err.code, NackCode::Internal);
        assert!(err.reason.contains("already has a certificate"), "{err}");
    }

    #[tokio::test]
    async fn an_expiring_intermediate_is_refused_with_the_way_out() {
        // A run of two days under an intermediate valid for one.
        let live = live_run(2 * 86_400).await;
        let err = certifier(&live, 1)
            .certify(&live.run, std::process::id(), hello(&live.csr, ""))
            .await
            .unwrap_err();
        assert_eq!(err.code, NackCode::Internal);
        assert!(err.reason.contains("rotate"), "{err}");
        assert!(
            err.reason.contains("launcher pki rotate-attestation"),
            "{err}"
        );
    }

    #[test]
    fn the_backend_description_is_a_compartment_record() {
        let info = CompartmentInfo {
            backend: "none".into(),
            layers: vec![],
            degraded: vec![],
            insecure: true,
        };
        let record = CompartmentRecord::from_info(&info).unwrap();
        assert_eq!(record.backend, Backend::None);
        assert!(record.insecure);
    }
}
