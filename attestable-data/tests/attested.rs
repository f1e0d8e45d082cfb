//! Attested requests between a stand-in program and a service's verifier:
//! the permitted path and each refusal, with the step its proof names.

mod common;

use std::sync::Arc;

use attestable_data::attested::{
    AttestedHttpRequest, Rejection, RequestBody, ServiceIdentity, ServiceVerifier, open_response,
    seal_request, verify_service_chain,
};
use attestable_data::envelope;
use attestable_data::evidence::{Backend, LayerStatus};
use attestable_data::pki::{self, CertificateAuthority, ServerCertSpec};
use attestable_data::policy::{Op, Policy};
use attestable_data::proof::StepName;
use common::*;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

struct Service {
    ca: CertificateAuthority,
    key: PKey<Private>,
    cert: X509,
}

fn services_ca() -> CertificateAuthority {
    CertificateAuthority::create_root("services CA", Some("case study"), 30).unwrap()
}

fn service(ca: CertificateAuthority, name: &str) -> Service {
    let key = pki::generate_p256_key().unwrap();
    let spec = ServerCertSpec {
        common_name: name.into(),
        organization: None,
        dns_names: vec!["localhost".into()],
        ip_addresses: vec!["127.0.0.1".parse().unwrap()],
        days: 30,
    };
    let cert = ca.issue_server_cert(&key, &spec).unwrap();
    Service { ca, key, cert }
}

fn verifier(s: &Service, name: &str, policy: Policy, started_at: i64) -> ServiceVerifier {
    let identity = ServiceIdentity {
        name: name.into(),
        key: s.key.clone(),
        certificate: s.cert.clone(),
    };
    ServiceVerifier::with_start_time(identity, policy, started_at)
}

struct World {
    launcher: LauncherPki,
    store: Service,
    verifier: ServiceVerifier,
    program: Program,
    now: i64,
}

fn world() -> World {
    let launcher = LauncherPki::new("dev");
    let store = service(services_ca(), "store");
    let policy = policy(
        &launcher,
        golden_exe(),
        &["sales/last", "replies/*"],
        &[Op::Read],
    );
    let now = pki::unix_now();
    let verifier = verifier(&store, "store", policy, now - 30);
    let program = linux_program(&launcher);
    World {
        launcher,
        store,
        verifier,
        program,
        now,
    }
}

impl World {
    fn seal(&self, body: &RequestBody) -> Vec<u8> {
        seal_request(
            &self.program.key,
            &self.program.issued.certificate,
            &self.store.cert,
            body,
        )
        .unwrap()
    }

    fn body(&self, op: Op, resource: &str) -> RequestBody {
        RequestBody::new(op, "store", resource, b"", self.now)
    }

    fn submit(
        &self,
        body: &RequestBody,
        op: Op,
    ) -> Result<attestable_data::attested::VerifiedRequest, Rejection> {
        self.verifier.verify_at(
            &self.program.issued.chain_pem,
            &self.seal(body),
            op,
            self.now,
        )
    }
}

fn denied_at(r: Result<impl std::fmt::Debug, Rejection>) -> (StepName, String) {
    match r {
        Err(Rejection::Denied(d)) => {
            assert_eq!(Rejection::Denied(d.clone()).status(), 403);
            (d.failed_step().unwrap(), d.to_string())
        }
        other => panic!("expected a denial, found {other:?}"),
    }
}

fn bad_request(r: Result<impl std::fmt::Debug, Rejection>) -> String {
    match r {
        Err(Rejection::BadRequest(m)) => m,
        other => panic!("expected a bad request, found {other:?}"),
    }
}

