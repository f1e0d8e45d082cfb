//! A run certificate chain, decoded for people (`cert show`) and as JSON.
//! Nothing here verifies anything: `cert verify` does, with a policy.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use attestable_data::encoding::UnixTime;
use attestable_data::evidence::{Evidence, Limits};
use attestable_data::memmap::Region;
use attestable_data::pki::{asn1_time_to_unix, cert_fingerprint, describe_name, key_id};
use attestable_data::verify::{parse_chain_pem, read_evidence};
use openssl::x509::X509;
use serde::Serialize;
use serde_json::{Value, json};

use crate::format::bytes;

/// One certificate of the chain.
#[derive(Debug, Clone, Serialize)]
pub struct CertSummary {
    /// `run certificate`, `attestation certificate`, `root certificate` or `certificate`.
    pub role: &'static str,
    pub subject: String,
    pub issuer: String,
    #[serde(serialize_with = "rfc3339")]
    pub not_before: i64,
    #[serde(serialize_with = "rfc3339")]
    pub not_after: i64,
    /// SHA-256 of the SubjectPublicKeyInfo (proofs show its first 8 digits).
    pub key_id: String,
    /// SHA-256 of the DER.
    pub fingerprint: String,
}

fn rfc3339<S: serde::Serializer>(t: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&UnixTime(*t))
}

#[derive(Debug, Clone)]
pub struct ChainInfo {
    pub certs: Vec<CertSummary>,
    pub evidence: Result<Evidence, String>,
}

/// Decodes a PEM chain, run certificate first.
pub fn decode(pem: &str) -> Result<ChainInfo, String> {
    let chain = parse_chain_pem(pem).map_err(|e| e.to_string())?;
    let last = chain.len() - 1;
    let certs = chain
        .iter()
        .enumerate()
        .map(|(i, cert)| summarize(cert, role(i, last, cert)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ChainInfo {
        certs,
        evidence: read_evidence(&chain[0]),
    })
}

fn role(index: usize, last: usize, cert: &X509) -> &'static str {
    let self_signed = cert.issuer_name().to_der().ok() == cert.subject_name().to_der().ok();
    match index {
        0 => "run certificate",
        i if i == last && self_signed => "root certificate",
        1 => "attestation certificate",
        _ => "certificate",
    }
}

fn summarize(cert: &X509, role: &'static str) -> Result<CertSummary, String> {
    let key = cert.public_key().map_err(|e| e.to_string())?;
    Ok(CertSummary {
        role,
        subject: describe_name(cert.subject_name()),
        issuer: describe_name(cert.issuer_name()),
        not_before: asn1_time_to_unix(cert.not_before()).map_err(|e| e.to_string())?,
        not_after: asn1_time_to_unix(cert.not_after()).map_err(|e| e.to_string())?,
        key_id: key_id(&key).map_err(|e| e.to_string())?,
        fingerprint: cert_fingerprint(cert).map_err(|e| e.to_string())?,
    })
}

/// `{"run_id", "chain", "evidence", "evidence_error", "chain_pem"}`.
pub fn to_json(info: &ChainInfo, pem: &str) -> Value {
    let (evidence, error) = match &info.evidence {
        Ok(e) => (serde_json::to_value(e).unwrap_or(Value::Null), Value::Null),
        Err(e) => (Value::Null, Value::String(e.clone())),
    };
    json!({
        "run_id": info.evidence.as_ref().ok().map(|e| e.run.id),
        "chain": info.certs,
        "evidence": evidence,
        "evidence_error": error,
        "chain_pem": pem,
    })
}

