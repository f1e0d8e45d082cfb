//! What the demo needs from the machine, checked before anything starts:
//! a C compiler, OpenSSL 3's libcrypto with its headers (the launcher
//! compiles the program with both), and every compartment layer the
//! launcher's probe reports. Each failure says what is missing and how to
//! get it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::error::{CliError, Result};
use crate::views::Compartment;

/// What the machine offers the launcher's toolchain.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// The first line of `cc --version`.
    pub compiler: String,
    /// `OPENSSL_VERSION_TEXT` of the headers, from a program linked with `-lcrypto`.
    pub openssl: String,
}

/// The launcher's default profile compiles with `cc` from `PATH`.
const COMPILER: &str = "cc";

/// Includes `<openssl/cms.h>` (what the SDK uses), refuses OpenSSL before 3,
/// and links libcrypto; running it prints the headers' version.
const CHECK_PROGRAM: &str = "\
#include <openssl/cms.h>
#include <stdio.h>
#if OPENSSL_VERSION_MAJOR < 3
#error \"the attestable SDK needs OpenSSL 3 or later\"
#endif
int main(void) { CMS_ContentInfo_free(CMS_ContentInfo_new()); puts(OPENSSL_VERSION_TEXT); return 0; }
";

const INSTALL_COMPILER: &str = "install one: `sudo apt-get install gcc libc6-dev` (Debian, Ubuntu) \
                                or `sudo dnf install gcc` (Fedora)";
const INSTALL_LIBCRYPTO: &str = "install OpenSSL's development files: `sudo apt-get install \
                                 libssl-dev` (Debian, Ubuntu) or `sudo dnf install openssl-devel` (Fedora)";

pub fn check_toolchain() -> Result<Toolchain> {
    let version = run(Command::new(COMPILER).arg("--version")).map_err(|e| {
        missing(format!(
            "a C compiler: the launcher compiles the uploaded program with `{COMPILER}` from PATH, \
             and running `{COMPILER} --version` failed ({e}); {INSTALL_COMPILER}"
        ))
    })?;
    let compiler = first_line(&version.stdout);
    if !version.status.success() || compiler.is_empty() {
        return Err(missing(format!(
            "a working C compiler: `{COMPILER} --version` {}; {INSTALL_COMPILER}",
            describe_failure(&version)
        )));
    }
    let openssl = check_libcrypto()?;
    Ok(Toolchain { compiler, openssl })
}

/// Compiles, links and runs [`CHECK_PROGRAM`] in a private scratch folder.
fn check_libcrypto() -> Result<String> {
    let scratch = Scratch::new()?;
    let source = scratch.0.join("check.c");
    let exe = scratch.0.join("check");
    std::fs::write(&source, CHECK_PROGRAM)
        .map_err(|e| CliError::Input(format!("writing {}: {e}", source.display())))?;
    let compile = run(Command::new(COMPILER)
        .arg("-o")
        .arg(&exe)
        .arg(&source)
        .arg("-lcrypto")
        .env("LC_ALL", "C"))
    .map_err(|e| {
        missing(format!(
            "a working C compiler: running `{COMPILER}` failed ({e})"
        ))
    })?;
    if !compile.status.success() {
        return Err(missing(format!(
            "OpenSSL 3's libcrypto and its headers: a two-line program including <openssl/cms.h> \
             does not compile and link with `{COMPILER} check.c -lcrypto`; the compiler said:\n{}\n{INSTALL_LIBCRYPTO}",
            indent(&compile.stderr)
        )));
    }
    let ran = run(&mut Command::new(&exe)).map_err(|e| {
        missing(format!(
            "a usable libcrypto: a program linked with -lcrypto does not start ({e}); {INSTALL_LIBCRYPTO}"
        ))
    })?;
    if !ran.status.success() {
        return Err(missing(format!(
            "a usable libcrypto: a program linked with -lcrypto {}; {INSTALL_LIBCRYPTO}",
            describe_failure(&ran)
        )));
    }
    Ok(first_line(&ran.stdout))
}

fn run(command: &mut Command) -> std::io::Result<Output> {
    command.stdin(std::process::Stdio::null()).output()
}

fn missing(what: String) -> CliError {
    CliError::Input(format!("prerequisite missing: {what}"))
}

fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned()
}

fn describe_failure(out: &Output) -> String {
    let said = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if said.is_empty() {
        format!("ended with {}", out.status)
    } else {
        format!("ended with {}: {}", out.status, first_line(said.as_bytes()))
    }
}

