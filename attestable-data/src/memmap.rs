//! Memory maps: the regions of a process's address space, as the evidence
//! records them, from each platform's source.
//!
//! - Linux: the text of `/proc/<pid>/maps` ([`parse_linux_maps`]);
//! - FreeBSD / CheriBSD: the packed `kinfo_vmentry` records of
//!   `sysctl {CTL_KERN, KERN_PROC, KERN_PROC_VMMAP, pid}`
//!   ([`parse_kinfo_vmmap`], then [`regions_from_vmentries`]), or the output of
//!   `procstat --libxo json vm <pid>` ([`parse_procstat_json`]).
//!
//! Permissions are kept in the platform's own letters: four on Linux (`r-xp`,
//! the last letter `p` private or `s` shared), five on FreeBSD (`rwxRW`, where
//! `R` and `W` are CHERI capability load and store, `-` on hardware without
//! CHERI), so a reader compares like with like.
//!
//! A map is bounded: at most [`MAX_REGIONS`] regions (the rest are counted in
//! the evidence's `memory_map_omitted`) and paths of at most
//! [`MAX_PATH_BYTES`]. The run certificate travels with every request a
//! program makes, so it must stay small whatever the program maps.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::encoding::HexU64;

/// Regions kept in the evidence; further regions are counted, not listed.
pub const MAX_REGIONS: usize = 1024;

/// Longest path kept for a region, in bytes; longer paths are cut and end with `…`.
pub const MAX_PATH_BYTES: usize = 1024;

/// One mapped region, `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// First address of the region.
    pub start: HexU64,
    /// First address after the region.
    pub end: HexU64,
    /// Protection in the platform's letters (`r-xp` on Linux, `r-xRW` on CheriBSD).
    pub perms: String,
    /// Offset of the mapping in its object (0 when the source does not say).
    pub offset: HexU64,
    /// The mapped file, a pseudo-name such as `[stack]`, or empty.
    pub path: String,
}

