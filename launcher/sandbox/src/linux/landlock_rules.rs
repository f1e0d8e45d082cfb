//! The Landlock ruleset: built (and its rules added) before fork, so the
//! child only calls `landlock_restrict_self` on the descriptor.
//!
//! Handled: every file-system right, TCP bind/connect and both scopes
//! (abstract Unix sockets, signals) that the running kernel knows; the crate
//! drops, in best-effort mode, what an older kernel lacks, and the report
//! says which ABI was in force. Granted: only the rules below. So TCP is
//! denied entirely, and the program cannot signal or reach an abstract
//! socket outside its own sandbox.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, Scope, make_bitflags,
};

use crate::error::SpawnError;
use crate::layers::LayerName;
use crate::spec::{Access as PathAccess, PathRule};

/// The newest ABI the `landlock` crate knows; best-effort compatibility
/// trims it to the kernel's.
const REQUESTED_ABI: ABI = ABI::V10;

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`.
pub(crate) fn kernel_abi() -> io::Result<i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the version query takes no attribute pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as i32)
    }
}

/// Why Landlock is missing, for a person.
pub(crate) fn explain_unavailable(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ENOSYS) => {
            "the kernel is built without Landlock (CONFIG_SECURITY_LANDLOCK), landlock_create_ruleset: ENOSYS".into()
        }
        Some(libc::EOPNOTSUPP) => {
            "Landlock is disabled at boot (add \"landlock\" to the lsm= kernel parameter), landlock_create_ruleset: EOPNOTSUPP".into()
        }
        _ => format!("landlock_create_ruleset version query failed: {err}"),
    }
}

/// What each kernel ABI enforces, for the layer report.
pub(crate) fn abi_features(abi: i32) -> String {
    let mut f = vec!["file system"];
    if abi >= 2 {
        f.push("refer");
    }
    if abi >= 3 {
        f.push("truncate");
    }
    if abi >= 4 {
        f.push("tcp bind/connect denied");
    }
    if abi >= 5 {
        f.push("device ioctl");
    }
    if abi >= 6 {
        f.push("abstract unix sockets and signals scoped");
    }
    if abi >= 9 {
        f.push("unix path sockets");
    }
    format!("ABI {abi}: {}", f.join(", "))
}

fn directory_rights(access: PathAccess) -> BitFlags<AccessFs> {
    let read = make_bitflags!(AccessFs::{ReadFile | ReadDir});
    match access {
        PathAccess::Read => read,
        PathAccess::ReadExecute => read | AccessFs::Execute,
        // Everything the kernel knows except executing, device nodes,
        // socket files and device ioctls.
        PathAccess::ReadWrite => {
            AccessFs::from_all(REQUESTED_ABI)
                & !(make_bitflags!(AccessFs::{Execute | MakeChar | MakeBlock | MakeSock | IoctlDev}))
        }
    }
}

fn file_rights(access: PathAccess) -> BitFlags<AccessFs> {
    match access {
        PathAccess::Read => AccessFs::ReadFile.into(),
        PathAccess::ReadExecute => AccessFs::ReadFile | AccessFs::Execute,
        PathAccess::ReadWrite => make_bitflags!(AccessFs::{ReadFile | WriteFile | Truncate}),
    }
}

fn landlock_error(e: landlock::RulesetError) -> SpawnError {
    SpawnError::Prepare {
        step: "building the Landlock ruleset",
        source: io::Error::other(e.to_string()),
    }
}

/// The ruleset descriptor and the paths it grants, for the report.
pub(crate) struct Built {
    pub fd: OwnedFd,
    pub abi: i32,
    pub granted: Vec<(String, PathAccess)>,
}

pub(crate) fn build(workdir: &Path, rules: &[PathRule]) -> Result<Built, SpawnError> {
    let abi = kernel_abi().map_err(|e| SpawnError::LayerUnavailable {
        layer: LayerName::Landlock,
        reason: explain_unavailable(&e),
    })?;
    if abi < 1 {
        return Err(SpawnError::LayerUnavailable {
            layer: LayerName::Landlock,
            reason: format!("kernel reports Landlock ABI {abi}"),
        });
    }

    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(REQUESTED_ABI))
        .map_err(landlock_error)?
        .handle_access(AccessNet::from_all(REQUESTED_ABI))
        .map_err(landlock_error)?
        .scope(Scope::from_all(REQUESTED_ABI))
        .map_err(landlock_error)?
        .create()
        .map_err(landlock_error)?
        // The child sets PR_SET_NO_NEW_PRIVS itself (its own layer).
        .no_new_privs(false);

    let mut granted = Vec::new();
    let workdir_rule = PathRule::new(workdir, PathAccess::ReadWrite);
    for rule in std::iter::once(&workdir_rule).chain(rules) {
        let meta = match std::fs::metadata(&rule.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !rule.required => continue,
            Err(e) => {
                return Err(SpawnError::Path {
                    path: rule.path.clone(),
                    reason: format!("cannot be granted to the sandbox: {e}"),
                });
            }
        };
        let rights = if meta.is_dir() {
            directory_rights(rule.access)
        } else {
            file_rights(rule.access)
        };
        let fd = PathFd::new(&rule.path).map_err(|e| SpawnError::Path {
            path: rule.path.clone(),
            reason: format!("cannot be opened for a Landlock rule: {e}"),
        })?;
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, rights))
            .map_err(landlock_error)?;
        granted.push((rule.path.display().to_string(), rule.access));
    }

    let fd: Option<OwnedFd> = ruleset.into();
    let fd = fd.ok_or_else(|| SpawnError::LayerUnavailable {
        layer: LayerName::Landlock,
        reason: "the kernel did not create a ruleset".into(),
    })?;
    Ok(Built { fd, abi, granted })
}

impl Built {
    pub(crate) fn detail(&self) -> String {
        let list = |want: PathAccess| {
            let v: Vec<&str> = self
                .granted
                .iter()
                .filter(|(_, a)| *a == want)
                .map(|(p, _)| p.as_str())
                .collect();
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(" ")
            }
        };
        format!(
            "{}; read: {}; read+execute: {}; read-write: {}; nothing else",
            abi_features(self.abi),
            list(PathAccess::Read),
            list(PathAccess::ReadExecute),
            list(PathAccess::ReadWrite)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_grow_with_the_abi() {
        assert_eq!(abi_features(1), "ABI 1: file system");
        let f = abi_features(7);
        assert!(f.contains("tcp bind/connect denied"), "{f}");
        assert!(f.contains("signals scoped"), "{f}");
        assert!(!f.contains("unix path sockets"), "{f}");
    }

    #[test]
    fn unavailability_is_explained() {
        let e = io::Error::from_raw_os_error(libc::EOPNOTSUPP);
        assert!(explain_unavailable(&e).contains("disabled at boot"));
        let e = io::Error::from_raw_os_error(libc::ENOSYS);
        assert!(explain_unavailable(&e).contains("built without Landlock"));
    }

    #[test]
    fn write_access_never_includes_execute_or_devices() {
        let rw = directory_rights(PathAccess::ReadWrite);
        assert!(!rw.contains(AccessFs::Execute));
        assert!(!rw.contains(AccessFs::MakeChar));
        assert!(!rw.contains(AccessFs::MakeSock));
        assert!(rw.contains(AccessFs::WriteFile));
        assert!(rw.contains(AccessFs::RemoveFile));
        assert!(!file_rights(PathAccess::Read).contains(AccessFs::WriteFile));
    }
}
