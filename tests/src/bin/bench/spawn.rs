//! Compartment start: spawn to the child's first byte on fd 3 in the Linux
//! sandbox (measuring the executable included), against a plain fork/exec of
//! the same binary; and how that grows with the size of the executable.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use launcher_sandbox::{MeasuredExecutable, SandboxSpec};

use crate::stats::{Figure, Summary, Table};

const SECTION: &str = "1. Compartment start (spawn → first byte on fd 3)";
pub const SIZE_SECTION: &str = "6b. Run start against program size";

/// A program that writes one byte on fd 3 at once, touching a `blob` of
/// `extra` bytes kept in the executable's data (initialised, so on disk).
fn source(extra: usize) -> String {
    format!(
        "#include <unistd.h>\n\
         static volatile char blob[{}] = {{1}};\n\
         int main(void) {{ return write(3, (const void *)&blob[0], 1) == 1 ? 0 : 1; }}\n",
        extra.max(1)
    )
}

/// Compiles [`source`] with `cc -O2` into `dir`.
fn compile(dir: &Path, extra: usize) -> anyhow::Result<PathBuf> {
    let src = dir.join(format!("first_write_{extra}.c"));
    let exe = dir.join(format!("first_write_{extra}"));
    std::fs::write(&src, source(extra))?;
    let status = Command::new("cc")
        .arg("-O2")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
        .context("running cc")?;
    if !status.success() {
        bail!("cc failed for {}", src.display());
    }
    Ok(exe)
}

fn first_byte(ours: &mut UnixStream) {
    let mut b = [0u8; 1];
    ours.read_exact(&mut b)
        .expect("the first byte from the child");
}

fn plain(exe: &Path) -> Duration {
    let (mut ours, theirs) = UnixStream::pair().expect("socketpair");
    let fd = theirs.as_raw_fd();
    let start = Instant::now();
    let mut cmd = Command::new(exe);
    // SAFETY: dup2 is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawning the plain child");
    first_byte(&mut ours);
    let elapsed = start.elapsed();
    assert!(child.wait().expect("waiting").success());
    elapsed
}

/// Measures the executable (hash + sealed copy, as each run does) and
/// spawns it with every layer, to its first byte.
fn sandboxed(exe: &Path, work: &Path) -> Duration {
    let (mut ours, theirs) = UnixStream::pair().expect("socketpair");
    let start = Instant::now();
    let measured = Arc::new(MeasuredExecutable::open(exe).expect("measuring the executable"));
    let spec = SandboxSpec::run(measured, work).channel(theirs.into());
    let mut child = launcher_sandbox::spawn(spec).expect("spawning in the sandbox");
    first_byte(&mut ours);
    let elapsed = start.elapsed();
    assert!(child.wait_blocking().expect("waiting").success());
    elapsed
}

/// Alternates plain and sandboxed starts so that noise hits both alike.
fn pair(exe: &Path, work: &Path, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    plain(exe);
    sandboxed(exe, work);
    (0..n).map(|_| (plain(exe), sandboxed(exe, work))).unzip()
}

/// One point of the size plot: executable bytes, plain and sandboxed medians (ms).
pub struct SizePoint {
    pub bytes: u64,
    pub plain_ms: f64,
    pub sandbox_ms: f64,
}

pub fn compartment_start(
    table: &mut Table,
    n: usize,
    sizes: &[usize],
) -> anyhow::Result<Vec<SizePoint>> {
    let dir = tempfile::Builder::new().prefix("bench-spawn-").tempdir()?;
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let work = dir.path().join("work");
    std::fs::create_dir(&work)?;
    std::fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;

    let exe = compile(dir.path(), 0)?;
    let size = std::fs::metadata(&exe)?.len();
    let (base, sandbox) = pair(&exe, &work, n);
    table.against(
        SECTION,
        format!(
            "Linux sandbox, all layers, measuring included ({} KiB)",
            size >> 10
        ),
        Figure::Latency(Summary::of(&sandbox)),
        "plain fork/exec",
        Figure::Latency(Summary::of(&base)),
    );

    let mut points = Vec::new();
    for &extra in sizes {
        let exe = compile(dir.path(), extra)?;
        let bytes = std::fs::metadata(&exe)?.len();
        let reps = if extra >= 32 << 20 { 10 } else { 30 };
        let (base, sandbox) = pair(&exe, &work, reps);
        let (b, s) = (Summary::of(&base), Summary::of(&sandbox));
        table.against(
            SIZE_SECTION,
            format!(
                "run start, executable of {:.1} MiB",
                bytes as f64 / (1 << 20) as f64
            ),
            Figure::Latency(s),
            "plain fork/exec",
            Figure::Latency(b),
        );
        points.push(SizePoint {
            bytes,
            plain_ms: b.median,
            sandbox_ms: s.median,
        });
        std::fs::remove_file(&exe)?;
    }
    Ok(points)
}
