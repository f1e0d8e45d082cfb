//! Run certificates end to end: issue from a CSR made in Rust, verify offline,
//! decide with a policy, and interoperate with the `openssl` command line.
//! Every negative case asserts the step its proof names.

mod common;

use attestable_data::certificate::{
    CsrError, IssueError, OID_EVIDENCE, OID_EXECUTABLE_HASH, OID_HASH_SIGNATURE,
    issue_run_certificate,
};
use attestable_data::encoding::Sha256Hex;
use attestable_data::evidence::{Backend, Evidence, LayerStatus};
use attestable_data::pki;
use attestable_data::policy::{Access, AllowRule, Op, Policy, PolicyDocument};
use attestable_data::proof::StepName;
use attestable_data::verify::{TrustAnchors, VerifyError, read_evidence, verify_run_chain};
use common::*;
use openssl::x509::X509;

fn anchors(pki: &LauncherPki) -> TrustAnchors {
    TrustAnchors::new([("dev launcher".to_string(), pki.root.certificate().clone())]).unwrap()
}

fn raw_extension(cert: &X509, oid: &str) -> Vec<u8> {
    let der = cert.to_der().unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
    parsed
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == oid)
        .map(|e| e.value.to_vec())
        .unwrap()
}

#[test]
fn issue_then_verify_round_trip_with_evidence_equal_to_inputs() {
    let pki = LauncherPki::new("dev");
    let now = pki::unix_now();
    let (run, platform, compartment) = run_facts(now, Backend::LinuxSandbox);
    let p = program(&pki, &run, &platform, &compartment);

    let v = verify_run_chain(&p.issued.chain_pem, &anchors(&pki), now).unwrap();
    let e = v.evidence();
    assert_eq!(e.program, run.program);
    assert_eq!(e.platform, platform);
    assert_eq!(e.compartment, compartment);
    assert_eq!(e.run.id, 12);
    assert_eq!(e.run.started_at, run.started_at);
    assert_eq!(e.run.not_after.secs(), now + 300);
    assert_eq!(e.launcher.version, run.launcher_version);
    assert_eq!(e.launcher.attestation_key_id, pki.authority.key_id());
    assert_eq!(e, &p.issued.evidence);
    assert_eq!(v.measurement(), run.program.executable_sha256);
    assert_eq!(v.fingerprint(), p.issued.fingerprint);
    assert_eq!(v.program_key_id().to_string(), pki::key_id(&p.key).unwrap());
    assert_eq!(v.root().name(), "dev launcher");
    assert_eq!(v.validity()[0].not_before, now - 60);
    assert_eq!(read_evidence(&p.issued.certificate).unwrap(), *e);

    // Extension .4 is the raw hash; .6 the canonical evidence.
    assert_eq!(
        raw_extension(&p.issued.certificate, OID_EXECUTABLE_HASH),
        run.program.executable_sha256.as_bytes()
    );
    let json = raw_extension(&p.issued.certificate, OID_EVIDENCE);
    assert_eq!(Evidence::from_canonical(&json).unwrap(), *e);
    assert_eq!(json, e.to_canonical().unwrap());
}

