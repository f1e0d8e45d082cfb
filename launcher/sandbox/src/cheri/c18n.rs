//! Library compartmentalisation (c18n): how each CheriBSD release turns it
//! on, as exact command lines and flags, and how to check it took.
//!
//! | release | mechanism |
//! |---|---|
//! | 22.12, 23.11 | link with the separate run-time linker `/libexec/ld-elf-c18n.so.1`; its variables are prefixed `LD_C18N_` |
//! | 24.05 and later | built into `/libexec/ld-elf.so.1`: per binary with `elfctl -e +cheric18n` (run *before* hashing, so the measured bytes say c18n is on), or per process with `procctl(PROC_CHERI_C18N_CTL)` before exec |
//!
//! c18n isolates shared objects from each other inside one process; it does
//! not restrict system calls, files or the network. The backend therefore
//! also confines the process: rlimits, an empty environment, and Capsicum
//! capability mode, which the program's start-up code enters (the attestable
//! SDK calls `cap_enter()` once the run-time linker has loaded everything;
//! before exec it would be too early, since capability mode forbids the
//! `open` calls the linker makes).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::release::CheriBsdRelease;
use crate::elf::ElfInfo;

/// The c18n run-time linker of CheriBSD 22.12 and 23.11.
pub const C18N_INTERPRETER: &str = "/libexec/ld-elf-c18n.so.1";
/// The default run-time linker (c18n built in from 24.05 on).
pub const DEFAULT_INTERPRETER: &str = "/libexec/ld-elf.so.1";

/// `procctl(2)` commands and arguments from CheriBSD's `sys/sys/procctl.h`
/// (not in the `libc` crate). Calling it in the child before exec is
/// inferred from `proccontrol(1)`; *check on a board*.
pub const PROC_CHERI_C18N_CTL: i32 = 1003;
pub const PROC_CHERI_C18N_STATUS: i32 = 1004;
pub const PROC_CHERI_C18N_ENABLE: i32 = 1;
pub const PROC_CHERI_C18N_DISABLE: i32 = 2;
pub const PROC_CHERI_C18N_NOFORCE: i32 = 3;

/// The first release with c18n at all, and the first with it built into
/// the default run-time linker.
pub const FIRST_C18N_RELEASE: CheriBsdRelease = CheriBsdRelease::R22_12;
pub const BUILTIN_C18N_RELEASE: CheriBsdRelease = CheriBsdRelease::R24_05;

/// How a run gets library compartmentalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum C18nMechanism {
    /// 22.12, 23.11: the executable names `ld-elf-c18n.so.1` as its
    /// interpreter (a link flag).
    Interpreter,
    /// 24.05+: `elfctl -e +cheric18n` sets the ELF feature note before the
    /// executable is hashed.
    FeatureNote,
    /// 24.05+: `procctl(P_PID, 0, PROC_CHERI_C18N_CTL, ENABLE)` in the child
    /// before `fexecve`.
    Procctl,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum C18nError {
    #[error("CheriBSD {0} has no library compartmentalisation (it arrived in 22.12)")]
    Unsupported(CheriBsdRelease),
    #[error("{mechanism} is not available on CheriBSD {release} (available: {available})")]
    WrongRelease {
        mechanism: C18nMechanism,
        release: CheriBsdRelease,
        available: String,
    },
    #[error("c18n is not in force: {0}")]
    NotInForce(String),
    #[error("cannot read elfctl output: {0}")]
    ElfctlOutput(String),
    #[error(
        "environment variable {0:?} would change the run-time linker's behaviour; attested runs start with an empty environment"
    )]
    LinkerVariable(String),
}

impl fmt::Display for C18nMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            C18nMechanism::Interpreter => "the ld-elf-c18n.so.1 interpreter",
            C18nMechanism::FeatureNote => "the cheric18n ELF feature note (elfctl)",
            C18nMechanism::Procctl => "procctl(PROC_CHERI_C18N_CTL)",
        })
    }
}