/// A memory map that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MemMapError {
    /// A line or record did not have the expected shape.
    #[error("memory map {source_name}, {location}: {reason}")]
    Parse {
        /// Which format was being parsed.
        source_name: &'static str,
        /// Line or record number, or byte offset.
        location: String,
        /// What was wrong.
        reason: String,
    },
    /// The operating system refused to give the map.
    #[error("reading the memory map of process {pid}: {source}")]
    Io {
        /// The process.
        pid: u32,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn parse_err(
    source_name: &'static str,
    location: String,
    reason: impl Into<String>,
) -> MemMapError {
    MemMapError::Parse {
        source_name,
        location,
        reason: reason.into(),
    }
}

/// Cuts `path` to [`MAX_PATH_BYTES`] at a character boundary.
fn bound_path(mut path: String) -> String {
    if path.len() > MAX_PATH_BYTES {
        let mut cut = MAX_PATH_BYTES - '…'.len_utf8();
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        path.truncate(cut);
        path.push('…');
    }
    path
}

/// Keeps the first [`MAX_REGIONS`] regions; returns them and how many were dropped.
pub fn bound_regions(mut regions: Vec<Region>) -> (Vec<Region>, u64) {
    let omitted = regions.len().saturating_sub(MAX_REGIONS);
    regions.truncate(MAX_REGIONS);
    for r in &mut regions {
        if r.path.len() > MAX_PATH_BYTES {
            r.path = bound_path(std::mem::take(&mut r.path));
        }
    }
    (regions, omitted as u64)
}

/// Parses the text of Linux's `/proc/<pid>/maps`:
/// `start-end perms offset dev inode [path]`, addresses and offset in hex.
pub fn parse_linux_maps(text: &str) -> Result<Vec<Region>, MemMapError> {
    const SRC: &str = "/proc/<pid>/maps";
    let mut regions = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("line {}", n + 1);
        let mut rest = line;
        let mut field = |name: &str| -> Result<&str, MemMapError> {
            let trimmed = rest.trim_start_matches(' ');
            let end = trimmed.find(' ').unwrap_or(trimmed.len());
            let (f, r) = trimmed.split_at(end);
            rest = r;
            if f.is_empty() {
                Err(parse_err(SRC, at(), format!("missing {name}")))
            } else {
                Ok(f)
            }
        };
        let range = field("address range")?;
        let perms = field("permissions")?;
        let offset = field("offset")?;
        let dev = field("device")?;
        let inode = field("inode")?;
        let path = rest.trim_start_matches(' ');

        let (start, end) = range
            .split_once('-')
            .ok_or_else(|| parse_err(SRC, at(), format!("expected start-end, found {range:?}")))?;
        let hex = |what: &str, s: &str| {
            u64::from_str_radix(s, 16)
                .map(HexU64)
                .map_err(|_| parse_err(SRC, at(), format!("{what} {s:?} is not hex")))
        };
        let (start, end, offset) = (
            hex("start", start)?,
            hex("end", end)?,
            hex("offset", offset)?,
        );
        if end < start {
            return Err(parse_err(
                SRC,
                at(),
                format!("end {end} is below start {start}"),
            ));
        }
        let p = perms.as_bytes();
        let perms_ok = p.len() == 4
            && matches!(p[0], b'r' | b'-')
            && matches!(p[1], b'w' | b'-')
            && matches!(p[2], b'x' | b'-')
            && matches!(p[3], b'p' | b's');
        if !perms_ok {
            return Err(parse_err(
                SRC,
                at(),
                format!("expected permissions like r-xp, found {perms:?}"),
            ));
        }
        if !dev.contains(':') || inode.parse::<u64>().is_err() {
            return Err(parse_err(
                SRC,
                at(),
                format!("expected device major:minor and a decimal inode, found {dev:?} {inode:?}"),
            ));
        }
        regions.push(Region {
            start,
            end,
            perms: perms.to_string(),
            offset,
            path: bound_path(path.to_string()),
        });
    }
    Ok(regions)
}

/// `KVME_PROT_*` bits of `kinfo_vmentry.kve_protection` (CheriBSD's `sys/user.h`).
pub mod kvme_prot {
    /// Readable.
    pub const READ: i32 = 0x01;
    /// Writable.
    pub const WRITE: i32 = 0x02;
    /// Executable.
    pub const EXEC: i32 = 0x04;
    /// Capabilities may be loaded (with READ) and stored (with WRITE); CheriBSD only.
    pub const CAP: i32 = 0x20;
}

/// The fields of a FreeBSD `struct kinfo_vmentry` that the evidence uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmEntry {
    /// `kve_start`.
    pub start: u64,
    /// `kve_end`.
    pub end: u64,
    /// `kve_offset`.
    pub offset: u64,
    /// `kve_protection`, [`kvme_prot`] bits.
    pub protection: i32,
    /// `kve_type` (`KVME_TYPE_*`).
    pub kind: i32,
    /// `kve_flags` (`KVME_FLAG_*`).
    pub flags: i32,
    /// `kve_path`.
    pub path: String,
}

/// The five-letter `procstat -v` protection of a `kve_protection` mask.
pub fn kvme_perms(protection: i32) -> String {
    let has = |bit: i32| protection & bit != 0;
    let cap = has(kvme_prot::CAP);
    [
        if has(kvme_prot::READ) { 'r' } else { '-' },
        if has(kvme_prot::WRITE) { 'w' } else { '-' },
        if has(kvme_prot::EXEC) { 'x' } else { '-' },
        if cap && has(kvme_prot::READ) {
            'R'
        } else {
            '-'
        },
        if cap && has(kvme_prot::WRITE) {
            'W'
        } else {
            '-'
        },
    ]
    .iter()
    .collect()
}