#[test]
fn permitted_read_round_trip() {
    let w = world();
    let body = w.body(Op::Read, "sales/last");
    let ok = w.submit(&body, Op::Read).unwrap();
    assert!(ok.decision.allowed());
    assert_eq!(ok.body, body);
    assert!(ok.payload.is_empty());
    assert_eq!(ok.certificate.fingerprint(), w.program.issued.fingerprint);
    let text = ok.decision.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 10, "{text}");
    assert!(
        lines[5].starts_with("6. Key[program ")
            && lines[5].contains("says Request[read store:sales/last]"),
        "{text}"
    );
    assert!(lines[5].ends_with("(signature)"));
    assert!(
        lines[6].starts_with(&format!(
            "7. Request[nonce {}] is-fresh: first use, signed 0 s ago",
            &body.nonce[..8]
        )),
        "{text}"
    );
    assert!(lines[6].ends_with("(replay check, skew 60 s)"));
    assert!(lines[8].contains("is-trusted-for read store:sales/last"));
    assert!(lines[9].ends_with("may read store:sales/last"));

    let answer = br#"{"sale_id":42,"total":"189.90"}"#;
    let response = w.verifier.seal_response(&ok, answer).unwrap();
    let opened = open_response(
        &w.program.key,
        &w.program.issued.certificate,
        &w.store.cert,
        &body,
        &response,
    )
    .unwrap();
    assert_eq!(opened, answer);

    // The real clock works too.
    let body = RequestBody::new(
        Op::Read,
        "store",
        "replies/+555599880151",
        b"{}",
        pki::unix_now(),
    );
    let ok = w
        .verifier
        .verify(&w.program.issued.chain_pem, &w.seal(&body), Op::Read)
        .unwrap();
    assert_eq!(ok.payload, b"{}");
    assert!(
        ok.decision.to_string().contains("store:replies/…"),
        "identifiers stay out of proofs"
    );
    assert!(!ok.decision.to_string().contains("555599880151"));
}

#[test]
fn http_bodies_decode() {
    let w = world();
    let body = w.body(Op::Read, "sales/last");
    let http = AttestedHttpRequest {
        certificate_chain: w.program.issued.chain_pem.clone(),
        request: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, w.seal(&body)),
    };
    let json = serde_json::to_string(&http).unwrap();
    let back: AttestedHttpRequest = serde_json::from_str(&json).unwrap();
    let der = back.envelope().unwrap();
    assert!(
        w.verifier
            .verify_at(&back.certificate_chain, &der, Op::Read, w.now)
            .is_ok()
    );
    let bad = AttestedHttpRequest {
        request: "%%%".into(),
        ..back
    };
    assert_eq!(bad.envelope().unwrap_err().status(), 400);
    assert!(
        serde_json::from_str::<AttestedHttpRequest>(
            r#"{"certificate_chain":"","request":"","x":1}"#
        )
        .is_err()
    );
}

#[test]
fn replayed_nonce_is_refused() {
    let w = world();
    let body = w.body(Op::Read, "sales/last");
    let der = w.seal(&body);
    assert!(
        w.verifier
            .verify_at(&w.program.issued.chain_pem, &der, Op::Read, w.now)
            .is_ok()
    );
    let (step, proof) =
        denied_at(
            w.verifier
                .verify_at(&w.program.issued.chain_pem, &der, Op::Read, w.now + 1),
        );
    assert_eq!(step, StepName::Replay, "{proof}");
    assert!(
        proof.contains(&format!("found nonce {} again", body.nonce)),
        "{proof}"
    );
    // Same nonce, newly sealed: still a replay.
    let (step, _) = denied_at(w.submit(&body, Op::Read));
    assert_eq!(step, StepName::Replay);
}