#[test]
fn openssl_command_line_verifies_and_shows_the_extensions() {
    let pki = LauncherPki::new("dev");
    let p = linux_program(&pki);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let chain = X509::stack_from_pem(p.issued.chain_pem.as_bytes()).unwrap();
    write(d, "run.pem", chain[0].to_pem().unwrap());
    write(d, "attestation.pem", chain[1].to_pem().unwrap());
    write(d, "root.pem", chain[2].to_pem().unwrap());

    let out = openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "attestation.pem",
            "run.pem",
        ],
    );
    assert_eq!(out.trim(), "run.pem: OK");

    let text = openssl(d, &["x509", "-text", "-noout", "-in", "run.pem"]);
    for needle in [
        "Subject: O = integration_process.c, CN = run-12",
        "X509v3 Basic Constraints: critical",
        "CA:FALSE",
        "X509v3 Key Usage: critical",
        "Digital Signature, Key Agreement",
        "1.2.3.4.5.6.7.8.1:",
        "Model: Research Morello SoC r0p0",
        "1.2.3.4.5.6.7.8.2:",
        "CPUs: 4",
        "1.2.3.4.5.6.7.8.3:",
        "Memory:",
        "1.2.3.4.5.6.7.8.4:",
        "1.2.3.4.5.6.7.8.5:",
        "1.2.3.4.5.6.7.8.6:",
        "\"backend\":\"linux-sandbox\"",
        "ASN1 OID: prime256v1",
    ] {
        assert!(
            text.contains(needle),
            "openssl x509 -text lacks {needle:?}:\n{text}"
        );
    }

    // Extension .5 is a plain ECDSA-SHA256 signature over the 32 bytes of .4.
    write(d, "hash.bin", raw_extension(&chain[0], OID_EXECUTABLE_HASH));
    write(d, "hash.sig", raw_extension(&chain[0], OID_HASH_SIGNATURE));
    write(
        d,
        "attestation.pub",
        chain[1].public_key().unwrap().public_key_to_pem().unwrap(),
    );
    let out = openssl(
        d,
        &[
            "dgst",
            "-sha256",
            "-verify",
            "attestation.pub",
            "-signature",
            "hash.sig",
            "hash.bin",
        ],
    );
    assert_eq!(out.trim(), "Verified OK");
}

#[test]
fn flipped_evidence_byte_fails_the_launcher_signature() {
    let pki = LauncherPki::new("dev");
    let p = linux_program(&pki);
    let mut der = p.issued.certificate.to_der().unwrap();
    let at = der.windows(9).position(|w| w == b"morello-1").unwrap();
    der[at] = b'M'; // still valid JSON: only the signature can tell
    let forged = X509::from_der(&der).unwrap();
    let mut chain = String::from_utf8(forged.to_pem().unwrap()).unwrap();
    chain.push_str(pki.authority.chain_pem());

    let err = verify_run_chain(&chain, &anchors(&pki), pki::unix_now()).unwrap_err();
    assert_eq!(err.step(), Some(StepName::Evidence), "{err}");
    assert!(err.to_string().contains("signature"), "{err}");
    assert_eq!(
        read_evidence(&forged).unwrap().platform.hostname,
        "Morello-1"
    );

    let policy = policy(&pki, golden_exe(), &["sales/last"], &[Op::Read]);
    let check = policy.check_certificate(&chain, pki::unix_now(), None);
    assert_eq!(check.decision.failed_step(), Some(StepName::Evidence));
    let proof = check.decision.to_string();
    assert!(proof.contains("3. FAILED Key[launcher "), "{proof}");
    assert!(
        proof.contains("the run certificate's signature does not verify"),
        "{proof}"
    );
    assert!(proof.ends_with("=> DENIED at step 3 (evidence)"), "{proof}");
}

#[test]
fn chain_from_another_root_fails_trusted_root() {
    let trusted = LauncherPki::new("dev");
    let other = LauncherPki::new("other");
    let p = linux_program(&other);
    let now = pki::unix_now();
    // With the other root inside the chain (SELF_SIGNED_CERT_IN_CHAIN) and without it.
    let without_root = {
        let c = X509::stack_from_pem(p.issued.chain_pem.as_bytes()).unwrap();
        let mut s = String::from_utf8(c[0].to_pem().unwrap()).unwrap();
        s.push_str(&String::from_utf8(c[1].to_pem().unwrap()).unwrap());
        s
    };
    for chain in [&p.issued.chain_pem, &without_root] {
        let err = verify_run_chain(chain, &anchors(&trusted), now).unwrap_err();
        assert_eq!(err.step(), Some(StepName::TrustedRoot), "{err}");
        let policy = policy(&trusted, golden_exe(), &["sales/last"], &[Op::Read]);
        let d = policy.check_certificate(chain, now, None).decision;
        assert_eq!(d.failed_step(), Some(StepName::TrustedRoot));
        let f = d.failure().unwrap();
        assert!(f.expected.contains("\"dev launcher\""), "{f:?}");
        assert!(f.found.contains("other root"), "{f:?}");
        assert!(d.to_string().starts_with("1. FAILED Key[root"), "{d}");
    }
    // A policy that trusts nothing says so.
    let empty = Policy::deny_all();
    let d = empty
        .check_certificate(&p.issued.chain_pem, now, None)
        .decision;
    assert_eq!(d.failed_step(), Some(StepName::TrustedRoot));
    assert!(d.failure().unwrap().expected.contains("trusts none"), "{d}");
}

