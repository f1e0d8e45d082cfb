//! HELLO → a run certificate whose evidence is this run's, served by
//! `GET /v1/runs/{id}/certificate` and verifiable with OpenSSL.

use std::path::Path;
use std::process::Command;

use attestable_data::pki;
use attestable_data::verify::{TrustAnchors, verify_run_chain};
use attestable_tests::channel_programs::{build, line, run_id, run_to_end};
use attestable_tests::{Launcher, expect};
use openssl::x509::X509;

/// Writes the chain's certificates to `dir` as run.pem, attestation.pem and
/// root.pem and runs `openssl verify`; returns its output.
pub fn openssl_verify(dir: &Path, chain: &[X509], root: &X509) -> String {
    let write = |name: &str, cert: &X509| {
        let path = dir.join(name);
        std::fs::write(&path, cert.to_pem().unwrap()).unwrap();
        path
    };
    let run = write("run.pem", &chain[0]);
    let attestation = write("attestation.pem", &chain[1]);
    let root = write("root.pem", root);
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&root)
        .arg("-untrusted")
        .arg(&attestation)
        .arg(&run)
        .output()
        .expect("running openssl verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl verify failed: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_gets_a_certificate_whose_evidence_is_this_run() {
    let launcher = Launcher::start();
    let (program, build) = build(&launcher, "sdk_client.c", None).await;
    let run = run_to_end(&launcher, program, &[]).await;
    assert_eq!(run["status"], "exited", "{run}");
    assert_eq!(run["exit_code"], 0, "{run}");
    let id = run_id(&run);
    assert_eq!(
        line(&run, "cert "),
        format!("cert O=sdk_client.c, CN=run-{id}")
    );
    assert_eq!(run["has_certificate"], true);

    let pem = launcher
        .client()
        .get(launcher.url(&format!("/v1/runs/{id}/certificate")))
        .send()
        .await
        .unwrap();
    assert_eq!(pem.status(), 200);
    assert_eq!(pem.headers()["content-type"], "application/x-pem-file");
    let pem = pem.text().await.unwrap();
    let chain = X509::stack_from_pem(pem.as_bytes()).unwrap();
    assert_eq!(chain.len(), 3, "run certificate, intermediate, root");
    let root = X509::from_pem(launcher.root_pem()).unwrap();
    assert_eq!(chain[2].to_der().unwrap(), root.to_der().unwrap());

    let anchors = TrustAnchors::new([("launcher".to_owned(), root.clone())]).unwrap();
    let verified = verify_run_chain(&pem, &anchors, pki::unix_now()).expect("the chain verifies");
    let evidence = verified.evidence();

    // The program and its build, as measured when the run started.
    let exe = run["executable_sha256"].as_str().unwrap();
    assert_eq!(exe, build["executable_sha256"].as_str().unwrap());
    assert_eq!(evidence.program.executable_sha256.to_string(), exe);
    assert_eq!(evidence.program.id, program);
    assert_eq!(evidence.program.name, "sdk_client.c");
    assert_eq!(evidence.program.build_id, build["id"].as_i64().unwrap());
    assert_eq!(
        Some(evidence.program.sdk_sha256.to_string().as_str()),
        build["sdk_sha256"].as_str()
    );
    assert_eq!(evidence.program.services_anchor_sha256, None);
    assert_eq!(
        evidence.program.toolchain_profile,
        build["profile"].as_str().unwrap()
    );
    assert_eq!(
        evidence.program.compiler,
        build["compiler"].as_str().unwrap()
    );
    let argv: Vec<&str> = build["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(evidence.program.flags, argv[1..]);
    let source = launcher.get(&format!("/v1/programs/{program}"), 200).await;
    assert_eq!(
        evidence.program.source_sha256.to_string(),
        source["source_sha256"].as_str().unwrap()
    );

    // The platform as the launcher probed it.
    let platform = launcher.get("/v1/platform", 200).await;
    assert_eq!(
        evidence.platform.cpu_model,
        platform["cpu_model"].as_str().unwrap()
    );
    assert_eq!(
        u64::from(evidence.platform.cpus),
        platform["cpus"].as_u64().unwrap()
    );
    assert_eq!(
        evidence.platform.cpus as usize,
        std::thread::available_parallelism().unwrap().get()
    );

    // The compartment this run was started in, with its limits.
    assert_eq!(evidence.compartment.backend.as_str(), "linux-sandbox");
    assert_eq!(run["compartment"]["backend"], "linux-sandbox");
    for layer in &evidence.compartment.layers {
        assert_eq!(layer.status.to_string(), "active", "{layer:?}");
    }
    assert!(!evidence.compartment.insecure);
    assert_eq!(evidence.compartment.limits.wall_seconds, Some(60));
    assert_eq!(evidence.compartment.cheri_bounds, None);

    // The child's memory map, captured at HELLO: the executable and libcrypto.
    let map = &evidence.compartment.memory_map;
    assert!(map.len() > 5, "{map:?}");
    let executable = map
        .iter()
        .find(|r| r.perms.contains('x') && r.path.contains("attestable-executable"))
        .unwrap_or_else(|| panic!("no executable mapping of the program in {map:?}"));
    assert!(executable.end.0 > executable.start.0);
    assert!(map.iter().any(|r| r.path.contains("libcrypto")), "{map:?}");

    // The run and the launcher.
    assert_eq!(evidence.run.id, id);
    assert_eq!(
        evidence.run.not_after.secs() - evidence.run.started_at.secs(),
        60
    );
    assert_eq!(
        evidence.launcher.attestation_key_id.to_string(),
        pki::key_id(&chain[1].public_key().unwrap()).unwrap()
    );

    let dir = tempfile::tempdir().unwrap();
    let verified = openssl_verify(dir.path(), &chain, &root);
    assert!(verified.contains("run.pem: OK"), "{verified}");
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_route_serves_the_root_then_the_intermediate_without_a_token() {
    let launcher = Launcher::start();
    let response = launcher
        .anonymous()
        .get(launcher.url("/v1/ca"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let certs = X509::stack_from_pem(text.as_bytes()).unwrap();
    assert_eq!(certs.len(), 2);
    // A client that reads only the first certificate gets the root.
    assert_eq!(
        X509::from_pem(text.as_bytes()).unwrap().to_der().unwrap(),
        X509::from_pem(launcher.root_pem())
            .unwrap()
            .to_der()
            .unwrap()
    );
    let on_disk = std::fs::read(launcher.data_dir().join("pki/attestation.pem")).unwrap();
    assert_eq!(
        certs[1].to_der().unwrap(),
        X509::from_pem(&on_disk).unwrap().to_der().unwrap()
    );
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_route_says_why_there_is_none() {
    let launcher = Launcher::start();
    let missing = launcher
        .client()
        .get(launcher.url("/v1/runs/999/certificate"))
        .send()
        .await
        .unwrap();
    let body = expect(missing, 404).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("run 999 not found")
    );

    // A program that never says HELLO.
    let (program, _) = build(&launcher, "raw_frames.c", None).await;
    let run = run_to_end(&launcher, program, &["unknown"]).await;
    assert_eq!(run["status"], "exited", "{run}");
    assert_eq!(run["has_certificate"], false);
    let none = launcher
        .client()
        .get(launcher.url(&format!("/v1/runs/{}/certificate", run_id(&run))))
        .send()
        .await
        .unwrap();
    let body = expect(none, 404).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("never completed HELLO"), "{message}");
    let anonymous = launcher
        .anonymous()
        .get(launcher.url(&format!("/v1/runs/{}/certificate", run_id(&run))))
        .send()
        .await
        .unwrap();
    expect(anonymous, 401).await;
    launcher.stop();
}
