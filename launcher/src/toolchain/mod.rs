//! Toolchain profiles and build plans.
//!
//! A [`Profile`] names a compiler and its flags. A [`BuildPlan`] is one
//! compilation: the profile, the sources and headers to place in the work
//! folder, include folders, and the output name; [`BuildPlan::argv`] is the
//! exact command line that runs and is recorded. Later issues add the C SDK
//! and a generated trust-anchor source to every plan through
//! [`BuildPlan::add_source`] and [`BuildPlan::add_header`].

mod build;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use build::{BuildError, BuildReport, Builder, Verdict};

/// A compiler and how to call it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// A program name looked up in `PATH`, or a path.
    pub compiler: String,
    /// Flags before the sources.
    #[serde(default)]
    pub flags: Vec<String>,
    /// Flags after the sources (libraries).
    #[serde(default)]
    pub libs: Vec<String>,
    #[serde(default)]
    pub description: String,
}

/// The profiles every launcher knows (see `docs/ARCHITECTURE.md`).
pub fn builtin_profiles() -> BTreeMap<String, Profile> {
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut profiles = BTreeMap::new();
    profiles.insert(
        "host".to_owned(),
        Profile {
            compiler: "cc".into(),
            flags: strings(&["-std=c11", "-O2", "-g", "-Wall"]),
            libs: strings(&["-lcrypto"]),
            description: "the host's C compiler (cc from PATH)".into(),
        },
    );
    // CheriBSD's /usr/bin/cc wrapper adds the release's purecap flags; naming
    // the ABI again keeps the profile right when `cc` is plain clang-morello.
    profiles.insert(
        "morello-purecap".to_owned(),
        Profile {
            compiler: "cc".into(),
            flags: strings(&[
                "-march=morello",
                "-mabi=purecap",
                "-std=c11",
                "-O2",
                "-g",
                "-Wall",
            ]),
            libs: strings(&["-lcrypto"]),
            description: "CHERI pure-capability (Morello, CheriBSD's cc)".into(),
        },
    );
    profiles.insert(
        "morello-purecap-benchmark".to_owned(),
        Profile {
            compiler: "cc".into(),
            flags: strings(&[
                "-march=morello",
                "-mabi=purecap-benchmark",
                "-std=c11",
                "-O2",
                "-g",
                "-Wall",
            ]),
            libs: strings(&["-lcrypto"]),
            description: "CHERI benchmark ABI (Morello, CheriBSD's cc)".into(),
        },
    );
    profiles
}

/// `morello-purecap` on a CheriBSD purecap userland, `host` elsewhere.
pub fn detect_default_profile() -> &'static str {
    default_profile_for(
        std::env::consts::OS,
        crate::platform::machine_arch().as_deref(),
    )
}

/// The default profile for an OS name and `hw.machine_arch` (`uname -p`).
pub fn default_profile_for(os: &str, machine_arch: Option<&str>) -> &'static str {
    match (os, machine_arch) {
        ("freebsd", Some(arch)) if arch.starts_with("aarch64c") => "morello-purecap",
        _ => "host",
    }
}

/// Checks a configured profile: sane name, a compiler, no NUL bytes.
pub fn validate_profile(name: &str, profile: &Profile) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "profile name {name:?} must be 1-64 characters of a-z, 0-9 and -"
        ));
    }
    if profile.compiler.trim().is_empty() {
        return Err(format!("profile {name}: compiler is empty"));
    }
    let all = std::iter::once(&profile.compiler)
        .chain(&profile.flags)
        .chain(&profile.libs);
    if all.into_iter().any(|s| s.contains('\0')) {
        return Err(format!("profile {name}: arguments may not contain NUL"));
    }
    Ok(())
}

/// A file placed in the build's work folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkFile {
    /// Base name inside the work folder.
    pub name: String,
    pub bytes: Vec<u8>,
}

/// One compilation, fully described before anything runs.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    pub profile_name: String,
    pub profile: Profile,
    /// Compiled, in order; the program's own source first.
    pub sources: Vec<WorkFile>,
    /// Copied into the work folder, not compiled (found by `#include "…"`).
    pub headers: Vec<WorkFile>,
    pub include_dirs: Vec<PathBuf>,
    /// The executable's name in the work folder.
    pub output_name: String,
}