/// Regions from `kinfo_vmentry` records, in order.
pub fn regions_from_vmentries(entries: &[VmEntry]) -> Vec<Region> {
    entries
        .iter()
        .map(|e| Region {
            start: HexU64(e.start),
            end: HexU64(e.end),
            perms: kvme_perms(e.protection),
            offset: HexU64(e.offset),
            path: bound_path(e.path.clone()),
        })
        .collect()
}

// Offsets in FreeBSD's (and CheriBSD's) `struct kinfo_vmentry`, which has the
// same layout on every 64-bit architecture; fields are in native byte order.
const KVE_STRUCTSIZE: usize = 0;
const KVE_TYPE: usize = 4;
const KVE_START: usize = 8;
const KVE_END: usize = 16;
const KVE_OFFSET: usize = 24;
const KVE_FLAGS: usize = 44;
const KVE_PROTECTION: usize = 56;
const KVE_PATH: usize = 136;

/// Parses the buffer that `sysctl {CTL_KERN, KERN_PROC, KERN_PROC_VMMAP, pid}`
/// fills: `kinfo_vmentry` records packed one after the other, each
/// `kve_structsize` bytes long with its path cut after the terminating NUL.
pub fn parse_kinfo_vmmap(buf: &[u8]) -> Result<Vec<VmEntry>, MemMapError> {
    const SRC: &str = "KERN_PROC_VMMAP";
    let i32_at =
        |rec: &[u8], at: usize| i32::from_ne_bytes(rec[at..at + 4].try_into().unwrap_or([0; 4]));
    let u64_at =
        |rec: &[u8], at: usize| u64::from_ne_bytes(rec[at..at + 8].try_into().unwrap_or([0; 8]));
    let mut entries = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let at = || format!("record {} at byte {pos}", entries.len() + 1);
        if rest.len() < 4 {
            return Err(parse_err(
                SRC,
                at(),
                format!("{} stray bytes at the end", rest.len()),
            ));
        }
        let size = i32_at(rest, KVE_STRUCTSIZE);
        let size = usize::try_from(size).unwrap_or(0);
        if size < KVE_PATH || size > rest.len() {
            return Err(parse_err(
                SRC,
                at(),
                format!(
                    "kve_structsize {size} is outside {KVE_PATH}..={} (the bytes left)",
                    rest.len()
                ),
            ));
        }
        let rec = &rest[..size];
        let path_bytes = &rec[KVE_PATH..];
        let path_len = path_bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(path_bytes.len());
        entries.push(VmEntry {
            start: u64_at(rec, KVE_START),
            end: u64_at(rec, KVE_END),
            offset: u64_at(rec, KVE_OFFSET),
            protection: i32_at(rec, KVE_PROTECTION),
            kind: i32_at(rec, KVE_TYPE),
            flags: i32_at(rec, KVE_FLAGS),
            path: String::from_utf8_lossy(&path_bytes[..path_len]).into_owned(),
        });
        pos += size;
    }
    Ok(entries)
}

/// Encodes records the way the kernel packs them (for tests and tools that
/// replay a captured map).
pub fn encode_kinfo_vmmap(entries: &[VmEntry]) -> Vec<u8> {
    let mut buf = Vec::new();
    for e in entries {
        let path = e.path.as_bytes();
        let size = (KVE_PATH + path.len() + 1).div_ceil(8) * 8;
        let mut rec = vec![0u8; size];
        rec[KVE_STRUCTSIZE..KVE_STRUCTSIZE + 4].copy_from_slice(&(size as i32).to_ne_bytes());
        rec[KVE_TYPE..KVE_TYPE + 4].copy_from_slice(&e.kind.to_ne_bytes());
        rec[KVE_START..KVE_START + 8].copy_from_slice(&e.start.to_ne_bytes());
        rec[KVE_END..KVE_END + 8].copy_from_slice(&e.end.to_ne_bytes());
        rec[KVE_OFFSET..KVE_OFFSET + 8].copy_from_slice(&e.offset.to_ne_bytes());
        rec[KVE_FLAGS..KVE_FLAGS + 4].copy_from_slice(&e.flags.to_ne_bytes());
        rec[KVE_PROTECTION..KVE_PROTECTION + 4].copy_from_slice(&e.protection.to_ne_bytes());
        rec[KVE_PATH..KVE_PATH + path.len()].copy_from_slice(path);
        buf.extend(rec);
    }
    buf
}