impl C18nMechanism {
    /// The mechanisms `release` offers, preferred first.
    pub fn available(release: CheriBsdRelease) -> &'static [C18nMechanism] {
        if release < FIRST_C18N_RELEASE {
            &[]
        } else if release < BUILTIN_C18N_RELEASE {
            &[C18nMechanism::Interpreter]
        } else {
            // The note is part of the measured bytes; procctl is not.
            &[C18nMechanism::FeatureNote, C18nMechanism::Procctl]
        }
    }

    /// The preferred mechanism for `release`.
    pub fn for_release(release: CheriBsdRelease) -> Result<C18nMechanism, C18nError> {
        Self::available(release)
            .first()
            .copied()
            .ok_or(C18nError::Unsupported(release))
    }

    /// Checks that `self` works on `release` (an operator's explicit choice).
    pub fn check(self, release: CheriBsdRelease) -> Result<(), C18nError> {
        let available = Self::available(release);
        if available.is_empty() {
            return Err(C18nError::Unsupported(release));
        }
        if available.contains(&self) {
            Ok(())
        } else {
            Err(C18nError::WrongRelease {
                mechanism: self,
                release,
                available: available
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }

    /// Linker flags the build needs.
    pub fn link_flags(self) -> Vec<String> {
        match self {
            C18nMechanism::Interpreter => {
                vec![format!("-Wl,--dynamic-linker={C18N_INTERPRETER}")]
            }
            C18nMechanism::FeatureNote | C18nMechanism::Procctl => Vec::new(),
        }
    }

    /// Commands to run on the linked executable, in order, before it is
    /// hashed.
    pub fn post_link_commands(self, executable: &Path) -> Vec<Vec<String>> {
        match self {
            C18nMechanism::FeatureNote => vec![
                vec![
                    "elfctl".into(),
                    "-e".into(),
                    "+cheric18n".into(),
                    executable.display().to_string(),
                ],
                // Read back, for `verify_feature_note`.
                elfctl_query(executable),
            ],
            C18nMechanism::Interpreter | C18nMechanism::Procctl => Vec::new(),
        }
    }

    /// Variables the run's otherwise empty environment gets.
    /// `library_path` is for libraries outside the linker's default paths.
    pub fn run_environment(self, library_path: Option<&str>) -> Vec<(String, String)> {
        match (self, library_path) {
            (C18nMechanism::Interpreter, Some(p)) => {
                vec![("LD_C18N_LIBRARY_PATH".into(), p.into())]
            }
            (C18nMechanism::FeatureNote | C18nMechanism::Procctl, Some(p)) => {
                vec![("LD_LIBRARY_PATH".into(), p.into())]
            }
            (_, None) => Vec::new(),
        }
    }

    /// Whether the child must call procctl before exec.
    pub fn needs_procctl(self) -> bool {
        self == C18nMechanism::Procctl
    }
}

/// `elfctl PATH`: prints the feature flags of an executable.
pub fn elfctl_query(executable: &Path) -> Vec<String> {
    vec!["elfctl".into(), executable.display().to_string()]
}

/// The proven command-line way to run a program with c18n on 24.05+
/// (`proccontrol(1)`). The launcher does not use it: it executes by path,
/// not the measured descriptor; it is here for operators reproducing a run.
pub fn proccontrol_command(executable: &Path, args: &[String]) -> Vec<String> {
    let mut v: Vec<String> = ["proccontrol", "-m", "cheric18n", "-s", "enable"]
        .into_iter()
        .map(String::from)
        .collect();
    v.push(executable.display().to_string());
    v.extend(args.iter().cloned());
    v
}

/// A purecap compiler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compiler {
    /// `/usr/bin/cc` from `llvm-base`: on a purecap system it adds
    /// `-march=morello -mabi=purecap` and the flags the release needs.
    CcWrapper,
    /// A configured `clang-morello`, which needs the target flags spelled out
    /// (and lacks the wrapper's release-specific flags).
    ClangMorello(String),
}

/// The complete compile command: compiler, purecap target flags, the
/// caller's flags, c18n link flags, `-o OUTPUT`, sources, libraries.
pub fn compile_command(
    compiler: &Compiler,
    mechanism: C18nMechanism,
    flags: &[String],
    sources: &[&Path],
    output: &Path,
    libraries: &[&str],
) -> Vec<String> {
    let mut v = match compiler {
        Compiler::CcWrapper => vec!["cc".to_owned()],
        Compiler::ClangMorello(path) => vec![
            path.clone(),
            "-march=morello".into(),
            "-mabi=purecap".into(),
        ],
    };
    v.extend(flags.iter().cloned());
    v.extend(mechanism.link_flags());
    v.push("-o".into());
    v.push(output.display().to_string());
    v.extend(sources.iter().map(|s| s.display().to_string()));
    v.extend(libraries.iter().map(|l| format!("-l{l}")));
    v
}

/// Parses `elfctl PATH` output: one line per feature,
/// `NAME<padding>'DESCRIPTION' is set.` or `… is unset.`, after a
/// `File '…' features:` header.
pub fn parse_elfctl_features(output: &str) -> Result<BTreeMap<String, bool>, C18nError> {
    let mut features = BTreeMap::new();
    for line in output.lines() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with("File '") {
            continue;
        }
        let state = if let Some(rest) = line.strip_suffix(" is set.") {
            Some((rest, true))
        } else {
            line.strip_suffix(" is unset.").map(|rest| (rest, false))
        };
        let Some((rest, set)) = state else {
            return Err(C18nError::ElfctlOutput(format!("unexpected line {line:?}")));
        };
        let name = rest
            .split_whitespace()
            .next()
            .filter(|n| !n.starts_with('\''))
            .ok_or_else(|| C18nError::ElfctlOutput(format!("no feature name in {line:?}")))?;
        features.insert(name.to_owned(), set);
    }
    if features.is_empty() {
        return Err(C18nError::ElfctlOutput("no features listed".into()));
    }
    Ok(features)
}

