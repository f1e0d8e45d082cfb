//! A pre-flight check of Unix permissions for the sandbox's uid. A root
//! launcher runs the sandbox as `nobody`; a path it grants through Landlock
//! is still useless if an ancestor folder is mode 0700 root. Failing here
//! names the folder and its mode instead of an `EACCES` from deep inside
//! the program. ACLs are not consulted (they can only widen access).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::SpawnError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    Read,
    ReadWrite,
}

/// Which of rwx (bits 4, 2, 1) `uid`/`gid` gets from `mode`, owner and group.
fn granted(mode: u32, owner: u32, group: u32, uid: u32, gid: u32) -> u32 {
    if uid == 0 {
        return 0o7;
    }
    if owner == uid {
        (mode >> 6) & 0o7
    } else if group == gid {
        (mode >> 3) & 0o7
    } else {
        mode & 0o7
    }
}

pub(crate) fn check_reachable(
    path: &Path,
    uid: u32,
    gid: u32,
    want: Want,
) -> Result<(), SpawnError> {
    let fail = |p: &Path, reason: String| SpawnError::Path {
        path: p.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(path, e.to_string()))?;
    for ancestor in path.ancestors().skip(1) {
        if ancestor.as_os_str().is_empty() {
            continue;
        }
        let m = std::fs::metadata(ancestor).map_err(|e| fail(ancestor, e.to_string()))?;
        if granted(m.mode(), m.uid(), m.gid(), uid, gid) & 0o1 == 0 {
            return Err(fail(
                ancestor,
                format!(
                    "the sandbox (uid {uid}) cannot enter this folder on the way to {}: expected search (x) permission, found mode {:o} owner {} group {}",
                    path.display(),
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid()
                ),
            ));
        }
    }
    let bits = granted(meta.mode(), meta.uid(), meta.gid(), uid, gid);
    let (need, need_text) = match (want, meta.is_dir()) {
        (Want::Read, true) => (0o5, "r-x"),
        (Want::Read, false) => (0o4, "r--"),
        (Want::ReadWrite, true) => (0o7, "rwx"),
        (Want::ReadWrite, false) => (0o6, "rw-"),
    };
    if bits & need != need {
        return Err(fail(
            path,
            format!(
                "the sandbox (uid {uid}) needs {need_text} here, found mode {:o} owner {} group {}",
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_classes() {
        assert_eq!(granted(0o750, 5, 6, 5, 9), 0o7);
        assert_eq!(granted(0o750, 5, 6, 7, 6), 0o5);
        assert_eq!(granted(0o750, 5, 6, 7, 8), 0o0);
        assert_eq!(granted(0o000, 5, 6, 0, 0), 0o7);
    }

    #[test]
    fn reports_the_blocking_ancestor() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let me = unsafe { libc::geteuid() };
        let stranger = if me == 65534 { 65533 } else { 65534 };
        let err = check_reachable(&inner, stranger, stranger, Want::Read).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        assert!(text.contains("found mode 700"), "{text}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.path().join("a"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o755)).unwrap();
        check_reachable(&inner, stranger, stranger, Want::Read).unwrap();
        let err = check_reachable(&inner, stranger, stranger, Want::ReadWrite).unwrap_err();
        assert!(err.to_string().contains("needs rwx"), "{err}");
    }
}