#[test]
fn expired_certificate_fails_freshness() {
    let pki = LauncherPki::new("dev");
    let now = pki::unix_now();
    let (run, platform, compartment) = run_facts(now - 1000, Backend::LinuxSandbox);
    let p = program(&pki, &run, &platform, &compartment);
    let err = verify_run_chain(&p.issued.chain_pem, &anchors(&pki), now).unwrap_err();
    assert_eq!(err.step(), Some(StepName::Freshness), "{err}");
    assert!(
        err.to_string().contains("the run certificate has expired"),
        "{err}"
    );

    let policy = policy(&pki, golden_exe(), &["sales/last"], &[Op::Read]);
    let d = policy
        .check_certificate(&p.issued.chain_pem, now, None)
        .decision;
    assert_eq!(d.failed_step(), Some(StepName::Freshness));
    assert!(d.failure().unwrap().found.contains("640 s later"), "{d}");
    // Not yet valid, too.
    let early = verify_run_chain(
        &linux_program(&pki).issued.chain_pem,
        &anchors(&pki),
        now - 3600,
    );
    assert!(early.unwrap_err().to_string().contains("not yet valid"));
}

#[test]
fn csrs_without_proof_of_possession_or_p256_are_refused() {
    let pki = LauncherPki::new("dev");
    let (run, platform, compartment) = run_facts(pki::unix_now(), Backend::LinuxSandbox);
    let key = pki::generate_p256_key().unwrap();
    let other = pki::generate_p256_key().unwrap();
    let err = issue_run_certificate(
        &pki.authority,
        &csr(&key, &other),
        &run,
        &platform,
        &compartment,
    )
    .unwrap_err();
    assert!(matches!(err, IssueError::Csr(CsrError::Signature)), "{err}");
    assert!(err.to_string().contains("proof of possession"), "{err}");

    let rsa = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let err = issue_run_certificate(
        &pki.authority,
        &csr(&rsa, &rsa),
        &run,
        &platform,
        &compartment,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "CSR key: expected ECDSA P-256, found RSA 2048-bit"
    );
    let ed = openssl::pkey::PKey::generate_ed25519().unwrap();
    let mut b = openssl::x509::X509ReqBuilder::new().unwrap();
    b.set_pubkey(&ed).unwrap();
    b.sign(&ed, openssl::hash::MessageDigest::null()).unwrap();
    let err = issue_run_certificate(
        &pki.authority,
        &b.build().to_der().unwrap(),
        &run,
        &platform,
        &compartment,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "CSR key: expected ECDSA P-256, found Ed25519"
    );
    let err = issue_run_certificate(&pki.authority, b"not a csr", &run, &platform, &compartment)
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("CSR does not parse: expected DER PKCS#10"),
        "{err}"
    );
}

