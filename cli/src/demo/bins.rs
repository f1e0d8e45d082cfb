//! The `launcher` and `mock-services` binaries the demo starts.
//!
//! `cargo run --release --bin attestable` builds only the CLI, so the demo
//! builds the other two with the same cargo, profile and target folder (the
//! workspace's manifest is known at compile time), which puts them beside its
//! own executable. `--bin-dir DIR` uses DIR instead and builds nothing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{CliError, Result};

pub const LAUNCHER: &str = "launcher";
pub const MOCK_SERVICES: &str = "mock-services";

/// Where the binaries are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    pub dir: PathBuf,
}

impl Binaries {
    pub fn launcher(&self) -> PathBuf {
        self.dir.join(LAUNCHER)
    }

    pub fn mock_services(&self) -> PathBuf {
        self.dir.join(MOCK_SERVICES)
    }

    /// Both must be files (the build made them, or `--bin-dir` names them).
    pub fn check(&self) -> Result<()> {
        for path in [self.launcher(), self.mock_services()] {
            if !path.is_file() {
                return Err(CliError::Input(format!(
                    "{} does not exist; build it with `cargo build --release -p launcher -p \
                     mock-services` and pass the folder it is in with --bin-dir",
                    path.display()
                )));
            }
        }
        Ok(())
    }
}

/// The cargo command that builds the binaries beside this executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    pub cargo: OsString,
    pub args: Vec<OsString>,
    pub binaries: Binaries,
}

impl BuildPlan {
    /// For a person: `cargo build --release -p launcher -p mock-services`.
    pub fn describe(&self) -> String {
        let mut words = vec!["cargo".to_owned(), "build".to_owned()];
        let mut args = self.args.iter().skip(1).map(|a| a.to_string_lossy());
        while let Some(arg) = args.next() {
            match arg.as_ref() {
                // Where cargo already puts things: not worth a person's attention.
                "--manifest-path" | "--target-dir" => {
                    args.next();
                }
                other => words.push(other.to_owned()),
            }
        }
        words.join(" ")
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.cargo);
        command.args(&self.args);
        command
    }
}

/// Plans the build for the executable at `exe` (in `<target>/<profile>/`)
/// of the workspace whose manifest is `manifest`; `cargo` is `$CARGO` when
/// cargo started us, else `cargo` from PATH.
pub fn plan(exe: &Path, manifest: &Path, cargo: Option<OsString>) -> Result<BuildPlan> {
    let profile_dir = exe
        .parent()
        .ok_or_else(|| no_workspace(exe, "has no folder"))?;
    let target_dir = profile_dir
        .parent()
        .filter(|t| t.join("CACHEDIR.TAG").is_file())
        .ok_or_else(|| no_workspace(exe, "is not in a cargo target folder"))?;
    if !manifest.is_file() {
        return Err(no_workspace(
            exe,
            &format!(
                "was built from a workspace that is gone ({} does not exist)",
                manifest.display()
            ),
        ));
    }
    let mut args: Vec<OsString> = vec!["build".into()];
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => args.push("--release".into()),
        Some(other) => {
            args.push("--profile".into());
            args.push(other.into());
        }
        None => return Err(no_workspace(exe, "is in a folder without a name")),
    }
    for package in [LAUNCHER, MOCK_SERVICES] {
        args.push("-p".into());
        args.push(package.into());
    }
    args.push("--manifest-path".into());
    args.push(manifest.into());
    args.push("--target-dir".into());
    args.push(target_dir.into());
    Ok(BuildPlan {
        cargo: cargo.unwrap_or_else(|| "cargo".into()),
        args,
        binaries: Binaries {
            dir: profile_dir.to_path_buf(),
        },
    })
}

/// The plan for this executable and the workspace it was built from.
pub fn plan_here() -> Result<BuildPlan> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Input(format!("cannot tell where this executable is: {e}")))?;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|root| root.join("Cargo.toml"))
        .unwrap_or_default();
    plan(
        &exe,
        &manifest,
        std::env::var_os("CARGO").filter(|c| !c.is_empty()),
    )
}

fn no_workspace(exe: &Path, why: &str) -> CliError {
    CliError::Input(format!(
        "cannot build the launcher and the services: this executable ({}) {why}; run the demo \
         from the workspace (`cargo run --release --bin attestable -- demo`), or pass --bin-dir \
         with the folder holding `launcher` and `mock-services`",
        exe.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), "[workspace]\n").unwrap();
        for profile in ["debug", "release", "bench-like"] {
            std::fs::create_dir_all(dir.path().join("target").join(profile)).unwrap();
        }
        std::fs::write(dir.path().join("target/CACHEDIR.TAG"), "").unwrap();
        let manifest = dir.path().join("Cargo.toml");
        (dir, manifest)
    }

    #[test]
    fn the_build_uses_this_executables_profile_and_target_folder() {
        let (dir, manifest) = workspace();
        let target = dir.path().join("target");
        let release = plan(&target.join("release/attestable"), &manifest, None).unwrap();
        assert_eq!(
            release.describe(),
            "cargo build --release -p launcher -p mock-services"
        );
        assert_eq!(release.binaries.launcher(), target.join("release/launcher"));
        let args: Vec<String> = release
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
        assert_eq!(at("--manifest-path"), manifest.display().to_string());
        assert_eq!(at("--target-dir"), target.display().to_string());

        let debug = plan(
            &target.join("debug/attestable"),
            &manifest,
            Some("/opt/cargo".into()),
        )
        .unwrap();
        assert_eq!(debug.cargo, OsString::from("/opt/cargo"));
        assert_eq!(debug.describe(), "cargo build -p launcher -p mock-services");
        let custom = plan(&target.join("bench-like/attestable"), &manifest, None).unwrap();
        assert_eq!(
            custom.describe(),
            "cargo build --profile bench-like -p launcher -p mock-services"
        );
    }

    #[test]
    fn outside_a_target_folder_it_asks_for_bin_dir() {
        let (dir, manifest) = workspace();
        let err = plan(&dir.path().join("bin/attestable"), &manifest, None).unwrap_err();
        assert!(err.to_string().contains("--bin-dir"), "{err}");
        let gone = plan(
            &dir.path().join("target/release/attestable"),
            &dir.path().join("elsewhere/Cargo.toml"),
            None,
        )
        .unwrap_err();
        assert!(gone.to_string().contains("is gone"), "{gone}");
    }

    #[test]
    fn missing_binaries_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let bins = Binaries {
            dir: dir.path().to_path_buf(),
        };
        let err = bins.check().unwrap_err().to_string();
        assert!(err.contains("launcher does not exist"), "{err}");
        std::fs::write(bins.launcher(), "").unwrap();
        std::fs::write(bins.mock_services(), "").unwrap();
        bins.check().unwrap();
    }
}