/// Checks that c18n is in force for an executable built with `mechanism`
/// and returns the layer detail. `elfctl_output` is the output of
/// [`elfctl_query`] on the file that was hashed (FeatureNote only).
pub fn verify(
    mechanism: C18nMechanism,
    elf: &ElfInfo,
    elfctl_output: Option<&str>,
) -> Result<String, C18nError> {
    match mechanism {
        C18nMechanism::Interpreter => match elf.interpreter.as_deref() {
            Some(C18N_INTERPRETER) => Ok(format!("interpreter {C18N_INTERPRETER}")),
            other => Err(C18nError::NotInForce(format!(
                "expected interpreter {C18N_INTERPRETER}, found {}",
                other.unwrap_or("none (static executable)")
            ))),
        },
        C18nMechanism::FeatureNote => {
            let output = elfctl_output.ok_or_else(|| {
                C18nError::NotInForce("no elfctl output for the hashed executable".into())
            })?;
            let f = parse_elfctl_features(output)?;
            match (f.get("cheric18n"), f.get("nocheric18n")) {
                (Some(true), Some(true)) => Err(C18nError::NotInForce(
                    "both cheric18n and nocheric18n are set".into(),
                )),
                (Some(true), _) => Ok(format!(
                    "cheric18n ELF feature note set (elfctl before hashing), run-time linker {}",
                    elf.interpreter.as_deref().unwrap_or(DEFAULT_INTERPRETER)
                )),
                (found, _) => Err(C18nError::NotInForce(format!(
                    "expected feature cheric18n set, found {}",
                    match found {
                        Some(false) => "unset",
                        _ => "not listed (release without c18n?)",
                    }
                ))),
            }
        }
        C18nMechanism::Procctl => Ok(format!(
            "procctl(PROC_CHERI_C18N_CTL = {PROC_CHERI_C18N_CTL}, ENABLE) before fexecve"
        )),
    }
}

/// Refuses environment variables the run-time linker reads: an inherited
/// `LD_*` (or `LD_C18N_*`) variable can turn c18n off or enable tracing and
/// overhead simulation that weaken it.
pub fn check_environment<'a>(
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    mechanism: C18nMechanism,
) -> Result<(), C18nError> {
    let allowed: Vec<String> = mechanism
        .run_environment(Some(""))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for (k, _) in vars {
        if k.starts_with("LD_") && !allowed.iter().any(|a| a == k) {
            return Err(C18nError::LinkerVariable(k.to_owned()));
        }
    }
    Ok(())
}

