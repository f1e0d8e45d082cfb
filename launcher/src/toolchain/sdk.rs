//! The C SDK and the services trust anchor, compiled into every build.
//!
//! The SDK (`integration-process/attestable.h` and `attestable.c`) is
//! embedded in the launcher binary and written at start-up to
//! `<data>/sdk/<sdk sha256>/`, readable by the sandbox's user: a build reads
//! it from there, read-only. Its identity is the SHA-256 of `attestable.h`
//! followed by `attestable.c` (the evidence's `program.sdk_sha256`).
//!
//! The anchor is PEM certificates (normally the services CA) from the
//! build request or `[builds] services_anchor`, compiled in through a
//! generated `attestable_anchor.c`; its SHA-256 is over the PEM bytes, and
//! no anchor at all is the empty string (hash `None`).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use programs_db::Sha256Hex;

/// The SDK's header, as compiled into this launcher.
pub const HEADER: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../integration-process/attestable.h"
));
/// The SDK's implementation, as compiled into this launcher.
pub const SOURCE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../integration-process/attestable.c"
));

pub const HEADER_NAME: &str = "attestable.h";
pub const SOURCE_NAME: &str = "attestable.c";
pub const ANCHOR_NAME: &str = "attestable_anchor.c";

/// Largest anchor accepted (a CA bundle is a few KiB).
pub const MAX_ANCHOR_BYTES: usize = 64 * 1024;

/// SHA-256 of `attestable.h` followed by `attestable.c`.
pub fn sdk_sha256() -> Sha256Hex {
    let mut hasher = openssl::sha::Sha256::new();
    hasher.update(HEADER.as_bytes());
    hasher.update(SOURCE.as_bytes());
    Sha256Hex::from_digest(hasher.finish())
}

/// The SDK as installed in the data folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdk {
    pub dir: PathBuf,
    pub sha256: Sha256Hex,
}

impl Sdk {
    pub fn header(&self) -> PathBuf {
        self.dir.join(HEADER_NAME)
    }

    pub fn source(&self) -> PathBuf {
        self.dir.join(SOURCE_NAME)
    }

    /// Writes the embedded SDK to `<root>/<sha256>/` (folders 0755, files
    /// 0644: the sandbox reads them as another user), rewriting a file whose
    /// bytes differ, and removes other versions left by earlier launchers.
    pub fn install(root: &Path) -> io::Result<Sdk> {
        let sha256 = sdk_sha256();
        let dir = root.join(sha256.as_str());
        let context = |path: &Path, e: io::Error| {
            io::Error::new(e.kind(), format!("{}: {e}", path.display()))
        };
        for d in [root, dir.as_path()] {
            match fs::DirBuilder::new().mode(0o755).create(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
                Err(e) => return Err(context(d, e)),
            }
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).map_err(|e| context(d, e))?;
        }
        for (name, bytes) in [(HEADER_NAME, HEADER), (SOURCE_NAME, SOURCE)] {
            let path = dir.join(name);
            let same = fs::symlink_metadata(&path).is_ok_and(|m| m.is_file())
                && fs::read(&path).is_ok_and(|b| b == bytes.as_bytes());
            if !same {
                attestable_data::pki::write_atomic(&path, bytes.as_bytes(), 0o644)
                    .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
            }
        }
        for entry in fs::read_dir(root).map_err(|e| context(root, e))? {
            let path = entry?.path();
            if path != dir {
                crate::paths::remove_tree(&path).map_err(|e| context(&path, e))?;
            }
        }
        Ok(Sdk { dir, sha256 })
    }
}

/// A validated services trust anchor: PEM certificates, or none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Anchor {
    pem: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("services_anchor_pem: {0}")]
pub struct AnchorError(pub String);

impl Anchor {
    /// No anchor: the program trusts no service.
    pub fn none() -> Self {
        Anchor::default()
    }

