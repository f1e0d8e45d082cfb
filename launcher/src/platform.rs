//! A small platform probe for `/v1/platform`. [`probe`] is the one entry
//! point, so the richer probe in `attestable-data` can replace it.
//! Field names follow the evidence's `platform.*` (docs/PROTOCOL.md).

use std::ffi::CStr;

use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PlatformFacts {
    pub cpu_model: String,
    pub cpus: u32,
    pub physical_memory_bytes: u64,
    /// `uname -s`
    pub os: String,
    /// `uname -r`
    pub os_release: String,
    /// `uname -v`
    pub kernel: String,
    /// `uname -m`
    pub arch: String,
    pub hostname: String,
}

/// What this machine is.
pub fn probe() -> PlatformFacts {
    let uname = uname();
    PlatformFacts {
        cpu_model: cpu_model().unwrap_or_else(|| format!("unknown {}", uname.machine)),
        cpus: cpus(),
        physical_memory_bytes: physical_memory(),
        os: uname.sysname,
        os_release: uname.release,
        kernel: uname.version,
        arch: uname.machine,
        hostname: uname.nodename,
    }
}

struct Uname {
    sysname: String,
    nodename: String,
    release: String,
    version: String,
    machine: String,
}

fn uname() -> Uname {
    // SAFETY: `utsname` is plain data; `uname` fills it with NUL-terminated strings.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let ok = unsafe { libc::uname(&mut u) } == 0;
    let field = |f: &[libc::c_char]| {
        if !ok {
            return "unknown".to_owned();
        }
        // SAFETY: the kernel NUL-terminates every field.
        unsafe { CStr::from_ptr(f.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    Uname {
        sysname: field(&u.sysname),
        nodename: field(&u.nodename),
        release: field(&u.release),
        version: field(&u.version),
        machine: field(&u.machine),
    }
}

fn cpus() -> u32 {
    // SAFETY: plain libc call.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 { n as u32 } else { 1 }
}

fn physical_memory() -> u64 {
    #[cfg(target_os = "freebsd")]
    if let Some(bytes) = freebsd::sysctl_u64("hw.physmem") {
        return bytes;
    }
    // SAFETY: plain libc calls.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages > 0 && size > 0 {
        pages as u64 * size as u64
    } else {
        0
    }
}

#[cfg(target_os = "linux")]
fn cpu_model() -> Option<String> {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| cpu_model_from_cpuinfo(&text))
}

#[cfg(target_os = "freebsd")]
fn cpu_model() -> Option<String> {
    freebsd::sysctl_string("hw.model")
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
fn cpu_model() -> Option<String> {
    None
}

/// The CPU model named by `/proc/cpuinfo`: x86's `model name`, else the
/// board's `Model` or `Hardware`, else Arm's implementer and part numbers.
pub fn cpu_model_from_cpuinfo(text: &str) -> Option<String> {
    let value = |key: &str| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key && !v.trim().is_empty()).then(|| v.trim().to_owned())
        })
    };
    value("model name")
        .or_else(|| value("Model"))
        .or_else(|| value("Hardware"))
        .or_else(|| {
            let part = value("CPU part")?;
            let implementer = value("CPU implementer").unwrap_or_else(|| "?".into());
            Some(format!("Arm implementer {implementer} part {part}"))
        })
}

/// `hw.machine_arch` on FreeBSD (`aarch64c` on a CheriBSD purecap userland).
pub fn machine_arch() -> Option<String> {
    #[cfg(target_os = "freebsd")]
    {
        freebsd::sysctl_string("hw.machine_arch")
    }
    #[cfg(not(target_os = "freebsd"))]
    {
        None
    }
}

#[cfg(target_os = "freebsd")]
mod freebsd {
    use std::ffi::CString;

    fn sysctl_bytes(name: &str) -> Option<Vec<u8>> {
        let name = CString::new(name).ok()?;
        let mut len: libc::size_t = 0;
        // SAFETY: size query with a null buffer.
        let rc = unsafe {
            libc::sysctlbyname(
                name.as_ptr(),
                std::ptr::null_mut(),
                &mut len,
                std::ptr::null(),
                0,
            )
        };
        if rc != 0 || len == 0 {
            return None;
        }
        let mut buf = vec![0u8; len];
        // SAFETY: `buf` has `len` bytes.
        let rc = unsafe {
            libc::sysctlbyname(
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                &mut len,
                std::ptr::null(),
                0,
            )
        };
        if rc != 0 {
            return None;
        }
        buf.truncate(len);
        Some(buf)
    }

    pub fn sysctl_string(name: &str) -> Option<String> {
        let mut bytes = sysctl_bytes(name)?;
        while bytes.last() == Some(&0) {
            bytes.pop();
        }
        String::from_utf8(bytes).ok()
    }

    pub fn sysctl_u64(name: &str) -> Option<u64> {
        let bytes = sysctl_bytes(name)?;
        match bytes.len() {
            8 => Some(u64::from_ne_bytes(bytes.try_into().ok()?)),
            4 => Some(u32::from_ne_bytes(bytes.try_into().ok()?) as u64),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_x86_and_arm() {
        let x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(
            cpu_model_from_cpuinfo(x86).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        let arm = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n";
        assert_eq!(
            cpu_model_from_cpuinfo(arm).as_deref(),
            Some("Arm implementer 0x41 part 0xd0c")
        );
        let pi = "CPU part\t: 0xd08\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n";
        assert_eq!(
            cpu_model_from_cpuinfo(pi).as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4")
        );
        assert_eq!(cpu_model_from_cpuinfo("nothing: \n"), None);
    }

    #[test]
    fn probe_reports_this_machine() {
        let facts = probe();
        assert!(facts.cpus >= 1);
        assert!(facts.physical_memory_bytes > 0);
        assert!(!facts.os.is_empty() && facts.os != "unknown");
        assert!(!facts.cpu_model.is_empty());
        if cfg!(target_os = "linux") {
            assert_eq!(facts.os, "Linux");
        }
    }
}
