//! The few facts the sandbox reads from an executable's ELF headers: its
//! program interpreter (the only file a run must be allowed to execute) and
//! whether it is a CHERI pure-capability binary. Pure functions over bytes,
//! so they are tested on any host.

/// `e_machine` of AArch64, Morello included.
pub const EM_AARCH64: u16 = 183;
/// `e_flags` bit that marks a Morello pure-capability (CheriABI) object.
pub const EF_AARCH64_CHERI_PURECAP: u32 = 0x0001_0000;
/// How much of the file [`ElfInfo::parse`] wants: headers and the
/// interpreter path live in the first page of any sane executable.
pub const HEADER_WINDOW: usize = 64 * 1024;

const PT_INTERP: u32 = 3;
const MAX_INTERP_LEN: u64 = 4096;

/// What the sandbox needs to know about an executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    pub is_64bit: bool,
    pub little_endian: bool,
    /// `e_type`: 2 executable, 3 shared object (PIE).
    pub file_type: u16,
    pub machine: u16,
    pub flags: u32,
    /// `PT_INTERP`, e.g. `/lib64/ld-linux-x86-64.so.2`; `None` when static.
    pub interpreter: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    #[error("not an ELF file (expected magic 7f 45 4c 46, found {})", hex_bytes(.0))]
    NotElf(Vec<u8>),
    #[error("ELF header field {field} is invalid: {found}")]
    Invalid { field: &'static str, found: u64 },
    #[error("ELF {what} at offset {offset} runs past the {available} bytes read")]
    Truncated {
        what: &'static str,
        offset: u64,
        available: usize,
    },
    #[error("ELF interpreter path is not a NUL-terminated UTF-8 string")]
    BadInterpreter,
}

