//! The platform facts for `/v1/platform` and the run evidence: probed once at
//! start-up by `attestable_data::probe::platform()` (Linux: `/proc/cpuinfo`,
//! `/proc/meminfo`, `sysconf`, `uname`; FreeBSD: `sysctlbyname`). This module
//! only gives them an API schema.

use attestable_data::evidence::Platform;
use serde::Serialize;
use utoipa::ToSchema;

pub use attestable_data::probe::ProbeError;

/// The evidence's `platform.*`, as `/v1/platform` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PlatformFacts {
    /// e.g. `Research Morello SoC r0p0`.
    pub cpu_model: String,
    pub cpus: u32,
    pub physical_memory_bytes: u64,
    /// `uname -s`
    pub os: String,
    /// `uname -r` (`kern.osrelease`)
    pub os_release: String,
    /// `uname -v`
    pub kernel: String,
    /// `uname -m`; `hw.machine_arch` on FreeBSD (`aarch64c` on a purecap userland)
    pub arch: String,
    pub hostname: String,
}

impl From<&Platform> for PlatformFacts {
    fn from(p: &Platform) -> Self {
        PlatformFacts {
            cpu_model: p.cpu_model.clone(),
            cpus: p.cpus,
            physical_memory_bytes: p.physical_memory_bytes,
            os: p.os.clone(),
            os_release: p.os_release.clone(),
            kernel: p.kernel.clone(),
            arch: p.arch.clone(),
            hostname: p.hostname.clone(),
        }
    }
}

/// What this machine is.
pub fn probe() -> Result<Platform, ProbeError> {
    attestable_data::probe::platform()
}

/// `hw.machine_arch` on FreeBSD (`aarch64c` on a CheriBSD purecap userland).
pub fn machine_arch() -> Option<String> {
    if cfg!(target_os = "freebsd") {
        probe().ok().map(|p| p.arch)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_reports_this_machine() {
        let facts = PlatformFacts::from(&probe().unwrap());
        assert!(facts.cpus >= 1);
        assert!(facts.physical_memory_bytes > 0);
        assert!(!facts.os.is_empty());
        assert!(!facts.cpu_model.is_empty());
        if cfg!(target_os = "linux") {
            assert_eq!(facts.os, "Linux");
            assert_eq!(machine_arch(), None);
        }
    }
}
