//! Choosing the compartment at start-up: the platform's backend
//! (`linux-sandbox` on Linux, `cheri-c18n` on CheriBSD) with every layer
//! probed once, or `none` with `--insecure-no-compartment`.
//!
//! Layer status is never silent. A layer the machine lacks makes the
//! backend refuse every build and run ([`Compartment::refusal`]) with a
//! message naming the layer, the reason, and the two ways out: allow it
//! degraded, or fix the machine. A layer named in `--allow-degraded` is
//! disabled for every spawn and recorded as such (with what the probe found).

use std::sync::Arc;

use launcher_sandbox::{Backend, DisabledLayers, Layer, LayerName, LayerStatus};

use super::Compartment;
use super::c18n::C18nSetup;
use super::sandboxed::Sandboxed;
use super::unconfined::Unconfined;
use crate::config::CompartmentConfig;

/// What the operator asked for on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The platform's backend; the named layers may be missing and are
    /// switched off (`--allow-degraded LAYER[,LAYER]`).
    Native { allow_degraded: Vec<String> },
    /// No compartment at all (`--insecure-no-compartment`).
    Insecure,
}

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("--allow-degraded {name}: {backend} has no such layer (its layers: {known})")]
    UnknownLayer {
        name: String,
        backend: Backend,
        known: String,
    },
    #[error(
        "this operating system ({os}) has no compartment backend (linux-sandbox needs Linux, \
         cheri-c18n CheriBSD); start the launcher with --insecure-no-compartment to run \
         programs unconfined"
    )]
    NoBackend { os: &'static str },
    #[error("{0}")]
    Invalid(String),
}

/// Builds the compartment `choice` asks for, probing the machine once.
pub fn select(
    choice: &Choice,
    config: &CompartmentConfig,
) -> Result<Arc<dyn Compartment>, SelectError> {
    let allow_degraded = match choice {
        Choice::Insecure => return Ok(Arc::new(Unconfined)),
        Choice::Native { allow_degraded } => allow_degraded,
    };
    let backend = Backend::native().ok_or(SelectError::NoBackend {
        os: std::env::consts::OS,
    })?;
    let degraded = parse_degraded(backend, allow_degraded)?;
    let (probed, c18n) = probe(backend, config)?;
    let planned = plan(&probed, &degraded);
    Ok(Arc::new(Sandboxed::new(backend, planned, degraded, c18n)))
}

#[cfg(not(target_os = "freebsd"))]
fn probe(
    _backend: Backend,
    _config: &CompartmentConfig,
) -> Result<(Vec<Layer>, Option<C18nSetup>), SelectError> {
    Ok((launcher_sandbox::probe(), None))
}

#[cfg(target_os = "freebsd")]
fn probe(
    _backend: Backend,
    config: &CompartmentConfig,
) -> Result<(Vec<Layer>, Option<C18nSetup>), SelectError> {
    let layers =
        launcher_sandbox::probe_cheri(&DisabledLayers::new(), config.cheribsd_release.as_deref());
    let uname =
        attestable_data::probe::uname().map_err(|e| SelectError::Invalid(format!("uname: {e}")))?;
    // Without a known release the c18n layer is already reported
    // unavailable (with the reason); runs then need --allow-degraded c18n.
    let c18n = C18nSetup::detect(
        &uname.release,
        &uname.version,
        config.cheribsd_release.as_deref(),
        config.c18n_library_path.clone(),
    )
    .ok();
    Ok((layers, c18n))
}