/// Parses `procstat --libxo json vm <pid>` output.
///
/// Every list named `vm` whose entries carry `kve_start` contributes its
/// regions, in order. Addresses may be strings (`"0x…"`, what libxo writes
/// for `%#jx`) or numbers; the protection comes from the `kve_protection`
/// object (`read`, `write`, `exec`, `read_cap`, `write_cap`). procstat does
/// not print the mapping offset, so it is 0.
pub fn parse_procstat_json(text: &str) -> Result<Vec<Region>, MemMapError> {
    const SRC: &str = "procstat --libxo json vm";
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| parse_err(SRC, format!("line {}", e.line()), e.to_string()))?;
    let mut lists = Vec::new();
    find_vm_lists(&doc, &mut lists);
    if lists.is_empty() {
        return Err(parse_err(
            SRC,
            "document".into(),
            "no \"vm\" list with kve_start entries",
        ));
    }
    let mut regions = Vec::new();
    for entry in lists.into_iter().flatten() {
        let at = || format!("entry {}", regions.len() + 1);
        let addr = |key: &str| -> Result<HexU64, MemMapError> {
            match entry.get(key) {
                Some(Value::String(s)) => HexU64::parse_lenient(s)
                    .map_err(|e| parse_err(SRC, at(), format!("{key}: {e}"))),
                Some(Value::Number(n)) => n
                    .as_u64()
                    .map(HexU64)
                    .ok_or_else(|| parse_err(SRC, at(), format!("{key}: {n} is not an address"))),
                None if key == "kve_offset" => Ok(HexU64(0)),
                other => Err(parse_err(
                    SRC,
                    at(),
                    format!("{key}: expected an address, found {other:?}"),
                )),
            }
        };
        let prot = entry.get("kve_protection");
        let flag = |name: &str| -> bool {
            match prot.and_then(|p| p.get(name)) {
                Some(Value::Bool(b)) => *b,
                Some(Value::String(s)) => s == "true",
                _ => false,
            }
        };
        let perms: String = [
            if flag("read") { 'r' } else { '-' },
            if flag("write") { 'w' } else { '-' },
            if flag("exec") { 'x' } else { '-' },
            if flag("read_cap") { 'R' } else { '-' },
            if flag("write_cap") { 'W' } else { '-' },
        ]
        .iter()
        .collect();
        if prot.is_none() {
            return Err(parse_err(SRC, at(), "no kve_protection object"));
        }
        let (start, end) = (addr("kve_start")?, addr("kve_end")?);
        if end < start {
            return Err(parse_err(
                SRC,
                at(),
                format!("end {end} is below start {start}"),
            ));
        }
        regions.push(Region {
            start,
            end,
            perms,
            offset: addr("kve_offset")?,
            path: bound_path(
                entry
                    .get("kve_path")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ),
        });
    }
    Ok(regions)
}

