//! Resource limits applied with `setrlimit` in the child before it executes.

use serde::{Deserialize, Serialize};

/// Per-sandbox resource limits. Every value is both the soft and the hard
/// limit, so the program cannot raise it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// `RLIMIT_AS`: bytes of virtual address space.
    pub address_space_bytes: u64,
    /// `RLIMIT_CPU`: seconds of CPU time; the process gets `SIGKILL` when it
    /// reaches them (soft = hard, and a namespace's PID 1 ignores `SIGXCPU`).
    pub cpu_seconds: u64,
    /// `RLIMIT_NOFILE`: highest file descriptor number + 1.
    pub open_files: u64,
    /// `RLIMIT_NPROC`: processes (and threads) of the sandbox's user. Counted
    /// per user namespace, so each run has its own budget.
    pub processes: u64,
    /// `RLIMIT_FSIZE`: largest file the program may write, in bytes.
    pub file_size_bytes: u64,
}

/// Bounds that [`Limits::validate`] enforces. Lower values leave the program
/// unable to start (the dynamic loader alone maps several MiB); higher ones
/// stop being limits.
const MIN_ADDRESS_SPACE: u64 = 16 << 20;
const MAX_ADDRESS_SPACE: u64 = 1 << 40;
const MAX_CPU_SECONDS: u64 = 24 * 3600;
/// fds 0-3 are always open.
const MIN_OPEN_FILES: u64 = 4;
const MAX_OPEN_FILES: u64 = 65_536;
const MAX_PROCESSES: u64 = 4096;

impl Default for Limits {
    /// Limits for a run: 1 GiB address space, 10 s CPU, 64 files, 32
    /// processes, 64 MiB files.
    fn default() -> Self {
        Limits {
            address_space_bytes: 1 << 30,
            cpu_seconds: 10,
            open_files: 64,
            processes: 32,
            file_size_bytes: 64 << 20,
        }
    }
}

impl Limits {
    /// The lowest value [`Limits::validate`] accepts for each limit (what the
    /// launcher's API schema states as `minimum`).
    pub const MIN: Limits = Limits {
        address_space_bytes: MIN_ADDRESS_SPACE,
        cpu_seconds: 1,
        open_files: MIN_OPEN_FILES,
        processes: 1,
        file_size_bytes: 0,
    };

    /// The highest value [`Limits::validate`] accepts for each limit.
    pub const MAX: Limits = Limits {
        address_space_bytes: MAX_ADDRESS_SPACE,
        cpu_seconds: MAX_CPU_SECONDS,
        open_files: MAX_OPEN_FILES,
        processes: MAX_PROCESSES,
        file_size_bytes: MAX_ADDRESS_SPACE,
    };

    /// Limits for a confined compile: the compiler driver starts `cc1`, `as`
    /// and `ld`, and `cc1` wants more memory than a typical program.
    pub fn compile() -> Self {
        Limits {
            address_space_bytes: 2 << 30,
            cpu_seconds: 60,
            open_files: 256,
            processes: 64,
            file_size_bytes: 256 << 20,
        }
    }

    /// Checks every value against sane bounds; the error names the field,
    /// the allowed range and the value found.
    pub fn validate(&self) -> Result<(), LimitsError> {
        check(
            "address_space_bytes",
            self.address_space_bytes,
            MIN_ADDRESS_SPACE,
            MAX_ADDRESS_SPACE,
        )?;
        check("cpu_seconds", self.cpu_seconds, 1, MAX_CPU_SECONDS)?;
        check(
            "open_files",
            self.open_files,
            MIN_OPEN_FILES,
            MAX_OPEN_FILES,
        )?;
        check("processes", self.processes, 1, MAX_PROCESSES)?;
        check(
            "file_size_bytes",
            self.file_size_bytes,
            0,
            MAX_ADDRESS_SPACE,
        )?;
        Ok(())
    }

    /// `(resource, value)` pairs in the order the child applies them.
    /// `RLIMIT_CORE` is always 0: a core dump would write the program's
    /// memory into its working folder behind the launcher's back.
    pub(crate) fn rlimits(&self) -> [(RlimitResource, u64); 6] {
        [
            (RlimitResource::AddressSpace, self.address_space_bytes),
            (RlimitResource::Cpu, self.cpu_seconds),
            (RlimitResource::OpenFiles, self.open_files),
            (RlimitResource::Processes, self.processes),
            (RlimitResource::FileSize, self.file_size_bytes),
            (RlimitResource::Core, 0),
        ]
    }

