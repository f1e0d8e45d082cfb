//! What every broker test starts from.

use std::path::Path;

use attestable_tests::channel_programs::build;
use attestable_tests::service::ServicesCa;
use attestable_tests::{Launcher, LauncherOptions, files_containing};

/// A launcher and `sdk_client.c` built with `ca` as its services anchor.
pub struct Setup {
    pub launcher: Launcher,
    pub ca: ServicesCa,
    pub program: i64,
    /// The executable's SHA-256: what services allow.
    pub exe: String,
}

pub async fn setup(config: &str) -> Setup {
    let launcher = Launcher::start_with(LauncherOptions {
        config: Some(config.to_owned()),
        ..Default::default()
    });
    let ca = ServicesCa::new("broker test services CA");
    let (program, build) = build(&launcher, "sdk_client.c", Some(&ca.pem)).await;
    let exe = build["executable_sha256"].as_str().unwrap().to_owned();
    Setup {
        launcher,
        ca,
        program,
        exe,
    }
}

impl Setup {
    pub fn root_pem(&self) -> String {
        String::from_utf8(self.launcher.root_pem().to_vec()).unwrap()
    }
}

/// None of `plaintexts` appears in any file under `dir` (database, WAL,
/// store, keys, everything) or in the daemon's log.
pub fn assert_nowhere(dir: &Path, log: &str, plaintexts: &[Vec<u8>]) {
    assert!(!plaintexts.is_empty(), "nothing to search for");
    let found = files_containing(dir, plaintexts);
    assert!(
        found.is_empty(),
        "plaintext found in the launcher's files: {:?}",
        found
            .iter()
            .map(|(f, i)| (
                f.display().to_string(),
                String::from_utf8_lossy(&plaintexts[*i]).into_owned()
            ))
            .collect::<Vec<_>>()
    );
    for p in plaintexts {
        assert!(
            !log.as_bytes().windows(p.len()).any(|w| w == p.as_slice()),
            "plaintext {:?} found in the launcher's log",
            String::from_utf8_lossy(p)
        );
    }
}

/// What to search for: each plaintext, and each string value of 8 bytes or
/// more inside it when it is a JSON object (a leak of one field is a leak).
pub fn needles(plaintexts: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for p in plaintexts {
        out.push(p.clone());
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(p) {
            for value in map.values() {
                if let Some(s) = value.as_str().filter(|s| s.len() >= 8) {
                    out.push(s.as_bytes().to_vec());
                }
            }
        }
    }
    out
}