#[test]
fn allow_proof_reads_like_the_protocol() {
    let pki = LauncherPki::new("dev");
    let p = linux_program(&pki);
    let policy = policy(
        &pki,
        golden_exe(),
        &["sales/last", "replies/*"],
        &[Op::Read],
    );
    let now = pki::unix_now();
    let access = Access {
        service: "store",
        op: Op::Read,
        resource: "sales/last",
    };
    let check = policy.check_certificate(&p.issued.chain_pem, now, Some(access));
    let d = &check.decision;
    assert!(d.allowed(), "{d}");
    let text = d.to_string();
    let lines: Vec<&str> = text.lines().collect();
    let root = pki.root.certificate().public_key().unwrap();
    let root_id = &pki::key_id(&root).unwrap()[..8];
    let program_id = &pki::key_id(&p.key).unwrap()[..8];
    let exe = &golden_exe().to_string()[..8];
    assert!(
        lines[0].starts_with(&format!("1. Key[root {root_id}] is-trusted ")),
        "{text}"
    );
    assert!(
        lines[0].ends_with("(policy: trusted_root \"dev launcher\")"),
        "{text}"
    );
    assert!(
        lines[1].contains("is-trusted-for-attestation") && lines[1].ends_with("(chain: verified)")
    );
    assert!(lines[2].contains(&format!(
        "says Key[program {program_id}] speaks-for Measurement[{exe}]"
    )));
    assert!(lines[2].contains("(run-12, valid until "));
    assert!(lines[3].starts_with(
        "4. Compartment[linux-sandbox] is-acceptable: namespaces, no_new_privs, landlock, seccomp, rlimits active"
    ), "{text}");
    assert!(
        lines[4].starts_with("5. Certificate[run-12] is-fresh: issued "),
        "{text}"
    );
    assert!(
        lines[5].starts_with(&format!("6. Measurement[{exe}] is-trusted")),
        "{text}"
    );
    assert!(lines[6].starts_with(&format!(
        "7. Measurement[{exe}] is-trusted-for read store:sales/last"
    )));
    assert!(
        lines[6].ends_with("(policy: allow \"case study\")"),
        "{text}"
    );
    assert_eq!(
        lines[7],
        format!("=> Key[program {program_id}] may read store:sales/last")
    );
    // Without an access, a certificate check stops after the measurement.
    let d = policy
        .check_certificate(&p.issued.chain_pem, now, None)
        .decision;
    assert!(d.allowed() && d.steps().len() == 6, "{d}");
    assert!(check.certificate.is_some());
}

#[test]
fn hash_not_in_the_allow_list_is_shown() {
    let pki = LauncherPki::new("dev");
    let p = linux_program(&pki);
    let other = Sha256Hex::digest(b"another program");
    let policy = policy(&pki, other, &["sales/last"], &[Op::Read]);
    let d = policy
        .check_certificate(&p.issued.chain_pem, pki::unix_now(), None)
        .decision;
    assert_eq!(d.failed_step(), Some(StepName::Measurement));
    let f = d.failure().unwrap();
    assert!(
        f.found.contains(&golden_exe().to_string()),
        "the full hash found: {f:?}"
    );
    assert!(
        f.expected
            .contains(&format!("executable {}…", &other.to_string()[..8])),
        "{f:?}"
    );
    assert!(
        f.expected.starts_with("one of 1 allowed measurements"),
        "{f:?}"
    );
    let text = d.to_string();
    assert!(
        text.contains(&format!(
            "6. FAILED Measurement[{}] is-trusted: no allow rule names executable",
            &golden_exe().to_string()[..8]
        )),
        "{text}"
    );
    assert!(text.ends_with("=> DENIED at step 6 (measurement)"));
}

#[test]
fn empty_allow_list_allows_nothing() {
    let pki = LauncherPki::new("dev");
    let p = linux_program(&pki);
    let policy = policy(&pki, golden_exe(), &[], &[]);
    assert!(policy.document().allow.is_empty());
    let d = policy
        .check_certificate(&p.issued.chain_pem, pki::unix_now(), None)
        .decision;
    assert_eq!(d.failed_step(), Some(StepName::Measurement));
    assert!(
        d.failure()
            .unwrap()
            .expected
            .starts_with("one of 0 allowed measurements"),
        "{d}"
    );
}

