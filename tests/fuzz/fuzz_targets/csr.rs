//! `certificate::check_csr` on arbitrary bytes: the `HELLO` CSR is the first
//! thing a program sends. An accepted CSR must hold a P-256 key.

#![no_main]

use attestable_data::certificate::{CsrError, MAX_CSR_BYTES, check_csr};
use attestable_data::pki;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match check_csr(data) {
        Ok(key) => assert!(pki::is_p256(&key), "accepted a key that is not P-256"),
        Err(CsrError::TooLarge { found }) => assert!(found > MAX_CSR_BYTES),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