/// The decoded chain as text; `now` decides what "valid now" means.
pub fn render(info: &ChainInfo, now: i64) -> String {
    let mut out = String::new();
    let row = |out: &mut String, label: &str, value: &str| {
        let _ = writeln!(out, "  {:<21}{value}", format!("{label}:"));
    };
    match &info.evidence {
        Ok(e) => render_evidence(&mut out, e, &row),
        Err(err) => {
            let _ = writeln!(
                out,
                "Certificate (not a run certificate: {err})\n  subject {}",
                info.certs[0].subject
            );
        }
    }
    let run = &info.certs[0];
    let _ = writeln!(out, "Validity");
    row(
        &mut out,
        "Certificate",
        &format!(
            "{} to {} ({})",
            UnixTime(run.not_before),
            UnixTime(run.not_after),
            validity_word(run, now)
        ),
    );
    let _ = writeln!(out, "Chain");
    for (i, c) in info.certs.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {}. {:<24} {}\n     key {}  issuer {}  valid {} to {} ({})",
            i + 1,
            c.role,
            c.subject,
            &c.key_id[..8.min(c.key_id.len())],
            c.issuer,
            UnixTime(c.not_before),
            UnixTime(c.not_after),
            validity_word(c, now)
        );
    }
    out
}

fn validity_word(c: &CertSummary, now: i64) -> &'static str {
    if now < c.not_before {
        "not yet valid"
    } else if now > c.not_after {
        "expired"
    } else {
        "valid now"
    }
}

fn render_evidence(out: &mut String, e: &Evidence, row: &dyn Fn(&mut String, &str, &str)) {
    let p = &e.program;
    let _ = writeln!(
        out,
        "Run certificate of run {}: program {} \"{}\", build {}",
        e.run.id, p.id, p.name, p.build_id
    );
    let _ = writeln!(out, "Measurement");
    row(out, "Executable SHA-256", &p.executable_sha256.to_string());
    row(out, "Source SHA-256", &p.source_sha256.to_string());
    row(out, "SDK SHA-256", &p.sdk_sha256.to_string());
    row(
        out,
        "Services anchor",
        &p.services_anchor_sha256
            .map(|h| h.to_string())
            .unwrap_or_else(|| "none".into()),
    );
    row(
        out,
        "Toolchain",
        &format!(
            "{}: {} {}",
            p.toolchain_profile,
            p.compiler,
            p.flags.join(" ")
        ),
    );
    let pl = &e.platform;
    let _ = writeln!(out, "Platform");
    row(out, "CPU model", &pl.cpu_model);
    row(out, "CPUs", &pl.cpus.to_string());
    row(out, "Memory", &bytes(pl.physical_memory_bytes));
    row(
        out,
        "System",
        &format!(
            "{} {} ({}), host {}",
            pl.os, pl.os_release, pl.arch, pl.hostname
        ),
    );
    let c = &e.compartment;
    let _ = writeln!(out, "Compartment");
    row(
        out,
        "Backend",
        &format!(
            "{}{}",
            c.backend,
            if c.insecure {
                " (INSECURE: started with --insecure-no-compartment)"
            } else {
                ""
            }
        ),
    );
    if c.layers.is_empty() {
        row(out, "Layers", "none");
    } else {
        row(out, "Layers", "");
        for layer in &c.layers {
            let _ = writeln!(
                out,
                "    {:<14} {:<11} {}",
                layer.name, layer.status, layer.detail
            );
        }
    }
    row(
        out,
        "Degraded",
        &if c.degraded.is_empty() {
            "none".to_owned()
        } else {
            c.degraded.join(", ")
        },
    );
    row(out, "Limits", &limits(&c.limits));
    row(
        out,
        "Memory map",
        &memory_summary(&c.memory_map, c.memory_map_omitted),
    );
    match &c.cheri_bounds {
        None => row(out, "CHERI bounds", "none reported"),
        Some(caps) => {
            row(out, "CHERI bounds", "");
            for cap in caps {
                let _ = writeln!(
                    out,
                    "    {:<8} base {} length {} perms {}{}",
                    cap.name,
                    cap.base,
                    cap.length,
                    cap.perms,
                    if cap.tag { "" } else { " (untagged)" }
                );
            }
        }
    }
    let _ = writeln!(out, "Run");
    row(
        out,
        "Started",
        &format!("{}, time limit until {}", e.run.started_at, e.run.not_after),
    );
    row(
        out,
        "Launcher",
        &format!(
            "{}, attestation key {}",
            e.launcher.version,
            e.launcher.attestation_key_id.short(8)
        ),
    );
}