fn hex_bytes(b: &[u8]) -> String {
    if b.is_empty() {
        return "an empty file".into();
    }
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl ElfInfo {
    /// Parses the headers from `bytes`, the start of the file (at least
    /// the headers and the interpreter path; [`HEADER_WINDOW`] is plenty).
    pub fn parse(bytes: &[u8]) -> Result<ElfInfo, ElfError> {
        if bytes.len() < 16 || bytes[..4] != [0x7f, b'E', b'L', b'F'] {
            return Err(ElfError::NotElf(bytes[..bytes.len().min(4)].to_vec()));
        }
        let is_64bit = match bytes[4] {
            1 => false,
            2 => true,
            other => {
                return Err(ElfError::Invalid {
                    field: "EI_CLASS",
                    found: other.into(),
                });
            }
        };
        let little_endian = match bytes[5] {
            1 => true,
            2 => false,
            other => {
                return Err(ElfError::Invalid {
                    field: "EI_DATA",
                    found: other.into(),
                });
            }
        };
        let r = Reader {
            bytes,
            little_endian,
        };
        let (phoff, phentsize_at, flags_at) = if is_64bit {
            (r.u64(32, "e_phoff")?, 54, 48)
        } else {
            (r.u32(28, "e_phoff")?.into(), 42, 36)
        };
        let file_type = r.u16(16, "e_type")?;
        let machine = r.u16(18, "e_machine")?;
        let flags = r.u32(flags_at, "e_flags")?;
        let phentsize = u64::from(r.u16(phentsize_at, "e_phentsize")?);
        let phnum = u64::from(r.u16(phentsize_at + 2, "e_phnum")?);
        let min_phentsize = if is_64bit { 56 } else { 32 };
        if phnum > 0 && phentsize < min_phentsize {
            return Err(ElfError::Invalid {
                field: "e_phentsize",
                found: phentsize,
            });
        }

        let mut interpreter = None;
        for i in 0..phnum {
            let ph = phoff.checked_add(i * phentsize).ok_or(ElfError::Invalid {
                field: "e_phoff",
                found: phoff,
            })?;
            if r.u32(ph, "p_type")? != PT_INTERP {
                continue;
            }
            let (offset, size) = if is_64bit {
                (r.u64(ph + 8, "p_offset")?, r.u64(ph + 32, "p_filesz")?)
            } else {
                (
                    r.u32(ph + 4, "p_offset")?.into(),
                    r.u32(ph + 16, "p_filesz")?.into(),
                )
            };
            if size == 0 || size > MAX_INTERP_LEN {
                return Err(ElfError::Invalid {
                    field: "PT_INTERP p_filesz",
                    found: size,
                });
            }
            let raw = r.slice(offset, size, "interpreter path")?;
            let path = raw
                .strip_suffix(&[0])
                .filter(|p| !p.contains(&0))
                .and_then(|p| std::str::from_utf8(p).ok())
                .ok_or(ElfError::BadInterpreter)?;
            interpreter = Some(path.to_owned());
            break;
        }

        Ok(ElfInfo {
            is_64bit,
            little_endian,
            file_type,
            machine,
            flags,
            interpreter,
        })
    }

    /// A Morello pure-capability (CheriABI) executable.
    pub fn is_cheri_purecap(&self) -> bool {
        self.machine == EM_AARCH64 && self.flags & EF_AARCH64_CHERI_PURECAP != 0
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    little_endian: bool,
}

impl Reader<'_> {
    fn slice(&self, offset: u64, len: u64, what: &'static str) -> Result<&[u8], ElfError> {
        let truncated = ElfError::Truncated {
            what,
            offset,
            available: self.bytes.len(),
        };
        let start = usize::try_from(offset).map_err(|_| truncated.clone())?;
        let len = usize::try_from(len).map_err(|_| truncated.clone())?;
        start
            .checked_add(len)
            .and_then(|end| self.bytes.get(start..end))
            .ok_or(truncated)
    }

    fn array<const N: usize>(&self, offset: u64, what: &'static str) -> Result<[u8; N], ElfError> {
        let s = self.slice(offset, N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        if !self.little_endian {
            a.reverse();
        }
        Ok(a)
    }

    fn u16(&self, offset: u64, what: &'static str) -> Result<u16, ElfError> {
        Ok(u16::from_le_bytes(self.array(offset, what)?))
    }

    fn u32(&self, offset: u64, what: &'static str) -> Result<u32, ElfError> {
        Ok(u32::from_le_bytes(self.array(offset, what)?))
    }

    fn u64(&self, offset: u64, what: &'static str) -> Result<u64, ElfError> {
        Ok(u64::from_le_bytes(self.array(offset, what)?))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal 64-bit little-endian ELF: header, one PT_INTERP program
    /// header, then the interpreter path.
    pub(crate) fn synthetic_elf64(machine: u16, flags: u32, interp: Option<&str>) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2; // 64-bit
        b[5] = 1; // little endian
        b[6] = 1; // version
        b[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[48..52].copy_from_slice(&flags.to_le_bytes());
        b[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        b[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        let phnum: u16 = interp.is_some().into();
        b[56..58].copy_from_slice(&phnum.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        if let Some(path) = interp {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&PT_INTERP.to_le_bytes());
            let off = 64u64 + 56;
            let size = path.len() as u64 + 1;
            ph[8..16].copy_from_slice(&off.to_le_bytes());
            ph[32..40].copy_from_slice(&size.to_le_bytes());
            b.extend_from_slice(&ph);
            b.extend_from_slice(path.as_bytes());
            b.push(0);
        }
        b
    }

    #[test]
    fn reads_the_interpreter_of_a_synthetic_elf() {
        let elf = synthetic_elf64(62, 0, Some("/lib64/ld-linux-x86-64.so.2"));
        let info = ElfInfo::parse(&elf).unwrap();
        assert!(info.is_64bit && info.little_endian);
        assert_eq!(info.machine, 62);
        assert_eq!(
            info.interpreter.as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert!(!info.is_cheri_purecap());
    }

    #[test]
    fn recognises_morello_purecap_and_the_c18n_interpreter() {
        let elf = synthetic_elf64(
            EM_AARCH64,
            EF_AARCH64_CHERI_PURECAP,
            Some("/libexec/ld-elf-c18n.so.1"),
        );
        let info = ElfInfo::parse(&elf).unwrap();
        assert!(info.is_cheri_purecap());
        assert_eq!(
            info.interpreter.as_deref(),
            Some("/libexec/ld-elf-c18n.so.1")
        );
        let hybrid = ElfInfo::parse(&synthetic_elf64(EM_AARCH64, 0, None)).unwrap();
        assert!(!hybrid.is_cheri_purecap());
        assert_eq!(hybrid.interpreter, None);
    }

    #[test]
    fn reads_the_host_compilers_real_binary() {
        // /bin/sh exists on every Linux CI host and is dynamically linked.
        let bytes = std::fs::read("/bin/sh").unwrap();
        let window = &bytes[..bytes.len().min(HEADER_WINDOW)];
        let info = ElfInfo::parse(window).unwrap();
        let interp = info.interpreter.expect("dynamically linked");
        assert!(interp.contains("ld-"), "{interp}");
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(matches!(
            ElfInfo::parse(b"#!/bin/sh\n"),
            Err(ElfError::NotElf(_))
        ));
        assert!(matches!(ElfInfo::parse(b""), Err(ElfError::NotElf(_))));
        let mut elf = synthetic_elf64(62, 0, Some("/lib/ld.so"));
        elf[4] = 9;
        assert!(matches!(
            ElfInfo::parse(&elf),
            Err(ElfError::Invalid {
                field: "EI_CLASS",
                ..
            })
        ));
        // Cut inside the interpreter string.
        let elf = synthetic_elf64(62, 0, Some("/lib/ld.so"));
        assert!(matches!(
            ElfInfo::parse(&elf[..elf.len() - 3]),
            Err(ElfError::Truncated { .. })
        ));
        // Interpreter without its terminating NUL.
        let mut elf = synthetic_elf64(62, 0, Some("/lib/ld.so"));
        let last = elf.len() - 1;
        elf[last] = b'x';
        assert_eq!(ElfInfo::parse(&elf), Err(ElfError::BadInterpreter));
        // Every prefix of a valid file: an error or a result, never a panic.
        let elf = synthetic_elf64(62, 0, Some("/lib64/ld-linux-x86-64.so.2"));
        for n in 0..elf.len() {
            let _ = ElfInfo::parse(&elf[..n]);
        }
        // Program headers pointing far away.
        let mut elf = synthetic_elf64(62, 0, Some("/x"));
        elf[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(ElfInfo::parse(&elf).is_err());
    }
}