#[test]
fn degraded_and_insecure_runs_under_a_strict_policy() {
    let pki = LauncherPki::new("dev");
    let now = pki::unix_now();
    let strict = policy(&pki, golden_exe(), &["sales/last"], &[Op::Read]);

    let (run, platform, mut compartment) = run_facts(now, Backend::LinuxSandbox);
    compartment.layers[2].status = LayerStatus::Unavailable;
    compartment.layers[2].detail = "kernel without Landlock".into();
    compartment.degraded = vec!["landlock".into()];
    let degraded = program(&pki, &run, &platform, &compartment);
    let d = strict
        .check_certificate(&degraded.issued.chain_pem, now, None)
        .decision;
    assert_eq!(d.failed_step(), Some(StepName::Compartment), "{d}");
    assert_eq!(
        d.failure().unwrap().found,
        "landlock unavailable (kernel without Landlock)"
    );

    // A policy naming the layer accepts it, and says so.
    let mut doc = strict.document().clone();
    doc.allow_degraded = vec!["landlock".into()];
    let lenient = Policy::from_document(doc, None).unwrap();
    let d = lenient
        .check_certificate(&degraded.issued.chain_pem, now, None)
        .decision;
    assert!(d.allowed(), "{d}");
    assert!(
        d.steps()[3].statement.ends_with("; degraded: landlock"),
        "{d}"
    );

    // No compartment at all.
    let (run, platform, mut compartment) = run_facts(now, Backend::LinuxSandbox);
    compartment.backend = Backend::None;
    compartment.insecure = true;
    compartment.layers.clear();
    let insecure = program(&pki, &run, &platform, &compartment);
    let d = strict
        .check_certificate(&insecure.issued.chain_pem, now, None)
        .decision;
    assert_eq!(d.failed_step(), Some(StepName::Compartment));
    assert!(
        d.failure()
            .unwrap()
            .found
            .contains("--insecure-no-compartment"),
        "{d}"
    );

    // A backend the policy does not list.
    let (run, platform, compartment) = run_facts(now, Backend::CheriC18n);
    let cheri = program(&pki, &run, &platform, &compartment);
    let mut doc = strict.document().clone();
    doc.allowed_backends = vec![Backend::LinuxSandbox];
    let linux_only = Policy::from_document(doc, None).unwrap();
    let d = linux_only
        .check_certificate(&cheri.issued.chain_pem, now, None)
        .decision;
    assert_eq!(d.failed_step(), Some(StepName::Compartment));
    assert_eq!(d.failure().unwrap().found, "cheri-c18n");
    assert!(
        strict
            .check_certificate(&cheri.issued.chain_pem, now, None)
            .decision
            .allowed()
    );
}

#[test]
fn resource_not_granted_fails_permission() {
    let pki = LauncherPki::new("dev");
    let p = linux_program(&pki);
    let policy = policy(&pki, golden_exe(), &["sales/last"], &[Op::Read]);
    let now = pki::unix_now();
    for (op, resource, shown) in [
        (Op::Write, "sales/last", "sales/last"),
        (Op::Read, "customers/all", "customers/…"),
    ] {
        let access = Access {
            service: "store",
            op,
            resource,
        };
        let d = policy
            .check_certificate(&p.issued.chain_pem, now, Some(access))
            .decision;
        assert_eq!(d.failed_step(), Some(StepName::Permission), "{d}");
        let text = d.to_string();
        assert!(
            text.contains(&format!(
                "7. FAILED Measurement[{}] is-trusted-for {op} store:{shown}",
                &golden_exe().to_string()[..8]
            )),
            "{text}"
        );
        assert!(
            text.contains("found allow \"case study\" grants read on sales/last"),
            "{text}"
        );
        assert!(
            !text.contains("customers/all"),
            "identifiers stay out of proofs"
        );
    }
}

