//! `Policy::from_toml` on arbitrary text: a service's trust policy. Roots
//! given as `file = …` are read relative to an empty folder; accepted
//! policies must describe themselves without failing.

#![no_main]

use std::sync::OnceLock;

use attestable_data::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static EMPTY: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = EMPTY.get_or_init(|| tempfile::tempdir().expect("a temporary folder"));
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = Policy::from_toml(text, Some(dir.path())) {
        let _ = format!("{policy:?}");
    }
});
