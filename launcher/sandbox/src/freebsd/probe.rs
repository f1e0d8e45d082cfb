//! What this CheriBSD machine provides, for `GET /v1/platform`.

use super::sysctl;
use crate::cheri::{self, C18nMechanism, c18n};
use crate::layers::{Backend, DisabledLayers, Layer, LayerName};

pub(crate) fn probe(disabled: &DisabledLayers, configured_release: Option<&str>) -> Vec<Layer> {
    Backend::CheriC18n
        .layers()
        .iter()
        .map(|&name| {
            if let Some(r) = disabled.reason(name) {
                return Layer::disabled(name, r);
            }
            match name {
                LayerName::Purecap => match sysctl::string("hw.machine_arch") {
                    Ok(arch) if arch == "aarch64c" => {
                        Layer::active(name, "purecap userland (hw.machine_arch aarch64c)")
                    }
                    Ok(arch) => Layer::unavailable(
                        name,
                        format!("expected hw.machine_arch aarch64c, found {arch}"),
                    ),
                    Err(e) => Layer::unavailable(name, format!("hw.machine_arch: {e}")),
                },
                LayerName::C18n => c18n_layer(configured_release),
                LayerName::Capsicum => match sysctl::capsicum_supported() {
                    Ok(()) => Layer::active(name, c18n::CAPSICUM_DETAIL),
                    Err(why) => Layer::unavailable(name, why),
                },
                LayerName::Rlimits => rlimits_layer(),
                other => Layer::unavailable(other, "not a cheri-c18n layer"),
            }
        })
        .collect()
}

fn c18n_layer(configured: Option<&str>) -> Layer {
    let name = LayerName::C18n;
    let osrelease = sysctl::string("kern.osrelease").unwrap_or_default();
    let version = sysctl::string("kern.version").unwrap_or_default();
    let release = match cheri::release::detect(&osrelease, &version, configured) {
        Ok(r) => r,
        Err(e) => return Layer::unavailable(name, e.to_string()),
    };
    let mechanism = match C18nMechanism::for_release(release) {
        Ok(m) => m,
        Err(e) => return Layer::unavailable(name, e.to_string()),
    };
    // The mechanism needs the c18n run-time linker (22.12/23.11) or a
    // kernel and rtld that know c18n (24.05+, which adds the sysctl).
    let present = match mechanism {
        C18nMechanism::Interpreter => std::path::Path::new(c18n::C18N_INTERPRETER)
            .exists()
            .then_some(())
            .ok_or_else(|| format!("{} is missing", c18n::C18N_INTERPRETER)),
        C18nMechanism::FeatureNote | C18nMechanism::Procctl => {
            sysctl::int("security.cheri.lib_based_c18n_default")
                .map(|_| ())
                .map_err(|e| format!("security.cheri.lib_based_c18n_default: {e}"))
        }
    };
    match present {
        Ok(()) => Layer::active(name, format!("CheriBSD {release}: {mechanism}")),
        Err(why) => Layer::unavailable(name, format!("CheriBSD {release}: {why}")),
    }
}

fn rlimits_layer() -> Layer {
    let name = LayerName::Rlimits;
    // Setting a limit to its current value proves setrlimit works.
    // SAFETY: plain get/set of this process's RLIMIT_CORE.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_CORE, &mut lim) != 0
            || libc::setrlimit(libc::RLIMIT_CORE, &lim) != 0
        {
            return Layer::unavailable(
                name,
                format!("setrlimit: {}", std::io::Error::last_os_error()),
            );
        }
    }
    Layer::active(
        name,
        "setrlimit: RLIMIT_AS, RLIMIT_CPU, RLIMIT_NOFILE, RLIMIT_NPROC, RLIMIT_FSIZE, RLIMIT_CORE",
    )
}
