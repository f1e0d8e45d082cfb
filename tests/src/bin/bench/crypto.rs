//! Certificate issue and the envelope operations, in Rust (attestable-data)
//! and in the C SDK (`integration-process/bench/bench_envelope.c`), each
//! beside the bare primitive it wraps.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use attestable_data::certificate::{AttestationAuthority, RunFacts, issue_run_certificate};
use attestable_data::encoding::UnixTime;
use attestable_data::envelope;
use attestable_data::evidence::Evidence;
use attestable_data::pki::{self, CertificateAuthority};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::derive::Deriver;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::{Signer, Verifier};
use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};
use openssl::x509::{X509, X509Builder, X509NameBuilder, X509ReqBuilder};

use crate::stats::{Figure, Summary, Table};

const SECTION: &str = "2. Certificate issue and envelope operations (in process, one core)";

/// Size of the content sealed and signed: a typical request body.
const PAYLOAD_BYTES: usize = 512;

fn time<T>(n: usize, mut f: impl FnMut() -> T) -> Vec<Duration> {
    for _ in 0..n / 10 {
        std::hint::black_box(f());
    }
    (0..n)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .collect()
}

fn lat(samples: &[Duration]) -> Figure {
    Figure::Latency(Summary::of(samples))
}

/// A throwaway P-256 certificate for `key`, signed by `issuer_key`: what a
/// CA does without any check or evidence.
fn plain_certificate(key: &PKey<Private>, issuer_key: &PKey<Private>) -> anyhow::Result<X509> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", "run-1")?;
    let name = name.build();
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(1)?);
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    b.sign(issuer_key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// Measures section 2; returns the cryptographic floor of one brokered call
/// (ms): the program's seal and open (C SDK) plus the service's decrypt,
/// verify, sign and encrypt (Rust), medians.
pub fn certificate_and_envelopes(
    table: &mut Table,
    n: usize,
    c_bench: &Path,
) -> anyhow::Result<f64> {
    let golden = Evidence::from_canonical(include_bytes!(
        "../../../../docs/vectors/evidence-golden.json"
    ))
    .context("the golden evidence")?;
    let root = CertificateAuthority::create_root("bench root", None, 30)?;
    let authority = AttestationAuthority::create(&root, "bench attestation", 30)?;
    let key = pki::generate_p256_key()?;
    let mut req = X509ReqBuilder::new()?;
    req.set_pubkey(&key)?;
    req.sign(&key, MessageDigest::sha256())?;
    let csr = req.build().to_der()?;
    let run = RunFacts {
        program: golden.program.clone(),
        run_id: 1,
        started_at: UnixTime(pki::unix_now()),
        time_limit_secs: 600,
        launcher_version: "bench".into(),
    };
    let issue = time(n, || {
        issue_run_certificate(
            &authority,
            &csr,
            &run,
            &golden.platform,
            &golden.compartment,
        )
        .expect("issuing a run certificate")
    });
    let issuer_key = pki::generate_p256_key()?;
    let plain = time(n, || plain_certificate(&key, &issuer_key).expect("signing"));
    table.against(
        SECTION,
        "certificate issue (CSR check + evidence + signing), Rust",
        lat(&issue),
        "bare X.509 signing, no checks or evidence",
        lat(&plain),
    );

    // The envelopes: a request from the run to the service, as PROTOCOL.md seals it.
    let run_cert = plain_certificate(&key, &issuer_key)?;
    let service_key = pki::generate_p256_key()?;
    let service_cert = plain_certificate(&service_key, &issuer_key)?;
    let body: Vec<u8> = (0..PAYLOAD_BYTES).map(|i| b'a' + (i % 26) as u8).collect();
    let signed = envelope::sign(&key, &run_cert, &body)?;
    let sealed = envelope::encrypt_to(&service_cert, &signed)?;

    let sign = time(n, || envelope::sign(&key, &run_cert, &body).expect("sign"));
    let encrypt = time(n, || {
        envelope::encrypt_to(&service_cert, &signed).expect("encrypt")
    });
    let decrypt = time(n, || {
        envelope::decrypt(&service_key, &service_cert, &sealed).expect("decrypt")
    });
    let verify = time(n, || envelope::verify(&run_cert, &signed).expect("verify"));

    // The primitives under them, without CMS.
    let raw_sign = time(n, || {
        let mut s = Signer::new(MessageDigest::sha256(), &key).expect("signer");
        s.update(&body).expect("update");
        s.sign_to_vec().expect("ECDSA")
    });
    let signature = {
        let mut s = Signer::new(MessageDigest::sha256(), &key)?;
        s.update(&body)?;
        s.sign_to_vec()?
    };
    let raw_verify = time(n, || {
        let mut v = Verifier::new(MessageDigest::sha256(), &key).expect("verifier");
        v.update(&body).expect("update");
        assert!(v.verify(&signature).expect("ECDSA"));
    });
    let service_public = PKey::public_key_from_pem(&service_key.public_key_to_pem()?)?;
    let aes = Cipher::aes_256_gcm();
    let raw_encrypt = time(n, || {
        // Ephemeral-static ECDH, then AES-256-GCM: the floor of encrypt_to.
        let ephemeral = pki::generate_p256_key().expect("ephemeral key");
        let mut d = Deriver::new(&ephemeral).expect("deriver");
        d.set_peer(&service_public).expect("peer");
        let secret = d.derive_to_vec().expect("ECDH");
        let mut tag = [0u8; 16];
        encrypt_aead(aes, &secret, Some(&[0u8; 12]), &[], &signed, &mut tag).expect("AES-GCM")
    });
    let ephemeral = pki::generate_p256_key()?;
    let ephemeral_public = PKey::public_key_from_pem(&ephemeral.public_key_to_pem()?)?;
    let secret = {
        let mut d = Deriver::new(&ephemeral)?;
        d.set_peer(&service_public)?;
        d.derive_to_vec()?
    };
    let mut tag = [0u8; 16];
    let ciphertext = encrypt_aead(aes, &secret, Some(&[0u8; 12]), &[], &signed, &mut tag)?;
    let raw_decrypt = time(n, || {
        let mut d = Deriver::new(&service_key).expect("deriver");
        d.set_peer(&ephemeral_public).expect("peer");
        let secret = d.derive_to_vec().expect("ECDH");
        decrypt_aead(aes, &secret, Some(&[0u8; 12]), &[], &ciphertext, &tag).expect("AES-GCM")
    });

    let rust = [
        (
            "sign",
            sign.clone(),
            "ECDSA P-256 over SHA-256, no CMS",
            raw_sign,
        ),
        (
            "encrypt",
            encrypt.clone(),
            "ephemeral ECDH + AES-256-GCM, no CMS",
            raw_encrypt,
        ),
        (
            "decrypt",
            decrypt.clone(),
            "ECDH + AES-256-GCM, no CMS",
            raw_decrypt,
        ),
        (
            "verify",
            verify.clone(),
            "ECDSA P-256 verify, no CMS",
            raw_verify,
        ),
    ];
    for (op, samples, base, base_samples) in &rust {
        table.against(
            SECTION,
            format!("envelope {op} ({PAYLOAD_BYTES} B), Rust"),
            lat(samples),
            *base,
            lat(base_samples),
        );
    }

    // The same operations in the C SDK, beside Rust's from this run.
    let output = Command::new(c_bench)
        .arg(n.to_string())
        .arg(PAYLOAD_BYTES.to_string())
        .output()
        .with_context(|| format!("running {}", c_bench.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            c_bench.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8(output.stdout)?;
    let c: Vec<(&str, Vec<f64>)> = text
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(name, values)| {
            let samples = values.split(',').filter_map(|v| v.parse().ok()).collect();
            (name, samples)
        })
        .collect();
    let c_op = |name: &str| -> anyhow::Result<Figure> {
        let samples = c
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s)
            .with_context(|| format!("bench_envelope printed no {name} line"))?;
        Ok(Figure::Latency(Summary::of_us(samples)))
    };
    for (op, samples, _, _) in &rust {
        table.against(
            SECTION,
            format!("envelope {op} ({PAYLOAD_BYTES} B), C SDK"),
            c_op(op)?,
            "the same in Rust",
            lat(samples),
        );
    }
    let (c_seal, c_open) = (c_op("sdk-seal-request")?, c_op("sdk-open-response")?);
    let seal_rust: Vec<Duration> = sign.iter().zip(&encrypt).map(|(a, b)| *a + *b).collect();
    let open_rust: Vec<Duration> = decrypt.iter().zip(&verify).map(|(a, b)| *a + *b).collect();
    table.against(
        SECTION,
        "C SDK seal_request (sign + encrypt)",
        c_seal,
        "Rust sign + encrypt",
        lat(&seal_rust),
    );
    table.against(
        SECTION,
        "C SDK open_response (decrypt + verify)",
        c_open,
        "Rust decrypt + verify",
        lat(&open_rust),
    );
    let median = |samples: &[Duration]| Summary::of(samples).median;
    let service = median(&decrypt) + median(&verify) + median(&sign) + median(&encrypt);
    Ok(c_seal.median() + c_open.median() + service)
}
