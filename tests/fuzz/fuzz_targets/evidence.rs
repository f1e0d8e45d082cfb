//! `Evidence::from_canonical` on arbitrary bytes: what a verifier reads out
//! of a certificate's `1.2.3.4.5.6.7.8.6` extension. Accepted evidence is
//! canonical: serialising it again gives exactly the input.

#![no_main]

use attestable_data::evidence::Evidence;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(evidence) = Evidence::from_canonical(data) {
        let again = evidence.to_canonical().expect("accepted evidence serialises");
        assert_eq!(again, data, "accepted evidence that is not canonical");
    }
});
