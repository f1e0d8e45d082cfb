//! CMS envelopes (RFC 5652) through OpenSSL: no hand-rolled cryptography.
//!
//! - [`encrypt_to`]: AuthEnvelopedData (RFC 5083), AES-256-GCM, one
//!   KeyAgreeRecipientInfo (ECDH ephemeral-static for P-256 recipients), what
//!   `openssl cms -encrypt -aes-256-gcm -recip cert.pem` makes;
//! - [`decrypt`]: opens an AuthEnvelopedData, and nothing else (an
//!   EnvelopedData has no integrity, so it is refused rather than opened);
//! - [`sign`]: SignedData, content attached, signed attributes, SHA-256, no
//!   certificates inside, binary (no MIME canonicalisation);
//! - [`verify`]: checks a SignedData against one given certificate only; it
//!   builds no chain and ignores any certificate inside the message.
//!
//! Everything is DER. Inputs are size-limited before OpenSSL parses them.

use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::error::ErrorStack;
use openssl::pkey::{PKeyRef, Private};
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::{X509, X509Ref};

/// Largest envelope accepted by [`decrypt`] and [`verify`], in bytes.
pub const MAX_ENVELOPE_BYTES: usize = 17 << 20;

/// Largest content accepted by [`encrypt_to`] and [`sign`], in bytes.
pub const MAX_CONTENT_BYTES: usize = 16 << 20;

/// A CMS operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Input over its limit.
    #[error("{what} is {found} bytes; the limit is {limit}")]
    TooLarge {
        /// Which input.
        what: &'static str,
        /// Its size.
        found: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a DER CMS ContentInfo, or not of the expected content type.
    #[error("malformed envelope: expected {expected}, found {found}")]
    Malformed {
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// The envelope is not addressed to this key, or its authentication tag
    /// does not match (altered or truncated ciphertext).
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    /// The signature does not verify under the given certificate.
    #[error("signature does not verify under {signer}: {reason}")]
    Signature {
        /// The certificate it was checked against.
        signer: String,
        /// OpenSSL's reason.
        reason: String,
    },
    /// OpenSSL failed while creating an envelope.
    #[error("{context}: {source}")]
    Crypto {
        /// What was being done.
        context: &'static str,
        /// OpenSSL's errors.
        #[source]
        source: ErrorStack,
    },
}

fn crypto(context: &'static str) -> impl FnOnce(ErrorStack) -> EnvelopeError {
    move |source| EnvelopeError::Crypto { context, source }
}

fn check_size(what: &'static str, len: usize, limit: usize) -> Result<(), EnvelopeError> {
    if len > limit {
        return Err(EnvelopeError::TooLarge {
            what,
            found: len,
            limit,
        });
    }
    Ok(())
}

/// CMS content types this module tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// `id-data`.
    Data,
    /// `id-signedData`.
    SignedData,
    /// `id-envelopedData`.
    EnvelopedData,
    /// `id-ct-authEnvelopedData`.
    AuthEnvelopedData,
    /// Any other object identifier.
    Other,
}

const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
const OID_ENVELOPED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
const OID_AUTH_ENVELOPED_DATA: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x17,
];

/// The content type of a DER ContentInfo, read from its first bytes
/// (`SEQUENCE { contentType OBJECT IDENTIFIER, … }`), without parsing the rest.
pub fn content_type(der: &[u8]) -> Option<ContentType> {
    let rest = der.strip_prefix(&[0x30])?;
    // Skip the SEQUENCE length: short form, or long form with 1 to 4 length bytes.
    let rest = match *rest.first()? {
        n if n < 0x80 => &rest[1..],
        n @ 0x81..=0x84 => rest.get(1 + usize::from(n & 0x7f)..)?,
        _ => return None,
    };
    let rest = rest.strip_prefix(&[0x06])?;
    let len = usize::from(*rest.first()?);
    let oid = rest.get(1..1 + len)?;
    Some(match oid {
        OID_DATA => ContentType::Data,
        OID_SIGNED_DATA => ContentType::SignedData,
        OID_ENVELOPED_DATA => ContentType::EnvelopedData,
        OID_AUTH_ENVELOPED_DATA => ContentType::AuthEnvelopedData,
        _ => ContentType::Other,
    })
}