#[test]
fn stale_future_and_pre_start_timestamps_are_refused() {
    let w = world();
    for (offset, needle) in [(-61, "61 s ago"), (61, "61 s in the future")] {
        let mut body = w.body(Op::Read, "sales/last");
        body.timestamp = w.now + offset;
        let (step, proof) = denied_at(w.submit(&body, Op::Read));
        assert_eq!(step, StepName::Replay, "{proof}");
        assert!(
            proof.contains("outside the allowed skew") && proof.contains(needle),
            "{proof}"
        );
    }
    for extreme in [i64::MIN, i64::MAX] {
        let mut body = w.body(Op::Read, "sales/last");
        body.timestamp = extreme;
        let (step, _) = denied_at(w.submit(&body, Op::Read));
        assert_eq!(step, StepName::Replay);
    }
    let mut body = w.body(Op::Read, "sales/last");
    body.timestamp = w.now - 40; // within the skew, but before the service started (now - 30)
    let (step, proof) = denied_at(w.submit(&body, Op::Read));
    assert_eq!(step, StepName::Replay);
    assert!(proof.contains("before the service started"), "{proof}");
}

#[test]
fn request_signed_by_another_key_is_refused() {
    let w = world();
    let impostor = linux_program(&w.launcher);
    let body = w.body(Op::Read, "sales/last");
    // Signed by another run's key, sent with this run's chain.
    let der = seal_request(
        &impostor.key,
        &impostor.issued.certificate,
        &w.store.cert,
        &body,
    )
    .unwrap();
    let (step, proof) =
        denied_at(
            w.verifier
                .verify_at(&w.program.issued.chain_pem, &der, Op::Read, w.now),
        );
    assert_eq!(step, StepName::Signature, "{proof}");
    assert!(proof.contains("6. FAILED Key[program"), "{proof}");
    assert!(
        proof.contains("not signed by the run certificate's key"),
        "{proof}"
    );
}

#[test]
fn request_encrypted_to_another_service_is_a_bad_request() {
    let w = world();
    let taxi = service(services_ca(), "taxi");
    let body = w.body(Op::Read, "sales/last");
    let der = seal_request(
        &w.program.key,
        &w.program.issued.certificate,
        &taxi.cert,
        &body,
    )
    .unwrap();
    let m = bad_request(
        w.verifier
            .verify_at(&w.program.issued.chain_pem, &der, Op::Read, w.now),
    );
    assert!(m.contains("not for service \"store\""), "{m}");
}

#[test]
fn malformed_requests_are_bad_requests() {
    let w = world();
    let chain = &w.program.issued.chain_pem;
    let good = w.seal(&w.body(Op::Read, "sales/last"));
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        ("chain", "not pem".into(), good.clone()),
        ("truncated", chain.clone(), good[..good.len() / 2].to_vec()),
        ("garbage", chain.clone(), b"garbage".to_vec()),
    ];
    for (what, chain, der) in cases {
        let r = w.verifier.verify_at(&chain, &der, Op::Read, w.now);
        assert_eq!(r.as_ref().map(|_| ()).unwrap_err().status(), 400, "{what}");
        let body = r.unwrap_err().error_body();
        assert_eq!(body["error"]["code"], "bad_request", "{what}");
    }
    // Signed and encrypted properly, but the body is wrong.
    let seal_raw = |json: &[u8]| {
        let signed = envelope::sign(&w.program.key, &w.program.issued.certificate, json).unwrap();
        envelope::encrypt_to(&w.store.cert, &signed).unwrap()
    };
    let body = w.body(Op::Read, "sales/last");
    let mut cases = vec![
        (b"not json".to_vec(), "request body"),
        (
            serde_json::to_vec(&RequestBody {
                v: 2,
                ..body.clone()
            })
            .unwrap(),
            "expected v 1",
        ),
        (
            serde_json::to_vec(&RequestBody {
                op: Op::Write,
                ..body.clone()
            })
            .unwrap(),
            "expected op read",
        ),
        (
            serde_json::to_vec(&RequestBody {
                service: "taxi".into(),
                ..body.clone()
            })
            .unwrap(),
            "expected service \"store\"",
        ),
        (
            serde_json::to_vec(&RequestBody {
                nonce: "XYZ".into(),
                ..body.clone()
            })
            .unwrap(),
            "32 lowercase hex",
        ),
        (
            serde_json::to_vec(&RequestBody {
                resource: "../etc".into(),
                ..body.clone()
            })
            .unwrap(),
            "resource",
        ),
        (
            serde_json::to_vec(&RequestBody {
                payload: "!!".into(),
                ..body.clone()
            })
            .unwrap(),
            "base64",
        ),
    ];
    let mut dup = serde_json::to_string(&body).unwrap();
    dup.insert_str(1, "\"v\":1,");
    cases.push((dup.into_bytes(), "duplicate field"));
    for (json, needle) in cases {
        let m = bad_request(w.verifier.verify_at(
            &w.program.issued.chain_pem,
            &seal_raw(&json),
            Op::Read,
            w.now,
        ));
        assert!(m.contains(needle), "{needle}: {m}");
    }
}