/// Validates `--allow-degraded` names against `backend`'s layers.
pub fn parse_degraded(backend: Backend, names: &[String]) -> Result<Vec<LayerName>, SelectError> {
    let known = || {
        backend
            .layers()
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    for name in names.iter().flat_map(|n| n.split(',')).map(str::trim) {
        if name.is_empty() {
            continue;
        }
        let layer = name
            .parse::<LayerName>()
            .ok()
            .filter(|l| backend.layers().contains(l))
            .ok_or_else(|| SelectError::UnknownLayer {
                name: name.to_owned(),
                backend,
                known: known(),
            })?;
        if !out.contains(&layer) {
            out.push(layer);
        }
    }
    Ok(out)
}

/// The probe's layers with the operator's choices applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Every layer of the backend, in report order.
    pub layers: Vec<Layer>,
    /// What each spawn leaves out, with the reason it records.
    pub disabled: DisabledLayers,
    /// Set when a layer is missing and not allowed degraded.
    pub refusal: Option<String>,
}

/// Applies `degraded` to the probe's report: those layers become disabled
/// (saying what the probe found), and any other unavailable layer makes the
/// backend refuse, with a message that says what to do.
pub fn plan(probed: &[Layer], degraded: &[LayerName]) -> Planned {
    let mut disabled = DisabledLayers::new();
    let layers: Vec<Layer> = probed
        .iter()
        .map(|l| {
            if !degraded.contains(&l.name) {
                return l.clone();
            }
            let found = match l.status {
                LayerStatus::Active => "available".to_owned(),
                other => format!("{other}: {}", l.detail),
            };
            let reason = format!(
                "switched off by --allow-degraded {} (on this machine: {found})",
                l.name
            );
            disabled.disable(l.name, reason.clone());
            Layer::disabled(l.name, reason)
        })
        .collect();
    let missing: Vec<&Layer> = layers
        .iter()
        .filter(|l| l.status == LayerStatus::Unavailable)
        .collect();
    Planned {
        refusal: refusal_message(&missing),
        layers,
        disabled,
    }
}

fn refusal_message(missing: &[&Layer]) -> Option<String> {
    if missing.is_empty() {
        return None;
    }
    let single = missing.len() == 1;
    let names: Vec<&str> = missing.iter().map(|l| l.name.as_str()).collect();
    let reasons: Vec<String> = missing
        .iter()
        .map(|l| format!("{}: {}", l.name, l.detail.trim_end_matches('.')))
        .collect();
    let fixes: Vec<String> = missing
        .iter()
        .map(|l| {
            if single {
                fix_hint(l.name).to_owned()
            } else {
                format!("{}: {}", l.name, fix_hint(l.name))
            }
        })
        .collect();
    let (it, fix) = if single {
        ("it", format!("fix it: {}", fixes.join("; ")))
    } else {
        ("them", format!("fix them ({})", fixes.join("; ")))
    };
    Some(format!(
        "{}. Start the launcher with --allow-degraded {} to run without {it}, or {fix}.",
        reasons.join("; "),
        names.join(",")
    ))
}

