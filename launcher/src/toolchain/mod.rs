//! Toolchain profiles and build plans.
//!
//! A [`Profile`] names a compiler and its flags. A [`BuildPlan`] is one
//! compilation: the profile, the program, the C SDK ([`sdk`]) and the
//! generated trust-anchor source, what the compartment adds, and the output
//! name; [`BuildPlan::argv`] is the exact command line that runs and is
//! recorded.

mod build;
pub mod sdk;

use std::collections::BTreeMap;
use std::path::PathBuf;

use programs_db::CompiledIn;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use build::{BuildError, BuildReport, Builder, BuilderParts, Verdict};
pub use sdk::{Anchor, AnchorError, Sdk};

use crate::compartment::BuildSteps;

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

/// A file placed in the build's source folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkFile {
    /// Base name inside the source folder.
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Where a build happens: `<data>/builds/<name>/` with the sources in
/// `src/` (read-only for the compiler) and its output in `out/` (its only
/// writable folder, and its working directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkLayout {
    pub root: PathBuf,
}

impl WorkLayout {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn src(&self) -> PathBuf {
        self.root.join("src")
    }

    pub fn out(&self) -> PathBuf {
        self.root.join("out")
    }
}

/// Where the SDK's paths appear in the executable's debug information, so
/// that it does not depend on the data folder.
pub const SDK_PREFIX: &str = "/attestable-sdk";

/// One compilation, fully described before anything runs: the program,
/// the SDK and the generated trust-anchor source, the profile, and what the
/// compartment adds.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    pub profile_name: String,
    pub profile: Profile,
    /// The uploaded source (validated `*.c` base name).
    pub program: WorkFile,
    pub sdk: Sdk,
    pub anchor: Anchor,
    /// What the compartment adds (c18n link flags and post-link steps).
    pub steps: BuildSteps,
    /// The executable's name in the output folder.
    pub output_name: String,
}

impl BuildPlan {
    /// A plan for one uploaded program (`name` is a validated `*.c` base name).
    pub fn new(
        profile_name: &str,
        profile: Profile,
        name: &str,
        source: Vec<u8>,
        sdk: Sdk,
        anchor: Anchor,
        steps: BuildSteps,
    ) -> Self {
        let stem = name.strip_suffix(".c").unwrap_or(name);
        let output_name = if stem.is_empty() { "program" } else { stem };
        Self {
            profile_name: profile_name.to_owned(),
            profile,
            program: WorkFile {
                name: name.to_owned(),
                bytes: source,
            },
            sdk,
            anchor,
            steps,
            output_name: output_name.to_owned(),
        }
    }

    /// The files written to the source folder: the program, then the
    /// generated anchor.
    pub fn work_files(&self) -> Vec<WorkFile> {
        vec![
            self.program.clone(),
            WorkFile {
                name: sdk::ANCHOR_NAME.to_owned(),
                bytes: self.anchor.c_source().into_bytes(),
            },
        ]
    }

    /// What the build records besides the program.
    pub fn compiled_in(&self) -> CompiledIn {
        CompiledIn {
            sdk_sha256: self.sdk.sha256.clone(),
            services_anchor_sha256: self.anchor.sha256(),
        }
    }

    /// The full command line, run in `work.out()`:
    /// `compiler flags… [c18n flags] -ffile-prefix-map=… -I <sdk> -o output
    /// program.c <sdk>/attestable.c attestable_anchor.c libs…`.
    ///
    /// The prefix maps keep the build's own folders out of the executable
    /// (`-g` records the compilation folder and source paths): the same
    /// source, SDK, anchor and profile give the same bytes, whatever the
    /// build's folder or the data folder.
    pub fn argv(&self, work: &WorkLayout) -> Vec<String> {
        let src = work.src();
        let mut argv = vec![self.profile.compiler.clone()];
        argv.extend(self.profile.flags.iter().cloned());
        argv.extend(self.steps.link_flags.iter().cloned());
        argv.push(format!("-ffile-prefix-map={}=.", work.root.display()));
        argv.push(format!(
            "-ffile-prefix-map={}={SDK_PREFIX}",
            self.sdk.dir.display()
        ));
        argv.push("-I".into());
        argv.push(self.sdk.dir.display().to_string());
        argv.push("-o".into());
        argv.push(self.output_name.clone());
        argv.push(src.join(&self.program.name).display().to_string());
        argv.push(self.sdk.source().display().to_string());
        argv.push(src.join(sdk::ANCHOR_NAME).display().to_string());
        argv.extend(self.profile.libs.iter().cloned());
        argv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(steps: BuildSteps) -> BuildPlan {
        let sdk = Sdk {
            dir: "/data/sdk/5d4e".into(),
            sha256: programs_db::Sha256Hex::of(b"sdk"),
        };
        BuildPlan::new(
            "host",
            builtin_profiles()["host"].clone(),
            "hello.c",
            b"int main(void){return 0;}".to_vec(),
            sdk,
            Anchor::none(),
            steps,
        )
    }

    #[test]
    fn argv_compiles_the_program_the_sdk_and_the_anchor_reproducibly() {
        let work = WorkLayout::new("/data/builds/9f2c".into());
        assert_eq!(
            plan(BuildSteps::default()).argv(&work),
            [
                "cc",
                "-std=c11",
                "-O2",
                "-g",
                "-Wall",
                "-ffile-prefix-map=/data/builds/9f2c=.",
                "-ffile-prefix-map=/data/sdk/5d4e=/attestable-sdk",
                "-I",
                "/data/sdk/5d4e",
                "-o",
                "hello",
                "/data/builds/9f2c/src/hello.c",
                "/data/sdk/5d4e/attestable.c",
                "/data/builds/9f2c/src/attestable_anchor.c",
                "-lcrypto"
            ]
        );
        let files: Vec<String> = plan(BuildSteps::default())
            .work_files()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(files, ["hello.c", "attestable_anchor.c"]);
        let compiled_in = plan(BuildSteps::default()).compiled_in();
        assert_eq!(compiled_in.services_anchor_sha256, None);
    }

    #[test]
    fn the_compartment_adds_its_link_flags_after_the_profile() {
        use launcher_sandbox::cheri::C18nMechanism;
        let steps = BuildSteps {
            link_flags: C18nMechanism::Interpreter.link_flags(),
            c18n: Some(C18nMechanism::Interpreter),
        };
        let argv = plan(steps).argv(&WorkLayout::new("/b/1".into()));
        let pos = |s: &str| argv.iter().position(|a| a.starts_with(s)).unwrap();
        assert!(pos("-Wall") < pos("-Wl,--dynamic-linker=/libexec/ld-elf-c18n.so.1"));
        assert!(pos("-Wl,--dynamic-linker") < pos("-o"));
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
