//! Spawn overhead of the sandbox: time from the start of a spawn to the
//! child's first byte on fd 3, for a plain fork/exec of a tiny C program and
//! for the same program in the sandbox (all layers, and without namespaces
//! to show what they cost). Also the cost of measuring (hashing and
//! sealing) the executable. Run as root, in release mode:
//!
//! ```text
//! cargo run --release -p launcher-sandbox --example spawn_overhead [RUNS]
//! ```

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use launcher_sandbox::{LayerName, MeasuredExecutable, SandboxSpec};

const PROGRAM: &str = r#"
#include <unistd.h>
int main(void) { return write(3, "x", 1) == 1 ? 0 : 1; }
"#;

fn first_byte(ours: &mut UnixStream) {
    let mut b = [0u8; 1];
    ours.read_exact(&mut b).expect("first byte from the child");
}

fn plain(exe: &Path) -> Duration {
    let (mut ours, theirs) = UnixStream::pair().unwrap();
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
    let mut child = cmd.spawn().unwrap();
    first_byte(&mut ours);
    let elapsed = start.elapsed();
    assert!(child.wait().unwrap().success());
    elapsed
}

fn sandboxed(exe: &Arc<MeasuredExecutable>, work: &Path, without: Option<LayerName>) -> Duration {
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let start = Instant::now();
    let mut spec = SandboxSpec::run(exe.clone(), work).channel(theirs.into());
    if let Some(layer) = without {
        spec = spec.disable(layer, "overhead breakdown");
    }
    let mut child = launcher_sandbox::spawn(spec).unwrap();
    first_byte(&mut ours);
    let elapsed = start.elapsed();
    assert!(child.wait_blocking().unwrap().success());
    elapsed
}

fn stats(name: &str, mut v: Vec<Duration>, baseline: Option<Duration>) -> Duration {
    v.sort();
    let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    let median = pick(0.5);
    let delta = baseline
        .map(|b| format!("{:+8.3} ms", (median.as_secs_f64() - b.as_secs_f64()) * 1e3))
        .unwrap_or_else(|| "        -".into());
    println!(
        "| {name:<34} | {:>8.3} ms | {:>8.3} ms | {:>8.3} ms | {delta} |",
        median.as_secs_f64() * 1e3,
        pick(0.1).as_secs_f64() * 1e3,
        pick(0.9).as_secs_f64() * 1e3,
    );
    median
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("RUNS must be a number"))
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = dir.path().join("first_write.c");
    let exe_path = dir.path().join("first_write");
    std::fs::write(&src, PROGRAM).unwrap();
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&exe_path)
        .arg(&src)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cc failed");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();

    let exe = Arc::new(MeasuredExecutable::open(&exe_path).unwrap());
    let mut measure = Vec::new();
    let (mut base, mut full, mut no_ns) = (Vec::new(), Vec::new(), Vec::new());
    // Warm-up, then interleave so that machine noise hits all alike.
    plain(&exe_path);
    sandboxed(&exe, &work, None);
    for _ in 0..runs {
        base.push(plain(&exe_path));
        full.push(sandboxed(&exe, &work, None));
        no_ns.push(sandboxed(&exe, &work, Some(LayerName::Namespaces)));
        let t = Instant::now();
        let m = MeasuredExecutable::open(&exe_path).unwrap();
        measure.push(t.elapsed());
        drop(m);
    }

    println!(
        "spawn to first byte on fd 3, {runs} runs each, {} bytes executable, {} CPUs\n",
        exe.len(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "| {:<34} | {:>11} | {:>11} | {:>11} | {:>11} |",
        "", "median", "p10", "p90", "vs plain"
    );
    println!(
        "|{:-<36}|{:-<13}|{:-<13}|{:-<13}|{:-<13}|",
        "", "", "", "", ""
    );
    let b = stats("plain fork/exec (std Command)", base, None);
    stats("sandbox, all layers", full, Some(b));
    stats("sandbox, namespaces disabled", no_ns, Some(b));
    stats("MeasuredExecutable::open", measure, None);
}
