//! The attestation intermediate: rotated with the daemon running (it picks
//! the new one up) and stopped, and an operator-supplied root.

use std::time::{Duration, Instant};

use attestable_data::pki::{self, CertificateAuthority};
use attestable_tests::channel_programs::{build, run_id, run_to_end};
use attestable_tests::{Launcher, LauncherOptions, launcher_once};
use openssl::x509::X509;

use crate::certificate::openssl_verify;

async fn chain_of(launcher: &Launcher, run: i64) -> Vec<X509> {
    let pem = launcher
        .client()
        .get(launcher.url(&format!("/v1/runs/{run}/certificate")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    X509::stack_from_pem(pem.as_bytes()).unwrap()
}

async fn ca_intermediate(launcher: &Launcher) -> Vec<u8> {
    let text = launcher
        .anonymous()
        .get(launcher.url("/v1/ca"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    X509::stack_from_pem(text.as_bytes()).unwrap()[1]
        .to_der()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_is_used_by_the_running_daemon_and_old_certificates_still_verify() {
    let launcher = Launcher::start();
    let (program, _) = build(&launcher, "sdk_client.c", None).await;
    let before = run_to_end(&launcher, program, &[]).await;
    assert_eq!(before["status"], "exited", "{before}");
    let old_chain = chain_of(&launcher, run_id(&before)).await;
    let old_intermediate = ca_intermediate(&launcher).await;
    assert_eq!(old_chain[1].to_der().unwrap(), old_intermediate);

    let data = launcher.data_dir();
    let (status, stderr) = launcher_once(&[
        "pki",
        "rotate-attestation",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(status.success(), "{stderr}");
    let key_id = pki::key_id(&old_chain[1].public_key().unwrap()).unwrap();
    let archived = data.join(format!("pki/attestation-{}.pem", &key_id[..16]));
    assert_eq!(
        X509::from_pem(&std::fs::read(&archived).unwrap())
            .unwrap()
            .to_der()
            .unwrap(),
        old_intermediate,
        "the old certificate is kept"
    );

    // The daemon notices the new files by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ca_intermediate(&launcher).await == old_intermediate {
        assert!(
            Instant::now() < deadline,
            "the rotation was not picked up\n{}",
            launcher.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = run_to_end(&launcher, program, &[]).await;
    assert_eq!(after["status"], "exited", "{after}");
    let new_chain = chain_of(&launcher, run_id(&after)).await;
    assert_ne!(new_chain[1].to_der().unwrap(), old_intermediate);
    assert_eq!(
        new_chain[1].to_der().unwrap(),
        ca_intermediate(&launcher).await
    );

    let root = X509::from_pem(launcher.root_pem()).unwrap();
    for chain in [&old_chain, &new_chain] {
        let dir = tempfile::tempdir().unwrap();
        let out = openssl_verify(dir.path(), chain, &root);
        assert!(out.contains("run.pem: OK"), "{out}");
    }
    assert!(
        launcher
            .log()
            .contains("loaded a new attestation intermediate")
    );

    // Rotation with the daemon stopped: the next start uses the new one.
    let tmp = launcher.stop();
    let data = tmp.path().join("data");
    let current = std::fs::read(data.join("pki/attestation.pem")).unwrap();
    let (status, stderr) = launcher_once(&[
        "pki",
        "rotate-attestation",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(status.success(), "{stderr}");
    assert_ne!(
        std::fs::read(data.join("pki/attestation.pem")).unwrap(),
        current
    );
}

#[test]
fn rotation_needs_a_launcher_data_folder_with_its_root() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = launcher_once(&[
        "pki",
        "rotate-attestation",
        "--data",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!status.success());
    assert!(stderr.contains("has no root CA"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_supplied_root_signs_everything() {
    let dir = tempfile::tempdir().unwrap();
    let root = CertificateAuthority::create_root("operator root", Some("lab"), 30).unwrap();
    let (cert, key) = (dir.path().join("root.pem"), dir.path().join("root.key"));
    root.save(&cert, &key).unwrap();
    let launcher = Launcher::start_with(LauncherOptions {
        config: Some(format!(
            "[pki]\nroot_cert = \"{}\"\nroot_key = \"{}\"\n",
            cert.display(),
            key.display()
        )),
        ..Default::default()
    });
    // Clients find the operator's root where they find the generated one;
    // its key stays where the operator keeps it.
    let published = X509::from_pem(launcher.root_pem()).unwrap();
    assert_eq!(
        published.to_der().unwrap(),
        root.certificate().to_der().unwrap()
    );
    assert!(!launcher.data_dir().join("pki/root.key").exists());

    let (program, _) = build(&launcher, "sdk_client.c", None).await;
    let run = run_to_end(&launcher, program, &[]).await;
    assert_eq!(run["status"], "exited", "{run}");
    let chain = chain_of(&launcher, run_id(&run)).await;
    assert_eq!(
        chain[2].to_der().unwrap(),
        root.certificate().to_der().unwrap()
    );
    let out = openssl_verify(dir.path(), &chain, root.certificate());
    assert!(out.contains("run.pem: OK"), "{out}");

    // Rotation needs the configuration that names the root.
    let data = launcher.data_dir();
    let (status, stderr) = launcher_once(&[
        "pki",
        "rotate-attestation",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(!status.success());
    assert!(stderr.contains("--config"), "{stderr}");
    launcher.stop();
}
