//! CMS envelopes against the `openssl cms` command line, both ways.

mod common;

use attestable_data::envelope::{self, ContentType, content_type};
use attestable_data::pki::{self, CertificateAuthority, ServerCertSpec};
use common::{openssl, write};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

struct Party {
    key: PKey<Private>,
    cert: X509,
    dir: tempfile::TempDir,
}

/// A P-256 key and certificate, written as key.pem (0600) and cert.pem.
fn party(name: &str) -> Party {
    let ca = CertificateAuthority::create_root("envelope CA", None, 1).unwrap();
    let key = pki::generate_p256_key().unwrap();
    let spec = ServerCertSpec {
        common_name: name.into(),
        organization: None,
        dns_names: vec![],
        ip_addresses: vec![],
        days: 1,
    };
    let cert = ca.issue_server_cert(&key, &spec).unwrap();
    let dir = tempfile::tempdir().unwrap();
    pki::write_private_key(&dir.path().join("key.pem"), &key).unwrap();
    write(dir.path(), "cert.pem", cert.to_pem().unwrap());
    Party { key, cert, dir }
}

const DATA: &[u8] = b"{\"sale_id\":42,\"total\":\"189.90\"}\n\x00\xff binary too";

#[test]
fn openssl_decrypts_what_the_library_encrypted_and_sees_auth_enveloped_gcm_ecdh() {
    let p = party("store");
    let d = p.dir.path();
    write(d, "env.der", envelope::encrypt_to(&p.cert, DATA).unwrap());
    openssl(
        d,
        &[
            "cms",
            "-decrypt",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "env.der",
            "-recip",
            "cert.pem",
            "-inkey",
            "key.pem",
            "-out",
            "plain.bin",
        ],
    );
    assert_eq!(std::fs::read(d.join("plain.bin")).unwrap(), DATA);

    let printed = openssl(
        d,
        &[
            "cms", "-cmsout", "-print", "-inform", "DER", "-in", "env.der",
        ],
    );
    for needle in [
        "contentType: id-smime-ct-authEnvelopedData (1.2.840.113549.1.9.16.1.23)",
        "d.kari:",
        "id-ecPublicKey",
        "algorithm: aes-256-gcm (2.16.840.1.101.3.4.1.46)",
        "dhSinglePass-stdDH-sha256kdf-scheme",
        "id-aes256-wrap",
    ] {
        assert!(
            printed.contains(needle),
            "openssl cms -print lacks {needle:?}:\n{printed}"
        );
    }
}

#[test]
fn library_decrypts_what_openssl_encrypted_with_aes_256_gcm() {
    let p = party("store");
    let d = p.dir.path();
    write(d, "plain.bin", DATA);
    openssl(
        d,
        &[
            "cms",
            "-encrypt",
            "-binary",
            "-aes-256-gcm",
            "-recip",
            "cert.pem",
            "-in",
            "plain.bin",
            "-outform",
            "DER",
            "-out",
            "env.der",
        ],
    );
    let der = std::fs::read(d.join("env.der")).unwrap();
    assert_eq!(content_type(&der), Some(ContentType::AuthEnvelopedData));
    assert_eq!(envelope::decrypt(&p.key, &p.cert, &der).unwrap(), DATA);

    // An EnvelopedData (no integrity) is refused, not opened.
    openssl(
        d,
        &[
            "cms",
            "-encrypt",
            "-binary",
            "-aes-256-cbc",
            "-recip",
            "cert.pem",
            "-in",
            "plain.bin",
            "-outform",
            "DER",
            "-out",
            "cbc.der",
        ],
    );
    let cbc = std::fs::read(d.join("cbc.der")).unwrap();
    let err = envelope::decrypt(&p.key, &p.cert, &cbc).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected AuthEnvelopedData, found EnvelopedData"),
        "{err}"
    );

    // One addressed to someone else cannot be opened.
    let other = party("taxi");
    assert!(envelope::decrypt(&other.key, &other.cert, &der).is_err());
}

#[test]
fn signatures_interoperate_both_ways() {
    let p = party("program");
    let d = p.dir.path();
    write(d, "plain.bin", DATA);

    // Library signs, openssl verifies against that certificate alone.
    write(d, "lib.sig", envelope::sign(&p.key, &p.cert, DATA).unwrap());
    openssl(
        d,
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "lib.sig",
            "-noverify",
            "-certfile",
            "cert.pem",
            "-out",
            "out.bin",
        ],
    );
    assert_eq!(std::fs::read(d.join("out.bin")).unwrap(), DATA);
    let printed = openssl(
        d,
        &[
            "cms", "-cmsout", "-print", "-inform", "DER", "-in", "lib.sig",
        ],
    );
    assert!(
        printed.contains("contentType: pkcs7-signedData"),
        "{printed}"
    );
    assert!(
        printed.contains("certificates:\n      <ABSENT>"),
        "no certificates inside:\n{printed}"
    );
    assert!(printed.contains("signedAttrs:"), "{printed}");
    assert!(printed.contains("algorithm: sha256"), "{printed}");
    assert!(printed.contains("ecdsa-with-SHA256"), "{printed}");

    // openssl signs, library verifies.
    openssl(
        d,
        &[
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-md",
            "sha256",
            "-nocerts",
            "-in",
            "plain.bin",
            "-signer",
            "cert.pem",
            "-inkey",
            "key.pem",
            "-outform",
            "DER",
            "-out",
            "cli.sig",
        ],
    );
    let cli = std::fs::read(d.join("cli.sig")).unwrap();
    assert_eq!(envelope::verify(&p.cert, &cli).unwrap(), DATA);
    let other = party("someone else");
    assert!(envelope::verify(&other.cert, &cli).is_err());
}