    /// One line for a layer report, e.g.
    /// `as=1073741824 cpu=10s nofile=64 nproc=32 fsize=67108864 core=0`.
    pub fn describe(&self) -> String {
        format!(
            "as={} cpu={}s nofile={} nproc={} fsize={} core=0",
            self.address_space_bytes,
            self.cpu_seconds,
            self.open_files,
            self.processes,
            self.file_size_bytes
        )
    }
}

fn check(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), LimitsError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(LimitsError {
            field,
            value,
            min,
            max,
        })
    }
}

/// A limit outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit {field} = {value} is outside the allowed range {min}..={max}")]
pub struct LimitsError {
    pub field: &'static str,
    pub value: u64,
    pub min: u64,
    pub max: u64,
}

/// The resources the sandbox limits, with a stable name for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RlimitResource {
    AddressSpace,
    Cpu,
    OpenFiles,
    Processes,
    FileSize,
    Core,
}

// The names only appear in the Linux child's failure reports.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
impl RlimitResource {
    pub(crate) const ALL: [RlimitResource; 6] = [
        RlimitResource::AddressSpace,
        RlimitResource::Cpu,
        RlimitResource::OpenFiles,
        RlimitResource::Processes,
        RlimitResource::FileSize,
        RlimitResource::Core,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            RlimitResource::AddressSpace => "RLIMIT_AS",
            RlimitResource::Cpu => "RLIMIT_CPU",
            RlimitResource::OpenFiles => "RLIMIT_NOFILE",
            RlimitResource::Processes => "RLIMIT_NPROC",
            RlimitResource::FileSize => "RLIMIT_FSIZE",
            RlimitResource::Core => "RLIMIT_CORE",
        }
    }

    /// The `libc` resource number (its type differs between libcs).
    #[allow(clippy::unnecessary_cast)]
    pub(crate) fn raw(self) -> i32 {
        (match self {
            RlimitResource::AddressSpace => libc::RLIMIT_AS,
            RlimitResource::Cpu => libc::RLIMIT_CPU,
            RlimitResource::OpenFiles => libc::RLIMIT_NOFILE,
            RlimitResource::Processes => libc::RLIMIT_NPROC,
            RlimitResource::FileSize => libc::RLIMIT_FSIZE,
            RlimitResource::Core => libc::RLIMIT_CORE,
        }) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_safe() {
        let l = Limits::default();
        l.validate().unwrap();
        assert_eq!(l.address_space_bytes, 1 << 30);
        assert_eq!(l.cpu_seconds, 10);
        assert_eq!(l.open_files, 64);
        assert_eq!(l.processes, 32);
        assert_eq!(l.file_size_bytes, 64 << 20);
        Limits::compile().validate().unwrap();
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let l = Limits {
            cpu_seconds: 0,
            ..Limits::default()
        };
        let e = l.validate().unwrap_err();
        assert_eq!(e.field, "cpu_seconds");
        assert_eq!(e.value, 0);
        assert!(e.to_string().contains("cpu_seconds = 0"), "{e}");

        let l = Limits {
            open_files: 3,
            ..Limits::default()
        };
        assert_eq!(l.validate().unwrap_err().field, "open_files");

        let l = Limits {
            address_space_bytes: 1 << 20,
            ..Limits::default()
        };
        assert_eq!(l.validate().unwrap_err().field, "address_space_bytes");

        let l = Limits {
            processes: 1_000_000,
            ..Limits::default()
        };
        assert_eq!(l.validate().unwrap_err().field, "processes");
    }

    #[test]
    fn rlimits_cover_every_resource_once_and_disable_core_dumps() {
        let pairs = Limits::default().rlimits();
        for r in RlimitResource::ALL {
            assert_eq!(pairs.iter().filter(|(p, _)| *p == r).count(), 1, "{r:?}");
        }
        assert!(pairs.contains(&(RlimitResource::Core, 0)));
        assert_eq!(
            Limits::default().describe(),
            "as=1073741824 cpu=10s nofile=64 nproc=32 fsize=67108864 core=0"
        );
    }

    #[test]
    fn serde_round_trip_rejects_unknown_fields() {
        let l = Limits::default();
        let json = serde_json::to_string(&l).unwrap();
        let back: Limits = serde_json::from_str(&json).unwrap();
        assert_eq!(back, l);
        let bad = json.replace("}", ",\"wall_seconds\":5}");
        assert!(serde_json::from_str::<Limits>(&bad).is_err());
    }
}
