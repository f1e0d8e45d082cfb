//! CMS envelopes (RFC 5652) through OpenSSL: no hand-rolled cryptography.
//!
//! - [`encrypt_to`]: AuthEnvelopedData (RFC 5083), AES-256-GCM, one
//!   KeyAgreeRecipientInfo (ECDH ephemeral-static for P-256 recipients), what
//!   `openssl cms -encrypt -aes-256-gcm -recip cert.pem -keyopt ecdh_kdf_md:sha256`
//!   makes (the X9.63 KDF with SHA-256);
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
/// AES-256-GCM and ECDH key agreement whose X9.63 KDF uses SHA-256
/// (`dhSinglePass-stdDH-sha256kdf-scheme`; `CMS_encrypt` alone would pick
/// SHA-1), the key wrapped with `id-aes256-wrap`.
pub fn encrypt_to(recipient: &X509Ref, data: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    use foreign_types::{ForeignType, ForeignTypeRef};
    use openssl_sys as sys;
    use std::ptr;

    check_size("content to encrypt", data.len(), MAX_CONTENT_BYTES)?;
    let ec = recipient
        .public_key()
        .map_err(crypto("the recipient's public key"))?
        .id()
        == openssl::pkey::Id::EC;
    let len = std::os::raw::c_int::try_from(data.len()).expect("bounded by MAX_CONTENT_BYTES");
    let fail = |context| crypto(context)(ErrorStack::get());
    sys::init();
    // SAFETY: each pointer is checked before use; the BIO and the
    // ContentInfo are owned by guards that free them; `recipient` outlives
    // the calls (CMS_add1_recipient_cert takes its own reference).
    unsafe {
        let bio = Bio(sys::BIO_new_mem_buf(data.as_ptr().cast(), len));
        if bio.0.is_null() {
            return Err(fail("a memory BIO"));
        }
        let flags = sys::CMS_BINARY | sys::CMS_PARTIAL;
        let cms = sys::CMS_encrypt(ptr::null_mut(), bio.0, sys::EVP_aes_256_gcm(), flags);
        if cms.is_null() {
            return Err(fail("CMS encrypt"));
        }
        let cms = CmsContentInfo::from_ptr(cms);
        let ri = ffi::CMS_add1_recipient_cert(cms.as_ptr(), recipient.as_ptr(), sys::CMS_KEY_PARAM);
        if ri.is_null() {
            return Err(fail("adding the recipient"));
        }
        if ec {
            let pctx = ffi::CMS_RecipientInfo_get0_pkey_ctx(ri);
            if pctx.is_null() || ffi::EVP_PKEY_CTX_set_ecdh_kdf_md(pctx, sys::EVP_sha256()) <= 0 {
                return Err(fail("choosing SHA-256 for the key agreement's KDF"));
            }
        }
        if ffi::CMS_final(cms.as_ptr(), bio.0, ptr::null_mut(), sys::CMS_BINARY) <= 0 {
            return Err(fail("CMS encrypt"));
        }
        cms.to_der().map_err(crypto("encoding the envelope"))
    }
}

/// Frees a BIO when dropped.
struct Bio(*mut openssl_sys::BIO);

impl Drop for Bio {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the BIO is ours and freed once.
            unsafe { openssl_sys::BIO_free_all(self.0) };
        }
    }
}

/// The OpenSSL 3 calls the `openssl` crate does not wrap.
mod ffi {
    use openssl_sys::{BIO, CMS_ContentInfo, EVP_MD, EVP_PKEY_CTX, X509};
    use std::os::raw::{c_int, c_uint};

    #[allow(non_camel_case_types)]
    #[repr(C)]
    pub struct CMS_RecipientInfo {
        _private: [u8; 0],
    }

    unsafe extern "C" {
        pub fn CMS_add1_recipient_cert(
            cms: *mut CMS_ContentInfo,
            recipient: *mut X509,
            flags: c_uint,
        ) -> *mut CMS_RecipientInfo;
        pub fn CMS_RecipientInfo_get0_pkey_ctx(ri: *mut CMS_RecipientInfo) -> *mut EVP_PKEY_CTX;
        pub fn EVP_PKEY_CTX_set_ecdh_kdf_md(ctx: *mut EVP_PKEY_CTX, md: *const EVP_MD) -> c_int;
        pub fn CMS_final(
            cms: *mut CMS_ContentInfo,
            data: *mut BIO,
            dcont: *mut BIO,
            flags: c_uint,
        ) -> c_int;
    }
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