fn find_vm_lists<'a>(v: &'a Value, out: &mut Vec<&'a Vec<Value>>) {
    match v {
        Value::Object(map) => {
            for (key, child) in map {
                match child {
                    Value::Array(items)
                        if key == "vm" && items.iter().all(|i| i.get("kve_start").is_some()) =>
                    {
                        out.push(items)
                    }
                    _ => find_vm_lists(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| find_vm_lists(i, out)),
        _ => {}
    }
}

/// The CAMB extension `1.2.3.4.5.6.7.8.3`: `Memory: ` then a header line and
/// one line a region in the style of `procstat -v`, each line ending in `\n`:
///
/// ```text
/// Memory:              START                END PRT               OFFSET PATH
///           0x400000           0x401000 r--p                    0x0 /prog
/// ```
///
/// Columns are right-aligned to 18 characters (16 hex digits and `0x`);
/// control characters in paths become `?` so that a region is one line. When
/// regions were omitted a last line says how many.
pub fn render_camb_memory(regions: &[Region], omitted: u64) -> String {
    let mut out = String::with_capacity(32 + regions.len() * 80);
    out.push_str("Memory: ");
    let _ = writeln!(
        out,
        "{:>18} {:>18} {:<5} {:>18} PATH",
        "START", "END", "PRT", "OFFSET"
    );
    for r in regions {
        let path: String = r
            .path
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        let line = format!(
            "{:>18} {:>18} {:<5} {:>18} {}",
            r.start.to_string(),
            r.end.to_string(),
            r.perms,
            r.offset.to_string(),
            path
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if omitted > 0 {
        let _ = writeln!(out, "... {omitted} more regions omitted");
    }
    out
}

/// Reads `/proc/<pid>/maps` (Linux).
pub fn read_proc_maps(pid: u32) -> Result<Vec<Region>, MemMapError> {
    let text = std::fs::read(format!("/proc/{pid}/maps"))
        .map_err(|source| MemMapError::Io { pid, source })?;
    parse_linux_maps(&String::from_utf8_lossy(&text))
}

/// Reads a process's map with `sysctl KERN_PROC_VMMAP` (FreeBSD, CheriBSD).
#[cfg(target_os = "freebsd")]
pub fn read_kinfo_vmmap(pid: u32) -> Result<Vec<Region>, MemMapError> {
    let io = |source| MemMapError::Io { pid, source };
    let pid_c = libc::c_int::try_from(pid)
        .map_err(|_| io(std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
    let mib = [
        libc::CTL_KERN,
        libc::KERN_PROC,
        libc::KERN_PROC_VMMAP,
        pid_c,
    ];
    // The map can grow between the size query and the read: retry with room to spare.
    for _ in 0..4 {
        let mut len: libc::size_t = 0;
        // SAFETY: a size query (null buffer) with a valid MIB and length pointer.
        let rc = unsafe {
            libc::sysctl(
                mib.as_ptr(),
                4,
                std::ptr::null_mut(),
                &mut len,
                std::ptr::null(),
                0,
            )
        };
        if rc != 0 {
            return Err(io(std::io::Error::last_os_error()));
        }
        len = len * 4 / 3 + 4096;
        let mut buf = vec![0u8; len];
        // SAFETY: `buf` has `len` writable bytes; the kernel writes at most `len`
        // and stores the count it wrote in `len`.
        let rc = unsafe {
            libc::sysctl(
                mib.as_ptr(),
                4,
                buf.as_mut_ptr().cast(),
                &mut len,
                std::ptr::null(),
                0,
            )
        };
        if rc == 0 {
            buf.truncate(len);
            return Ok(regions_from_vmentries(&parse_kinfo_vmmap(&buf)?));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ENOMEM) {
            return Err(io(err));
        }
    }
    Err(io(std::io::Error::from_raw_os_error(libc::ENOMEM)))
}

/// The memory map of process `pid` from this platform's source.
pub fn capture(pid: u32) -> Result<Vec<Region>, MemMapError> {
    #[cfg(target_os = "freebsd")]
    {
        read_kinfo_vmmap(pid)
    }
    #[cfg(not(target_os = "freebsd"))]
    {
        read_proc_maps(pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LINUX_MAPS: &str = include_str!("../tests/data/linux-maps.txt");
    const PROCSTAT_JSON: &str = include_str!("../tests/data/procstat-vm-morello.json");

    #[test]
    fn parses_linux_maps() {
        let regions = parse_linux_maps(LINUX_MAPS).unwrap();
        assert_eq!(regions.len(), 9);
        assert_eq!(
            regions[0],
            Region {
                start: HexU64(0x5581_2d3c_5000),
                end: HexU64(0x5581_2d3c_6000),
                perms: "r--p".into(),
                offset: HexU64(0),
                path: "/work/runs/17/integration_process".into(),
            }
        );
        assert_eq!(regions[1].offset, HexU64(0x1000));
        assert_eq!(regions[3].path, "", "anonymous mapping");
        assert_eq!(regions[4].path, "/tmp/with space (deleted)");
        assert_eq!(regions[7].path, "[stack]");
        assert_eq!(regions[8].perms, "--xp");
    }

    #[test]
    fn linux_maps_errors_name_the_line() {
        for (text, needle) in [
            ("zz-10 r--p 0 00:00 0\n", "start \"zz\""),
            ("10-20 rwzp 0 00:00 0\n", "r-xp"),
            ("10 r--p 0 00:00 0\n", "start-end"),
            ("10-20 r--p\n", "missing offset"),
            ("20-10 r--p 0 00:00 0\n", "below start"),
            ("10-20 r--p 0 0000 x\n", "inode"),
        ] {
            let err = parse_linux_maps(&format!("10-20 r--p 0 00:00 0\n{text}")).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("line 2") && msg.contains(needle), "{msg}");
        }
    }

    #[test]
    fn reads_own_maps() {
        let regions = read_proc_maps(std::process::id()).unwrap();
        assert!(regions.iter().any(|r| r.path == "[stack]"));
        assert!(regions.iter().any(|r| r.perms.contains('x')));
        assert!(matches!(
            read_proc_maps(u32::MAX),
            Err(MemMapError::Io { .. })
        ));
    }

    #[test]
    fn parses_procstat_libxo_json_from_cheribsd() {
        let regions = parse_procstat_json(PROCSTAT_JSON).unwrap();
        assert_eq!(regions.len(), 7);
        assert_eq!(regions[0].perms, "r--R-");
        assert_eq!(regions[0].start, HexU64(0x100000));
        assert_eq!(regions[0].path, "/usr/home/demo/integration_process");
        assert_eq!(regions[1].perms, "r-x--");
        assert_eq!(regions[3].perms, "rw-RW");
        assert_eq!(regions[5].path, "", "guard entry has no path");
        assert!(regions.iter().all(|r| r.offset == HexU64(0)));
        assert!(parse_procstat_json("{\"procstat\": {}}").is_err());
        assert!(parse_procstat_json("not json").is_err());
    }

    fn sample_entries() -> Vec<VmEntry> {
        use kvme_prot::*;
        vec![
            VmEntry {
                start: 0x100000,
                end: 0x101000,
                offset: 0,
                protection: READ | CAP,
                kind: 2,
                flags: 0x0400_0000,
                path: "/usr/home/demo/integration_process".into(),
            },
            VmEntry {
                start: 0x110000,
                end: 0x112000,
                offset: 0x10000,
                protection: READ | EXEC,
                kind: 2,
                flags: 0,
                path: "/usr/home/demo/integration_process".into(),
            },
            VmEntry {
                start: 0x4000_0000,
                end: 0x4020_0000,
                offset: 0,
                protection: READ | WRITE | CAP,
                kind: 3,
                flags: 0x0400_0000,
                path: String::new(),
            },
            VmEntry {
                start: 0x7fff_e000_0000,
                end: 0x7fff_e000_1000,
                offset: 0,
                protection: 0,
                kind: 9,
                flags: 0x0100_0000,
                path: String::new(),
            },
        ]
    }

    #[test]
    fn kinfo_vmentry_buffers_round_trip_and_convert() {
        let entries = sample_entries();
        let buf = encode_kinfo_vmmap(&entries);
        assert_eq!(buf.len() % 8, 0);
        assert_eq!(parse_kinfo_vmmap(&buf).unwrap(), entries);
        let regions = regions_from_vmentries(&entries);
        let perms: Vec<_> = regions.iter().map(|r| r.perms.as_str()).collect();
        assert_eq!(perms, ["r--R-", "r-x--", "rw-RW", "-----"]);
        assert_eq!(regions[1].offset, HexU64(0x10000));
        // The same regions as procstat prints for them (offset aside).
        let from_json = parse_procstat_json(PROCSTAT_JSON).unwrap();
        assert_eq!(regions[0].perms, from_json[0].perms);
    }

    #[test]
    fn kinfo_parser_rejects_bad_sizes() {
        let buf = encode_kinfo_vmmap(&sample_entries());
        assert!(
            parse_kinfo_vmmap(&buf[..buf.len() - 1]).is_err(),
            "cut record"
        );
        let mut bad = buf.clone();
        bad[0..4].copy_from_slice(&8i32.to_ne_bytes());
        assert!(parse_kinfo_vmmap(&bad).is_err(), "size below the header");
        bad[0..4].copy_from_slice(&(-1i32).to_ne_bytes());
        assert!(parse_kinfo_vmmap(&bad).is_err(), "negative size");
        assert!(parse_kinfo_vmmap(&[1, 2]).is_err());
        assert!(parse_kinfo_vmmap(&[]).unwrap().is_empty());
    }

    #[test]
    fn renders_camb_memory_text() {
        let regions = parse_linux_maps(LINUX_MAPS).unwrap();
        let text = render_camb_memory(&regions[..2], 0);
        assert_eq!(
            text,
            "Memory:              START                END PRT               OFFSET PATH\n\
             \x20   0x55812d3c5000     0x55812d3c6000 r--p                 0x0 /work/runs/17/integration_process\n\
             \x20   0x55812d3c6000     0x55812d3c7000 r-xp              0x1000 /work/runs/17/integration_process\n"
        );
        let mut odd = regions[3].clone();
        odd.path = "a\nb".into();
        let text = render_camb_memory(&[odd], 5);
        assert!(
            text.ends_with(" a?b\n... 5 more regions omitted\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn bounds_regions_and_paths() {
        let region = |i: u64| Region {
            start: HexU64(i * 4096),
            end: HexU64(i * 4096 + 4096),
            perms: "rw-p".into(),
            offset: HexU64(0),
            path: "é".repeat(600),
        };
        let (kept, omitted) = bound_regions((0..MAX_REGIONS as u64 + 7).map(region).collect());
        assert_eq!((kept.len(), omitted), (MAX_REGIONS, 7));
        assert!(kept[0].path.len() <= MAX_PATH_BYTES && kept[0].path.ends_with('…'));
        let (kept, omitted) = bound_regions(vec![region(1)]);
        assert_eq!((kept.len(), omitted), (1, 0));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(text in any::<String>(), bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_linux_maps(&text);
            let _ = parse_procstat_json(&text);
            let _ = parse_kinfo_vmmap(&bytes);
        }

        #[test]
        fn linux_maps_round_trip(
            rows in prop::collection::vec((any::<u32>(), 0u32..1 << 20, 0usize..4, "[a-z/\\[\\] ]{0,20}"), 0..20)
        ) {
            let perms = ["r--p", "r-xp", "rw-p", "---s"];
            let mut text = String::new();
            for (start, len, p, path) in &rows {
                let start = u64::from(*start) << 12;
                let end = start + (u64::from(*len) << 12);
                text.push_str(&format!("{start:x}-{end:x} {} 00000000 00:00 0 {path}\n", perms[*p]));
            }
            let regions = parse_linux_maps(&text).unwrap();
            prop_assert_eq!(regions.len(), rows.len());
            for (r, (start, _, p, path)) in regions.iter().zip(&rows) {
                prop_assert_eq!(r.start, HexU64(u64::from(*start) << 12));
                prop_assert_eq!(&r.perms, perms[*p]);
                prop_assert_eq!(&r.path, path.trim_start_matches(' '));
            }
        }
    }
}