impl BuildPlan {
    /// A plan for one uploaded program (`name` is a validated `*.c` base name).
    pub fn new(profile_name: &str, profile: Profile, name: &str, source: Vec<u8>) -> Self {
        let stem = name.strip_suffix(".c").unwrap_or(name);
        let output_name = if stem.is_empty() { "program" } else { stem };
        Self {
            profile_name: profile_name.to_owned(),
            profile,
            sources: vec![WorkFile {
                name: name.to_owned(),
                bytes: source,
            }],
            headers: Vec::new(),
            include_dirs: Vec::new(),
            output_name: output_name.to_owned(),
        }
    }

    /// Adds a source compiled after the program's (e.g. the SDK).
    pub fn add_source(&mut self, name: &str, bytes: Vec<u8>) {
        self.sources.push(WorkFile {
            name: name.to_owned(),
            bytes,
        });
    }

    /// Adds a header placed beside the sources.
    pub fn add_header(&mut self, name: &str, bytes: Vec<u8>) {
        self.headers.push(WorkFile {
            name: name.to_owned(),
            bytes,
        });
    }

    pub fn add_include_dir(&mut self, dir: PathBuf) {
        self.include_dirs.push(dir);
    }

    /// The full command line, relative to the work folder:
    /// `compiler flags… -I dir… -o output sources… libs…`.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec![self.profile.compiler.clone()];
        argv.extend(self.profile.flags.iter().cloned());
        for dir in &self.include_dirs {
            argv.push("-I".into());
            argv.push(dir.display().to_string());
        }
        argv.push("-o".into());
        argv.push(self.output_name.clone());
        argv.extend(self.sources.iter().map(|s| s.name.clone()));
        argv.extend(self.profile.libs.iter().cloned());
        argv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_orders_flags_includes_output_sources_libs() {
        let profiles = builtin_profiles();
        let mut plan = BuildPlan::new("host", profiles["host"].clone(), "hello.c", b"x".to_vec());
        assert_eq!(
            plan.argv(),
            [
                "cc", "-std=c11", "-O2", "-g", "-Wall", "-o", "hello", "hello.c", "-lcrypto"
            ]
        );
        plan.add_source("attestable.c", b"y".to_vec());
        plan.add_header("attestable.h", b"z".to_vec());
        plan.add_include_dir("/opt/sdk".into());
        let argv = plan.argv();
        let pos = |s: &str| argv.iter().position(|a| a == s).unwrap();
        assert!(pos("-I") < pos("-o"));
        assert_eq!(argv[pos("-I") + 1], "/opt/sdk");
        assert!(pos("hello.c") < pos("attestable.c"));
        assert!(pos("attestable.c") < pos("-lcrypto"));
        assert!(!argv.contains(&"attestable.h".to_string()));
    }

    #[test]
    fn morello_profiles_ask_for_their_abi() {
        let profiles = builtin_profiles();
        assert!(
            profiles["morello-purecap"]
                .flags
                .contains(&"-mabi=purecap".into())
        );
        assert!(
            profiles["morello-purecap-benchmark"]
                .flags
                .contains(&"-mabi=purecap-benchmark".into())
        );
    }

    #[test]
    fn default_profile_detection() {
        assert_eq!(default_profile_for("linux", Some("x86_64")), "host");
        assert_eq!(default_profile_for("freebsd", Some("aarch64")), "host");
        assert_eq!(
            default_profile_for("freebsd", Some("aarch64c")),
            "morello-purecap"
        );
        assert_eq!(default_profile_for("freebsd", None), "host");
        if cfg!(target_os = "linux") {
            assert_eq!(detect_default_profile(), "host");
        }
    }

    #[test]
    fn profile_validation() {
        let ok = builtin_profiles()["host"].clone();
        assert!(validate_profile("host", &ok).is_ok());
        assert!(validate_profile("Host", &ok).is_err());
        let mut bad = ok.clone();
        bad.compiler = " ".into();
        assert!(validate_profile("x", &bad).is_err());
        let mut bad = ok;
        bad.flags.push("-D\0".into());
        assert!(validate_profile("x", &bad).is_err());
    }
}
