//! Finding out which layers this machine can provide, by trying them: a
//! dry run performs the complete child set-up of a sandbox (the very code a
//! spawn runs) and exits where it would execute. A layer that fails is
//! reported unavailable with the reason, and the dry run is repeated
//! without it until the rest succeed.

use std::io;
use std::path::{Path, PathBuf};

use super::landlock_rules;
use super::spawn::dry_run_layers;
use crate::error::SpawnError;
use crate::layers::{Backend, DisabledLayers, Layer, LayerName, LayerStatus};
use crate::limits::Limits;
use crate::spec::SandboxSpec;

fn read_sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Kernel settings that commonly forbid user namespaces, for a person
/// reading why the namespaces layer is missing.
pub(crate) fn userns_hint() -> String {
    let mut hints = Vec::new();
    if let Some(v) = read_sysctl("/proc/sys/user/max_user_namespaces") {
        hints.push(format!("user.max_user_namespaces = {v}"));
    }
    if let Some(v) = read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") {
        hints.push(format!("kernel.unprivileged_userns_clone = {v}"));
    }
    if let Some(v) = read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") {
        hints.push(format!(
            "kernel.apparmor_restrict_unprivileged_userns = {v}"
        ));
    }
    if hints.is_empty() {
        "no user-namespace sysctls found".into()
    } else {
        hints.join(", ")
    }
}

fn seccomp_hint() -> Option<&'static str> {
    // SAFETY: PR_GET_SECCOMP takes no pointer arguments.
    let rc = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    if rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        Some("the kernel is built without CONFIG_SECCOMP")
    } else if rc == 2 {
        Some("the launcher itself runs under a seccomp filter, which may forbid it")
    } else {
        None
    }
}

/// Turns a failed dry run into the layer it shows missing, with a reason a
/// person can act on. `None` when the failure is not attributable to one
/// layer.
pub(crate) fn unavailable_layer(err: &SpawnError) -> Option<Layer> {
    let layer = err.layer()?;
    let mut reason = match err {
        SpawnError::LayerUnavailable { reason, .. } => reason.clone(),
        SpawnError::ChildSetup { stage, source, .. } => format!("{stage}: {source}"),
        other => other.to_string(),
    };
    let extra = match layer {
        LayerName::Landlock => landlock_rules::kernel_abi()
            .err()
            .map(|e| landlock_rules::explain_unavailable(&e)),
        LayerName::Seccomp => seccomp_hint().map(str::to_owned),
        LayerName::Namespaces if !reason.contains("user.max_user_namespaces") => {
            Some(userns_hint())
        }
        _ => None,
    };
    if let Some(extra) = extra
        && !reason.contains(&extra)
    {
        reason = format!("{reason} ({extra})");
    }
    Some(Layer::unavailable(layer, reason))
}

/// A scratch folder for the dry runs, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> io::Result<Scratch> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sandbox-probe-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)?;
        Ok(Scratch(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Probes every `linux-sandbox` layer. Layers in `disabled` are reported
/// disabled (with their reason) and not tried.
pub(crate) fn probe(disabled: &DisabledLayers) -> Vec<Layer> {
    let all = Backend::LinuxSandbox.layers();
    let mut off = disabled.clone();
    let mut missing: Vec<Layer> = Vec::new();

    let scratch = match Scratch::new() {
        Ok(s) => s,
        Err(e) => {
            return untested(
                all,
                disabled,
                &format!(
                    "no scratch folder for the probe in {}: {e}",
                    std::env::temp_dir().display()
                ),
            );
        }
    };

    let mut active: Vec<Layer> = Vec::new();
    // At most one round per layer, plus the final successful one.
    for _ in 0..=all.len() {
        let spec = SandboxSpec::compile("/bin/true", scratch.path())
            .limits(Limits::default())
            .disabled_layers(off.clone());
        match dry_run_layers(spec) {
            Ok(layers) => {
                active = layers;
                break;
            }
            Err(err) => match unavailable_layer(&err) {
                Some(layer) if !off.contains(layer.name) => {
                    off.disable(layer.name, "unavailable on this machine");
                    missing.push(layer);
                }
                _ => {
                    let reason = format!("the probe could not complete: {err}");
                    let mut out = untested(all, disabled, &reason);
                    for m in missing {
                        if let Some(slot) = out.iter_mut().find(|l| l.name == m.name) {
                            *slot = m;
                        }
                    }
                    return out;
                }
            },
        }
    }

    all.iter()
        .map(|&name| {
            if let Some(reason) = disabled.reason(name) {
                return Layer::disabled(name, reason);
            }
            if let Some(m) = missing.iter().find(|l| l.name == name) {
                return m.clone();
            }
            match active
                .iter()
                .find(|l| l.name == name && l.status == LayerStatus::Active)
            {
                Some(l) if name == LayerName::Landlock => Layer::active(
                    name,
                    landlock_rules::kernel_abi()
                        .map(landlock_rules::abi_features)
                        .unwrap_or_else(|_| l.detail.clone()),
                ),
                Some(l) => l.clone(),
                None => Layer::unavailable(name, "not confirmed by the probe"),
            }
        })
        .collect()
}

fn untested(all: &[LayerName], disabled: &DisabledLayers, reason: &str) -> Vec<Layer> {
    all.iter()
        .map(|&name| match disabled.reason(name) {
            Some(r) => Layer::disabled(name, r),
            None => Layer::unavailable(name, reason),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_failures_name_their_layer_and_reason() {
        let err = SpawnError::ChildSetup {
            stage: "landlock_restrict_self".into(),
            layer: Some(LayerName::Landlock),
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        let l = unavailable_layer(&err).unwrap();
        assert_eq!(l.name, LayerName::Landlock);
        assert_eq!(l.status, LayerStatus::Unavailable);
        assert!(
            l.detail.starts_with("landlock_restrict_self: "),
            "{}",
            l.detail
        );

        let err = SpawnError::LayerUnavailable {
            layer: LayerName::Namespaces,
            reason: "clone with new namespaces failed: EPERM".into(),
        };
        let l = unavailable_layer(&err).unwrap();
        assert!(
            l.detail.contains("clone with new namespaces failed"),
            "{}",
            l.detail
        );
        assert!(
            l.detail.contains("user.max_user_namespaces"),
            "{}",
            l.detail
        );

        let err = SpawnError::InvalidSpec("argv is empty".into());
        assert!(unavailable_layer(&err).is_none());
    }
}