    /// Checks that `pem` is one or more PEM certificates and nothing else
    /// (no keys, no other blocks, no stray text), each one parsing as X.509.
    pub fn parse(pem: &str) -> Result<Self, AnchorError> {
        let fail = |m: String| Err(AnchorError(m));
        if pem.len() > MAX_ANCHOR_BYTES {
            return fail(format!(
                "{} bytes; at most {MAX_ANCHOR_BYTES} accepted",
                pem.len()
            ));
        }
        if !pem.is_ascii() {
            return fail("expected ASCII PEM text, found non-ASCII bytes".into());
        }
        let mut blocks = 0usize;
        let mut inside = false;
        for (i, raw) in pem.lines().enumerate() {
            let line = raw.trim_end_matches('\r').trim();
            let at = i + 1;
            if line.is_empty() && !inside {
                continue;
            }
            if let Some(label) = line
                .strip_prefix("-----BEGIN ")
                .and_then(|l| l.strip_suffix("-----"))
            {
                if inside {
                    return fail(format!("line {at}: a BEGIN line inside a PEM block"));
                }
                if label != "CERTIFICATE" {
                    return fail(format!(
                        "line {at}: expected only CERTIFICATE blocks, found a {label} block"
                    ));
                }
                inside = true;
            } else if let Some(label) = line
                .strip_prefix("-----END ")
                .and_then(|l| l.strip_suffix("-----"))
            {
                if !inside || label != "CERTIFICATE" {
                    return fail(format!("line {at}: unexpected END {label} line"));
                }
                inside = false;
                blocks += 1;
            } else if !inside {
                return fail(format!(
                    "line {at}: text outside a PEM block (only certificates are accepted)"
                ));
            } else if !line
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
            {
                return fail(format!("line {at}: not base64"));
            }
        }
        if inside {
            return fail("the last PEM block has no END line".into());
        }
        if blocks == 0 {
            return fail("no certificate found (expected -----BEGIN CERTIFICATE-----)".into());
        }
        let certs = openssl::x509::X509::stack_from_pem(pem.as_bytes())
            .map_err(|e| AnchorError(format!("a certificate does not parse: {e}")))?;
        if certs.len() != blocks {
            return fail(format!(
                "{blocks} CERTIFICATE blocks, but {} parse as certificates",
                certs.len()
            ));
        }
        Ok(Anchor {
            pem: pem.to_owned(),
        })
    }

    /// Reads and checks an anchor file (`[builds] services_anchor`).
    pub fn load(path: &Path) -> Result<Self, AnchorError> {
        let bytes =
            fs::read(path).map_err(|e| AnchorError(format!("reading {}: {e}", path.display())))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| AnchorError(format!("{} is not text", path.display())))?;
        Anchor::parse(&text).map_err(|e| AnchorError(format!("{}: {}", path.display(), e.0)))
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// SHA-256 of the PEM bytes; `None` when there is no anchor.
    pub fn sha256(&self) -> Option<Sha256Hex> {
        (!self.pem.is_empty()).then(|| Sha256Hex::of(self.pem.as_bytes()))
    }