#[test]
fn certificate_older_than_the_policy_allows() {
    let pki = LauncherPki::new("dev");
    let now = pki::unix_now();
    let (mut run, platform, compartment) = run_facts(now - 100, Backend::LinuxSandbox);
    run.time_limit_secs = 3600;
    let p = program(&pki, &run, &platform, &compartment);
    let mut doc: PolicyDocument = policy(&pki, golden_exe(), &["sales/last"], &[Op::Read])
        .document()
        .clone();
    doc.max_certificate_age_s = 30;
    let d = Policy::from_document(doc, None)
        .unwrap()
        .check_certificate(&p.issued.chain_pem, now, None)
        .decision;
    assert_eq!(d.failed_step(), Some(StepName::Freshness));
    assert!(
        d.failure().unwrap().found.starts_with("issued 100 s ago"),
        "{d}"
    );
}

#[test]
fn malformed_chains() {
    let pki = LauncherPki::new("dev");
    for bad in ["", "junk", &"x".repeat(3 << 20)] {
        assert!(matches!(
            verify_run_chain(bad, &anchors(&pki), 0),
            Err(VerifyError::Malformed(_))
        ));
    }
    // A root alone, or a server certificate, is not a run certificate chain.
    let err = verify_run_chain(&pki.root_pem(), &anchors(&pki), pki::unix_now()).unwrap_err();
    assert_eq!(err.step(), Some(StepName::Chain), "{err}");
    let err =
        verify_run_chain(pki.authority.chain_pem(), &anchors(&pki), pki::unix_now()).unwrap_err();
    assert_eq!(err.step(), Some(StepName::Chain), "{err}");
    assert!(err.to_string().contains("a chain of 2"), "{err}");
}

#[test]
fn a_source_rule_holds_only_for_the_services_anchor_it_names() {
    // Whoever asks for a build picks the services anchor compiled in: the
    // approved source built to trust another CA must not pass as approved.
    let pki = LauncherPki::new("dev");
    let p = linux_program(&pki);
    let now = pki::unix_now();
    let h = |s: &str| Sha256Hex::digest(s.as_bytes());
    // The golden program's source and profile, for reading `sales/last`.
    let source_rule = |anchor: Option<Sha256Hex>| {
        let mut rule = AllowRule::for_executable(
            "by source",
            h("x"),
            vec!["*".parse().unwrap()],
            vec![Op::Read],
        );
        rule.executable_sha256 = None;
        rule.source_sha256 = Some(h("source"));
        rule.toolchain_profile = Some("morello-purecap".into());
        rule.services_anchor_sha256 = anchor;
        rule
    };
    let with_anchor = |anchor: Sha256Hex| {
        let mut doc = PolicyDocument::default();
        doc.add_trusted_root_pem("dev launcher", &pki.root_pem())
            .unwrap();
        doc.add_allow_rule(source_rule(Some(anchor))).unwrap();
        Policy::from_document(doc, None).unwrap()
    };
    let access = Access {
        service: "store",
        op: Op::Read,
        resource: "sales/last",
    };
    let d = with_anchor(h("anchor"))
        .check_certificate(&p.issued.chain_pem, now, Some(access))
        .decision;
    assert!(d.allowed(), "{d}");

    let d = with_anchor(h("another anchor"))
        .check_certificate(&p.issued.chain_pem, now, Some(access))
        .decision;
    assert_eq!(d.failed_step(), Some(StepName::Measurement), "{d}");
    let f = d.failure().unwrap();
    assert!(
        f.found
            .contains(&format!("services anchor {}", h("anchor"))),
        "{f:?}"
    );

    // A source rule that does not pin the anchor is refused when written.
    let err = PolicyDocument::default()
        .add_allow_rule(source_rule(None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs services_anchor_sha256"), "{err}");
}