fn expect_type(der: &[u8], want: ContentType, name: &'static str) -> Result<(), EnvelopeError> {
    match content_type(der) {
        Some(t) if t == want => Ok(()),
        found => Err(EnvelopeError::Malformed {
            expected: name,
            found: match found {
                None => "bytes that are not a DER CMS ContentInfo".into(),
                Some(ContentType::Other) => "another CMS content type".into(),
                Some(t) => format!("{t:?}"),
            },
        }),
    }
}

fn openssl_reason(e: &ErrorStack) -> String {
    e.errors()
        .iter()
        .filter_map(|e| e.reason().map(str::to_string))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Encrypts `data` to `recipient`'s public key: DER AuthEnvelopedData with
/// AES-256-GCM and ECDH key agreement.
pub fn encrypt_to(recipient: &X509Ref, data: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    check_size("content to encrypt", data.len(), MAX_CONTENT_BYTES)?;
    let mut certs = Stack::new().map_err(crypto("certificate stack"))?;
    certs
        .push(recipient.to_owned())
        .map_err(crypto("certificate stack"))?;
    let cms = CmsContentInfo::encrypt(&certs, data, Cipher::aes_256_gcm(), CMSOptions::BINARY)
        .map_err(crypto("CMS encrypt"))?;
    cms.to_der().map_err(crypto("encoding the envelope"))
}

/// Decrypts a DER AuthEnvelopedData addressed to `cert` with its `key`.
pub fn decrypt(key: &PKeyRef<Private>, cert: &X509, der: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    check_size("envelope", der.len(), MAX_ENVELOPE_BYTES)?;
    expect_type(der, ContentType::AuthEnvelopedData, "AuthEnvelopedData")?;
    let cms = CmsContentInfo::from_der(der).map_err(|e| EnvelopeError::Malformed {
        expected: "a DER AuthEnvelopedData",
        found: format!("bytes OpenSSL cannot parse ({})", openssl_reason(&e)),
    })?;
    cms.decrypt(key, cert)
        .map_err(|e| EnvelopeError::Decrypt(openssl_reason(&e)))
}

/// Signs `data`: DER SignedData by `key` under `cert`, content attached,
/// signed attributes, SHA-256, no certificates inside.
pub fn sign(key: &PKeyRef<Private>, cert: &X509Ref, data: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    check_size("content to sign", data.len(), MAX_CONTENT_BYTES)?;
    let flags = CMSOptions::BINARY | CMSOptions::CMS_NOCERTS | CMSOptions::NOSMIMECAP;
    let cms = CmsContentInfo::sign(Some(cert), Some(key), None, Some(data), flags)
        .map_err(crypto("CMS sign"))?;
    cms.to_der().map_err(crypto("encoding the signature"))
}

/// Verifies a DER SignedData against `signer` alone and returns its content.
pub fn verify(signer: &X509Ref, der: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    check_size("signed message", der.len(), MAX_ENVELOPE_BYTES)?;
    expect_type(der, ContentType::SignedData, "SignedData")?;
    let mut cms = CmsContentInfo::from_der(der).map_err(|e| EnvelopeError::Malformed {
        expected: "a DER SignedData",
        found: format!("bytes OpenSSL cannot parse ({})", openssl_reason(&e)),
    })?;
    let mut certs = Stack::new().map_err(crypto("certificate stack"))?;
    certs
        .push(signer.to_owned())
        .map_err(crypto("certificate stack"))?;
    // NOINTERN: never take the signer from the message; NO_SIGNER_CERT_VERIFY:
    // the caller already decided to trust `signer`, so no chain is built here.
    let flags = CMSOptions::BINARY | CMSOptions::NOINTERN | CMSOptions::NO_SIGNER_CERT_VERIFY;
    let mut content = Vec::new();
    cms.verify(Some(&certs), None, None, Some(&mut content), flags)
        .map_err(|e| EnvelopeError::Signature {
            signer: crate::pki::describe_name(signer.subject_name()),
            reason: openssl_reason(&e),
        })?;
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertificateAuthority, ServerCertSpec, generate_p256_key};
    use openssl::pkey::PKey;

    pub(crate) fn party(name: &str) -> (PKey<Private>, X509) {
        let ca = CertificateAuthority::create_root("envelope test CA", None, 1).unwrap();
        let key = generate_p256_key().unwrap();
        let spec = ServerCertSpec {
            common_name: name.into(),
            organization: None,
            dns_names: vec![],
            ip_addresses: vec![],
            days: 1,
        };
        let cert = ca.issue_server_cert(&key, &spec).unwrap();
        (key, cert)
    }

    #[test]
    fn encrypt_decrypt_round_trip() {
        let (key, cert) = party("alice");
        for data in [&b""[..], b"hello", &vec![7u8; 100_000]] {
            let der = encrypt_to(&cert, data).unwrap();
            assert_eq!(content_type(&der), Some(ContentType::AuthEnvelopedData));
            assert_eq!(decrypt(&key, &cert, &der).unwrap(), data);
        }
    }

    #[test]
    fn decrypt_refuses_other_recipients_tampering_and_other_types() {
        let (key, cert) = party("alice");
        let (other_key, other_cert) = party("bob");
        let der = encrypt_to(&cert, b"secret").unwrap();
        assert!(matches!(
            decrypt(&other_key, &other_cert, &der),
            Err(EnvelopeError::Decrypt(_))
        ));
        // The tag covers the ciphertext: flip a byte near the end.
        let mut bad = der.clone();
        let i = bad.len() - 20;
        bad[i] ^= 1;
        assert!(decrypt(&key, &cert, &bad).is_err());
        assert!(decrypt(&key, &cert, &der[..der.len() - 1]).is_err());
        let signed = sign(&key, &cert, b"x").unwrap();
        let err = decrypt(&key, &cert, &signed).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected AuthEnvelopedData, found SignedData"),
            "{err}"
        );
        assert!(matches!(
            decrypt(&key, &cert, b"junk"),
            Err(EnvelopeError::Malformed { .. })
        ));
        let big = vec![0u8; MAX_ENVELOPE_BYTES + 1];
        assert!(matches!(
            decrypt(&key, &cert, &big),
            Err(EnvelopeError::TooLarge { .. })
        ));
    }

    #[test]
    fn sign_verify_round_trip_against_that_certificate_only() {
        let (key, cert) = party("alice");
        let (_, other_cert) = party("bob");
        let der = sign(&key, &cert, b"payload").unwrap();
        assert_eq!(content_type(&der), Some(ContentType::SignedData));
        assert_eq!(verify(&cert, &der).unwrap(), b"payload");
        let err = verify(&other_cert, &der).unwrap_err();
        assert!(matches!(err, EnvelopeError::Signature { .. }), "{err}");
        // The message carries no certificate.
        let text = String::from_utf8_lossy(&der).to_string();
        assert!(!text.contains("alice"));
        // A byte of content flipped.
        let i = der.windows(7).position(|w| w == b"payload").unwrap();
        let mut bad = der.clone();
        bad[i] ^= 1;
        assert!(matches!(
            verify(&cert, &bad),
            Err(EnvelopeError::Signature { .. })
        ));
    }

    #[test]
    fn limits_and_content_types() {
        let (key, cert) = party("alice");
        let big = vec![0u8; MAX_CONTENT_BYTES + 1];
        assert!(matches!(
            encrypt_to(&cert, &big),
            Err(EnvelopeError::TooLarge { .. })
        ));
        assert!(matches!(
            sign(&key, &cert, &big),
            Err(EnvelopeError::TooLarge { .. })
        ));
        assert_eq!(content_type(b""), None);
        assert_eq!(content_type(&[0x30, 0x85]), None);
        assert_eq!(
            content_type(&[0x30, 0x03, 0x06, 0x01, 0x2a]),
            Some(ContentType::Other)
        );
        assert_eq!(content_type(&[0x30, 0x82, 0x01, 0x00, 0x06, 0x09]), None);
    }
}
