//! Platform facts for the evidence: CPU model and count, physical memory,
//! operating system, kernel, architecture and host name.
//!
//! Linux reads `/proc/cpuinfo`, `sysconf`, `/proc/meminfo` and `uname`;
//! FreeBSD (CheriBSD) asks `sysctlbyname` for `hw.model`, `hw.ncpu`,
//! `hw.physmem`, `kern.osrelease` and `hw.machine_arch`. The parsing is in
//! pure functions so that it is tested with samples from machines we do not
//! have (a Morello board among them).

use crate::evidence::Platform;

/// Platform facts that could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A source could not be read.
    #[error("reading {what}: {source}")]
    Io {
        /// Which source.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A source said something unexpected.
    #[error("{0}")]
    Invalid(String),
}

/// Names of ARM Ltd. (implementer `0x41`) CPU parts, from the MIDR part number.
const ARM_PARTS: &[(u32, &str)] = &[
    (0xd03, "Cortex-A53"),
    (0xd04, "Cortex-A35"),
    (0xd05, "Cortex-A55"),
    (0xd07, "Cortex-A57"),
    (0xd08, "Cortex-A72"),
    (0xd09, "Cortex-A73"),
    (0xd0a, "Cortex-A75"),
    (0xd0b, "Cortex-A76"),
    (0xd0c, "Neoverse-N1"),
    (0xd0d, "Cortex-A77"),
    (0xd40, "Neoverse-V1"),
    (0xd41, "Cortex-A78"),
    (0xd49, "Neoverse-N2"),
    (0xd4f, "Neoverse-V2"),
];

/// What `/proc/cpuinfo` says about the CPU.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuInfo {
    /// The model, if the file names one.
    pub model: Option<String>,
    /// `processor` entries counted.
    pub processors: u32,
}

/// Parses `/proc/cpuinfo`.
///
/// The model is the first `model name` (x86, some arm64 kernels), else
/// `Hardware` or `cpu model` (older ARM, MIPS), else on arm64 a name built from
/// `CPU implementer` and `CPU part` (`ARM Neoverse-N1`, or
/// `implementer 0x41 part 0xd0c` for parts not in the table).
pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    let (mut model_name, mut hardware, mut implementer, mut part) = (None, None, None, None);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let first = |slot: &mut Option<String>| {
            if slot.is_none() && !value.is_empty() {
                *slot = Some(value.to_string());
            }
        };
        match key {
            "processor" => info.processors += 1,
            "model name" => first(&mut model_name),
            "Hardware" | "cpu model" => first(&mut hardware),
            "CPU implementer" => first(&mut implementer),
            "CPU part" => first(&mut part),
            _ => {}
        }
    }
    info.model = model_name.or(hardware).or_else(|| {
        let implementer = implementer?;
        let part = part?;
        let parse = |s: &str| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok();
        let known = (parse(&implementer) == Some(0x41))
            .then(|| parse(&part))
            .flatten()
            .and_then(|p| ARM_PARTS.iter().find(|(id, _)| *id == p))
            .map(|(_, name)| format!("ARM {name}"));
        Some(known.unwrap_or_else(|| format!("implementer {implementer} part {part}")))
    });
    info
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?.trim();
        let kib = rest.strip_suffix("kB").unwrap_or(rest).trim();
        kib.parse::<u64>().ok()?.checked_mul(1024)
    })
}

/// The device tree's `model` (arm64 boards): NUL-terminated text.
pub fn parse_devicetree_model(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let model = String::from_utf8_lossy(&bytes[..end]).trim().to_string();
    (!model.is_empty()).then_some(model)
}

/// Chooses the CPU model on Linux: `/proc/cpuinfo`'s model, else the device
/// tree's board model, else the machine architecture.
pub fn choose_cpu_model(
    cpuinfo: &CpuInfo,
    devicetree_model: Option<&str>,
    machine: &str,
) -> String {
    cpuinfo
        .model
        .clone()
        .or_else(|| devicetree_model.map(str::to_string))
        .unwrap_or_else(|| format!("unknown {machine} CPU"))
}

/// `uname(2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uname {
    /// `sysname`.
    pub sysname: String,
    /// `nodename`.
    pub nodename: String,
    /// `release`.
    pub release: String,
    /// `version`.
    pub version: String,
    /// `machine`.
    pub machine: String,
}