/// The first lines of a tool's output, indented under the message.
fn indent(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .take(8)
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A private folder under the system's temporary folder, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "attestable-demo-check-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        let mut builder = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir)
            .map_err(|e| CliError::Input(format!("creating {}: {e}", dir.display())))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The refusal when the launcher's probe found a layer missing, naming each
/// one, what it would give up, and the two ways to go on; `None` when every
/// layer is active or switched off on purpose.
pub fn compartment_refusal(compartment: &Compartment, data: &Path) -> Option<String> {
    let missing: Vec<_> = compartment
        .layers
        .iter()
        .filter(|l| l.status == "unavailable")
        .collect();
    if missing.is_empty() {
        return None;
    }
    let names: Vec<&str> = missing.iter().map(|l| l.name.as_str()).collect();
    let mut text = format!(
        "the {} compartment lacks {} on this machine, so the launcher refuses to build and run \
         programs:",
        compartment.backend,
        if missing.len() == 1 {
            "a layer"
        } else {
            "layers"
        }
    );
    for layer in &missing {
        text.push_str(&format!("\n  {}: {}", layer.name, layer.detail));
    }
    text.push_str(&format!(
        "\nFix the machine, or choose what to give up (the launcher records it in every run and \
         certificate, and the demo makes the services accept it):\n  \
         attestable demo --data {data} --allow-degraded {list}\n    gives up {gives}\n  \
         attestable demo --data {data} --insecure-no-compartment\n    gives up every layer: the \
         program runs as an ordinary process of the launcher's user",
        data = data.display(),
        list = names.join(","),
        gives = names
            .iter()
            .map(|n| gives_up(n))
            .collect::<Vec<_>>()
            .join("; "),
    ));
    Some(text)
}

/// What running without a layer gives up, for a person.
pub fn gives_up(layer: &str) -> String {
    match layer {
        "namespaces" => "the program's own PID, network, mount and user namespaces: it could see \
                         the host's processes and reach its network"
            .into(),
        "no_new_privs" => "no_new_privs: a setuid program it starts could gain privileges".into(),
        "landlock" => "Landlock: it could read every file the launcher's sandbox user can".into(),
        "seccomp" => "the system-call filter: ptrace, mount, bpf, non-Unix sockets and the like \
                      are no longer refused"
            .into(),
        "rlimits" => {
            "the resource limits: memory, CPU time, files and processes are unbounded".into()
        }
        "purecap" => "pure-capability code: pointers lose their hardware bounds".into(),
        "c18n" => "library compartments: its libraries share one protection domain".into(),
        "capsicum" => "Capsicum capability mode: it could open files and sockets by name".into(),
        other => format!("the {other} layer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::Layer;

    fn compartment(statuses: &[(&str, &str)]) -> Compartment {
        Compartment {
            backend: "linux-sandbox".into(),
            layers: statuses
                .iter()
                .map(|(name, status)| Layer {
                    name: (*name).into(),
                    status: (*status).into(),
                    detail: format!("{name} detail"),
                })
                .collect(),
            insecure: false,
        }
    }

    #[test]
    fn a_missing_layer_is_named_with_both_ways_on() {
        let c = compartment(&[
            ("namespaces", "active"),
            ("landlock", "unavailable"),
            ("seccomp", "disabled"),
        ]);
        let text = compartment_refusal(&c, Path::new("demo dir")).expect("a refusal");
        assert!(
            text.contains("linux-sandbox compartment lacks a layer"),
            "{text}"
        );
        assert!(text.contains("\n  landlock: landlock detail"), "{text}");
        assert!(text.contains("--allow-degraded landlock\n"), "{text}");
        assert!(text.contains("gives up Landlock"), "{text}");
        assert!(text.contains("--insecure-no-compartment"), "{text}");
        assert!(
            !text.contains("seccomp"),
            "a disabled layer is the operator's choice: {text}"
        );
    }

    #[test]
    fn several_missing_layers_are_listed_together() {
        let c = compartment(&[("landlock", "unavailable"), ("seccomp", "unavailable")]);
        let text = compartment_refusal(&c, Path::new("d")).unwrap();
        assert!(text.contains("--allow-degraded landlock,seccomp"), "{text}");
        assert!(text.contains("lacks layers"), "{text}");
    }

    #[test]
    fn active_and_disabled_layers_pass() {
        let c = compartment(&[("landlock", "active"), ("seccomp", "disabled")]);
        assert!(compartment_refusal(&c, Path::new("d")).is_none());
    }

    #[test]
    fn every_standard_layer_says_what_it_gives_up() {
        for layer in [
            "namespaces",
            "no_new_privs",
            "landlock",
            "seccomp",
            "rlimits",
            "purecap",
            "c18n",
            "capsicum",
        ] {
            assert_ne!(gives_up(layer), format!("the {layer} layer"));
        }
    }

    #[test]
    fn this_machine_has_a_toolchain() {
        // The workspace's own C tests need the same; a failure here names what is missing.
        let t = check_toolchain().unwrap_or_else(|e| panic!("{e}"));
        assert!(!t.compiler.is_empty());
        assert!(t.openssl.starts_with("OpenSSL "), "{}", t.openssl);
    }
}
