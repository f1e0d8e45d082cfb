//! A run certificate as a verifier (a service, `attestable cert verify`)
//! reads it: arbitrary DER through OpenSSL's parser, then
//! `verify::read_evidence` (x509-parser for the extensions, then the
//! evidence); and arbitrary text through `verify::parse_chain_pem`.

#![no_main]

use attestable_data::verify::{parse_chain_pem, read_evidence};
use libfuzzer_sys::fuzz_target;
use openssl::x509::X509;

fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = X509::from_der(data) {
        if let Ok(evidence) = read_evidence(&cert) {
            // What was read is canonical evidence (from_canonical checked it).
            let again = evidence.to_canonical().expect("read evidence serialises");
            assert!(!again.is_empty());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(chain) = parse_chain_pem(text) {
            assert!(!chain.is_empty(), "an empty chain parsed");
        }
    }
});