/// Detail for the `capsicum` layer.
pub const CAPSICUM_DETAIL: &str = "capability mode is entered by the program's start-up code (attestable SDK: cap_enter() after the run-time linker has loaded its libraries); the launcher checks kernel support, it cannot observe the call";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::tests::synthetic_elf64;
    use crate::elf::{EF_AARCH64_CHERI_PURECAP, EM_AARCH64};

    fn purecap(interp: &str) -> ElfInfo {
        ElfInfo::parse(&synthetic_elf64(
            EM_AARCH64,
            EF_AARCH64_CHERI_PURECAP,
            Some(interp),
        ))
        .unwrap()
    }

    #[test]
    fn mechanism_per_release() {
        assert_eq!(
            C18nMechanism::for_release(CheriBsdRelease::R22_12).unwrap(),
            C18nMechanism::Interpreter
        );
        assert_eq!(
            C18nMechanism::for_release(CheriBsdRelease::R23_11).unwrap(),
            C18nMechanism::Interpreter
        );
        assert_eq!(
            C18nMechanism::for_release(CheriBsdRelease::R24_05).unwrap(),
            C18nMechanism::FeatureNote
        );
        assert_eq!(
            C18nMechanism::for_release(CheriBsdRelease::R26_07).unwrap(),
            C18nMechanism::FeatureNote
        );
        let old = CheriBsdRelease { year: 22, month: 5 };
        assert_eq!(
            C18nMechanism::for_release(old),
            Err(C18nError::Unsupported(old))
        );
        C18nMechanism::Procctl
            .check(CheriBsdRelease::R25_03)
            .unwrap();
        let err = C18nMechanism::Procctl
            .check(CheriBsdRelease::R23_11)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("available: the ld-elf-c18n.so.1 interpreter"),
            "{err}"
        );
        assert!(
            C18nMechanism::Interpreter
                .check(CheriBsdRelease::R24_05)
                .is_err()
        );
    }

    #[test]
    fn exact_command_lines_per_release() {
        let src = Path::new("/srv/build/7/integration_process.c");
        let sdk = Path::new("/srv/sdk/attestable.c");
        let out = Path::new("/srv/build/7/integration_process");
        let flags = ["-O2".to_owned(), "-g".to_owned(), "-Wall".to_owned()];

        // 22.12 / 23.11: the c18n interpreter, as the CAMB launcher linked it.
        assert_eq!(
            compile_command(
                &Compiler::CcWrapper,
                C18nMechanism::Interpreter,
                &flags,
                &[src, sdk],
                out,
                &["crypto"]
            ),
            [
                "cc",
                "-O2",
                "-g",
                "-Wall",
                "-Wl,--dynamic-linker=/libexec/ld-elf-c18n.so.1",
                "-o",
                "/srv/build/7/integration_process",
                "/srv/build/7/integration_process.c",
                "/srv/sdk/attestable.c",
                "-lcrypto"
            ]
        );
        assert!(
            C18nMechanism::Interpreter
                .post_link_commands(out)
                .is_empty()
        );

        // 24.05+: plain purecap link, then elfctl before hashing.
        assert_eq!(
            compile_command(
                &Compiler::ClangMorello("/usr/local64/bin/clang-morello".into()),
                C18nMechanism::FeatureNote,
                &flags,
                &[src],
                out,
                &["crypto"]
            ),
            [
                "/usr/local64/bin/clang-morello",
                "-march=morello",
                "-mabi=purecap",
                "-O2",
                "-g",
                "-Wall",
                "-o",
                "/srv/build/7/integration_process",
                "/srv/build/7/integration_process.c",
                "-lcrypto"
            ]
        );
        assert_eq!(
            C18nMechanism::FeatureNote.post_link_commands(out),
            [
                vec![
                    "elfctl",
                    "-e",
                    "+cheric18n",
                    "/srv/build/7/integration_process"
                ],
                vec!["elfctl", "/srv/build/7/integration_process"],
            ]
        );
        assert!(C18nMechanism::Procctl.post_link_commands(out).is_empty());
        assert_eq!(
            proccontrol_command(out, &["--once".into()]),
            [
                "proccontrol",
                "-m",
                "cheric18n",
                "-s",
                "enable",
                "/srv/build/7/integration_process",
                "--once"
            ]
        );
    }

    #[test]
    fn environment_per_mechanism() {
        assert_eq!(
            C18nMechanism::Interpreter.run_environment(Some("/usr/lib:/srv/lib")),
            [(
                "LD_C18N_LIBRARY_PATH".to_owned(),
                "/usr/lib:/srv/lib".to_owned()
            )]
        );
        assert!(C18nMechanism::FeatureNote.run_environment(None).is_empty());
        check_environment([("ATTESTABLE_FD", "3")], C18nMechanism::FeatureNote).unwrap();
        check_environment([("LD_C18N_LIBRARY_PATH", "/x")], C18nMechanism::Interpreter).unwrap();
        for bad in [
            "LD_COMPARTMENT_DISABLE",
            "LD_C18N_UTRACE_COMPARTMENT",
            "LD_PRELOAD",
        ] {
            let err = check_environment([(bad, "1")], C18nMechanism::FeatureNote).unwrap_err();
            assert_eq!(err, C18nError::LinkerVariable(bad.into()));
        }
        assert!(
            check_environment([("LD_C18N_LIBRARY_PATH", "/x")], C18nMechanism::FeatureNote)
                .is_err()
        );
    }

    /// The output format of CheriBSD's `elfctl FILE`
    /// (`"%-16s'%s' is "` + `"un"`? + `"set.\n"`).
    const ELFCTL_ON: &str = "File '/srv/build/7/integration_process' features:\n\
noaslr          'Disable ASLR' is unset.\n\
noprotmax       'Disable implicit PROT_MAX' is unset.\n\
nostackgap      'Disable stack gap' is unset.\n\
wxneeded        'Requires W+X mappings' is unset.\n\
la48            'amd64: Limit user VA to 48bit' is unset.\n\
cherirevoke     'Force Enable CHERI revocation' is unset.\n\
nocherirevoke   'Force Disable CHERI revocation' is unset.\n\
cheric18n       'Force Enable CHERI library-based compartmentalisation' is set.\n\
nocheric18n     'Force Disable CHERI library-based compartmentalisation' is unset.\n";

    #[test]
    fn elfctl_output_is_parsed_and_verified() {
        let f = parse_elfctl_features(ELFCTL_ON).unwrap();
        assert_eq!(f.len(), 9);
        assert!(f["cheric18n"]);
        assert!(!f["noaslr"]);
        let elf = purecap(DEFAULT_INTERPRETER);
        let detail = verify(C18nMechanism::FeatureNote, &elf, Some(ELFCTL_ON)).unwrap();
        assert!(
            detail.contains("cheric18n ELF feature note set"),
            "{detail}"
        );

        let off = ELFCTL_ON.replace(
            "compartmentalisation' is set.",
            "compartmentalisation' is unset.",
        );
        let err = verify(C18nMechanism::FeatureNote, &elf, Some(&off)).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected feature cheric18n set, found unset"),
            "{err}"
        );
        assert!(verify(C18nMechanism::FeatureNote, &elf, None).is_err());
        assert!(matches!(
            parse_elfctl_features("garbage"),
            Err(C18nError::ElfctlOutput(_))
        ));
        assert!(parse_elfctl_features("").is_err());
    }

    #[test]
    fn interpreter_mechanism_is_verified_from_the_measured_bytes() {
        let ok = purecap(C18N_INTERPRETER);
        assert_eq!(
            verify(C18nMechanism::Interpreter, &ok, None).unwrap(),
            "interpreter /libexec/ld-elf-c18n.so.1"
        );
        let plain = purecap(DEFAULT_INTERPRETER);
        let err = verify(C18nMechanism::Interpreter, &plain, None).unwrap_err();
        assert!(
            err.to_string().contains(
                "expected interpreter /libexec/ld-elf-c18n.so.1, found /libexec/ld-elf.so.1"
            ),
            "{err}"
        );
        assert!(
            verify(C18nMechanism::Procctl, &plain, None)
                .unwrap()
                .contains("1003")
        );
    }
}