/// Calls `uname(2)`.
pub fn uname() -> Result<Uname, ProbeError> {
    // SAFETY: `utsname` is plain old data; zeroed is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable `utsname`.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(ProbeError::Io {
            what: "uname".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    let field = |chars: &[libc::c_char]| {
        let bytes: Vec<u8> = chars
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    };
    Ok(Uname {
        sysname: field(&u.sysname),
        nodename: field(&u.nodename),
        release: field(&u.release),
        version: field(&u.version),
        machine: field(&u.machine),
    })
}

#[cfg(not(target_os = "freebsd"))]
fn online_cpus() -> Option<u32> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).ok().filter(|&n| n > 0)
}

/// The platform facts of this machine.
#[cfg(not(target_os = "freebsd"))]
pub fn platform() -> Result<Platform, ProbeError> {
    let read = |path: &str| {
        std::fs::read(path).map_err(|source| ProbeError::Io {
            what: path.to_string(),
            source,
        })
    };
    let u = uname()?;
    let cpuinfo = parse_cpuinfo(&String::from_utf8_lossy(&read("/proc/cpuinfo")?));
    let dt_model = std::fs::read("/sys/firmware/devicetree/base/model")
        .ok()
        .and_then(|b| parse_devicetree_model(&b));
    let meminfo = read("/proc/meminfo")?;
    let memory = parse_meminfo_total(&String::from_utf8_lossy(&meminfo))
        .ok_or_else(|| ProbeError::Invalid("/proc/meminfo has no MemTotal line".into()))?;
    let cpus = online_cpus()
        .or((cpuinfo.processors > 0).then_some(cpuinfo.processors))
        .ok_or_else(|| ProbeError::Invalid("cannot count the online CPUs".into()))?;
    Ok(Platform {
        cpu_model: choose_cpu_model(&cpuinfo, dt_model.as_deref(), &u.machine),
        cpus,
        physical_memory_bytes: memory,
        os: u.sysname,
        os_release: u.release,
        kernel: u.version,
        arch: u.machine,
        hostname: u.nodename,
    })
}

/// The platform facts of this machine.
#[cfg(target_os = "freebsd")]
pub fn platform() -> Result<Platform, ProbeError> {
    let u = uname()?;
    let cpus = sysctl::uint("hw.ncpu")?;
    Ok(Platform {
        cpu_model: sysctl::string("hw.model")?,
        cpus: u32::try_from(cpus).map_err(|_| ProbeError::Invalid(format!("hw.ncpu is {cpus}")))?,
        physical_memory_bytes: sysctl::uint("hw.physmem")?,
        os: u.sysname,
        os_release: sysctl::string("kern.osrelease")?,
        kernel: u.version,
        arch: sysctl::string("hw.machine_arch")?,
        hostname: u.nodename,
    })
}

/// A string sysctl value (`hw.model`, `kern.osrelease`): NUL-terminated text.
pub fn parse_sysctl_string(bytes: &[u8]) -> String {
    parse_devicetree_model(bytes).unwrap_or_default()
}

/// An integer sysctl value of 4 or 8 bytes in native byte order
/// (`hw.ncpu` is an `int`, `hw.physmem` an `unsigned long`).
pub fn parse_sysctl_uint(name: &str, bytes: &[u8]) -> Result<u64, ProbeError> {
    let invalid = || {
        ProbeError::Invalid(format!(
            "sysctl {name}: {} bytes, expected 4 or 8",
            bytes.len()
        ))
    };
    match bytes.len() {
        8 => Ok(u64::from_ne_bytes(bytes.try_into().map_err(|_| invalid())?)),
        4 => {
            let v = i32::from_ne_bytes(bytes.try_into().map_err(|_| invalid())?);
            u64::try_from(v).map_err(|_| ProbeError::Invalid(format!("sysctl {name} is {v}")))
        }
        _ => Err(invalid()),
    }
}

#[cfg(target_os = "freebsd")]
mod sysctl {
    use super::ProbeError;
    use std::ffi::CString;

