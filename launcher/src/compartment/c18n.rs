//! How the `cheri-c18n` backend gives builds and runs library
//! compartmentalisation, per CheriBSD release. The decisions (release
//! detection, mechanism, link flags, post-link commands, run environment)
//! are pure and tested on every host; only reading `elfctl`'s report of the
//! stored executable before a run is FreeBSD-only.
//!
//! | release | build | run |
//! |---|---|---|
//! | 22.12, 23.11 | link with `-Wl,--dynamic-linker=/libexec/ld-elf-c18n.so.1` | `LD_C18N_LIBRARY_PATH` if configured |
//! | 24.05 and later | `elfctl -e +cheric18n` on the linked executable, *before* it is hashed | checked from `elfctl`'s report of the stored file |

use launcher_sandbox::cheri::{C18nMechanism, CheriBsdRelease, CheriRun, release};

use super::BuildSteps;

/// The c18n mechanism chosen at start-up for this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C18nSetup {
    pub release: CheriBsdRelease,
    pub mechanism: C18nMechanism,
    /// For libraries outside the run-time linker's default paths.
    pub library_path: Option<String>,
}

impl C18nSetup {
    /// The release from `kern.osrelease` / `kern.version` (or the operator's
    /// `[compartment] cheribsd_release`) and its preferred mechanism.
    pub fn detect(
        osrelease: &str,
        version: &str,
        configured_release: Option<&str>,
        library_path: Option<String>,
    ) -> Result<Self, String> {
        let release =
            release::detect(osrelease, version, configured_release).map_err(|e| e.to_string())?;
        let mechanism = C18nMechanism::for_release(release).map_err(|e| e.to_string())?;
        Ok(C18nSetup {
            release,
            mechanism,
            library_path,
        })
    }

    /// What every build gets: link flags, and the post-link steps.
    pub fn build_steps(&self) -> BuildSteps {
        BuildSteps {
            link_flags: self.mechanism.link_flags(),
            c18n: Some(self.mechanism),
        }
    }

    /// The spec's c18n part for a run; `elfctl_output` is `elfctl`'s report
    /// of the file that was measured (the feature-note mechanism needs it).
    pub fn run(&self, elfctl_output: Option<String>) -> CheriRun {
        CheriRun {
            mechanism: self.mechanism,
            library_path: self.library_path.clone(),
            elfctl_output,
        }
    }
}

/// `elfctl FILE` for the stored executable, when the mechanism needs it.
#[cfg(target_os = "freebsd")]
pub fn elfctl_report(
    mechanism: C18nMechanism,
    executable: &std::path::Path,
) -> Result<Option<String>, String> {
    if mechanism != C18nMechanism::FeatureNote {
        return Ok(None);
    }
    let argv = launcher_sandbox::cheri::c18n::elfctl_query(executable);
    let output = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .output()
        .map_err(|e| format!("running {}: {e}", argv.join(" ")))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            argv.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(Some(String::from_utf8_lossy(&output.stdout).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_release_gets_its_mechanism_and_build_steps() {
        let old = C18nSetup::detect(
            "14.0-CURRENT",
            "FreeBSD 14.0-CURRENT #0 releng/23.11-5a1b2c3: …",
            None,
            Some("/usr/local/lib".into()),
        )
        .unwrap();
        assert_eq!(old.release, CheriBsdRelease::R23_11);
        assert_eq!(old.mechanism, C18nMechanism::Interpreter);
        let steps = old.build_steps();
        assert_eq!(
            steps.link_flags,
            ["-Wl,--dynamic-linker=/libexec/ld-elf-c18n.so.1"]
        );
        assert!(
            steps
                .post_link_commands(std::path::Path::new("/b/1/out/p"))
                .is_empty()
        );
        assert_eq!(
            old.run(None),
            CheriRun {
                mechanism: C18nMechanism::Interpreter,
                library_path: Some("/usr/local/lib".into()),
                elfctl_output: None,
            }
        );

        let new = C18nSetup::detect(
            "15.0-CURRENT",
            "FreeBSD 15.0 (GENERIC)",
            Some("24.05"),
            None,
        )
        .unwrap();
        assert_eq!(new.mechanism, C18nMechanism::FeatureNote);
        let steps = new.build_steps();
        assert!(steps.link_flags.is_empty());
        assert_eq!(
            steps.post_link_commands(std::path::Path::new("/b/1/out/p")),
            [
                vec!["elfctl", "-e", "+cheric18n", "/b/1/out/p"],
                vec!["elfctl", "/b/1/out/p"]
            ]
        );
    }

    #[test]
    fn an_unknown_or_too_old_release_says_why() {
        let err =
            C18nSetup::detect("15.0-CURRENT", "FreeBSD 15.0 (GENERIC)", None, None).unwrap_err();
        assert!(err.contains("set the release explicitly"), "{err}");
        let err = C18nSetup::detect("13.0", "x", Some("22.05"), None).unwrap_err();
        assert!(err.contains("no library compartmentalisation"), "{err}");
    }
}