    /// `attestable_anchor.c`: defines the symbol `attestable.h` declares as
    /// one string literal holding exactly the PEM bytes.
    pub fn c_source(&self) -> String {
        let mut out = String::from(
            "/* Generated by the attestable launcher: the services trust anchor compiled into\n \
             * this program (PEM certificates; empty means none). Part of its measurement. */\n\
             #include \"attestable.h\"\n\nconst char att_services_anchor_pem[] =",
        );
        if self.pem.is_empty() {
            out.push_str(" \"\";\n");
            return out;
        }
        for line in self.pem.split_inclusive('\n') {
            out.push_str("\n    \"");
            for c in line.chars() {
                match c {
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    // Validation allows ASCII only; keep any other control
                    // character exact all the same.
                    c if c.is_ascii_control() => out.push_str(&format!("\\{:03o}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push_str(";\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_pem(cn: &str) -> String {
        let ca = attestable_data::pki::CertificateAuthority::create_root(cn, None, 30).unwrap();
        String::from_utf8(ca.certificate().to_pem().unwrap()).unwrap()
    }

    #[test]
    fn the_sdk_hash_is_header_then_source() {
        let mut both = HEADER.as_bytes().to_vec();
        both.extend_from_slice(SOURCE.as_bytes());
        assert_eq!(sdk_sha256(), Sha256Hex::of(&both));
        assert!(HEADER.contains("att_services_anchor_pem"));
    }

    #[test]
    fn install_writes_readable_files_and_drops_old_versions() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("sdk");
        fs::create_dir(&root).unwrap();
        fs::create_dir(root.join("0ld")).unwrap();
        let sdk = Sdk::install(&root).unwrap();
        assert_eq!(sdk.dir, root.join(sdk_sha256().as_str()));
        assert_eq!(fs::read_to_string(sdk.header()).unwrap(), HEADER);
        assert_eq!(fs::read_to_string(sdk.source()).unwrap(), SOURCE);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&sdk.dir), 0o755);
        assert_eq!(mode(&sdk.source()), 0o644);
        assert!(!root.join("0ld").exists());
        // An altered copy is put right at the next start.
        fs::set_permissions(sdk.source(), fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(sdk.source(), "int tampered;").unwrap();
        Sdk::install(&root).unwrap();
        assert_eq!(fs::read_to_string(sdk.source()).unwrap(), SOURCE);
    }

    #[test]
    fn anchors_are_certificates_only() {
        let one = cert_pem("services CA");
        let two = format!("{one}\n{}", cert_pem("other CA"));
        assert_eq!(Anchor::parse(&one).unwrap().pem(), one);
        assert!(Anchor::parse(&two).is_ok());
        assert_eq!(
            Anchor::parse(&one).unwrap().sha256(),
            Some(Sha256Hex::of(one.as_bytes()))
        );
        assert_eq!(Anchor::none().sha256(), None);

        let key = "-----BEGIN PRIVATE KEY-----\nMC4CAQA=\n-----END PRIVATE KEY-----\n";
        let err = Anchor::parse(&format!("{one}{key}")).unwrap_err();
        assert!(err.0.contains("found a PRIVATE KEY block"), "{err}");
        let err = Anchor::parse(&format!("hello\n{one}")).unwrap_err();
        assert!(err.0.contains("line 1: text outside a PEM block"), "{err}");
        let err = Anchor::parse("").unwrap_err();
        assert!(err.0.contains("no certificate found"), "{err}");
        let truncated: String = one.lines().take(3).collect::<Vec<_>>().join("\n");
        assert!(Anchor::parse(&truncated).is_err());
        let garbled = one.replacen("MII", "MIX", 1);
        let err = Anchor::parse(&garbled).unwrap_err();
        assert!(err.0.contains("does not parse"), "{err}");
        let injected = one.replacen("MII", "M\"I", 1);
        assert!(
            Anchor::parse(&injected)
                .unwrap_err()
                .0
                .contains("not base64")
        );
        assert!(Anchor::parse(&"A".repeat(MAX_ANCHOR_BYTES + 1)).is_err());
    }

    #[test]
    fn the_anchor_source_holds_exactly_the_pem() {
        let pem = cert_pem("services CA");
        let source = Anchor::parse(&pem).unwrap().c_source();
        assert!(source.contains("#include \"attestable.h\""));
        assert!(source.contains(
            "const char att_services_anchor_pem[] =\n    \"-----BEGIN CERTIFICATE-----\\n\""
        ));
        assert!(
            source
                .trim_end()
                .ends_with("\"-----END CERTIFICATE-----\\n\";")
        );
        let empty = Anchor::none().c_source();
        assert!(empty.ends_with("const char att_services_anchor_pem[] = \"\";\n"));
    }

    /// The generated file compiles, and the program sees the very bytes.
    #[test]
    fn the_anchor_source_compiles_to_the_same_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let pem = format!("{}\r\n", cert_pem("services CA").trim_end());
        let anchor = Anchor::parse(&pem).unwrap();
        fs::write(tmp.path().join(HEADER_NAME), HEADER).unwrap();
        fs::write(tmp.path().join(ANCHOR_NAME), anchor.c_source()).unwrap();
        fs::write(
            tmp.path().join("main.c"),
            "#include <stdio.h>\n#include \"attestable.h\"\n\
             int main(void) { fputs(att_services_anchor_pem, stdout); return 0; }\n",
        )
        .unwrap();
        let exe = tmp.path().join("main");
        let status = std::process::Command::new("cc")
            .args(["-std=c11", "-Wall", "-Werror", "-o"])
            .arg(&exe)
            .arg(tmp.path().join("main.c"))
            .arg(tmp.path().join(ANCHOR_NAME))
            .status()
            .unwrap();
        assert!(status.success());
        let out = std::process::Command::new(&exe).output().unwrap();
        assert_eq!(out.stdout, pem.as_bytes());
    }
}