/// What an operator can do about a missing layer.
fn fix_hint(layer: LayerName) -> &'static str {
    match layer {
        LayerName::Namespaces => {
            "allow user namespaces (sysctl user.max_user_namespaces > 0, \
             kernel.unprivileged_userns_clone = 1, or an AppArmor profile that permits them)"
        }
        LayerName::NoNewPrivs => "use a kernel with PR_SET_NO_NEW_PRIVS (Linux 3.5 or later)",
        LayerName::Landlock => {
            "boot a kernel with Landlock (CONFIG_SECURITY_LANDLOCK=y, and landlock in the lsm= \
             boot parameter)"
        }
        LayerName::Seccomp => {
            "use a kernel with CONFIG_SECCOMP_FILTER, and do not start the launcher under a \
             seccomp filter that forbids installing one"
        }
        LayerName::Rlimits => "let the launcher set resource limits (setrlimit)",
        LayerName::Purecap => "run the launcher on a CheriBSD purecap userland (aarch64c)",
        LayerName::C18n => {
            "use CheriBSD 22.12 or later, and set [compartment] cheribsd_release when \
             kern.version does not name the release"
        }
        LayerName::Capsicum => "use a kernel with Capsicum (options CAPABILITY_MODE)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux_probe(landlock: Layer) -> Vec<Layer> {
        vec![
            Layer::active(LayerName::Namespaces, "user, mount, pid"),
            Layer::active(LayerName::NoNewPrivs, "PR_SET_NO_NEW_PRIVS"),
            landlock,
            Layer::active(LayerName::Seccomp, "deny-list"),
            Layer::active(LayerName::Rlimits, "as=1"),
        ]
    }

    #[test]
    fn a_missing_layer_refuses_with_the_way_out() {
        let probed = linux_probe(Layer::unavailable(
            LayerName::Landlock,
            "landlock_create_ruleset: ENOSYS (kernel built without Landlock)",
        ));
        let planned = plan(&probed, &[]);
        assert_eq!(planned.layers, probed);
        assert!(planned.disabled.is_empty());
        let message = planned.refusal.unwrap();
        assert!(
            message.starts_with(
                "landlock: landlock_create_ruleset: ENOSYS (kernel built without Landlock). \
                 Start the launcher with --allow-degraded landlock to run without it, or fix it: \
                 boot a kernel with Landlock"
            ),
            "{message}"
        );
    }

    #[test]
    fn allowed_degraded_layers_are_disabled_and_say_what_the_probe_found() {
        let probed = linux_probe(Layer::unavailable(LayerName::Landlock, "no Landlock"));
        let planned = plan(&probed, &[LayerName::Landlock]);
        assert_eq!(planned.refusal, None);
        let landlock = &planned.layers[2];
        assert_eq!(landlock.status, LayerStatus::Disabled);
        assert_eq!(
            landlock.detail,
            "switched off by --allow-degraded landlock (on this machine: unavailable: no Landlock)"
        );
        assert_eq!(
            planned.disabled.reason(LayerName::Landlock),
            Some(landlock.detail.as_str())
        );
        // An available layer the operator switched off is off too, and says so.
        let planned = plan(
            &linux_probe(Layer::active(LayerName::Landlock, "ABI 7")),
            &[LayerName::Seccomp],
        );
        assert_eq!(planned.refusal, None);
        assert_eq!(
            planned.layers[3].detail,
            "switched off by --allow-degraded seccomp (on this machine: available)"
        );
    }

    #[test]
    fn several_missing_layers_are_all_named() {
        let mut probed = linux_probe(Layer::unavailable(LayerName::Landlock, "no Landlock"));
        probed[0] = Layer::unavailable(LayerName::Namespaces, "clone: EPERM");
        let message = plan(&probed, &[]).refusal.unwrap();
        assert!(
            message.starts_with(
                "namespaces: clone: EPERM; landlock: no Landlock. Start the launcher with \
                 --allow-degraded namespaces,landlock to run without them, or fix them \
                 (namespaces: allow user namespaces"
            ),
            "{message}"
        );
        // Allowing one still refuses for the other.
        let message = plan(&probed, &[LayerName::Landlock]).refusal.unwrap();
        assert!(
            message.starts_with("namespaces: clone: EPERM. Start"),
            "{message}"
        );
    }

    #[test]
    fn degraded_names_are_checked_against_the_backend() {
        let ok = parse_degraded(
            Backend::LinuxSandbox,
            &["landlock,seccomp".into(), "landlock".into()],
        )
        .unwrap();
        assert_eq!(ok, [LayerName::Landlock, LayerName::Seccomp]);
        let err = parse_degraded(Backend::LinuxSandbox, &["capsicum".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--allow-degraded capsicum: linux-sandbox has no such layer (its layers: \
             namespaces, no_new_privs, landlock, seccomp, rlimits)"
        );
        assert!(parse_degraded(Backend::CheriC18n, &["c18n".into()]).is_ok());
        assert!(parse_degraded(Backend::CheriC18n, &["landlock".into()]).is_err());
        assert!(parse_degraded(Backend::LinuxSandbox, &["selinux".into()]).is_err());
    }
}