    fn raw(name: &str) -> Result<Vec<u8>, ProbeError> {
        let io = |source| ProbeError::Io {
            what: format!("sysctl {name}"),
            source,
        };
        let cname =
            CString::new(name).map_err(|_| ProbeError::Invalid(format!("sysctl name {name:?}")))?;
        let mut len: libc::size_t = 0;
        // SAFETY: a size query (null buffer) with a valid name and length pointer.
        let rc = unsafe {
            libc::sysctlbyname(
                cname.as_ptr(),
                std::ptr::null_mut(),
                &mut len,
                std::ptr::null(),
                0,
            )
        };
        if rc != 0 {
            return Err(io(std::io::Error::last_os_error()));
        }
        let mut buf = vec![0u8; len];
        // SAFETY: `buf` has `len` writable bytes; the kernel updates `len`.
        let rc = unsafe {
            libc::sysctlbyname(
                cname.as_ptr(),
                buf.as_mut_ptr().cast(),
                &mut len,
                std::ptr::null(),
                0,
            )
        };
        if rc != 0 {
            return Err(io(std::io::Error::last_os_error()));
        }
        buf.truncate(len);
        Ok(buf)
    }

    pub(super) fn string(name: &str) -> Result<String, ProbeError> {
        Ok(super::parse_sysctl_string(&raw(name)?))
    }

    pub(super) fn uint(name: &str) -> Result<u64, ProbeError> {
        super::parse_sysctl_uint(name, &raw(name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\nflags\t\t: fpu vme\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\n";

    // An arm64 Linux kernel prints no model name, only the MIDR fields.
    // Morello-like: four cores, implementer 0x41; the part number here is
    // illustrative (the board's exact MIDR is not verified on hardware).
    const MORELLO_LIKE: &str = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd0c\nCPU revision\t: 0\n\nprocessor\t: 1\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n\nprocessor\t: 2\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n\nprocessor\t: 3\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n";

    #[test]
    fn x86_model_name() {
        let info = parse_cpuinfo(X86);
        assert_eq!(info.processors, 2);
        assert_eq!(
            info.model.as_deref(),
            Some("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz")
        );
    }

    #[test]
    fn arm64_falls_back_to_implementer_and_part() {
        let info = parse_cpuinfo(MORELLO_LIKE);
        assert_eq!(info.processors, 4);
        assert_eq!(info.model.as_deref(), Some("ARM Neoverse-N1"));
        let unknown = parse_cpuinfo("processor : 0\nCPU implementer : 0x61\nCPU part : 0x022\n");
        assert_eq!(
            unknown.model.as_deref(),
            Some("implementer 0x61 part 0x022")
        );
    }

    #[test]
    fn model_choice_order() {
        let none = parse_cpuinfo("processor : 0\n");
        assert_eq!(none.model, None);
        let dt = parse_devicetree_model(b"ARM Morello System Development Platform\0").unwrap();
        assert_eq!(
            choose_cpu_model(&none, Some(&dt), "aarch64"),
            "ARM Morello System Development Platform"
        );
        assert_eq!(
            choose_cpu_model(&none, None, "aarch64"),
            "unknown aarch64 CPU"
        );
        let x86 = parse_cpuinfo(X86);
        assert!(choose_cpu_model(&x86, Some(&dt), "x86_64").starts_with("Intel"));
        assert_eq!(parse_devicetree_model(b"\0"), None);
    }

    #[test]
    fn morello_sysctl_values() {
        // What CheriBSD on a Morello board answers (from the CAMB launcher's runs).
        assert_eq!(
            parse_sysctl_string(b"Research Morello SoC r0p0\0"),
            "Research Morello SoC r0p0"
        );
        assert_eq!(parse_sysctl_string(b"aarch64c\0"), "aarch64c");
        assert_eq!(
            parse_sysctl_uint("hw.ncpu", &4i32.to_ne_bytes()).unwrap(),
            4
        );
        assert_eq!(
            parse_sysctl_uint("hw.physmem", &17_095_405_568u64.to_ne_bytes()).unwrap(),
            17_095_405_568
        );
        assert!(parse_sysctl_uint("hw.ncpu", &(-1i32).to_ne_bytes()).is_err());
        assert!(
            parse_sysctl_uint("hw.ncpu", &[1, 2])
                .unwrap_err()
                .to_string()
                .contains("2 bytes")
        );
    }

    #[test]
    fn meminfo_total() {
        assert_eq!(
            parse_meminfo_total("MemTotal:       16384000 kB\nMemFree: 1 kB\n"),
            Some(16_384_000 * 1024)
        );
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo_total("MemTotal: lots kB\n"), None);
    }

    #[test]
    fn probes_this_machine() {
        let p = platform().unwrap();
        assert!(p.cpus >= 1);
        assert!(p.physical_memory_bytes > 64 << 20);
        assert!(!p.cpu_model.is_empty() && !p.os.is_empty() && !p.arch.is_empty());
        assert_eq!(p.os, uname().unwrap().sysname);
    }
}