#[test]
fn trust_failures_are_denials_with_their_step() {
    let w = world();
    // A resource the measurement may not use, and an operation it may not do.
    let (step, proof) = denied_at(w.submit(&w.body(Op::Read, "customers/7"), Op::Read));
    assert_eq!(step, StepName::Permission, "{proof}");
    assert!(
        proof.contains("is-trusted-for read store:customers/…"),
        "{proof}"
    );
    let (step, _) = denied_at(w.submit(&w.body(Op::Write, "sales/last"), Op::Write));
    assert_eq!(step, StepName::Permission);

    // A degraded run under the default (strict) policy.
    let (run, platform, mut compartment) = run_facts(w.now, Backend::LinuxSandbox);
    compartment.layers[3].status = LayerStatus::Disabled;
    compartment.degraded = vec!["seccomp".into()];
    let degraded = program(&w.launcher, &run, &platform, &compartment);
    let body = w.body(Op::Read, "sales/last");
    let der = seal_request(
        &degraded.key,
        &degraded.issued.certificate,
        &w.store.cert,
        &body,
    )
    .unwrap();
    let (step, proof) =
        denied_at(
            w.verifier
                .verify_at(&degraded.issued.chain_pem, &der, Op::Read, w.now),
        );
    assert_eq!(step, StepName::Compartment, "{proof}");
    assert!(proof.contains("found seccomp disabled"), "{proof}");

    // An unknown measurement.
    let (mut run, platform, compartment) = run_facts(w.now, Backend::LinuxSandbox);
    run.program.executable_sha256 = attestable_data::encoding::Sha256Hex::digest(b"something else");
    let unknown = program(&w.launcher, &run, &platform, &compartment);
    let der = seal_request(
        &unknown.key,
        &unknown.issued.certificate,
        &w.store.cert,
        &body,
    )
    .unwrap();
    let (step, proof) =
        denied_at(
            w.verifier
                .verify_at(&unknown.issued.chain_pem, &der, Op::Read, w.now),
        );
    assert_eq!(step, StepName::Measurement, "{proof}");
    assert!(
        proof.contains(&run.program.executable_sha256.to_string()),
        "{proof}"
    );

    // A chain from another launcher's root.
    let other = linux_program(&LauncherPki::new("other"));
    let der = seal_request(&other.key, &other.issued.certificate, &w.store.cert, &body).unwrap();
    let r = w
        .verifier
        .verify_at(&other.issued.chain_pem, &der, Op::Read, w.now);
    let json = r.as_ref().map(|_| ()).unwrap_err().error_body();
    assert_eq!(json["error"]["code"], "denied");
    assert_eq!(json["error"]["failed_step"], "trusted_root");
    assert!(
        json["error"]["proof"]
            .as_str()
            .unwrap()
            .ends_with("=> DENIED at step 1 (trusted_root)")
    );
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("denied at step 1 (trusted_root)")
    );
}