fn limits(l: &Limits) -> String {
    let mut parts = Vec::new();
    let mut add = |name: &str, v: Option<u64>, f: &dyn Fn(u64) -> String| {
        if let Some(v) = v {
            parts.push(format!("{name} {}", f(v)));
        }
    };
    add("address space", l.address_space_bytes, &bytes);
    add("CPU", l.cpu_seconds, &|s| format!("{s} s"));
    add("open files", l.open_files, &|n| n.to_string());
    add("processes", l.processes, &|n| n.to_string());
    add("file size", l.file_size_bytes, &bytes);
    add("wall clock", l.wall_seconds, &|s| format!("{s} s"));
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// `23 regions, 8.4 MiB mapped (5 executable, 9 writable); objects: a, b; [heap], [stack]`.
pub fn memory_summary(regions: &[Region], omitted: u64) -> String {
    if regions.is_empty() {
        return if omitted == 0 {
            "not captured".into()
        } else {
            format!("{omitted} regions, none listed")
        };
    }
    let mapped: u64 = regions
        .iter()
        .map(|r| r.end.0.saturating_sub(r.start.0))
        .sum();
    let perm = |r: &Region, i: usize, c: char| r.perms.chars().nth(i) == Some(c);
    let executable = regions.iter().filter(|r| perm(r, 2, 'x')).count();
    let writable = regions.iter().filter(|r| perm(r, 1, 'w')).count();
    let mut files = BTreeSet::new();
    let mut pseudo = BTreeSet::new();
    for r in regions {
        if r.path.starts_with('/') {
            files.insert(r.path.rsplit('/').next().unwrap_or(&r.path).to_owned());
        } else if r.path.starts_with('[') {
            pseudo.insert(r.path.clone());
        }
    }
    let mut text = format!(
        "{} regions, {} mapped ({executable} executable, {writable} writable)",
        regions.len(),
        bytes(mapped)
    );
    if omitted > 0 {
        let _ = write!(text, ", {omitted} more omitted");
    }
    const SHOWN: usize = 8;
    if !files.is_empty() {
        let names: Vec<&str> = files.iter().take(SHOWN).map(String::as_str).collect();
        let more = files.len().saturating_sub(SHOWN);
        let _ = write!(
            text,
            "; objects: {}{}",
            names.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    if !pseudo.is_empty() {
        let names: Vec<&str> = pseudo.iter().map(String::as_str).collect();
        let _ = write!(text, "; {}", names.join(", "));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use attestable_data::encoding::HexU64;

    fn region(start: u64, end: u64, perms: &str, path: &str) -> Region {
        Region {
            start: HexU64(start),
            end: HexU64(end),
            perms: perms.into(),
            offset: HexU64(0),
            path: path.into(),
        }
    }

    #[test]
    fn memory_maps_are_summarized() {
        let regions = vec![
            region(0x1000, 0x2000, "r-xp", "/usr/bin/hello"),
            region(0x2000, 0x4000, "rw-p", "/usr/bin/hello"),
            region(0x10000, 0x11000, "r-xp", "/lib/libc.so.6"),
            region(0x20000, 0x21000, "rw-p", "[heap]"),
            region(0x30000, 0x31000, "rw-p", "[stack]"),
            region(0x40000, 0x41000, "rw-p", ""),
        ];
        assert_eq!(
            memory_summary(&regions, 2),
            "6 regions, 28.0 KiB mapped (2 executable, 4 writable), 2 more omitted; \
             objects: hello, libc.so.6; [heap], [stack]"
        );
        assert_eq!(memory_summary(&[], 0), "not captured");
    }

    #[test]
    fn limits_list_what_is_set() {
        let l = Limits {
            cpu_seconds: Some(31),
            wall_seconds: Some(30),
            file_size_bytes: Some(16 << 20),
            ..Default::default()
        };
        assert_eq!(limits(&l), "CPU 31 s, file size 16.0 MiB, wall clock 30 s");
        assert_eq!(limits(&Limits::default()), "none");
    }

    #[test]
    fn garbage_is_not_a_chain() {
        assert!(decode("hello").is_err());
        assert!(decode("").is_err());
    }
}
