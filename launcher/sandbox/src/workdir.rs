//! The sandbox's private working folder: checked, and handed to the
//! sandbox's user when the launcher is root.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::SpawnError;

fn fail(path: &Path, reason: String) -> SpawnError {
    SpawnError::Path {
        path: path.to_owned(),
        reason,
    }
}

/// Checks that `workdir` is an absolute path to a directory and, for a root
/// launcher (`chown_to` = the sandbox's outer uid/gid), makes it owned by
/// the sandbox's user with mode 0700 at least for that user.
pub(crate) fn prepare(workdir: &Path, chown_to: Option<u32>) -> Result<(), SpawnError> {
    if !workdir.is_absolute() {
        return Err(fail(
            workdir,
            "the working folder must be an absolute path".into(),
        ));
    }
    let meta =
        std::fs::metadata(workdir).map_err(|e| fail(workdir, format!("working folder: {e}")))?;
    if !meta.is_dir() {
        return Err(fail(
            workdir,
            "the working folder is not a directory".into(),
        ));
    }
    let Some(id) = chown_to else {
        return Ok(());
    };
    if meta.uid() != id || meta.gid() != id {
        std::os::unix::fs::chown(workdir, Some(id), Some(id)).map_err(|e| {
            fail(
                workdir,
                format!("cannot hand the working folder to uid {id}: {e}"),
            )
        })?;
    }
    if meta.mode() & 0o700 != 0o700 {
        std::fs::set_permissions(workdir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            fail(
                workdir,
                format!("cannot make the working folder accessible: {e}"),
            )
        })?;
    }
    Ok(())
}