#[test]
fn policy_reload_takes_effect_and_forgets_verified_chains() {
    let w = world();
    let (step, _) = denied_at(w.submit(&w.body(Op::Write, "trips"), Op::Write));
    assert_eq!(step, StepName::Permission);
    w.verifier
        .set_policy(policy(&w.launcher, golden_exe(), &["trips"], &[Op::Write]));
    assert!(w.submit(&w.body(Op::Write, "trips"), Op::Write).is_ok());
    // A policy that no longer trusts this launcher's root: the cached chain is not reused.
    w.verifier.set_policy(policy(
        &LauncherPki::new("other"),
        golden_exe(),
        &["trips"],
        &[Op::Write],
    ));
    let (step, _) = denied_at(w.submit(&w.body(Op::Write, "trips"), Op::Write));
    assert_eq!(step, StepName::TrustedRoot);
}

#[test]
fn an_expired_run_is_refused_even_with_a_cached_chain() {
    let w = world();
    assert!(w.submit(&w.body(Op::Read, "sales/last"), Op::Read).is_ok());
    let later = w.now + 300 + 61;
    let mut body = w.body(Op::Read, "sales/last");
    body.timestamp = later;
    let r = w
        .verifier
        .verify_at(&w.program.issued.chain_pem, &w.seal(&body), Op::Read, later);
    let (step, proof) = denied_at(r);
    assert_eq!(step, StepName::Freshness, "{proof}");
}

#[test]
fn program_rejects_altered_misdirected_or_foreign_responses() {
    let w = world();
    let body = w.body(Op::Read, "sales/last");
    let ok = w.submit(&body, Op::Read).unwrap();
    let response = w.verifier.seal_response(&ok, b"data").unwrap();
    let open = |request: &RequestBody, der: &[u8], service_cert: &X509| {
        open_response(
            &w.program.key,
            &w.program.issued.certificate,
            service_cert,
            request,
            der,
        )
    };
    let mut flipped = response.clone();
    let i = flipped.len() - 40;
    flipped[i] ^= 0x01;
    assert!(open(&body, &flipped, &w.store.cert).is_err(), "altered");
    // A response to an earlier request (another nonce) is refused.
    let other = w.body(Op::Read, "sales/last");
    let err = open(&other, &response, &w.store.cert).unwrap_err();
    assert!(err.to_string().contains("nonce"), "{err}");
    // A response signed by another service is refused.
    let taxi = service(services_ca(), "taxi");
    let err = open(&body, &response, &taxi.cert).unwrap_err();
    assert!(
        err.to_string().contains("signature does not verify"),
        "{err}"
    );
}

#[test]
fn programs_check_the_service_chain_against_their_anchor() {
    let w = world();
    let anchor = w.store.ca.certificate().clone();
    let mut chain = String::from_utf8(w.store.cert.to_pem().unwrap()).unwrap();
    chain.push_str(&String::from_utf8(anchor.to_pem().unwrap()).unwrap());
    let leaf = verify_service_chain(&chain, &anchor, "store", w.now).unwrap();
    assert_eq!(leaf.to_der().unwrap(), w.store.cert.to_der().unwrap());
    let err = verify_service_chain(&chain, &anchor, "taxi", w.now).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected common name \"taxi\", found \"store\""),
        "{err}"
    );
    let stranger = services_ca();
    let err = verify_service_chain(&chain, stranger.certificate(), "store", w.now).unwrap_err();
    assert!(err.to_string().contains("compiled-in anchor"), "{err}");
    assert!(
        verify_service_chain(&chain, &anchor, "store", w.now + 40 * 86_400).is_err(),
        "expired"
    );
}

#[test]
fn one_verifier_serves_many_threads() {
    fn thread_safe<T: Send + Sync>() {}
    thread_safe::<ServiceVerifier>();
    let w = Arc::new(world());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let w = w.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let body = w.body(Op::Read, "sales/last");
                    let ok = w.submit(&body, Op::Read).unwrap();
                    let response = w.verifier.seal_response(&ok, b"x").unwrap();
                    let opened = open_response(
                        &w.program.key,
                        &w.program.issued.certificate,
                        &w.store.cert,
                        &body,
                        &response,
                    )
                    .unwrap();
                    assert_eq!(opened, b"x");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}
