//! The golden vectors of `docs/vectors/`: the evidence (canonical JSON) and a
//! run certificate chain carrying it. Regenerate both, after a deliberate
//! format change, with `REGENERATE_VECTORS=1 cargo test -p attestable-data --test vectors`.
//! Only certificates are written: the keys that signed them are thrown away.

mod common;

use std::path::PathBuf;

use attestable_data::certificate::{RunFacts, issue_run_certificate};
use attestable_data::encoding::Sha256Hex;
use attestable_data::evidence::Evidence;
use attestable_data::pki;
use attestable_data::proof::StepName;
use attestable_data::verify::{TrustAnchors, verify_run_chain};
use common::*;
use openssl::x509::X509;

fn vector(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/vectors")
        .join(name)
}

fn regenerate() {
    let started = golden_evidence(Sha256Hex::digest(b"")).run.started_at;
    let pki = LauncherPki::valid_from("golden", started.secs() - 86_400);
    let golden = golden_evidence(pki.authority.key_id());
    let run = RunFacts {
        program: golden.program.clone(),
        run_id: golden.run.id,
        started_at: started,
        time_limit_secs: 300,
        launcher_version: golden.launcher.version.clone(),
    };
    let key = pki::generate_p256_key().unwrap();
    let issued = issue_run_certificate(
        &pki.authority,
        &csr(&key, &key),
        &run,
        &golden.platform,
        &golden.compartment,
    )
    .unwrap();
    assert_eq!(issued.evidence, golden);
    std::fs::write(
        vector("evidence-golden.json"),
        golden.to_canonical().unwrap(),
    )
    .unwrap();
    std::fs::write(vector("run-chain-golden.pem"), &issued.chain_pem).unwrap();
}

#[test]
fn golden_evidence_and_chain() {
    if std::env::var_os("REGENERATE_VECTORS").is_some() {
        regenerate();
    }
    let chain_pem = std::fs::read_to_string(vector("run-chain-golden.pem")).unwrap();
    let certs = X509::stack_from_pem(chain_pem.as_bytes()).unwrap();
    assert_eq!(certs.len(), 3, "run certificate, intermediate, root");
    let key_id: Sha256Hex = pki::key_id(&certs[1].public_key().unwrap())
        .unwrap()
        .parse()
        .unwrap();
    let golden = golden_evidence(key_id);

    // serialize -> file, and file -> value
    let file = std::fs::read(vector("evidence-golden.json")).unwrap();
    assert_eq!(
        String::from_utf8(golden.to_canonical().unwrap()).unwrap(),
        String::from_utf8(file.clone()).unwrap()
    );
    assert_eq!(Evidence::from_canonical(&file).unwrap(), golden);

    // The chain verifies while the golden run lasts, and carries that evidence.
    let started = golden.run.started_at.secs();
    let anchors = TrustAnchors::new([("golden".to_string(), certs[2].clone())]).unwrap();
    let verified = verify_run_chain(&chain_pem, &anchors, started + 10).unwrap();
    assert_eq!(verified.evidence(), &golden);
    assert_eq!(verified.run_name(), "run-12");
    let late = verify_run_chain(&chain_pem, &anchors, started + 3600).unwrap_err();
    assert_eq!(late.step(), Some(StepName::Freshness), "{late}");

    // And so does OpenSSL's command line, at the same time.
    let dir = tempfile::tempdir().unwrap();
    for (name, cert) in ["run.pem", "attestation.pem", "root.pem"]
        .iter()
        .zip(&certs)
    {
        write(dir.path(), name, cert.to_pem().unwrap());
    }
    let at = (started + 10).to_string();
    let out = openssl(
        dir.path(),
        &[
            "verify",
            "-attime",
            &at,
            "-CAfile",
            "root.pem",
            "-untrusted",
            "attestation.pem",
            "run.pem",
        ],
    );
    assert_eq!(out.trim(), "run.pem: OK");
}
