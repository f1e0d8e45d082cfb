//! The `cheri-c18n` backend's logic that needs no board: release
//! detection, c18n command lines and checks, and the layer report a run
//! gets. All pure, compiled and tested on every host; the FreeBSD-only
//! process code (`src/freebsd/`) is a thin layer on top.
//!
//! Layers of a `cheri-c18n` run (names fixed by `docs/PROTOCOL.md`):
//!
//! * `purecap`: the measured executable is a Morello pure-capability
//!   binary (read from its ELF header, i.e. from the hashed bytes);
//! * `c18n`: library compartmentalisation, per [`c18n::C18nMechanism`];
//! * `capsicum`: capability mode, entered by the program's own start-up
//!   code (see [`c18n::CAPSICUM_DETAIL`]);
//! * `rlimits`: as on Linux.
//!
//! The process is started with `fork` + `fexecve` of the measured
//! descriptor, an empty environment (plus `ATTESTABLE_FD=3` and, on 22.12 /
//! 23.11, `LD_C18N_LIBRARY_PATH` when configured), fds 0-3 only, its own
//! session, and `nobody` as its user when the launcher is root.

pub mod c18n;
pub mod release;

pub use c18n::{C18nError, C18nMechanism, Compiler};
pub use release::{CheriBsdRelease, ReleaseError};

use crate::elf::ElfInfo;
use crate::error::SpawnError;
use crate::layers::{DisabledLayers, Layer, LayerName};
use crate::limits::Limits;

/// How a `cheri-c18n` run is compartmentalised; part of the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheriRun {
    pub mechanism: C18nMechanism,
    /// Library path for the run-time linker, if libraries live outside its
    /// default paths.
    pub library_path: Option<String>,
    /// Output of `elfctl FILE` for the file that was hashed
    /// ([`C18nMechanism::FeatureNote`]); the build step collects it.
    pub elfctl_output: Option<String>,
}

/// The layer report of a run, or the first layer that cannot be provided.
/// `capsicum` is whether the kernel supports capability mode (and why not).
pub fn plan_layers(
    elf: &ElfInfo,
    run: Option<&CheriRun>,
    limits: &Limits,
    disabled: &DisabledLayers,
    capsicum: Result<(), String>,
) -> Result<Vec<Layer>, SpawnError> {
    let unavailable = |layer, reason: String| SpawnError::LayerUnavailable { layer, reason };
    let mut layers = Vec::with_capacity(4);

    layers.push(match disabled.reason(LayerName::Purecap) {
        Some(r) => Layer::disabled(LayerName::Purecap, r),
        None if elf.is_cheri_purecap() => Layer::active(
            LayerName::Purecap,
            format!("CheriABI executable (EM_AARCH64, e_flags {:#x})", elf.flags),
        ),
        None => {
            return Err(unavailable(
                LayerName::Purecap,
                format!(
                    "expected a Morello purecap executable (e_machine {}, EF_AARCH64_CHERI_PURECAP), found e_machine {}, e_flags {:#x}",
                    crate::elf::EM_AARCH64,
                    elf.machine,
                    elf.flags
                ),
            ));
        }
    });

    layers.push(match (disabled.reason(LayerName::C18n), run) {
        (Some(r), _) => Layer::disabled(LayerName::C18n, r),
        (None, None) => {
            return Err(unavailable(
                LayerName::C18n,
                "no c18n mechanism configured for this run".into(),
            ));
        }
        (None, Some(run)) => {
            let detail = c18n::verify(run.mechanism, elf, run.elfctl_output.as_deref())
                .map_err(|e| unavailable(LayerName::C18n, e.to_string()))?;
            Layer::active(LayerName::C18n, detail)
        }
    });

    layers.push(match (disabled.reason(LayerName::Capsicum), capsicum) {
        (Some(r), _) => Layer::disabled(LayerName::Capsicum, r),
        (None, Ok(())) => Layer::active(LayerName::Capsicum, c18n::CAPSICUM_DETAIL),
        (None, Err(why)) => return Err(unavailable(LayerName::Capsicum, why)),
    });

    layers.push(match disabled.reason(LayerName::Rlimits) {
        Some(r) => Layer::disabled(LayerName::Rlimits, r),
        None => Layer::active(LayerName::Rlimits, limits.describe()),
    });
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::tests::synthetic_elf64;
    use crate::elf::{EF_AARCH64_CHERI_PURECAP, EM_AARCH64};
    use crate::layers::LayerStatus;

    fn elf(flags: u32, interp: &str) -> ElfInfo {
        ElfInfo::parse(&synthetic_elf64(EM_AARCH64, flags, Some(interp))).unwrap()
    }

    fn run(mechanism: C18nMechanism) -> CheriRun {
        CheriRun {
            mechanism,
            library_path: None,
            elfctl_output: None,
        }
    }

    #[test]
    fn a_purecap_c18n_run_reports_four_active_layers() {
        let e = elf(EF_AARCH64_CHERI_PURECAP, c18n::C18N_INTERPRETER);
        let layers = plan_layers(
            &e,
            Some(&run(C18nMechanism::Interpreter)),
            &Limits::default(),
            &DisabledLayers::new(),
            Ok(()),
        )
        .unwrap();
        let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["purecap", "c18n", "capsicum", "rlimits"]);
        assert!(layers.iter().all(|l| l.status == LayerStatus::Active));
        assert_eq!(layers[1].detail, "interpreter /libexec/ld-elf-c18n.so.1");
    }

    #[test]
    fn each_missing_layer_is_refused_with_its_reason() {
        let hybrid = elf(0, c18n::C18N_INTERPRETER);
        let err = plan_layers(
            &hybrid,
            Some(&run(C18nMechanism::Interpreter)),
            &Limits::default(),
            &DisabledLayers::new(),
            Ok(()),
        )
        .unwrap_err();
        assert_eq!(err.layer(), Some(LayerName::Purecap));
        assert!(
            err.to_string().contains("found e_machine 183, e_flags 0x0"),
            "{err}"
        );

        let no_c18n = elf(EF_AARCH64_CHERI_PURECAP, c18n::DEFAULT_INTERPRETER);
        let err = plan_layers(
            &no_c18n,
            Some(&run(C18nMechanism::Interpreter)),
            &Limits::default(),
            &DisabledLayers::new(),
            Ok(()),
        )
        .unwrap_err();
        assert_eq!(err.layer(), Some(LayerName::C18n));

        let err = plan_layers(
            &no_c18n,
            None,
            &Limits::default(),
            &DisabledLayers::new(),
            Ok(()),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("no c18n mechanism configured"),
            "{err}"
        );

        let err = plan_layers(
            &no_c18n,
            Some(&run(C18nMechanism::Procctl)),
            &Limits::default(),
            &DisabledLayers::new(),
            Err("kern.features.security_capability_mode is absent".into()),
        )
        .unwrap_err();
        assert_eq!(err.layer(), Some(LayerName::Capsicum));
    }

    #[test]
    fn disabled_layers_are_reported_not_refused() {
        let hybrid = elf(0, "/libexec/ld-elf.so.1");
        let mut off = DisabledLayers::new();
        off.disable(LayerName::Purecap, "allowed by --allow-degraded");
        off.disable(LayerName::C18n, "allowed by --allow-degraded");
        let layers = plan_layers(&hybrid, None, &Limits::default(), &off, Ok(())).unwrap();
        assert_eq!(layers[0].status, LayerStatus::Disabled);
        assert_eq!(layers[1].status, LayerStatus::Disabled);
        assert_eq!(layers[2].status, LayerStatus::Active);
        assert_eq!(layers[3].status, LayerStatus::Active);
    }
}
