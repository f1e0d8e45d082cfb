//! Times the certificate and request paths of this crate (no assertions):
//!
//! ```text
//! cargo run --release -p attestable-data --example issue_bench [-- ITERATIONS]
//! ```
//!
//! - issue: CSR check + evidence + signing of a run certificate (target: median ≤ 1 ms);
//! - verify chain: a full offline verification of a run certificate chain;
//! - service verify: `ServiceVerifier::verify_at` with its chain cache warm, then
//!   `seal_response` (the service's share of a brokered read);
//! - program seal + open: the program's share (`seal_request`, `open_response`).

use std::time::{Duration, Instant};

use attestable_data::attested::{
    RequestBody, ServiceIdentity, ServiceVerifier, open_response, seal_request,
};
use attestable_data::certificate::{AttestationAuthority, RunFacts, issue_run_certificate};
use attestable_data::encoding::UnixTime;
use attestable_data::evidence::Evidence;
use attestable_data::pki::{self, CertificateAuthority, ServerCertSpec};
use attestable_data::policy::{AllowRule, Op, Policy, PolicyDocument};
use attestable_data::verify::{TrustAnchors, verify_run_chain};
use openssl::hash::MessageDigest;
use openssl::x509::X509ReqBuilder;

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "{name:<28} n={:<6} median {:>8.1} µs   p90 {:>8.1} µs   min {:>8.1} µs",
        samples.len(),
        at(0.5).as_secs_f64() * 1e6,
        at(0.9).as_secs_f64() * 1e6,
        samples[0].as_secs_f64() * 1e6,
    );
}

fn time<T>(n: usize, mut f: impl FnMut(usize) -> T) -> Vec<Duration> {
    (0..n)
        .map(|i| {
            let start = Instant::now();
            std::hint::black_box(f(i));
            start.elapsed()
        })
        .collect()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let golden =
        Evidence::from_canonical(include_bytes!("../../docs/vectors/evidence-golden.json"))
            .expect("golden evidence");

    let root = CertificateAuthority::create_root("bench root", None, 30).unwrap();
    let authority = AttestationAuthority::create(&root, "bench attestation", 30).unwrap();
    let key = pki::generate_p256_key().unwrap();
    let mut req = X509ReqBuilder::new().unwrap();
    req.set_pubkey(&key).unwrap();
    req.sign(&key, MessageDigest::sha256()).unwrap();
    let csr = req.build().to_der().unwrap();
    let now = pki::unix_now();
    let run = RunFacts {
        program: golden.program.clone(),
        run_id: 1,
        started_at: UnixTime(now),
        time_limit_secs: 600,
        launcher_version: "bench".into(),
    };

    let issue = |_| {
        issue_run_certificate(
            &authority,
            &csr,
            &run,
            &golden.platform,
            &golden.compartment,
        )
        .unwrap()
    };
    let _ = time(n / 10, issue); // warm up
    report("issue run certificate", time(n, issue));

    let issued = issue(0);
    let anchors = TrustAnchors::new([("bench".to_string(), root.certificate().clone())]).unwrap();
    report(
        "verify chain (uncached)",
        time(n, |_| {
            verify_run_chain(&issued.chain_pem, &anchors, now).unwrap()
        }),
    );

    let services = CertificateAuthority::create_root("services", None, 30).unwrap();
    let service_key = pki::generate_p256_key().unwrap();
    let spec = ServerCertSpec {
        common_name: "store".into(),
        organization: None,
        dns_names: vec![],
        ip_addresses: vec![],
        days: 30,
    };
    let service_cert = services.issue_server_cert(&service_key, &spec).unwrap();
    let mut doc = PolicyDocument::default();
    doc.add_trusted_root_pem(
        "bench",
        &String::from_utf8(root.certificate().to_pem().unwrap()).unwrap(),
    )
    .unwrap();
    doc.add_allow_rule(AllowRule::for_executable(
        "bench",
        golden.program.executable_sha256,
        vec!["sales/last".parse().unwrap()],
        vec![Op::Read],
    ))
    .unwrap();
    let verifier = ServiceVerifier::with_start_time(
        ServiceIdentity {
            name: "store".into(),
            key: service_key,
            certificate: service_cert.clone(),
        },
        Policy::from_document(doc, None).unwrap(),
        now - 1,
    );

    let bodies: Vec<RequestBody> = (0..n + 1)
        .map(|_| RequestBody::new(Op::Read, "store", "sales/last", b"", now))
        .collect();
    let sealed: Vec<Vec<u8>> = bodies
        .iter()
        .map(|b| seal_request(&key, &issued.certificate, &service_cert, b).unwrap())
        .collect();
    // The first request fills the chain cache.
    verifier
        .verify_at(&issued.chain_pem, &sealed[n], Op::Read, now)
        .unwrap();
    let mut responses = Vec::with_capacity(n);
    let samples = time(n, |i| {
        let ok = verifier
            .verify_at(&issued.chain_pem, &sealed[i], Op::Read, now)
            .unwrap();
        responses.push(
            verifier
                .seal_response(&ok, b"{\"total\":\"189.90\"}")
                .unwrap(),
        );
    });
    report("service verify + seal", samples);

    report(
        "program seal + open",
        time(n, |i| {
            let body = RequestBody::new(Op::Read, "store", "sales/last", b"", now);
            let der = seal_request(&key, &issued.certificate, &service_cert, &body).unwrap();
            std::hint::black_box(der);
            open_response(
                &key,
                &issued.certificate,
                &service_cert,
                &bodies[i],
                &responses[i],
            )
            .unwrap()
        }),
    );
}
